//! Worker processes: the bench re-executes itself as `presenced-bench worker
//! --spec JSON` so that the client sockets are spread over several
//! processes (each well under the per-process open-files cap).
//!
//! Control is line-delimited JSON: the worker sets up its connections and
//! prints [`FromWorker::Ready`], waits for [`ToWorker::Go`] (a start time on
//! the shared realtime clock), runs its timed part, and on
//! [`ToWorker::Stop`] (or stdin closing) prints [`FromWorker::Done`] with
//! its counters and exits. The orchestrator side is [`WorkerSet`]; it kills
//! every child when dropped.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Conn, Inbound, Proto, Target};
use crate::util::{Hist, friends_of, instant_at, inverse, now_us, permutation, source_ip};

/// What the worker's connections do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Role {
    /// Enter channel `g % channels` and stay idle.
    Hold { channels: u64 },
    /// Connect only; on Go, enter `channel` at `t0 + g * window / total`
    /// (presenced: without subscribing unless `subscribe`).
    Storm {
        channel: String,
        window_us: u64,
        subscribe: bool,
    },
    /// Enter channel `g % channels`; on Go, toggle leave/enter on a shared
    /// schedule of `rate` operations per second.
    Churn { channels: u64 },
    /// Enter `channel`; with `drop`, close the socket right after sending
    /// the enter (the member stays during the server's grace window).
    BigRoom { channel: String, drop: bool },
    /// Watch `friends` users; on Go, toggle own status on a shared schedule.
    Status { friends: u64 },
    /// Come and go: enter channel `g % channels`, wait for the reply, close
    /// the socket (WebSocket close handshake) and keep nothing. Only
    /// `concurrency` sockets are open at a time, however many users pass.
    Users { channels: u64 },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub target: Target,
    pub role: Role,
    /// Global index of this worker's first connection.
    pub first: u64,
    pub count: u64,
    /// Connections over all workers of this role.
    pub total: u64,
    pub prefix: String,
    pub source_ips: u32,
    pub concurrency: usize,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum ToWorker {
    Go { t0_us: u64, rate: f64, secs: f64 },
    Stop,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Frames and bytes received after Go.
    pub frames: u64,
    pub bytes: u64,
    /// Operations sent after Go, and error frames received.
    pub ops: u64,
    pub errors: u64,
    /// Largest delay between an operation's scheduled and actual send time.
    pub max_lag_us: u64,
    /// Status scenario: presence entries received and their latency.
    pub entries: u64,
    pub hist: Hist,
    /// Connections the server closed after setup.
    pub closed: u64,
    /// Churn: enters among the operations.
    pub enters: u64,
    /// Shared-clock time of the last operation sent.
    pub last_op_us: u64,
}

