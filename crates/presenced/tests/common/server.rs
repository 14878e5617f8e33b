//! The `presenced serve` child process: its settings ([`Opts`]), start-up
//! (waiting for the `listening on` line), output kept for failure reports,
//! tokens signed with its secret, connections to it, and signals, exit and
//! restart on the same data.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::client::Client;
use super::timing::now_secs;
use super::tokens::sign_with;

/// TOML with the channel rules used by the guest and rule tests.
pub const RULES_TOML: &str = r#"
guests_watch = true

[[channels]]
pattern = "lobby:*"
guests = true
public_fields = ["name", "info.avatar"]
publish = false

[[channels]]
pattern = "small:*"
max_members = 2

[[channels]]
pattern = "readonly:*"
enter = false
"#;

/// Settings for one server process; `None` leaves the server default.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    pub grace_ms: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub hello_timeout_ms: Option<u64>,
    pub coalesce_ms: Option<u64>,
    pub occupancy_interval_ms: Option<u64>,
    pub guests: bool,
    pub guests_watch: bool,
    /// Contents of a TOML file passed with `--config`.
    pub config: Option<String>,
    pub max_data_bytes: Option<u64>,
    pub max_channels_per_conn: Option<u64>,
    pub max_watch_per_conn: Option<u64>,
    pub max_frame_bytes: Option<u64>,
    pub rate_per_sec: Option<u64>,
    pub rate_burst: Option<u64>,
    /// The data directory, instead of one in the server's own temporary
    /// directory (a file system a test controls).
    pub data_dir: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// Extra environment variables of the process (for example a preloaded
    /// library that fakes its wall clock).
    pub env: Vec<(String, String)>,
}

impl Opts {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn grace(mut self, ms: u64) -> Self {
        self.grace_ms = Some(ms);
        self
    }
    pub fn heartbeat(mut self, ms: u64) -> Self {
        self.heartbeat_ms = Some(ms);
        self
    }
    pub fn hello_timeout(mut self, ms: u64) -> Self {
        self.hello_timeout_ms = Some(ms);
        self
    }
    pub fn coalesce(mut self, ms: u64) -> Self {
        self.coalesce_ms = Some(ms);
        self
    }
    pub fn occupancy_interval(mut self, ms: u64) -> Self {
        self.occupancy_interval_ms = Some(ms);
        self
    }
    pub fn guests(mut self) -> Self {
        self.guests = true;
        self
    }
    pub fn guests_watch(mut self) -> Self {
        self.guests_watch = true;
        self
    }
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }
    pub fn max_data_bytes(mut self, n: u64) -> Self {
        self.max_data_bytes = Some(n);
        self
    }
    pub fn max_channels_per_conn(mut self, n: u64) -> Self {
        self.max_channels_per_conn = Some(n);
        self
    }
    pub fn max_watch_per_conn(mut self, n: u64) -> Self {
        self.max_watch_per_conn = Some(n);
        self
    }
    pub fn max_frame_bytes(mut self, n: u64) -> Self {
        self.max_frame_bytes = Some(n);
        self
    }
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
    pub fn rate(mut self, per_sec: u64, burst: u64) -> Self {
        self.rate_per_sec = Some(per_sec);
        self.rate_burst = Some(burst);
        self
    }
}

/// Output lines of the child process, kept for failure reports.
type Log = Arc<Mutex<Vec<String>>>;

/// Where the output drainers report the `listening on` address (and the
/// stream it came on), once.
type ListeningSlot = Arc<Mutex<Option<oneshot::Sender<(SocketAddr, &'static str)>>>>;

/// A running `presenced serve` child process. Killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub secret: String,
    pub api_key: String,
    pub opts: Opts,
    log: Log,
    dir: tempfile::TempDir,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let line = strip_ansi(line);
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse().ok()
}

fn drain_lines<R: Read + Send + 'static>(
    reader: R,
    stream: &'static str,
    log: Log,
    found: ListeningSlot,
) {
    // A plain thread: the pipe must be drained whatever the test's runtime does.
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = parse_listening(&line)
                && let Some(tx) = found.lock().unwrap().take()
            {
                let _ = tx.send((addr, stream));
            }
            if std::env::var_os("PRESENCED_TEST_ECHO").is_some() {
                eprintln!("[server {stream}] {line}");
            }
            let mut log = log.lock().unwrap();
            if log.len() < 20_000 {
                log.push(format!("[{stream}] {line}"));
            }
        }
    });
}

