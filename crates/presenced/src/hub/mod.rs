//! The hub: the one way into the presence engine.
//!
//! It owns the engine, the sockets bound to the engine's connections and the
//! timer driver. Callers (connection tasks, the HTTP API, the dashboard,
//! metrics, start-up and shutdown) use its typed methods; none of them sees
//! the engine, builds `Effects` or reads the clock for it, so none can forget
//! to deliver what a change produced (frames, closes, journal and webhook
//! events).
//!
//! Here: the hub, its lock and the changes (connect, kick, publish, restore,
//! delivering effects). Beside it: `socket.rs` ([`HubSocket`], a connection
//! task's requests and its drop guard), `reads.rs` (what the HTTP API, the
//! dashboard and `/metrics` read), `drivers.rs` (the timer and heartbeat
//! tasks) and `outbox.rs` (a connection's bounded queue).
//!
//! Lock order: `Hub::inner` (a std `Mutex`, never held across an `.await`),
//! then an outbox's queue lock. Effects are delivered while the hub's lock is
//! held, so frames reach every outbox in the engine's order (a subscriber
//! never sees `seq` out of order); delivery is a non-blocking queue push. The
//! store's queue and the event feed are pushed to under the hub's lock too;
//! neither takes it.
//!
//! Offline users' last presence: the engine remembers a bounded number of
//! them. Before a read or a `watch` names users it neither has live nor
//! remembers, the hub looks them up in the journal ([`Hub::recall`], off the
//! lock, after a barrier so nothing queued is missed) and hands what it
//! found to the engine for that one call (`Engine::with_recalled`), under
//! the same lock as the read.

mod drivers;
mod outbox;
mod reads;
mod socket;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use presenced_engine::{
    ConnId, Effect, Effects, Engine, EngineConfig, ErrorCode, Identity, PresenceEvent,
    RequestError, RestoredUser, SessionRecord, UserId,
};
use serde_json::Value;
use tokio::sync::{Notify, broadcast};

pub use self::outbox::{Outbox, Outgoing};
pub use self::socket::HubSocket;
use crate::clock::{now_ms, random_token};
use crate::store::{Journal, StoredPresence};

/// A socket bound to an engine connection. `socket_id` tells sockets apart
/// when a resume binds a new socket to an existing connection.
#[derive(Debug)]
struct Bound {
    socket_id: u64,
    outbox: Arc<Outbox>,
}

#[derive(Debug)]
struct Inner {
    engine: Engine,
    sockets: HashMap<ConnId, Bound>,
    /// Set by [`Hub::close_all`]: a socket bound after it closes at once.
    closing: bool,
}

/// Counters read by tests and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub dropped_broadcasts: AtomicU64,
    pub resyncs: AtomicU64,
}

/// Counts of the engine's state at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Connections, live or inside grace.
    pub connections: usize,
    /// Users online or away.
    pub users: usize,
    pub channels: usize,
    /// Channel memberships.
    pub members: usize,
}

/// Shared state of the server.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    timer: Notify,
    next_id: AtomicU64,
    events: broadcast::Sender<PresenceEvent>,
    journal: Arc<dyn Journal>,
    counters: Counters,
}