impl WorkerStats {
    pub fn merge(&mut self, o: &WorkerStats) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.ops += o.ops;
        self.errors += o.errors;
        self.max_lag_us = self.max_lag_us.max(o.max_lag_us);
        self.entries += o.entries;
        self.hist.merge(&o.hist);
        self.closed += o.closed;
        self.enters += o.enters;
        self.last_op_us = self.last_op_us.max(o.last_op_us);
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FromWorker {
    Ready {
        ok: u64,
        failed: u64,
        setup_ms: u64,
        first_error: Option<String>,
    },
    Done(WorkerStats),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ctl {
    Wait,
    Go { t0_us: u64, rate: f64, secs: f64 },
    Stop,
}

fn emit(msg: &FromWorker) {
    println!("{}", serde_json::to_string(msg).unwrap_or_default());
}

/// Entry point of `presenced-bench worker`.
pub async fn worker_main(spec: &str) -> Result<()> {
    let spec: WorkerSpec = serde_json::from_str(spec).context("worker spec")?;
    let spec = Arc::new(spec);
    let target = Arc::new(spec.target.clone());
    let (ctl_tx, ctl_rx) = watch::channel(Ctl::Wait);

    // Control from the orchestrator; stdin closing means stop.
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<ToWorker>(&line) {
                Ok(ToWorker::Go { t0_us, rate, secs }) => {
                    let _ = ctl_tx.send(Ctl::Go { t0_us, rate, secs });
                }
                Ok(ToWorker::Stop) => break,
                Err(e) => eprintln!("worker: bad control line: {e}"),
            }
        }
        let _ = ctl_tx.send(Ctl::Stop);
    });

    let shared = Arc::new(Shared::new(&spec));
    let started = Instant::now();
    let results: Vec<Result<Option<tokio::task::JoinHandle<WorkerStats>>>> =
        futures_util::stream::iter(spec.first..spec.first + spec.count)
            .map(|g| {
                let spec = spec.clone();
                let target = target.clone();
                let shared = shared.clone();
                let ctl = ctl_rx.clone();
                async move {
                    let user = format!("{}{g}", spec.prefix);
                    let src = source_ip(g, spec.source_ips);
                    let mut conn = client::connect(&target, Some(src), &user).await?;
                    if !setup(&mut conn, g, &spec).await? {
                        return Ok(None);
                    }
                    Ok(Some(tokio::spawn(run_conn(conn, g, spec, shared, ctl))))
                }
            })
            .buffer_unordered(spec.concurrency.max(1))
            .collect()
            .await;
    let setup_ms = started.elapsed().as_millis() as u64;
    let mut handles = Vec::new();
    let mut ok = 0;
    let mut failed = 0;
    let mut first_error = None;
    for r in results {
        match r {
            Ok(h) => {
                ok += 1;
                handles.extend(h);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    emit(&FromWorker::Ready {
        ok,
        failed,
        setup_ms,
        first_error,
    });

    let mut ctl = ctl_rx.clone();
    while *ctl.borrow_and_update() != Ctl::Stop {
        if ctl.changed().await.is_err() {
            break;
        }
    }
    let mut total = WorkerStats::default();
    for h in handles {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(10), h).await {
            total.merge(&s);
        }
    }
    emit(&FromWorker::Done(total));
    Ok(())
}

/// Read-only data every connection of a worker shares.
struct Shared {
    /// Churn/Status: `pos[g]` = first schedule slot of connection `g`.
    pos: Vec<u32>,
}

impl Shared {
    fn new(spec: &WorkerSpec) -> Shared {
        let pos = match spec.role {
            Role::Churn { .. } | Role::Status { .. } => inverse(&permutation(spec.total, 0x5EED)),
            _ => Vec::new(),
        };
        Shared { pos }
    }
}

/// Per-connection setup before Ready. Returns false when the connection is
/// not to be kept.
async fn setup(conn: &mut Conn, g: u64, spec: &WorkerSpec) -> Result<bool> {
    match &spec.role {
        // Churn starts with every other connection entered, so that the
        // toggles are half enters and half leaves from the start.
        Role::Churn { .. } if g % 2 == 1 => {}
        Role::Hold { channels } | Role::Churn { channels } => {
            let channel = format!("c{}", g % channels);
            conn.enter(&channel, &json!({"ts": 0}), Some(1)).await?;
            conn.await_reply(1, &channel, |_| {}).await?;
        }
        Role::Storm { .. } => {}
        Role::Users { channels } => {
            let channel = format!("u{}", g % channels);
            conn.enter(&channel, &json!({"ts": 0}), Some(1)).await?;
            conn.await_reply(1, &channel, |_| {}).await?;
            // Leave as a client that closes its tab does: close frame, then
            // read until the server answers and closes (bounded).
            let _ = conn.ws.close(None).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(Ok(_)) = conn.ws.next().await {}
            })
            .await;
            return Ok(false);
        }
        Role::BigRoom { channel, drop } => {
            conn.enter(channel, &json!({"ts": 0}), Some(1)).await?;
            if *drop {
                // The server reads the enter before our FIN; the member then
                // lives on in its grace window without a socket.
                return Ok(false);
            }
            conn.await_reply(1, channel, |_| {}).await?;
        }
        Role::Status { friends } => {
            let users: Vec<String> = friends_of(g, spec.total, *friends)
                .into_iter()
                .map(|f| format!("{}{f}", spec.prefix))
                .collect();
            for (i, chunk) in users.chunks(500).enumerate() {
                let id = 1 + i as u64;
                conn.watch(chunk, id).await?;
                conn.await_reply(id, "", |_| {}).await?;
            }
        }
    }
    Ok(true)
}

/// Status scenario: the k-th toggle of a user sets away when k is even.
fn scheduled_send_us(pos: u64, k: u64, n: u64, t0_us: u64, rate: f64) -> u64 {
    t0_us + (((pos + k * n) as f64) * 1e6 / rate) as u64
}