impl Server {
    /// Starts the server and waits (up to 20 s) until it prints `listening on`.
    pub async fn start(opts: Opts) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = format!("test-secret-{:016x}", rand::random::<u64>());
        let api_key = format!("test-key-{:016x}", rand::random::<u64>());
        Server::start_in(dir, secret, api_key, opts).await
    }

    /// Starts the server with its data directory in `dir/data` (kept as it
    /// is: [`Server::restart`] uses it to start again on the same data).
    async fn start_in(
        dir: tempfile::TempDir,
        secret: String,
        api_key: String,
        opts: Opts,
    ) -> Server {
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        std::fs::create_dir_all(&data_dir).unwrap();

        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--jwt-secret".into(),
            secret.clone(),
            "--api-key".into(),
            api_key.clone(),
        ];
        let mut num = |flag: &str, v: Option<u64>| {
            if let Some(v) = v {
                args.push(flag.into());
                args.push(v.to_string());
            }
        };
        num("--grace-ms", opts.grace_ms);
        num("--heartbeat-ms", opts.heartbeat_ms);
        num("--hello-timeout-ms", opts.hello_timeout_ms);
        num("--coalesce-ms", opts.coalesce_ms);
        num("--occupancy-interval-ms", opts.occupancy_interval_ms);
        num("--max-data-bytes", opts.max_data_bytes);
        num("--max-channels-per-conn", opts.max_channels_per_conn);
        num("--max-watch-per-conn", opts.max_watch_per_conn);
        num("--max-frame-bytes", opts.max_frame_bytes);
        num("--rate-per-sec", opts.rate_per_sec);
        num("--rate-burst", opts.rate_burst);
        if opts.guests {
            args.push("--guests".into());
        }
        if opts.guests_watch {
            args.push("--guests-watch".into());
        }
        if let Some(toml) = &opts.config {
            let path: PathBuf = dir.path().join("presenced.toml");
            std::fs::write(&path, toml).unwrap();
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        args.extend(opts.extra_args.iter().cloned());

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_presenced"));
        cmd.args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("spawn presenced");

        let log: Log = Arc::default();
        let (tx, rx) = oneshot::channel();
        let found = Arc::new(Mutex::new(Some(tx)));
        drain_lines(
            child.stdout.take().unwrap(),
            "stdout",
            log.clone(),
            found.clone(),
        );
        drain_lines(child.stderr.take().unwrap(), "stderr", log.clone(), found);

        let deadline = Instant::now() + Duration::from_secs(20);
        let mut rx = rx;
        let (addr, stream) = loop {
            if let Ok(Ok(found)) = tokio::time::timeout(Duration::from_millis(50), &mut rx).await {
                break found;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the drain threads pick up the last lines.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "presenced exited before listening: {status}\nargs: {args:?}\noutput:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "presenced did not print `listening on http://…` within 20 s\nargs: {args:?}\noutput:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        if stream != "stdout" {
            eprintln!(
                "note: presenced printed its `listening on` line on {stream}, the contract says stdout"
            );
        }
        Server {
            child,
            addr,
            secret,
            api_key,
            opts,
            log,
            dir,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// A valid HS256 token for `user`, valid for one hour.
    pub fn token(&self, user: &str) -> String {
        self.sign(json!({"sub": user, "exp": now_secs() + 3600}))
    }

    /// A token for `user` with a trusted `info` claim.
    pub fn token_info(&self, user: &str, info: Value) -> String {
        self.sign(json!({"sub": user, "exp": now_secs() + 3600, "info": info}))
    }

    /// Signs arbitrary claims with HS256 and the server's secret.
    pub fn sign(&self, claims: Value) -> String {
        sign_with(Algorithm::HS256, self.secret.as_bytes(), &claims)
    }

    /// Connects and says `hello`; panics unless the answer is `welcome`.
    pub async fn connect(&self, token: Option<&str>) -> Client {
        self.connect_resume(token, None).await
    }

    /// Connects a user with a fresh token.
    pub async fn user(&self, user: &str) -> Client {
        let token = self.token(user);
        let mut c = self.connect(Some(&token)).await;
        c.name = user.to_owned();
        c
    }

    pub async fn guest(&self) -> Client {
        let mut c = self.connect(None).await;
        c.name = "guest".into();
        c
    }

    pub async fn connect_resume(&self, token: Option<&str>, resume: Option<&str>) -> Client {
        let mut c = self.raw_connect().await;
        c.hello(token, resume).await;
        c
    }

    /// Upgrades to a WebSocket without sending `hello`.
    pub async fn raw_connect(&self) -> Client {
        Client::open(&self.ws_url()).await
    }

    /// Sends SIGTERM to the child.
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status:?}");
    }

    /// Waits for the child to exit (polls the process state, up to `within`).
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for presenced") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "presenced did not exit within {within:?}\noutput:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.opts
            .data_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    /// Kills the process with SIGKILL (a crash: nothing is flushed) and
    /// reaps it.
    pub fn sigkill(&mut self) {
        self.child.kill().expect("kill -9 presenced");
        self.child.wait().expect("reap presenced");
    }

    /// Starts a new process on the same data directory, with the same JWT
    /// secret and API key, and `opts` (which may differ from the old ones).
    /// The old process must have exited (`sigterm` + `wait_exit`, or
    /// `sigkill`). Its output stays at the front of [`Server::output`].
    pub async fn restart(&mut self, opts: Opts) {
        assert!(
            self.child.try_wait().expect("presenced status").is_some(),
            "restart: the old presenced is still running"
        );
        let placeholder = tempfile::tempdir().expect("tempdir");
        let dir = std::mem::replace(&mut self.dir, placeholder);
        let new = Server::start_in(dir, self.secret.clone(), self.api_key.clone(), opts).await;
        let old_log = std::mem::take(&mut *self.log.lock().unwrap());
        {
            let mut log = new.log.lock().unwrap();
            let mut merged = old_log;
            merged.push("---- restarted ----".into());
            merged.append(&mut log);
            *log = merged;
        }
        *self = new;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log.lock().unwrap();
            let tail = &log[log.len().saturating_sub(60)..];
            eprintln!(
                "---- presenced output (last {} of {} lines) ----\n{}\n----",
                tail.len(),
                log.len(),
                tail.join("\n")
            );
        }
    }
}
