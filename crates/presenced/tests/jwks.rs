//! Tokens verified with a JWKS: served over HTTP by a tiny server inside the
//! test (fetched at start-up, fetched again when a token names an unknown
//! `kid`), or read from a file; a JWKS that cannot be loaded stops the start.
//!
//! The harness always passes `--jwt-secret`, so these servers take HS256
//! tokens as well: a secret and a JWKS may be combined.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap()
}

fn p256_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&std::fs::read(fixture("ec_p256_private.pem")).unwrap()).unwrap()
}

fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(&std::fs::read(fixture("ed25519_private.pem")).unwrap()).unwrap()
}

/// The public JWK of `key`, with `kid`, `alg` and `use: sig`.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut v = serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    v
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, user: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let claims = json!({"sub": user, "exp": now_secs() + 600});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

/// Serves `GET /jwks.json` with whatever `doc` holds, counting requests.
struct JwksServer {
    url: String,
    doc: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    doc: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    status: u16,
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> JwksServer {
        Self::start_with_status(keys, 200).await
    }

    async fn start_with_status(keys: Vec<Value>, status: u16) -> JwksServer {
        let shared = Shared {
            doc: Arc::new(Mutex::new(json!({ "keys": keys }))),
            hits: Arc::default(),
            status,
        };
        let app = Router::new()
            .route(
                "/jwks.json",
                get(|State(s): State<Shared>| async move {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    let body = s.doc.lock().unwrap().to_string();
                    (
                        axum::http::StatusCode::from_u16(s.status).unwrap(),
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        JwksServer {
            url: format!("http://{addr}/jwks.json"),
            doc: shared.doc,
            hits: shared.hits,
            task,
        }
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.doc.lock().unwrap() = json!({ "keys": keys });
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn with_jwks(source: &str) -> Opts {
    Opts {
        extra_args: vec!["--jwt-jwks".into(), source.into()],
        ..Opts::new()
    }
}

/// Says `hello` with `token`: the `welcome`, or the close code that followed
/// `error unauthorized`.
async fn attempt(s: &Server, token: &str, what: &str) -> Result<Value, Option<u16>> {
    let mut c = s.raw_connect().await;
    c.name = what.to_owned();
    c.send(json!({"t": "hello", "token": token})).await;
    let f = c.next().await;
    if f["t"] == "welcome" {
        return Ok(f);
    }
    assert_eq!(f["t"], "error", "{what}: {f}");
    assert_eq!(f["code"], "unauthorized", "{what}: {f}");
    Err(c.closed().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_by_jwks_keys_are_accepted_and_unknown_kids_refused() {
    let jwks = JwksServer::start(vec![
        jwk(&rsa_key(), Algorithm::RS256, "rsa-1"),
        jwk(&ed_key(), Algorithm::EdDSA, "ed-1"),
    ])
    .await;
    let s = Server::start(with_jwks(&jwks.url)).await;
    assert_eq!(jwks.hits(), 1, "fetched once at start-up");

    let rs = sign(Algorithm::RS256, &rsa_key(), Some("rsa-1"), "alice");
    let c = s.connect(Some(&rs)).await;
    assert_eq!(c.welcome["user"], "alice", "{}", c.welcome);
    let ed = sign(Algorithm::EdDSA, &ed_key(), Some("ed-1"), "bob");
    let c = s.connect(Some(&ed)).await;
    assert_eq!(c.welcome["user"], "bob", "{}", c.welcome);
    // The secret still verifies HS256 tokens.
    let c = s.user("carol").await;
    assert_eq!(c.welcome["user"], "carol");

    let unknown = sign(Algorithm::RS256, &rsa_key(), Some("rsa-9"), "mallory");
    assert_eq!(attempt(&s, &unknown, "unknown kid").await, Err(Some(4401)));
    // Several keys: a token without kid cannot say which.
    let no_kid = sign(Algorithm::RS256, &rsa_key(), None, "mallory");
    assert_eq!(attempt(&s, &no_kid, "no kid").await, Err(Some(4401)));
    // A kid of the wrong key type.
    let wrong_type = sign(Algorithm::ES256, &p256_key(), Some("rsa-1"), "mallory");
    assert_eq!(
        attempt(&s, &wrong_type, "ES256 on RSA").await,
        Err(Some(4401))
    );
    // HS256 with the JWKS key's public modulus as the secret.
    let jwk_rsa = jwk(&rsa_key(), Algorithm::RS256, "rsa-1");
    let n = jwk_rsa["n"].as_str().unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &json!({"sub": "mallory"}),
        &EncodingKey::from_secret(n.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        attempt(&s, &forged, "HS256 over the JWK").await,
        Err(Some(4401))
    );
    let none = alg_none_token(&json!({"sub": "mallory"}));
    assert_eq!(attempt(&s, &none, "alg none").await, Err(Some(4401)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_after_at_most_one_refused_attempt() {
    let jwks = JwksServer::start(vec![jwk(&rsa_key(), Algorithm::RS256, "2024-01")]).await;
    let s = Server::start(with_jwks(&jwks.url)).await;
    let old = sign(Algorithm::RS256, &rsa_key(), Some("2024-01"), "alice");
    assert!(attempt(&s, &old, "old key").await.is_ok());

    // The issuer rotates: a new key, the old one kept for a while.
    jwks.publish(vec![
        jwk(&p256_key(), Algorithm::ES256, "2024-02"),
        jwk(&rsa_key(), Algorithm::RS256, "2024-01"),
    ]);
    let new = sign(Algorithm::ES256, &p256_key(), Some("2024-02"), "alice");

    // The server still has the old set (the next scheduled fetch is minutes
    // away): the first token with the new kid is refused and makes it look
    // again; a reconnect soon after is accepted.
    assert_eq!(
        attempt(&s, &new, "new kid, first try").await,
        Err(Some(4401))
    );
    let t0 = Instant::now();
    let mut refused_after_first = 0;
    let welcome = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match attempt(&s, &new, "new kid, retry").await {
            Ok(welcome) => break welcome,
            Err(code) => {
                assert_eq!(code, Some(4401));
                refused_after_first += 1;
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "the new key was not picked up within 10 s (fetches: {})",
                    jwks.hits()
                );
            }
        }
    };
    assert_eq!(welcome["user"], "alice");
    assert_eq!(
        refused_after_first, 0,
        "the retry 250 ms after the refused token should be accepted"
    );
    assert_eq!(jwks.hits(), 2, "one fetch at start-up, one for the new kid");

    // The old key still works, and more unknown kids soon after do not make
    // the server fetch again (at most once every 30 s).
    assert!(attempt(&s, &old, "old key after rotation").await.is_ok());
    for i in 0..3 {
        let unknown = sign(
            Algorithm::ES256,
            &p256_key(),
            Some(&format!("bogus-{i}")),
            "m",
        );
        assert_eq!(attempt(&s, &unknown, "bogus kid").await, Err(Some(4401)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(jwks.hits(), 2, "unknown kids are rate-limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let doc = json!({"keys": [jwk(&ed_key(), Algorithm::EdDSA, "file-ed")]});
    std::fs::write(&path, doc.to_string()).unwrap();
    let s = Server::start(with_jwks(&path.display().to_string())).await;

    let token = sign(Algorithm::EdDSA, &ed_key(), Some("file-ed"), "dave");
    let c = s.connect(Some(&token)).await;
    assert_eq!(c.welcome["user"], "dave", "{}", c.welcome);
    // One key in the set: a token without kid uses it.
    let token = sign(Algorithm::EdDSA, &ed_key(), None, "erin");
    let c = s.connect(Some(&token)).await;
    assert_eq!(c.welcome["user"], "erin", "{}", c.welcome);

    let unknown = sign(Algorithm::EdDSA, &ed_key(), Some("other"), "mallory");
    assert_eq!(attempt(&s, &unknown, "unknown kid").await, Err(Some(4401)));
    let rs = sign(Algorithm::RS256, &rsa_key(), Some("file-ed"), "mallory");
    assert_eq!(attempt(&s, &rs, "RS256 on Ed25519").await, Err(Some(4401)));
}

/// Runs `presenced serve` with `args`, expecting it to fail: its stderr.
fn start_fails(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(extra)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn presenced");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("presenced {extra:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "presenced {extra:?} started: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_that_cannot_be_loaded_stops_the_start() {
    // Nothing listens on a port we just gave back.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}/jwks.json");
    let err = tokio::task::spawn_blocking(move || start_fails(&["--jwt-jwks", &url]))
        .await
        .unwrap();
    assert!(
        err.contains(&format!(
            "cannot load the JWKS from http://127.0.0.1:{closed}/jwks.json"
        )) && err.contains("cannot connect"),
        "{err}"
    );

    let missing = JwksServer::start_with_status(vec![], 404).await;
    let url = missing.url.clone();
    let err = tokio::task::spawn_blocking(move || start_fails(&["--jwt-jwks", &url]))
        .await
        .unwrap();
    assert!(err.contains("HTTP status 404"), "{err}");

    // Only keys that cannot verify tokens.
    let mut enc = jwk(&rsa_key(), Algorithm::RS256, "enc-1");
    enc["use"] = json!("enc");
    let useless = JwksServer::start(vec![enc]).await;
    let url = useless.url.clone();
    let err = tokio::task::spawn_blocking(move || start_fails(&["--jwt-jwks", &url]))
        .await
        .unwrap();
    assert!(
        err.contains("no usable signature key") && err.contains("enc-1"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("jwks.json");
    std::fs::write(&bad, "{not json").unwrap();
    let bad = bad.display().to_string();
    let err = start_fails(&["--jwt-jwks", &bad]);
    assert!(err.contains("not valid JSON"), "{err}");

    let pem = fixture("rsa_public.pem").display().to_string();
    let err = start_fails(&["--jwt-jwks", &bad, "--jwt-public-key", &pem]);
    assert!(err.contains("not both"), "{err}");
}
