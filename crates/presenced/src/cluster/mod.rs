//! The Redis side of the shared presence state: what the engine's
//! `SharedPresence` keeps in process, kept in Redis for a cluster of nodes,
//! one Lua script per transition. It stands alone: `serve` does not use it
//! yet, and `--redis-url` is still refused.
//!
//! # The unit: the session
//!
//! A session is one resumable connection, named by a string that stays the
//! same across resumes on any node. A user's connections are its sessions;
//! a member's connections in a channel are the sessions that entered it.
//! Counting sessions, not sockets, is what makes grace, resume anywhere and
//! "online while any tab lives" one rule: a session dropped into grace
//! still counts, the user goes offline with its last session gone.
//!
//! # Transitions
//!
//! Each is one script run with `EVALSHA`: one round trip. `connect` loads
//! every script; a Redis that has lost them since (a restart, `SCRIPT
//! FLUSH`) answers `NOSCRIPT` once, and the client loads the script and
//! runs it again. Each mirrors `SharedPresence` exactly:
//!
//! | method | script | as `SharedPresence::` |
//! | --- | --- | --- |
//! | [`RedisPresence::session_added`] | `session_added.lua` | `conn_added` |
//! | [`RedisPresence::session_dropped`] | `session_dropped.lua` | `conn_detached` |
//! | [`RedisPresence::session_back`] | `session_back.lua` | `conn_reattached` |
//! | [`RedisPresence::session_status`] | `session_status.lua` | `conn_status` |
//! | [`RedisPresence::session_gone`] | `session_gone.lua` | `conn_removed` |
//! | [`RedisPresence::member_enter`] | `member_enter.lua` | `enter` (and the `max_members` check) |
//! | [`RedisPresence::member_update`] | `member_update.lua` | `update` |
//! | [`RedisPresence::member_leave`] | `member_leave.lua` | `leave` |
//!
//! Redis decides what the engine passes in by hand: whether a session is a
//! new connection of a member (it entered before or not), whether it was
//! live or away. Times (`since`, `last_seen`, event times) are Redis's
//! clock (`TIME`), in unix ms; every reply carries it as `at`.
//!
//! In the same script as its change, a transition
//! - records its webhook event (`user.online`, `user.away`, `user.offline`,
//!   `member.joined`, `member.left`; no event for a data update, a drop, a
//!   resume or a change of a member's connection count) with `XADD` in its
//!   partition's stream, never trimmed here;
//! - publishes the change (`SPUBLISH`) on the user's or the channel's shard
//!   channel: a member change as JSON `{seq, user, kind: join | update |
//!   leave, conns, since, data | reason, members, connections}`, a user's as
//!   `{user, status, since, last_seen, id}`;
//! - bumps the channel's sequence number on every member change (a change
//!   of a member's connection count too: subscribers see it as an update)
//!   and returns it, so a subscriber of the shard channel sees a gap.
//!
//! So nothing is changed without being announced, nor announced twice.
//!
//! # Retries
//!
//! A timeout or a lost connection means "outcome unknown"
//! ([`ClusterError::outcome_unknown`]): the caller retries with the same
//! [`OpId`]. Each write keeps its reply under its node's token and op id
//! for 120 s (`{…}:r:<token>:<op>`), and a retry gets that reply back
//! without changing anything again, announcing nothing again. Later, or
//! without the record, the scripts are idempotent by their state anyway: a
//! session added twice, dropped twice or gone twice changes nothing the
//! second time. The caller issues one op at a time per session and retries
//! it before the next.
//!
//! # Fencing
//!
//! A node registers (`register_node.lua`: `INCR` of a token counter, the
//! node id → token and lease deadline in `{<prefix>:nodes}`) and renews
//! (`renew_node.lua`); a lease that has lapsed is never renewed, nor is a
//! token that the node id has replaced by registering again: the node must
//! register afresh. Every write carries the token and the lease deadline
//! that the last renewal returned, and is refused (`FENCED`,
//! [`ClusterError::Fenced`]) once Redis's clock has passed that deadline: a
//! node paused past its lease has every late write refused, atomically
//! with the write. The registry is one slot, which a script on another
//! slot cannot read, hence the deadline travelling with each write instead
//! of a lookup. So a token that its node id has replaced can still write
//! until its own deadline (one lease at most); and in a Redis Cluster the
//! deadline, set by the registry's shard's clock, is checked by the clock
//! of the write's shard, so whoever declares a node dead must wait out the
//! skew between them.
//!
//! A session belongs to the token that added it or last resumed it; its
//! drop, status and end from any other token are refused (`NOTOWNER`,
//! [`ClusterError::NotOwner`]), so a node that lost a session to another
//! cannot act for it. The channel side does not check owners: it knows
//! sessions, not nodes.
//!
//! # Key layout
//!
//! Users and channels are spread over partitions (`keys.rs`): a partition is
//! one hash tag, and every script touches the keys of one tag only, so a
//! single Redis and a Redis Cluster run the same scripts (the scripts'
//! `#!lua` line makes Redis Cluster refuse anything else). `P` is the
//! prefix (default `presenced`), `n` the partition:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{P:u:n}:u:<user>` | hash | `c` sessions, `l` live ones, `a` away ones, `st` status, `si` since, `ll` last live, `ep` epoch, `n` events in the epoch; stays after offline: the last presence |
//! | `{P:u:n}:s:<user>` | hash | session → `<owner token> <live> <away> <dropped at>` |
//! | `{P:u:n}:p:<user>` | shard channel | the user's changes |
//! | `{P:c:n}:m:<channel>` | hash | user → `<conns> <since> <data JSON>` |
//! | `{P:c:n}:s:<channel>` | hash | session → user, for the sessions that entered |
//! | `{P:c:n}:q:<channel>` | string | the channel's sequence number (kept an hour after its last member left) |
//! | `{P:c:n}:p:<channel>` | shard channel | the member changes, with `seq` |
//! | `{P:u:n}:events`, `{P:c:n}:events` | stream | the partition's webhook events: `id type user [channel] at [reason] [last_seen]` |
//! | `{…}:r:<token>:<op>` | string, 120 s | a write's reply, for its retry |
//! | `{P:nodes}` | hash | node id → `<token> <lease deadline>` |
//! | `{P:nodes}:token` | string | the token counter |
//! | `{P:nodes}:lapsed` | hash | token → `<node> <deadline>` of a registration replaced by a newer one of the same node id |
//!
//! A partition, not a user or a channel, is the tag so that the things kept
//! per partition stay few: the event stream (the webhook outbox that one
//! sender at a time will drain), and, later, its sender lease and clock.
//!
//! Event ids are deterministic: a user event's is a hash of the user, its
//! epoch and the event's rank in the epoch; an epoch starts when the user
//! comes online from offline, at least at Redis's clock in microseconds, so
//! an epoch is never reused even by a Redis that lost its data. A member
//! event's id is a hash of the channel and its sequence number, which
//! starts at Redis's clock in microseconds when a channel appears.
//!
//! # Not here yet
//!
//! - Reaping: claiming a dead node's sessions (marking them dropped at its
//!   last renewal) and sweeping sessions whose grace has run out; there is
//!   no index of a node's sessions yet.
//! - Redis stalls: leases and grace count Redis's wall clock, so a stall
//!   of Redis itself counts towards them; the per-partition logical clock
//!   that subtracts stalls, and the generation id that detects a Redis that
//!   lost its data, are not written.
//! - Subscribing: nothing reads the shard channels or the streams; no
//!   webhook sender, no trimming of the streams.
//! - Offline users' last presence stays in Redis with no expiry.
//! - Webhook order per user across partitions: a user's own events and its
//!   member events are in different streams.