impl Hub {
    pub fn new(cfg: EngineConfig, journal: Arc<dyn Journal>) -> Arc<Hub> {
        let (events, _) = broadcast::channel(4096);
        Arc::new(Hub {
            inner: Mutex::new(Inner {
                engine: Engine::new(cfg),
                sockets: HashMap::new(),
                closing: false,
            }),
            timer: Notify::new(),
            next_id: AtomicU64::new(1),
            events,
            journal,
            counters: Counters::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the engine as it was at the
        // panic; serving on is better than failing every connection.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the engine with the time now and delivers the effects it
    /// produced, under the lock: the only way the engine is changed.
    fn change<R>(&self, f: impl FnOnce(&mut Engine, u64, &mut Effects) -> R) -> R {
        let mut g = self.lock();
        let mut fx = Effects::new();
        let r = f(&mut g.engine, now_ms(), &mut fx);
        self.dispatch(&mut g, fx);
        r
    }

    /// Runs `f` on the engine (read only) with the time now.
    fn read<R>(&self, f: impl FnOnce(&Engine, u64) -> R) -> R {
        f(&self.lock().engine, now_ms())
    }

    /// The journal the hub records every presence event into.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A live feed of presence events (lossy under load: for dashboards, not
    /// for anything that must see every event; the store gets every one).
    pub fn subscribe_events(&self) -> broadcast::Receiver<PresenceEvent> {
        self.events.subscribe()
    }

    // ----- start-up and shutdown ----------------------------------------

    /// Remembers offline users' last presence, as the store kept it.
    pub fn restore_offline<'a>(
        &self,
        users: impl IntoIterator<Item = &'a (String, u64, Option<u64>)>,
    ) {
        let mut g = self.lock();
        for (user, since, last_seen) in users {
            g.engine.restore_offline(user, *since, *last_seen);
        }
    }

    /// Feeds in the last presence of the users that restored sessions watch
    /// and the engine does not remember (call after [`Hub::restore`]; it
    /// blocks on the journal, like the rest of start-up).
    pub fn recall_watched(&self) -> anyhow::Result<()> {
        let unknown = self.read(|engine, _| engine.watched_unknown());
        if unknown.is_empty() {
            return Ok(());
        }
        let users: Vec<String> = unknown.iter().map(|u| u.to_string()).collect();
        let found = self.journal.last_presence(&users)?;
        let mut g = self.lock();
        for p in &found {
            g.engine.restore_offline(&p.user, p.since, p.last_seen);
        }
        Ok(())
    }

    /// The journal's last presence of those of `users` the engine neither
    /// has live nor remembers (empty when it knows them all), to hand to
    /// the engine under the lock of the read that needs them (`recalled`).
    /// An error when the journal cannot answer.
    pub async fn recall<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<StoredPresence>, Unavailable> {
        let unknown = self.read(|engine, _| engine.presence_unknown(users));
        self.look_up(unknown).await
    }

    /// Reads the journal's last presence of `unknown` users.
    async fn look_up(&self, unknown: Vec<UserId>) -> Result<Vec<StoredPresence>, Unavailable> {
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        // What the engine forgot may still be queued for the journal.
        if !self.journal.barrier().wait().await {
            return Err(Unavailable);
        }
        let journal = self.journal.clone();
        let users: Vec<String> = unknown.iter().map(|u| u.to_string()).collect();
        match tokio::task::spawn_blocking(move || journal.last_presence(&users)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read users' last presence");
                Err(Unavailable)
            }
            Err(_) => Err(Unavailable),
        }
    }

    /// Puts back who was online at the last stop (the journal) and their
    /// sessions (kept at a clean shutdown): each gets one grace window.
    pub fn restore(&self, users: Vec<RestoredUser>, sessions: Vec<SessionRecord>) {
        // Restored connections get ids of their own range, apart from the
        // ids of sockets.
        let mut next_conn = 1u64 << 62;
        self.change(|engine, now, fx| {
            engine.restore(
                now,
                users,
                sessions,
                || {
                    next_conn += 1;
                    next_conn
                },
                fx,
            )
        });
    }

    /// Every connection with a session, to keep across a clean restart.
    pub fn export_sessions(&self) -> Vec<SessionRecord> {
        self.read(|engine, _| engine.export_sessions())
    }

    /// Asks every bound socket to close (server shutdown); a socket bound
    /// later closes at once.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let mut g = self.lock();
        g.closing = true;
        for b in g.sockets.values() {
            b.outbox.close(code, reason);
        }
    }

    // ----- connections ----------------------------------------------------

    /// Binds a socket that said `hello` with a verified identity to a
    /// connection: a new one, or the session's when `resume` names one that
    /// is still held. The `welcome` (and on resume the snapshots) go into
    /// `outbox`. Dropping the returned socket detaches the connection.
    /// `unavailable` (and nothing changes) for a new connection of a user
    /// while the journal takes no new transitions (`journal_refuses`); a
    /// guest's, or a resume of a held session, is let in.
    pub fn connect(
        self: &Arc<Self>,
        ident: Identity,
        resume: Option<&str>,
        req_id: Option<u64>,
        outbox: Arc<Outbox>,
    ) -> Result<HubSocket, RequestError> {
        let socket_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let fresh_conn = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = random_token();
        let mut g = self.lock();
        if ident.user.is_some()
            && !g.engine.resumes(resume, ident.user.as_deref())
            && let Some(e) = journal_refuses(&*self.journal)
        {
            return Err(e);
        }
        let mut fx = Effects::new();
        let attached = g.engine.connect(
            now_ms(),
            fresh_conn,
            ident,
            resume,
            session,
            req_id,
            &mut fx,
        );
        let replaced = g.sockets.insert(
            attached.conn,
            Bound {
                socket_id,
                outbox: outbox.clone(),
            },
        );
        if let Some(old) = replaced {
            old.outbox.close(1000, "replaced");
        }
        self.dispatch(&mut g, fx);
        if g.closing {
            outbox.close(1001, "server shutting down");
        }
        drop(g);
        Ok(HubSocket {
            hub: self.clone(),
            conn: attached.conn,
            socket_id,
            outbox,
        })
    }

