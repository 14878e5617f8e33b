//! The backends: what must outlive the process, behind three traits, so the
//! rest of the server never runs a query of its own and a second
//! implementation (cluster mode's shared store) plugs in beside this one.
//!
//! - [`Journal`]: presence transitions (who is online, with their channel
//!   memberships and data, every user's last status and last_seen), queued
//!   without blocking into a bounded queue and made durable in order (a
//!   failed commit is retried, never dropped); a [`Barrier`] lets a reader
//!   wait until everything queued before it is durable.
//! - [`Liveness`]: when this node was last known alive, so a restart after a
//!   crash dates the last_seen of users it finds online no later than that.
//! - [`WebhookOutbox`]: the durable queue of webhook events that the journal
//!   fills in the same commit as the transition that caused them; the
//!   webhook senders read and acknowledge through it.
//!
//! [`open`] gives the embedded implementation: SQLite in the data directory
//! (`sqlite.rs`: the schema and the journal's handle; `writer.rs`: its
//! writer thread; `outbox.rs`: the outbox queries). Sessions kept at a clean shutdown are a file of their
//! own (`sessions.rs`).

mod outbox;
mod sessions;
mod sqlite;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use presenced_engine::{PresenceEvent, RestoredUser, UserStatus};
use tokio::sync::{Notify, watch};

pub use sessions::{save_sessions, take_sessions};

/// How often the server records that it is alive.
pub const ALIVE_INTERVAL_MS: u64 = 1_000;

/// The presence journal.
pub trait Journal: Send + Sync + fmt::Debug {
    /// Queues a presence event, to be made durable after every event queued
    /// before it; never blocks (it is called under the hub's lock) and never
    /// refuses: the caller asks [`Journal::accepting`] before a change it
    /// may refuse.
    fn record(&self, event: PresenceEvent);
    /// Resolves once everything queued before this call is durable; fails
    /// (at once) while the journal cannot commit.
    fn barrier(&self) -> Barrier;
    /// Whether the journal commits: false from a failed commit until the
    /// batch it failed on is committed (nothing queued is ever dropped).
    fn is_healthy(&self) -> bool;
    /// Whether to let in a new transition now: the journal is healthy and
    /// its queue under the bound (`--journal-queue`). Never blocks.
    fn accepting(&self) -> bool;
    /// Operations queued and not yet committed.
    fn queue_depth(&self) -> u64;
    /// The last presence the journal holds for each of `users` it knows
    /// (users never seen are left out), as of the last commit. Blocks (a
    /// query): callers run it off the async threads, after a [`Barrier`]
    /// when they must see what they queued.
    fn last_presence(&self, users: &[String]) -> anyhow::Result<Vec<StoredPresence>>;
}

/// A user's last presence as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPresence {
    pub user: String,
    pub status: UserStatus,
    pub since: u64,
    pub last_seen: Option<u64>,
}

/// Node liveness.
pub trait Liveness: Send + Sync + fmt::Debug {
    /// Records that this node is alive at `now` (ms), in order with the
    /// journal's events.
    fn beat(&self, now: u64);
}

/// The durable webhook queue, one ordered queue per URL. Methods block (a
/// query): callers run them off the async threads.
pub trait WebhookOutbox: Send + Sync + fmt::Debug {
    /// The oldest `max` pending events of `url`, in order, and how many the
    /// URL has pending when `count` (or when fewer than `max` are). Events
    /// whose payload is not JSON are deleted (a batch holding one would fail
    /// forever) and reported in `bad`.
    fn head(&self, url: &str, max: usize, count: bool) -> anyhow::Result<OutboxHead>;
    /// Deletes the events `first..=last` of `url` (delivered).
    fn delivered(&self, url: &str, first: i64, last: i64) -> anyhow::Result<()>;
    /// Records a failed attempt on the events `first..=last` of `url`.
    fn failed(
        &self,
        url: &str,
        first: i64,
        last: i64,
        attempts: u32,
        next_attempt_at: u64,
    ) -> anyhow::Result<()>;
    /// Deletes the events of `url` created before `cutoff` (ms); returns how many.
    fn drop_older(&self, url: &str, cutoff: u64) -> anyhow::Result<u64>;
    /// Deletes the events of every URL not in `urls`; returns `(url, events)`
    /// of what it dropped.
    fn retain_urls(&self, urls: &[String]) -> anyhow::Result<Vec<(String, u64)>>;
    /// Woken (one waiter) after every commit that added events.
    fn committed(&self) -> &Notify;
}

