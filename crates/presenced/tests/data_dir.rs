//! What an operator meets at start: the data directory belongs to one
//! server (a second `serve` on it exits with a clear message and changes
//! nothing for the first one's users); `presenced token` signs with the
//! secret a server keeps there, never with one it invents; a taken address
//! is named; `--dev-tokens` is warned about; `hello` counts as a frame in;
//! logs written to a pipe or a file carry no ANSI colours.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

/// Runs `presenced <args>` in `dir`; it must exit within 30 s.
fn run(dir: &Path, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(args)
        .current_dir(dir)
        .env_remove("PRESENCED_CONFIG")
        .env_remove("PRESENCED_JWT_SECRET")
        .env_remove("PRESENCED_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn presenced");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.expect("wait for presenced"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("presenced {args:?} did not exit within 30 s");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_exits_and_changes_nothing() {
    let s = Server::start(Opts::new().grace(200)).await;
    let mut alice = s.user("alice").await;
    alice.enter("room:1", json!({})).await;

    let data = s.data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--jwt-secret",
            &s.secret,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second server ran: {stderr}");
    assert!(
        stderr.contains("in use by another presenced") && stderr.contains("--data-dir"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("process {}", s.pid())),
        "names the holder: {stderr}"
    );

    // The first server's user is still online, seen from a new client, and
    // stays so well past a grace window.
    let mut bob = s.user("bob").await;
    let p = bob.watch(&["alice"]).await;
    assert_eq!(p["users"]["alice"]["status"], "online", "{p}");
    bob.expect_none("alice going offline", Duration::from_millis(600), |f| {
        mentions_user(f, "alice")
    })
    .await;
    alice.barrier().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_signs_with_the_servers_secret_and_never_invents_one() {
    let empty = tempfile::tempdir().unwrap();
    let out = run(empty.path(), &["token", "--user", "alice"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a token from nowhere: {stderr}");
    assert!(out.stdout.is_empty(), "no token printed");
    assert!(
        stderr.contains("presenced-data/jwt_secret") && stderr.contains("--jwt-secret"),
        "says where it looked and how to pass one: {stderr}"
    );
    assert!(
        !empty.path().join("presenced-data").exists(),
        "nothing written"
    );

    // A server that generated its secret: a token from its data directory
    // is one it accepts.
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_raw(dir.path(), &["--listen", "127.0.0.1:0", "--data-dir", "d"]).await;
    let addr = server.addr.clone();
    let out = run(dir.path(), &["token", "--user", "carol", "--data-dir", "d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let mut carol = Client::open(&format!("ws://{addr}/v1/ws")).await;
    let welcome = carol.hello(Some(token.trim()), None).await;
    assert_eq!(welcome["user"], "carol", "{welcome}");
    server.child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_address_is_named_and_hello_counts_as_a_frame_in() {
    let s = Server::start(Opts::new()).await;
    let tmp = tempfile::tempdir().unwrap();
    let addr = s.addr.to_string();
    let out = run(
        tmp.path(),
        &[
            "serve",
            "--listen",
            &addr,
            "--data-dir",
            "d",
            "--jwt-secret",
            "x",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );

    // One hello, nothing else: one frame in.
    let metrics = || async {
        let body = reqwest::get(format!("http://{}/metrics", s.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix("presenced_frames_in_total "))
            .map(|v| v.trim().parse::<f64>().unwrap())
            .unwrap_or(0.0)
    };
    let before = metrics().await;
    let _alice = s.user("alice").await;
    assert_eq!(metrics().await - before, 1.0, "the hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_tokens_are_warned_about_at_start() {
    let s = Server::start(Opts::new().config("dev_tokens = true\n")).await;
    let out = s.output();
    assert!(
        out.contains("--dev-tokens is on") && out.contains("never in production"),
        "{out}"
    );
    let quiet = Server::start(Opts::new()).await;
    assert!(
        !quiet.output().contains("--dev-tokens"),
        "{}",
        quiet.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_have_no_colours() {
    let s = Server::start(Opts::new().config("dev_tokens = true\n")).await;
    // A warning and info lines were written (to a pipe: not a terminal).
    let out = s.output();
    assert!(out.contains("WARN") && out.contains("INFO"), "{out}");
    assert!(!out.contains('\u{1b}'), "ANSI escapes in {out:?}");
}
