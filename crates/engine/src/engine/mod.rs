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
//!
//! One `impl Engine`, split by what it owns:
//!
//! - [`types`]: the public vocabulary (ids, config, events, effects, records);
//! - `conn`: one connection's state; `channel`: per-user and per-channel state;
//! - `timer`: deadlines and [`Engine::tick`];
//! - `connections`: attach, resume, detach, removal, kick, user status;
//! - `requests`: client requests, checked then applied;
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
mod timer;
pub mod types;

pub use types::{
    Attached, ChannelName, ConnId, Effect, Effects, EngineConfig, Identity, PresenceEvent, Reason,
    RestoredUser, SessionRecord, UserDetail, UserId, UserPresence, UserStatus,
};

use channel::{Channel, OfflineRecord, User};
use conn::Conn;
use timer::Timer;

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
}