mod keys;
mod members;
mod nodes;
mod scripts;
mod users;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};

pub use keys::{DEFAULT_PARTITIONS, Keys, LayoutError, fnv1a};
pub use members::{Entered, Member, MemberChange, MemberOutcome};
pub use nodes::{Lease, Registration};
pub use users::{Resumed, SessionRecord, SessionResult, UserChange, UserOutcome, UserRecord};

use scripts::Reply;

/// How to reach Redis and who this node is.
#[derive(Debug, Clone)]
pub struct Options {
    /// `redis://` URL.
    pub url: String,
    /// Prefix of every key: several clusters may share one Redis.
    pub prefix: String,
    pub node_id: String,
    /// The partition count: the same on every node, for the life of the
    /// data (another count puts users in other partitions).
    pub partitions: u32,
    /// How long a node may be silent before it counts as dead.
    pub lease_ms: u64,
    /// The most any one call may take; past it the outcome is unknown.
    pub timeout: Duration,
}

impl Options {
    /// The defaults: prefix `presenced`, [`DEFAULT_PARTITIONS`], a 6 s
    /// lease, a 2 s timeout.
    pub fn new(url: &str, node_id: &str) -> Options {
        Options {
            url: url.to_owned(),
            prefix: "presenced".to_owned(),
            node_id: node_id.to_owned(),
            partitions: DEFAULT_PARTITIONS,
            lease_ms: 6_000,
            timeout: Duration::from_secs(2),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No answer in time: the write may or may not have happened; retry it
    /// with the same [`OpId`].
    #[error("Redis did not answer in time")]
    Timeout,
    /// The lease this write carried has lapsed, or a renewal was refused:
    /// nothing changed. After a refused renewal the node must register
    /// afresh.
    #[error("this node's lease has lapsed")]
    Fenced,
    /// The session belongs to another node; nothing changed.
    #[error("the session belongs to another node")]
    NotOwner,
    /// No lease yet (or no more): register first.
    #[error("this node is not registered")]
    NotRegistered,
    #[error("Redis: {0}")]
    Redis(RedisError),
    #[error("unexpected reply from a script: {0}")]
    Reply(String),
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl ClusterError {
    /// Whether the write may have happened: no answer in time, or the
    /// connection went while waiting for it. Retry with the same [`OpId`].
    pub fn outcome_unknown(&self) -> bool {
        match self {
            ClusterError::Timeout => true,
            ClusterError::Redis(e) => e.is_io_error() || e.is_connection_dropped(),
            _ => false,
        }
    }
}

impl From<RedisError> for ClusterError {
    fn from(e: RedisError) -> Self {
        match e.code() {
            Some("FENCED") => ClusterError::Fenced,
            Some("NOTOWNER") => ClusterError::NotOwner,
            _ if e.is_timeout() => ClusterError::Timeout,
            _ => ClusterError::Redis(e),
        }
    }
}

/// The id of one write, for its retries: unique per node registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId(pub u64);

/// The shared presence state in Redis, as seen from one node.
pub struct RedisPresence {
    conn: ConnectionManager,
    keys: Keys,
    node_id: String,
    lease_ms: u64,
    timeout: Duration,
    lease: Mutex<Option<Lease>>,
    next_op: AtomicU64,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("node_id", &self.node_id)
            .field("lease", &self.lease())
            .finish_non_exhaustive()
    }
}

impl RedisPresence {
    /// Connects (within the timeout); the connection reconnects by itself
    /// afterwards. Register before writing.
    pub async fn connect(opts: &Options) -> Result<RedisPresence, ClusterError> {
        let keys = Keys::new(&opts.prefix, opts.partitions)?;
        let client = redis::Client::open(opts.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout));
        let conn = tokio::time::timeout(
            opts.timeout,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| ClusterError::Timeout)??;
        let presence = RedisPresence {
            conn,
            keys,
            node_id: opts.node_id.clone(),
            lease_ms: opts.lease_ms,
            timeout: opts.timeout,
            lease: Mutex::new(None),
            next_op: AtomicU64::new(1),
        };
        for script in scripts::all() {
            let mut conn = presence.conn.clone();
            tokio::time::timeout(presence.timeout, script.load_async(&mut conn))
                .await
                .map_err(|_| ClusterError::Timeout)??;
        }
        Ok(presence)
    }

    /// The key layout in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// A fresh op id for the next write (its retries reuse it).
    pub fn op(&self) -> OpId {
        OpId(self.next_op.fetch_add(1, Ordering::Relaxed))
    }

    /// The lease writes carry now, if registered.
    pub fn lease(&self) -> Option<Lease> {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_lease(&self, lease: Option<Lease>) {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = lease;
    }

    /// Runs a script within the timeout.
    async fn run(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<Reply, ClusterError> {
        let mut call = script.prepare_invoke();
        for k in keys {
            call.key(*k);
        }
        for a in args {
            call.arg(*a);
        }
        let mut conn = self.conn.clone();
        let v: Value = tokio::time::timeout(self.timeout, call.invoke_async(&mut conn))
            .await
            .map_err(|_| ClusterError::Timeout)??;
        Reply::new(v)
    }

    /// Runs a write script: KEYS[1] its replay record, ARGV[1..3] the token,
    /// the lease deadline and the op id, then `args`.
    async fn write(
        &self,
        script: &Script,
        replay: impl FnOnce(u64, u64) -> String,
        keys: &[&str],
        op: OpId,
        args: &[&str],
    ) -> Result<Reply, ClusterError> {
        let lease = self.lease().ok_or(ClusterError::NotRegistered)?;
        let replay = replay(lease.token, op.0);
        let mut all_keys = Vec::with_capacity(keys.len() + 1);
        all_keys.push(replay.as_str());
        all_keys.extend_from_slice(keys);
        let (token, deadline, op) = (
            lease.token.to_string(),
            lease.deadline.to_string(),
            op.0.to_string(),
        );
        let mut all_args = Vec::with_capacity(args.len() + 3);
        all_args.extend_from_slice(&[token.as_str(), deadline.as_str(), op.as_str()]);
        all_args.extend_from_slice(args);
        self.run(script, &all_keys, &all_args).await
    }

    /// Runs a plain command within the timeout.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ClusterError> {
        let mut conn = self.conn.clone();
        Ok(
            tokio::time::timeout(self.timeout, cmd.query_async(&mut conn))
                .await
                .map_err(|_| ClusterError::Timeout)??,
        )
    }
}
