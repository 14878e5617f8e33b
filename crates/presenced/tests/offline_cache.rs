//! Offline users' last presence is read through the store: with a cache of
//! two, users who went offline long ago (and were evicted) still read as
//! offline with their own last_seen, from a watch and from the API, before
//! and after a crash; a user never seen still reads as never seen.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const GRACE_MS: u64 = 200;

fn opts() -> Opts {
    Opts::new().grace(GRACE_MS).config("offline_cache = 2\n")
}

async fn get_user(s: &Server, user: &str) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .get(format!("http://{}/v1/users/{user}", s.addr))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .expect("HTTP request");
    let status = res.status();
    (status, res.json().await.expect("JSON body"))
}

/// Waits until the API reports `user` offline; returns its presence.
async fn until_offline(s: &Server, user: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get_user(s, user).await;
        assert_eq!(status, StatusCode::OK, "{user}: {body}");
        if body["status"] == "offline" {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} still {body} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn check(s: &Server, users: &[String], seen: &[Value]) {
    let mut watcher = s.user("watcher").await;
    let mut names: Vec<&str> = users.iter().map(String::as_str).collect();
    names.push("never-seen");
    let p = watcher.watch(&names).await;
    for (u, want) in users.iter().zip(seen) {
        let got = &p["users"][u.as_str()];
        assert_eq!(got["status"], "offline", "{u}: {p}");
        assert_eq!(got["last_seen"], want["last_seen"], "{u}: {p}");
        assert!(want["last_seen"].is_string(), "{want}");
        let (status, body) = get_user(s, u).await;
        assert_eq!(status, StatusCode::OK, "{u}: {body}");
        assert_eq!(body["last_seen"], want["last_seen"], "{u}: {body}");
    }
    assert_eq!(p["users"]["never-seen"]["last_seen"], Value::Null, "{p}");
    assert_eq!(get_user(s, "never-seen").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_evicted_from_the_cache_read_from_the_store() {
    let mut s = Server::start(opts()).await;
    let users: Vec<String> = (0..5).map(|i| format!("gone{i}")).collect();
    let mut seen = Vec::new();
    for u in &users {
        let mut c = s.user(u).await;
        c.ok(json!({"t": "enter", "channel": "room:1", "data": {}}))
            .await;
        c.close().await;
        seen.push(until_offline(&s, u).await);
    }
    check(&s, &users, &seen).await;

    // After a crash the store is all there is.
    s.sigkill();
    s.restart(opts()).await;
    check(&s, &users, &seen).await;
}
