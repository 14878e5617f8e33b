//! The presence state machine.
//!
//! Two parts. The shared presence state (`shared`: per-user connection
//! counts and status, per-channel members) is what every node of a cluster
//! must agree on. The rest is this node's: its connections and sessions
//! (and which of them belong to each user), channel subscriptions,
//! watchers, timers, and delivery (netting, coalescing, `seq`, snapshots,
//! occupancy). A request that changes shared state is checked against this
//! node's state, applied to the shared state, and answered and fanned out
//! from what that reports changed.
//!
//! Every public method takes the current time in unix milliseconds and
//! appends what must happen to an [`Effects`] buffer. Timers (grace windows,
//! coalescing windows, occupancy throttles) are deadlines the caller honours
//! by calling [`Engine::tick`] no later than [`Engine::next_deadline`].
//!
//! Lock order for callers that share the engine: the engine's lock is the
//! only one; nothing inside calls out.
//!
//! One `impl Engine`, split by what it owns:
//!
//! - [`types`]: the public vocabulary (ids, config, events, effects, records);
//! - `shared`: the shared presence state, on its own;
//! - `conn`: one connection's state; `channel`: a channel's subscribers and
//!   delivery state;
//! - `timer`: deadlines and [`Engine::tick`];
//! - `connections`: attach, resume, detach, removal, kick, user status;
//! - `requests`: client requests, checked then applied;
//! - `rights`: what a connection holds, checked again when its claims
//!   change (refresh, resume);
//! - `delivery`: netting, coalescing, `seq`, snapshots, occupancy, watchers;
//! - `reads`: presence and the reads of the HTTP API and metrics;
//! - `restore`: state from the last run.
//!
//! Frames are spelled in [`crate::protocol::out`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

mod channel;
mod conn;
mod connections;
mod delivery;
mod reads;
mod requests;
mod restore;
mod rights;
mod shared;
mod timer;
pub mod types;

pub use types::{
    Attached, ChannelName, ConnId, Effect, Effects, EngineConfig, Identity, PresenceEvent, Reason,
    RestoredUser, SessionRecord, UserDetail, UserId, UserPresence, UserStatus,
};

use channel::Channel;
use conn::Conn;
use shared::SharedPresence;
use timer::Timer;

/// The presence engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    /// Boxed: a table sized for growth keeps up to half its slots empty, and
    /// an empty slot costs 16 bytes this way, not a whole `Conn`.
    conns: HashMap<ConnId, Box<Conn>>,
    /// This node's connections of each user online or away.
    user_conns: HashMap<UserId, Vec<ConnId>>,
    shared: SharedPresence,
    channels: BTreeMap<ChannelName, Channel>,
    watchers: HashMap<UserId, HashSet<ConnId>>,
    sessions: HashMap<Arc<str>, ConnId>,
    timers: BTreeSet<(u64, Timer)>,
    /// While one input removes several connections at once (a kick): the
    /// channels whose count changes wait until it is done, so that they go
    /// out netted (a member leaving, not a count dropping first).
    deferred: Option<Vec<ChannelName>>,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        let shared = SharedPresence::new(cfg.offline_cache);
        Engine {
            cfg,
            conns: HashMap::new(),
            user_conns: HashMap::new(),
            shared,
            channels: BTreeMap::new(),
            watchers: HashMap::new(),
            sessions: HashMap::new(),
            timers: BTreeSet::new(),
            deferred: None,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
}
