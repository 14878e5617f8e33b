//! The presence state machine.
//!
//! Four indexes, one owner: connections, users (online or away), channels
//! (members and subscribers) and watchers (user → watching connections).
//! Every public method takes the current time in unix milliseconds and
//! appends what must happen to an [`Effects`] buffer. Timers (grace windows,
//! coalescing windows, occupancy throttles) are deadlines the caller honours
//! by calling [`Engine::tick`] no later than [`Engine::next_deadline`].
//!
//! Lock order for callers that share the engine: the engine's lock is the
//! only one; nothing inside calls out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::data::{MemberData, Projection};
use crate::protocol::{
    ClientFrame, ConnStatus, ErrorCode, Frame, RequestError, Time, error_frame, ok_frame,
};
use crate::rules::{ChannelRule, ChannelRules, glob_match};

/// Connection id, unique for the life of the process.
pub type ConnId = u64;
/// User id (`sub` of the token).
pub type UserId = Arc<str>;
/// Channel name, validated.
pub type ChannelName = Arc<str>;

/// Tunables of the engine. Times are milliseconds.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub grace_ms: u64,
    pub heartbeat_ms: u64,
    pub coalesce_ms: u64,
    /// Changes a quiet channel sends at once before it starts coalescing,
    /// and how many of those it earns back a second.
    pub immediate_burst: u64,
    pub immediate_per_sec: u64,
    pub occupancy_interval_ms: u64,
    pub max_data_bytes: usize,
    pub max_channels_per_conn: usize,
    pub max_watch_per_conn: usize,
    pub snapshot_chunk: usize,
    pub guests_watch: bool,
    pub rules: ChannelRules,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            grace_ms: 15_000,
            heartbeat_ms: 20_000,
            coalesce_ms: 50,
            immediate_burst: 10,
            immediate_per_sec: 10,
            occupancy_interval_ms: 1_000,
            max_data_bytes: 2048,
            max_channels_per_conn: 100,
            max_watch_per_conn: 1_000,
            snapshot_chunk: 1_000,
            guests_watch: false,
            rules: ChannelRules::new(Vec::new()),
        }
    }
}

/// Who a connection is, from a verified token (or a guest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// `None` for a guest.
    pub user: Option<String>,
    /// Trusted member data from the token, written to `data.info`.
    pub info: Option<Map<String, Value>>,
    /// Channel globs the token allows; `None` means the server's rules alone.
    pub channels: Option<Vec<String>>,
}

/// Aggregated status of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Online,
    Away,
    Offline,
}

/// Why a member left a channel or a user went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Left,
    Timeout,
    Logout,
    Kicked,
}

/// Presence changes for webhooks, metrics and the journal.
#[derive(Debug, Clone, PartialEq)]
pub enum PresenceEvent {
    UserOnline {
        user: UserId,
        at: u64,
    },
    UserAway {
        user: UserId,
        at: u64,
    },
    UserOffline {
        user: UserId,
        at: u64,
        last_seen: u64,
        reason: Reason,
    },
    MemberJoined {
        user: UserId,
        channel: ChannelName,
        at: u64,
        data: Map<String, Value>,
    },
    /// Member data changed (journal only, not a webhook event).
    MemberUpdated {
        user: UserId,
        channel: ChannelName,
        data: Map<String, Value>,
    },
    MemberLeft {
        user: UserId,
        channel: ChannelName,
        at: u64,
        reason: Reason,
    },
}

/// What the engine asks its caller to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A frame answering the connection's own request: never dropped.
    Reply { conn: ConnId, frame: Frame },
    /// A broadcast frame: may be dropped for a lagging connection, which is
    /// then resynced with [`Engine::resync`].
    Push { conn: ConnId, frame: Frame },
    /// Close the connection's socket.
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// A presence change for observers outside the WebSocket protocol.
    Event(PresenceEvent),
}

/// Output buffer of one engine call.
#[derive(Debug, Default)]
pub struct Effects {
    pub items: Vec<Effect>,
    /// Set when the earliest timer moved earlier, so a sleeping driver wakes.
    pub deadline_moved: bool,
}

impl Effects {
    pub fn new() -> Self {
        Effects::default()
    }

    fn reply(&mut self, conn: ConnId, frame: Frame) {
        self.items.push(Effect::Reply { conn, frame });
    }

    fn push(&mut self, conn: ConnId, frame: Frame) {
        self.items.push(Effect::Push { conn, frame });
    }

    fn event(&mut self, event: PresenceEvent) {
        self.items.push(Effect::Event(event));
    }

    fn done(&mut self, conn: ConnId, id: Option<u64>) {
        if let Some(id) = id {
            self.reply(conn, ok_frame(id));
        }
    }

    fn fail(&mut self, conn: ConnId, id: Option<u64>, error: &RequestError) {
        self.reply(conn, error_frame(id, error));
    }
}

/// Result of [`Engine::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The connection id now bound to the socket (the old one on resume).
    pub conn: ConnId,
    pub resumed: bool,
    /// On resume of a connection whose old socket was still open: the caller
    /// must close that old socket without detaching the connection.
    pub replaced_live_socket: bool,
}

/// Presence of one user as the protocol shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPresence {
    pub status: UserStatus,
    pub since: Option<u64>,
    pub last_seen: Option<u64>,
}

// Per-connection state is kept small: a server holds tens of thousands of
// mostly idle connections. Collections are sorted `Vec`s searched by
// bisection (one exact-size allocation, no hasher state) rather than hash
// tables, which cost a separate table of at least four buckets each.
#[derive(Debug)]
struct Conn {
    user: Option<UserId>,
    info: Option<Box<Map<String, Value>>>,
    allowed: Option<Box<[String]>>,
    status: ConnStatus,
    /// Grace deadline while the socket is gone.
    detached: Option<u64>,
    /// Shared with the `sessions` index; empty for a restored stand-in.
    session: Arc<str>,
    /// Channels this connection is subscribed to or has entered, sorted by
    /// name. At most `max_channels_per_conn`.
    channels: Vec<(ChannelName, Held)>,
    /// Watched users, sorted. At most `max_watch_per_conn`.
    watching: Vec<UserId>,
}

/// What a connection holds in one channel; never both empty.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    /// A member. Not necessarily subscribed: `enter{subscribe: false}`
    /// enters without a subscription.
    entered: bool,
    /// Subscribed, with whether occupancy was asked for.
    sub: Option<bool>,
}

impl Conn {
    fn new(
        user: Option<UserId>,
        info: Option<Map<String, Value>>,
        allowed: Option<Vec<String>>,
        status: ConnStatus,
        detached: Option<u64>,
        session: Arc<str>,
    ) -> Self {
        Conn {
            user,
            info: info.map(Box::new),
            allowed: allowed.map(Vec::into_boxed_slice),
            status,
            detached,
            session,
            channels: Vec::new(),
            watching: Vec::new(),
        }
    }

