//! Load-shaped behaviour: chunked snapshots of large channels and coalescing
//! of join/leave bursts. These open thousands of sockets, so they take the
//! heavy lock and run one at a time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_2500_members_arrives_in_three_chunks() {
    let _heavy = heavy_lock().await;
    let s = Server::start(Opts::new().grace(60_000)).await;
    let users: Vec<String> = (0..2500).map(|i| format!("m{i:04}")).collect();
    // Watches the enters arrive, so the test knows when the last coalescing
    // window has been sent (a snapshot is the state as of the last frame).
    let mut pre = s.user("pre").await;
    pre.timeout = Duration::from_secs(30);
    let mut pre_view = pre.view("big:1").await;
    let t0 = Instant::now();
    let drones = connect_drones(&s, &users, 200).await;
    let drones = enter_drones(drones, "big:1", 200).await;
    eprintln!("2500 members entered in {:?}", t0.elapsed());
    while pre_view.members.len() < users.len() {
        let f = pre.expect("the enters", |f| is_event(f, "big:1")).await;
        pre_view.apply(&f);
    }

    let mut obs = s.user("obs").await;
    obs.timeout = Duration::from_secs(30);
    let frames = obs.ok(json!({"t": "subscribe", "channel": "big:1"})).await;
    let chunks = syncs(&frames, "big:1");
    let sizes: Vec<usize> = chunks
        .iter()
        .map(|c| c["members"].as_array().map_or(0, Vec::len))
        .collect();
    let more: Vec<bool> = chunks
        .iter()
        .map(|c| c["more"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(sizes, [1000, 1000, 500], "chunk sizes");
    assert_eq!(more, [true, true, false], "more flags");
    let seqs: Vec<_> = chunks.iter().map(|c| c["seq"].clone()).collect();
    assert!(
        seqs.iter().all(|q| *q == seqs[0] && q.is_u64()),
        "every chunk has the same seq: {seqs:?}"
    );
    let mut view = View::new("big:1");
    for c in &chunks {
        view.apply(c);
    }
    assert_eq!(view.members.len(), 2500, "distinct members across chunks");
    assert!(users.iter().all(|u| view.members.contains_key(u)));
    drop(drones);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_1000_joins_and_leaves_is_coalesced() {
    let _heavy = heavy_lock().await;
    let grace = Duration::from_millis(1500);
    let s = Server::start(Opts::new().coalesce(50).grace(grace.as_millis() as u64)).await;
    let mut obs = s.user("obs").await;
    obs.timeout = Duration::from_secs(30);
    let mut view = obs.view("storm:1").await;

    let users: Vec<String> = (0..1000).map(|i| format!("u{i:04}")).collect();
    let drones = connect_drones(&s, &users, 200).await;
    // All enters fired at once.
    let t0 = Instant::now();
    let drones = enter_drones(drones, "storm:1", users.len()).await;
    eprintln!("1000 enters answered in {:?}", t0.elapsed());

    while view.members.len() < users.len() {
        let f = obs.next().await;
        view.apply(&f);
    }
    let join_frames = view.events;
    eprintln!("observer converged to 1000 members with {join_frames} event frames");
    for u in &users {
        let m = &view.members[u];
        assert_eq!(m["data"], json!({"n": u}), "{m}");
    }
    assert!(
        join_frames < 100,
        "1000 joins sent {join_frames} frames to the observer"
    );

    // Everyone drops at once; after grace the leaves are coalesced too.
    drop(drones);
    while !view.members.is_empty() {
        let f = obs.next().await;
        view.apply(&f);
    }
    let leave_frames = view.events - join_frames;
    eprintln!("observer converged to 0 members with {leave_frames} event frames");
    assert!(
        leave_frames < 100,
        "1000 leaves sent {leave_frames} frames to the observer"
    );
    let leaves_only: Vec<_> = obs.history.iter().filter(|f| f["t"] == "leave").collect();
    assert!(
        leaves_only.iter().all(|f| f["reason"] == "timeout"),
        "{leaves_only:?}"
    );
}
