//! Scenario 4, churn: N connections over C channels toggle enter/leave on a
//! shared schedule at R operations per second, with observers spread over
//! the channels; join latency runs from the entrant's send timestamp (in its
//! member data) to an observer's receipt of the join.

use std::time::Duration;

use anyhow::Result;

use super::observe::observers;
use super::{Ctx, Rows, check_ready, ms, spawn_workers};
use crate::client;
use crate::report::{Better, Cell, Goal, Metric, Report};
use crate::servers::Server;
use crate::util::{Hist, now_us};
use crate::worker::Role;

pub(super) async fn churn(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
    let s = &ctx.sizes;
    let n = s.churn_n;
    let c = s.churn_channels;
    let o = s.churn_observers.min(c).max(1);
    let mut ws = spawn_workers(ctx, srv, Role::Churn { channels: c }, n, "c")?;
    let r = ws.ready(Duration::from_secs(120 + n / 100)).await?;
    check_ready(report, srv, "churn", &r, n)?;
    let obs = observers(&srv.target, o, "o", |k| {
        (0..c)
            .filter(|ch| ch % o == k)
            .map(|ch| format!("c{ch}"))
            .collect()
    })
    .await?;
    let t0 = now_us() + 500_000;
    let end = crate::util::instant_at(t0 + ((s.churn_secs + 2.0) * 1e6) as u64);
    ws.go(t0, s.churn_rate, s.churn_secs).await?;
    let proto = srv.target.proto;
    let tasks: Vec<_> = obs
        .into_iter()
        .map(|(mut conn, mut view)| {
            tokio::spawn(async move {
                let mut hist = Hist::default();
                let mut frames = 0u64;
                while let Ok(Ok(Some(t))) = tokio::time::timeout_at(end, conn.next_text()).await {
                    frames += 1;
                    let now = now_us();
                    view.apply(client::parse(proto, &t), |ts| {
                        if let Some(ts) = ts.filter(|ts| *ts >= t0) {
                            hist.record(now.saturating_sub(ts));
                        }
                    });
                }
                (hist, frames)
            })
        })
        .collect();
    let mut hist = Hist::default();
    let mut frames = 0;
    for t in tasks {
        let (h, f) = t.await?;
        hist.merge(&h);
        frames += f;
    }
    let stats = ws.stop().await?;
    let enters = stats.enters;
    let q = |p: f64| {
        hist.quantile_us(p)
            .map(|v| Cell::Val(ms(v)))
            .unwrap_or_else(|| Cell::Text("no samples".into()))
    };
    Ok(vec![
        (
            Metric::new("churn", "conns / channels / observers", Better::Info),
            Cell::Text(format!("{} / {c} / {o}", r.ok)),
        ),
        (
            Metric::new("churn", "enter/leave ops per s (sent)", Better::Info),
            Cell::Val(stats.ops as f64 / s.churn_secs),
        ),
        (
            Metric::new("churn", "join latency p50 (ms)", Better::Lower),
            q(0.5),
        ),
        (
            Metric::new("churn", "join latency p99 (ms)", Better::Lower).goal(Goal::Below(10.0)),
            q(0.99),
        ),
        (
            Metric::new("churn", "join latency p99.9 (ms)", Better::Lower),
            q(0.999),
        ),
        (
            Metric::new("churn", "joins observed / enters sent", Better::Info),
            Cell::Text(format!("{} / {enters}", hist.len())),
        ),
        (
            Metric::new("churn", "frames per observer per s", Better::Info),
            Cell::Val(frames as f64 / o as f64 / (s.churn_secs + 2.0)),
        ),
        (
            Metric::new("churn", "op send lag max (ms) / errors", Better::Info),
            Cell::Text(format!(
                "{:.1} / {}",
                ms(stats.max_lag_us as f64),
                stats.errors
            )),
        ),
    ])
}
