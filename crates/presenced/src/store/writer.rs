//! The journal's writer thread: it commits what was queued, in order, one
//! batch per transaction, and never drops a batch.
//!
//! A commit that fails (disk full, file gone) leaves the batch pending: the
//! writer retries it, with a backoff from 50 ms doubling to 2 s, before
//! anything queued later, and takes later events into the same batch while
//! it waits (the batch stays one transaction, so it commits whole or not at
//! all). Until that batch commits the journal is unhealthy: `/readyz` says
//! 503, barriers fail at once (a read that promises durability answers
//! `unavailable`) and the hub refuses new transitions. Progress is counted
//! in queued operations ([`Progress`]), so a barrier is a number to reach,
//! not a transaction of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use presenced_engine::PresenceEvent;
use rusqlite::{Connection, params};
use tokio::sync::{Notify, watch};

use super::Barrier;
use super::sqlite::apply_event;

/// Most events taken into one transaction.
const MAX_BATCH: usize = 10_000;
/// First wait before a failed batch is tried again; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// One queued write.
pub(super) enum Op {
    Event(PresenceEvent),
    /// The liveness beat (only the newest of a batch is written).
    Alive(u64),
}

/// What is durable, as barriers wait for it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Durable {
    /// Operations committed, counted from the start.
    pub committed: u64,
    /// False from a failed commit until the batch it failed on commits.
    pub healthy: bool,
}

/// Counts shared by the journal's handle and its writer: operations queued
/// and committed, and whether the writer can commit. Read without locks
/// (the hub asks under its lock).
#[derive(Debug)]
pub(super) struct Progress {
    queued: AtomicU64,
    committed: AtomicU64,
    healthy: AtomicBool,
    /// Most operations waiting before new transitions are refused.
    capacity: u64,
    durable: watch::Sender<Durable>,
}

impl Progress {
    pub fn new(capacity: usize) -> Progress {
        let (durable, _) = watch::channel(Durable {
            committed: 0,
            healthy: true,
        });
        Progress {
            queued: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            capacity: capacity as u64,
            durable,
        }
    }

    /// Counts an operation about to be queued.
    pub fn queued_one(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
    }

    /// Operations queued and not committed yet.
    pub fn depth(&self) -> u64 {
        self.queued
            .load(Ordering::SeqCst)
            .saturating_sub(self.committed.load(Ordering::SeqCst))
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Whether a new transition may be queued: the writer commits and the
    /// queue is under its bound.
    pub fn accepting(&self) -> bool {
        self.healthy() && self.depth() < self.capacity
    }

    /// Resolves once every operation queued before this call is committed,
    /// or fails as soon as the writer cannot commit (or is gone).
    pub fn barrier(&self) -> Barrier {
        let target = self.queued.load(Ordering::SeqCst);
        Barrier::new(self.durable.subscribe(), target)
    }

    fn set(&self, committed: u64, healthy: bool) {
        self.committed.store(committed, Ordering::SeqCst);
        self.healthy.store(healthy, Ordering::SeqCst);
        self.durable.send_replace(Durable { committed, healthy });
    }
}

/// The batch being committed, kept until it is.
#[derive(Default)]
struct Batch {
    events: Vec<PresenceEvent>,
    alive: Option<u64>,
    /// Operations it stands for (beats included).
    ops: u64,
}

impl Batch {
    fn push(&mut self, op: Op) {
        self.ops += 1;
        match op {
            Op::Event(ev) => self.events.push(ev),
            // One transaction: only the newest beat matters.
            Op::Alive(now) => self.alive = Some(now),
        }
    }

    fn is_empty(&self) -> bool {
        self.ops == 0
    }

