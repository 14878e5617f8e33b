//! Prometheus metrics at `GET /metrics`, through the `metrics` facade.
//!
//! One recorder per process, installed globally by [`init`] (or the first
//! time anything asks for it; tests may run several servers in one process,
//! they share it), with a small thread that drains histogram samples every
//! few seconds. No exporter listener of its own: the scrape is a route on the
//! server's port.
//!
//! Gauges of the presence state are computed at scrape time from the engine,
//! and the hub's frame counters are copied in then too, so the hot paths pay
//! nothing for metrics. The store and the webhook sender record into the
//! helpers at the end of this file as things happen.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

pub const CONNECTIONS: &str = "presenced_connections";
pub const USERS_ONLINE: &str = "presenced_users_online";
pub const CHANNELS: &str = "presenced_channels";
pub const MEMBERS: &str = "presenced_members";
pub const FRAMES_IN: &str = "presenced_frames_in_total";
pub const FRAMES_OUT: &str = "presenced_frames_out_total";
pub const DROPPED_BROADCASTS: &str = "presenced_dropped_broadcasts_total";
pub const RESYNCS: &str = "presenced_resyncs_total";
pub const WEBHOOK_QUEUE_DEPTH: &str = "presenced_webhook_queue_depth";
pub const WEBHOOK_FAILURES: &str = "presenced_webhook_failures_total";
pub const STORE_WRITE_SECONDS: &str = "presenced_store_write_seconds";

/// Bucket bounds of `presenced_store_write_seconds`: a batched SQLite commit
/// takes from well under a millisecond to, on a slow disk, a second or more.
const STORE_WRITE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How often the histograms' sample buffers are drained when nobody scrapes
/// (bounds their memory).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the recorder now. Call it before anything records: values
/// recorded before the recorder exists are lost.
pub fn init() {
    let _ = handle();
}

/// The process's Prometheus handle; installs the recorder on first use.
/// `None` if another recorder was installed first (then `/metrics` serves an
/// empty document and the helpers record into that other recorder).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(install).as_ref()
}

fn install() -> Option<PrometheusHandle> {
    let builder = match PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full(STORE_WRITE_SECONDS.into()),
        STORE_WRITE_BUCKETS,
    ) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: bad histogram buckets, using summaries");
            PrometheusBuilder::new()
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if let Err(e) = ::metrics::set_global_recorder(recorder) {
        tracing::warn!(error = %e, "metrics: a recorder was already installed");
        return None;
    }
    describe();
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics: no upkeep thread; histograms drain at scrape time only");
    }
    Some(handle)
}

/// HELP lines, and a first value for every metric so that each one is in
/// the document from the first scrape on.
fn describe() {
    describe_gauge!(CONNECTIONS, "Connections, live or inside the grace window.");
    describe_gauge!(USERS_ONLINE, "Users online or away.");
    describe_gauge!(CHANNELS, "Channels that exist.");
    describe_gauge!(MEMBERS, "Members summed over all channels.");
    describe_counter!(FRAMES_IN, "WebSocket frames received.");
    describe_counter!(FRAMES_OUT, "WebSocket frames sent.");
    describe_counter!(
        DROPPED_BROADCASTS,
        "Broadcast frames dropped for a lagging client (it is resynced)."
    );
    describe_counter!(RESYNCS, "Snapshots resent to clients that lagged.");
    describe_gauge!(WEBHOOK_QUEUE_DEPTH, "Webhook events waiting in the outbox.");
    describe_counter!(WEBHOOK_FAILURES, "Failed webhook delivery attempts.");
    describe_histogram!(
        STORE_WRITE_SECONDS,
        Unit::Seconds,
        "Time to commit one batch of writes to the store."
    );
    gauge!(WEBHOOK_QUEUE_DEPTH).set(0.0);
    counter!(WEBHOOK_FAILURES).increment(0);
    // Registers the histogram (its buckets render with zero counts).
    let _ = histogram!(STORE_WRITE_SECONDS);
}

/// Renders the document for `state`'s server: engine gauges and the hub's
/// counters as of now, plus whatever the helpers recorded.
pub fn render(state: &AppState) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    let counts = state.hub.counts();
    gauge!(CONNECTIONS).set(counts.connections as f64);
    gauge!(USERS_ONLINE).set(counts.users as f64);
    gauge!(CHANNELS).set(counts.channels as f64);
    gauge!(MEMBERS).set(counts.members as f64);
    let c = state.hub.counters();
    counter!(FRAMES_IN).absolute(c.frames_in.load(Ordering::Relaxed));
    counter!(FRAMES_OUT).absolute(c.frames_out.load(Ordering::Relaxed));
    counter!(DROPPED_BROADCASTS).absolute(c.dropped_broadcasts.load(Ordering::Relaxed));
    counter!(RESYNCS).absolute(c.resyncs.load(Ordering::Relaxed));
    handle.run_upkeep();
    handle.render()
}

/// `GET /metrics`: Prometheus text exposition format, no key needed.
pub async fn scrape(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        render(&state),
    )
        .into_response()
}

// ----- helpers for the store and the webhook sender -----------------------

/// Records how long one store commit took.
pub fn record_store_write(secs: f64) {
    if handle().is_some() {
        histogram!(STORE_WRITE_SECONDS).record(secs);
    }
}

/// Sets how many webhook events wait in the outbox.
pub fn set_webhook_queue_depth(n: usize) {
    if handle().is_some() {
        gauge!(WEBHOOK_QUEUE_DEPTH).set(n as f64);
    }
}

/// Counts one failed webhook delivery attempt.
pub fn inc_webhook_failures() {
    if handle().is_some() {
        counter!(WEBHOOK_FAILURES).increment(1);
    }
}
