//! One URL's sender: the head of its queue, the batch window, a POST with
//! its signature, and the backoff after a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::clock::{now_ms, wall_ms};
use crate::outbound::describe_error;
use crate::store::{OutboxEvent, WebhookOutbox};

/// The oldest pending rows of one URL.
pub(super) struct Head {
    pub(super) rows: Vec<OutboxEvent>,
    /// Pending rows of the URL, when counted.
    pub(super) count: Option<u64>,
}

impl Head {
    /// When the head may be sent: not before its backoff ends, and not before
    /// the batch is full or its oldest event has waited [`BATCH_WAIT`].
    pub(super) fn due_at(&self) -> u64 {
        let backoff_until = self.backoff_until();
        let ready = if self.rows.len() >= BATCH_MAX {
            0
        } else {
            self.rows[0]
                .created_at
                .saturating_add(BATCH_WAIT.as_millis() as u64)
        };
        backoff_until.max(ready)
    }

    fn backoff_until(&self) -> u64 {
        self.rows
            .iter()
            .map(|r| r.next_attempt_at)
            .max()
            .unwrap_or(0)
    }
}

/// Corrects the times of a row an earlier run stored with a clock that was
/// ahead of this run's (the wall clock went back between the runs): one
/// created "later" than `now` is taken as created at `started` (when this
/// sender started), and a retry further away than its failures' longest
/// backoff is due that backoff after `started`. Rows of this run are never
/// changed: they are created before `now`, and retried at most their
/// longest backoff after `now`.
pub(super) fn settle(row: &mut OutboxEvent, now: u64, started: u64) {
    if row.created_at > now {
        row.created_at = started;
    }
    let longest = backoff_ceiling(row.attempts).as_millis() as u64;
    if row.next_attempt_at > now.saturating_add(longest) {
        row.next_attempt_at = started.saturating_add(longest);
    }
}

/// Delivers one URL's outbox.
pub(super) struct WebhookSender {
    pub(super) url: String,
    /// The URL without credentials or query, for logs.
    pub(super) shown: String,
    pub(super) outbox: Arc<dyn WebhookOutbox>,
    pub(super) http: reqwest::Client,
    pub(super) secret: Arc<[u8]>,
    pub(super) wake: Arc<Notify>,
    pub(super) stop: CancellationToken,
    pub(super) depth: Arc<QueueDepth>,
    pub(super) index: usize,
    /// When the URL's rows were last counted (a full head needs a COUNT).
    pub(super) counted_at: Option<Instant>,
    pub(super) known_depth: u64,
    /// When the sender started (the server's clock): see [`settle`].
    pub(super) started: u64,
}

