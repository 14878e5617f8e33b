//! Black-box harness: runs the real `presenced` binary as a child process and
//! speaks the wire protocol to it over real WebSockets.
//!
//! - [`Server`] starts `presenced serve` on `127.0.0.1:0` in a temporary data
//!   directory, waits for its `listening on http://…` line, keeps draining its
//!   output (kept for failure reports) and kills it on drop.
//! - [`Client`] is one WebSocket connection with a background reader, so it
//!   always answers the server's pings and never loses a frame; tests wait for
//!   the frame they expect with a timeout instead of sleeping.
//! - [`Drone`] is a cheap connection for load tests: it enters a channel and
//!   then reads and discards everything.
//! - [`View`] applies `sync`/`join`/`update`/`leave`/`diff` frames to a member
//!   map and checks that `seq` has no gaps.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::SinkExt;
use futures_util::stream::{SplitSink, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Default time to wait for an expected frame.
pub const WAIT: Duration = Duration::from_secs(5);

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

/// Serialises the heavy tests (thousands of sockets) of one test binary so
/// they do not starve each other or the timing-sensitive tests.
pub async fn heavy_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

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
    pub extra_args: Vec<String>,
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
        let data_dir = dir.path().join("data");
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
        self.dir.path().join("data")
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

pub fn sign_with(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("sign token")
}

/// An unsigned token with `alg: none`.
pub fn alg_none_token(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    format!("{header}.{body}.")
}

/// What the background reader of a [`Client`] saw.
#[derive(Debug)]
enum Event {
    Frame(Value),
    /// A text frame that is not JSON (the server should never send one).
    BadText(String),
    /// The connection ended: close code if a close frame came, and how.
    Closed(Option<u16>, String),
}

/// One WebSocket connection to the server.
pub struct Client {
    pub name: String,
    sink: SplitSink<Ws, Message>,
    rx: mpsc::UnboundedReceiver<Event>,
    reader: JoinHandle<()>,
    /// Every frame received so far, in order.
    pub history: Vec<Value>,
    /// The `welcome` frame (Null before `hello`).
    pub welcome: Value,
    next_id: u64,
    /// How long `next`/`expect`/`closed` wait.
    pub timeout: Duration,
    closed: Option<(Option<u16>, String)>,
}

impl Client {
    pub async fn open(url: &str) -> Client {
        let (ws, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("WebSocket upgrade to {url} timed out"))
            .unwrap_or_else(|e| panic!("WebSocket upgrade to {url} failed: {e}"));
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            // Reading also flushes the automatic pong replies to server pings.
            loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let ev = match serde_json::from_str::<Value>(t.as_str()) {
                            Ok(v) => Event::Frame(v),
                            Err(_) => Event::BadText(t.as_str().to_owned()),
                        };
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        let reason = frame
                            .map(|f| f.reason.as_str().to_owned())
                            .unwrap_or_default();
                        let _ = tx.send(Event::Closed(
                            code,
                            format!("close frame, reason {reason:?}"),
                        ));
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        let _ = tx.send(Event::Closed(None, format!("error: {e}")));
                        return;
                    }
                    None => {
                        let _ = tx.send(Event::Closed(
                            None,
                            "stream ended without close frame".into(),
                        ));
                        return;
                    }
                }
            }
        });
        Client {
            name: "client".into(),
            sink,
            rx,
            reader,
            history: Vec::new(),
            welcome: Value::Null,
            next_id: 1,
            timeout: WAIT,
            closed: None,
        }
    }

    /// Sends `hello` and waits for `welcome`.
    pub async fn hello(&mut self, token: Option<&str>, resume: Option<&str>) -> Value {
        let mut hello = json!({
            "t": "hello",
            "token": token,
            "client": {"name": "presenced-tests", "version": "0"},
        });
        if let Some(r) = resume {
            hello["resume"] = json!(r);
        }
        self.send(hello).await;
        let f = self.next().await;
        assert_eq!(
            f["t"], "welcome",
            "{}: expected welcome after hello, got {f}",
            self.name
        );
        self.welcome = f.clone();
        f
    }

    pub fn session(&self) -> String {
        self.welcome["session"]
            .as_str()
            .expect("welcome.session")
            .to_owned()
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.sink
            .send(Message::text(text.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{}: send failed: {e}", self.name));
    }

    /// Sends many text frames in one write (they reach the server together).
    /// Returns false if the socket failed (the server may already have closed).
    pub async fn send_batch(&mut self, texts: &[String]) -> bool {
        for t in texts {
            if self.sink.feed(Message::text(t.clone())).await.is_err() {
                return false;
            }
        }
        self.sink.flush().await.is_ok()
    }

    /// Like `send_text` but does not panic (the server may already have closed).
    pub async fn try_send_text(&mut self, text: &str) -> bool {
        self.sink.send(Message::text(text.to_owned())).await.is_ok()
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.sink
            .send(Message::binary(bytes))
            .await
            .expect("send binary");
    }

    /// Sends a close frame (a clean socket close, not `bye`).
    pub async fn close(&mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
        let _ = self.sink.flush().await;
    }

    /// Stops reading: from now on the connection answers no pings and sends
    /// nothing, but the TCP socket stays open (a half-open client).
    pub fn stop_reading(&mut self) {
        self.reader.abort();
    }

    fn describe(&self, n: usize) -> String {
        let start = self.history.len().saturating_sub(n);
        let mut s = format!(
            "last {} of {} frames seen by {}:",
            self.history.len() - start,
            self.history.len(),
            self.name
        );
        for f in &self.history[start..] {
            let mut t = f.to_string();
            if t.len() > 600 {
                t.truncate(600);
                t.push('…');
            }
            s.push_str("\n  ");
            s.push_str(&t);
        }
        s
    }

    async fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        if self.closed.is_some() {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.rx.recv()).await {
            Ok(Some(Event::Frame(v))) => {
                self.history.push(v.clone());
                Some(Event::Frame(v))
            }
            Ok(Some(Event::BadText(t))) => {
                panic!("{}: server sent a non-JSON text frame: {t:?}", self.name)
            }
            Ok(Some(Event::Closed(code, how))) => {
                self.closed = Some((code, how.clone()));
                Some(Event::Closed(code, how))
            }
            Ok(None) => {
                self.closed = Some((None, "reader stopped".into()));
                Some(Event::Closed(None, "reader stopped".into()))
            }
            Err(_) => None,
        }
    }

    /// The next frame, waiting up to `self.timeout`.
    pub async fn next(&mut self) -> Value {
        let deadline = Instant::now() + self.timeout;
        match self.next_event(deadline).await {
            Some(Event::Frame(v)) => v,
            Some(Event::Closed(code, how)) => panic!(
                "{}: connection closed (code {code:?}, {how}) while waiting for a frame\n{}",
                self.name,
                self.describe(20)
            ),
            _ => panic!(
                "{}: no frame within {:?} (closed: {:?})\n{}",
                self.name,
                self.timeout,
                self.closed,
                self.describe(20)
            ),
        }
    }

    /// Waits for the first frame matching `pred`; returns the frames skipped
    /// before it and the match.
    pub async fn until(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, Value) {
        self.until_within(what, self.timeout, pred).await
    }

    pub async fn until_within(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, Value) {
        let deadline = Instant::now() + within;
        let mut skipped = Vec::new();
        loop {
            match self.next_event(deadline).await {
                Some(Event::Frame(v)) if pred(&v) => return (skipped, v),
                Some(Event::Frame(v)) => skipped.push(v),
                Some(Event::Closed(code, how)) => panic!(
                    "{}: connection closed (code {code:?}, {how}) while waiting for {what}\n{}",
                    self.name,
                    self.describe(30)
                ),
                _ => panic!(
                    "{}: timed out after {within:?} waiting for {what} (closed: {:?})\n{}",
                    self.name,
                    self.closed,
                    self.describe(30)
                ),
            }
        }
    }

    /// Waits until every predicate has matched some frame (in any order);
    /// returns the first match of each.
    pub async fn expect_each(
        &mut self,
        what: &str,
        preds: &[&dyn Fn(&Value) -> bool],
    ) -> Vec<Value> {
        let deadline = Instant::now() + self.timeout;
        let mut found: Vec<Option<Value>> = vec![None; preds.len()];
        while found.iter().any(Option::is_none) {
            match self.next_event(deadline).await {
                Some(Event::Frame(v)) => {
                    for (i, p) in preds.iter().enumerate() {
                        if found[i].is_none() && p(&v) {
                            found[i] = Some(v.clone());
                        }
                    }
                }
                Some(Event::Closed(code, how)) => panic!(
                    "{}: connection closed (code {code:?}, {how}) while waiting for {what}\n{}",
                    self.name,
                    self.describe(30)
                ),
                _ => panic!(
                    "{}: timed out after {:?} waiting for {what} (matched so far: {found:?})\n{}",
                    self.name,
                    self.timeout,
                    self.describe(30)
                ),
            }
        }
        found.into_iter().map(Option::unwrap).collect()
    }

    /// Waits for the first frame matching `pred` (other frames are skipped).
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.until(what, pred).await.1
    }

    pub async fn expect_within(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.until_within(what, within, pred).await.1
    }

    /// Asserts that no frame matching `pred` arrives for `dur`. This waits on
    /// purpose (an assertion of absence): keep `dur` short and justified.
    /// Returns the frames that did arrive.
    pub async fn expect_none(
        &mut self,
        what: &str,
        dur: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + dur;
        let mut seen = Vec::new();
        loop {
            match self.next_event(deadline).await {
                Some(Event::Frame(v)) => {
                    if pred(&v) {
                        panic!(
                            "{}: got {what} but expected none within {dur:?}: {v}\n{}",
                            self.name,
                            self.describe(30)
                        );
                    }
                    seen.push(v);
                }
                _ => return seen,
            }
        }
    }

    /// Takes every frame that arrives within `dur` (bounded wait on purpose).
    pub async fn collect_for(&mut self, dur: Duration) -> Vec<Value> {
        self.expect_none("nothing", dur, |_| false).await
    }

    /// Waits for the server to close the connection; returns the close code
    /// (`None` if the socket ended without a close frame). Frames before the
    /// close are skipped.
    pub async fn closed(&mut self) -> Option<u16> {
        self.closed_within(self.timeout).await
    }

    pub async fn closed_within(&mut self, within: Duration) -> Option<u16> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((code, _)) = &self.closed {
                return *code;
            }
            match self.next_event(deadline).await {
                Some(Event::Frame(_)) => {}
                Some(Event::Closed(code, _)) => return code,
                None if self.closed.is_some() => return self.closed.as_ref().unwrap().0,
                _ => panic!(
                    "{}: connection not closed within {within:?}\n{}",
                    self.name,
                    self.describe(30)
                ),
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// How the connection ended (close frame and reason, or the socket error).
    pub fn close_info(&self) -> Option<String> {
        self.closed
            .as_ref()
            .map(|(code, how)| format!("code {code:?}, {how}"))
    }

    /// Sends `req` with a fresh `id` and waits for its `ok`/`error`; returns
    /// the frames that came before the reply, and the reply.
    pub async fn request(&mut self, mut req: Value) -> (Vec<Value>, Value) {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        let what = format!("reply to {req}");
        self.send(req).await;
        self.until(&what, |f| {
            (f["t"] == "ok" || f["t"] == "error") && f["id"] == json!(id)
        })
        .await
    }

    /// `request` that must succeed; returns the frames before the `ok`.
    pub async fn ok(&mut self, req: Value) -> Vec<Value> {
        let shown = req.to_string();
        let (frames, reply) = self.request(req).await;
        assert_eq!(
            reply["t"],
            "ok",
            "{}: request {shown} failed: {reply}\n{}",
            self.name,
            self.describe(20)
        );
        frames
    }

    /// `request` that must fail; returns the `error` frame.
    pub async fn err(&mut self, req: Value) -> Value {
        let shown = req.to_string();
        let (_, reply) = self.request(req).await;
        assert_eq!(
            reply["t"], "error",
            "{}: request {shown} should have failed, got {reply}",
            self.name
        );
        reply
    }

    /// `request` that must fail with `code`; returns the `error` frame.
    pub async fn err_code(&mut self, req: Value, code: &str) -> Value {
        let shown = req.to_string();
        let channel = req["channel"].clone();
        let (frames, reply) = self.request(req).await;
        assert_eq!(
            reply["t"], "error",
            "{}: request {shown} should have failed with {code}, got {reply}",
            self.name
        );
        assert_eq!(
            reply["code"], code,
            "{}: request {shown}: wrong error code in {reply}",
            self.name
        );
        assert!(
            reply["message"].is_string(),
            "{}: error without a string message: {reply}",
            self.name
        );
        // A failed request produces no frames of its own.
        for f in &frames {
            assert!(
                !(f["t"] == "sync" && !channel.is_null() && f["channel"] == channel),
                "{}: failed request {shown} still sent {f}",
                self.name
            );
        }
        reply
    }

    /// A `ping` request used as a barrier: everything the server queued for
    /// this connection before it handled the ping arrives before the reply.
    /// Returns those frames.
    pub async fn barrier(&mut self) -> Vec<Value> {
        self.ok(json!({"t": "ping"})).await
    }

    pub async fn subscribe(&mut self, channel: &str) -> Vec<Value> {
        let frames = self.ok(json!({"t": "subscribe", "channel": channel})).await;
        syncs(&frames, channel)
    }

    /// Subscribes and returns a [`View`] built from the snapshot.
    pub async fn view(&mut self, channel: &str) -> View {
        let frames = self.ok(json!({"t": "subscribe", "channel": channel})).await;
        let mut v = View::new(channel);
        for f in &frames {
            v.apply(f);
        }
        assert!(
            v.complete(),
            "{}: snapshot of {channel} incomplete before ok: {frames:?}",
            self.name
        );
        v
    }

    pub async fn enter(&mut self, channel: &str, data: Value) -> Vec<Value> {
        self.ok(json!({"t": "enter", "channel": channel, "data": data}))
            .await
    }

    pub async fn update(&mut self, channel: &str, data: Value) {
        self.ok(json!({"t": "update", "channel": channel, "data": data}))
            .await;
    }

    pub async fn leave(&mut self, channel: &str) {
        self.ok(json!({"t": "leave", "channel": channel})).await;
    }

    /// Watches users; returns the `presence` frame that came before the `ok`.
    pub async fn watch(&mut self, users: &[&str]) -> Value {
        let frames = self.ok(json!({"t": "watch", "users": users})).await;
        let p: Vec<&Value> = frames.iter().filter(|f| f["t"] == "presence").collect();
        assert_eq!(
            p.len(),
            1,
            "{}: expected one presence frame before the ok of watch, got {frames:?}",
            self.name
        );
        p[0].clone()
    }

    /// Waits for a `presence` frame that reports `user` with `status`.
    pub async fn expect_status(&mut self, user: &str, status: &str) -> Value {
        let what = format!("presence {user} {status}");
        self.expect(&what, |f| {
            f["t"] == "presence" && f["users"][user]["status"] == status
        })
        .await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The `sync` frames for `channel` among `frames`.
pub fn syncs(frames: &[Value], channel: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["t"] == "sync" && f["channel"] == channel)
        .cloned()
        .collect()
}

/// The members of a one-chunk sync, by user.
pub fn members_of(sync: &Value) -> BTreeMap<String, Value> {
    sync["members"]
        .as_array()
        .unwrap_or_else(|| panic!("sync without members array: {sync}"))
        .iter()
        .map(|m| {
            (
                m["user"]
                    .as_str()
                    .unwrap_or_else(|| panic!("member without user: {m}"))
                    .to_owned(),
                m.clone(),
            )
        })
        .collect()
}

/// An event frame (`join`/`update`/`leave`/`diff`) for `channel`.
pub fn is_event(f: &Value, channel: &str) -> bool {
    matches!(f["t"].as_str(), Some("join" | "update" | "leave" | "diff")) && f["channel"] == channel
}

pub fn is_join(f: &Value, channel: &str, user: &str) -> bool {
    f["t"] == "join" && f["channel"] == channel && f["member"]["user"] == user
}

pub fn is_update(f: &Value, channel: &str, user: &str) -> bool {
    f["t"] == "update" && f["channel"] == channel && f["member"]["user"] == user
}

pub fn is_leave(f: &Value, channel: &str, user: &str) -> bool {
    f["t"] == "leave" && f["channel"] == channel && f["user"] == user
}

/// Whether `f` reports any change about `user` in any channel or presence.
pub fn mentions_user(f: &Value, user: &str) -> bool {
    match f["t"].as_str() {
        Some("join" | "update") => f["member"]["user"] == user,
        Some("leave") => f["user"] == user,
        Some("diff") => {
            let has = |k: &str, by_obj: bool| {
                f[k].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|m| if by_obj { m["user"] == user } else { m == user })
                })
            };
            has("joins", true) || has("updates", true) || has("leaves", false)
        }
        Some("presence") => f["users"].get(user).is_some(),
        _ => false,
    }
}

