//! Prometheus metrics at `GET /metrics`, through the `metrics` facade.
//!
//! One recorder per process, installed globally by [`init`] (or the first
//! time anything asks for it; tests may run several servers in one process,
//! they share it), with a small thread that drains histogram samples every
//! few seconds. No exporter listener of its own: the scrape is a route on the
//! server's port.
//!
//! Every metric name is spelled here and only here. Gauges of the presence
//! state and the hub's frame counters are read at scrape time (a
//! [`Snapshot`] the route takes from the hub), so the hot paths pay nothing
//! for metrics; the store and the webhook senders record through the helpers
//! at the end of this file as things happen. This module depends on no other
//! module of the server.

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
pub const STORE_WRITE_FAILURES: &str = "presenced_store_write_failures_total";
pub const JOURNAL_QUEUE_DEPTH: &str = "presenced_journal_queue_depth";
pub const TCP_CONNECTIONS: &str = "presenced_tcp_connections";
pub const CONNECTIONS_REFUSED: &str = "presenced_connections_refused_total";

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
    describe_counter!(
        STORE_WRITE_FAILURES,
        "Store commits that failed (the batch is kept and retried)."
    );
    describe_gauge!(
        JOURNAL_QUEUE_DEPTH,
        "Presence events and beats queued for the store and not yet committed."
    );
    describe_gauge!(
        TCP_CONNECTIONS,
        "TCP connections held within the connection caps (HTTP and WebSocket)."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused at a connection cap, by cap (total or per_ip)."
    );
    gauge!(TCP_CONNECTIONS).set(0.0);
    counter!(CONNECTIONS_REFUSED, "reason" => "total").increment(0);
    counter!(CONNECTIONS_REFUSED, "reason" => "per_ip").increment(0);
    gauge!(WEBHOOK_QUEUE_DEPTH).set(0.0);
    counter!(WEBHOOK_FAILURES).increment(0);
    counter!(STORE_WRITE_FAILURES).increment(0);
    gauge!(JOURNAL_QUEUE_DEPTH).set(0.0);
    // Registers the histogram (its buckets render with zero counts).
    let _ = histogram!(STORE_WRITE_SECONDS);
}

/// What the presence state and the hub's counters read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub connections: usize,
    pub users: usize,
    pub channels: usize,
    pub members: usize,
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped_broadcasts: u64,
    pub resyncs: u64,
    /// Operations queued for the store and not yet committed.
    pub journal_queue: u64,
}

/// Renders the document: `now`'s gauges and counters, plus what the store
/// and the webhook senders recorded as things happened.
pub fn render(now: &Snapshot) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    gauge!(CONNECTIONS).set(now.connections as f64);
    gauge!(USERS_ONLINE).set(now.users as f64);
    gauge!(CHANNELS).set(now.channels as f64);
    gauge!(MEMBERS).set(now.members as f64);
    counter!(FRAMES_IN).absolute(now.frames_in);
    counter!(FRAMES_OUT).absolute(now.frames_out);
    counter!(DROPPED_BROADCASTS).absolute(now.dropped_broadcasts);
    counter!(RESYNCS).absolute(now.resyncs);
    gauge!(JOURNAL_QUEUE_DEPTH).set(now.journal_queue as f64);
    handle.run_upkeep();
    handle.render()
}

/// Records how long one store commit took.
pub fn record_store_write(secs: f64) {
    histogram!(STORE_WRITE_SECONDS).record(secs);
}

/// Counts failed store commits.
pub fn add_store_failures(n: u64) {
    counter!(STORE_WRITE_FAILURES).increment(n);
}

/// Sets how many webhook events wait in the outbox, over all URLs.
pub fn set_webhook_queue_depth(n: u64) {
    gauge!(WEBHOOK_QUEUE_DEPTH).set(n as f64);
}

/// Counts failed webhook delivery attempts (and events dropped for age).
pub fn add_webhook_failures(n: u64) {
    counter!(WEBHOOK_FAILURES).increment(n);
}

/// Sets how many TCP connections are held within the caps.
pub fn set_tcp_connections(n: u32) {
    gauge!(TCP_CONNECTIONS).set(f64::from(n));
}

/// Counts a connection refused at a cap (`reason`: `total` or `per_ip`).
pub fn add_connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}
