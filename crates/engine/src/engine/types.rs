//! The engine's vocabulary: ids, configuration, identities, presence
//! events, effects, and the records the server keeps across a restart.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::protocol::{Frame, RequestError, error_frame, ok_frame};
pub use crate::protocol::{Reason, UserPresence, UserStatus};
use crate::rules::ChannelRules;

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
    /// How many offline users' last presence to keep in memory (0 allowed),
    /// the oldest record going first. Users this node watches are kept
    /// whatever the bound. Beyond it, a user's presence is unknown until
    /// fed in with [`Engine::restore_offline`](super::Engine::restore_offline): see
    /// [`Engine::presence_unknown`](super::Engine::presence_unknown).
    pub offline_cache: usize,
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
            offline_cache: 10_000,
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
    /// Member data changed (journal and live feed, not a webhook event).
    MemberUpdated {
        user: UserId,
        channel: ChannelName,
        at: u64,
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
    /// then resynced with [`Engine::resync`](super::Engine::resync).
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

    pub(super) fn reply(&mut self, conn: ConnId, frame: Frame) {
        self.items.push(Effect::Reply { conn, frame });
    }

    pub(super) fn push(&mut self, conn: ConnId, frame: Frame) {
        self.items.push(Effect::Push { conn, frame });
    }

    pub(super) fn event(&mut self, event: PresenceEvent) {
        self.items.push(Effect::Event(event));
    }

    pub(super) fn done(&mut self, conn: ConnId, id: Option<u64>) {
        if let Some(id) = id {
            self.reply(conn, ok_frame(id));
        }
    }

    pub(super) fn fail(&mut self, conn: ConnId, id: Option<u64>, error: &RequestError) {
        self.reply(conn, error_frame(id, error));
    }
}

/// Result of [`Engine::connect`](super::Engine::connect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The connection id now bound to the socket (the old one on resume).
    pub conn: ConnId,
    pub resumed: bool,
    /// On resume of a connection whose old socket was still open: the caller
    /// must close that old socket without detaching the connection.
    pub replaced_live_socket: bool,
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
