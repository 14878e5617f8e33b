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
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<Outgoing>>,
    ready: Notify,
    lagged: AtomicBool,
    limit: usize,
}

impl Outbox {
    pub fn new(limit: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            lagged: AtomicBool::new(false),
            limit,
        })
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
        if q.is_empty() && q.capacity() > 64 {
            // A burst is over: give its memory back.
            q.shrink_to_fit();
        }
        item
    }

    /// Waits for the next item (only the connection task calls this).
    pub async fn recv(&self) -> Outgoing {
        loop {
            if let Some(item) = self.try_recv() {
                return item;
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

    #[test]
    fn session_tokens_are_unguessable_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
    }
}
