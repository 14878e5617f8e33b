//! Delivery: membership changes netted per channel and sent at once or
//! coalesced into windows, `seq`, snapshots, occupancy pushes, and
//! presence pushes to watchers.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::channel::{Channel, Pending};
use super::shared::{Member, MemberChange, MemberOutcome};
use super::timer::{Timer, set_timer};
use super::*;
use crate::protocol::Frame;
use crate::protocol::out::{
    Change, MemberView, event_frame, member_view, occupancy_frame, snapshot_frames,
};
use crate::rules::ChannelRule;

impl Engine {
    /// One connection of `user` stops being in the channel; the member
    /// leaves when it was the user's last connection there.
    pub(super) fn member_conn_leaves(
        &mut self,
        now: u64,
        name: &ChannelName,
        user: &UserId,
        reason: Reason,
        out: &mut Effects,
    ) {
        let was = self.shared.members(name).get(user).map(|m| m.conns);
        let outcome = self.shared.leave(name, user);
        if !outcome.conns_changed {
            return;
        }
        self.member_changed(now, name, user, outcome, was, reason, out);
        self.drop_channel_if_empty(name);
    }

    /// Announces what the shared state reports for a member of a channel:
    /// the event, the netted change for the channel's next frame, and the
    /// occupancy. `conns_was` is the member's connection count before the
    /// change (a change of it alone is sent as an `update`, and is no
    /// event); `reason` is for a member that left.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn member_changed(
        &mut self,
        now: u64,
        name: &ChannelName,
        user: &UserId,
        outcome: MemberOutcome,
        conns_was: Option<u32>,
        reason: Reason,
        out: &mut Effects,
    ) {
        let ch = self
            .channels
            .entry(name.clone())
            .or_insert_with(Channel::new);
        if outcome.conns_changed
            && matches!(outcome.change, None | Some(MemberChange::Updated { .. }))
        {
            // A count changed that the cached snapshot shows (a joined or
            // left member is shown as of the last flush).
            ch.snapshot = [None, None];
        }
        let changed = outcome.change.is_some() || outcome.conns_changed;
        match outcome.change {
            None => {
                if outcome.conns_changed
                    && let Some(was) = conns_was
                {
                    ch.note(user, Pending::Conns { was });
                }
            }
            Some(MemberChange::Joined { data }) => {
                out.event(PresenceEvent::MemberJoined {
                    user: user.clone(),
                    channel: name.clone(),
                    at: now,
                    data,
                });
                ch.note(user, Pending::Joined);
            }
            Some(MemberChange::Updated { old, data }) => {
                out.event(PresenceEvent::MemberUpdated {
                    user: user.clone(),
                    channel: name.clone(),
                    at: now,
                    data,
                });
                ch.note(user, Pending::Updated { old });
            }
            Some(MemberChange::Left { old }) => {
                ch.note(user, Pending::Left { old, reason });
                out.event(PresenceEvent::MemberLeft {
                    user: user.clone(),
                    channel: name.clone(),
                    at: now,
                    reason,
                });
            }
        }
        if changed {
            self.changed(now, name, out);
        }
        if outcome.conns_changed {
            self.occupancy_changed(now, name, out);
        }
    }

    /// A member change was noted: send it now if the channel is quiet, else
    /// let the open window collect it.
    pub(super) fn changed(&mut self, now: u64, name: &ChannelName, out: &mut Effects) {
        let (burst, per_sec, coalesce) = (
            self.cfg.immediate_burst,
            self.cfg.immediate_per_sec,
            self.cfg.coalesce_ms,
        );
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        if let Some(due) = &mut self.deferred
            && ch
                .pending
                .values()
                .all(|p| matches!(p, Pending::Conns { .. }))
        {
            // Counts only, so far: what follows may net them away.
            if !due.contains(name) {
                due.push(name.clone());
            }
            return;
        }
        if ch.window_until.is_some() || ch.pending.is_empty() {
            return;
        }
        if ch.take_immediate(now, burst, per_sec) {
            // A quiet channel: send at once, no added latency. Spending the
            // last token means the channel has turned busy: what follows is
            // collected into a window.
            let busy = ch.immediate_milli < 1000;
            self.flush(now, name, busy, out);
        } else {
            // A busy channel: collect until the window ends.
            let until = now + coalesce;
            ch.window_until = Some(until);
            self.set_timer(until, Timer::Window(name.clone()), out);
        }
    }

    /// Runs `f` with changes of connection counts held back until it is
    /// done (a member change is sent as usual, netted with them), then sends
    /// (or collects) what is left of them.
    pub(super) fn deferring<R>(
        &mut self,
        now: u64,
        out: &mut Effects,
        f: impl FnOnce(&mut Engine, &mut Effects) -> R,
    ) -> R {
        let outer = self.deferred.replace(Vec::new());
        let r = f(self, out);
        let due = std::mem::replace(&mut self.deferred, outer).unwrap_or_default();
        for name in due {
            self.changed(now, &name, out);
        }
        r
    }

    pub(super) fn window_ends(&mut self, now: u64, name: &ChannelName, out: &mut Effects) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        ch.window_until = None;
        if !ch.pending.is_empty() {
            // Still busy: the next window starts right away.
            self.flush(now, name, true, out);
        }
    }

    /// Sends the channel's netted pending changes as one frame, and opens a
    /// coalescing window when asked.
    pub(super) fn flush(
        &mut self,
        now: u64,
        name: &ChannelName,
        open_window: bool,
        out: &mut Effects,
    ) {
        let Engine {
            cfg,
            channels,
            timers,
            shared,
            ..
        } = self;
        let members = shared.members(name);
        let Some(ch) = channels.get_mut(name) else {
            return;
        };
        let rule = cfg.rules.rule_for(name);
        let mut pending = std::mem::take(&mut ch.pending);
        // A count that went back to what subscribers were shown is no change.
        pending.retain(|user, p| match p {
            Pending::Conns { was } => members.get(user).is_some_and(|m| m.conns != *was),
            _ => true,
        });
        if pending.is_empty() {
            return;
        }
        ch.seq += 1;
        ch.snapshot = [None, None];
        let has_guests = ch.subscribers.values().any(|s| s.guest && s.live);
        let has_users = ch.subscribers.values().any(|s| !s.guest && s.live);
        let full = has_users.then(|| channel_event(name, ch, members, &pending, None));
        let public = has_guests.then(|| channel_event(name, ch, members, &pending, Some(rule)));
        for (&conn, s) in &ch.subscribers {
            if !s.live {
                continue;
            }
            let frame = if s.guest { &public } else { &full };
            if let Some(frame) = frame {
                out.push(conn, frame.clone());
            }
        }
        if open_window {
            let until = now + cfg.coalesce_ms;
            ch.window_until = Some(until);
            set_timer(timers, until, Timer::Window(name.clone()), out);
        }
    }

    pub(super) fn send_snapshot(
        &mut self,
        conn: ConnId,
        name: &ChannelName,
        guest: bool,
        occupancy: bool,
        out: &mut Effects,
    ) {
        let chunk = self.cfg.snapshot_chunk.max(1);
        let rule = self.cfg.rules.rule_for(name);
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let slot = usize::from(guest);
        let frames = match &ch.snapshot[slot] {
            Some((seq, frames)) if *seq == ch.seq => frames.clone(),
            _ => {
                let frames = Arc::new(channel_snapshot(
                    name,
                    ch,
                    self.shared.members(name),
                    guest.then_some(rule),
                    chunk,
                ));
                ch.snapshot[slot] = Some((ch.seq, frames.clone()));
                frames
            }
        };
        for f in frames.iter() {
            out.reply(conn, f.clone());
        }
        if occupancy {
            let current = self.shared.occupancy(name);
            out.reply(conn, occupancy_frame(name, current));
            if ch.occupancy_sent != Some(current) {
                if ch.occupancy_timer.is_some() {
                    // A throttled push is due and this subscriber heard a
                    // value the others did not: the push must go out even if
                    // the count returns to what the others last heard.
                    ch.occupancy_sent = None;
                } else {
                    // No push pending means nobody heard anything else.
                    ch.occupancy_sent = Some(current);
                }
            }
        }
    }

    pub(super) fn occupancy_changed(&mut self, now: u64, name: &ChannelName, out: &mut Effects) {
        let Some(ch) = self.channels.get(name) else {
            return;
        };
        if ch.occupancy_timer.is_some() {
            return;
        }
        if now >= ch.occupancy_next {
            self.send_occupancy_if_changed(now, name, out);
        } else {
            let at = ch.occupancy_next;
            self.channels
                .get_mut(name)
                .expect("checked above")
                .occupancy_timer = Some(at);
            self.set_timer(at, Timer::Occupancy(name.clone()), out);
        }
    }

    pub(super) fn send_occupancy_if_changed(
        &mut self,
        now: u64,
        name: &ChannelName,
        out: &mut Effects,
    ) {
        let interval = self.cfg.occupancy_interval_ms;
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let current = self.shared.occupancy(name);
        if ch.occupancy_sent == Some(current) {
            return;
        }
        let interested: Vec<ConnId> = ch
            .subscribers
            .iter()
            .filter(|(_, s)| s.occupancy && s.live)
            .map(|(c, _)| *c)
            .collect();
        ch.occupancy_sent = Some(current);
        ch.occupancy_next = now + interval;
        if interested.is_empty() {
            return;
        }
        let frame = occupancy_frame(name, current);
        for conn in interested {
            out.push(conn, frame.clone());
        }
    }

    pub(super) fn drop_channel_if_empty(&mut self, name: &ChannelName) {
        let Some(ch) = self.channels.get(name) else {
            return;
        };
        if !self.shared.members(name).is_empty() || !ch.subscribers.is_empty() {
            return;
        }
        if let Some(at) = ch.window_until {
            self.timers.remove(&(at, Timer::Window(name.clone())));
        }
        if let Some(at) = ch.occupancy_timer {
            self.timers.remove(&(at, Timer::Occupancy(name.clone())));
        }
        self.channels.remove(name);
    }

    pub(super) fn notify_watchers(&mut self, now: u64, user: &UserId, out: &mut Effects) {
        let Some(watchers) = self.watchers.get(user) else {
            return;
        };
        // Built once each, for users and for guests.
        let mut frames: [Option<Frame>; 2] = [None, None];
        for conn in watchers {
            let Some(c) = self.conns.get(conn).filter(|c| c.detached.is_none()) else {
                continue;
            };
            let guest = c.user.is_none();
            let frame = frames[usize::from(guest)]
                .get_or_insert_with(|| self.presence_frame(now, std::iter::once(&**user), guest));
            out.push(*conn, frame.clone());
        }
    }
}

