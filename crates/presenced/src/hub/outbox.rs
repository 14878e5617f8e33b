//! A connection's outbox: the bounded queue between the hub (which pushes
//! frames under its lock) and the connection's task (which writes them), and
//! the liveness facts the heartbeat task checks for every socket.
//!
//! Lock order: the hub's lock, then an outbox's queue lock (the hub pushes
//! into outboxes while it holds its own); the queue lock is never held while
//! taking the hub's.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use presenced_engine::Frame;
use tokio::sync::Notify;

use crate::clock::now_ms;

/// What a connection task is asked to write.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Frame),
    /// A WebSocket ping (the heartbeat).
    Ping,
    Close(u16, &'static str),
}

/// A connection's bounded outbox. Broadcast frames are dropped (and the
/// connection marked lagged, to be resynced) when it is full; replies to the
/// connection's own requests always go in, and the connection task stops
/// reading requests while the outbox is over its limit, which bounds them
/// (it looks again after every frame it writes).
///
/// A plain deque behind a mutex rather than a channel: an idle connection's
/// outbox allocates nothing, and that is most connections.
///
/// It also carries what the hub's heartbeat task checks for every socket
/// (when the client last sent something, when its token expires), so a
/// connection's task needs no timers of its own.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<Outgoing>>,
    ready: Notify,
    lagged: AtomicBool,
    limit: usize,
    /// When the client last sent a frame (the server's clock, ms).
    last_rx: AtomicU64,
    /// When the connection's token expires (unix ms on the wall clock, as
    /// the token says); 0 for never.
    expires_ms: AtomicU64,
    /// The heartbeat task queued the 4401 close of an expired token.
    expired: AtomicBool,
    /// Set when the socket must go now, even in the middle of a write that
    /// cannot progress (a half-open client with full buffers).
    aborted: AtomicBool,
    abort: Notify,
}

