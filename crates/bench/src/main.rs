//! `presenced-bench`: load and memory benchmarks of presenced against peer
//! presence servers, on loopback only, every loop bounded in count and time.
//!
//! `presenced-bench run [--quick|--full]` starts each server under test as a
//! child process per scenario, spreads the client connections over worker
//! processes (`presenced-bench worker`, re-executed from this binary) and
//! over source addresses 127.0.0.2.., and prints a table; `--write
//! BENCHMARKS.md` appends it with the machine, the command and the date.

mod client;
mod report;
mod scenarios;
mod servers;
mod util;
mod worker;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::scenarios::{Ctx, Scenario, Sizes};
use crate::servers::{Paths, ServerId};

#[derive(Parser)]
#[command(name = "presenced-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and print (and optionally append) the table.
    Run(Box<RunArgs>),
    /// Internal: a worker process holding client connections.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        spec: String,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Small sizes: the whole run takes about two minutes (the default).
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// The sizes (10k idle, 10k storm with 100 observers, 100k room...).
    #[arg(long)]
    full: bool,
    /// Exit with an error when a scenario fails on presenced (an error, a
    /// killed server, observers that never converge). Missed performance
    /// targets are reported, not failed: CI machines are noisy.
    #[arg(long)]
    smoke: bool,
    /// Scenarios, comma-separated: idle (also gives connect), storm, storm-nosub, churn, bigroom, status, users.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "idle,storm,storm-nosub,churn,bigroom,status,users"
    )]
    scenarios: Vec<String>,
    /// Servers, comma-separated: presenced, soketi, sio-full, sio-delta, sockudo.
    /// Default: presenced plus every installed peer.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// The presenced binary under test.
    #[arg(long, default_value = "target/release/presenced")]
    presenced_bin: PathBuf,
    /// Another presenced binary to measure beside it, as server
    /// `presenced-baseline` (e.g. the previous commit built in its own
    /// target directory); added to the default server list when given.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Where bench/setup.sh installed the peers.
    #[arg(long, default_value = "bench")]
    bench_dir: PathBuf,
    /// Add the table to this Markdown file (e.g. BENCHMARKS.md), before its
    /// "## Earlier runs" section if it has one, else at the end.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Source addresses to spread connections over (127.0.0.2 ..).
    #[arg(long, default_value_t = 200)]
    source_ips: u32,
    /// Connections per worker process at most.
    #[arg(long, default_value_t = 15_000)]
    per_worker: u64,
    /// Connection set-ups in flight per worker.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Kill a server whose RSS passes this many MiB.
    #[arg(long, default_value_t = 6144)]
    rss_cap_mib: u64,
    /// Live sockets presenced keeps in the big room before members are kept
    /// in grace instead (one process may hold 20,000 open files here).
    #[arg(long, default_value_t = 15_000)]
    live_cap: u64,
    /// Extra argument for `presenced serve` (repeat), e.g. `--presenced-arg=--coalesce-ms=5`.
    #[arg(long = "presenced-arg", allow_hyphen_values = true)]
    presenced_args: Vec<String>,
    #[arg(long)]
    idle_n: Option<u64>,
    #[arg(long)]
    storm_n: Option<u64>,
    #[arg(long)]
    storm_observers: Option<u64>,
    #[arg(long)]
    churn_n: Option<u64>,
    #[arg(long)]
    churn_channels: Option<u64>,
    #[arg(long)]
    churn_rate: Option<f64>,
    #[arg(long)]
    churn_secs: Option<f64>,
    #[arg(long)]
    big_n: Option<u64>,
    #[arg(long)]
    big_peer_n: Option<u64>,
    #[arg(long)]
    status_n: Option<u64>,
    #[arg(long)]
    status_friends: Option<u64>,
    #[arg(long)]
    status_rate: Option<f64>,
    #[arg(long)]
    status_secs: Option<f64>,
    /// Distinct users that connect, enter, and leave in the users scenario.
    #[arg(long)]
    users_n: Option<u64>,
    #[arg(long)]
    users_channels: Option<u64>,
}

