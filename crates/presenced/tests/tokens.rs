//! Tokens: rejected tokens, expiry of a live connection, `refresh`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

/// `hello` with `token` must get `error unauthorized` then close 4401.
async fn assert_rejected(s: &Server, token: &str, what: &str) {
    let mut c = s.raw_connect().await;
    c.name = what.to_owned();
    c.send(json!({"t": "hello", "token": token})).await;
    let e = c.next().await;
    assert_eq!(e["t"], "error", "{what}: {e}");
    assert_eq!(e["code"], "unauthorized", "{what}: {e}");
    assert_eq!(c.closed().await, Some(4401), "{what}: close code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_signature_is_unauthorized_4401() {
    let s = Server::start(Opts::new()).await;
    let token = sign_with(
        Algorithm::HS256,
        b"not-the-secret",
        &json!({"sub": "alice", "exp": now_secs() + 600}),
    );
    assert_rejected(&s, &token, "wrong secret").await;
    // A tampered payload with the original signature.
    let good = s.token("alice");
    let parts: Vec<&str> = good.split('.').collect();
    let evil = alg_none_token(&json!({"sub": "admin", "exp": now_secs() + 600}));
    let evil_body = evil.split('.').nth(1).unwrap();
    assert_rejected(
        &s,
        &format!("{}.{}.{}", parts[0], evil_body, parts[2]),
        "tampered payload",
    )
    .await;
    assert_rejected(&s, "garbage", "not a JWT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_unauthorized_4401() {
    let s = Server::start(Opts::new()).await;
    let token = alg_none_token(&json!({"sub": "alice", "exp": now_secs() + 600}));
    assert_rejected(&s, &token, "alg none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_unauthorized_4401() {
    let s = Server::start(Opts::new()).await;
    let token = s.sign(json!({"sub": "alice", "exp": now_secs() - 10}));
    assert_rejected(&s, &token, "expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_sub_is_unauthorized_4401() {
    let s = Server::start(Opts::new()).await;
    let token = s.sign(json!({"exp": now_secs() + 600}));
    assert_rejected(&s, &token, "no sub").await;
    let token = s.sign(json!({"sub": "", "exp": now_secs() + 600}));
    assert_rejected(&s, &token, "empty sub").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs384_hs512_and_no_exp_tokens_are_accepted() {
    let s = Server::start(Opts::new()).await;
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = sign_with(
            alg,
            s.secret.as_bytes(),
            &json!({"sub": "alice", "exp": now_secs() + 600}),
        );
        let c = s.connect(Some(&token)).await;
        assert_eq!(c.welcome["user"], "alice", "{alg:?}");
    }
    let c = s.connect(Some(&s.sign(json!({"sub": "bob"})))).await;
    assert_eq!(c.welcome["user"], "bob", "exp is optional");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_is_closed_4401_when_its_token_expires() {
    let s = Server::start(Opts::new().grace(5000)).await;
    let exp = now_secs() + 2;
    let token = s.sign(json!({"sub": "alice", "exp": exp}));
    let mut a = s.connect(Some(&token)).await;
    a.enter("room:1", json!({})).await;
    let session = a.session();
    let code = a.closed_within(Duration::from_secs(6)).await;
    assert_eq!(code, Some(4401), "closed when exp passed");
    assert!(now_secs() >= exp, "closed before exp");

    // The connection went into grace: a fresh token resumes it.
    let mut obs = s.user("obs").await;
    let v = obs.view("room:1").await;
    assert!(
        v.members.contains_key("alice"),
        "alice is in grace, still a member: {:?}",
        v.members
    );
    let fresh = s.token("alice");
    let a = s.connect_resume(Some(&fresh), Some(&session)).await;
    assert_eq!(a.welcome["resumed"], true, "{}", a.welcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_with_a_fresh_token_keeps_the_connection_past_the_old_exp() {
    let s = Server::start(Opts::new()).await;
    let exp = now_secs() + 2;
    let mut a = s
        .connect(Some(&s.sign(json!({"sub": "alice", "exp": exp}))))
        .await;
    a.ok(json!({"t": "refresh", "token": s.token("alice")}))
        .await;
    // Absence of a close: wait until one second past the old exp.
    let old_exp_passed = std::time::UNIX_EPOCH + Duration::from_secs(exp + 1);
    let until = old_exp_passed
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        + Duration::from_millis(300);
    let t0 = Instant::now();
    let seen = a.collect_for(until).await;
    assert!(
        !a.is_closed(),
        "closed {:?} after refresh (old exp passed): {seen:?}",
        t0.elapsed()
    );
    a.barrier().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_with_another_sub_is_forbidden_and_changes_nothing() {
    let s = Server::start(Opts::new()).await;
    let mut obs = s.user("obs").await;
    obs.subscribe("room:1").await;
    let mut a = s.user("alice").await;
    a.err_code(
        json!({"t": "refresh", "token": s.token("mallory")}),
        "forbidden",
    )
    .await;
    a.err_code(json!({"t": "refresh", "token": "garbage"}), "unauthorized")
        .await;
    let expired = s.sign(json!({"sub": "alice", "exp": now_secs() - 10}));
    a.err_code(json!({"t": "refresh", "token": expired}), "unauthorized")
        .await;
    // Still alice, still connected.
    a.enter("room:1", json!({})).await;
    obs.expect("join alice", |f| is_join(f, "room:1", "alice"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_applies_the_new_claims_to_later_requests() {
    let s = Server::start(Opts::new()).await;
    let t1 = s.sign(json!({"sub": "alice", "exp": now_secs() + 600, "channels": ["room:*"]}));
    let mut a = s.connect(Some(&t1)).await;
    a.err_code(json!({"t": "subscribe", "channel": "other:1"}), "forbidden")
        .await;
    let t2 = s.sign(
        json!({"sub": "alice", "exp": now_secs() + 600, "channels": ["other:*"], "info": {"v": 2}}),
    );
    a.ok(json!({"t": "refresh", "token": t2})).await;
    let frames = a.enter("other:1", json!({})).await;
    let sync = frames
        .iter()
        .find(|f| f["t"] == "sync")
        .unwrap_or_else(|| panic!("{frames:?}"));
    let _ = sync;
    let mut obs = s.user("obs").await;
    let v = obs.view("other:1").await;
    assert_eq!(
        v.members["alice"]["data"]["info"],
        json!({"v": 2}),
        "{:?}",
        v.members
    );
}
