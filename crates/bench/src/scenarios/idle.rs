//! Scenarios 1 and 2, idle and connect: N connections, each authenticated
//! and entered in one of the channels; the server's memory per connection,
//! and the connect rate of that set-up.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{Ctx, Rows, check_ready, spawn_workers};
use crate::report::{Better, Cell, Goal, Metric, Report};
use crate::servers::Server;
use crate::worker::Role;

pub(super) async fn idle(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
    let n = ctx.sizes.idle_n;
    let rss0 = srv.rss_kib().context("server RSS")?;
    let mut ws = spawn_workers(
        ctx,
        srv,
        Role::Hold {
            channels: ctx.sizes.idle_channels,
        },
        n,
        "i",
    )?;
    let r = ws.ready(Duration::from_secs(120 + n / 100)).await?;
    check_ready(report, srv, "idle", &r, n)?;
    // Let buffers settle, then take the highest of a few samples.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut rss1 = 0;
    for _ in 0..3 {
        rss1 = rss1.max(srv.rss_kib().context("server RSS")?);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let _ = ws.stop().await;
    let per_conn = (rss1.saturating_sub(rss0)) as f64 / r.ok as f64;
    let rate = r.ok as f64 / (r.setup_ms.max(1) as f64 / 1000.0);
    Ok(vec![
        (
            Metric::new("idle", "connections held", Better::Info),
            Cell::Val(r.ok as f64),
        ),
        (
            Metric::new(
                "idle",
                "server RSS growth per connection (KiB)",
                Better::Lower,
            )
            .goal(Goal::AtMost(6.0))
            .vs_peer(2.0),
            Cell::Val(per_conn),
        ),
        (
            Metric::new(
                "idle",
                "server RSS at rest, before → after (MiB)",
                Better::Info,
            ),
            Cell::Text(format!(
                "{:.0} → {:.0}",
                rss0 as f64 / 1024.0,
                rss1 as f64 / 1024.0
            )),
        ),
        (
            Metric::new(
                "connect",
                "authenticated connect + enter per s",
                Better::Higher,
            ),
            Cell::Val(rate),
        ),
    ])
}
