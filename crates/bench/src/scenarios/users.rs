//! Scenario 7: many distinct users come and go; does the server's memory
//! return once they are all offline? The baseline is taken after a first
//! wave of a tenth as many users came and went (see [`users`]); the fresh
//! start's RSS is reported beside it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Ctx, Rows, check_ready};
use crate::report::{Better, Cell, Metric, Report};
use crate::servers::Server;
use crate::worker::{Role, WorkerSet};

/// presenced's grace window in the users scenario: departed users go offline
/// this soon after their socket closes.
pub(super) const USERS_GRACE_MS: u64 = 200;

/// The value of an unlabelled metric in a Prometheus text document.
fn prom_value(doc: &str, name: &str) -> Option<f64> {
    doc.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(name)).then(|| it.next()?.parse().ok())?
    })
}

/// Polls presenced's `/metrics` until no user is online, no connection is
/// left (live or in grace) and no channel has a member, at most `limit`;
/// then confirms with `GET /v1/users` (which also waits for the store to
/// catch up). Returns how long it took, or what was still there.
async fn until_all_offline(srv: &Server, limit: Duration) -> Result<Result<Duration, String>> {
    let started = Instant::now();
    let mut last = String::from("no /metrics answer");
    while started.elapsed() < limit {
        match srv.api_get_text("/metrics").await {
            Ok(doc) => {
                let get = |m| prom_value(&doc, m);
                let (u, c, m) = (
                    get("presenced_users_online"),
                    get("presenced_connections"),
                    get("presenced_members"),
                );
                if u == Some(0.0) && c == Some(0.0) && m == Some(0.0) {
                    let page = srv.api_get("/v1/users?limit=1").await?;
                    let listed = page["users"].as_array().map_or(1, Vec::len);
                    if listed == 0 {
                        return Ok(Ok(started.elapsed()));
                    }
                    last = format!("GET /v1/users lists {listed}");
                } else {
                    let f = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v}"));
                    last = format!(
                        "users online {}, connections {}, members {}",
                        f(u),
                        f(c),
                        f(m)
                    );
                }
            }
            Err(e) => last = format!("/metrics: {e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Err(last))
}

/// The server's RSS once it stops moving: samples every 500 ms until two in
/// a row are within 256 KiB of each other, at most 10 samples; the last one.
async fn rss_at_rest(srv: &Server) -> Result<u64> {
    let mut prev = srv.rss_kib().context("server RSS")?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = srv.rss_kib().context("server RSS")?;
        let settled = now.abs_diff(prev) < 256;
        prev = now;
        if settled {
            break;
        }
    }
    Ok(prev)
}

/// One wave of `n` distinct users (ids `<prefix>0..`) who connect, enter
/// and leave; then waits until they are all offline.
async fn wave(
    ctx: &Ctx,
    srv: &Server,
    report: &mut Report,
    prefix: &str,
    n: u64,
) -> Result<(crate::worker::ReadySummary, Result<Duration, String>)> {
    let c = ctx.sizes.users_channels.max(1);
    // Users hold no socket once gone, so two workers (one per core) take
    // them all; each has at most `concurrency` sockets open at a time.
    let mut ws = WorkerSet::spawn(
        &ctx.exe,
        &srv.target,
        Role::Users { channels: c },
        n,
        prefix,
        n.div_ceil(2).max(1),
        ctx.source_ips,
        ctx.concurrency,
    )?;
    let r = ws.ready(Duration::from_secs(60 + n / 200)).await?;
    let _ = ws.stop().await;
    check_ready(report, srv, "users", &r, n)?;
    let offline = until_all_offline(srv, Duration::from_secs(30 + n / 5_000)).await?;
    Ok((r, offline))
}

pub(super) async fn users(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
    let s = &ctx.sizes;
    let n = s.users_n;
    let c = s.users_channels.max(1);
    let mib = |kib: u64| kib as f64 / 1024.0;
    if let Err(why) = until_all_offline(srv, Duration::from_secs(30)).await? {
        bail!("server not idle before the users came: {why}");
    }
    // Fresh from start: nobody has connected yet.
    let fresh = rss_at_rest(srv).await?;
    // Baseline: a first wave (a tenth of the users) has come and gone, so
    // what serving connections costs at this concurrency is in (the code
    // paged in, freed memory the allocator keeps, SQLite's page cache up
    // to its bound); what grows after it grows with users ever seen.
    let warm = (n / 10).max(1);
    let (_, warm_offline) = wave(ctx, srv, report, "w", warm).await?;
    if let Err(why) = warm_offline {
        bail!("the first wave did not go offline: {why}");
    }
    let rss0 = rss_at_rest(srv).await?;
    let (r, offline) = wave(ctx, srv, report, "v", n).await?;
    let rss1 = rss_at_rest(srv).await?;
    // Whether the server still answers for the first user that left.
    let first = srv
        .api_get("/v1/users/v0")
        .await
        .map(|v| match v["status"].as_str() {
            Some(st) => format!("known ({st})"),
            // Not "not ...": `--smoke` would read that as a failure.
            None => format!("forgotten ({})", v["error"]["code"].as_str().unwrap_or("?")),
        })
        .unwrap_or_else(|e| format!("error: {e:#}"));
    let rate = r.ok as f64 / (r.setup_ms.max(1) as f64 / 1000.0);
    let offline_cell = match &offline {
        Ok(d) => Cell::Val(d.as_secs_f64() * 1000.0),
        Err(why) => Cell::Text(format!("not offline in {} s ({why})", 30 + n / 5_000)),
    };
    Ok(vec![
        (
            Metric::new(
                "users",
                "distinct users come and go / channels",
                Better::Info,
            ),
            Cell::Text(format!("{} / {c}", r.ok)),
        ),
        (
            Metric::new(
                "users",
                "users per s (connect + hello + enter + close)",
                Better::Higher,
            ),
            Cell::Val(rate),
        ),
        (
            Metric::new(
                "users",
                "all offline, after the last left (ms)",
                Better::Info,
            ),
            offline_cell,
        ),
        (
            Metric::new("users", "server RSS, fresh start (MiB)", Better::Info),
            Cell::Val(mib(fresh)),
        ),
        (
            Metric::new(
                "users",
                "server RSS, a first tenth came and went (baseline, MiB)",
                Better::Info,
            ),
            Cell::Val(mib(rss0)),
        ),
        (
            Metric::new(
                "users",
                "server RSS, all gone again (after, MiB)",
                Better::Info,
            ),
            Cell::Val(mib(rss1)),
        ),
        (
            Metric::new("users", "after / baseline RSS", Better::Lower),
            Cell::Val(rss1 as f64 / rss0.max(1) as f64),
        ),
        (
            Metric::new("users", "RSS kept per departed user (bytes)", Better::Lower),
            Cell::Val(rss1.saturating_sub(rss0) as f64 * 1024.0 / r.ok.max(1) as f64),
        ),
        (
            Metric::new("users", "first user, via GET /v1/users/v0", Better::Info),
            Cell::Text(first),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unlabelled_prometheus_values() {
        let doc = "# HELP presenced_users_online Users online or away.\n\
                   # TYPE presenced_users_online gauge\n\
                   presenced_users_online 0\n\
                   presenced_connections 12\n\
                   presenced_store_write_seconds_bucket{le=\"0.001\"} 3\n";
        assert_eq!(prom_value(doc, "presenced_users_online"), Some(0.0));
        assert_eq!(prom_value(doc, "presenced_connections"), Some(12.0));
        assert_eq!(prom_value(doc, "presenced_members"), None);
        assert_eq!(prom_value(doc, "presenced_store_write_seconds"), None);
    }
}