fn main() -> Result<()> {
    util::raise_nofile();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Worker { spec } => rt.block_on(worker::worker_main(&spec)),
        Cmd::Run(args) => rt.block_on(run(*args)),
    }
}

async fn run(a: RunArgs) -> Result<()> {
    let mut sizes = if a.full {
        Sizes::full()
    } else {
        Sizes::quick()
    };
    macro_rules! over {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { sizes.$f = v; } )* };
    }
    over!(
        idle_n,
        storm_n,
        storm_observers,
        churn_n,
        churn_channels,
        churn_rate,
        churn_secs,
        big_n,
        big_peer_n,
        status_n,
        status_friends,
        status_rate,
        status_secs,
        users_n,
        users_channels
    );
    let paths = Paths {
        presenced_bin: a.presenced_bin.clone(),
        baseline_bin: a.baseline_bin.clone(),
        bench_dir: a.bench_dir.clone(),
        rss_cap_kib: a.rss_cap_mib * 1024,
    };
    let mut scenarios = Vec::new();
    for s in &a.scenarios {
        match Scenario::parse(s) {
            Some(sc) if !scenarios.contains(&sc) => scenarios.push(sc),
            Some(_) => {}
            None => bail!("unknown scenario {s}"),
        }
    }
    let mut servers = Vec::new();
    if a.servers.is_empty() {
        if a.baseline_bin.is_some() {
            servers.push(ServerId::Baseline);
        }
        for id in [
            ServerId::Presenced,
            ServerId::Soketi,
            ServerId::Sockudo,
            ServerId::SioFull,
            ServerId::SioDelta,
        ] {
            match paths.available(id) {
                Ok(()) => servers.push(id),
                Err(why) if id == ServerId::Presenced => bail!("{why}"),
                Err(why) => eprintln!("skipping {}: {why}", id.name()),
            }
        }
    } else {
        for s in &a.servers {
            let Some(id) = ServerId::parse(s) else {
                bail!("unknown server {s}")
            };
            if let Err(why) = paths.available(id) {
                bail!("{why}");
            }
            servers.push(id);
        }
    }
    let ctx = Ctx {
        paths,
        exe: std::env::current_exe()?,
        sizes,
        per_worker: a.per_worker,
        source_ips: a.source_ips,
        concurrency: a.concurrency,
        live_cap: a.live_cap,
        presenced_args: a.presenced_args.clone(),
    };
    let started = std::time::Instant::now();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = scenarios::run_all(&ctx, &scenarios, &servers).await;
    let table = report.markdown();
    let elapsed = started.elapsed().as_secs_f64();
    println!("{table}");
    println!("(run took {elapsed:.0} s)");
    if let Some(path) = a.write {
        let mode = if a.full { "full" } else { "quick" };
        let section = format!(
            "\n## Run of {} ({mode})\n\n- machine: {}\n- command: `{command}`\n- presenced: `{}`; wall time {elapsed:.0} s\n- sizes: {:?}\n\n{table}",
            chrono::Local::now().format("%Y-%m-%d %H:%M %Z"),
            util::machine(),
            ctx.paths.presenced_bin.display(),
            ctx.sizes,
        );
        // New runs go after the latest ones, before the archive of earlier
        // runs if the file has one.
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        let archive = "\n## Earlier runs\n";
        let at = text.find(archive).unwrap_or(text.len());
        let section = section.replace("\n## Run of", "\n### Run of");
        text.insert_str(at, &section);
        std::fs::write(&path, text)?;
        eprintln!("added to {}", path.display());
    }
    if a.smoke {
        let failures = report.failures(ServerId::Presenced);
        if !failures.is_empty() {
            bail!("smoke: presenced failed\n{}", failures.join("\n"));
        }
        eprintln!("smoke: every scenario ran on presenced");
    }
    Ok(())
}