    /// Replaces the claims of the token (resume, refresh).
    fn set_claims(&mut self, ident: Identity) {
        self.info = ident.info.map(Box::new);
        self.allowed = ident.channels.map(Vec::into_boxed_slice);
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.channels.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    /// Channels this connection holds: subscribed to or entered (the union,
    /// which `max_channels_per_conn` limits).
    fn channel_count(&self) -> usize {
        self.channels.len()
    }

    fn holds_channel(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    fn held(&self, name: &str) -> Held {
        self.find(name)
            .map_or(Held::default(), |i| self.channels[i].1)
    }

    /// The entry of a channel, added empty if missing: the caller fills it.
    fn held_mut(&mut self, name: &ChannelName) -> &mut Held {
        let i = match self.find(name) {
            Ok(i) => i,
            Err(i) => {
                // Most connections hold one channel: no room for four.
                if self.channels.capacity() == 0 {
                    self.channels.reserve_exact(1);
                }
                self.channels.insert(i, (name.clone(), Held::default()));
                i
            }
        };
        &mut self.channels[i].1
    }

    /// Changes the entry of a channel if there is one, and drops it when it
    /// holds nothing any more. Returns the entry as it was.
    fn release(&mut self, name: &str, change: impl FnOnce(&mut Held)) -> Held {
        let Ok(i) = self.find(name) else {
            return Held::default();
        };
        let held = &mut self.channels[i].1;
        let was = *held;
        change(held);
        if !held.entered && held.sub.is_none() {
            self.channels.remove(i);
        }
        was
    }

    /// Marks the channel entered; false if it already was.
    fn enter(&mut self, name: &ChannelName) -> bool {
        !std::mem::replace(&mut self.held_mut(name).entered, true)
    }

    /// Unmarks the channel entered; false if it was not.
    fn leave(&mut self, name: &str) -> bool {
        self.release(name, |h| h.entered = false).entered
    }

    fn is_entered(&self, name: &str) -> bool {
        self.held(name).entered
    }

    fn entered(&self) -> impl Iterator<Item = &ChannelName> {
        self.channels
            .iter()
            .filter(|(_, h)| h.entered)
            .map(|(n, _)| n)
    }

    /// Subscriptions, with whether occupancy was asked for.
    fn subs(&self) -> impl Iterator<Item = (&ChannelName, bool)> {
        self.channels
            .iter()
            .filter_map(|(n, h)| h.sub.map(|occupancy| (n, occupancy)))
    }

    fn is_watching(&self, user: &str) -> bool {
        self.watching.binary_search_by(|w| (**w).cmp(user)).is_ok()
    }

    /// Adds users (callers pass only new ones; a repeat is dropped anyway).
    fn watch(&mut self, new: impl IntoIterator<Item = UserId>) {
        self.watching.extend(new);
        self.watching.sort_unstable();
        self.watching.dedup();
    }

    /// Removes the users of a sorted list.
    fn unwatch(&mut self, sorted: &[String]) {
        self.watching
            .retain(|w| sorted.binary_search_by(|u| u.as_str().cmp(w)).is_err());
    }
}

#[derive(Debug)]
struct User {
    conns: Vec<ConnId>,
    live: usize,
    status: UserStatus,
    since: u64,
    /// When the last live connection dropped (meaningful when `live == 0`).
    last_live_at: u64,
}

#[derive(Debug, Clone, Copy)]
struct OfflineRecord {
    since: u64,
    last_seen: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct Member {
    /// Serialized once here; frames write it as is.
    data: MemberData,
    conns: u32,
    since: u64,
}

/// A member's change since the last flush of its channel, netted.
#[derive(Debug)]
enum Pending {
    Joined,
    Updated { old: Member },
    Left { old: Member, reason: Reason },
}

#[derive(Debug, Clone, Copy)]
struct Sub {
    guest: bool,
    occupancy: bool,
    live: bool,
}

#[derive(Debug)]
struct Channel {
    members: BTreeMap<UserId, Member>,
    subscribers: HashMap<ConnId, Sub>,
    connections: usize,
    seq: u64,
    pending: BTreeMap<UserId, Pending>,
    window_until: Option<u64>,
    /// Token bucket (in thousandths) of changes sent at once, without a
    /// coalescing window.
    immediate_milli: u64,
    immediate_at: u64,
    occupancy_sent: Option<(usize, usize)>,
    occupancy_next: u64,
    occupancy_timer: Option<u64>,
    /// Snapshot as of the last flush, per projection (full, public).
    snapshot: [Option<(u64, Arc<Vec<Frame>>)>; 2],
}

impl Channel {
    fn new() -> Self {
        Channel {
            members: BTreeMap::new(),
            subscribers: HashMap::new(),
            connections: 0,
            seq: 0,
            pending: BTreeMap::new(),
            window_until: None,
            immediate_milli: u64::MAX,
            immediate_at: 0,
            occupancy_sent: None,
            occupancy_next: 0,
            occupancy_timer: None,
            snapshot: [None, None],
        }
    }

    fn occupancy(&self) -> (usize, usize) {
        (self.members.len(), self.connections)
    }

    /// Takes a token for sending a change at once; refills `per_sec` a
    /// second up to `burst` (a new channel starts full).
    fn take_immediate(&mut self, now: u64, burst: u64, per_sec: u64) -> bool {
        let cap = burst.saturating_mul(1000);
        let refill = now
            .saturating_sub(self.immediate_at)
            .saturating_mul(per_sec);
        self.immediate_milli = self.immediate_milli.saturating_add(refill).min(cap);
        self.immediate_at = now;
        if self.immediate_milli >= 1000 {
            self.immediate_milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Last writer wins: replaces a member's data and notes the update;
    /// false when the data was already that.
    fn replace_data(
        &mut self,
        name: &ChannelName,
        user: &UserId,
        data: Map<String, Value>,
        out: &mut Effects,
    ) -> bool {
        let Some(m) = self.members.get_mut(user) else {
            return false;
        };
        let stored = MemberData::from_map(&data);
        if m.data == stored {
            return false;
        }
        out.event(PresenceEvent::MemberUpdated {
            user: user.clone(),
            channel: name.clone(),
            data,
        });
        let old = m.clone();
        m.data = stored;
        self.note(user, Pending::Updated { old });
        true
    }

    fn note(&mut self, user: &UserId, change: Pending) {
        use Pending::*;
        let next = match (self.pending.remove(user), change) {
            (None, c) => Some(c),
            (Some(Joined), Joined | Updated { .. }) => Some(Joined),
            (Some(Joined), Left { .. }) => None,
            (Some(Updated { old }), Joined | Updated { .. }) => Some(Updated { old }),
            (Some(Updated { old }), Left { reason, .. }) => Some(Left { old, reason }),
            (Some(Left { old, .. }), _) => Some(Updated { old }),
        };
        if let Some(next) = next {
            self.pending.insert(user.clone(), next);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Grace(ConnId),
    Window(ChannelName),
    Occupancy(ChannelName),
}

/// The presence engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    /// Boxed: a table sized for growth keeps up to half its slots empty, and
    /// an empty slot costs 16 bytes this way, not a whole `Conn`.
    conns: HashMap<ConnId, Box<Conn>>,
    users: BTreeMap<UserId, User>,
    offline: HashMap<UserId, OfflineRecord>,
    channels: BTreeMap<ChannelName, Channel>,
    watchers: HashMap<UserId, HashSet<ConnId>>,
    sessions: HashMap<Arc<str>, ConnId>,
    timers: BTreeSet<(u64, Timer)>,
}

#[derive(Serialize)]
struct MemberOut<'a> {
    user: &'a str,
    data: &'a RawValue,
    conns: u32,
    since: Time,
}

#[derive(Serialize)]
struct PublicMemberOut<'a> {
    user: &'a str,
    data: Projection<'a>,
}

#[derive(Serialize)]
struct PresenceOut {
    status: UserStatus,
    since: Option<Time>,
    last_seen: Option<Time>,
}

impl From<UserPresence> for PresenceOut {
    fn from(p: UserPresence) -> Self {
        PresenceOut {
            status: p.status,
            since: p.since.map(Time),
            last_seen: p.last_seen.map(Time),
        }
    }
}

/// A member as one subscriber sees it: whole, or a guest's public projection.
#[derive(Serialize)]
#[serde(untagged)]
enum MemberView<'a> {
    Full(MemberOut<'a>),
    Public(PublicMemberOut<'a>),
}

fn member_view<'a>(user: &'a str, m: &'a Member, public: Option<&ChannelRule>) -> MemberView<'a> {
    match public {
        None => MemberView::Full(MemberOut {
            user,
            data: m.data.raw(),
            conns: m.conns,
            since: Time(m.since),
        }),
        Some(rule) => MemberView::Public(PublicMemberOut {
            user,
            data: m.data.project(rule),
        }),
    }
}

const E_FORBIDDEN: RequestError =
    RequestError::new(ErrorCode::Forbidden, "not allowed on this channel");
const E_GUEST: RequestError = RequestError::new(ErrorCode::Forbidden, "guests may not do this");
const E_NOT_MEMBER: RequestError = RequestError::new(
    ErrorCode::NotMember,
    "this connection has not entered the channel",
);
const E_TOO_LARGE: RequestError = RequestError::new(ErrorCode::TooLarge, "data is over the limit");
const E_CHANNELS: RequestError = RequestError::new(
    ErrorCode::LimitExceeded,
    "too many channels on this connection",
);
const E_WATCH: RequestError = RequestError::new(
    ErrorCode::LimitExceeded,
    "too many watched users on this connection",
);
const E_FULL: RequestError = RequestError::new(ErrorCode::LimitExceeded, "the channel is full");
const E_GONE: RequestError = RequestError::new(ErrorCode::Unauthorized, "connection closed");
const E_HELLO: RequestError = RequestError::new(ErrorCode::BadRequest, "already said hello");
const E_OTHER_USER: RequestError = RequestError::new(
    ErrorCode::Forbidden,
    "a refreshed token must be for the same user",
);

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            conns: HashMap::new(),
            users: BTreeMap::new(),
            offline: HashMap::new(),
            channels: BTreeMap::new(),
            watchers: HashMap::new(),
            sessions: HashMap::new(),
            timers: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    // ----- timers -------------------------------------------------------

    fn set_timer(&mut self, at: u64, timer: Timer, out: &mut Effects) {
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

    // ----- connections --------------------------------------------------

    /// A socket said `hello` with a verified identity. `conn` is a fresh id
    /// and `session` a fresh unguessable token, both from the caller. Sends
    /// `welcome` (and on resume the snapshots) to the connection.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &mut self,
        now: u64,
        conn: ConnId,
        ident: Identity,
        resume: Option<&str>,
        session: String,
        req_id: Option<u64>,
        out: &mut Effects,
    ) -> Attached {
        let user: Option<UserId> = ident.user.as_deref().map(Arc::from);
        if let Some(old) = resume.and_then(|s| self.sessions.get(s).copied())
            && self.conns.get(&old).is_some_and(|c| c.user == user)
        {
            return self.resume(now, old, ident, session, req_id, out);
        }
        let session: Arc<str> = Arc::from(session);
        self.sessions.insert(session.clone(), conn);
        self.conns.insert(
            conn,
            Box::new(Conn::new(
                user.clone(),
                ident.info,
                ident.channels,
                ConnStatus::Online,
                None,
                session.clone(),
            )),
        );
        if let Some(user) = &user {
            match self.users.get_mut(user) {
                Some(u) => {
                    u.conns.push(conn);
                    u.live += 1;
                    self.recompute_status(now, user, out);
                }
                None => {
                    self.offline.remove(user);
                    self.users.insert(
                        user.clone(),
                        User {
                            conns: vec![conn],
                            live: 1,
                            status: UserStatus::Online,
                            since: now,
                            last_live_at: now,
                        },
                    );
                    out.event(PresenceEvent::UserOnline {
                        user: user.clone(),
                        at: now,
                    });
                    self.notify_watchers(now, user, out);
                }
            }
        }
        self.welcome(conn, req_id, &session, false, out);
        Attached {
            conn,
            resumed: false,
            replaced_live_socket: false,
        }
    }

    fn resume(
        &mut self,
        now: u64,
        conn: ConnId,
        ident: Identity,
        session: String,
        req_id: Option<u64>,
        out: &mut Effects,
    ) -> Attached {
        let session: Arc<str> = Arc::from(session);
        let c = self.conns.get_mut(&conn).expect("resumed conn exists");
        let old_session = std::mem::replace(&mut c.session, session.clone());
        c.set_claims(ident);
        let was_detached = c.detached.take();
        let channels: Vec<ChannelName> = c.subs().map(|(n, _)| n.clone()).collect();
        let user = c.user.clone();
        self.sessions.remove(&old_session);
        self.sessions.insert(session.clone(), conn);
        if let Some(deadline) = was_detached {
            self.timers.remove(&(deadline, Timer::Grace(conn)));
            if let Some(u) = user.as_ref().and_then(|u| self.users.get_mut(u)) {
                u.live += 1;
            }
            for name in &channels {
                if let Some(sub) = self
                    .channels
                    .get_mut(name)
                    .and_then(|ch| ch.subscribers.get_mut(&conn))
                {
                    sub.live = true;
                }
            }
        }
        self.welcome(conn, req_id, &session, true, out);
        self.resync(now, conn, out);
        Attached {
            conn,
            resumed: true,
            replaced_live_socket: was_detached.is_none(),
        }
    }

    fn welcome(
        &mut self,
        conn: ConnId,
        id: Option<u64>,
        session: &str,
        resumed: bool,
        out: &mut Effects,
    ) {
        #[derive(Serialize)]
        struct WelcomeOut<'a> {
            t: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<u64>,
            conn: String,
            user: Option<&'a str>,
            session: &'a str,
            resumed: bool,
            heartbeat_ms: u64,
            grace_ms: u64,
        }
        let user = self.conns.get(&conn).and_then(|c| c.user.clone());
        let frame = Frame::from_json(&WelcomeOut {
            t: "welcome",
            id,
            conn: conn.to_string(),
            user: user.as_deref(),
            session,
            resumed,
            heartbeat_ms: self.cfg.heartbeat_ms,
            grace_ms: self.cfg.grace_ms,
        });
        out.reply(conn, frame);
    }

    /// Sends fresh snapshots, occupancy and watched presence: after a resume,
    /// or when a lagging connection's outbox has drained.
    pub fn resync(&mut self, now: u64, conn: ConnId, out: &mut Effects) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let subs: Vec<(ChannelName, bool)> = c.subs().map(|(k, v)| (k.clone(), v)).collect();
        let watching: Vec<UserId> = c.watching.clone();
        let guest = c.user.is_none();
        for (name, occupancy) in subs {
            self.send_snapshot(conn, &name, guest, occupancy, out);
        }
        if !watching.is_empty() {
            let frame = self.presence_frame(now, watching.iter().map(|u| &**u));
            out.reply(conn, frame);
        }
    }

    /// The socket went away (closed, heartbeat missed, token expired): the
    /// connection is kept for the grace window.
    pub fn disconnect(&mut self, now: u64, conn: ConnId, out: &mut Effects) {
        let grace = self.cfg.grace_ms;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.detached.is_some() {
            return;
        }
        let deadline = now + grace;
        c.detached = Some(deadline);
        let user = c.user.clone();
        let subs: Vec<ChannelName> = c.subs().map(|(n, _)| n.clone()).collect();
        for name in subs {
            if let Some(sub) = self
                .channels
                .get_mut(&name)
                .and_then(|ch| ch.subscribers.get_mut(&conn))
            {
                sub.live = false;
            }
        }
        if let Some(u) = user.as_ref().and_then(|u| self.users.get_mut(u)) {
            u.live -= 1;
            if u.live == 0 {
                u.last_live_at = now;
            }
        }
        self.set_timer(deadline, Timer::Grace(conn), out);
    }

    /// Closes every connection of a user at once (HTTP API kick): close 4409,
    /// members leave with reason `kicked`, the user goes offline now.
    pub fn kick_user(&mut self, now: u64, user: &str, out: &mut Effects) -> usize {
        let conns = self
            .users
            .get(user)
            .map(|u| u.conns.clone())
            .unwrap_or_default();
        for &conn in &conns {
            let live = self.conns.get(&conn).is_some_and(|c| c.detached.is_none());
            // No status recompute between removals: the user goes straight
            // to offline, never through a passing `away`.
            self.remove_conn_inner(now, conn, Reason::Kicked, false, out);
            if live {
                out.items.push(Effect::Close {
                    conn,
                    code: 4409,
                    reason: "kicked",
                });
            }
        }
        conns.len()
    }

    /// Removes a connection for good: its members leave, its subscriptions
    /// and watches end, and the user goes offline if it was the last one.
    fn remove_conn(&mut self, now: u64, conn: ConnId, reason: Reason, out: &mut Effects) {
        self.remove_conn_inner(now, conn, reason, true, out);
    }

    fn remove_conn_inner(
        &mut self,
        now: u64,
        conn: ConnId,
        reason: Reason,
        recompute: bool,
        out: &mut Effects,
    ) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(deadline) = c.detached {
            self.timers.remove(&(deadline, Timer::Grace(conn)));
        }
        self.sessions.remove(&c.session);
        if let Some(user) = &c.user {
            for name in c.entered() {
                self.member_conn_leaves(now, name, user, reason, out);
            }
        }
        for (name, _) in c.subs() {
            if let Some(ch) = self.channels.get_mut(name) {
                ch.subscribers.remove(&conn);
            }
            self.drop_channel_if_empty(name);
        }
        for watched in &c.watching {
            self.unwatch_one(conn, watched);
        }
        let Some(user) = c.user else { return };
        let Some(u) = self.users.get_mut(&user) else {
            return;
        };
        u.conns.retain(|&x| x != conn);
        if c.detached.is_none() {
            u.live -= 1;
            if u.live == 0 {
                u.last_live_at = now;
            }
        }
        if u.conns.is_empty() {
            let last_seen = u.last_live_at;
            self.users.remove(&user);
            self.offline.insert(
                user.clone(),
                OfflineRecord {
                    since: now,
                    last_seen,
                },
            );
            out.event(PresenceEvent::UserOffline {
                user: user.clone(),
                at: now,
                last_seen,
                reason,
            });
            self.notify_watchers(now, &user, out);
        } else if recompute {
            self.recompute_status(now, &user, out);
        }
    }

    fn recompute_status(&mut self, now: u64, user: &UserId, out: &mut Effects) {
        let Some(u) = self.users.get(user) else {
            return;
        };
        let all_away = u.conns.iter().all(|c| {
            self.conns
                .get(c)
                .is_some_and(|c| c.status == ConnStatus::Away)
        });
        let status = if all_away {
            UserStatus::Away
        } else {
            UserStatus::Online
        };
        if status == u.status {
            return;
        }
        let u = self.users.get_mut(user).expect("checked above");
        u.status = status;
        u.since = now;
        out.event(match status {
            UserStatus::Away => PresenceEvent::UserAway {
                user: user.clone(),
                at: now,
            },
            _ => PresenceEvent::UserOnline {
                user: user.clone(),
                at: now,
            },
        });
        self.notify_watchers(now, user, out);
    }

    // ----- requests -----------------------------------------------------

    /// Applies one request of a connection that already said hello. Sends the
    /// reply (`ok`/`error`, when an id was given or on error) after the frames
    /// the request produced. `Hello` and `Refresh` carry no verified identity
    /// here: use [`Engine::refresh`] for the latter.
    pub fn request(
        &mut self,
        now: u64,
        conn: ConnId,
        id: Option<u64>,
        frame: ClientFrame,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        if !self.conns.contains_key(&conn) {
            // Removed (kicked) between the frame's arrival and this call:
            // its socket is closing, nothing to answer.
            return Err(E_GONE);
        }
        let result = self.apply(now, conn, frame, out);
        match &result {
            Ok(()) => out.done(conn, id),
            Err(e) => out.fail(conn, id, e),
        }
        if result.is_ok() && !self.conns.contains_key(&conn) {
            // `bye`: the reply is out, now the socket closes.
            out.items.push(Effect::Close {
                conn,
                code: 1000,
                reason: "bye",
            });
        }
        result
    }

    /// Replaces a connection's verified identity (`refresh`). Same user only.
    pub fn refresh(
        &mut self,
        conn: ConnId,
        id: Option<u64>,
        ident: Identity,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let result = match self.conns.get_mut(&conn) {
            Some(c) if c.user.as_deref() == ident.user.as_deref() && c.user.is_some() => {
                c.set_claims(ident);
                Ok(())
            }
            _ => Err(E_OTHER_USER),
        };
        match &result {
            Ok(()) => out.done(conn, id),
            Err(e) => out.fail(conn, id, e),
        }
        result
    }

    fn apply(
        &mut self,
        now: u64,
        conn: ConnId,
        frame: ClientFrame,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let guest = self.conns.get(&conn).is_none_or(|c| c.user.is_none());
        match frame {
            ClientFrame::Hello { .. } => Err(E_HELLO),
            ClientFrame::Refresh { .. } => Err(E_OTHER_USER),
            ClientFrame::Ping => {
                #[derive(Serialize)]
                struct PongOut {
                    t: &'static str,
                }
                out.reply(conn, Frame::from_json(&PongOut { t: "pong" }));
                Ok(())
            }
            ClientFrame::Subscribe { channel, occupancy } => {
                let name = self.channel_name(channel);
                self.check_subscribe(conn, &name)?;
                self.subscribe(conn, &name, Some(occupancy), out);
                Ok(())
            }
            ClientFrame::Unsubscribe { channel } => {
                let name = self.channel_name(channel);
                self.unsubscribe(now, conn, &name, out);
                Ok(())
            }
            ClientFrame::Enter {
                channel,
                data,
                subscribe,
            } => {
                if guest {
                    return Err(E_GUEST);
                }
                self.enter(now, conn, self.channel_name(channel), data, subscribe, out)
            }
            ClientFrame::Update { channel, data } => {
                if guest {
                    return Err(E_GUEST);
                }
                self.update(now, conn, &self.channel_name(channel), data, out)
            }
            ClientFrame::Leave { channel } => {
                if guest {
                    return Err(E_GUEST);
                }
                self.leave(now, conn, &self.channel_name(channel), out)
            }
            ClientFrame::Publish { channel, data } => {
                if guest {
                    return Err(E_GUEST);
                }
                self.publish(conn, &self.channel_name(channel), data, out)
            }
            ClientFrame::Status { status } => {
                if guest {
                    return Err(E_GUEST);
                }
                let c = self
                    .conns
                    .get_mut(&conn)
                    .expect("request from a known conn");
                c.status = status;
                let user = c.user.clone().expect("not a guest");
                self.recompute_status(now, &user, out);
                Ok(())
            }
            ClientFrame::Watch { users } => self.watch(now, conn, users, out),
            ClientFrame::Unwatch { mut users } => {
                users.sort_unstable();
                users.dedup();
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.unwatch(&users);
                }
                for u in &users {
                    self.unwatch_one(conn, u);
                }
                Ok(())
            }
            ClientFrame::Bye => {
                self.remove_conn(now, conn, Reason::Logout, out);
                Ok(())
            }
        }
    }