    /// Unbinds the socket if it is still the one bound to `conn` and then
    /// detaches the connection (grace), unless the engine already removed
    /// it (`bye`, kick) or a resume bound it to another socket.
    fn release(&self, conn: ConnId, socket_id: u64) {
        let mut g = self.lock();
        match g.sockets.get(&conn) {
            Some(b) if b.socket_id == socket_id => {
                g.sockets.remove(&conn);
            }
            _ => return,
        }
        let mut fx = Effects::new();
        g.engine.disconnect(now_ms(), conn, &mut fx);
        self.dispatch(&mut g, fx);
    }

    /// Closes every connection of `user` (4409), offline at once. Returns
    /// how many there were.
    pub fn kick_user(&self, user: &str) -> usize {
        self.change(|engine, now, fx| engine.kick_user(now, user, fx))
    }

    /// Sends a `message` from the server to a channel's subscribers; returns
    /// how many connections it reached.
    pub fn publish(&self, channel: &str, data: &Value) -> usize {
        self.change(|engine, _, fx| engine.broadcast_message(channel, None, data, None, fx))
    }

    /// Delivers effects: frames into outboxes, closes, events to the store
    /// and the live feed.
    fn dispatch(&self, g: &mut Inner, fx: Effects) {
        for effect in fx.items {
            match effect {
                Effect::Reply { conn, frame } => {
                    if let Some(b) = g.sockets.get(&conn) {
                        b.outbox.reply(frame);
                    }
                }
                Effect::Push { conn, frame } => {
                    if let Some(b) = g.sockets.get(&conn)
                        && !b.outbox.broadcast(frame)
                    {
                        self.counters
                            .dropped_broadcasts
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Effect::Close { conn, code, reason } => {
                    if let Some(b) = g.sockets.remove(&conn) {
                        b.outbox.close(code, reason);
                    }
                }
                Effect::Event(event) => self.emit(event),
            }
        }
        if fx.deadline_moved {
            self.timer.notify_one();
        }
    }

    /// Journals a presence event and shows it on the live feed.
    fn emit(&self, event: PresenceEvent) {
        tracing::debug!(?event, "presence");
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event.clone());
        }
        self.journal.record(event);
    }

    /// Emits an event the engine did not make (tests of the feed).
    #[cfg(test)]
    pub(crate) fn emit_for_test(&self, event: PresenceEvent) {
        let _g = self.lock();
        self.emit(event);
    }
}

/// Why a new transition is refused now, if it is: the journal cannot
/// commit, or its queue is at its bound. A client is then never told it
/// entered (or came online) when a crash could lose it; what cannot be
/// refused (a socket closing, a grace window ending) is still queued, so the
/// bound is soft by the leaves and offlines of the connections there are.
fn journal_refuses(journal: &dyn Journal) -> Option<RequestError> {
    if journal.accepting() {
        None
    } else if !journal.is_healthy() {
        Some(RequestError::new(
            ErrorCode::Unavailable,
            "the server cannot store presence changes now; retry",
        ))
    } else {
        Some(RequestError::new(
            ErrorCode::Unavailable,
            "the server has too many presence changes waiting for its store; retry",
        ))
    }
}

/// The journal could not answer a read (the store is failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// The journal's records as [`Engine::with_recalled`] takes them (it
/// ignores each for a user it knows already: live, or a record at least as
/// new).
fn recalled(found: &[StoredPresence]) -> impl Iterator<Item = (&str, u64, Option<u64>)> {
    found
        .iter()
        .map(|p| (p.user.as_str(), p.since, p.last_seen))
}
