//! The scenarios. Each starts a fresh server, puts the bulk of its
//! connections into worker processes, runs its observers in this process,
//! and turns what it measured into report rows. Every wait is bounded.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde_json::Value;

use crate::client::{self, Conn, Inbound, Proto, Target};
use crate::report::{Better, Cell, Goal, Metric, Report};
use crate::servers::{self, Paths, Server, ServerId, StartOpts};
use crate::util::{Hist, now_us};
use crate::worker::{ReadySummary, Role, WorkerSet};

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub idle_n: u64,
    pub idle_channels: u64,
    pub storm_n: u64,
    pub storm_observers: u64,
    pub storm_timeout_s: u64,
    pub churn_n: u64,
    pub churn_channels: u64,
    pub churn_observers: u64,
    pub churn_rate: f64,
    pub churn_secs: f64,
    pub big_n: u64,
    /// Peers have no grace window: their members need live sockets, so the
    /// room is capped here for them.
    pub big_peer_n: u64,
    pub status_n: u64,
    pub status_friends: u64,
    pub status_rate: f64,
    pub status_secs: f64,
    /// Distinct users that come and go in the users scenario.
    pub users_n: u64,
    pub users_channels: u64,
}

impl Sizes {
    pub fn quick() -> Sizes {
        Sizes {
            idle_n: 1_500,
            idle_channels: 100,
            storm_n: 500,
            storm_observers: 10,
            storm_timeout_s: 5,
            churn_n: 1_000,
            churn_channels: 100,
            churn_observers: 10,
            churn_rate: 200.0,
            churn_secs: 2.0,
            big_n: 2_000,
            big_peer_n: 300,
            status_n: 500,
            status_friends: 20,
            status_rate: 100.0,
            status_secs: 2.0,
            users_n: 20_000,
            users_channels: 100,
        }
    }