    /// The name as the existing channel holds it: connections that enter
    /// or subscribe share that one allocation instead of holding a copy each
    /// (and lookups need none).
    fn channel_name(&self, name: String) -> ChannelName {
        match self.channels.get_key_value(name.as_str()) {
            Some((existing, _)) => existing.clone(),
            None => Arc::from(name),
        }
    }

    fn token_allows(conn: &Conn, channel: &str) -> bool {
        conn.allowed
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| glob_match(g, channel)))
    }

    fn check_subscribe(&self, conn: ConnId, name: &ChannelName) -> Result<(), RequestError> {
        let c = self.conns.get(&conn).expect("request from a known conn");
        let rule = self.cfg.rules.rule_for(name);
        let allowed = match c.user {
            None => rule.guests,
            Some(_) => rule.subscribe && Self::token_allows(c, name),
        };
        if !allowed {
            return Err(E_FORBIDDEN);
        }
        // Subscribed or entered both count: `enter{subscribe: false}` must
        // not get around the limit.
        if !c.holds_channel(name) && c.channel_count() >= self.cfg.max_channels_per_conn {
            return Err(E_CHANNELS);
        }
        Ok(())
    }

    /// Adds (or refreshes) a subscription and sends its snapshot. `occupancy`
    /// `None` keeps the current choice.
    fn subscribe(
        &mut self,
        conn: ConnId,
        name: &ChannelName,
        occupancy: Option<bool>,
        out: &mut Effects,
    ) {
        let c = self
            .conns
            .get_mut(&conn)
            .expect("request from a known conn");
        let guest = c.user.is_none();
        let occupancy = occupancy.unwrap_or_else(|| c.held(name).sub.unwrap_or(false));
        c.held_mut(name).sub = Some(occupancy);
        let ch = self
            .channels
            .entry(name.clone())
            .or_insert_with(Channel::new);
        ch.subscribers.insert(
            conn,
            Sub {
                guest,
                occupancy,
                live: true,
            },
        );
        self.send_snapshot(conn, name, guest, occupancy, out);
    }

    /// Ends the subscription, if any, and leaves the channel if this
    /// connection entered it (with or without a subscription).
    fn unsubscribe(&mut self, now: u64, conn: ConnId, name: &ChannelName, out: &mut Effects) {
        let c = self
            .conns
            .get_mut(&conn)
            .expect("request from a known conn");
        let was = c.release(name, |h| *h = Held::default());
        let was_subscribed = was.sub.is_some();
        if was.entered {
            let user = c.user.clone().expect("only users enter");
            self.member_conn_leaves(now, name, &user, Reason::Left, out);
        }
        if was_subscribed {
            if let Some(ch) = self.channels.get_mut(name) {
                ch.subscribers.remove(&conn);
            }
            self.drop_channel_if_empty(name);
        }
    }

    /// Client data with the trusted `info` claim in place of whatever the
    /// client sent under that key.
    fn member_data(conn: &Conn, mut data: Map<String, Value>) -> Map<String, Value> {
        data.remove("info");
        if let Some(info) = &conn.info {
            data.insert("info".into(), Value::Object((**info).clone()));
        }
        data
    }

    fn check_data_size(&self, data: &Value) -> Result<(), RequestError> {
        let size = serde_json::to_vec(data)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > self.cfg.max_data_bytes {
            return Err(E_TOO_LARGE);
        }
        Ok(())
    }

    /// Makes the connection a member. With `subscribe` it also subscribes
    /// (and gets a fresh snapshot); without, an existing subscription stays
    /// as it is and no snapshot is sent.
    fn enter(
        &mut self,
        now: u64,
        conn: ConnId,
        name: ChannelName,
        data: Option<Map<String, Value>>,
        subscribe: bool,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let c = self.conns.get(&conn).expect("request from a known conn");
        let user = c.user.clone().expect("only users enter");
        let rule = self.cfg.rules.rule_for(&name);
        if !rule.enter || !Self::token_allows(c, &name) {
            return Err(E_FORBIDDEN);
        }
        self.check_subscribe(conn, &name)?;
        let data = match data {
            Some(d) => {
                let d = Value::Object(d);
                self.check_data_size(&d)?;
                let Value::Object(d) = d else { unreachable!() };
                Some(Self::member_data(c, d))
            }
            None => None,
        };
        let already_member = self
            .channels
            .get(&name)
            .is_some_and(|ch| ch.members.contains_key(&user));
        if let Some(max) = rule.max_members
            && !already_member
            && self
                .channels
                .get(&name)
                .is_some_and(|ch| ch.members.len() >= max)
        {
            return Err(E_FULL);
        }
        // All checks passed: from here on nothing fails.
        if subscribe {
            self.subscribe(conn, &name, None, out);
        }
        let c = self
            .conns
            .get_mut(&conn)
            .expect("request from a known conn");
        let new_conn_in_channel = c.enter(&name);
        let ch = self
            .channels
            .entry(name.clone())
            .or_insert_with(Channel::new);
        let mut occupancy_changed = false;
        match ch.members.get_mut(&user) {
            Some(m) => {
                if new_conn_in_channel {
                    m.conns += 1;
                    ch.connections += 1;
                    occupancy_changed = true;
                    ch.snapshot = [None, None];
                }
                if let Some(d) = data {
                    ch.replace_data(&name, &user, d, out);
                }
            }
            None => {
                let data = data.unwrap_or_else(|| Self::member_data(c, Map::new()));
                let stored = MemberData::from_map(&data);
                out.event(PresenceEvent::MemberJoined {
                    user: user.clone(),
                    channel: name.clone(),
                    at: now,
                    data,
                });
                ch.members.insert(
                    user.clone(),
                    Member {
                        data: stored,
                        conns: 1,
                        since: now,
                    },
                );
                ch.connections += 1;
                ch.note(&user, Pending::Joined);
                occupancy_changed = true;
            }
        }
        self.changed(now, &name, out);
        if occupancy_changed {
            self.occupancy_changed(now, &name, out);
        }
        Ok(())
    }

    fn update(
        &mut self,
        now: u64,
        conn: ConnId,
        name: &ChannelName,
        data: Map<String, Value>,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let c = self.conns.get(&conn).expect("request from a known conn");
        if !c.is_entered(name) {
            return Err(E_NOT_MEMBER);
        }
        let data = Value::Object(data);
        self.check_data_size(&data)?;
        let Value::Object(data) = data else {
            unreachable!()
        };
        let data = Self::member_data(c, data);
        let user = c.user.clone().expect("only users enter");
        let ch = self.channels.get_mut(name).expect("entered channel exists");
        if ch.replace_data(name, &user, data, out) {
            self.changed(now, name, out);
        }
        Ok(())
    }

    fn leave(
        &mut self,
        now: u64,
        conn: ConnId,
        name: &ChannelName,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let c = self
            .conns
            .get_mut(&conn)
            .expect("request from a known conn");
        if !c.leave(name) {
            return Err(E_NOT_MEMBER);
        }
        let user = c.user.clone().expect("only users enter");
        self.member_conn_leaves(now, name, &user, Reason::Left, out);
        Ok(())
    }

    fn publish(
        &mut self,
        conn: ConnId,
        name: &ChannelName,
        data: Value,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let c = self.conns.get(&conn).expect("request from a known conn");
        let rule = self.cfg.rules.rule_for(name);
        if !rule.publish || !rule.subscribe || !Self::token_allows(c, name) {
            return Err(E_FORBIDDEN);
        }
        self.check_data_size(&data)?;
        let from = c.user.clone();
        self.broadcast_message(name, from.as_deref(), &data, Some(conn), out);
        Ok(())
    }

    /// Sends `message` to a channel's subscribers (the HTTP API uses this with
    /// `from: None`). Returns how many connections it reached.
    pub fn broadcast_message(
        &mut self,
        name: &str,
        from: Option<&str>,
        data: &Value,
        except: Option<ConnId>,
        out: &mut Effects,
    ) -> usize {
        #[derive(Serialize)]
        struct MessageOut<'a> {
            t: &'static str,
            channel: &'a str,
            from: Option<&'a str>,
            data: &'a Value,
        }
        let Some(ch) = self.channels.get(name) else {
            return 0;
        };
        let frame = Frame::from_json(&MessageOut {
            t: "message",
            channel: name,
            from,
            data,
        });
        let mut n = 0;
        for (&sub, s) in &ch.subscribers {
            if s.live && Some(sub) != except {
                out.push(sub, frame.clone());
                n += 1;
            }
        }
        n
    }

    fn watch(
        &mut self,
        now: u64,
        conn: ConnId,
        users: Vec<String>,
        out: &mut Effects,
    ) -> Result<(), RequestError> {
        let c = self.conns.get(&conn).expect("request from a known conn");
        if c.user.is_none() && !self.cfg.guests_watch {
            return Err(E_GUEST);
        }
        let mut new: Vec<&str> = users
            .iter()
            .map(String::as_str)
            .filter(|u| !c.is_watching(u))
            .collect();
        new.sort_unstable();
        new.dedup();
        if c.watching.len() + new.len() > self.cfg.max_watch_per_conn {
            return Err(E_WATCH);
        }
        let new: Vec<UserId> = new.into_iter().map(Arc::from).collect();
        for u in &new {
            self.watchers.entry(u.clone()).or_default().insert(conn);
        }
        self.conns
            .get_mut(&conn)
            .expect("request from a known conn")
            .watch(new);
        let frame = self.presence_frame(now, users.iter().map(String::as_str));
        out.reply(conn, frame);
        Ok(())
    }

    fn unwatch_one(&mut self, conn: ConnId, user: &str) {
        if let Some(set) = self.watchers.get_mut(user) {
            set.remove(&conn);
            if set.is_empty() {
                self.watchers.remove(user);
            }
        }
    }

    // ----- membership and fan-out ----------------------------------------

    /// One connection of `user` stops being in the channel; the member
    /// leaves when it was the user's last connection there.
    fn member_conn_leaves(
        &mut self,
        now: u64,
        name: &ChannelName,
        user: &UserId,
        reason: Reason,
        out: &mut Effects,
    ) {
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let Some(m) = ch.members.get_mut(user) else {
            return;
        };
        m.conns -= 1;
        ch.connections -= 1;
        if m.conns == 0 {
            let mut old = ch.members.remove(user).expect("just looked up");
            // As the member was before this leave, for snapshots taken
            // inside the coalescing window.
            old.conns = 1;
            ch.note(user, Pending::Left { old, reason });
            out.event(PresenceEvent::MemberLeft {
                user: user.clone(),
                channel: name.clone(),
                at: now,
                reason,
            });
            self.changed(now, name, out);
        } else {
            ch.snapshot = [None, None];
        }
        self.occupancy_changed(now, name, out);
        self.drop_channel_if_empty(name);
    }

    /// A member change was noted: send it now if the channel is quiet, else
    /// let the open window collect it.
    fn changed(&mut self, now: u64, name: &ChannelName, out: &mut Effects) {
        let (burst, per_sec, coalesce) = (
            self.cfg.immediate_burst,
            self.cfg.immediate_per_sec,
            self.cfg.coalesce_ms,
        );
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
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

    fn window_ends(&mut self, now: u64, name: &ChannelName, out: &mut Effects) {
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
    fn flush(&mut self, now: u64, name: &ChannelName, open_window: bool, out: &mut Effects) {
        let Engine {
            cfg,
            channels,
            timers,
            ..
        } = self;
        let Some(ch) = channels.get_mut(name) else {
            return;
        };
        let rule = cfg.rules.rule_for(name);
        let pending = std::mem::take(&mut ch.pending);
        if pending.is_empty() {
            return;
        }
        ch.seq += 1;
        ch.snapshot = [None, None];
        let has_guests = ch.subscribers.values().any(|s| s.guest && s.live);
        let has_users = ch.subscribers.values().any(|s| !s.guest && s.live);
        let full = has_users.then(|| event_frame(name, ch, &pending, None));
        let public = has_guests.then(|| event_frame(name, ch, &pending, Some(rule)));
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

    fn send_snapshot(
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
                let frames = Arc::new(snapshot_frames(name, ch, guest.then_some(rule), chunk));
                ch.snapshot[slot] = Some((ch.seq, frames.clone()));
                frames
            }
        };
        for f in frames.iter() {
            out.reply(conn, f.clone());
        }
        if occupancy {
            let current = ch.occupancy();
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

    fn occupancy_changed(&mut self, now: u64, name: &ChannelName, out: &mut Effects) {
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

    fn send_occupancy_if_changed(&mut self, now: u64, name: &ChannelName, out: &mut Effects) {
        let interval = self.cfg.occupancy_interval_ms;
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let current = ch.occupancy();
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

    fn drop_channel_if_empty(&mut self, name: &ChannelName) {
        let Some(ch) = self.channels.get(name) else {
            return;
        };
        if !ch.members.is_empty() || !ch.subscribers.is_empty() {
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

    // ----- presence of users ---------------------------------------------

    /// Current presence of a user.
    pub fn presence(&self, now: u64, user: &str) -> UserPresence {
        if let Some(u) = self.users.get(user) {
            UserPresence {
                status: u.status,
                since: Some(u.since),
                last_seen: Some(if u.live > 0 { now } else { u.last_live_at }),
            }
        } else if let Some(r) = self.offline.get(user) {
            UserPresence {
                status: UserStatus::Offline,
                since: Some(r.since),
                last_seen: Some(r.last_seen),
            }
        } else {
            UserPresence {
                status: UserStatus::Offline,
                since: None,
                last_seen: None,
            }
        }
    }

    fn presence_frame<'a>(&self, now: u64, users: impl Iterator<Item = &'a str>) -> Frame {
        #[derive(Serialize)]
        struct PresenceFrameOut<'a> {
            t: &'static str,
            users: BTreeMap<&'a str, PresenceOut>,
        }
        let users = users
            .map(|u| (u, PresenceOut::from(self.presence(now, u))))
            .collect();
        Frame::from_json(&PresenceFrameOut {
            t: "presence",
            users,
        })
    }

    fn notify_watchers(&mut self, now: u64, user: &UserId, out: &mut Effects) {
        let Some(watchers) = self.watchers.get(user) else {
            return;
        };
        let frame = self.presence_frame(now, std::iter::once(&**user));
        for conn in watchers {
            if self.conns.get(conn).is_some_and(|c| c.detached.is_none()) {
                out.push(*conn, frame.clone());
            }
        }
    }

    // ----- reads for the HTTP API, metrics and tests ---------------------

    /// `(members, connections)` of a channel, if it exists.
    pub fn occupancy(&self, channel: &str) -> Option<(usize, usize)> {
        self.channels.get(channel).map(Channel::occupancy)
    }

    /// Number of users online or away.
    pub fn users_present(&self) -> usize {
        self.users.len()
    }

    /// Number of connections, live or inside grace.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Number of channels that exist.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// User ids of a channel's members, in order.
    pub fn member_ids(&self, channel: &str) -> Vec<String> {
        self.channels
            .get(channel)
            .map(|ch| ch.members.keys().map(|u| u.to_string()).collect())
            .unwrap_or_default()
    }

    /// Whether the connection exists (live or inside grace).
    pub fn has_conn(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// A user's presence with its connections and channels; `None` if the
    /// user was never seen.
    pub fn user_detail(&self, now: u64, user: &str) -> Option<UserDetail> {
        let presence = self.presence(now, user);
        presence.since?;
        let (connections, channels) = match self.users.get(user) {
            Some(u) => {
                let mut channels: BTreeSet<&str> = BTreeSet::new();
                for c in u.conns.iter().filter_map(|c| self.conns.get(c)) {
                    channels.extend(c.entered().map(|n| &**n));
                }
                (
                    u.conns.len(),
                    channels.into_iter().map(str::to_owned).collect(),
                )
            }
            None => (0, Vec::new()),
        };
        Some(UserDetail {
            user: user.to_owned(),
            presence,
            connections,
            channels,
        })
    }

    /// Users online or away (or only those with `status`), in id order after
    /// `cursor`, at most `limit`; the cursor of the next page if any.
    pub fn list_users(
        &self,
        now: u64,
        status: Option<UserStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<UserDetail>, Option<String>) {
        use std::ops::Bound;
        let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let mut iter = self
            .users
            .range::<str, _>((start, Bound::Unbounded))
            .filter(|(_, u)| status.is_none_or(|s| s == u.status))
            .map(|(id, _)| id);
        let page: Vec<UserDetail> = iter
            .by_ref()
            .take(limit)
            .filter_map(|id| self.user_detail(now, id))
            .collect();
        let next = match iter.next() {
            Some(_) => page.last().map(|u| u.user.clone()),
            None => None,
        };
        (page, next)
    }

    /// Channels whose name starts with `prefix`, in name order after
    /// `cursor`: `(name, members, connections)`.
    pub fn list_channels(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, usize, usize)>, Option<String>) {
        use std::ops::Bound;
        let start = match cursor {
            Some(c) if c >= prefix => Bound::Excluded(c),
            _ => Bound::Included(prefix),
        };
        let mut iter = self
            .channels
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix));
        let page: Vec<(String, usize, usize)> = iter
            .by_ref()
            .take(limit)
            .map(|(name, ch)| (name.to_string(), ch.members.len(), ch.connections))
            .collect();
        let next = match iter.next() {
            Some(_) => page.last().map(|c| c.0.clone()),
            None => None,
        };
        (page, next)
    }

    /// A page of a channel's members as JSON member objects (the full view),
    /// in user id order after `cursor`. `None` if the channel does not exist.
    pub fn channel_members(
        &self,
        channel: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Option<(Vec<Value>, Option<String>)> {
        use std::ops::Bound;
        let ch = self.channels.get(channel)?;
        let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let mut iter = ch.members.range::<str, _>((start, Bound::Unbounded));
        let mut last = None;
        let page: Vec<Value> = iter
            .by_ref()
            .take(limit)
            .map(|(user, m)| {
                last = Some(user.to_string());
                serde_json::to_value(member_view(user, m, None)).unwrap_or(Value::Null)
            })
            .collect();
        let next = iter.next().and(last);
        Some((page, next))
    }

    /// Sum of members over all channels.
    pub fn member_count(&self) -> usize {
        self.channels.values().map(|c| c.members.len()).sum()
    }

    /// Every connection that has a session, for a clean shutdown: with
    /// [`Engine::restore`] after the restart, clients resume as if the server
    /// had never gone.
    pub fn export_sessions(&self) -> Vec<SessionRecord> {
        self.conns
            .values()
            .filter(|c| !c.session.is_empty())
            .map(|c| SessionRecord {
                session: c.session.to_string(),
                user: c.user.as_deref().map(str::to_owned),
                away: c.status == ConnStatus::Away,
                entered: c.entered().map(|n| n.to_string()).collect(),
                subs: c.subs().map(|(n, o)| (n.to_string(), o)).collect(),
                watching: c.watching.iter().map(|u| u.to_string()).collect(),
                info: c.info.as_deref().cloned(),
                channels: c.allowed.as_ref().map(|a| a.to_vec()),
            })
            .collect()
    }

    /// Restores what the last run left: the users the journal has online
    /// (with their memberships) and, after a clean shutdown, the sessions of
    /// their connections. Every restored connection is detached with one grace
    /// window, like any dropped socket: a client that resumes gets its state
    /// back; a user nobody resumes for goes offline when the window ends.
    /// A journaled user without a session (after a crash) is held by a
    /// stand-in connection that cannot be resumed.
    pub fn restore(
        &mut self,
        now: u64,
        users: Vec<RestoredUser>,
        sessions: Vec<SessionRecord>,
        mut next_conn: impl FnMut() -> ConnId,
        out: &mut Effects,
    ) {
        let deadline = now + self.cfg.grace_ms;
        let journal: HashMap<String, RestoredUser> =
            users.into_iter().map(|u| (u.user.clone(), u)).collect();
        let mut covered: HashSet<String> = HashSet::new();
        let no_data = Map::new();
        for rec in sessions {
            if rec.user.as_ref().is_some_and(|u| !journal.contains_key(u)) {
                // The journal says this user was not online: nothing to hold.
                continue;
            }
            let conn = next_conn();
            let user: Option<UserId> = rec.user.as_deref().map(Arc::from);
            let session: Arc<str> = Arc::from(rec.session);
            let mut c = Conn::new(
                user.clone(),
                rec.info,
                rec.channels,
                if rec.away {
                    ConnStatus::Away
                } else {
                    ConnStatus::Online
                },
                Some(deadline),
                session.clone(),
            );
            for (name, occupancy) in rec.subs {
                if !crate::rules::valid_channel_name(&name) {
                    continue;
                }
                let name: ChannelName = Arc::from(name.as_str());
                let ch = self
                    .channels
                    .entry(name.clone())
                    .or_insert_with(Channel::new);
                ch.subscribers.insert(
                    conn,
                    Sub {
                        guest: user.is_none(),
                        occupancy,
                        live: false,
                    },
                );
                c.held_mut(&name).sub = Some(occupancy);
            }
            let mut watching = rec.watching;
            watching.sort_unstable();
            watching.dedup();
            let watching: Vec<UserId> = watching.iter().map(|w| Arc::from(w.as_str())).collect();
            for w in &watching {
                self.watchers.entry(w.clone()).or_default().insert(conn);
            }
            c.watch(watching);
            if let Some(user) = &user {
                let r = journal.get(&**user).expect("checked above");
                // Entered channels need not be subscribed ones
                // (`enter{subscribe: false}`): each is restored on its own.
                for name in rec.entered {
                    if !crate::rules::valid_channel_name(&name) {
                        continue;
                    }
                    let name: ChannelName = Arc::from(name.as_str());
                    if c.is_entered(&name) {
                        continue;
                    }
                    let (data, since) = r
                        .channels
                        .iter()
                        .find(|(n, _, _)| **n == *name)
                        .map_or((&no_data, now), |(_, d, s)| (d, *s));
                    self.restore_member(&name, user, data, since);
                    c.enter(&name);
                }
                self.restore_user_conn(user, conn, r);
                covered.insert(user.to_string());
            }
            self.sessions.insert(session, conn);
            self.conns.insert(conn, Box::new(c));
            self.set_timer(deadline, Timer::Grace(conn), out);
        }
        for (name, r) in journal {
            if covered.contains(&name) {
                continue;
            }
            let user: UserId = Arc::from(name.as_str());
            if self.users.contains_key(&user) {
                continue;
            }
            let conn = next_conn();
            // A stand-in for the connections the crash cut: it holds the
            // user's presence for one grace window, like any dropped socket.
            let mut c = Conn::new(
                Some(user.clone()),
                None,
                None,
                if r.status == UserStatus::Away {
                    ConnStatus::Away
                } else {
                    ConnStatus::Online
                },
                Some(deadline),
                Arc::from(""),
            );
            for (channel, data, since) in &r.channels {
                if !crate::rules::valid_channel_name(channel) {
                    continue;
                }
                let channel: ChannelName = Arc::from(channel.as_str());
                // Once per channel, as the connection counts once there.
                if c.enter(&channel) {
                    self.restore_member(&channel, &user, data, *since);
                }
            }
            self.conns.insert(conn, Box::new(c));
            self.restore_user_conn(&user, conn, &r);
            self.set_timer(deadline, Timer::Grace(conn), out);
        }
    }

    fn restore_member(
        &mut self,
        name: &ChannelName,
        user: &UserId,
        data: &Map<String, Value>,
        since: u64,
    ) {
        let ch = self
            .channels
            .entry(name.clone())
            .or_insert_with(Channel::new);
        match ch.members.get_mut(user) {
            Some(m) => m.conns += 1,
            None => {
                ch.members.insert(
                    user.clone(),
                    Member {
                        data: MemberData::from_map(data),
                        conns: 1,
                        since,
                    },
                );
            }
        }
        ch.connections += 1;
    }

    fn restore_user_conn(&mut self, user: &UserId, conn: ConnId, r: &RestoredUser) {
        self.offline.remove(user);
        let u = self.users.entry(user.clone()).or_insert_with(|| User {
            conns: Vec::new(),
            live: 0,
            status: if r.status == UserStatus::Away {
                UserStatus::Away
            } else {
                UserStatus::Online
            },
            since: r.since,
            last_live_at: r.last_seen,
        });
        u.conns.push(conn);
    }

    /// Remembers an offline user's last presence (loaded from the store).
    pub fn restore_offline(&mut self, user: &str, since: u64, last_seen: Option<u64>) {
        let user: UserId = Arc::from(user);
        if self.users.contains_key(&user) {
            return;
        }
        self.offline.insert(
            user,
            OfflineRecord {
                since,
                last_seen: last_seen.unwrap_or(since),
            },
        );
    }
}

/// A user's presence, connections and channels (HTTP API).
#[derive(Debug, Clone, PartialEq)]
pub struct UserDetail {
    pub user: String,
    pub presence: UserPresence,
    /// Connections, live or inside grace.
    pub connections: usize,
    /// Channels the user is a member of.
    pub channels: Vec<String>,
}

/// One connection's resumable state, kept across a clean restart.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
pub struct SessionRecord {
    pub session: String,
    pub user: Option<String>,
    pub away: bool,
    pub entered: Vec<String>,
    pub subs: Vec<(String, bool)>,
    pub watching: Vec<String>,
    pub info: Option<Map<String, Value>>,
    pub channels: Option<Vec<String>>,
}

/// A user who was online when the server stopped, from the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredUser {
    pub user: String,
    pub status: UserStatus,
    pub since: u64,
    /// When the server was last known alive: the user's last_seen if it does
    /// not come back.
    pub last_seen: u64,
    /// `(channel, member data, member since)`.
    pub channels: Vec<(String, Map<String, Value>, u64)>,
}

fn set_timer(timers: &mut BTreeSet<(u64, Timer)>, at: u64, timer: Timer, out: &mut Effects) {
    if timers.first().is_none_or(|(first, _)| at < *first) {
        out.deadline_moved = true;
    }
    timers.insert((at, timer));
}

fn snapshot_frames(
    name: &str,
    ch: &Channel,
    public: Option<&ChannelRule>,
    chunk: usize,
) -> Vec<Frame> {
    #[derive(Serialize)]
    struct SyncOut<'a> {
        t: &'static str,
        channel: &'a str,
        seq: u64,
        members: &'a [MemberView<'a>],
        more: bool,
    }
    // The snapshot is the state as of the last flush: pending changes reach
    // the new subscriber in the next event, with the next seq.
    let mut members: Vec<MemberView> = Vec::with_capacity(ch.members.len());
    for (user, m) in &ch.members {
        match ch.pending.get(user) {
            Some(Pending::Joined) => {}
            Some(Pending::Updated { old }) | Some(Pending::Left { old, .. }) => {
                members.push(member_view(user, old, public))
            }
            None => members.push(member_view(user, m, public)),
        }
    }
    for (user, p) in &ch.pending {
        if let Pending::Left { old, .. } = p
            && !ch.members.contains_key(user)
        {
            members.push(member_view(user, old, public));
        }
    }
    if members.is_empty() {
        return vec![Frame::from_json(&SyncOut {
            t: "sync",
            channel: name,
            seq: ch.seq,
            members: &[],
            more: false,
        })];
    }
    let n = members.len().div_ceil(chunk);
    members
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            Frame::from_json(&SyncOut {
                t: "sync",
                channel: name,
                seq: ch.seq,
                members: part,
                more: i + 1 < n,
            })
        })
        .collect()
}

