//! The servers under test, each started fresh as a child process on a free
//! loopback port for every scenario, watched for runaway memory, and killed
//! when its [`Server`] handle drops.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::client::{Proto, Target};
use crate::util::{free_port, rss_kib};

pub const JWT_SECRET: &str = "presenced-bench-secret";
pub const API_KEY: &str = "presenced-bench-key";
pub const APP_ID: &str = "bench";
pub const APP_KEY: &str = "bench-key";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerId {
    Presenced,
    /// Another presenced binary (`--baseline-bin`, e.g. an earlier commit),
    /// measured beside the one under test.
    Baseline,
    Soketi,
    Sockudo,
    SioFull,
    SioDelta,
}

impl ServerId {
    pub fn name(self) -> &'static str {
        match self {
            ServerId::Presenced => "presenced",
            ServerId::Baseline => "presenced-baseline",
            ServerId::Soketi => "soketi",
            ServerId::Sockudo => "sockudo",
            ServerId::SioFull => "sio-full",
            ServerId::SioDelta => "sio-delta",
        }
    }

    pub fn parse(s: &str) -> Option<ServerId> {
        [
            ServerId::Presenced,
            ServerId::Baseline,
            ServerId::Soketi,
            ServerId::Sockudo,
            ServerId::SioFull,
            ServerId::SioDelta,
        ]
        .into_iter()
        .find(|id| id.name() == s)
    }

    pub fn proto(self) -> Proto {
        match self {
            ServerId::Presenced | ServerId::Baseline => Proto::Presenced,
            ServerId::Soketi | ServerId::Sockudo => Proto::Pusher,
            ServerId::SioFull => Proto::SioFull,
            ServerId::SioDelta => Proto::SioDelta,
        }
    }
}

/// Paths the servers are started from.
#[derive(Clone, Debug)]
pub struct Paths {
    pub presenced_bin: PathBuf,
    pub baseline_bin: Option<PathBuf>,
    pub bench_dir: PathBuf,
    pub rss_cap_kib: u64,
}

impl Paths {
    pub fn sockudo_bin(&self) -> PathBuf {
        self.bench_dir.join(".sockudo/bin/sockudo")
    }

    /// Whether a server can be started here, or why not.
    pub fn available(&self, id: ServerId) -> Result<(), String> {
        let need = |p: PathBuf, hint: &str| {
            if p.exists() {
                Ok(())
            } else {
                Err(format!("{} missing ({hint})", p.display()))
            }
        };
        match id {
            ServerId::Presenced => need(self.presenced_bin.clone(), "cargo build --release"),
            ServerId::Baseline => match &self.baseline_bin {
                Some(p) => need(p.clone(), "build the baseline commit"),
                None => Err("no --baseline-bin given".into()),
            },
            ServerId::Soketi => need(
                self.bench_dir
                    .join("node_modules/@soketi/soketi/bin/server.js"),
                "run bench/setup.sh",
            ),
            ServerId::SioFull | ServerId::SioDelta => need(
                self.bench_dir.join("node_modules/socket.io/package.json"),
                "run bench/setup.sh",
            ),
            ServerId::Sockudo => need(self.sockudo_bin(), "run bench/setup.sh --sockudo"),
        }
    }
}

/// Per-run server options.
#[derive(Clone, Debug, Default)]
pub struct StartOpts {
    /// presenced's grace window (the big-room scenario keeps members of
    /// closed sockets alive in it).
    pub grace_ms: Option<u64>,
    /// Extra arguments for `presenced serve` (experiments).
    pub presenced_args: Vec<String>,
}

/// A running server under test.
pub struct Server {
    pub id: ServerId,
    pub target: Arc<Target>,
    pub pid: u32,
    pub port: u16,
    child: Arc<Mutex<Child>>,
    dir: tempfile::TempDir,
    /// Set when the memory watchdog killed the server.
    pub aborted: Arc<AtomicBool>,
    pub peak_kib: Arc<AtomicU64>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    pub fn is_alive(&self) -> bool {
        self.child
            .lock()
            .map(|mut c| matches!(c.try_wait(), Ok(None)))
            .unwrap_or(false)
    }

    /// GET on the presenced HTTP API; returns the JSON body.
    pub async fn api_get(&self, path: &str) -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.api_get_text(path).await?)?)
    }

    /// GET on the presenced HTTP API; returns the body as text (e.g.
    /// `/metrics`).
    pub async fn api_get_text(&self, path: &str) -> Result<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
        let text = String::from_utf8_lossy(&buf);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        Ok(body.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.watchdog.abort();
        if let Ok(mut c) = self.child.lock() {
            let _ = c.start_kill();
        }
    }
}