impl WebhookSender {
    pub(super) async fn run(mut self) {
        loop {
            if self.stop.is_cancelled() {
                self.flush().await;
                return;
            }
            let head = match self.load_head().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(url = %self.shown, error = %format!("{e:#}"), "cannot read the webhook outbox");
                    self.wait(None, false).await;
                    continue;
                }
            };
            let now = now_ms();
            let Some(first) = head.rows.first() else {
                self.wait(None, true).await;
                continue;
            };
            if first.created_at.saturating_add(MAX_AGE.as_millis() as u64) < now {
                self.drop_expired(now).await;
                continue;
            }
            let due = head.due_at();
            if due > now {
                // New events can only complete a batch that is not backing off.
                let listen = head.rows.len() < BATCH_MAX && head.backoff_until() <= now;
                self.wait(Some(due), listen).await;
                continue;
            }
            self.deliver(&head.rows).await;
        }
    }

    /// The last attempt at shutdown: sends what is due, without waiting for
    /// batches to fill, until the outbox is empty, something is backing off
    /// or a POST fails.
    async fn flush(&mut self) {
        loop {
            let Ok(head) = self.load_head().await else {
                return;
            };
            let now = now_ms();
            let Some(first) = head.rows.first() else {
                return;
            };
            if first.created_at.saturating_add(MAX_AGE.as_millis() as u64) < now {
                self.drop_expired(now).await;
                continue;
            }
            if head.backoff_until() > now || !self.deliver(&head.rows).await {
                return;
            }
        }
    }

    /// Sleeps until `until` (ms) or [`RECHECK`], whichever is first; also
    /// until new events are committed when `listen`, or the sender is told
    /// to stop.
    async fn wait(&self, until: Option<u64>, listen: bool) {
        let max = RECHECK.as_millis() as u64;
        let ms = until.map_or(max, |t| t.saturating_sub(now_ms()).min(max));
        let woken = async {
            if listen {
                self.wake.notified().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = woken => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Runs `f` on the outbox off the async threads.
    async fn outbox<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn WebhookOutbox) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let outbox = self.outbox.clone();
        tokio::task::spawn_blocking(move || f(&*outbox))
            .await
            .context("webhook outbox query panicked")?
            .context("webhook outbox query failed")
    }

    /// Reads the oldest pending events.
    async fn load_head(&mut self) -> anyhow::Result<Head> {
        let url = self.url.clone();
        let want_count = self.counted_at.is_none_or(|at| at.elapsed() >= RECHECK);
        let found = self
            .outbox(move |o| o.head(&url, BATCH_MAX, want_count))
            .await?;
        for seq in &found.bad {
            tracing::error!(seq, "dropped a webhook outbox row that is not JSON");
        }
        let now = now_ms();
        let mut rows = found.events;
        for row in &mut rows {
            settle(row, now, self.started);
        }
        let head = Head {
            rows,
            count: found.count,
        };
        match head.count {
            Some(n) => {
                if n as usize >= BATCH_MAX {
                    self.counted_at = Some(Instant::now());
                }
                self.known_depth = n;
            }
            None => self.known_depth = self.known_depth.max(head.rows.len() as u64),
        }
        self.depth.set(self.index, self.known_depth);
        Ok(head)
    }

    /// POSTs `rows` as one batch; returns whether the receiver took it.
    async fn deliver(&mut self, rows: &[OutboxEvent]) -> bool {
        let body = batch_body(rows);
        // The receiver checks `t` against its own clock: the wall clock.
        let t = wall_ms() / 1000;
        let signature = signature_header(&self.secret, t, body.as_bytes());
        let sent = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(mut resp) => {
                let status = resp.status();
                // Read a little of the body so the connection can be reused.
                let mut read = 0;
                while read < MAX_RESPONSE_BYTES {
                    match resp.chunk().await {
                        Ok(Some(c)) => read += c.len(),
                        _ => break,
                    }
                }
                (!status.is_success()).then(|| format!("HTTP status {status}"))
            }
            Err(e) => Some(describe_error(&e)),
        };
        let first = rows[0].seq;
        let last = rows[rows.len() - 1].seq;
        let url = self.url.clone();
        match failure {
            None => {
                let n = rows.len();
                let done = self.outbox(move |o| o.delivered(&url, first, last)).await;
                if let Err(e) = done {
                    // The batch is sent again later: receivers drop it by id.
                    tracing::error!(url = %self.shown, error = %format!("{e:#}"), "cannot delete delivered webhook events");
                }
                self.known_depth = self.known_depth.saturating_sub(n as u64);
                self.depth.set(self.index, self.known_depth);
                tracing::debug!(url = %self.shown, events = n, "webhook batch delivered");
                true
            }
            Some(why) => {
                crate::metrics::add_webhook_failures(1);
                let failures = rows
                    .iter()
                    .map(|r| r.attempts)
                    .max()
                    .unwrap_or(0)
                    .saturating_add(1);
                let delay = backoff(failures);
                let next = now_ms().saturating_add(delay.as_millis() as u64);
                let marked = self
                    .outbox(move |o| o.failed(&url, first, last, failures, next))
                    .await;
                if let Err(e) = marked {
                    tracing::error!(url = %self.shown, error = %format!("{e:#}"), "cannot record a failed webhook attempt");
                }
                tracing::warn!(
                    url = %self.shown,
                    events = rows.len(),
                    attempts = failures,
                    retry_in = ?delay,
                    "webhook delivery failed: {why}"
                );
                false
            }
        }
    }

    /// Drops this URL's events older than [`MAX_AGE`].
    async fn drop_expired(&mut self, now: u64) {
        let url = self.url.clone();
        let cutoff = now.saturating_sub(MAX_AGE.as_millis() as u64);
        let dropped = self.outbox(move |o| o.drop_older(&url, cutoff)).await;
        match dropped {
            Ok(n) => {
                crate::metrics::add_webhook_failures(n);
                self.known_depth = self.known_depth.saturating_sub(n);
                self.depth.set(self.index, self.known_depth);
                tracing::warn!(
                    url = %self.shown,
                    events = n,
                    "dropped webhook events undelivered for {}",
                    humantime::format_duration(MAX_AGE)
                );
            }
            Err(e) => {
                tracing::error!(url = %self.shown, error = %format!("{e:#}"), "cannot drop expired webhook events");
                self.wait(None, false).await;
            }
        }
    }
}

/// `{"events":[...]}` from the rows' payloads, which are JSON objects.
pub(super) fn batch_body(rows: &[OutboxEvent]) -> String {
    let mut body =
        String::with_capacity(16 + rows.iter().map(|r| r.payload.len() + 1).sum::<usize>());
    body.push_str("{\"events\":[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&r.payload);
    }
    body.push_str("]}");
    body
}