fn event_frame<'a>(
    name: &'a str,
    ch: &'a Channel,
    pending: &'a BTreeMap<UserId, Pending>,
    public: Option<&ChannelRule>,
) -> Frame {
    #[derive(Serialize)]
    struct OneOut<'a> {
        t: &'static str,
        channel: &'a str,
        seq: u64,
        member: Option<MemberView<'a>>,
    }
    #[derive(Serialize)]
    struct LeaveOut<'a> {
        t: &'static str,
        channel: &'a str,
        seq: u64,
        user: &'a str,
        reason: Reason,
    }
    #[derive(Serialize)]
    struct DiffOut<'a> {
        t: &'static str,
        channel: &'a str,
        seq: u64,
        joins: Vec<MemberView<'a>>,
        updates: Vec<MemberView<'a>>,
        leaves: Vec<&'a str>,
    }
    let member = |user: &'a UserId| ch.members.get(user).map(|m| member_view(user, m, public));
    if pending.len() == 1 {
        let (user, p) = pending.iter().next().expect("one entry");
        return match p {
            Pending::Joined | Pending::Updated { .. } => Frame::from_json(&OneOut {
                t: if matches!(p, Pending::Joined) {
                    "join"
                } else {
                    "update"
                },
                channel: name,
                seq: ch.seq,
                member: member(user),
            }),
            Pending::Left { reason, .. } => Frame::from_json(&LeaveOut {
                t: "leave",
                channel: name,
                seq: ch.seq,
                user,
                reason: *reason,
            }),
        };
    }
    let mut diff = DiffOut {
        t: "diff",
        channel: name,
        seq: ch.seq,
        joins: Vec::new(),
        updates: Vec::new(),
        leaves: Vec::new(),
    };
    for (user, p) in pending {
        match p {
            Pending::Joined => diff.joins.extend(member(user)),
            Pending::Updated { .. } => diff.updates.extend(member(user)),
            Pending::Left { .. } => diff.leaves.push(user),
        }
    }
    Frame::from_json(&diff)
}

