//! Sessions and presence: hello/welcome, several tabs of one user, refresh
//! inside and after the grace window, resume, `bye`, away and watching.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_is_answered_by_welcome_with_all_fields() {
    let s = Server::start(Opts::new().grace(700).heartbeat(5000)).await;
    let mut c = s.raw_connect().await;
    let token = s.token("alice");
    c.send(json!({"t": "hello", "id": 7, "token": token})).await;
    let w = c.next().await;
    assert_eq!(w["t"], "welcome", "{w}");
    assert_eq!(w["id"], 7, "welcome carries the hello's id: {w}");
    assert!(!w["conn"].is_null(), "welcome.conn missing: {w}");
    assert_eq!(w["user"], "alice", "{w}");
    assert!(
        w["session"].as_str().is_some_and(|s| s.len() >= 16),
        "welcome.session must be an opaque token: {w}"
    );
    assert_eq!(w["resumed"], false, "{w}");
    assert_eq!(w["heartbeat_ms"], 5000, "{w}");
    assert_eq!(w["grace_ms"], 700, "{w}");

    // Two connections get distinct connection ids and sessions.
    let c2 = s.user("alice").await;
    assert_ne!(c2.welcome["conn"], w["conn"]);
    assert_ne!(c2.welcome["session"], w["session"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_are_one_member_and_closing_one_sends_no_leave() {
    let s = Server::start(Opts::new().grace(400)).await;
    let mut obs = s.user("obs").await;
    let mut view = obs.view("room:1").await;

    let token = s.token("alice");
    let mut tab1 = s.connect(Some(&token)).await;
    let mut tab2 = s.connect(Some(&token)).await;
    tab1.enter("room:1", json!({"name": "Alice"})).await;
    let join = obs
        .expect("join of alice", |f| is_join(f, "room:1", "alice"))
        .await;
    view.apply(&join);
    assert_eq!(join["member"]["conns"], 1, "{join}");
    assert_eq!(join["member"]["data"]["name"], "Alice", "{join}");

    // The second tab enters without data: the user is already a member.
    tab2.ok(json!({"t": "enter", "channel": "room:1"})).await;

    // While both are in, a fresh snapshot shows one member with conns 2.
    let mut obs2 = s.user("obs2").await;
    let v2 = obs2.view("room:1").await;
    let alice = &v2.members["alice"];
    assert_eq!(
        alice["conns"], 2,
        "two tabs are one member with conns 2: {alice}"
    );
    assert_eq!(
        alice["data"]["name"], "Alice",
        "entering without data keeps the data: {alice}"
    );
    assert_eq!(v2.members.len(), 1, "{:?}", v2.members);

    // Tab 1 closes its socket (not bye). After its grace window passes the
    // member has conns 1 again, and every subscriber is told.
    tab1.close().await;
    let mut v2 = v2;
    while v2.members["alice"]["conns"] != 1 {
        let f = obs2
            .expect("an event about alice", |f| mentions_user(f, "alice"))
            .await;
        v2.apply(&f);
        assert!(
            v2.members.contains_key("alice"),
            "alice left while her second tab is still in: {f}"
        );
    }

    // The observer saw no leave and no join: only alice's connection
    // count, 2 and then 1 (docs/protocol.md §1).
    let mut counts = Vec::new();
    while counts.len() < 2 {
        let f = obs
            .expect("an update of alice's count", |f| mentions_user(f, "alice"))
            .await;
        assert_eq!(f["t"], "update", "no leave, no join: {f}");
        view.apply(&f);
        counts.push(f["member"]["conns"].clone());
    }
    assert_eq!(counts, [json!(2), json!(1)]);
    obs.expect_none(
        "another event about alice",
        Duration::from_millis(200),
        |f| mentions_user(f, "alice"),
    )
    .await;
    assert_eq!(view.members["alice"]["conns"], 1);
    drop(tab2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_inside_grace_is_invisible_and_resumes_the_session() {
    let grace = Duration::from_millis(1500);
    let s = Server::start(Opts::new().grace(grace.as_millis() as u64)).await;
    let mut obs = s.user("obs").await;
    obs.view("room:1").await;
    obs.watch(&["alice"]).await;
    let _bob = s.user("bob").await;

    let token = s.token("alice");
    let mut a = s.connect(Some(&token)).await;
    a.enter("room:1", json!({"x": 1})).await;
    a.subscribe("room:2").await;
    let p = a.watch(&["bob"]).await;
    assert_eq!(p["users"]["bob"]["status"], "online", "{p}");
    obs.expect_each(
        "alice online and joined",
        &[
            &|f| f["t"] == "presence" && f["users"]["alice"]["status"] == "online",
            &|f| is_join(f, "room:1", "alice"),
        ],
    )
    .await;

    let session = a.session();
    let conn = a.welcome["conn"].clone();
    let dropped_at = Instant::now();
    drop(a); // the tab goes away without a close frame

    let mut a2 = s.connect_resume(Some(&token), Some(&session)).await;
    let w = a2.welcome.clone();
    assert_eq!(w["resumed"], true, "resume inside grace: {w}");
    assert_eq!(w["user"], "alice", "{w}");
    assert_eq!(w["conn"], conn, "the resumed connection keeps its id: {w}");
    assert_ne!(
        w["session"].as_str(),
        Some(session.as_str()),
        "a fresh session is issued on every welcome: {w}"
    );

    // A fresh sync for each subscription and a presence frame for the watches.
    let mut r1 = View::new("room:1");
    let mut r2 = View::new("room:2");
    let mut presence = None;
    while !(r1.complete() && r2.complete() && presence.is_some()) {
        let f = a2.next().await;
        if f["t"] == "presence" {
            presence = Some(f);
        } else if !r1.apply(&f) && !r2.apply(&f) {
            panic!("unexpected frame after resumed welcome: {f}");
        }
    }
    let presence = presence.unwrap();
    assert_eq!(presence["users"]["bob"]["status"], "online", "{presence}");
    assert_eq!(
        r1.members["alice"]["data"],
        json!({"x": 1}),
        "{:?}",
        r1.members
    );

    // Nobody else sees anything: no leave/join, no offline, up to the end of
    // the old grace window plus a margin.
    let until = dropped_at + grace + Duration::from_millis(700);
    obs.expect_none(
        "any change about alice",
        until.saturating_duration_since(Instant::now()),
        |f| mentions_user(f, "alice"),
    )
    .await;
    // And the resumed connection is still a member.
    let mut obs2 = s.user("obs2").await;
    let v = obs2.view("room:1").await;
    assert_eq!(v.members["alice"]["conns"], 1, "{:?}", v.members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_after_grace_shows_leave_timeout_then_join() {
    let grace = Duration::from_millis(400);
    let s = Server::start(Opts::new().grace(grace.as_millis() as u64)).await;
    let mut obs = s.user("obs").await;
    let mut view = obs.view("room:1").await;

    let token = s.token("alice");
    let mut a = s.connect(Some(&token)).await;
    a.enter("room:1", json!({"x": 1})).await;
    let j = obs
        .expect("join alice", |f| is_join(f, "room:1", "alice"))
        .await;
    view.apply(&j);
    let session = a.session();
    let dropped_at = Instant::now();
    drop(a);

    let leave = obs
        .expect("leave of alice", |f| is_leave(f, "room:1", "alice"))
        .await;
    let elapsed = dropped_at.elapsed();
    assert_eq!(leave["reason"], "timeout", "{leave}");
    assert!(
        elapsed >= grace - Duration::from_millis(50),
        "leave came before grace ended: {elapsed:?}"
    );
    view.apply(&leave);

    let mut a2 = s.connect_resume(Some(&token), Some(&session)).await;
    assert_eq!(
        a2.welcome["resumed"], false,
        "resume after grace: {}",
        a2.welcome
    );
    a2.enter("room:1", json!({"x": 2})).await;
    let j2 = obs
        .expect("join alice again", |f| is_join(f, "room:1", "alice"))
        .await;
    view.apply(&j2);
    assert_eq!(j2["member"]["data"], json!({"x": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_restores_channels_data_subscriptions_and_watches() {
    let s = Server::start(Opts::new().grace(5000)).await;
    let mut obs = s.user("obs").await;
    let mut view = obs.view("room:r").await;

    let token = s.token("alice");
    let mut a = s.connect(Some(&token)).await;
    a.enter("room:r", json!({"x": 1})).await;
    a.subscribe("room:s").await;
    a.watch(&["bob"]).await;
    a.ok(json!({"t": "status", "status": "away"})).await;
    view.apply(
        &obs.expect("join alice", |f| is_join(f, "room:r", "alice"))
            .await,
    );
    let session = a.session();
    drop(a);

    let mut a = s.connect_resume(Some(&token), Some(&session)).await;
    assert_eq!(a.welcome["resumed"], true, "{}", a.welcome);
    // Wait for the resumed snapshots, then use the restored state without
    // re-sending any subscribe/enter/watch.
    let mut rs = View::new("room:s");
    let mut rr = View::new("room:r");
    while !(rs.complete() && rr.complete()) {
        let f = a.next().await;
        rs.apply(&f);
        rr.apply(&f);
    }
    assert_eq!(
        rr.members["alice"]["data"],
        json!({"x": 1}),
        "data restored: {:?}",
        rr.members
    );

    // Entered: update works (not `not_member`) and the observer sees it.
    a.update("room:r", json!({"x": 2})).await;
    let u = obs
        .expect("update alice", |f| is_update(f, "room:r", "alice"))
        .await;
    view.apply(&u);
    assert_eq!(u["member"]["data"], json!({"x": 2}));

    // Subscribed: a join in room:s reaches alice.
    let mut carol = s.user("carol").await;
    carol.enter("room:s", json!({})).await;
    a.expect("join of carol in room:s", |f| is_join(f, "room:s", "carol"))
        .await;

    // Watching: bob coming online reaches alice.
    let _bob = s.user("bob").await;
    a.expect_status("bob", "online").await;

    // Status restored: alice is still away.
    let mut w = s.user("w").await;
    let p = w.watch(&["alice"]).await;
    assert_eq!(
        p["users"]["alice"]["status"], "away",
        "status restored on resume: {p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_ends_presence_at_once_and_closes_1000() {
    // A long grace window: bye must not wait for it.
    let s = Server::start(Opts::new().grace(20_000)).await;
    let mut obs = s.user("obs").await;
    obs.view("room:1").await;
    obs.watch(&["alice"]).await;

    let mut a = s.user("alice").await;
    a.enter("room:1", json!({})).await;
    obs.expect_each(
        "alice online and joined",
        &[
            &|f| f["t"] == "presence" && f["users"]["alice"]["status"] == "online",
            &|f| is_join(f, "room:1", "alice"),
        ],
    )
    .await;

    let t0 = Instant::now();
    a.ok(json!({"t": "bye"})).await;
    assert_eq!(a.closed().await, Some(1000), "bye closes with 1000");

    obs.timeout = Duration::from_secs(3);
    let got = obs
        .expect_each(
            "leave(logout) and offline",
            &[&|f| is_leave(f, "room:1", "alice"), &|f| {
                f["t"] == "presence" && f["users"]["alice"]["status"] == "offline"
            }],
        )
        .await;
    assert_eq!(got[0]["reason"], "logout", "{}", got[0]);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "bye must skip the grace window"
    );
    let entry = &got[1]["users"]["alice"];
    assert!(
        entry["last_seen"].is_string(),
        "offline entry has last_seen: {entry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_leaves_other_connections_of_the_user_untouched() {
    let s = Server::start(Opts::new().grace(20_000)).await;
    let mut obs = s.user("obs").await;
    obs.view("room:1").await;
    obs.watch(&["alice"]).await;
    let token = s.token("alice");
    let mut t1 = s.connect(Some(&token)).await;
    let mut t2 = s.connect(Some(&token)).await;
    t1.enter("room:1", json!({})).await;
    t2.enter("room:1", json!({})).await;
    obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
        .await;
    t1.ok(json!({"t": "bye"})).await;
    assert_eq!(t1.closed().await, Some(1000));
    // t2 is still usable and alice still a member.
    t2.update("room:1", json!({"still": true})).await;
    let (skipped, _) = obs
        .until("update alice", |f| is_update(f, "room:1", "alice"))
        .await;
    for f in &skipped {
        assert!(
            !mentions_user(f, "alice"),
            "bye of one tab changed alice's presence: {f}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_is_away_only_when_every_connection_is_away() {
    let s = Server::start(Opts::new().grace(500)).await;
    let mut w = s.user("w").await;
    let p = w.watch(&["alice"]).await;
    assert_eq!(p["users"]["alice"]["status"], "offline", "{p}");

    let token = s.token("alice");
    let mut c1 = s.connect(Some(&token)).await;
    w.expect_status("alice", "online").await;
    let mut c2 = s.connect(Some(&token)).await;

    c1.ok(json!({"t": "status", "status": "away"})).await;
    // One connection away of two: still online (checked with a fresh watch).
    let mut w2 = s.user("w2").await;
    let p = w2.watch(&["alice"]).await;
    assert_eq!(
        p["users"]["alice"]["status"], "online",
        "one of two connections away: {p}"
    );

    c2.ok(json!({"t": "status", "status": "away"})).await;
    let (skipped, away) = w
        .until("presence alice away", |f| {
            f["t"] == "presence" && f["users"]["alice"]["status"] == "away"
        })
        .await;
    for f in &skipped {
        assert!(
            !mentions_user(f, "alice"),
            "presence changed before every connection was away: {f}"
        );
    }
    assert!(away["users"]["alice"]["since"].is_string(), "{away}");

    c1.ok(json!({"t": "status", "status": "online"})).await;
    w.expect_status("alice", "online").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sends_presence_before_ok_then_changes_and_unwatch_stops_them() {
    let s = Server::start(Opts::new().grace(300)).await;
    let mut w = s.user("w").await;
    let frames = w
        .ok(json!({"t": "watch", "users": ["alice", "nobody"]}))
        .await;
    assert_eq!(
        frames.len(),
        1,
        "exactly one presence frame before the ok: {frames:?}"
    );
    let p = &frames[0];
    assert_eq!(p["t"], "presence", "{p}");
    for u in ["alice", "nobody"] {
        let e = &p["users"][u];
        assert_eq!(e["status"], "offline", "{p}");
        assert!(e["since"].is_null(), "never seen: since null: {p}");
        assert!(e["last_seen"].is_null(), "never seen: last_seen null: {p}");
    }

    let mut a = s.user("alice").await;
    let online = w.expect_status("alice", "online").await;
    assert!(online["users"]["alice"]["since"].is_string(), "{online}");
    let last_seen = online["users"]["alice"]["last_seen"]
        .as_str()
        .unwrap_or_else(|| panic!("{online}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(last_seen).is_ok(),
        "last_seen is RFC 3339: {online}"
    );
    assert!(
        online["users"].get("nobody").is_none(),
        "only the changed user: {online}"
    );

    w.ok(json!({"t": "unwatch", "users": ["alice"]})).await;
    // A control watcher bounds the wait: once it sees alice offline, the
    // unwatched connection must not have seen it (plus a short margin).
    let mut control = s.user("control").await;
    control.watch(&["alice"]).await;
    a.ok(json!({"t": "bye"})).await;
    control.expect_status("alice", "offline").await;
    w.expect_none(
        "presence of unwatched alice",
        Duration::from_millis(300),
        |f| mentions_user(f, "alice"),
    )
    .await;
    let rest = w.barrier().await;
    assert!(rest.iter().all(|f| !mentions_user(f, "alice")), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_a_still_live_connection_replaces_its_socket_with_1000() {
    let s = Server::start(Opts::new().grace(5000)).await;
    let mut obs = s.user("obs").await;
    obs.view("room:1").await;
    let token = s.token("alice");
    let mut old = s.connect(Some(&token)).await;
    old.enter("room:1", json!({"x": 1})).await;
    obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
        .await;

    // The server has not noticed anything wrong with `old`.
    let mut new = s.connect_resume(Some(&token), Some(&old.session())).await;
    assert_eq!(new.welcome["resumed"], true, "{}", new.welcome);
    assert_eq!(new.welcome["conn"], old.welcome["conn"], "{}", new.welcome);
    assert_eq!(
        old.closed().await,
        Some(1000),
        "the replaced socket is closed 1000"
    );
    new.update("room:1", json!({"x": 2})).await;
    let (skipped, _) = obs
        .until("update alice", |f| is_update(f, "room:1", "alice"))
        .await;
    assert!(
        skipped.iter().all(|f| !mentions_user(f, "alice")),
        "{skipped:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_or_foreign_session_does_not_resume() {
    let s = Server::start(Opts::new().grace(5000)).await;
    let token = s.token("alice");
    let a = s.connect(Some(&token)).await;
    let first = a.session();
    drop(a);
    let a2 = s.connect_resume(Some(&token), Some(&first)).await;
    assert_eq!(a2.welcome["resumed"], true);
    drop(a2);
    // The first session was used: it no longer works.
    let a3 = s.connect_resume(Some(&token), Some(&first)).await;
    assert_eq!(
        a3.welcome["resumed"], false,
        "a used session resumed: {}",
        a3.welcome
    );
    // Another user's session is not an error either, just a fresh connection.
    let m = s
        .connect_resume(Some(&s.token("mallory")), Some(&a3.session()))
        .await;
    assert_eq!(m.welcome["resumed"], false, "{}", m.welcome);
    assert_eq!(m.welcome["user"], "mallory");
    let g = s.connect_resume(Some(&token), Some("not-a-session")).await;
    assert_eq!(g.welcome["resumed"], false);
}