async fn run_conn(
    mut conn: Conn,
    g: u64,
    spec: Arc<WorkerSpec>,
    shared: Arc<Shared>,
    mut ctl: watch::Receiver<Ctl>,
) -> WorkerStats {
    let mut st = WorkerStats::default();
    let proto = conn.target.proto;
    let n = spec.total.max(1);
    let prefix_len = spec.prefix.len();
    let mut go: Option<(u64, f64, f64)> = None;
    // Next scheduled operation: (slot index k, time in µs).
    let mut next_op: Option<(u64, u64)> = None;
    let mut entered = matches!(spec.role, Role::Churn { .. }) && g.is_multiple_of(2);
    let mut toggles = 0u64;
    let mut full_view: std::collections::HashMap<String, bool> = Default::default();
    // Only the full-list design sends users nobody asked for.
    let friends: std::collections::HashSet<String> = match spec.role {
        Role::Status { friends } if proto == Proto::SioFull => friends_of(g, n, friends)
            .into_iter()
            .map(|f| format!("{}{f}", spec.prefix))
            .collect(),
        _ => Default::default(),
    };
    let far = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
    loop {
        let op_at = next_op.map(|(_, at)| instant_at(at)).unwrap_or(far);
        tokio::select! {
            biased;
            r = ctl.changed() => {
                if r.is_err() { break; }
                let c = *ctl.borrow_and_update();
                match c {
                    Ctl::Stop => break,
                    Ctl::Go { t0_us, rate, secs } => {
                        go = Some((t0_us, rate, secs));
                        next_op = match &spec.role {
                            Role::Storm { window_us, .. } => {
                                Some((0, t0_us + g * window_us / n))
                            }
                            Role::Churn { .. } | Role::Status { .. } => {
                                let k = u64::from(shared.pos[g as usize]);
                                let ops = (rate * secs) as u64;
                                (k < ops).then(|| (k, t0_us + ((k as f64) * 1e6 / rate) as u64))
                            }
                            _ => None,
                        };
                    }
                    Ctl::Wait => {}
                }
            }
            _ = tokio::time::sleep_until(op_at), if next_op.is_some() => {
                let (k, at) = next_op.take().unwrap_or_default();
                let Some((t0_us, rate, secs)) = go else { continue };
                st.max_lag_us = st.max_lag_us.max(now_us().saturating_sub(at));
                st.ops += 1;
                let sent = match &spec.role {
                    Role::Storm { channel, subscribe, .. } => {
                        conn.enter_with(channel, &json!({"ts": now_us()}), Some(1), *subscribe).await
                    }
                    Role::Churn { channels } => {
                        let channel = format!("c{}", g % channels);
                        entered = !entered;
                        if entered {
                            st.enters += 1;
                            conn.enter(&channel, &json!({"ts": now_us()}), None).await
                        } else {
                            conn.leave(&channel).await
                        }
                    }
                    Role::Status { .. } => {
                        let away = toggles.is_multiple_of(2);
                        toggles += 1;
                        conn.set_status(away).await
                    }
                    _ => Ok(()),
                };
                if sent.is_err() {
                    st.errors += 1;
                }
                st.last_op_us = st.last_op_us.max(now_us());
                if matches!(spec.role, Role::Churn { .. } | Role::Status { .. }) {
                    let k2 = k + n;
                    if k2 < (rate * secs) as u64 {
                        next_op = Some((k2, t0_us + ((k2 as f64) * 1e6 / rate) as u64));
                    }
                }
            }
            msg = conn.ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => { st.closed += 1; break; }
                    Some(Ok(_)) => continue,
                };
                if let Some(reply) = client::ping_reply(proto, &text) {
                    if conn.send(reply.to_owned()).await.is_err() { st.closed += 1; break; }
                    continue;
                }
                if go.is_none() {
                    // The full-list design's status map: keep the last one
                    // so that changes after Go are told apart.
                    if matches!(spec.role, Role::Status { .. })
                        && proto == Proto::SioFull
                        && let Inbound::FullPresence(m) = client::parse(proto, &text)
                    {
                        full_view = m;
                    }
                    continue;
                }
                let Some((t0_us, rate, _)) = go else { continue };
                st.frames += 1;
                st.bytes += text.len() as u64;
                // Only small frames can be errors; entrants' snapshots are
                // counted, not parsed.
                if text.len() < 300 && (text.contains("\"error\"") || text.starts_with("44") || text.contains("subscription_error")) {
                    st.errors += 1;
                }
                if let Role::Status { .. } = spec.role {
                    let now = now_us();
                    let changes: Vec<(String, bool)> = match client::parse(proto, &text) {
                        Inbound::Presence(v) => v,
                        Inbound::FullPresence(m) => {
                            let changed = m.iter()
                                .filter(|(u, a)| full_view.get(*u) != Some(*a) && friends.contains(*u))
                                .map(|(u, a)| (u.clone(), *a))
                                .collect();
                            full_view = m;
                            changed
                        }
                        _ => continue,
                    };
                    for (user, away) in changes {
                        let Some(idx) = user.get(prefix_len..).and_then(|s| s.parse::<u64>().ok()) else { continue };
                        let Some(&pos) = shared.pos.get(idx as usize) else { continue };
                        let pos = u64::from(pos);
                        st.entries += 1;
                        // The latest scheduled toggle of this user to this
                        // status at or before now.
                        let elapsed = ((now.saturating_sub(t0_us)) as f64 * rate / 1e6) as u64;
                        if now < t0_us || elapsed < pos { continue; }
                        let mut k = (elapsed - pos) / n;
                        if k.is_multiple_of(2) != away {
                            if k == 0 { continue; }
                            k -= 1;
                        }
                        let sent = scheduled_send_us(pos, k, n, t0_us, rate);
                        st.hist.record(now.saturating_sub(sent));
                    }
                }
            }
        }
    }
    st
}

