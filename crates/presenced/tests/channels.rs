//! Channels: snapshots, join/update/leave events, `seq`, occupancy, the
//! trusted `info` claim and `publish`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn assert_member_shape(m: &Value) {
    assert!(m["user"].is_string(), "member.user: {m}");
    assert!(m["data"].is_object(), "member.data: {m}");
    assert!(
        m["conns"].as_u64().is_some_and(|c| c >= 1),
        "member.conns: {m}"
    );
    let since = m["since"]
        .as_str()
        .unwrap_or_else(|| panic!("member.since: {m}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(since).is_ok(),
        "member.since is not RFC 3339: {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_sends_sync_before_ok() {
    let s = Server::start(Opts::new()).await;
    let mut obs = s.user("obs").await;
    let frames = obs.ok(json!({"t": "subscribe", "channel": "room:1"})).await;
    assert_eq!(frames.len(), 1, "one sync before the ok: {frames:?}");
    let sync = &frames[0];
    assert_eq!(sync["t"], "sync", "{sync}");
    assert_eq!(sync["channel"], "room:1", "{sync}");
    assert!(sync["seq"].is_u64(), "{sync}");
    assert_eq!(sync["members"], json!([]), "{sync}");
    assert_eq!(sync["more"], false, "{sync}");

    let mut a = s.user("alice").await;
    let frames = a.enter("room:1", json!({"name": "Alice"})).await;
    assert!(
        frames
            .iter()
            .any(|f| f["t"] == "sync" && f["channel"] == "room:1"),
        "enter implies subscribe: sync before ok: {frames:?}"
    );

    let mut b = s.user("bob").await;
    let syncs = b.subscribe("room:1").await;
    assert_eq!(syncs.len(), 1, "{syncs:?}");
    assert_eq!(syncs[0]["more"], false);
    let members = members_of(&syncs[0]);
    let alice = &members["alice"];
    assert_member_shape(alice);
    assert_eq!(alice["data"], json!({"name": "Alice"}), "{alice}");
    assert_eq!(alice["conns"], 1, "{alice}");

    // Subscribing again sends a fresh snapshot (the gap-recovery path).
    let again = b.subscribe("room:1").await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(members_of(&again[0]).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_sends_join_to_other_subscribers() {
    let s = Server::start(Opts::new()).await;
    let mut obs = s.user("obs").await;
    let view = obs.view("room:1").await;
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({"name": "Alice"})).await;
    let j = obs
        .expect("join alice", |f| is_join(f, "room:1", "alice"))
        .await;
    assert_eq!(
        j["seq"].as_u64(),
        Some(view.seq.unwrap() + 1),
        "first event is snapshot seq + 1: {j}"
    );
    assert_member_shape(&j["member"]);
    assert_eq!(j["member"]["data"], json!({"name": "Alice"}), "{j}");
    assert_eq!(j["member"]["conns"], 1, "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_sends_update_event() {
    let s = Server::start(Opts::new()).await;
    let mut obs = s.user("obs").await;
    let mut view = obs.view("room:1").await;
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({"v": 1})).await;
    view.apply(
        &obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
            .await,
    );
    a.update("room:1", json!({"v": 2, "mood": "happy"})).await;
    let u = obs
        .expect("update alice", |f| is_update(f, "room:1", "alice"))
        .await;
    view.apply(&u);
    assert_member_shape(&u["member"]);
    assert_eq!(
        u["member"]["data"],
        json!({"v": 2, "mood": "happy"}),
        "update replaces the data: {u}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_with_equal_data_sends_nothing() {
    let s = Server::start(Opts::new()).await;
    let mut obs = s.user("obs").await;
    let mut view = obs.view("room:1").await;
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({"v": 1, "o": {"a": 1, "b": 2}}))
        .await;
    view.apply(
        &obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
            .await,
    );
    let seq_after_join = view.seq.unwrap();

    // Same data (key order differs: still equal JSON).
    a.update("room:1", json!({"o": {"b": 2, "a": 1}, "v": 1}))
        .await;
    // Then a real change: it must be the very next event, with seq + 1.
    a.update("room:1", json!({"v": 2})).await;
    let (skipped, u) = obs
        .until("update alice v2", |f| is_update(f, "room:1", "alice"))
        .await;
    for f in &skipped {
        assert!(!is_event(f, "room:1"), "equal data produced an event: {f}");
    }
    assert_eq!(
        u["member"]["data"],
        json!({"v": 2}),
        "the first update event is the real change: {u}"
    );
    assert_eq!(u["seq"].as_u64(), Some(seq_after_join + 1), "{u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_sends_leave_left_and_stays_subscribed() {
    let s = Server::start(Opts::new().grace(10_000)).await;
    let mut obs = s.user("obs").await;
    obs.view("room:1").await;
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({})).await;
    obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
        .await;
    let t0 = Instant::now();
    a.leave("room:1").await;
    let l = obs
        .expect("leave alice", |f| is_leave(f, "room:1", "alice"))
        .await;
    assert_eq!(l["reason"], "left", "{l}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "leave is immediate, no grace"
    );

    // Still subscribed: bob's join reaches alice.
    let mut b = s.user("bob").await;
    b.enter("room:1", json!({})).await;
    a.expect("join bob", |f| is_join(f, "room:1", "bob")).await;
    // And leaving again is not_member.
    a.err_code(json!({"t": "leave", "channel": "room:1"}), "not_member")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_while_entered_leaves_the_channel() {
    let s = Server::start(Opts::new().grace(10_000)).await;
    let mut obs = s.user("obs").await;
    obs.view("room:1").await;
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({})).await;
    obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
        .await;
    a.ok(json!({"t": "unsubscribe", "channel": "room:1"})).await;
    let l = obs
        .expect("leave alice", |f| is_leave(f, "room:1", "alice"))
        .await;
    assert_eq!(l["reason"], "left", "{l}");

    // No longer subscribed: bob's join does not reach alice.
    let mut b = s.user("bob").await;
    b.enter("room:1", json!({})).await;
    obs.expect("join bob", |f| is_join(f, "room:1", "bob"))
        .await;
    let frames = a.barrier().await;
    assert!(
        frames.iter().all(|f| f["channel"] != "room:1"),
        "unsubscribed but got {frames:?}"
    );
    // Unsubscribing again is a no-op ok.
    a.ok(json!({"t": "unsubscribe", "channel": "room:1"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_increases_by_one_per_event_for_every_subscriber() {
    let s = Server::start(Opts::new().grace(10_000)).await;
    let mut o1 = s.user("o1").await;
    let mut o2 = s.user("o2").await;
    let mut v1 = o1.view("room:q").await;
    let mut v2 = o2.view("room:q").await;
    assert_eq!(
        v1.seq, v2.seq,
        "same channel, same seq for every subscriber"
    );

    let mut a = s.user("alice").await;
    let mut b = s.user("bob").await;
    let mut c = s.user("carol").await;
    a.enter("room:q", json!({"n": 1})).await;
    b.enter("room:q", json!({"n": 1})).await;
    a.update("room:q", json!({"n": 2})).await;
    b.leave("room:q").await;
    a.ok(json!({"t": "unsubscribe", "channel": "room:q"})).await;
    c.enter("room:q", json!({"n": 3})).await;

    let target: BTreeSet<String> = ["carol".to_owned()].into();
    for (o, v) in [(&mut o1, &mut v1), (&mut o2, &mut v2)] {
        let mut seqs = Vec::new();
        while v.members.keys().cloned().collect::<BTreeSet<_>>() != target {
            let f = o.next().await;
            if v.apply(&f) && is_event(&f, "room:q") {
                seqs.push(f["seq"].as_u64().unwrap());
            }
        }
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{}: {seqs:?}",
            o.name
        );
        assert_eq!(v.members["carol"]["data"], json!({"n": 3}));
    }
    assert_eq!(v1.seq, v2.seq, "both subscribers end at the same seq");
    assert_eq!(v1.events, v2.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occupancy_follows_sync_when_asked_and_changes_are_throttled() {
    let interval = Duration::from_millis(300);
    let s = Server::start(
        Opts::new()
            .occupancy_interval(interval.as_millis() as u64)
            .grace(10_000),
    )
    .await;
    let mut obs = s.user("obs").await;
    let frames = obs
        .ok(json!({"t": "subscribe", "channel": "room:o", "occupancy": true}))
        .await;
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| f["t"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        kinds,
        ["sync", "occupancy"],
        "occupancy right after the sync, before the ok: {frames:?}"
    );
    assert_eq!(
        frames[1],
        json!({"t": "occupancy", "channel": "room:o", "members": 0, "connections": 0})
    );

    let mut plain = s.user("plain").await;
    plain.subscribe("room:o").await;

    let token = s.token("alice");
    let mut t1 = s.connect(Some(&token)).await;
    let mut t2 = s.connect(Some(&token)).await;
    t1.enter("room:o", json!({})).await;
    obs.expect("occupancy 1/1", |f| {
        f["t"] == "occupancy" && f["members"] == 1 && f["connections"] == 1
    })
    .await;
    // A second tab: the member's connection count changes, sent as an
    // update (docs/protocol.md §1); no join.
    t2.ok(json!({"t": "enter", "channel": "room:o"})).await;
    let (skipped, _) = obs
        .until("occupancy 1/2", |f| {
            f["t"] == "occupancy" && f["members"] == 1 && f["connections"] == 2
        })
        .await;
    let about_alice: Vec<&Value> = skipped
        .iter()
        .filter(|f| mentions_user(f, "alice"))
        .collect();
    assert_eq!(about_alice.len(), 1, "one update, sent first: {skipped:?}");
    assert_eq!(about_alice[0]["t"], "update", "{skipped:?}");
    assert_eq!(about_alice[0]["member"]["conns"], 2, "{skipped:?}");

    // A burst of six entries: few occupancy frames. How they are spaced is
    // checked with a fake clock in the engine's tests; over a real socket on
    // a loaded machine only their number relative to the time taken is
    // reliable (at most one per interval, plus the leading one).
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(s.user(&format!("u{i}")).await);
    }
    let started = Instant::now();
    for u in &mut users {
        u.enter("room:o", json!({})).await;
    }
    let mut frames = 0u32;
    loop {
        let f = obs.expect("occupancy", |f| f["t"] == "occupancy").await;
        frames += 1;
        if f["members"] == 7 && f["connections"] == 8 {
            break;
        }
    }
    let allowed = (started.elapsed().as_millis() / interval.as_millis()) as u32 + 2;
    assert!(
        frames <= allowed.min(6),
        "burst of 6 changes sent {frames} occupancy frames in {:?} (interval {interval:?})",
        started.elapsed()
    );

    // A subscriber that did not ask never gets occupancy.
    plain.barrier().await;
    assert!(
        plain.history.iter().all(|f| f["t"] != "occupancy"),
        "occupancy sent to a subscriber that did not ask: {:?}",
        plain.history
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_claim_lands_in_data_info_and_cannot_be_forged() {
    let s = Server::start(Opts::new()).await;
    let mut obs = s.user("obs").await;
    obs.view("room:i").await;

    let mut a = s
        .connect(Some(
            &s.token_info("alice", json!({"name": "Alice", "role": "admin"})),
        ))
        .await;
    a.enter(
        "room:i",
        json!({"x": 1, "info": {"name": "Mallory", "role": "root"}}),
    )
    .await;
    let j = obs
        .expect("join alice", |f| is_join(f, "room:i", "alice"))
        .await;
    assert_eq!(
        j["member"]["data"],
        json!({"x": 1, "info": {"name": "Alice", "role": "admin"}}),
        "{j}"
    );

    a.update("room:i", json!({"x": 2, "info": "forged"})).await;
    let u = obs
        .expect("update alice", |f| is_update(f, "room:i", "alice"))
        .await;
    assert_eq!(
        u["member"]["data"],
        json!({"x": 2, "info": {"name": "Alice", "role": "admin"}}),
        "{u}"
    );

    // Without an info claim a client-sent info is removed.
    let mut b = s.user("bob").await;
    b.enter("room:i", json!({"y": 1, "info": {"name": "Bob the admin"}}))
        .await;
    let j = obs
        .expect("join bob", |f| is_join(f, "room:i", "bob"))
        .await;
    assert_eq!(j["member"]["data"], json!({"y": 1}), "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_other_subscribers_not_the_sender() {
    let s = Server::start(Opts::new()).await;
    let mut a = s.user("alice").await;
    let mut b = s.user("bob").await;
    let mut c = s.user("carol").await;
    a.subscribe("room:p").await;
    b.subscribe("room:p").await;

    a.ok(json!({"t": "publish", "channel": "room:p", "data": {"hi": 1}}))
        .await;
    let m = b.expect("message", |f| f["t"] == "message").await;
    assert_eq!(
        m,
        json!({"t": "message", "channel": "room:p", "from": "alice", "data": {"hi": 1}})
    );

    let own = a.barrier().await;
    assert!(
        own.iter().all(|f| f["t"] != "message"),
        "the sender got its own message: {own:?}"
    );
    let other = c.barrier().await;
    assert!(
        other.iter().all(|f| f["t"] != "message"),
        "a non-subscriber got the message: {other:?}"
    );

    // Any JSON value; a channel with no subscribers is fine.
    a.ok(json!({"t": "publish", "channel": "room:p", "data": [1, "two"]}))
        .await;
    let m = b.expect("message 2", |f| f["t"] == "message").await;
    assert_eq!(m["data"], json!([1, "two"]));
    a.ok(json!({"t": "publish", "channel": "room:empty", "data": 1}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_forbidden_where_the_rule_says_so() {
    let s = Server::start(Opts::new().config(RULES_TOML)).await;
    let mut a = s.user("alice").await;
    let mut b = s.user("bob").await;
    a.subscribe("lobby:1").await;
    b.subscribe("lobby:1").await;
    b.subscribe("room:1").await;
    a.subscribe("room:1").await;

    a.err_code(
        json!({"t": "publish", "channel": "lobby:1", "data": {"x": 1}}),
        "forbidden",
    )
    .await;
    // Same sender, later publish elsewhere: bob's first message must be that one.
    a.ok(json!({"t": "publish", "channel": "room:1", "data": {"y": 1}}))
        .await;
    let m = b.expect("message", |f| f["t"] == "message").await;
    assert_eq!(
        m["channel"], "room:1",
        "the forbidden publish was delivered: {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_then_leave_inside_the_coalesce_window_sends_nothing() {
    // A budget of one immediate frame: the first change goes out at once
    // and turns the channel busy.
    let mut opts = Opts::new().coalesce(400).grace(10_000);
    opts.extra_args = vec!["--coalesce-burst".into(), "1".into()];
    let s = Server::start(opts).await;
    let mut obs = s.user("obs").await;
    let mut view = obs.view("room:c").await;
    let mut b = s.user("bob").await;
    let mut a = s.user("alice").await;
    // Bob's join opens a window (sent at once); alice's join and leave fall
    // inside it and cancel out.
    b.enter("room:c", json!({})).await;
    a.enter("room:c", json!({})).await;
    a.leave("room:c").await;
    let t0 = Instant::now();
    let first = obs.expect("event", |f| is_event(f, "room:c")).await;
    assert!(
        is_join(&first, "room:c", "bob"),
        "the first change is sent at once as a join: {first}"
    );
    view.apply(&first);
    // Absence: two windows long.
    let seen = obs
        .expect_none("any event about alice", Duration::from_millis(800), |f| {
            mentions_user(f, "alice")
        })
        .await;
    for f in &seen {
        view.apply(f);
    }
    assert!(t0.elapsed() >= Duration::from_millis(800));
    assert_eq!(view.members.keys().collect::<Vec<_>>(), ["bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_channel_disappears_and_its_seq_restarts() {
    let s = Server::start(Opts::new().grace(10_000)).await;
    let mut a = s.user("alice").await;
    let frames = a.enter("room:e", json!({})).await;
    let first = syncs(&frames, "room:e");
    assert_eq!(
        first[0]["seq"], 0,
        "a new channel starts at seq 0: {first:?}"
    );
    let mut b = s.user("bob").await;
    b.enter("room:e", json!({})).await;
    a.expect("join bob", |f| is_join(f, "room:e", "bob")).await;
    b.ok(json!({"t": "unsubscribe", "channel": "room:e"})).await;
    a.ok(json!({"t": "unsubscribe", "channel": "room:e"})).await;
    // No members, no subscribers: gone. It comes back at seq 0.
    let again = b.subscribe("room:e").await;
    assert_eq!(again[0]["seq"], 0, "{again:?}");
    assert_eq!(again[0]["members"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entering_again_with_the_same_data_changes_nothing_but_sends_a_sync() {
    let s = Server::start(Opts::new()).await;
    let mut obs = s.user("obs").await;
    let mut view = obs.view("room:1").await;
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({"v": 1})).await;
    view.apply(
        &obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
            .await,
    );
    let frames = a.enter("room:1", json!({"v": 1})).await;
    assert_eq!(
        syncs(&frames, "room:1").len(),
        1,
        "a fresh sync on re-enter: {frames:?}"
    );
    a.ok(json!({"t": "enter", "channel": "room:1"})).await;
    a.enter("room:1", json!({"v": 2})).await;
    let f = obs.expect("event", |f| is_event(f, "room:1")).await;
    assert!(
        is_update(&f, "room:1", "alice") && f["member"]["data"] == json!({"v": 2}),
        "{f}"
    );
    view.apply(&f);
}

/// Extension: `enter{subscribe: false}` makes a member that is not a
/// subscriber (docs/protocol.md, "Extensions").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_without_subscribe_is_a_member_that_receives_nothing() {
    let s = Server::start(Opts::new().grace(10_000)).await;
    let mut a = s.user("alice").await;
    a.view("room:1").await;
    let mut b = s.user("bob").await;

    // A flag that is not a boolean is refused and changes nothing.
    b.err_code(
        json!({"t": "enter", "channel": "room:1", "data": {"n": 0}, "subscribe": "no"}),
        "bad_request",
    )
    .await;

    let (frames, reply) = b
        .request(
            json!({"t": "enter", "channel": "room:1", "data": {"n": "Bob"}, "subscribe": false}),
        )
        .await;
    assert_eq!(reply["t"], "ok", "{reply}");
    assert!(frames.is_empty(), "only the ok, no sync: {frames:?}");
    let (skipped, j) = a.until("join bob", |f| is_join(f, "room:1", "bob")).await;
    assert_eq!(j["member"]["data"], json!({"n": "Bob"}), "{j}");
    assert!(
        skipped.iter().all(|f| !is_event(f, "room:1")),
        "the refused enter produced {skipped:?}"
    );

    // Another member's join reaches alice, and nothing of room:1 reaches bob:
    // whatever the server queued for bob before his ping arrives before the
    // pong.
    let mut c = s.user("carol").await;
    c.enter("room:1", json!({})).await;
    a.expect("join carol", |f| is_join(f, "room:1", "carol"))
        .await;
    let fenced = b.barrier().await;
    assert_eq!(
        fenced,
        vec![json!({"t": "pong"})],
        "bob entered without subscribing but got frames"
    );

    // Bob's leave is an ordinary leave for alice.
    b.leave("room:1").await;
    let l = a
        .expect("leave bob", |f| is_leave(f, "room:1", "bob"))
        .await;
    assert_eq!(l["reason"], "left", "{l}");
    let fenced = b.barrier().await;
    assert_eq!(fenced, vec![json!({"t": "pong"})]);
}
