//! The hub: the one engine, the sockets bound to its connections, and the
//! timer driver.
//!
//! Lock order: `Hub::inner` is the only lock, a std `Mutex` that is never held
//! across an `.await`. Effects are delivered while it is held, so frames reach
//! every outbox in the engine's order (a subscriber never sees `seq` out of
//! order); delivery is a non-blocking queue push.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use presenced_engine::{ConnId, Effect, Effects, Engine, Frame, PresenceEvent};
use tokio::sync::{Notify, broadcast};

use crate::store::Store;

/// Unix time in milliseconds: the engine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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
    /// When the client last sent a frame (unix ms).
    last_rx: AtomicU64,
    /// When the connection's token expires (unix ms); 0 for never.
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

    /// Sets when the connection's token expires (unix seconds), or never.
    pub fn set_expiry(&self, exp_unix_secs: Option<u64>) {
        let ms = exp_unix_secs.map_or(0, |s| s.saturating_mul(1000).max(1));
        self.expires_ms.store(ms, Ordering::Relaxed);
    }

    /// One round of the heartbeat task for this socket: close it 4401 once
    /// its token has expired, abort it once the client has been silent for
    /// two heartbeats, else ping it when `ping` is set.
    pub fn heartbeat(&self, now: u64, heartbeat_ms: u64, ping: bool) {
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
        if exp != 0 && now >= exp {
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

/// A fresh unguessable token (128 random bits, base64url): session ids.
pub fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A socket bound to an engine connection. `socket_id` tells sockets apart
/// when a resume binds a new socket to an existing connection.
#[derive(Debug)]
struct Bound {
    socket_id: u64,
    outbox: Arc<Outbox>,
}

#[derive(Debug)]
pub struct HubInner {
    pub engine: Engine,
    sockets: HashMap<ConnId, Bound>,
}

/// Counters read by tests and, later, the metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub dropped_broadcasts: AtomicU64,
    pub resyncs: AtomicU64,
}

/// Shared state of the server.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<HubInner>,
    timer: Notify,
    next_id: AtomicU64,
    events: broadcast::Sender<PresenceEvent>,
    store: Arc<Store>,
    pub counters: Counters,
}

impl Hub {
    pub fn new(engine: Engine, store: Arc<Store>) -> Arc<Hub> {
        let (events, _) = broadcast::channel(4096);
        Arc::new(Hub {
            inner: Mutex::new(HubInner {
                engine,
                sockets: HashMap::new(),
            }),
            timer: Notify::new(),
            next_id: AtomicU64::new(1),
            events,
            store,
            counters: Counters::default(),
        })
    }

    /// A fresh id for a connection or a socket.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The durable store the hub journals presence events into.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A live feed of presence events (lossy under load: for dashboards, not
    /// for anything that must see every event; the store gets every one).
    pub fn subscribe_events(&self) -> broadcast::Receiver<PresenceEvent> {
        self.events.subscribe()
    }

    pub fn lock(&self) -> HubGuard<'_> {
        HubGuard {
            hub: self,
            // A panic while holding the lock leaves the engine as it was at
            // the panic; serving on is better than failing every connection.
            inner: self.inner.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Heartbeats for every socket, from one task: each `heartbeat_ms` a
    /// WebSocket ping to each socket; a socket whose client sent nothing for
    /// two heartbeats is dropped, and one whose token expired is closed 4401.
    /// Checked every quarter heartbeat (at most every second), so a silent
    /// client goes between two heartbeats and two and a quarter.
    pub async fn drive_heartbeats(self: Arc<Self>, heartbeat_ms: u64) {
        let heartbeat_ms = heartbeat_ms.max(1);
        let tick = (heartbeat_ms / 4).clamp(1, 1000);
        let mut every = tokio::time::interval(Duration::from_millis(tick));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_ping = now_ms() + heartbeat_ms;
        loop {
            every.tick().await;
            let now = now_ms();
            let ping = now >= next_ping;
            if ping {
                next_ping = now + heartbeat_ms;
            }
            let g = self.lock();
            for b in g.inner.sockets.values() {
                b.outbox.heartbeat(now, heartbeat_ms, ping);
            }
        }
    }

    /// Asks every bound socket to close (server shutdown).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let g = self.lock();
        for b in g.inner.sockets.values() {
            b.outbox.close(code, reason);
        }
    }

