//! Guests: connections without a token, on a server started with `--guests`
//! and the channel rules of [`RULES_TOML`].

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn guest_server() -> Server {
    Server::start(Opts::new().guests().config(RULES_TOML).grace(5000)).await
}

fn info(user: &str) -> Value {
    json!({"avatar": format!("{user}.png"), "email": format!("{user}@example.com")})
}

async fn member(s: &Server, user: &str) -> Client {
    let mut c = s.connect(Some(&s.token_info(user, info(user)))).await;
    c.name = user.to_owned();
    c
}

fn data(user: &str, name: &str) -> Value {
    json!({"name": name, "email": format!("{user}@example.com"), "age": 30})
}

fn public(user: &str, name: &str) -> Value {
    json!({"user": user, "data": {"name": name, "info": {"avatar": format!("{user}.png")}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_welcome_has_null_user() {
    let s = guest_server().await;
    let g = s.guest().await;
    assert_eq!(g.welcome["t"], "welcome");
    assert!(
        g.welcome.get("user").is_some() && g.welcome["user"].is_null(),
        "{}",
        g.welcome
    );
    assert!(
        g.welcome["session"].is_string(),
        "guests get sessions too: {}",
        g.welcome
    );
    assert_eq!(g.welcome["resumed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sees_only_the_public_projection() {
    let s = guest_server().await;
    let mut alice = member(&s, "alice").await;
    alice.enter("lobby:1", data("alice", "Alice")).await;

    let mut g = s.guest().await;
    let syncs = g.subscribe("lobby:1").await;
    assert_eq!(syncs.len(), 1, "{syncs:?}");
    assert_eq!(
        syncs[0]["members"],
        json!([public("alice", "Alice")]),
        "{}",
        syncs[0]
    );
    let mut view = View::new("lobby:1");
    view.apply(&syncs[0]);

    let mut bob = member(&s, "bob").await;
    bob.enter("lobby:1", data("bob", "Bob")).await;
    let j = g.expect("join bob", |f| is_join(f, "lobby:1", "bob")).await;
    assert_eq!(j["member"], public("bob", "Bob"), "{j}");
    view.apply(&j);

    alice.update("lobby:1", data("alice", "Alice 2")).await;
    let u = g
        .expect("update alice", |f| is_update(f, "lobby:1", "alice"))
        .await;
    assert_eq!(u["member"], public("alice", "Alice 2"), "{u}");
    view.apply(&u);

    // A change of private fields only must not leak them either.
    alice
        .update(
            "lobby:1",
            json!({"name": "Alice 2", "email": "secret@example.com", "age": 31}),
        )
        .await;

    // A crowd entering at once, to get `diff` frames too.
    let mut crowd = Vec::new();
    for i in 0..8 {
        crowd.push(member(&s, &format!("c{i}")).await);
    }
    futures_util::future::join_all(crowd.iter_mut().enumerate().map(|(i, c)| async move {
        let user = format!("c{i}");
        c.enter("lobby:1", data(&user, &format!("C{i}"))).await;
    }))
    .await;
    while view.members.len() < 10 {
        let f = g.next().await;
        view.apply(&f);
    }
    bob.update("lobby:1", data("bob", "Bob 2")).await;
    loop {
        let f = g.next().await;
        view.apply(&f);
        if is_update(&f, "lobby:1", "bob") {
            break;
        }
    }
    for (user, m) in &view.members {
        let name = m["data"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{m}"))
            .to_owned();
        assert_eq!(
            *m,
            public(user, &name),
            "guest member object must be exactly the projection"
        );
    }
    for f in &g.history {
        let text = f.to_string();
        assert!(
            !text.contains("email") && !text.contains("example.com"),
            "private field reached a guest: {text}"
        );
        assert!(
            !text.contains("\"age\""),
            "private field reached a guest: {text}"
        );
        if matches!(f["t"].as_str(), Some("sync" | "join" | "update" | "diff")) {
            assert!(
                !text.contains("\"conns\"") && !text.contains("\"since\""),
                "guest member with conns/since: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_may_not_enter_or_act() {
    let s = guest_server().await;
    let mut alice = member(&s, "alice").await;
    let mut view = alice.view("lobby:1").await;
    let mut g = s.guest().await;
    g.subscribe("lobby:1").await;
    g.err_code(
        json!({"t": "enter", "channel": "lobby:1", "data": {"name": "G"}}),
        "forbidden",
    )
    .await;
    g.err_code(
        json!({"t": "update", "channel": "lobby:1", "data": {"name": "G"}}),
        "forbidden",
    )
    .await;
    g.err_code(json!({"t": "leave", "channel": "lobby:1"}), "forbidden")
        .await;
    g.err_code(
        json!({"t": "publish", "channel": "lobby:1", "data": 1}),
        "forbidden",
    )
    .await;
    g.err_code(json!({"t": "status", "status": "away"}), "forbidden")
        .await;

    let mut bob = member(&s, "bob").await;
    bob.enter("lobby:1", data("bob", "Bob")).await;
    let f = alice.expect("event", |f| is_event(f, "lobby:1")).await;
    assert!(
        is_join(&f, "lobby:1", "bob"),
        "the guest's failed enter produced {f}"
    );
    view.apply(&f);
    let v = alice.view("lobby:1").await;
    assert_eq!(
        v.members.keys().collect::<Vec<_>>(),
        ["bob"],
        "guests never appear as members"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_may_not_subscribe_to_a_channel_without_guests() {
    let s = guest_server().await;
    let mut g = s.guest().await;
    g.err_code(json!({"t": "subscribe", "channel": "room:1"}), "forbidden")
        .await;
    g.err_code(json!({"t": "subscribe", "channel": "small:1"}), "forbidden")
        .await;
    g.err_code(
        json!({"t": "subscribe", "channel": "readonly:1"}),
        "forbidden",
    )
    .await;
    g.subscribe("lobby:9").await;
    // Nothing from room:1 ever reaches it.
    let mut a = s.user("alice").await;
    a.enter("room:1", json!({})).await;
    let frames = g.barrier().await;
    assert!(
        frames.iter().all(|f| f["channel"] != "room:1"),
        "{frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_may_watch_when_guests_watch_is_on() {
    let s = guest_server().await;
    let mut g = s.guest().await;
    let mut bob = s.user("bob").await;
    let p = g.watch(&["alice"]).await;
    assert_eq!(p["users"]["alice"], json!({"status": "offline"}), "{p}");
    bob.watch(&["alice"]).await;
    let _a = s.user("alice").await;
    // Guests see the status alone (PROTOCOL.md §6), users the times too.
    let p = g.expect_status("alice", "online").await;
    assert_eq!(p["users"]["alice"], json!({"status": "online"}), "{p}");
    let p = bob.expect_status("alice", "online").await;
    assert!(p["users"]["alice"]["since"].is_string(), "{p}");
    assert!(p["users"]["alice"]["last_seen"].is_string(), "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_may_not_watch_without_guests_watch() {
    let toml = RULES_TOML.replace("guests_watch = true", "");
    let s = Server::start(Opts::new().guests().config(&toml)).await;
    let mut g = s.guest().await;
    let (before, e) = g.request(json!({"t": "watch", "users": ["alice"]})).await;
    assert_eq!(e["code"], "forbidden", "{e}");
    assert!(before.iter().all(|f| f["t"] != "presence"), "{before:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_do_not_count_in_occupancy() {
    let s = guest_server().await;
    let mut alice = member(&s, "alice").await;
    alice.enter("lobby:1", data("alice", "Alice")).await;
    let mut g1 = s.guest().await;
    let mut g2 = s.guest().await;
    for g in [&mut g1, &mut g2] {
        let frames = g
            .ok(json!({"t": "subscribe", "channel": "lobby:1", "occupancy": true}))
            .await;
        let occ: Vec<&Value> = frames.iter().filter(|f| f["t"] == "occupancy").collect();
        assert_eq!(occ.len(), 1, "{frames:?}");
        assert_eq!(occ[0]["members"], 1, "{}", occ[0]);
        assert_eq!(occ[0]["connections"], 1, "guests never count: {}", occ[0]);
    }
    let frames = alice
        .ok(json!({"t": "subscribe", "channel": "lobby:1", "occupancy": true}))
        .await;
    let occ = frames
        .iter()
        .find(|f| f["t"] == "occupancy")
        .unwrap_or_else(|| panic!("{frames:?}"));
    assert_eq!(
        (occ["members"].clone(), occ["connections"].clone()),
        (json!(1), json!(1)),
        "{occ}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_resume_restores_subscriptions() {
    let s = guest_server().await;
    let mut g = s.guest().await;
    g.subscribe("lobby:1").await;
    let session = g.session();
    drop(g);
    let mut g = s.connect_resume(None, Some(&session)).await;
    assert_eq!(g.welcome["resumed"], true, "{}", g.welcome);
    let sync = g
        .expect("sync lobby:1", |f| {
            f["t"] == "sync" && f["channel"] == "lobby:1"
        })
        .await;
    assert_eq!(sync["more"], false);
    let mut a = member(&s, "alice").await;
    a.enter("lobby:1", data("alice", "Alice")).await;
    let j = g
        .expect("join alice", |f| is_join(f, "lobby:1", "alice"))
        .await;
    assert_eq!(j["member"], public("alice", "Alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_token_without_guests_is_unauthorized_4401() {
    let s = Server::start(Opts::new()).await;
    let mut c = s.raw_connect().await;
    c.send(json!({"t": "hello", "token": null, "id": 1})).await;
    let e = c.next().await;
    assert_eq!(e["t"], "error", "{e}");
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert_eq!(c.closed_within(Duration::from_secs(3)).await, Some(4401));
}