/// A subscriber's picture of one channel, built from the frames it receives.
#[derive(Debug, Clone)]
pub struct View {
    pub channel: String,
    pub seq: Option<u64>,
    pub members: BTreeMap<String, Value>,
    /// A snapshot is being received (a chunk with `more: true` came last).
    in_snapshot: bool,
    pub snapshot_chunks: Vec<usize>,
    /// Event frames (`join`/`update`/`leave`/`diff`) applied.
    pub events: usize,
}

impl View {
    pub fn new(channel: &str) -> View {
        View {
            channel: channel.to_owned(),
            seq: None,
            members: BTreeMap::new(),
            in_snapshot: false,
            snapshot_chunks: Vec::new(),
            events: 0,
        }
    }

    /// A whole snapshot has been received.
    pub fn complete(&self) -> bool {
        self.seq.is_some() && !self.in_snapshot
    }

    /// Applies `f` if it is about this channel; returns whether it was.
    /// Panics on a `seq` gap.
    pub fn apply(&mut self, f: &Value) -> bool {
        if f["channel"] != self.channel.as_str() {
            return false;
        }
        let t = f["t"].as_str().unwrap_or("");
        let seq = || {
            f["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("frame without integer seq: {f}"))
        };
        let user_of = |m: &Value| {
            m["user"]
                .as_str()
                .unwrap_or_else(|| panic!("member without user in {f}"))
                .to_owned()
        };
        match t {
            "sync" => {
                let s = seq();
                if self.in_snapshot {
                    assert_eq!(
                        Some(s),
                        self.seq,
                        "sync chunks of one snapshot must share seq: {f}"
                    );
                } else {
                    self.members.clear();
                    self.snapshot_chunks.clear();
                    self.seq = Some(s);
                }
                let ms = f["members"]
                    .as_array()
                    .unwrap_or_else(|| panic!("sync without members: {f}"));
                self.snapshot_chunks.push(ms.len());
                for m in ms {
                    self.members.insert(user_of(m), m.clone());
                }
                self.in_snapshot = f["more"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("sync without bool more: {f}"));
            }
            "join" | "update" | "leave" | "diff" => {
                let s = seq();
                let last = self
                    .seq
                    .unwrap_or_else(|| panic!("{t} before any sync: {f}"));
                assert!(
                    !self.in_snapshot,
                    "{t} in the middle of a chunked snapshot: {f}"
                );
                assert_eq!(
                    s,
                    last + 1,
                    "seq gap in {}: had {last}, got {f}",
                    self.channel
                );
                self.seq = Some(s);
                self.events += 1;
                match t {
                    "join" | "update" => {
                        self.members
                            .insert(user_of(&f["member"]), f["member"].clone());
                    }
                    "leave" => {
                        self.members.remove(
                            f["user"]
                                .as_str()
                                .unwrap_or_else(|| panic!("leave without user: {f}")),
                        );
                    }
                    _ => {
                        for m in f["joins"].as_array().into_iter().flatten() {
                            self.members.insert(user_of(m), m.clone());
                        }
                        for m in f["updates"].as_array().into_iter().flatten() {
                            self.members.insert(user_of(m), m.clone());
                        }
                        for u in f["leaves"].as_array().into_iter().flatten() {
                            self.members.remove(
                                u.as_str()
                                    .unwrap_or_else(|| panic!("leaves entry not a string: {f}")),
                            );
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }
}

/// A light connection for load tests: says hello, enters one channel, then
/// reads and discards everything (answering pings) until dropped.
pub struct Drone {
    pub user: String,
    drain: Option<JoinHandle<()>>,
    ws: Option<Ws>,
}

impl Drone {
    /// Connects and completes `hello`.
    pub async fn connect(url: &str, token: &str, user: &str) -> Result<Drone, String> {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| format!("{user}: upgrade failed: {e}"))?;
        let hello = json!({"t": "hello", "token": token}).to_string();
        ws.send(Message::text(hello))
            .await
            .map_err(|e| format!("{user}: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value =
                        serde_json::from_str(t.as_str()).map_err(|e| format!("{user}: {e}"))?;
                    if v["t"] == "welcome" {
                        break;
                    }
                    return Err(format!("{user}: expected welcome, got {v}"));
                }
                Some(Ok(_)) => {}
                other => {
                    return Err(format!(
                        "{user}: connection ended before welcome: {other:?}"
                    ));
                }
            }
        }
        Ok(Drone {
            user: user.to_owned(),
            drain: None,
            ws: Some(ws),
        })
    }

    /// Sends `enter` and waits for its reply, discarding other frames
    /// unparsed; then keeps draining in the background.
    pub async fn enter(&mut self, channel: &str) -> Result<(), String> {
        let mut ws = self.ws.take().expect("drone already entered");
        let req = json!({"t": "enter", "channel": channel, "id": 1, "data": {"n": self.user}})
            .to_string();
        ws.send(Message::text(req))
            .await
            .map_err(|e| format!("{}: {e}", self.user))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    // Snapshots and diffs are big; only small frames can be the reply.
                    if t.len() < 400 && (t.contains("\"ok\"") || t.contains("\"error\"")) {
                        let v: Value =
                            serde_json::from_str(t).map_err(|e| format!("{}: {e}", self.user))?;
                        if v["id"] == 1 {
                            if v["t"] == "ok" {
                                break;
                            }
                            return Err(format!("{}: enter failed: {v}", self.user));
                        }
                    }
                }
                Some(Ok(_)) => {}
                other => {
                    return Err(format!(
                        "{}: connection ended before enter's reply: {other:?}",
                        self.user
                    ));
                }
            }
        }
        self.drain = Some(tokio::spawn(async move {
            while let Some(Ok(_)) = ws.next().await {}
        }));
        Ok(())
    }
}

impl Drop for Drone {
    fn drop(&mut self) {
        if let Some(h) = &self.drain {
            h.abort();
        }
    }
}

/// Connects `users` as drones, `concurrency` at a time.
pub async fn connect_drones(server: &Server, users: &[String], concurrency: usize) -> Vec<Drone> {
    let url = server.ws_url();
    let tasks = futures_util::stream::iter(users.iter().cloned().map(|u| {
        let url = url.clone();
        let token = server.token(&u);
        tokio::spawn(async move { Drone::connect(&url, &token, &u).await })
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<_>>()
    .await;
    tasks
        .into_iter()
        .map(|r| {
            r.expect("drone task")
                .unwrap_or_else(|e| panic!("drone connect: {e}"))
        })
        .collect()
}

/// Makes every drone enter `channel`, `concurrency` at a time.
pub async fn enter_drones(drones: Vec<Drone>, channel: &str, concurrency: usize) -> Vec<Drone> {
    let tasks = futures_util::stream::iter(drones.into_iter().map(|mut d| {
        let ch = channel.to_owned();
        tokio::spawn(async move { d.enter(&ch).await.map(|()| d) })
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<_>>()
    .await;
    tasks
        .into_iter()
        .map(|r| {
            r.expect("drone task")
                .unwrap_or_else(|e| panic!("drone enter: {e}"))
        })
        .collect()
}

/// Polls `f` until it returns `Some`, up to `within`. For state the server
/// exposes only on request (for example a fresh snapshot), not for frames.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Server {
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
