//! The embedded backends' SQLite file and its writer: the journal and the
//! liveness beat.
//!
//! Writes happen on one writer thread (`writer.rs`) that batches whatever
//! queued up into one transaction, so a connect never waits for the disk,
//! and retries a batch that failed rather than drop it. Journal and
//! webhook outbox change in the same transaction, which is what makes a
//! crash safe: a transition is either committed with its webhook events, or
//! not at all and then re-derived after the restart (the user gets one grace
//! window and, if it does not come back, exactly one `user.offline`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use presenced_engine::{PresenceEvent, RestoredUser, UserStatus};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::writer::{Op, Progress, writer_loop};
use super::{Barrier, Journal, Liveness, Recovered, StoredPresence};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    user TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    since INTEGER NOT NULL,
    last_seen INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    user TEXT NOT NULL,
    channel TEXT NOT NULL,
    data TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (user, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    event_id TEXT NOT NULL,
    user TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_outbox_url ON webhook_outbox (url, seq);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Opens the database file with the settings every connection uses.
pub(super) fn open_db(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode survives a process crash (kill -9); only a power
    // loss may drop the last transactions.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // A page cache of 256 KiB per connection (SQLite's default is 2 MiB):
    // the journal's writes and the few reads touch the B-tree's upper pages
    // and the rows in flight, and the OS caches the file anyway, so a larger
    // cache only grows with the users table without making commits faster
    // (BENCHMARKS.md, "users").
    conn.pragma_update(None, "cache_size", -256)?;
    Ok(conn)
}

/// Handle to the writer thread: the [`Journal`] and the [`Liveness`].
#[derive(Debug)]
pub struct Store {
    tx: std_mpsc::Sender<Op>,
    /// Woken after every commit that added webhook events.
    webhooks_pending: Arc<Notify>,
    /// What is queued and committed, and whether the writer commits.
    progress: Arc<Progress>,
    path: std::path::PathBuf,
    /// For reads of users who are not in memory (their last presence).
    reader: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/presenced.db`, reads what the
    /// last run left and starts the writer. Webhook events are queued for
    /// each of `webhook_urls`. Of the offline users, the `offline_limit` most
    /// recently seen are recovered; the others are read when asked for.
    /// New transitions are refused while `queue_max` operations wait.
    pub fn open(
        data_dir: &Path,
        webhook_urls: Vec<String>,
        offline_limit: usize,
        queue_max: usize,
    ) -> anyhow::Result<(Store, Recovered)> {
        let path = data_dir.join("presenced.db");
        let conn = open_db(&path)?;
        conn.execute_batch(SCHEMA)
            .context("cannot create the database schema")?;
        let recovered = recover(&conn, offline_limit)?;
        let store = Store::start(conn, &path, webhook_urls, queue_max)?;
        Ok((store, recovered))
    }

    /// Starts the writer on `conn` (the schema in place).
    pub(super) fn start(
        conn: Connection,
        path: &Path,
        webhook_urls: Vec<String>,
        queue_max: usize,
    ) -> anyhow::Result<Store> {
        let reader = Mutex::new(open_db(path)?);
        let (tx, rx) = std_mpsc::channel();
        let webhooks_pending = Arc::new(Notify::new());
        let notify = webhooks_pending.clone();
        let progress = Arc::new(Progress::new(queue_max));
        let writer_progress = progress.clone();
        // The thread ends when the Store (its only sender) is dropped.
        std::thread::Builder::new()
            .name("presenced-store".into())
            .spawn(move || writer_loop(conn, rx, webhook_urls, notify, writer_progress))
            .context("cannot start the store writer")?;
        Ok(Store {
            tx,
            webhooks_pending,
            progress,
            path: path.to_owned(),
            reader,
        })
    }

    /// Queues one operation (counted first, so a barrier taken after this
    /// returns waits for it).
    fn queue(&self, op: Op) {
        self.progress.queued_one();
        let _ = self.tx.send(op);
    }

    /// Path of the database file (for the webhook outbox's connection).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Woken after every commit that added webhook events.
    pub fn webhooks_committed(&self) -> Arc<Notify> {
        self.webhooks_pending.clone()
    }
}

impl Journal for Store {
    fn record(&self, event: PresenceEvent) {
        self.queue(Op::Event(event));
    }

    fn barrier(&self) -> Barrier {
        self.progress.barrier()
    }

    fn is_healthy(&self) -> bool {
        self.progress.healthy()
    }

    fn accepting(&self) -> bool {
        self.progress.accepting()
    }

    fn queue_depth(&self) -> u64 {
        self.progress.depth()
    }

    fn last_presence(&self, users: &[String]) -> anyhow::Result<Vec<StoredPresence>> {
        let mut db = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        // One read transaction: every answer from the same commit.
        let tx = db.transaction()?;
        let mut out = Vec::new();
        {
            let mut stmt =
                tx.prepare_cached("SELECT status, since, last_seen FROM users WHERE user = ?1")?;
            for user in users {
                let row = stmt
                    .query_row(params![user], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                        ))
                    })
                    .optional()?;
                if let Some((status, since, last_seen)) = row {
                    out.push(StoredPresence {
                        user: user.clone(),
                        status: parse_status(&status),
                        since: since.max(0) as u64,
                        last_seen: last_seen.map(|v| v.max(0) as u64),
                    });
                }
            }
        }
        tx.finish()?;
        Ok(out)
    }
}

impl Liveness for Store {
    fn beat(&self, now: u64) {
        self.queue(Op::Alive(now));
    }
}

fn status_str(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Online => "online",
        UserStatus::Away => "away",
        UserStatus::Offline => "offline",
    }
}

/// `(channel, member data, member since)` of one journaled membership.
type Membership = (String, Map<String, Value>, u64);

fn parse_status(s: &str) -> UserStatus {
    match s {
        "online" => UserStatus::Online,
        "away" => UserStatus::Away,
        _ => UserStatus::Offline,
    }
}

fn recover(conn: &Connection, offline_limit: usize) -> anyhow::Result<Recovered> {
    let alive_at: Option<u64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'alive_at'", [], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
        .and_then(|v| v.parse().ok());
    let mut members: HashMap<String, Vec<Membership>> = HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT user, channel, data, since FROM members")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (user, channel, data, since) = row?;
            let data = serde_json::from_str(&data).unwrap_or_default();
            members
                .entry(user)
                .or_default()
                .push((channel, data, since as u64));
        }
    }
    let mut out = Recovered {
        alive_at,
        ..Recovered::default()
    };
    let mut stmt = conn.prepare(
        "SELECT user, status, since, last_seen FROM users WHERE status != 'offline'
         UNION ALL
         SELECT * FROM (SELECT user, status, since, last_seen FROM users
             WHERE status = 'offline' ORDER BY last_seen DESC LIMIT ?1)",
    )?;
    let limit = i64::try_from(offline_limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![limit], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?,
        ))
    })?;
    for row in rows {
        let (user, status, since, last_seen) = row?;
        let since = since as u64;
        match status.as_str() {
            "online" | "away" => {
                let channels = members.remove(&user).unwrap_or_default();
                out.online.push(RestoredUser {
                    user,
                    status: if status == "away" {
                        UserStatus::Away
                    } else {
                        UserStatus::Online
                    },
                    since,
                    // Never later than the crash: the last time the server
                    // was known alive (or when the user came online).
                    last_seen: alive_at.unwrap_or(since).max(since),
                    channels,
                });
            }
            _ => out.offline.push((user, since, last_seen.map(|v| v as u64))),
        }
    }
    Ok(out)
}

/// A member data map as JSON text (a map of JSON values always serializes).
fn map_json(data: &Map<String, Value>) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned())
}

/// Applies one event to the journal and queues its webhook rows; returns how
/// many rows it queued.
pub(super) fn apply_event(
    tx: &rusqlite::Transaction<'_>,
    ev: &PresenceEvent,
    urls: &[String],
) -> rusqlite::Result<usize> {
    let upsert_user = |user: &str, status: UserStatus, since: u64, last_seen: Option<u64>| {
        tx.prepare_cached(
            "INSERT INTO users (user, status, since, last_seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user) DO UPDATE SET status = excluded.status,
                 since = excluded.since,
                 last_seen = COALESCE(excluded.last_seen, users.last_seen)",
        )?
        .execute(params![
            user,
            status_str(status),
            since as i64,
            last_seen.map(|v| v as i64)
        ])
    };
    match ev {
        PresenceEvent::UserOnline { user, at } => {
            upsert_user(user, UserStatus::Online, *at, Some(*at))?;
        }
        PresenceEvent::UserAway { user, at } => {
            upsert_user(user, UserStatus::Away, *at, None)?;
        }
        PresenceEvent::UserOffline {
            user,
            at,
            last_seen,
            ..
        } => {
            upsert_user(user, UserStatus::Offline, *at, Some(*last_seen))?;
            tx.prepare_cached("DELETE FROM members WHERE user = ?1")?
                .execute(params![&**user])?;
        }
        PresenceEvent::MemberJoined {
            user,
            channel,
            at,
            data,
        } => {
            tx.prepare_cached(
                "INSERT INTO members (user, channel, data, since) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user, channel) DO UPDATE SET data = excluded.data,
                     since = excluded.since",
            )?
            .execute(params![&**user, &**channel, map_json(data), *at as i64])?;
        }
        PresenceEvent::MemberUpdated {
            user,
            channel,
            data,
            ..
        } => {
            tx.prepare_cached("UPDATE members SET data = ?3 WHERE user = ?1 AND channel = ?2")?
                .execute(params![&**user, &**channel, map_json(data)])?;
        }
        PresenceEvent::MemberLeft { user, channel, .. } => {
            tx.prepare_cached("DELETE FROM members WHERE user = ?1 AND channel = ?2")?
                .execute(params![&**user, &**channel])?;
        }
    }
    if urls.is_empty() {
        return Ok(0);
    }
    let Some(hook) = crate::events::webhook_event(ev) else {
        return Ok(0);
    };
    for url in urls {
        tx.prepare_cached(
            "INSERT INTO webhook_outbox (url, event_id, user, payload, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            url,
            hook.id,
            hook.user,
            hook.payload,
            hook.at as i64
        ])?;
    }
    Ok(urls.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use presenced_engine::Reason;
    use std::sync::Arc as StdArc;

    fn user(u: &str) -> StdArc<str> {
        StdArc::from(u)
    }

    #[tokio::test]
    async fn journal_survives_reopen_and_offline_clears_members() {
        let dir = tempfile::tempdir().unwrap();
        let (store, rec) =
            Store::open(dir.path(), vec!["http://127.0.0.1:1/h".into()], 10, 1_000).unwrap();
        assert!(rec.online.is_empty() && rec.alive_at.is_none());
        store.record(PresenceEvent::UserOnline {
            user: user("a"),
            at: 1_000,
        });
        store.record(PresenceEvent::MemberJoined {
            user: user("a"),
            channel: user("room:1"),
            at: 1_001,
            data: serde_json::json!({"x": 1}).as_object().unwrap().clone(),
        });
        store.record(PresenceEvent::UserOnline {
            user: user("b"),
            at: 1_002,
        });
        store.record(PresenceEvent::UserOffline {
            user: user("b"),
            at: 1_500,
            last_seen: 1_400,
            reason: Reason::Timeout,
        });
        store.beat(2_000);
        assert!(store.barrier().wait().await);
        drop(store);

        let (store, rec) = Store::open(dir.path(), vec![], 10, 1_000).unwrap();
        assert_eq!(rec.alive_at, Some(2_000));
        assert_eq!(rec.online.len(), 1);
        let a = &rec.online[0];
        assert_eq!((a.user.as_str(), a.last_seen), ("a", 2_000));
        assert_eq!(a.channels.len(), 1);
        assert_eq!(a.channels[0].0, "room:1");
        assert_eq!(a.channels[0].1["x"], 1);
        assert_eq!(rec.offline, vec![("b".to_owned(), 1_500, Some(1_400))]);
        let found = store
            .last_presence(&["b".to_owned(), "nobody".to_owned(), "a".to_owned()])
            .unwrap();
        assert_eq!(
            found,
            [
                StoredPresence {
                    user: "b".into(),
                    status: UserStatus::Offline,
                    since: 1_500,
                    last_seen: Some(1_400),
                },
                StoredPresence {
                    user: "a".into(),
                    status: UserStatus::Online,
                    since: 1_000,
                    last_seen: Some(1_000),
                },
            ]
        );
        drop(store);

        let db = open_db(&dir.path().join("presenced.db")).unwrap();
        let n: i64 = db
            .query_row("SELECT COUNT(*) FROM webhook_outbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 4, "online, joined, online, offline");
    }
}

#[cfg(test)]
mod recover_tests {
    use super::*;
    use presenced_engine::Reason;

    #[tokio::test]
    async fn only_the_most_recently_seen_offline_users_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), vec![], 0, 1_000).unwrap();
        for i in 0..5u64 {
            let user: Arc<str> = Arc::from(format!("u{i}"));
            store.record(PresenceEvent::UserOnline {
                user: user.clone(),
                at: 1_000 + i,
            });
            store.record(PresenceEvent::UserOffline {
                user,
                at: 2_000 + i,
                last_seen: 1_500 + i,
                reason: Reason::Timeout,
            });
        }
        store.record(PresenceEvent::UserOnline {
            user: Arc::from("live"),
            at: 3_000,
        });
        assert!(store.barrier().wait().await);
        drop(store);
        let (store, rec) = Store::open(dir.path(), vec![], 2, 1_000).unwrap();
        assert_eq!(rec.online.len(), 1, "online users are always recovered");
        let users: Vec<&str> = rec.offline.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(users, ["u4", "u3"], "the newest last_seen first");
        let older = store.last_presence(&["u0".to_owned()]).unwrap();
        assert_eq!(
            older[0].last_seen,
            Some(1_500),
            "the rest are read when asked"
        );
    }
}
