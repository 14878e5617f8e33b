//! Steps of the wall clock (an operator's `date -s`, NTP correcting a clock
//! that was off) move no deadline: heartbeats, grace windows and webhook
//! batches and retries run on a monotonic clock. The server runs under
//! libfaketime (Debian's `libfaketime`), which fakes the wall clock from a
//! file the test rewrites and leaves the monotonic clock alone.
//!
//! These tests need the library: without it they fail, saying how to
//! install it (`./scripts/test` installs it).

mod common;
#[path = "common/webhook_receiver.rs"]
mod webhook_receiver;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{Value, json};
use webhook_receiver::Receiver;

/// Where Debian installs the library, by architecture.
const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// The wall clock of one server process, set through libfaketime's
/// timestamp file: an offset from the real time (`+0`, `-10m`, `+120s`).
struct FakeClock {
    lib: PathBuf,
    dir: tempfile::TempDir,
    pids: Vec<u32>,
}

impl FakeClock {
    /// A clock `offset` from the real one. Panics when libfaketime is
    /// missing: a test that cannot step the clock must not pass.
    fn new(offset: &str) -> FakeClock {
        let lib = std::env::var_os("PRESENCED_TEST_LIBFAKETIME")
            .map(PathBuf::from)
            .or_else(|| LIBFAKETIME.iter().map(PathBuf::from).find(|p| p.exists()))
            .unwrap_or_else(|| {
                panic!(
                    "libfaketime is not installed (looked for {LIBFAKETIME:?}): \
                     install it with `apt-get install libfaketime` (./scripts/test does), \
                     or name the library in PRESENCED_TEST_LIBFAKETIME"
                )
            });
        assert!(lib.exists(), "{} does not exist", lib.display());
        let clock = FakeClock {
            lib,
            dir: tempfile::tempdir().expect("tempdir"),
            pids: Vec::new(),
        };
        clock.set(offset);
        clock
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("faketime.rc")
    }

    /// `opts` with the environment that preloads the library. The
    /// monotonic clock stays real; the file is read at every call.
    fn opts(&self, opts: Opts) -> Opts {
        opts.env("LD_PRELOAD", &self.lib.display().to_string())
            .env(
                "FAKETIME_TIMESTAMP_FILE",
                &self.file().display().to_string(),
            )
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    }

    /// Sets the wall clock of the server to `offset` from the real time,
    /// at once (the file is replaced whole, never read half-written).
    fn set(&self, offset: &str) {
        let tmp = self.dir.path().join("faketime.rc.tmp");
        std::fs::write(&tmp, format!("{offset}\n")).expect("write the faketime file");
        std::fs::rename(&tmp, self.file()).expect("replace the faketime file");
    }

    /// Remembers a process that uses the library, to remove the shared
    /// memory it leaves in /dev/shm when it is killed.
    fn started(&mut self, s: &Server) {
        self.pids.push(s.pid());
    }
}

impl Drop for FakeClock {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = std::fs::remove_file(format!("/dev/shm/faketime_shm_{pid}"));
            let _ = std::fs::remove_file(format!("/dev/shm/sem.faketime_sem_{pid}"));
        }
    }
}

fn real_now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Whether the server's wall clock is within about 20 s of `offset`
/// seconds from the real one: a token valid only then (`nbf` and `exp`
/// are checked against the wall clock) is let in or refused.
async fn wall_near(s: &Server, offset: i64) -> bool {
    let at = real_now_secs() + offset;
    let token = s.sign(json!({"sub": "clock-probe", "nbf": at - 20, "exp": at + 20}));
    let mut c = s.raw_connect().await;
    c.send(json!({"t": "hello", "token": token})).await;
    c.next().await["t"] == "welcome"
}

/// Waits until the server's wall clock is `offset` seconds from the real
/// one: proof that the step reached it.
async fn expect_wall_offset(s: &Server, offset: i64) {
    wait_for(
        &format!("the server's wall clock {offset:+} s from the real one"),
        WAIT,
        || async { wall_near(s, offset).await.then_some(()) },
    )
    .await
}

/// `GET /v1/users/{user}` with the API key.
async fn user_detail(s: &Server, user: &str) -> Value {
    let res = reqwest::Client::new()
        .get(format!("http://{}/v1/users/{user}", s.addr))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .expect("GET /v1/users");
    assert_eq!(res.status(), 200, "GET /v1/users/{user}");
    res.json().await.expect("JSON")
}