/// Starts server `id` and waits until it accepts connections.
pub async fn start(paths: &Paths, id: ServerId, opts: &StartOpts) -> Result<Server> {
    paths.available(id).map_err(anyhow::Error::msg)?;
    let port = free_port()?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("presenced-bench-{}-", id.name()))
        .tempdir()?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let mut cmd = match id {
        ServerId::Presenced => presenced_cmd(&paths.presenced_bin, dir.path(), port, opts)?,
        ServerId::Baseline => {
            let bin = paths.baseline_bin.as_ref().context("no --baseline-bin")?;
            presenced_cmd(bin, dir.path(), port, opts)?
        }
        ServerId::Soketi => soketi_cmd(paths, port)?,
        ServerId::Sockudo => sockudo_cmd(paths, port),
        ServerId::SioFull | ServerId::SioDelta => {
            let mut c = Command::new("node");
            c.arg("--max-old-space-size=8192")
                .arg(paths.bench_dir.join("sio-server.js"))
                .args(["--port", &port.to_string(), "--secret", JWT_SECRET])
                .args([
                    "--mode",
                    if id == ServerId::SioFull {
                        "full"
                    } else {
                        "delta"
                    },
                ]);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("start {}", id.name()))?;
    let pid = child.id().unwrap_or(0);
    let child = Arc::new(Mutex::new(child));
    let aborted = Arc::new(AtomicBool::new(false));
    let peak_kib = Arc::new(AtomicU64::new(0));
    let watchdog = tokio::spawn(watchdog(
        pid,
        child.clone(),
        paths.rss_cap_kib,
        aborted.clone(),
        peak_kib.clone(),
    ));
    let secret = match id.proto() {
        Proto::Pusher => "bench-secret".to_owned(),
        _ => JWT_SECRET.to_owned(),
    };
    let server = Server {
        id,
        target: Arc::new(Target {
            proto: id.proto(),
            port,
            secret,
            app_key: APP_KEY.to_owned(),
        }),
        pid,
        port,
        child,
        dir,
        aborted,
        peak_kib,
        watchdog,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if !server.is_alive() || tokio::time::Instant::now() > deadline {
            bail!("{} did not start:\n{}", id.name(), server.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let start-up allocations settle before anybody reads a baseline RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(server)
}

fn presenced_cmd(bin: &Path, dir: &Path, port: u16, opts: &StartOpts) -> Result<Command> {
    let config = dir.join("presenced.toml");
    // Limits raised so that the bench measures presence work, not the
    // per-connection abuse limits.
    std::fs::write(
        &config,
        "max_channels_per_conn = 2000\nmax_watch_per_conn = 5000\nrate_per_sec = 100000\nrate_burst = 100000\n",
    )?;
    let mut c = Command::new(bin);
    c.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--jwt-secret", JWT_SECRET, "--api-key", API_KEY])
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn");
    if let Some(g) = opts.grace_ms {
        c.args(["--grace-ms", &g.to_string()]);
    }
    c.args(&opts.presenced_args);
    Ok(c)
}

fn soketi_cmd(paths: &Paths, port: u16) -> Result<Command> {
    let mut c = Command::new("node");
    c.arg("--max-old-space-size=8192")
        .arg(
            paths
                .bench_dir
                .join("node_modules/@soketi/soketi/bin/server.js"),
        )
        .arg("start")
        .envs([
            ("SOKETI_HOST", "127.0.0.1".to_owned()),
            ("SOKETI_PORT", port.to_string()),
            // Its peer discovery broadcasts over UDP by default: keep it on
            // loopback.
            ("SOKETI_CLUSTER_UNICAST_ADDRESSES", "127.0.0.1".to_owned()),
            ("SOKETI_CLUSTER_HOST", "127.0.0.1".to_owned()),
            ("SOKETI_CLUSTER_PORT", free_port()?.to_string()),
            ("SOKETI_METRICS_ENABLED", "false".to_owned()),
            ("SOKETI_METRICS_SERVER_PORT", free_port()?.to_string()),
            ("SOKETI_DEFAULT_APP_ID", APP_ID.to_owned()),
            ("SOKETI_DEFAULT_APP_KEY", APP_KEY.to_owned()),
            ("SOKETI_DEFAULT_APP_SECRET", "bench-secret".to_owned()),
            ("SOKETI_PRESENCE_MAX_MEMBERS", "1000000".to_owned()),
            ("SOKETI_DEBUG", "false".to_owned()),
        ]);
    Ok(c)
}

fn sockudo_cmd(paths: &Paths, port: u16) -> Command {
    let mut c = Command::new(paths.sockudo_bin());
    c.envs([
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", port.to_string()),
        ("ADAPTER_DRIVER", "local".to_owned()),
        ("RATE_LIMITER_ENABLED", "false".to_owned()),
        ("SOCKUDO_DEFAULT_APP_ID", APP_ID.to_owned()),
        ("SOCKUDO_DEFAULT_APP_KEY", APP_KEY.to_owned()),
        ("SOCKUDO_DEFAULT_APP_SECRET", "bench-secret".to_owned()),
        ("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "1000000".to_owned()),
        (
            "SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL",
            "1000000".to_owned(),
        ),
        ("PRESENCE_MAX_MEMBERS_PER_CHANNEL", "1000000".to_owned()),
        ("METRICS_ENABLED", "false".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
        ("SHUTDOWN_GRACE_PERIOD", "1".to_owned()),
    ]);
    c
}

/// Samples the server's RSS every 200 ms, keeps the peak, and kills the
/// server when it passes `cap_kib` (a server buffering without bound must
/// not take the machine down).
async fn watchdog(
    pid: u32,
    child: Arc<Mutex<Child>>,
    cap_kib: u64,
    aborted: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(rss) = rss_kib(pid) else { return };
        peak.fetch_max(rss, Ordering::Relaxed);
        if rss > cap_kib {
            eprintln!(
                "watchdog: server pid {pid} at {} MiB, over the {} MiB cap: killed",
                rss / 1024,
                cap_kib / 1024
            );
            aborted.store(true, Ordering::Relaxed);
            if let Ok(mut c) = child.lock() {
                let _ = c.start_kill();
            }
            return;
        }
    }
}
