//! A shutdown (SIGTERM) finishes within its bounded time whatever clients
//! or the log pipe do: a client holding a half-sent request does not hold
//! it, and neither does a log pipe whose reader has gone.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_hold_the_shutdown() {
    let mut s = Server::start(Opts::new().config("shutdown_timeout_ms = 1500\n")).await;
    let mut alice = s.user("alice").await;
    alice.enter("room:1", json!({})).await;
    // Headers without the blank line that ends them, held open.
    let mut held = TcpStream::connect(s.addr).await.unwrap();
    held.write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Let the server read them before the signal.
    s.user("bob").await.barrier().await;

    let t0 = Instant::now();
    s.sigterm();
    assert_eq!(alice.closed().await, Some(1001));
    let status = s.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}\n{}", s.output());
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(
        s.data_dir().join("sessions.json").exists(),
        "a clean shutdown keeps the sessions"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_log_reader_does_not_stop_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let RawServer {
        mut child,
        addr,
        stdout,
    } = spawn_raw(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "d",
            "--jwt-secret",
            "s",
            "--api-key",
            "k",
        ],
    )
    .await;
    // The reader goes away: every later log line meets a broken pipe.
    drop(stdout);
    drop(child.stderr.take());
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert!(health.status().is_success());

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("presenced exits within 15 s of SIGTERM with its log pipe gone")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
