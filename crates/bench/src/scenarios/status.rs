//! Scenario 6, status fan-out: N users each watching F friends toggle
//! between away and online on a shared schedule; latency runs from the
//! scheduled send time to the watcher's receipt of the `presence` entry.

use std::time::Duration;

use anyhow::Result;

use super::{Ctx, Rows, check_ready, ms, spawn_workers};
use crate::report::{Better, Cell, Metric, Report};
use crate::servers::Server;
use crate::util::now_us;
use crate::worker::Role;

pub(super) async fn status(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
    let s = &ctx.sizes;
    let n = s.status_n;
    let f = s.status_friends;
    let mut ws = spawn_workers(ctx, srv, Role::Status { friends: f }, n, "u")?;
    let r = ws.ready(Duration::from_secs(120 + n / 100)).await?;
    check_ready(report, srv, "status", &r, n)?;
    let t0 = now_us() + 500_000;
    ws.go(t0, s.status_rate, s.status_secs).await?;
    tokio::time::sleep_until(crate::util::instant_at(
        t0 + ((s.status_secs + 2.0) * 1e6) as u64,
    ))
    .await;
    let stats = ws.stop().await?;
    let expected = stats.ops * f;
    let q = |p: f64| {
        stats
            .hist
            .quantile_us(p)
            .map(|v| Cell::Val(ms(v)))
            .unwrap_or_else(|| Cell::Text("no samples".into()))
    };
    Ok(vec![
        (
            Metric::new("status", "users / friends each", Better::Info),
            Cell::Text(format!("{} / {f}", r.ok)),
        ),
        (
            Metric::new("status", "status changes per s (sent)", Better::Info),
            Cell::Val(stats.ops as f64 / s.status_secs),
        ),
        (
            // Latency counts from the schedule: a sender that falls behind
            // (a busy machine) shows up here and in the latency.
            Metric::new(
                "status",
                "sender lag behind schedule, max (ms)",
                Better::Info,
            ),
            Cell::Val(ms(stats.max_lag_us as f64)),
        ),
        (
            Metric::new("status", "delivery latency p50 (ms)", Better::Lower),
            q(0.5),
        ),
        (
            Metric::new("status", "delivery latency p99 (ms)", Better::Lower),
            q(0.99),
        ),
        (
            Metric::new("status", "delivery latency p99.9 (ms)", Better::Lower),
            q(0.999),
        ),
        (
            Metric::new("status", "changes delivered / expected", Better::Info),
            Cell::Text(format!(
                "{} / {expected} ({:.1} %)",
                stats.hist.len(),
                100.0 * stats.hist.len() as f64 / expected.max(1) as f64
            )),
        ),
        (
            Metric::new("status", "presence entries delivered per s", Better::Info),
            Cell::Val(stats.hist.len() as f64 / s.status_secs),
        ),
        (
            Metric::new("status", "frames per watcher per s", Better::Info),
            Cell::Val(stats.frames as f64 / r.ok as f64 / (s.status_secs + 2.0)),
        ),
        (
            Metric::new("status", "KiB received per watcher", Better::Info),
            Cell::Val(stats.bytes as f64 / r.ok as f64 / 1024.0),
        ),
    ])
}
