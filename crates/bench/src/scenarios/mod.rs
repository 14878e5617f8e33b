//! The scenarios. Each starts a fresh server, puts the bulk of its
//! connections into worker processes, runs its observers in this process,
//! and turns what it measured into report rows. Every wait is bounded.
//!
//! One file per scenario (`idle.rs`, `storm.rs`, `churn.rs`, `bigroom.rs`,
//! `status.rs`, `users.rs`), and `observe.rs` for the observers several of
//! them measure through. This file holds the sizes, the list of scenarios,
//! [`run_all`] (the one way in) and the helpers every scenario uses.

mod bigroom;
mod churn;
mod idle;
mod observe;
mod status;
mod storm;
mod users;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};

use self::bigroom::bigroom;
use self::churn::churn;
use self::idle::idle;
use self::status::status;
use self::storm::storm;
use self::users::{USERS_GRACE_MS, users};
use crate::client::Proto;
use crate::report::{Better, Cell, Metric, Report};
use crate::servers::{self, Paths, Server, ServerId, StartOpts};
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

pub(super) type Rows = Vec<(Metric, Cell)>;

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

pub(super) fn spawn_workers(
    ctx: &Ctx,
    srv: &Server,
    role: Role,
    n: u64,
    prefix: &str,
) -> Result<WorkerSet> {
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

pub(super) fn check_ready(
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

pub(super) fn ms(us: f64) -> f64 {
    us / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
