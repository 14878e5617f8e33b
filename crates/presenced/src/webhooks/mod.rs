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
//! Here: starting and stopping the senders. `sender.rs` is one URL's sender
//! (head of queue, batch window, POST, backoff); `signature.rs` signs.
//!
//! Receivers check the `Presence-Signature` header with [`verify`]: it is
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` over the
//! exact bytes of the body.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod sender;
mod signature;
#[cfg(test)]
mod tests;

pub use signature::{sign, signature_header, verify};

use sender::WebhookSender;

use crate::clock::now_ms;
use crate::config::Settings;
use crate::outbound::redact_url;
use crate::store::WebhookOutbox;

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
