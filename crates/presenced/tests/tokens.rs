//! Tokens: rejected tokens, expiry of a live connection, `refresh`, and the
//! operator's claim settings (`nbf` leeway, audience, issuer, required
//! `exp`).

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

/// Server settings as flags.
fn with_args(opts: Opts, args: &[&str]) -> Opts {
    let mut opts = opts;
    opts.extra_args = args.iter().map(|a| a.to_string()).collect();
    opts
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_is_closed_4401_when_its_token_expires_whatever_the_leeway() {
    // A minute of leeway (for `nbf`): the close still comes at `exp`.
    let s = Server::start(with_args(
        Opts::new().grace(5000),
        &["--jwt-leeway-ms", "60000"],
    ))
    .await;
    let exp = now_secs() + 2;
    let token = s.sign(json!({"sub": "alice", "exp": exp}));
    let mut a = s.connect(Some(&token)).await;
    a.enter("room:1", json!({})).await;
    let session = a.session();
    let code = a.closed_within(Duration::from_secs(6)).await;
    let closed_at = now_ms();
    assert_eq!(code, Some(4401), "closed when exp passed, not exp + leeway");
    assert!(
        closed_at >= exp * 1000,
        "closed {} ms before exp",
        exp * 1000 - closed_at
    );
    eprintln!("closed {} ms after exp", closed_at - exp * 1000);

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
    // Without the refresh the close would come at the old exp.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbf_has_a_configurable_leeway_and_exp_none() {
    let now = now_secs();
    let soon = json!({"sub": "alice", "nbf": now + 2, "exp": now + 600});
    let just_expired = json!({"sub": "alice", "exp": now - 2});
    let later = json!({"sub": "alice", "nbf": now + 30, "exp": now + 600});

    // The default, 5 s: a token minted on a machine a little ahead is
    // accepted; one that expired 2 s ago is not, at hello or at refresh.
    let s = Server::start(Opts::new()).await;
    let c = s.connect(Some(&s.sign(soon.clone()))).await;
    assert_eq!(c.welcome["user"], "alice", "{soon}");
    assert_rejected(&s, &s.sign(later.clone()), "nbf 30 s ahead").await;
    assert_rejected(&s, &s.sign(just_expired.clone()), "expired 2 s ago").await;
    let mut a = s.user("alice").await;
    for claims in [&later, &just_expired] {
        a.err_code(
            json!({"t": "refresh", "token": s.sign(claims.clone())}),
            "unauthorized",
        )
        .await;
    }
    a.ok(json!({"t": "refresh", "token": s.sign(soon.clone())}))
        .await;
    drop(s);

    // None at all.
    let strict = Server::start(with_args(Opts::new(), &["--jwt-leeway-ms", "0"])).await;
    assert_rejected(&strict, &strict.sign(soon), "nbf 2 s ahead, no leeway").await;
    drop(strict);

    // A minute: `nbf` 30 s ahead passes, `exp` 2 s ago still does not.
    let lenient = Server::start(with_args(Opts::new(), &["--jwt-leeway-ms", "60000"])).await;
    let c = lenient.connect(Some(&lenient.sign(later))).await;
    assert_eq!(c.welcome["user"], "alice");
    let expired = lenient.sign(just_expired);
    assert_rejected(&lenient, &expired, "expired 2 s ago, a minute of leeway").await;
    let mut a = lenient.user("alice").await;
    a.err_code(json!({"t": "refresh", "token": expired}), "unauthorized")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_and_issuer_must_match_when_configured() {
    let args = [
        "--jwt-audience",
        "presence",
        "--jwt-issuer",
        "https://id.example",
    ];
    let s = Server::start(with_args(Opts::new(), &args)).await;
    let claims = |aud: serde_json::Value, iss: serde_json::Value| {
        let mut c = json!({"sub": "alice", "exp": now_secs() + 600});
        if !aud.is_null() {
            c["aud"] = aud;
        }
        if !iss.is_null() {
            c["iss"] = iss;
        }
        s.sign(c)
    };
    let iss = json!("https://id.example");
    for good in [
        claims(json!("presence"), iss.clone()),
        claims(json!(["billing", "presence"]), iss.clone()),
    ] {
        let c = s.connect(Some(&good)).await;
        assert_eq!(c.welcome["user"], "alice");
    }
    for (bad, what) in [
        (claims(json!(null), iss.clone()), "no aud"),
        (claims(json!("billing"), iss.clone()), "another aud"),
        (claims(json!("presence"), json!(null)), "no iss"),
        (
            claims(json!("presence"), json!("https://evil.example")),
            "another iss",
        ),
    ] {
        assert_rejected(&s, &bad, what).await;
    }
    // A refresh is held to the same rules, and a refused one changes nothing.
    let mut a = s
        .connect(Some(&claims(json!("presence"), iss.clone())))
        .await;
    a.err_code(
        json!({"t": "refresh", "token": claims(json!("billing"), iss.clone())}),
        "unauthorized",
    )
    .await;
    a.ok(json!({"t": "refresh", "token": claims(json!("presence"), iss)}))
        .await;

    // Without the settings neither claim is looked at.
    let open = Server::start(Opts::new()).await;
    let any = open.sign(json!({"sub": "bob", "aud": "whatever", "iss": 42}));
    assert_eq!(open.connect(Some(&any)).await.welcome["user"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_exp_is_refused_when_exp_is_required() {
    let s = Server::start(with_args(Opts::new(), &["--jwt-require-exp"])).await;
    assert_rejected(&s, &s.sign(json!({"sub": "alice"})), "no exp").await;
    assert_rejected(
        &s,
        &s.sign(json!({"sub": "alice", "exp": null})),
        "exp null",
    )
    .await;
    let mut a = s.user("alice").await;
    a.err_code(
        json!({"t": "refresh", "token": s.sign(json!({"sub": "alice"}))}),
        "unauthorized",
    )
    .await;
    a.barrier().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presenced_token_signs_what_the_server_requires() {
    let args = [
        "--jwt-audience",
        "presence",
        "--jwt-issuer",
        "https://id.example",
        "--jwt-require-exp",
    ];
    let s = Server::start(with_args(Opts::new(), &args)).await;
    let token = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
            .args(["token", "--user", "carol", "--jwt-secret", &s.secret])
            .args(args)
            .args(extra)
            .current_dir(dir.path())
            .env_remove("PRESENCED_CONFIG")
            .output()
            .expect("run presenced token")
    };
    let out = token(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = String::from_utf8(out.stdout).unwrap();
    let c = s.connect(Some(signed.trim())).await;
    assert_eq!(c.welcome["user"], "carol");
    // A token that never expires would be refused: none is printed.
    let out = token(&["--ttl", "0"]);
    assert!(!out.status.success() && out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("jwt_require_exp"), "{stderr}");
}
