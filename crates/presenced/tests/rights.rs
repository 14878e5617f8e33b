//! Rights rechecked (PROTOCOL.md §4, §6): a `refresh` or a `resume` with a
//! narrower token, and a resume after a restart with other channel rules,
//! end what is no longer allowed (`unsubscribed` to the connection, a leave
//! to the others, nothing of that channel afterwards); a new `info` reaches
//! every channel the user is in.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn token_for(s: &Server, user: &str, channels: &[&str]) -> String {
    s.sign(json!({"sub": user, "exp": now_secs() + 3600, "channels": channels}))
}

fn unsubscribed(channel: &str) -> Value {
    json!({"t": "unsubscribed", "channel": channel, "reason": "forbidden"})
}

/// `user` left `channel`: a `leave` (with reason `left`) or a `diff` that
/// lists the user among its leaves.
fn left(f: &Value, channel: &str, user: &str) -> bool {
    if f["channel"] != channel {
        return false;
    }
    match f["t"].as_str() {
        Some("leave") => f["user"] == user && f["reason"] == "left",
        Some("diff") => f["leaves"]
            .as_array()
            .is_some_and(|l| l.contains(&json!(user))),
        _ => false,
    }
}

/// The frames before a barrier's `pong`.
fn before_pong(frames: Vec<Value>) -> Vec<Value> {
    frames.into_iter().filter(|f| f["t"] != "pong").collect()
}

