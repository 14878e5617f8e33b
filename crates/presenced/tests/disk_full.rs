//! A full disk against the real binary: the data directory is a 2 MiB tmpfs
//! that a filler file fills. While the store cannot commit, `/readyz` says
//! 503, user reads say 503 `unavailable`, new connections and changes are
//! refused `unavailable`, and what cannot be refused (a socket closing, a
//! grace window ending) is held, not lost: once space returns every webhook
//! event arrives exactly once, in order, and after a `kill -9` the restarted
//! server reads the journal as it should be.
//!
//! Mounting needs root. Not root: the test says loudly that it skipped. Root
//! and the mount fails: the test fails.

mod common;
#[path = "common/webhook_receiver.rs"]
mod webhook_receiver;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use webhook_receiver::*;

const HOOK_SECRET: &str = "disk-full-hook-secret";
const DELIVERY: Duration = Duration::from_secs(30);
const GRACE_MS: u64 = 400;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when not root (the caller skips).
    fn mount(size: &str) -> Option<Tmpfs> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0");
        if !root {
            eprintln!(
                "\n!!!!! SKIPPED disk_full: not root, cannot mount a tmpfs to fill; \
                 run as root to test the full-disk behaviour !!!!!\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "root, yet `mount -t tmpfs` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Tmpfs {
            path: dir.path().to_owned(),
            _dir: dir,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> usize {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 16 * 1024];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
        assert!(written < 64 << 20, "the tmpfs does not fill");
    }
    let _ = f.sync_all();
    written
}

async fn http_get(s: &Server, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("http://{}{path}", s.addr))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn wait_ready(s: &Server, want: u16) {
    wait_for(
        &format!("/readyz {want}"),
        Duration::from_secs(15),
        || async { (http_get(s, "/readyz").await.0 == want).then_some(()) },
    )
    .await;
}

/// The keys of `user`'s events as delivered, in order.
fn delivered(rx: &Receiver, user: &str) -> Vec<String> {
    keys_of(&rx.unique_events(), user)
}

#[tokio::test]
async fn a_full_disk_holds_events_until_space_returns_and_reads_as_not_ready() {
    let Some(tmpfs) = Tmpfs::mount("2m") else {
        return;
    };
    let data = tmpfs.path.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let rx = Receiver::start(HOOK_SECRET).await;
    let mut opts = Opts::new().grace(GRACE_MS).guests().guests_watch();
    opts.extra_args = rx.server_args();
    opts.data_dir = Some(data);
    let mut s = Server::start(opts.clone()).await;

    // Before the disk fills: a is in room:1, b online, both delivered.
    let mut a = s.user("a").await;
    a.enter("room:1", json!({"n": 1})).await;
    let b = s.user("b").await;
    // A guest watcher (it journals nothing) sees a and b go.
    let mut watcher = s.guest().await;
    watcher.watch(&["a", "b"]).await;
    rx.wait_for_keys(
        &["user.online a", "member.joined a room:1", "user.online b"].map(String::from),
        DELIVERY,
    )
    .await;
    assert_eq!(http_get(&s, "/readyz").await.0, 200);

    let filler = tmpfs.path.join("filler");
    let filled = fill(&filler);
    // The liveness beat (each second) finds the disk full.
    wait_ready(&s, 503).await;

    // While full: never ready, user reads refused, nothing new let in.
    let mut ready_polls = 0;
    for _ in 0..10 {
        if http_get(&s, "/readyz").await.0 == 200 {
            ready_polls += 1;
        }
        let (status, body) = http_get(&s, "/v1/users/a").await;
        assert_eq!(status, 503, "GET /v1/users/a while full: {body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready_polls, 0, "/readyz said 200 while the disk was full");
    let e = a
        .err_code(json!({"t": "enter", "channel": "room:2"}), "unavailable")
        .await;
    assert_eq!(e["code"], "unavailable");
    let e = a
        .err_code(json!({"t": "leave", "channel": "room:1"}), "unavailable")
        .await;
    assert_eq!(e["code"], "unavailable");
    let mut c = s.raw_connect().await;
    let token = s.token("c");
    c.send(json!({"t": "hello", "token": token, "id": 1})).await;
    let f = c.next().await;
    assert_eq!(
        (f["t"].as_str(), f["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "a new user's hello while full: {f}"
    );
    assert_eq!(c.closed().await, Some(1013));

    // What cannot be refused is held: a and b go away while the disk is full.
    drop(a);
    drop(b);
    watcher.expect_status("a", "offline").await;
    watcher.expect_status("b", "offline").await;
    assert_eq!(http_get(&s, "/readyz").await.0, 503);
    assert_eq!(http_get(&s, "/v1/users/b").await.0, 503);

    // Space returns: everything held arrives, once, in order.
    std::fs::remove_file(&filler).unwrap();
    wait_ready(&s, 200).await;
    let want_a = [
        "user.online a",
        "member.joined a room:1",
        "member.left a room:1",
        "user.offline a",
    ]
    .map(String::from);
    let want_b = ["user.online b", "user.offline b"].map(String::from);
    rx.wait_for_keys(&[&want_a[..], &want_b[..]].concat(), DELIVERY)
        .await;
    assert_eq!(delivered(&rx, "a"), want_a, "{}", rx.describe());
    assert_eq!(delivered(&rx, "b"), want_b, "{}", rx.describe());
    let (status, body) = http_get(&s, "/v1/users/a").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("offline")));

    // And c comes in now.
    let mut c = s.user("c").await;
    c.enter("room:1", json!({})).await;
    rx.wait_for_keys(
        &["user.online c", "member.joined c room:1"].map(String::from),
        DELIVERY,
    )
    .await;

    // kill -9 and restart: a and b stay offline (no second offline, no
    // grace window), c gets one window and, gone, one leave and one offline.
    s.sigkill();
    drop(c);
    s.restart(opts).await;
    let (status, body) = http_get(&s, "/v1/users/b").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("offline")),
        "{body}"
    );
    assert!(body["last_seen"].is_string(), "{body}");
    rx.wait_for_keys(
        &["member.left c room:1", "user.offline c"].map(String::from),
        DELIVERY,
    )
    .await;
    assert_eq!(delivered(&rx, "a"), want_a, "{}", rx.describe());
    assert_eq!(delivered(&rx, "b"), want_b, "{}", rx.describe());
    assert_eq!(
        delivered(&rx, "c"),
        [
            "user.online c",
            "member.joined c room:1",
            "member.left c room:1",
            "user.offline c"
        ],
        "{}",
        rx.describe()
    );
    for e in rx.unique_events() {
        check_event_shape(&e);
    }
    eprintln!("filled the tmpfs with {filled} bytes; /readyz 200 while full: {ready_polls} of 10");
    drop(s);
    drop(tmpfs);
}