/// The event of one flush: its netted changes, joined and updated members
/// as they are now.
fn channel_event(
    name: &str,
    ch: &Channel,
    members: &BTreeMap<UserId, Member>,
    pending: &BTreeMap<UserId, Pending>,
    public: Option<&ChannelRule>,
) -> Frame {
    let changes = pending
        .iter()
        .map(|(user, p)| {
            let member = || members.get(user).map(|m| m.view(user, public));
            match p {
                Pending::Joined => Change::Joined(member()),
                Pending::Updated { .. } | Pending::Conns { .. } => Change::Updated(member()),
                Pending::Left { reason, .. } => Change::Left {
                    user,
                    reason: *reason,
                },
            }
        })
        .collect();
    event_frame(name, ch.seq, changes)
}

/// The snapshot as of the last flush: pending changes reach the new
/// subscriber in the next event, with the next seq.
fn channel_snapshot(
    name: &str,
    ch: &Channel,
    current: &BTreeMap<UserId, Member>,
    public: Option<&ChannelRule>,
    chunk: usize,
) -> Vec<Frame> {
    let mut members: Vec<MemberView> = Vec::with_capacity(current.len());
    for (user, m) in current {
        match ch.pending.get(user) {
            Some(Pending::Joined) => {}
            Some(Pending::Updated { old }) | Some(Pending::Left { old, .. }) => {
                members.push(old.view(user, public))
            }
            Some(Pending::Conns { was }) => {
                members.push(member_view(user, &m.data, *was, m.since, public))
            }
            None => members.push(m.view(user, public)),
        }
    }
    for (user, p) in &ch.pending {
        if let Pending::Left { old, .. } = p
            && !current.contains_key(user)
        {
            members.push(old.view(user, public));
        }
    }
    snapshot_frames(name, ch.seq, &members, chunk)
}
