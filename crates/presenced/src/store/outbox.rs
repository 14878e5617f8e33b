//! The webhook outbox on SQLite: the queries of the webhook senders on the
//! `webhook_outbox` table, which the journal's writer fills (`sqlite.rs`).
//! One connection of its own (WAL lets it read while the writer writes).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use rusqlite::{Connection, params};
use tokio::sync::Notify;

use super::sqlite::open_db;
use super::{OutboxEvent, OutboxHead, WebhookOutbox};

/// [`WebhookOutbox`] over the data directory's SQLite file.
#[derive(Debug)]
pub struct SqliteOutbox {
    db: Mutex<Connection>,
    committed: Arc<Notify>,
}

impl SqliteOutbox {
    /// Opens a connection to `path`; `committed` is the writer's signal.
    pub fn open(path: &Path, committed: Arc<Notify>) -> anyhow::Result<SqliteOutbox> {
        Ok(SqliteOutbox {
            db: Mutex::new(open_db(path)?),
            committed,
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl WebhookOutbox for SqliteOutbox {
    fn head(&self, url: &str, max: usize, count: bool) -> anyhow::Result<OutboxHead> {
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT seq, payload, created_at, attempts, next_attempt_at
             FROM webhook_outbox WHERE url = ?1 ORDER BY seq LIMIT ?2",
        )?;
        let events: Vec<OutboxEvent> = stmt
            .query_map(params![url, max as i64], |r| {
                Ok(OutboxEvent {
                    seq: r.get(0)?,
                    payload: r.get(1)?,
                    created_at: r.get::<_, i64>(2)?.max(0) as u64,
                    attempts: r.get::<_, i64>(3)?.clamp(0, u32::MAX as i64) as u32,
                    next_attempt_at: r.get::<_, i64>(4)?.max(0) as u64,
                })
            })?
            .collect::<Result<_, _>>()
            .context("cannot read the webhook outbox")?;
        drop(stmt);
        let (events, bad): (Vec<OutboxEvent>, Vec<OutboxEvent>) = events
            .into_iter()
            .partition(|e| serde_json::from_str::<serde::de::IgnoredAny>(&e.payload).is_ok());
        for e in &bad {
            db.execute("DELETE FROM webhook_outbox WHERE seq = ?1", params![e.seq])?;
        }
        let count = if events.len() < max && bad.is_empty() {
            Some(events.len() as u64)
        } else if count {
            let n: i64 = db.query_row(
                "SELECT COUNT(*) FROM webhook_outbox WHERE url = ?1",
                params![url],
                |r| r.get(0),
            )?;
            Some(n as u64)
        } else {
            None
        };
        Ok(OutboxHead {
            events,
            count,
            bad: bad.iter().map(|e| e.seq).collect(),
        })
    }

    fn delivered(&self, url: &str, first: i64, last: i64) -> anyhow::Result<()> {
        self.db().execute(
            "DELETE FROM webhook_outbox WHERE url = ?1 AND seq BETWEEN ?2 AND ?3",
            params![url, first, last],
        )?;
        Ok(())
    }

    fn failed(
        &self,
        url: &str,
        first: i64,
        last: i64,
        attempts: u32,
        next_attempt_at: u64,
    ) -> anyhow::Result<()> {
        self.db().execute(
            "UPDATE webhook_outbox SET attempts = ?4, next_attempt_at = ?5
             WHERE url = ?1 AND seq BETWEEN ?2 AND ?3",
            params![url, first, last, attempts as i64, next_attempt_at as i64],
        )?;
        Ok(())
    }

    fn drop_older(&self, url: &str, cutoff: u64) -> anyhow::Result<u64> {
        let n = self.db().execute(
            "DELETE FROM webhook_outbox WHERE url = ?1 AND created_at < ?2",
            params![url, cutoff as i64],
        )?;
        Ok(n as u64)
    }

    fn retain_urls(&self, urls: &[String]) -> anyhow::Result<Vec<(String, u64)>> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT url, COUNT(*) FROM webhook_outbox GROUP BY url")?;
        let stale: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        let mut dropped = Vec::new();
        for (url, n) in stale {
            if urls.contains(&url) {
                continue;
            }
            db.execute("DELETE FROM webhook_outbox WHERE url = ?1", params![url])?;
            dropped.push((url, n as u64));
        }
        Ok(dropped)
    }

    fn committed(&self) -> &Notify {
        &self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (tempfile::TempDir, SqliteOutbox) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presenced.db");
        let db = open_db(&path).unwrap();
        db.execute_batch(super::super::sqlite::SCHEMA).unwrap();
        let rows = [
            ("a", r#"{"id":"1"}"#, 10),
            ("a", "not json", 11),
            ("a", r#"{"id":"3"}"#, 12),
            ("b", r#"{"id":"4"}"#, 13),
            ("gone", r#"{"id":"5"}"#, 14),
        ];
        for (url, payload, at) in rows {
            db.execute(
                "INSERT INTO webhook_outbox (url, event_id, user, payload, created_at)
                 VALUES (?1, 'e', 'u', ?2, ?3)",
                params![url, payload, at],
            )
            .unwrap();
        }
        (dir, SqliteOutbox::open(&path, Arc::default()).unwrap())
    }

    #[test]
    fn head_is_in_order_per_url_and_drops_what_is_not_json() {
        let (_dir, o) = outbox();
        let head = o.head("a", 10, false).unwrap();
        let ids: Vec<&str> = head.events.iter().map(|e| e.payload.as_str()).collect();
        assert_eq!(ids, [r#"{"id":"1"}"#, r#"{"id":"3"}"#]);
        assert_eq!(head.bad, [2]);
        assert_eq!(head.events[1].created_at, 12);
        let again = o.head("a", 10, false).unwrap();
        assert!(again.bad.is_empty());
        assert_eq!(again.count, Some(2));
        let first = o.head("a", 1, true).unwrap();
        assert_eq!((first.events.len(), first.count), (1, Some(2)));
        assert_eq!(o.head("a", 1, false).unwrap().count, None);
    }

    #[test]
    fn failures_delivery_expiry_and_unconfigured_urls() {
        let (_dir, o) = outbox();
        o.failed("a", 1, 3, 4, 9_000).unwrap();
        let head = o.head("a", 10, false).unwrap();
        assert!(
            head.events
                .iter()
                .all(|e| e.attempts == 4 && e.next_attempt_at == 9_000)
        );
        assert_eq!(o.head("b", 10, false).unwrap().events[0].attempts, 0);
        o.delivered("a", 1, 1).unwrap();
        assert_eq!(o.head("a", 10, false).unwrap().events[0].seq, 3);
        assert_eq!(o.drop_older("b", 13).unwrap(), 0);
        assert_eq!(o.drop_older("b", 14).unwrap(), 1);
        let dropped = o.retain_urls(&["a".to_owned(), "b".to_owned()]).unwrap();
        assert_eq!(dropped, [("gone".to_owned(), 1)]);
        assert!(o.head("gone", 10, false).unwrap().events.is_empty());
        assert_eq!(o.head("a", 10, false).unwrap().events.len(), 1);
    }
}
