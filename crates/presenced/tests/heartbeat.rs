//! Connection lifecycle: hello timeout, protocol violations, ping/pong,
//! server heartbeats dropping half-open clients, and shutdown on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hello_in_time_closes_4408() {
    let s = Server::start(Opts::new().hello_timeout(300)).await;
    let mut c = s.raw_connect().await;
    let t0 = Instant::now();
    assert_eq!(c.closed_within(Duration::from_secs(5)).await, Some(4408));
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "closed after {:?}, before the hello timeout",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_frame_not_hello_is_bad_request_then_4400() {
    let s = Server::start(Opts::new()).await;
    let mut c = s.raw_connect().await;
    c.send(json!({"t": "subscribe", "channel": "room:1", "id": 1}))
        .await;
    let e = c.next().await;
    assert_eq!(e["t"], "error", "{e}");
    assert_eq!(e["code"], "bad_request", "{e}");
    assert_eq!(c.closed().await, Some(4400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_by_pong() {
    let s = Server::start(Opts::new()).await;
    let mut c = s.user("alice").await;
    let before = c.ok(json!({"t": "ping"})).await;
    assert_eq!(before, [json!({"t": "pong"})], "pong then ok");
    c.send(json!({"t": "ping"})).await;
    let f = c.next().await;
    assert_eq!(f, json!({"t": "pong"}));
    let rest = c.barrier().await;
    assert_eq!(
        rest,
        [json!({"t": "pong"})],
        "no ok for a ping without id: {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_that_answers_pings_is_kept() {
    let s = Server::start(Opts::new().heartbeat(200).grace(300)).await;
    let mut obs = s.user("obs").await;
    obs.subscribe("room:1").await;
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({})).await;
    obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
        .await;
    // Absence: over five heartbeat intervals neither is dropped (both only
    // answer WebSocket pings, which the reader task does).
    a.collect_for(Duration::from_millis(1000)).await;
    assert!(!a.is_closed(), "a client answering pings was dropped");
    obs.expect_none("leave alice", Duration::from_millis(10), |f| {
        is_leave(f, "room:1", "alice")
    })
    .await;
    a.barrier().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_client_is_dropped_into_grace_then_times_out() {
    let heartbeat = Duration::from_millis(200);
    let grace = Duration::from_millis(400);
    let s = Server::start(Opts::new().heartbeat(200).grace(400)).await;
    let mut obs = s.user("obs").await;
    obs.subscribe("room:1").await;
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({})).await;
    obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
        .await;

    // From now on alice neither reads nor writes; her socket stays open.
    a.stop_reading();
    let t0 = Instant::now();
    obs.timeout = Duration::from_secs(8);
    let l = obs
        .expect("leave alice", |f| is_leave(f, "room:1", "alice"))
        .await;
    assert_eq!(l["reason"], "timeout", "{l}");
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= heartbeat + grace,
        "leave after {elapsed:?}: before two heartbeats plus grace could pass"
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut s = Server::start(Opts::new()).await;
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({})).await;
    let mut g = s.user("bob").await;
    g.watch(&["alice"]).await;
    s.sigterm();
    assert_eq!(a.closed().await, Some(1001));
    assert_eq!(g.closed().await, Some(1001));
    let status = s.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        s.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_code_survives_client_frames_in_flight() {
    // The client pipelines frames before it learns that the first one was
    // refused; the server must still deliver its error and close code.
    let s = Server::start(Opts::new()).await;
    let mut c = s.raw_connect().await;
    let mut batch = vec![json!({"t": "subscribe", "channel": "room:1"}).to_string()];
    batch.extend((0..100).map(|i| json!({"t": "ping", "id": i}).to_string()));
    c.send_batch(&batch).await;
    for i in 0..200 {
        if !c
            .try_send_text(&json!({"t": "ping", "id": 1000 + i}).to_string())
            .await
        {
            break;
        }
    }
    let code = c.closed_within(Duration::from_secs(5)).await;
    assert_eq!(code, Some(4400), "{:?}", c.close_info());
    assert!(
        c.history.iter().any(|f| f["code"] == "bad_request"),
        "{:?}",
        c.history
    );
}
