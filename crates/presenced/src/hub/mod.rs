//! The hub: the one way into the presence engine.
//!
//! It owns the engine, the sockets bound to the engine's connections and the
//! timer driver. Callers (connection tasks, the HTTP API, the dashboard,
//! metrics, start-up and shutdown) use its typed methods; none of them sees
//! the engine, builds `Effects` or reads the clock for it, so none can forget
//! to deliver what a change produced (frames, closes, journal and webhook
//! events).
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

mod outbox;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use presenced_engine::{
    ClientFrame, ConnId, Effect, Effects, Engine, EngineConfig, ErrorCode, Identity, PresenceEvent,
    RequestError, RestoredUser, SessionRecord, UserDetail, UserId, UserPresence, UserStatus,
};
use serde_json::Value;
use tokio::sync::{Notify, broadcast};

pub use self::outbox::{Outbox, Outgoing};
use crate::clock::{WallWatch, now_ms, random_token, wall_ms};
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
    /// the engine under the lock of the read that needs them ([`recalled`]).
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
    /// while the journal takes no new transitions ([`journal_refuses`]); a
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

    // ----- reads ----------------------------------------------------------

    /// A user's presence with connections and channels; `None` if never
    /// seen. Reads the journal for a user the engine does not remember.
    pub async fn user_detail(&self, user: &str) -> Result<Option<UserDetail>, Unavailable> {
        let found = self.recall([user]).await?;
        Ok(self.change(|engine, now, _| {
            engine.with_recalled(recalled(&found), |engine| engine.user_detail(now, user))
        }))
    }

    /// The presence of each of `users`, in the given order. Reads the
    /// journal for users the engine does not remember.
    pub async fn presence_of(
        &self,
        users: &[String],
    ) -> Result<Vec<(String, UserPresence)>, Unavailable> {
        let found = self.recall(users.iter().map(String::as_str)).await?;
        Ok(self.change(|engine, now, _| {
            engine.with_recalled(recalled(&found), |engine| {
                users
                    .iter()
                    .map(|u| (u.clone(), engine.presence(now, u)))
                    .collect()
            })
        }))
    }

    /// A page of users online or away (or of `status`), in id order.
    pub fn list_users(
        &self,
        status: Option<UserStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<UserDetail>, Option<String>) {
        self.read(|engine, now| engine.list_users(now, status, cursor, limit))
    }

    /// A page of `(channel, members, connections)`, in name order.
    pub fn list_channels(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, usize, usize)>, Option<String>) {
        self.read(|engine, _| engine.list_channels(prefix, cursor, limit))
    }

    /// `(members, connections)` of a channel; `None` if it does not exist.
    pub fn occupancy(&self, channel: &str) -> Option<(usize, usize)> {
        self.read(|engine, _| engine.occupancy(channel))
    }

    /// A page of a channel's member objects; `None` if it does not exist.
    pub fn channel_members(
        &self,
        channel: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Option<(Vec<Value>, Option<String>)> {
        self.read(|engine, _| engine.channel_members(channel, cursor, limit))
    }

    /// The counts and counters `/metrics` shows.
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        let counts = self.counts();
        let c = &self.counters;
        crate::metrics::Snapshot {
            connections: counts.connections,
            users: counts.users,
            channels: counts.channels,
            members: counts.members,
            frames_in: c.frames_in.load(Ordering::Relaxed),
            frames_out: c.frames_out.load(Ordering::Relaxed),
            dropped_broadcasts: c.dropped_broadcasts.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            journal_queue: self.journal.queue_depth(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.read(|engine, _| Counts {
            connections: engine.connection_count(),
            users: engine.users_present(),
            channels: engine.channel_count(),
            members: engine.member_count(),
        })
    }

    // ----- drivers ----------------------------------------------------------

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

/// A connection task's handle on its engine connection: every request of
/// the socket goes through it. Dropping it (the task ended, or panicked)
/// unbinds the socket and detaches the connection, so a connection is never
/// left bound to a socket that is gone: its user gets a grace window and,
/// if nobody comes back, one offline.
#[derive(Debug)]
pub struct HubSocket {
    hub: Arc<Hub>,
    conn: ConnId,
    socket_id: u64,
    outbox: Arc<Outbox>,
}

impl HubSocket {
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Applies one request (not `hello` or `refresh`); its reply and the
    /// frames it produced go into outboxes. A `watch` goes through
    /// [`HubSocket::watch`] instead. A request that would journal a
    /// transition is refused `unavailable` while the journal takes none
    /// ([`journal_refuses`]); `bye` is not (the socket could close anyway).
    pub fn request(&self, req_id: Option<u64>, frame: ClientFrame) {
        let conn = self.conn;
        let journals = matches!(
            frame,
            ClientFrame::Enter { .. }
                | ClientFrame::Update { .. }
                | ClientFrame::Leave { .. }
                | ClientFrame::Unsubscribe { .. }
                | ClientFrame::Status { .. }
        );
        if journals && let Some(e) = journal_refuses(&*self.hub.journal) {
            self.outbox.reply(presenced_engine::error_frame(req_id, &e));
            return;
        }
        self.hub.change(|engine, now, fx| {
            // A refused request is answered in `fx`; nothing else to do.
            let _ = engine.request(now, conn, req_id, frame, fx);
        });
    }

    /// A `watch` request: the users it may watch that the engine does not
    /// remember are read from the journal first (a watch that will be
    /// refused reads nothing); `unavailable` when the journal cannot answer
    /// (and nothing changes).
    pub async fn watch(&self, req_id: Option<u64>, frame: ClientFrame) {
        let conn = self.conn;
        let unknown = match &frame {
            ClientFrame::Watch { users } => {
                self.hub
                    .read(|engine, _| match engine.check_watch(conn, users) {
                        Ok(new) => engine.presence_unknown(new),
                        Err(_) => Vec::new(),
                    })
            }
            _ => Vec::new(),
        };
        match self.hub.look_up(unknown).await {
            Ok(found) => self.hub.change(|engine, now, fx| {
                engine.with_recalled(recalled(&found), |engine| {
                    let _ = engine.request(now, conn, req_id, frame, fx);
                })
            }),
            Err(Unavailable) => {
                let e = RequestError::new(
                    ErrorCode::Unavailable,
                    "users' last presence cannot be read now; retry",
                );
                self.outbox.reply(presenced_engine::error_frame(req_id, &e));
            }
        }
    }

    /// Replaces the connection's identity with a freshly verified one
    /// (`refresh`): channels it may no longer hold end, a new `info`
    /// reaches its member data; false (and an error reply) if it names
    /// another user.
    pub fn refresh(&self, req_id: Option<u64>, ident: Identity) -> bool {
        let conn = self.conn;
        self.hub
            .change(|engine, now, fx| engine.refresh(now, conn, req_id, ident, fx).is_ok())
    }

    /// Sends fresh snapshots after the outbox dropped broadcasts (the client
    /// lagged) and has drained.
    pub fn resync(&self) {
        let conn = self.conn;
        self.hub.change(|engine, now, fx| {
            // Cleared under the lock so no broadcast slips between the
            // snapshot and the flag.
            self.outbox.clear_lagged();
            self.hub.counters.resyncs.fetch_add(1, Ordering::Relaxed);
            engine.resync(now, conn, fx);
        });
    }
}

impl Drop for HubSocket {
    fn drop(&mut self) {
        self.hub.release(self.conn, self.socket_id);
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