/// One queued webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Position in the URL's queue.
    pub seq: i64,
    /// The event as JSON (an object).
    pub payload: String,
    pub created_at: u64,
    pub attempts: u32,
    pub next_attempt_at: u64,
}

/// What [`WebhookOutbox::head`] found.
#[derive(Debug, Default)]
pub struct OutboxHead {
    pub events: Vec<OutboxEvent>,
    /// Pending events of the URL, when counted.
    pub count: Option<u64>,
    /// Sequence numbers of the events deleted for not being JSON.
    pub bad: Vec<i64>,
}

/// What the server finds in the backends at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Users who were online or away when the server stopped.
    pub online: Vec<RestoredUser>,
    /// `(user, since, last_seen)` of the most recently seen offline users
    /// (as many as asked for, the newest first).
    pub offline: Vec<(String, u64, Option<u64>)>,
    /// When the server was last known alive.
    pub alive_at: Option<u64>,
}

/// The backends of one server.
#[derive(Debug, Clone)]
pub struct Backends {
    pub journal: Arc<dyn Journal>,
    pub liveness: Arc<dyn Liveness>,
    pub webhooks: Arc<dyn WebhookOutbox>,
    /// The data directory's lock, held while any clone lives.
    _lock: Arc<std::fs::File>,
}

/// The file whose exclusive lock marks a data directory in use.
pub const LOCK_FILE: &str = "presenced.lock";

/// Takes the data directory's exclusive lock, or says which server holds
/// it: two servers on one journal would restore each other's users and
/// write them offline while the other still serves them. The operating
/// system releases it when the process ends, however it ends.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Seek, Write};
    let path = data_dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            anyhow::bail!(
                "the data directory {} is in use by another presenced{} ({} is locked); \
                 stop that server or give this one another --data-dir",
                data_dir.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (process {holder})")
                },
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    // Who holds it, for the next one's message.
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Opens (creating if needed) `<data_dir>/presenced.db` and reads what the
/// last run left, with at most `offline_limit` offline users. Webhook
/// events are queued for each of `webhook_urls`. New transitions are
/// refused while `queue_max` operations wait for the disk.
pub fn open(
    data_dir: &Path,
    webhook_urls: Vec<String>,
    offline_limit: usize,
    queue_max: usize,
) -> anyhow::Result<(Backends, Recovered)> {
    let lock = lock_data_dir(data_dir)?;
    let (store, recovered) = sqlite::Store::open(data_dir, webhook_urls, offline_limit, queue_max)?;
    let store = Arc::new(store);
    let webhooks = Arc::new(outbox::SqliteOutbox::open(
        store.path(),
        store.webhooks_committed(),
    )?);
    Ok((
        Backends {
            journal: store.clone(),
            liveness: store,
            webhooks,
            _lock: Arc::new(lock),
        },
        recovered,
    ))
}

/// Waits for the journal: see [`Journal::barrier`].
#[derive(Debug)]
pub struct Barrier(Option<(watch::Receiver<writer::Durable>, u64)>);

impl Barrier {
    /// A barrier that resolves when `durable` counts `target` operations
    /// committed, and fails when it says the writer cannot commit.
    fn new(durable: watch::Receiver<writer::Durable>, target: u64) -> Barrier {
        Barrier(Some((durable, target)))
    }

    /// A barrier that already failed (the journal is gone).
    pub fn failed() -> Barrier {
        Barrier(None)
    }

    /// True when everything queued before the barrier is durable; false as
    /// soon as the journal cannot commit (it does not wait for the disk to
    /// come back) or is gone.
    pub async fn wait(self) -> bool {
        let Some((mut durable, target)) = self.0 else {
            return false;
        };
        match durable
            .wait_for(|d| d.committed >= target || !d.healthy)
            .await
        {
            Ok(d) => d.committed >= target,
            Err(_) => false,
        }
    }
}
