//! The hub's drivers: the tasks that run the engine's timers and every
//! socket's heartbeat.

use std::sync::Arc;
use std::time::Duration;

use super::Hub;
use crate::clock::{WallWatch, now_ms, wall_ms};

impl Hub {
    /// Heartbeats for every socket, from one task: each `heartbeat_ms` a
    /// WebSocket ping to each socket; a socket whose client sent nothing for
    /// two heartbeats is dropped, and one whose token expired is closed 4401.
    /// Checked every quarter heartbeat (at most every second), so a silent
    /// client goes between two heartbeats and two and a quarter. Silence is
    /// timed on the server's clock, token expiry on the wall clock (see
    /// [`crate::clock`]); this task also watches the two part.
    pub async fn drive_heartbeats(self: Arc<Self>, heartbeat_ms: u64) {
        let heartbeat_ms = heartbeat_ms.max(1);
        let tick = (heartbeat_ms / 4).clamp(1, 1000);
        let mut every = tokio::time::interval(Duration::from_millis(tick));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_ping = now_ms() + heartbeat_ms;
        let mut last = now_ms();
        let mut wall_watch = WallWatch::default();
        loop {
            every.tick().await;
            wall_watch.check();
            let now = now_ms();
            // A round this late means the process itself stood still (a
            // pause, an overloaded host). That was the server's silence, not
            // the clients': the time it stood still does not count as
            // theirs, and what they sent meanwhile, waiting unread in their
            // sockets, is read before the next round judges.
            let late = now.saturating_sub(last).saturating_sub(tick);
            last = now;
            if late > tick.max(250) {
                tracing::warn!(
                    late_ms = late,
                    "the heartbeat round came late: the process stood still; that time is not counted as clients' silence"
                );
                let g = self.lock();
                for b in g.sockets.values() {
                    b.outbox.forgive(late);
                }
                continue;
            }
            let ping = now >= next_ping;
            if ping {
                next_ping = now + heartbeat_ms;
            }
            let wall = wall_ms();
            let g = self.lock();
            for b in g.sockets.values() {
                b.outbox.heartbeat(now, wall, heartbeat_ms, ping);
            }
        }
    }

    /// Runs the engine's timers (grace, coalescing windows, occupancy) until
    /// `shutdown` fires.
    pub async fn drive_timers(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let deadline = self.read(|engine, _| engine.next_deadline());
            let sleep = async {
                match deadline {
                    Some(at) => {
                        let wait = at.saturating_sub(now_ms());
                        tokio::time::sleep(Duration::from_millis(wait)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.timer.notified() => continue,
                _ = shutdown.cancelled() => return,
            }
            self.change(|engine, now, fx| engine.tick(now, fx));
        }
    }
}
