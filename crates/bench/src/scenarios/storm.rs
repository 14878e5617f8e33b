//! Scenario 3, the join storm: observers subscribe to one channel, then N
//! entrants enter it on a schedule spread over one second; measured until
//! every observer's view holds all N. `storm-nosub` is the same with
//! presenced's entrants entering without subscribing.

use std::time::Duration;

use anyhow::Result;

use super::observe::observers;
use super::{Ctx, Rows, check_ready, ms, spawn_workers};
use crate::client;
use crate::report::{Better, Cell, Goal, Metric, Report};
use crate::servers::Server;
use crate::util::now_us;
use crate::worker::Role;

struct StormObs {
    converged_us: Option<u64>,
    frames: u64,
    bytes: u64,
    seen: usize,
}

/// `subscribe: false` makes presenced entrants enter without subscribing.
pub(super) async fn storm(
    ctx: &Ctx,
    srv: &Server,
    report: &mut Report,
    subscribe: bool,
) -> Result<Rows> {
    let sc = if subscribe { "storm" } else { "storm-nosub" };
    let n = ctx.sizes.storm_n;
    let o = ctx.sizes.storm_observers;
    let obs = observers(&srv.target, o, "o", |_| vec!["storm".to_owned()]).await?;
    let mut ws = spawn_workers(
        ctx,
        srv,
        Role::Storm {
            channel: "storm".into(),
            window_us: 1_000_000,
            subscribe,
        },
        n,
        "s",
    )?;
    let r = ws.ready(Duration::from_secs(120 + n / 100)).await?;
    check_ready(report, srv, sc, &r, n)?;
    let want = r.ok as usize;
    let t0 = now_us() + 300_000;
    let deadline = crate::util::instant_at(t0 + ctx.sizes.storm_timeout_s * 1_000_000);
    ws.go(t0, 0.0, 0.0).await?;
    let proto = srv.target.proto;
    let tasks: Vec<_> = obs
        .into_iter()
        .map(|(mut conn, mut view)| {
            tokio::spawn(async move {
                let mut res = StormObs {
                    converged_us: None,
                    frames: 0,
                    bytes: 0,
                    seen: 0,
                };
                while let Ok(Ok(Some(t))) =
                    tokio::time::timeout_at(deadline, conn.next_text()).await
                {
                    res.frames += 1;
                    res.bytes += t.len() as u64;
                    view.apply(client::parse(proto, &t), |_| {});
                    let seen = view
                        .channels
                        .get("storm")
                        .map(|v| v.keys().filter(|u| u.starts_with('s')).count())
                        .unwrap_or(0);
                    res.seen = seen;
                    if seen >= want {
                        res.converged_us = Some(now_us().saturating_sub(t0));
                        break;
                    }
                }
                res
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await?);
    }
    let stats = ws.stop().await?;
    let converged = results.iter().filter(|r| r.converged_us.is_some()).count();
    let slowest = results.iter().filter_map(|r| r.converged_us).max();
    let frames_mean = results.iter().map(|r| r.frames).sum::<u64>() as f64 / o as f64;
    let frames_max = results.iter().map(|r| r.frames).max().unwrap_or(0);
    let bytes_mean = results.iter().map(|r| r.bytes).sum::<u64>() as f64 / o as f64;
    let min_seen = results.iter().map(|r| r.seen).min().unwrap_or(0);
    let all = converged == results.len();
    // From the last entrant's send: the storm itself is spread over 1 s.
    let after_last = (t0 + slowest.unwrap_or(0)).saturating_sub(stats.last_op_us.max(t0));
    let after_last_cell = if all {
        Cell::Val(ms(after_last as f64))
    } else {
        Cell::Text("not converged".into())
    };
    let conv_cell = if all {
        Cell::Val(ms(slowest.unwrap_or(0) as f64))
    } else {
        Cell::Text(format!(
            "not in {} s ({converged}/{o} obs; min view {min_seen}/{want})",
            ctx.sizes.storm_timeout_s
        ))
    };
    // Member events the observers applied per second until they converged,
    // or, for a server that did not converge in time, until the deadline.
    let events_per_s = match (all, slowest) {
        (true, Some(us)) if us > 0 => Cell::Val((want as f64 * o as f64) / (us as f64 / 1e6)),
        (false, _) => {
            let seen: usize = results.iter().map(|r| r.seen).sum();
            Cell::Val(seen as f64 / ctx.sizes.storm_timeout_s as f64)
        }
        _ => Cell::Text("—".into()),
    };
    Ok(vec![
        (
            Metric::new(sc, "entrants / observers", Better::Info),
            Cell::Text(format!("{want} / {o}")),
        ),
        (
            Metric::new(
                sc,
                "every observer has all members, from the storm's start (ms)",
                Better::Lower,
            ),
            conv_cell,
        ),
        (
            Metric::new(
                sc,
                "every observer has all members, after the last enter was sent (ms)",
                Better::Lower,
            )
            .goal(Goal::Below(1000.0)),
            after_last_cell,
        ),
        (
            Metric::new(sc, "frames per observer (max)", Better::Lower).goal(Goal::AtMost(50.0)),
            Cell::Val(frames_max as f64),
        ),
        (
            Metric::new(sc, "frames per observer (mean)", Better::Lower),
            Cell::Val(frames_mean),
        ),
        (
            Metric::new(sc, "KiB per observer (mean)", Better::Lower),
            Cell::Val(bytes_mean / 1024.0),
        ),
        (
            Metric::new(
                sc,
                "presence events delivered to observers per s",
                Better::Higher,
            )
            .vs_peer(2.0),
            events_per_s,
        ),
        (
            Metric::new(
                sc,
                "entrants' own traffic, all entrants (MiB)",
                Better::Info,
            ),
            Cell::Val(stats.bytes as f64 / 1024.0 / 1024.0),
        ),
        (
            Metric::new(sc, "entrants' own frames, all entrants", Better::Info),
            Cell::Val(stats.frames as f64),
        ),
        (
            Metric::new(sc, "enter: max send lag behind schedule (ms)", Better::Info),
            Cell::Val(ms(stats.max_lag_us as f64)),
        ),
    ])
}
