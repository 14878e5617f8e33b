//! Webhook delivery: one sender task per configured URL drains the durable
//! [`WebhookOutbox`] that the journal fills in the same commit as the
//! transitions.
//!
//! - **Order.** A sender delivers its URL's rows strictly in `seq` order: the
//!   oldest undelivered batch is retried before anything newer is sent
//!   (head-of-line), which is what keeps events in order per user.
//! - **Batching.** A batch is the oldest pending rows, at most
//!   [`BATCH_MAX`]; it goes out as soon as that many are pending, or
//!   [`BATCH_WAIT`] after its oldest event was created.
//! - **Waking.** The outbox's `committed` notify (fanned out to every
//!   sender), timers for the batch window and the backoff, and a re-check
//!   every [`RECHECK`] as a safety net. Never a busy poll.
//! - **Retries.** 2xx deletes the batch. Anything else (status, redirect,
//!   refused connection, timeout) counts a failure on every row of the batch
//!   and puts them off by [`backoff`]: after the n-th failed attempt, a random
//!   delay in `[0, min(500 ms × 2^(n−1), 5 min)]` (full jitter). Events older
//!   than [`MAX_AGE`] are dropped with a warning.
//! - **Restarts.** Events stay in the outbox until delivered; on graceful shutdown
//!   [`Webhooks::shutdown`] makes one last bounded attempt to send what is due.
//!
//! The outbox's methods block (they are queries): every call runs in
//! `spawn_blocking`.
//!
//! Metrics: `presenced_webhook_queue_depth` (gauge, undelivered events over
//! all URLs) and `presenced_webhook_failures_total` (counter: one per failed
//! delivery attempt, plus one per event dropped for age).
//!
//! Receivers check the `Presence-Signature` header with [`verify`]: it is
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` over the
//! exact bytes of the body.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::{now_ms, wall_ms};
use crate::config::Settings;
use crate::outbound::{describe_error, redact_url};
use crate::store::{OutboxEvent, WebhookOutbox};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Presence-Signature";
/// File in the data directory holding the generated webhook secret.
pub const WEBHOOK_SECRET_FILE: &str = "webhook_secret";
/// Most events in one POST.
pub const BATCH_MAX: usize = 100;
/// How long the oldest pending event may wait for others to share its POST.
pub const BATCH_WAIT: Duration = Duration::from_millis(250);
/// Undelivered events older than this are dropped.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Time limit of one POST, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a sender sleeps without looking at the outbox again.
pub const RECHECK: Duration = Duration::from_secs(1);
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
/// Response bytes read (and dropped) so the connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

type HmacSha256 = Hmac<Sha256>;

/// The `v1` signature: hex HMAC-SHA256 of `"<t>.<body>"` keyed with `secret`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The whole `Presence-Signature` header value for `body` sent at `t`.
pub fn signature_header(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

/// Checks a `Presence-Signature` header: for receivers.
///
/// True when the header has a `t` within `tolerance` of `now` (unix seconds)
/// and a `v1` that is the signature of `body` (the exact bytes received)
/// with `secret`. Several `v1` entries are allowed (any may match, for secret
/// rotation); unknown entries are ignored. The comparison is constant-time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64, tolerance: Duration) -> bool {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => {
                if t.is_some() {
                    return false;
                }
                match value.trim().parse::<u64>() {
                    Ok(v) => t = Some(v),
                    Err(_) => return false,
                }
            }
            "v1" => candidates.push(value.trim().to_ascii_lowercase()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if now.abs_diff(t) > tolerance.as_secs() {
        return false;
    }
    let expected = sign(secret, t, body);
    candidates
        .iter()
        .any(|c| bool::from(c.as_bytes().ct_eq(expected.as_bytes())))
}

/// The longest delay before the next attempt after `failures` failed ones:
/// `min(500 ms × 2^(failures−1), 5 min)`.
pub fn backoff_ceiling(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    BACKOFF_BASE
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_CAP)
}

/// The delay before the next attempt after `failures` failed ones: uniform
/// in `[0, backoff_ceiling(failures)]` (full jitter, so that many senders
/// failing together do not retry together).
pub fn backoff(failures: u32) -> Duration {
    let ceiling = backoff_ceiling(failures).as_millis() as u64;
    Duration::from_millis(rand::random_range(0..=ceiling))
}

/// The running senders.
pub struct Webhooks {
    stop: CancellationToken,
    senders: JoinSet<()>,
    fan_out: tokio::task::JoinHandle<()>,
}

impl Webhooks {
    /// Starts one sender per configured URL; `None` when there is none.
    ///
    /// The secret is `webhook_secret`, or one generated once into
    /// `<data dir>/webhook_secret` (and printed) like the JWT secret. Outbox
    /// rows for URLs that are no longer configured are dropped with a warning.
    pub async fn start(
        outbox: Arc<dyn WebhookOutbox>,
        settings: &Settings,
    ) -> anyhow::Result<Option<Webhooks>> {
        if settings.values.webhook_urls.is_empty() {
            return Ok(None);
        }
        let secret: Arc<[u8]> = match &settings.values.webhook_secret {
            Some(s) => Arc::from(s.expose().as_bytes()),
            None => {
                let (secret, generated) = crate::config::stored_secret(
                    &settings.values.data_dir,
                    WEBHOOK_SECRET_FILE,
                    "webhook secret",
                )?;
                if let Some(g) = generated {
                    println!(
                        "generated {} (kept in {}): {}",
                        g.what,
                        g.path.display(),
                        g.value.expose()
                    );
                }
                Arc::from(secret.expose().as_bytes())
            }
        };
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT / 2)
            // A redirected POST turns into a GET: treat 3xx as a failure.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("presenced/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the webhook HTTP client")?;

        let urls = settings.values.webhook_urls.clone();
        let stale = outbox.clone();
        let dropped = tokio::task::spawn_blocking(move || stale.retain_urls(&urls))
            .await
            .context("webhook set-up panicked")??;
        for (url, n) in dropped {
            tracing::warn!(
                url = %redact_url(&url),
                events = n,
                "dropped undelivered webhook events of a URL that is no longer configured"
            );
        }

        let stop = CancellationToken::new();
        let depth = Arc::new(QueueDepth::new(settings.values.webhook_urls.len()));
        let mut wakes = Vec::new();
        let mut senders = JoinSet::new();
        for (index, url) in settings.values.webhook_urls.iter().enumerate() {
            let wake = Arc::new(Notify::new());
            wakes.push(wake.clone());
            let sender = WebhookSender {
                url: url.clone(),
                shown: redact_url(url),
                outbox: outbox.clone(),
                http: http.clone(),
                secret: secret.clone(),
                wake,
                stop: stop.clone(),
                depth: depth.clone(),
                index,
                counted_at: None,
                known_depth: 0,
                started: now_ms(),
            };
            senders.spawn(sender.run());
        }
        // The outbox wakes one waiter per commit; every sender must hear it.
        let fan_out = tokio::spawn(async move {
            loop {
                outbox.committed().notified().await;
                for w in &wakes {
                    w.notify_one();
                }
            }
        });
        tracing::info!(
            urls = settings.values.webhook_urls.len(),
            "webhook delivery started"
        );
        Ok(Some(Webhooks {
            stop,
            senders,
            fan_out,
        }))
    }

    /// Stops the senders after one last attempt, bounded by `within`, to
    /// deliver what is due (events in backoff stay for the next start).
    /// Call it after the store committed its last events.
    pub async fn shutdown(mut self, within: Duration) {
        self.stop.cancel();
        let drained = tokio::time::timeout(within, async {
            while self.senders.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "webhook delivery did not finish within {within:?}; undelivered events stay queued for the next start"
            );
            self.senders.abort_all();
        }
        self.fan_out.abort();
    }
}

/// Undelivered events per URL, summed into the gauge.
struct QueueDepth {
    per_url: Vec<AtomicU64>,
}

impl QueueDepth {
    fn new(n: usize) -> QueueDepth {
        QueueDepth {
            per_url: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn set(&self, index: usize, n: u64) {
        self.per_url[index].store(n, Ordering::Relaxed);
        let total: u64 = self.per_url.iter().map(|d| d.load(Ordering::Relaxed)).sum();
        crate::metrics::set_webhook_queue_depth(total);
    }
}

/// The oldest pending rows of one URL.
struct Head {
    rows: Vec<OutboxEvent>,
    /// Pending rows of the URL, when counted.
    count: Option<u64>,
}

impl Head {
    /// When the head may be sent: not before its backoff ends, and not before
    /// the batch is full or its oldest event has waited [`BATCH_WAIT`].
    fn due_at(&self) -> u64 {
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
fn settle(row: &mut OutboxEvent, now: u64, started: u64) {
    if row.created_at > now {
        row.created_at = started;
    }
    let longest = backoff_ceiling(row.attempts).as_millis() as u64;
    if row.next_attempt_at > now.saturating_add(longest) {
        row.next_attempt_at = started.saturating_add(longest);
    }
}

/// Delivers one URL's outbox.
struct WebhookSender {
    url: String,
    /// The URL without credentials or query, for logs.
    shown: String,
    outbox: Arc<dyn WebhookOutbox>,
    http: reqwest::Client,
    secret: Arc<[u8]>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    depth: Arc<QueueDepth>,
    index: usize,
    /// When the URL's rows were last counted (a full head needs a COUNT).
    counted_at: Option<Instant>,
    known_depth: u64,
    /// When the sender started (the server's clock): see [`settle`].
    started: u64,
}

impl WebhookSender {
    async fn run(mut self) {
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
fn batch_body(rows: &[OutboxEvent]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_known_answer() {
        // Computed independently: Python's hmac.new(b"whsec_test",
        // b'1700000000.{"events":[]}', hashlib.sha256).hexdigest()
        let body = br#"{"events":[]}"#;
        let sig = sign(b"whsec_test", 1_700_000_000, body);
        assert_eq!(
            sig,
            "4f6f9b7a41398ad124e52a1320534f978e522923f3f2b2724e31d7a9dbf78a7f"
        );
        assert_eq!(
            signature_header(b"whsec_test", 1_700_000_000, body),
            format!("t=1700000000,v1={sig}")
        );
    }

    #[test]
    fn verify_accepts_only_the_right_signature_in_time() {
        let secret = b"s3cret";
        let body = br#"{"events":[{"id":"a"}]}"#;
        let header = signature_header(secret, 1_000, body);
        let tol = Duration::from_secs(300);
        assert!(verify(secret, &header, body, 1_000, tol));
        assert!(verify(secret, &header, body, 1_300, tol));
        assert!(verify(secret, &header, body, 700, tol));
        assert!(!verify(secret, &header, body, 1_301, tol), "too old");
        assert!(!verify(b"other", &header, body, 1_000, tol), "wrong secret");
        assert!(!verify(secret, &header, b"{}", 1_000, tol), "other body");
        assert!(!verify(secret, "v1=abc", body, 1_000, tol), "no t");
        assert!(!verify(secret, "t=1000", body, 1_000, tol), "no v1");
        assert!(!verify(secret, "", body, 1_000, tol));
        let rotated = format!(
            "t=1000,v1={},v1={}",
            "0".repeat(64),
            sign(secret, 1_000, body)
        );
        assert!(
            verify(secret, &rotated, body, 1_000, tol),
            "any v1 may match"
        );
        let upper = header
            .to_ascii_uppercase()
            .replace("T=", "t=")
            .replace("V1=", "v1=");
        assert!(
            verify(secret, &upper, body, 1_000, tol),
            "hex case-insensitive"
        );
        let twice = format!("t=1000,{header}");
        assert!(!verify(secret, &twice, body, 1_000, tol), "ambiguous t");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ceiling(0), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(1), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(2), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(5), Duration::from_secs(8));
        assert_eq!(backoff_ceiling(10), Duration::from_secs(256));
        assert_eq!(backoff_ceiling(11), Duration::from_secs(300));
        assert_eq!(backoff_ceiling(u32::MAX), Duration::from_secs(300));
        for failures in [1, 2, 3, 8, 12, 40, u32::MAX] {
            for _ in 0..200 {
                assert!(backoff(failures) <= backoff_ceiling(failures));
            }
        }
        // Full jitter: spread over the whole range, not pinned to an end.
        let samples: Vec<Duration> = (0..400).map(|_| backoff(20)).collect();
        assert!(samples.iter().any(|d| *d < Duration::from_secs(100)));
        assert!(samples.iter().any(|d| *d > Duration::from_secs(200)));
    }

    #[test]
    fn batch_body_is_the_payloads_in_order() {
        let row = |seq, payload: &str| OutboxEvent {
            seq,
            payload: payload.to_owned(),
            created_at: 0,
            attempts: 0,
            next_attempt_at: 0,
        };
        let body = batch_body(&[row(1, r#"{"id":"a"}"#), row(2, r#"{"id":"b"}"#)]);
        assert_eq!(body, r#"{"events":[{"id":"a"},{"id":"b"}]}"#);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["events"][1]["id"], "b");
        assert_eq!(batch_body(&[]), r#"{"events":[]}"#);
    }

    #[test]
    fn head_waits_for_a_full_batch_or_the_window_and_the_backoff() {
        let row = |created_at, next_attempt_at| OutboxEvent {
            seq: 1,
            payload: "{}".into(),
            created_at,
            attempts: 0,
            next_attempt_at,
        };
        let one = Head {
            rows: vec![row(1_000, 0)],
            count: None,
        };
        assert_eq!(one.due_at(), 1_250);
        let full = Head {
            rows: (0..BATCH_MAX).map(|_| row(1_000, 0)).collect(),
            count: None,
        };
        assert_eq!(full.due_at(), 0);
        let backing_off = Head {
            rows: vec![row(1_000, 9_000), row(1_100, 0)],
            count: None,
        };
        assert_eq!(backing_off.due_at(), 9_000);
    }

    #[test]
    fn rows_from_a_run_whose_clock_was_ahead_wait_no_longer_than_they_could() {
        let hour = 3_600_000;
        let row = |created_at, attempts, next_attempt_at| OutboxEvent {
            seq: 1,
            payload: "{}".into(),
            created_at,
            attempts,
            next_attempt_at,
        };
        let settled = |mut r: OutboxEvent, now, started| {
            settle(&mut r, now, started);
            (r.created_at, r.next_attempt_at)
        };
        let (started, now) = (10_000_000, 10_000_700);
        // Created an hour "later" than now: as if created at the start.
        assert_eq!(settled(row(now + hour, 0, 0), now, started), (started, 0));
        // Failed once, its retry stored an hour ahead: the longest backoff
        // of one failure (500 ms) after the start.
        assert_eq!(
            settled(row(now - 10, 1, now + hour), now, started),
            (now - 10, started + 500)
        );
        // This run's rows are kept as they are: created before now, retried
        // within the longest backoff from now.
        assert_eq!(
            settled(row(now, 3, now + 2_000), now, started),
            (now, now + 2_000)
        );
        assert_eq!(
            settled(row(now - hour, 40, now + 300_000), now, started),
            (now - hour, now + 300_000)
        );
    }
}