/// A running worker process.
struct WorkerProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

/// The orchestrator's handle on a role's worker processes. Dropping it
/// kills them.
pub struct WorkerSet {
    procs: Vec<WorkerProc>,
}

#[derive(Debug, Default)]
pub struct ReadySummary {
    pub ok: u64,
    pub failed: u64,
    pub setup_ms: u64,
    pub first_error: Option<String>,
}

impl WorkerSet {
    /// Starts enough workers for `total` connections, at most `per_worker`
    /// each (and at least two once there are a thousand connections, so that
    /// client work is spread over both cores).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        exe: &Path,
        target: &Target,
        role: Role,
        total: u64,
        prefix: &str,
        per_worker: u64,
        source_ips: u32,
        concurrency: usize,
    ) -> Result<WorkerSet> {
        let mut k = total.div_ceil(per_worker.max(1)).max(1);
        if total >= 1000 {
            k = k.max(2);
        }
        let mut procs = Vec::new();
        let base = total / k;
        let mut first = 0;
        for i in 0..k {
            let count = if i + 1 == k { total - first } else { base };
            let spec = WorkerSpec {
                target: target.clone(),
                role: role.clone(),
                first,
                count,
                total,
                prefix: prefix.to_owned(),
                source_ips,
                concurrency,
            };
            first += count;
            let mut child = Command::new(exe)
                .arg("worker")
                .arg("--spec")
                .arg(serde_json::to_string(&spec)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("spawn worker")?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
            procs.push(WorkerProc {
                child,
                stdin,
                lines: BufReader::new(stdout).lines(),
            });
        }
        Ok(WorkerSet { procs })
    }

    async fn next_msg(p: &mut WorkerProc) -> Result<FromWorker> {
        loop {
            let line = p
                .lines
                .next_line()
                .await?
                .ok_or_else(|| anyhow!("worker exited"))?;
            if let Ok(m) = serde_json::from_str::<FromWorker>(&line) {
                return Ok(m);
            }
        }
    }

    /// Waits for every worker's Ready, at most `limit`.
    pub async fn ready(&mut self, limit: Duration) -> Result<ReadySummary> {
        let mut sum = ReadySummary::default();
        let deadline = tokio::time::Instant::now() + limit;
        for p in &mut self.procs {
            let m = tokio::time::timeout_at(deadline, Self::next_msg(p))
                .await
                .context("workers' setup timed out")??;
            let FromWorker::Ready {
                ok,
                failed,
                setup_ms,
                first_error,
            } = m
            else {
                bail!("unexpected worker message");
            };
            sum.ok += ok;
            sum.failed += failed;
            sum.setup_ms = sum.setup_ms.max(setup_ms);
            if sum.first_error.is_none() {
                sum.first_error = first_error;
            }
        }
        Ok(sum)
    }

    async fn send_all(&mut self, msg: &ToWorker) -> Result<()> {
        let line = format!("{}\n", serde_json::to_string(msg)?);
        for p in &mut self.procs {
            if let Some(stdin) = p.stdin.as_mut() {
                stdin.write_all(line.as_bytes()).await?;
                stdin.flush().await?;
            }
        }
        Ok(())
    }

    pub async fn go(&mut self, t0_us: u64, rate: f64, secs: f64) -> Result<()> {
        self.send_all(&ToWorker::Go { t0_us, rate, secs }).await
    }

    /// Stops the workers and sums their counters.
    pub async fn stop(&mut self) -> Result<WorkerStats> {
        self.send_all(&ToWorker::Stop).await?;
        let mut total = WorkerStats::default();
        for p in &mut self.procs {
            if let Ok(Ok(FromWorker::Done(s))) =
                tokio::time::timeout(Duration::from_secs(30), Self::next_msg(p)).await
            {
                total.merge(&s);
            }
            p.stdin = None;
            let _ = tokio::time::timeout(Duration::from_secs(5), p.child.wait()).await;
        }
        Ok(total)
    }
}

impl Drop for WorkerSet {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.start_kill();
        }
    }
}
