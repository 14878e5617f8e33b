//! A clean restart (SIGTERM, then start again on the same data directory)
//! keeps sessions: clients resume with `resumed: true` and get their
//! channels, member data, subscriptions and watches back, and nobody sees a
//! leave or an offline.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const GRACE_MS: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resume_their_sessions_after_a_clean_restart() {
    let opts = || Opts::new().grace(GRACE_MS);
    let mut s = Server::start(opts()).await;
    let mut alice = s.user("alice").await;
    alice
        .ok(json!({"t": "enter", "channel": "room:1", "data": {"x": 1}}))
        .await;
    alice.ok(json!({"t": "watch", "users": ["bob"]})).await;
    let alice_session = alice.session();
    let mut bob = s.user("bob").await;
    bob.ok(json!({"t": "subscribe", "channel": "room:1"})).await;
    let bob_session = bob.session();

    s.sigterm();
    assert_eq!(alice.closed().await, Some(1001));
    assert_eq!(bob.closed().await, Some(1001));
    assert!(s.wait_exit(Duration::from_secs(10)).await.success());
    s.restart(opts()).await;

    // Alice resumes: her membership, data and watch come back without a
    // request.
    let mut alice = s
        .connect_resume(Some(&s.token("alice")), Some(&alice_session))
        .await;
    let sync = alice
        .expect("a fresh sync of room:1", |f| {
            f["t"] == "sync" && f["channel"] == "room:1"
        })
        .await;
    let members = sync["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{sync}");
    assert_eq!(members[0]["user"], "alice");
    assert_eq!(members[0]["data"], json!({"x": 1}));
    alice
        .expect("presence of the watched user", |f| {
            f["t"] == "presence" && f["users"].get("bob").is_some()
        })
        .await;

    // Bob resumes his subscription and hears alice's next update.
    let mut bob = s
        .connect_resume(Some(&s.token("bob")), Some(&bob_session))
        .await;
    bob.expect("a fresh sync of room:1", |f| {
        f["t"] == "sync" && f["channel"] == "room:1"
    })
    .await;
    alice
        .ok(json!({"t": "update", "channel": "room:1", "data": {"x": 2}}))
        .await;
    bob.expect("alice's update", |f| {
        f["t"] == "update" && f["member"]["data"]["x"] == 2
    })
    .await;

    // Past the grace window nothing left: the resumed connections hold the
    // presence, so bob never sees alice leave.
    bob.expect_none(
        "alice leaving after the grace window",
        Duration::from_millis(GRACE_MS + 1_000),
        |f| f["t"] == "leave" || f["t"] == "diff",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_do_not_survive_a_crash_but_presence_does() {
    let opts = || Opts::new().grace(GRACE_MS);
    let mut s = Server::start(opts()).await;
    let mut alice = s.user("alice").await;
    alice
        .ok(json!({"t": "enter", "channel": "room:1", "data": {"x": 1}}))
        .await;
    let session = alice.session();
    // The API answers user reads only once the journal has committed what
    // came before: after this, the membership is on disk.
    let status = reqwest::Client::new()
        .get(format!("http://{}/v1/users/alice", s.addr))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .expect("GET /v1/users/alice")
        .status();
    assert_eq!(status, 200);
    s.sigkill();
    s.restart(opts()).await;
    let alice = s
        .connect_resume(Some(&s.token("alice")), Some(&session))
        .await;
    assert_eq!(alice.welcome["resumed"], false);
    // The journal still holds her membership for the grace window.
    let mut observer = s.user("observer").await;
    let sync = observer
        .ok(json!({"t": "subscribe", "channel": "room:1"}))
        .await;
    assert!(
        sync.iter().any(|f| f["t"] == "sync"
            && f["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["user"] == "alice"))),
        "{sync:?}"
    );
}