fn on(frames: &[Value], channel: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["channel"] == channel)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrower_refresh_unsubscribes_and_the_others_see_a_leave() {
    let s = Server::start(Opts::new()).await;
    let mut bob = s.user("bob").await;
    bob.subscribe("secret:1").await;
    let mut alice = s
        .connect(Some(&token_for(&s, "alice", &["secret:*", "public:*"])))
        .await;
    alice.name = "alice".into();
    alice.enter("secret:1", json!({"x": 1})).await;
    alice.subscribe("public:1").await;
    bob.expect("alice joins", |f| is_join(f, "secret:1", "alice"))
        .await;

    let before_ok = alice
        .ok(json!({"t": "refresh", "token": token_for(&s, "alice", &["public:*"])}))
        .await;
    assert_eq!(
        on(&before_ok, "secret:1"),
        [unsubscribed("secret:1")],
        "before the ok of refresh: {before_ok:?}"
    );
    bob.expect("alice leaves secret:1", |f| left(f, "secret:1", "alice"))
        .await;

    // Nothing of secret:1 reaches her any more: carol's join and message
    // there, then a message on public:1 (which she still has) that comes
    // after them.
    let mut carol = s.user("carol").await;
    carol.enter("secret:1", json!({})).await;
    carol
        .ok(json!({"t": "publish", "channel": "secret:1", "data": "psst"}))
        .await;
    carol
        .ok(json!({"t": "publish", "channel": "public:1", "data": "hi"}))
        .await;
    let (seen, _) = alice
        .until("the message on public:1", |f| {
            f["t"] == "message" && f["channel"] == "public:1"
        })
        .await;
    assert!(
        on(&seen, "secret:1").is_empty(),
        "secret:1 still reaches alice after the refresh: {seen:?}"
    );
    alice
        .err_code(
            json!({"t": "subscribe", "channel": "secret:1"}),
            "forbidden",
        )
        .await;
    bob.expect("carol joins", |f| is_join(f, "secret:1", "carol"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_with_new_info_updates_every_channel_the_user_is_in() {
    let s = Server::start(Opts::new()).await;
    let mut alice = s
        .connect(Some(&s.token_info("alice", json!({"name": "Al"}))))
        .await;
    alice.name = "alice".into();
    alice.enter("room:1", json!({"x": 1})).await;
    alice
        .ok(json!({"t": "enter", "channel": "room:2", "subscribe": false}))
        .await;
    let mut bob = s.user("bob").await;
    let v1 = bob.view("room:1").await;
    assert_eq!(v1.members["alice"]["data"]["info"]["name"], "Al");
    bob.subscribe("room:2").await;

    alice
        .ok(json!({"t": "refresh", "token": s.token_info("alice", json!({"name": "Alice"}))}))
        .await;
    let updates = bob
        .expect_each(
            "alice's new name in both channels",
            &[
                &|f: &Value| is_update(f, "room:1", "alice"),
                &|f: &Value| is_update(f, "room:2", "alice"),
            ],
        )
        .await;
    assert_eq!(
        updates[0]["member"]["data"],
        json!({"x": 1, "info": {"name": "Alice"}})
    );
    assert_eq!(
        updates[1]["member"]["data"],
        json!({"info": {"name": "Alice"}})
    );
    // The HTTP API's members read says the same.
    let members: Value = reqwest::Client::new()
        .get(format!("http://{}/v1/channels/room:2/members", s.addr))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .expect("GET members")
        .json()
        .await
        .expect("members JSON");
    assert_eq!(
        members["members"][0]["data"]["info"]["name"], "Alice",
        "{members}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_with_a_narrower_token_restores_only_what_it_allows() {
    let s = Server::start(Opts::new().grace(10_000)).await;
    let mut bob = s.user("bob").await;
    bob.subscribe("secret:1").await;
    let mut alice = s
        .connect(Some(&token_for(&s, "alice", &["secret:*", "public:*"])))
        .await;
    alice.enter("secret:1", json!({})).await;
    alice.enter("public:1", json!({})).await;
    bob.expect("alice joins", |f| is_join(f, "secret:1", "alice"))
        .await;
    let session = alice.session();
    alice.close().await;
    drop(alice);

    let mut alice = s
        .connect_resume(Some(&token_for(&s, "alice", &["public:*"])), Some(&session))
        .await;
    alice.name = "alice (resumed)".into();
    assert_eq!(alice.welcome["resumed"], true, "{}", alice.welcome);
    let frames = before_pong(alice.barrier().await);
    let kinds: Vec<(&str, &str)> = frames
        .iter()
        .map(|f| {
            (
                f["t"].as_str().unwrap_or(""),
                f["channel"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("unsubscribed", "secret:1"), ("sync", "public:1")],
        "after the welcome: {frames:?}"
    );
    assert_eq!(frames[0], unsubscribed("secret:1"));
    bob.expect("alice leaves secret:1", |f| left(f, "secret:1", "alice"))
        .await;
    let v = bob.view("public:1").await;
    assert!(v.members.contains_key("alice"), "{:?}", v.members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_resuming_after_a_restart_without_its_rule_gets_nothing_back() {
    let opts = |rules: &str| Opts::new().guests().grace(10_000).config(rules);
    let mut s = Server::start(opts(RULES_TOML)).await;
    let mut g = s.guest().await;
    g.subscribe("lobby:1").await;
    let session = g.session();

    s.sigterm();
    assert_eq!(g.closed().await, Some(1001));
    assert!(s.wait_exit(Duration::from_secs(10)).await.success());
    // The operator took `guests = true` off lobby:*.
    let without = RULES_TOML.replacen("guests = true\n", "", 1);
    assert_ne!(without, RULES_TOML);
    s.restart(opts(&without)).await;

    let mut g = s.connect_resume(None, Some(&session)).await;
    g.name = "guest (resumed)".into();
    assert_eq!(g.welcome["resumed"], true, "{}", g.welcome);
    let frames = before_pong(g.barrier().await);
    assert_eq!(frames, [unsubscribed("lobby:1")], "after the welcome");
    // Nothing of lobby:1 comes: alice's join there is sent (a quiet
    // channel sends at once) before the guest's ping is answered.
    let mut alice = s.user("alice").await;
    alice.enter("lobby:1", json!({"name": "Alice"})).await;
    let seen = before_pong(g.barrier().await);
    assert!(seen.is_empty(), "lobby:1 reaches the guest: {seen:?}");
    g.err_code(json!({"t": "subscribe", "channel": "lobby:1"}), "forbidden")
        .await;
}
