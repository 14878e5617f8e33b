//! Deadlines the caller honours: grace windows of detached connections,
//! coalescing windows and occupancy throttles of channels. The caller calls
//! [`Engine::tick`] no later than [`Engine::next_deadline`].

use std::collections::BTreeSet;

use super::{ChannelName, ConnId, Effects, Engine, Reason};

/// What a deadline is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    Grace(ConnId),
    Window(ChannelName),
    Occupancy(ChannelName),
}

impl Engine {
    pub(super) fn set_timer(&mut self, at: u64, timer: Timer, out: &mut Effects) {
        set_timer(&mut self.timers, at, timer, out);
    }

    /// When [`Engine::tick`] must next be called.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Fires every timer due at `now`.
    pub fn tick(&mut self, now: u64, out: &mut Effects) {
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::Grace(conn) => {
                    if self.conns.get(&conn).is_some_and(|c| c.detached.is_some()) {
                        self.remove_conn(now, conn, Reason::Timeout, out);
                    }
                }
                Timer::Window(name) => self.window_ends(now, &name, out),
                Timer::Occupancy(name) => {
                    if let Some(ch) = self.channels.get_mut(&name) {
                        ch.occupancy_timer = None;
                    }
                    self.send_occupancy_if_changed(now, &name, out);
                }
            }
        }
    }
}

/// Adds a deadline; flags `deadline_moved` when it is now the earliest.
pub(super) fn set_timer(
    timers: &mut BTreeSet<(u64, Timer)>,
    at: u64,
    timer: Timer,
    out: &mut Effects,
) {
    if timers.first().is_none_or(|(first, _)| at < *first) {
        out.deadline_moved = true;
    }
    timers.insert((at, timer));
}