/// Waits until `user`'s last connection is detached (inside its grace
/// window): `last_seen` is "now" while a connection is live and stops
/// moving once none is.
async fn wait_detached(s: &Server, user: &str) {
    let deadline = Instant::now() + WAIT;
    let mut previous = Value::Null;
    loop {
        let d = user_detail(s, user).await;
        assert_eq!(d["status"], "online", "{user} is still inside grace: {d}");
        if d["last_seen"] == previous {
            return;
        }
        previous = d["last_seen"].clone();
        assert!(
            Instant::now() < deadline,
            "{user}'s last_seen still moves after {WAIT:?}: not detached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_status(f: &Value, user: &str, status: &str) -> bool {
    f["t"] == "presence" && f["users"][user]["status"] == status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_back_does_not_stretch_a_grace_window() {
    const GRACE: u64 = 3_000;
    let mut clock = FakeClock::new("+0");
    let s = Server::start(clock.opts(Opts::new().grace(GRACE))).await;
    clock.started(&s);
    let mut obs = s.user("obs").await;
    obs.watch(&["alice"]).await;
    let mut alice = s.user("alice").await;
    obs.expect("alice online", |f| is_status(f, "alice", "online"))
        .await;
    let closed_at = Instant::now();
    let real_ms = webhook_receiver::now_ms() as i64;
    alice.close().await;
    alice.closed().await;
    wait_detached(&s, "alice").await;
    // The wall clock goes back ten minutes inside alice's grace window.
    clock.set("-10m");
    expect_wall_offset(&s, -600).await;
    let offline = obs
        .expect_within(
            "alice offline at the end of her grace window, not ten minutes later",
            Duration::from_millis(GRACE + 5_000),
            |f| is_status(f, "alice", "offline"),
        )
        .await;
    let after = closed_at.elapsed();
    eprintln!("alice offline {after:?} after her close (grace {GRACE} ms)");
    assert!(
        after >= Duration::from_millis(GRACE - 200),
        "alice went offline {after:?} after her close: the grace window ({GRACE} ms) was cut"
    );
    // Times shown follow the server's clock, which did not jump: alice was
    // last seen when she closed, by the real clock, not ten minutes before.
    let last_seen = offline["users"]["alice"]["last_seen"]
        .as_str()
        .map(webhook_receiver::unix_ms)
        .unwrap_or_else(|| panic!("last_seen in {offline}"));
    assert!(
        (last_seen as i64 - real_ms).abs() < 5_000,
        "last_seen {last_seen} is not the real time of the close ({real_ms})"
    );
    // The operator is told.
    wait_for("a warning about the clock step", WAIT * 2, || async {
        s.output().contains("wall clock").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_back_does_not_keep_a_silent_client() {
    const HEARTBEAT: u64 = 300;
    const GRACE: u64 = 500;
    let mut clock = FakeClock::new("+0");
    let s = Server::start(clock.opts(Opts::new().heartbeat(HEARTBEAT).grace(GRACE))).await;
    clock.started(&s);
    let mut obs = s.user("obs").await;
    obs.watch(&["carol"]).await;
    let mut carol = s.user("carol").await;
    obs.expect("carol online", |f| is_status(f, "carol", "online"))
        .await;
    clock.set("-10m");
    expect_wall_offset(&s, -600).await;
    // Carol's host vanishes: her socket stays open but she answers nothing.
    carol.stop_reading();
    let t0 = Instant::now();
    obs.expect_within(
        "carol offline after two heartbeats and grace",
        Duration::from_secs(5),
        |f| is_status(f, "carol", "offline"),
    )
    .await;
    eprintln!("carol offline {:?} after she went silent", t0.elapsed());
    assert!(
        t0.elapsed() < Duration::from_millis(3 * HEARTBEAT + GRACE + 1_500),
        "carol went offline only after {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_forward_drops_nobody() {
    let _heavy = heavy_lock().await;
    const HEARTBEAT: u64 = 500;
    const GRACE: u64 = 4_000;
    let mut clock = FakeClock::new("+0");
    let s = Server::start(clock.opts(Opts::new().heartbeat(HEARTBEAT).grace(GRACE).coalesce(100)))
        .await;
    clock.started(&s);
    let mut obs = s.user("obs").await;
    obs.subscribe("room:1").await;
    obs.watch(&["bob"]).await;
    let bob_token = s.token("bob");
    let mut bob = s.connect(Some(&bob_token)).await;
    bob.name = "bob".into();
    bob.enter("room:1", json!({})).await;
    obs.expect("bob online", |f| is_status(f, "bob", "online"))
        .await;
    let bob_session = bob.session();
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut c = s.user(&format!("u{i}")).await;
        c.enter("room:1", json!({"n": 0})).await;
        clients.push(c);
    }
    // Each client talks every 200 ms (a ping and an update of its data,
    // which keeps the channel's coalescing windows, and so the engine's
    // timers, busy), bounded: 25 rounds, 5 s.
    let talkers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for n in 0..25 {
                    if c.is_closed() {
                        break;
                    }
                    c.send(json!({"t": "ping"})).await;
                    c.send(json!({"t": "update", "channel": "room:1", "data": {"n": n}}))
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                c
            })
        })
        .collect();
    // Bob's connection drops; the wall clock jumps two minutes ahead inside
    // his grace window, which must not end early.
    bob.stop_reading();
    drop(bob);
    wait_detached(&s, "bob").await;
    let t0 = Instant::now();
    clock.set("+120s");
    expect_wall_offset(&s, 120).await;
    obs.expect_none(
        "bob offline before his grace window ended",
        Duration::from_millis(1_500),
        |f| is_status(f, "bob", "offline") || is_leave(f, "room:1", "bob"),
    )
    .await;
    // He comes back in time and gets his session back.
    assert!(
        t0.elapsed() < Duration::from_millis(GRACE - 500),
        "too slow to check"
    );
    let mut bob = s.connect_resume(Some(&bob_token), Some(&bob_session)).await;
    bob.name = "bob".into();
    assert_eq!(
        bob.welcome["resumed"], true,
        "bob's session ended early: {}",
        bob.welcome
    );
    let mut kept = Vec::new();
    for t in talkers {
        let c = t.await.unwrap();
        assert!(
            !c.is_closed(),
            "{} was dropped: {:?}",
            c.name,
            c.close_info()
        );
        kept.push(c);
    }
    obs.expect_none("a leave or an offline", Duration::from_millis(500), |f| {
        f["t"] == "leave" || is_status(f, "bob", "offline")
    })
    .await;
    assert!(!obs.is_closed(), "obs was dropped: {:?}", obs.close_info());
    obs.barrier().await;
    bob.barrier().await;
    drop(kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_follows_the_wall_clock() {
    const HEARTBEAT: u64 = 300;
    let mut clock = FakeClock::new("+0");
    let s = Server::start(clock.opts(Opts::new().heartbeat(HEARTBEAT))).await;
    clock.started(&s);
    let token = s.sign(json!({"sub": "dora", "exp": now_secs() + 60}));
    let mut dora = s.connect(Some(&token)).await;
    dora.name = "dora".into();
    let mut long = s.user("long").await;
    // Two minutes later by the wall clock, which is what `exp` is checked
    // against (as at `hello`): dora's token has expired, the other has not.
    clock.set("+120s");
    expect_wall_offset(&s, 120).await;
    assert_eq!(
        dora.closed_within(Duration::from_secs(5)).await,
        Some(4401),
        "dora's expired token"
    );
    long.ok(json!({"t": "ping"})).await;
    assert!(!long.is_closed(), "{:?}", long.close_info());
}

const HOOK_SECRET: &str = "hook-secret-for-clock-tests";

fn hook_opts(clock: &FakeClock, rx: &Receiver) -> Opts {
    let mut opts = Opts::new();
    opts.extra_args = rx.server_args();
    clock.opts(opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_back_does_not_hold_webhooks() {
    let rx = Receiver::start(HOOK_SECRET).await;
    // The server's clock is ten minutes fast, then corrected: a step back.
    // The receiver checks signatures against the real clock, which the
    // corrected one agrees with.
    let mut clock = FakeClock::new("+10m");
    let s = Server::start(hook_opts(&clock, &rx)).await;
    clock.started(&s);
    // The first attempt fails: the batch is retried after a backoff.
    rx.fail_next(1);
    let _eve = s.user("eve").await;
    // Inside the batch window of eve's user.online (250 ms from when she
    // came online).
    clock.set("+0");
    let t0 = Instant::now();
    expect_wall_offset(&s, 0).await;
    rx.wait_for(
        "user.online eve, delivered after one failure",
        Duration::from_secs(10),
        |r| {
            r.accepted()
                .iter()
                .any(|q| q.events.iter().any(|e| e["user"] == "eve"))
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "eve's user.online delivered {:?} after the step",
        t0.elapsed()
    );
    assert!(
        rx.requests().iter().any(|q| q.status == 500),
        "the first attempt was not refused:\n{}",
        rx.describe()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "delivered after {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_step_back_sends_the_held_webhooks() {
    let mut rx = Receiver::down_from_start(HOOK_SECRET).await;
    // The first run's clock is an hour fast; its webhook events cannot go
    // out (the receiver is down) and stay in the outbox with its times.
    let mut clock = FakeClock::new("+1h");
    let mut s = Server::start(hook_opts(&clock, &rx)).await;
    clock.started(&s);
    let token = s.sign(json!({"sub": "eve", "exp": now_secs() + 3 * 3600}));
    let mut eve = s.connect(Some(&token)).await;
    eve.ok(json!({"t": "bye"})).await;
    s.sigterm();
    let status = s.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
    // The clock is corrected while the server is down: an hour back.
    clock.set("+0");
    rx.up().await;
    s.restart(hook_opts(&clock, &rx)).await;
    clock.started(&s);
    let t0 = Instant::now();
    rx.wait_for_keys(
        &["user.online eve".into(), "user.offline eve".into()],
        Duration::from_secs(10),
    )
    .await;
    eprintln!(
        "held webhooks delivered {:?} after the restart",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "delivered {:?} after the restart",
        t0.elapsed()
    );
}