    /// Runs the engine's timers until `shutdown` fires.
    pub async fn drive_timers(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let deadline = self.lock().inner.engine.next_deadline();
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
            let mut g = self.lock();
            let mut fx = Effects::new();
            g.inner.engine.tick(now_ms(), &mut fx);
            g.dispatch(fx);
        }
    }
}

/// The hub's lock, with delivery of effects.
pub struct HubGuard<'a> {
    hub: &'a Hub,
    pub inner: MutexGuard<'a, HubInner>,
}

impl HubGuard<'_> {
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.inner.engine
    }

    /// Binds a socket to a connection; returns the outbox of a socket it
    /// replaced, if any.
    pub fn bind(
        &mut self,
        conn: ConnId,
        socket_id: u64,
        outbox: Arc<Outbox>,
    ) -> Option<Arc<Outbox>> {
        self.inner
            .sockets
            .insert(conn, Bound { socket_id, outbox })
            .map(|b| b.outbox)
    }

    /// Unbinds the socket if it is still the one bound to `conn`; returns
    /// whether it was (and so whether the connection should be detached).
    pub fn unbind(&mut self, conn: ConnId, socket_id: u64) -> bool {
        match self.inner.sockets.get(&conn) {
            Some(b) if b.socket_id == socket_id => {
                self.inner.sockets.remove(&conn);
                true
            }
            _ => false,
        }
    }

    /// Delivers effects: frames into outboxes, closes, events.
    pub fn dispatch(&mut self, fx: Effects) {
        let counters = &self.hub.counters;
        for effect in fx.items {
            match effect {
                Effect::Reply { conn, frame } => {
                    if let Some(b) = self.inner.sockets.get(&conn) {
                        b.outbox.reply(frame);
                    }
                }
                Effect::Push { conn, frame } => {
                    if let Some(b) = self.inner.sockets.get(&conn)
                        && !b.outbox.broadcast(frame)
                    {
                        counters.dropped_broadcasts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Effect::Close { conn, code, reason } => {
                    if let Some(b) = self.inner.sockets.remove(&conn) {
                        b.outbox.close(code, reason);
                    }
                }
                Effect::Event(event) => {
                    tracing::debug!(?event, "presence");
                    if self.hub.events.receiver_count() > 0 {
                        let _ = self.hub.events.send(event.clone());
                    }
                    self.hub.store.record(event);
                }
            }
        }
        if fx.deadline_moved {
            self.hub.timer.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
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
        outbox.heartbeat(t0 + 100, hb, false);
        assert!(outbox.is_empty());
        // A ping round pings.
        outbox.heartbeat(t0 + 100, hb, true);
        assert!(matches!(outbox.try_recv(), Some(Outgoing::Ping)));
        // An expired token is closed 4401, once, and not pinged after.
        outbox.set_expiry(Some(t0 / 1000));
        outbox.heartbeat(t0 + 200, hb, true);
        outbox.heartbeat(t0 + 300, hb, true);
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
        outbox.heartbeat(t0 + 2 * hb + 1, hb, false);
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
        outbox.heartbeat(t0 + 2 * hb, hb, false);
        assert!(
            !outbox.aborted.load(Ordering::Relaxed),
            "exactly two heartbeats is not over the limit"
        );
        outbox.last_rx.store(t0 + 2 * hb, Ordering::Relaxed);
        outbox.heartbeat(t0 + 3 * hb, hb, false);
        assert!(!outbox.aborted.load(Ordering::Relaxed));
        outbox.heartbeat(t0 + 4 * hb + 1, hb, false);
        assert!(outbox.aborted.load(Ordering::Relaxed));
    }

    #[test]
    fn session_tokens_are_unguessable_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
    }
}