    pub fn full() -> Sizes {
        Sizes {
            idle_n: 10_000,
            idle_channels: 100,
            storm_n: 10_000,
            storm_observers: 100,
            storm_timeout_s: 30,
            churn_n: 10_000,
            churn_channels: 1_000,
            churn_observers: 100,
            churn_rate: 1_000.0,
            churn_secs: 15.0,
            big_n: 100_000,
            big_peer_n: 2_000,
            status_n: 10_000,
            status_friends: 200,
            status_rate: 1_000.0,
            status_secs: 15.0,
            users_n: 200_000,
            users_channels: 100,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Idle,
    Storm,
    /// The storm with presenced entrants that enter without subscribing
    /// (`enter{subscribe: false}`): they are counted, but do not receive
    /// the member list.
    StormNoSub,
    Churn,
    BigRoom,
    Status,
    /// Many distinct users come and go; does the server's memory return?
    Users,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Idle,
        Scenario::Storm,
        Scenario::StormNoSub,
        Scenario::Churn,
        Scenario::BigRoom,
        Scenario::Status,
        Scenario::Users,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Storm => "storm",
            Scenario::StormNoSub => "storm-nosub",
            Scenario::Churn => "churn",
            Scenario::BigRoom => "bigroom",
            Scenario::Status => "status",
            Scenario::Users => "users",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        // "connect" is measured by the idle scenario's set-up.
        let s = if s == "connect" { "idle" } else { s };
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Why `server` cannot run this scenario, if it cannot.
    fn unsupported(self, server: ServerId) -> Option<&'static str> {
        match (self, server.proto()) {
            (Scenario::Status, Proto::Pusher) => Some("n/a (no user status/watch in Pusher)"),
            (Scenario::StormNoSub, p) if p != Proto::Presenced => {
                Some("n/a (a member always receives the member list)")
            }
            (Scenario::BigRoom, Proto::SioFull) => {
                Some("n/a (building the room is O(N³) bytes in this design)")
            }
            (Scenario::Users, p) if p != Proto::Presenced => {
                Some("n/a (waits on presenced's users-online gauge)")
            }
            _ => None,
        }
    }
}

pub struct Ctx {
    pub paths: Paths,
    pub exe: PathBuf,
    pub sizes: Sizes,
    pub per_worker: u64,
    pub source_ips: u32,
    pub concurrency: usize,
    /// presenced keeps up to this many live sockets in the big room; above
    /// it, members are kept in the grace window without sockets.
    pub live_cap: u64,
    /// Extra arguments for `presenced serve`.
    pub presenced_args: Vec<String>,
}

type Rows = Vec<(Metric, Cell)>;

pub async fn run_all(ctx: &Ctx, scenarios: &[Scenario], servers: &[ServerId]) -> Report {
    let mut report = Report::new(servers.to_vec());
    for &sc in scenarios {
        for &id in servers {
            if let Some(why) = sc.unsupported(id) {
                report.put(
                    id,
                    Metric::new(sc.name(), "(scenario)", Better::Info),
                    Cell::Text(why.into()),
                );
                continue;
            }
            eprintln!("== {} on {} ==", sc.name(), id.name());
            let opts = StartOpts {
                grace_ms: match sc {
                    Scenario::BigRoom => Some(600_000),
                    Scenario::Users => Some(USERS_GRACE_MS),
                    _ => None,
                },
                presenced_args: ctx.presenced_args.clone(),
            };
            let started = Instant::now();
            let result = match servers::start(&ctx.paths, id, &opts).await {
                Ok(srv) => {
                    let r = match sc {
                        Scenario::Idle => idle(ctx, &srv, &mut report).await,
                        Scenario::Storm => storm(ctx, &srv, &mut report, true).await,
                        Scenario::StormNoSub => storm(ctx, &srv, &mut report, false).await,
                        Scenario::Churn => churn(ctx, &srv, &mut report).await,
                        Scenario::BigRoom => bigroom(ctx, &srv, &mut report).await,
                        Scenario::Status => status(ctx, &srv, &mut report).await,
                        Scenario::Users => users(ctx, &srv, &mut report).await,
                    };
                    let aborted = srv.aborted.load(std::sync::atomic::Ordering::Relaxed);
                    let peak = srv.peak_kib.load(std::sync::atomic::Ordering::Relaxed);
                    let peak_row = (
                        Metric::new(sc.name(), "server peak RSS (MiB)", Better::Info),
                        if aborted {
                            Cell::Text(format!("killed at {:.0} (cap)", peak as f64 / 1024.0))
                        } else {
                            Cell::Val(peak as f64 / 1024.0)
                        },
                    );
                    let r = r.map(|mut rows| {
                        rows.push(peak_row.clone());
                        rows
                    });
                    match r {
                        Err(e) if aborted => Ok(vec![
                            (
                                Metric::new(sc.name(), "(scenario)", Better::Info),
                                Cell::Text(format!(
                                    "aborted: server over the RSS cap ({})",
                                    format!("{e:#}").chars().take(60).collect::<String>()
                                )),
                            ),
                            peak_row,
                        ]),
                        Err(e) => Err(e.context(srv.log_tail())),
                        ok => ok,
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(rows) => {
                    for (m, c) in rows {
                        report.put(id, m, c);
                    }
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    let short: String = msg.lines().next().unwrap_or("").chars().take(80).collect();
                    eprintln!("   {} on {} failed: {msg}", sc.name(), id.name());
                    report.put(
                        id,
                        Metric::new(sc.name(), "(scenario)", Better::Info),
                        Cell::Text(format!("error: {short}")),
                    );
                }
            }
            eprintln!("   took {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    report
}

fn spawn_workers(ctx: &Ctx, srv: &Server, role: Role, n: u64, prefix: &str) -> Result<WorkerSet> {
    WorkerSet::spawn(
        &ctx.exe,
        &srv.target,
        role,
        n,
        prefix,
        ctx.per_worker,
        ctx.source_ips,
        ctx.concurrency,
    )
}

fn check_ready(
    report: &mut Report,
    srv: &Server,
    scenario: &str,
    r: &ReadySummary,
    want: u64,
) -> Result<()> {
    if r.failed > 0 {
        report.note(format!(
            "{scenario} on {}: {} of {want} connections failed set-up (first error: {})",
            srv.id.name(),
            r.failed,
            r.first_error.as_deref().unwrap_or("?")
        ));
    }
    if r.ok == 0 {
        bail!(
            "no connection set up: {}",
            r.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

// ---- 1 + 2: idle memory and connect rate -----------------------------------

async fn idle(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
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

// ---- observers ---------------------------------------------------------------

/// A member view per channel, fed with every frame an observer gets.
#[derive(Default)]
struct View {
    channels: HashMap<String, HashMap<String, Option<u64>>>,
    /// A chunked snapshot is being received for these channels.
    mid_snapshot: HashSet<String>,
}

impl View {
    /// Applies one frame; calls `on_join(ts)` for members that are new or
    /// carry a new timestamp.
    fn apply(&mut self, ev: Inbound, mut on_join: impl FnMut(Option<u64>)) {
        match ev {
            Inbound::Snapshot {
                channel,
                members,
                more,
            } => {
                let fresh = !self.mid_snapshot.contains(&channel);
                let old = if fresh {
                    self.channels.remove(&channel).unwrap_or_default()
                } else {
                    HashMap::new()
                };
                let view = self.channels.entry(channel.clone()).or_default();
                for (u, ts) in members {
                    if fresh && old.get(&u) != Some(&ts) {
                        on_join(ts);
                    }
                    view.insert(u, ts);
                }
                if more {
                    self.mid_snapshot.insert(channel);
                } else {
                    self.mid_snapshot.remove(&channel);
                }
            }
            Inbound::Delta {
                channel,
                joins,
                leaves,
            } => {
                let view = self.channels.entry(channel).or_default();
                for u in leaves {
                    view.remove(&u);
                }
                for (u, ts) in joins {
                    if view.get(&u) != Some(&ts) {
                        on_join(ts);
                    }
                    view.insert(u, ts);
                }
            }
            _ => {}
        }
    }
}

/// Connects `count` observers (users `{prefix}{k}`) and subscribes observer
/// k to `channels(k)`.
async fn observers(
    target: &Arc<Target>,
    count: u64,
    prefix: &str,
    channels: impl Fn(u64) -> Vec<String>,
) -> Result<Vec<(Conn, View)>> {
    let jobs = (0..count).map(|k| {
        let target = target.clone();
        let user = format!("{prefix}{k}");
        let chans = channels(k);
        async move {
            let mut conn = client::connect(&target, None, &user).await?;
            let mut view = View::default();
            let proto = target.proto;
            for (i, ch) in chans.iter().enumerate() {
                let id = 100 + i as u64;
                conn.subscribe(ch, id).await?;
                let mut frames = Vec::new();
                conn.await_reply(id, ch, |t| frames.push(t.to_owned()))
                    .await?;
                for f in frames {
                    view.apply(client::parse(proto, &f), |_| {});
                }
            }
            Ok::<_, anyhow::Error>((conn, view))
        }
    });
    futures_util::stream::iter(jobs)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

// ---- 3: join storm -----------------------------------------------------------

struct StormObs {
    converged_us: Option<u64>,
    frames: u64,
    bytes: u64,
    seen: usize,
}

/// `subscribe: false` makes presenced entrants enter without subscribing.
async fn storm(ctx: &Ctx, srv: &Server, report: &mut Report, subscribe: bool) -> Result<Rows> {
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

// ---- 4: churn ----------------------------------------------------------------

async fn churn(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
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

// ---- 5: big room sync ----------------------------------------------------------

async fn bigroom(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
    let s = &ctx.sizes;
    let presenced = srv.id == ServerId::Presenced;
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

// ---- 6: status fan-out -----------------------------------------------------------

async fn status(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
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

// ---- 7: users come and go --------------------------------------------------------

/// presenced's grace window in the users scenario: departed users go offline
/// this soon after their socket closes.
const USERS_GRACE_MS: u64 = 200;

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

async fn users(ctx: &Ctx, srv: &Server, report: &mut Report) -> Result<Rows> {
    let s = &ctx.sizes;
    let n = s.users_n;
    let c = s.users_channels.max(1);
    let mib = |kib: u64| kib as f64 / 1024.0;
    // Baseline: nobody has connected yet.
    if let Err(why) = until_all_offline(srv, Duration::from_secs(30)).await? {
        bail!("server not idle before the users came: {why}");
    }
    let rss0 = rss_at_rest(srv).await?;
    // Users hold no socket once gone, so two workers (one per core) take
    // them all; each has at most `concurrency` sockets open at a time.
    let mut ws = WorkerSet::spawn(
        &ctx.exe,
        &srv.target,
        Role::Users { channels: c },
        n,
        "v",
        n.div_ceil(2).max(1),
        ctx.source_ips,
        ctx.concurrency,
    )?;
    let r = ws.ready(Duration::from_secs(60 + n / 200)).await?;
    let _ = ws.stop().await;
    check_ready(report, srv, "users", &r, n)?;
    let offline = until_all_offline(srv, Duration::from_secs(30 + n / 5_000)).await?;
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
            Metric::new(
                "users",
                "server RSS, no users yet (baseline, MiB)",
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

    #[test]
    fn every_scenario_parses_by_name() {
        for sc in Scenario::ALL {
            assert_eq!(Scenario::parse(sc.name()), Some(sc));
        }
        assert_eq!(
            Scenario::Users.unsupported(ServerId::Soketi).is_some(),
            Scenario::Users.unsupported(ServerId::Presenced).is_none()
        );
    }
}