    fn full(&self) -> bool {
        self.events.len() >= MAX_BATCH
    }
}

/// Runs until the journal's handle (the only sender) is dropped and what it
/// queued is committed (or the last attempt failed).
pub(super) fn writer_loop(
    mut conn: Connection,
    rx: std_mpsc::Receiver<Op>,
    urls: Vec<String>,
    webhooks_pending: Arc<Notify>,
    progress: Arc<Progress>,
) {
    let mut batch = Batch::default();
    let mut committed = 0u64;
    let mut retry: Option<Duration> = None;
    let mut open = true;
    loop {
        if batch.is_empty() {
            match rx.recv() {
                Ok(op) => batch.push(op),
                Err(_) => return,
            }
        }
        if let Some(delay) = retry {
            // Wait before the next attempt, taking what is queued meanwhile.
            let until = Instant::now() + delay;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if batch.full() || !open {
                    std::thread::sleep(left);
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(op) => batch.push(op),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => open = false,
                }
            }
        }
        while open && !batch.full() {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        let started = Instant::now();
        let result = commit(&mut conn, &batch, &urls);
        crate::metrics::record_store_write(started.elapsed().as_secs_f64());
        match result {
            Ok(webhook_rows) => {
                if retry.is_some() {
                    tracing::info!(
                        events = batch.events.len(),
                        "the store commits again; the events it held back are durable"
                    );
                }
                committed += batch.ops;
                batch = Batch::default();
                retry = None;
                progress.set(committed, true);
                if webhook_rows > 0 {
                    webhooks_pending.notify_one();
                }
            }
            Err(e) => {
                crate::metrics::add_store_failures(1);
                let delay = retry.map_or(RETRY_FIRST, |d| (d * 2).min(RETRY_MAX));
                if retry.is_none() {
                    tracing::error!(
                        error = %e,
                        events = batch.events.len(),
                        "store write failed; the events are kept and the write retried \
                         (new clients and changes are refused until it succeeds)"
                    );
                } else {
                    tracing::debug!(error = %e, events = batch.events.len(), "store write failed again");
                }
                progress.set(committed, false);
                if !open {
                    tracing::error!(
                        events = batch.events.len(),
                        "the store closes with events it could not commit; \
                         the next start re-derives them"
                    );
                    return;
                }
                retry = Some(delay);
            }
        }
    }
}

/// Commits `batch` in one transaction; returns how many webhook rows it
/// queued.
fn commit(conn: &mut Connection, batch: &Batch, urls: &[String]) -> rusqlite::Result<usize> {
    if !conn.is_autocommit() {
        // A failed commit whose rollback failed too left its transaction
        // open; end it before starting over.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let tx = conn.transaction()?;
    let mut webhook_rows = 0;
    for ev in &batch.events {
        webhook_rows += apply_event(&tx, ev, urls)?;
    }
    if let Some(now) = batch.alive {
        tx.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('alive_at', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![now.to_string()])?;
    }
    tx.commit()?;
    Ok(webhook_rows)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use presenced_engine::{PresenceEvent, Reason};

    use super::super::sqlite::{SCHEMA, Store, open_db};
    use super::super::{Journal, Liveness};

    /// A store whose commits fail while `fail` is set (a full disk) and
    /// wait while `hold` is (a slow disk).
    struct Faulty {
        store: Store,
        fail: Arc<AtomicBool>,
        hold: Arc<AtomicBool>,
    }

    fn faulty_store(dir: &std::path::Path, queue_max: usize) -> Faulty {
        let path = dir.join("presenced.db");
        let conn = open_db(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let fail = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let (f, h) = (fail.clone(), hold.clone());
        // True turns the commit into a rollback, as a full disk would.
        conn.commit_hook(Some(move || {
            while h.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            f.load(Ordering::SeqCst)
        }));
        let store =
            Store::start(conn, &path, vec!["http://127.0.0.1:1/h".into()], queue_max).unwrap();
        Faulty { store, fail, hold }
    }

    fn user(u: &str) -> Arc<str> {
        Arc::from(u)
    }

    async fn wait_healthy(store: &Store) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !store.is_healthy() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the store commits again within 10 s");
    }

    #[tokio::test]
    async fn a_failed_batch_is_kept_retried_in_order_and_reported_until_it_commits() {
        let dir = tempfile::tempdir().unwrap();
        let Faulty { store, fail, .. } = faulty_store(dir.path(), 1_000);
        store.record(PresenceEvent::UserOnline {
            user: user("a"),
            at: 1_000,
        });
        assert!(store.barrier().wait().await);
        assert!(store.is_healthy() && store.accepting());

        fail.store(true, Ordering::SeqCst);
        store.record(PresenceEvent::MemberJoined {
            user: user("a"),
            channel: user("room:1"),
            at: 1_001,
            data: serde_json::Map::new(),
        });
        assert!(
            !store.barrier().wait().await,
            "a failing store fails barriers"
        );
        assert!(!store.is_healthy() && !store.accepting());
        store.record(PresenceEvent::MemberLeft {
            user: user("a"),
            channel: user("room:1"),
            at: 1_002,
            reason: Reason::Left,
        });
        store.beat(1_003);
        store.record(PresenceEvent::UserOffline {
            user: user("a"),
            at: 1_004,
            last_seen: 1_003,
            reason: Reason::Left,
        });
        // A barrier with nothing new to write still fails: nothing but the
        // held batch's commit clears the fault.
        for _ in 0..3 {
            assert!(!store.barrier().wait().await);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert!(!store.is_healthy());
        assert_eq!(store.queue_depth(), 4, "joined, left, beat, offline wait");

        fail.store(false, Ordering::SeqCst);
        wait_healthy(&store).await;
        assert!(store.barrier().wait().await);
        assert_eq!(store.queue_depth(), 0);
        drop(store);

        let db = open_db(&dir.path().join("presenced.db")).unwrap();
        let mut stmt = db
            .prepare("SELECT payload FROM webhook_outbox ORDER BY seq")
            .unwrap();
        let kinds: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|p| {
                let v: serde_json::Value = serde_json::from_str(&p.unwrap()).unwrap();
                v["type"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "user.online",
                "member.joined",
                "member.left",
                "user.offline"
            ],
            "every event once, in order"
        );
        let (status, last_seen): (String, i64) = db
            .query_row(
                "SELECT status, last_seen FROM users WHERE user = 'a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((status.as_str(), last_seen), ("offline", 1_003));
        let alive: String = db
            .query_row("SELECT value FROM meta WHERE key = 'alive_at'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(alive, "1003");
    }

    #[tokio::test]
    async fn the_queue_bound_stops_new_transitions_but_never_drops_one() {
        let dir = tempfile::tempdir().unwrap();
        let Faulty { store, hold, .. } = faulty_store(dir.path(), 3);
        assert!(store.accepting());
        hold.store(true, Ordering::SeqCst);
        for i in 0..5u64 {
            // Recorded past the bound too: `record` never refuses.
            store.record(PresenceEvent::UserOnline {
                user: user(&format!("u{i}")),
                at: 1_000 + i,
            });
            assert_eq!(store.accepting(), i < 2, "{i}");
        }
        assert_eq!(store.queue_depth(), 5);
        assert!(store.is_healthy(), "slow, not failing");
        hold.store(false, Ordering::SeqCst);
        assert!(store.barrier().wait().await);
        assert_eq!(store.queue_depth(), 0);
        assert!(store.accepting());
        drop(store);
        let db = open_db(&dir.path().join("presenced.db")).unwrap();
        let n: i64 = db
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 5);
    }
}
