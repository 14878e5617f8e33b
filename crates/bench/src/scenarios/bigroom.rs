//! Scenario 5, the big room: N members in one channel, then fresh
//! subscribers one after another, each timed from `subscribe` to the last
//! frame of its snapshot. Above the live-socket cap, presenced's members
//! close their sockets and stay members inside the grace window.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use super::observe::View;
use super::{Ctx, Rows, check_ready, spawn_workers};
use crate::client::{self, Proto};
use crate::report::{Better, Cell, Goal, Metric, Report};
use crate::servers::Server;
use crate::worker::Role;

pub(super) async fn bigroom(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
    let s = &ctx.sizes;
    let presenced = srv.id.proto() == Proto::Presenced;
    let n = if presenced {
        s.big_n
    } else {
        s.big_n.min(s.big_peer_n)
    };
    let drop = presenced && n > ctx.live_cap;
    let built = Instant::now();
    let mut ws = spawn_workers(
        ctx,
        srv,
        Role::BigRoom {
            channel: "big".into(),
            drop,
        },
        n,
        "b",
    )?;
    let r = ws.ready(Duration::from_secs(300 + n / 100)).await?;
    check_ready(report, srv, "bigroom", &r, n)?;
    let mut members = r.ok;
    if presenced {
        // Wait until the server has applied every enter.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = srv.api_get("/v1/channels/big").await.unwrap_or(Value::Null);
            members = v["members"].as_u64().unwrap_or(0);
            if members >= r.ok || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let build_s = built.elapsed().as_secs_f64();
    if drop {
        report.note(format!(
            "bigroom on presenced: {n} members exceed the {} live sockets one server process may hold \
             (open-files cap 20,000): each member connected, entered and closed its socket, and stays a \
             member inside the grace window (set to 10 min), exactly as a dropped client would.",
            ctx.live_cap
        ));
    }
    // Fresh subscribers: the first finds a cold snapshot cache.
    let mut times = Vec::new();
    let mut counted = 0;
    for i in 0..3u64 {
        let mut conn = client::connect(&srv.target, None, &format!("f{i}")).await?;
        let proto = srv.target.proto;
        let start = Instant::now();
        conn.subscribe("big", 7).await?;
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let t = tokio::time::timeout_at(deadline, conn.next_text())
                .await
                .context("snapshot timed out")??
                .context("closed during snapshot")?;
            let last = match proto {
                Proto::Presenced => {
                    t.starts_with("{\"t\":\"sync\"") && t.ends_with("\"more\":false}")
                }
                Proto::Pusher => t.contains("subscription_succeeded"),
                Proto::SioFull | Proto::SioDelta => t.starts_with("437"),
            };
            frames.push(t);
            if last {
                break;
            }
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        let mut view = View::default();
        for f in &frames {
            view.apply(client::parse(proto, f), |_| {});
        }
        counted = view
            .channels
            .get("big")
            .map(|v| v.keys().filter(|u| u.starts_with('b')).count())
            .unwrap_or(0);
    }
    let _ = ws.stop().await;
    let mut warm = times[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    Ok(vec![
        (
            Metric::new("bigroom", "members in the room", Better::Info),
            Cell::Text(format!(
                "{members}{}",
                if drop { " (in grace)" } else { "" }
            )),
        ),
        (
            Metric::new("bigroom", "members in the fresh snapshot", Better::Info),
            Cell::Val(counted as f64),
        ),
        (
            // Rooms differ in size between servers: compared per 1,000
            // members below.
            Metric::new(
                "bigroom",
                "fresh subscriber: full snapshot, first (ms)",
                Better::Info,
            )
            .goal(Goal::Below(500.0)),
            Cell::Val(times[0]),
        ),
        (
            Metric::new(
                "bigroom",
                "fresh subscriber: full snapshot, next (ms)",
                Better::Info,
            ),
            Cell::Val(warm[0]),
        ),
        (
            Metric::new(
                "bigroom",
                "first full snapshot per 1,000 members (ms)",
                Better::Lower,
            ),
            Cell::Val(times[0] / (counted.max(1) as f64 / 1000.0)),
        ),
        (
            Metric::new("bigroom", "time to build the room (s)", Better::Info),
            Cell::Val(build_s),
        ),
    ])
}