fn occupancy_frame(name: &str, (members, connections): (usize, usize)) -> Frame {
    #[derive(Serialize)]
    struct OccupancyOut<'a> {
        t: &'static str,
        channel: &'a str,
        members: usize,
        connections: usize,
    }
    Frame::from_json(&OccupancyOut {
        t: "occupancy",
        channel: name,
        members,
        connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn::new(
            Some(Arc::from("u1")),
            None,
            None,
            ConnStatus::Online,
            None,
            Arc::from("s"),
        )
    }

    fn names<'a>(it: impl Iterator<Item = &'a ChannelName>) -> Vec<&'a str> {
        it.map(|n| &**n).collect()
    }

    #[test]
    fn conn_channels_stay_sorted_and_count_the_union() {
        let mut c = conn();
        let (a, b, z): (ChannelName, ChannelName, ChannelName) =
            (Arc::from("a"), Arc::from("b"), Arc::from("z"));
        assert!(c.enter(&z));
        assert!(!c.enter(&z));
        c.held_mut(&a).sub = Some(true);
        c.held_mut(&z).sub = Some(false);
        assert!(c.enter(&b));
        assert_eq!(c.channel_count(), 3);
        assert_eq!(names(c.entered()), ["b", "z"]);
        let subs: Vec<(&str, bool)> = c.subs().map(|(n, o)| (&**n, o)).collect();
        assert_eq!(subs, [("a", true), ("z", false)]);
        assert!(c.holds_channel("a") && !c.holds_channel("c"));

        // Leaving keeps a subscription; dropping both forgets the channel.
        assert!(c.leave("z"));
        assert!(!c.leave("z"));
        assert!(c.holds_channel("z") && !c.is_entered("z"));
        assert!(c.leave("b"));
        assert!(!c.holds_channel("b"));
        let was = c.release("a", |h| *h = Held::default());
        assert_eq!(was.sub, Some(true));
        assert_eq!(c.channel_count(), 1);
        assert!(!c.leave("nope"));
    }

    #[test]
    fn conn_watching_is_a_sorted_set() {
        let mut c = conn();
        c.watch(["c", "a"].map(Arc::from));
        c.watch([Arc::from("b")]);
        assert!(c.is_watching("a") && c.is_watching("c") && !c.is_watching("d"));
        assert_eq!(
            c.watching.iter().map(|u| &**u).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        c.unwatch(&["a".to_owned(), "c".to_owned(), "x".to_owned()]);
        assert_eq!(c.watching.iter().map(|u| &**u).collect::<Vec<_>>(), ["b"]);
    }
}