impl Outbox {
    pub fn new(limit: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            lagged: AtomicBool::new(false),
            limit,
            last_rx: AtomicU64::new(now_ms()),
            expires_ms: AtomicU64::new(0),
            expired: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            abort: Notify::new(),
        })
    }

    /// The client sent something: it is alive.
    pub fn touch(&self) {
        self.last_rx.store(now_ms(), Ordering::Relaxed);
    }

    /// The server stood still for `ms`: that time is not the client's
    /// silence.
    pub fn forgive(&self, ms: u64) {
        let _ = self
            .last_rx
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(ms).min(now_ms()))
            });
    }

    /// Sets when the connection's token expires (unix milliseconds, its
    /// `exp`), or never.
    pub fn set_expiry(&self, expires_ms: Option<u64>) {
        let ms = expires_ms.map_or(0, |ms| ms.max(1));
        self.expires_ms.store(ms, Ordering::Relaxed);
    }

    /// One round of the heartbeat task for this socket: close it 4401 once
    /// its token has expired by the wall clock `wall` (as a token is checked
    /// at `hello`), abort it once the client has been silent for two
    /// heartbeats of the server's clock `now`, else ping it when `ping` is
    /// set.
    pub fn heartbeat(&self, now: u64, wall: u64, heartbeat_ms: u64, ping: bool) {
        if self.aborted.load(Ordering::Relaxed) {
            return;
        }
        // Checked even after a 4401 was queued: a client that does not read
        // may never let that close frame out.
        if now.saturating_sub(self.last_rx.load(Ordering::Relaxed)) > 2 * heartbeat_ms {
            tracing::debug!("heartbeat missed");
            self.aborted.store(true, Ordering::Relaxed);
            self.abort.notify_one();
            self.ready.notify_one();
            return;
        }
        if self.expired.load(Ordering::Relaxed) {
            return;
        }
        let exp = self.expires_ms.load(Ordering::Relaxed);
        if exp != 0 && wall >= exp {
            self.expired.store(true, Ordering::Relaxed);
            self.close(4401, "token expired");
        } else if ping {
            self.push(Outgoing::Ping);
        }
    }

    /// Resolves once the socket must be dropped without a close handshake.
    pub async fn aborted(&self) {
        loop {
            if self.aborted.load(Ordering::Relaxed) {
                return;
            }
            self.abort.notified().await;
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Outgoing>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, item: Outgoing) {
        self.queue().push_back(item);
        self.ready.notify_one();
    }

    pub fn reply(&self, frame: Frame) {
        self.push(Outgoing::Frame(frame));
    }

    /// Returns false when the frame was dropped because the client lags.
    pub fn broadcast(&self, frame: Frame) -> bool {
        let mut q = self.queue();
        if self.lagged.load(Ordering::Relaxed) || q.len() >= self.limit {
            self.lagged.store(true, Ordering::Relaxed);
            return false;
        }
        q.push_back(Outgoing::Frame(frame));
        drop(q);
        self.ready.notify_one();
        true
    }

    pub fn close(&self, code: u16, reason: &'static str) {
        self.push(Outgoing::Close(code, reason));
    }

    /// The next item, if one is queued.
    pub fn try_recv(&self) -> Option<Outgoing> {
        let mut q = self.queue();
        let item = q.pop_front();
        if q.is_empty() && q.capacity() > 0 {
            // A burst is over: give its memory back. Most connections are
            // idle most of the time, and an empty queue costs nothing.
            *q = VecDeque::new();
        }
        item
    }

    /// Waits for the next item (only the connection task calls this);
    /// `None` once the socket was aborted.
    pub async fn recv(&self) -> Option<Outgoing> {
        loop {
            if self.aborted.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            self.ready.notified().await;
        }
    }

    pub fn over_limit(&self) -> bool {
        self.queue().len() >= self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.queue().is_empty()
    }

    pub fn is_lagged(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }

    pub fn clear_lagged(&self) {
        self.lagged.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn frame(n: u32) -> Frame {
        Frame::from_json(&n)
    }

    #[test]
    fn full_outbox_drops_broadcasts_and_marks_lagged_but_keeps_replies() {
        let outbox = Outbox::new(2);
        assert!(outbox.broadcast(frame(1)));
        assert!(outbox.broadcast(frame(2)));
        assert!(
            !outbox.broadcast(frame(3)),
            "third broadcast is over the limit"
        );
        assert!(outbox.is_lagged());
        outbox.reply(frame(4));
        assert!(outbox.over_limit());
        let mut got = Vec::new();
        while let Some(Outgoing::Frame(f)) = outbox.try_recv() {
            got.push(f.as_str().to_owned());
        }
        assert_eq!(got, ["1", "2", "4"]);
        assert!(outbox.is_empty());
        // Still lagged until resynced: later broadcasts would leave a gap.
        assert!(!outbox.broadcast(frame(5)));
        outbox.clear_lagged();
        assert!(outbox.broadcast(frame(6)));
    }

    #[tokio::test]
    async fn heartbeat_pings_closes_expired_tokens_once_and_aborts_silent_sockets() {
        let hb = 1_000;
        let outbox = Outbox::new(8);
        let t0 = outbox.last_rx.load(Ordering::Relaxed);
        // Alive, no ping round: nothing queued.
        outbox.heartbeat(t0 + 100, 0, hb, false);
        assert!(outbox.is_empty());
        // A ping round pings.
        outbox.heartbeat(t0 + 100, 0, hb, true);
        assert!(matches!(outbox.try_recv(), Some(Outgoing::Ping)));
        // A token expires when the wall clock says so (the server's clock
        // reads otherwise here); then it is closed 4401, once, and not
        // pinged after.
        let wall = 1_800_000_000_000;
        outbox.set_expiry(Some(wall + 150));
        outbox.heartbeat(t0 + 1_000, wall, hb, true);
        assert!(matches!(outbox.try_recv(), Some(Outgoing::Ping)));
        outbox.heartbeat(t0 + 200, wall + 1_000, hb, true);
        outbox.heartbeat(t0 + 300, wall + 1_000, hb, true);
        assert!(matches!(
            outbox.try_recv(),
            Some(Outgoing::Close(4401, "token expired"))
        ));
        assert!(
            outbox.is_empty(),
            "the close is queued once, no pings after it"
        );
        // Two heartbeats of silence abort the socket even after the close
        // was queued (its client may never read it): the writer's and the
        // reader's waits both end.
        outbox.heartbeat(t0 + 2 * hb + 1, wall + 1_000, hb, false);
        tokio::time::timeout(Duration::from_secs(1), outbox.aborted())
            .await
            .expect("aborted() did not resolve");
        outbox.reply(frame(1));
        assert!(
            outbox.recv().await.is_none(),
            "recv ends once aborted, queued frames or not"
        );
    }

    #[test]
    fn a_client_that_sends_keeps_its_socket() {
        let hb = 1_000;
        let outbox = Outbox::new(8);
        let t0 = outbox.last_rx.load(Ordering::Relaxed);
        outbox.heartbeat(t0 + 2 * hb, 0, hb, false);
        assert!(
            !outbox.aborted.load(Ordering::Relaxed),
            "exactly two heartbeats is not over the limit"
        );
        outbox.last_rx.store(t0 + 2 * hb, Ordering::Relaxed);
        outbox.heartbeat(t0 + 3 * hb, 0, hb, false);
        assert!(!outbox.aborted.load(Ordering::Relaxed));
        outbox.heartbeat(t0 + 4 * hb + 1, 0, hb, false);
        assert!(outbox.aborted.load(Ordering::Relaxed));
    }
}
