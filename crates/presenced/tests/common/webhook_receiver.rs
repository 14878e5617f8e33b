//! A webhook receiver for the black-box tests: a small axum server on
//! 127.0.0.1 that checks every request's `Presence-Signature` with the
//! receivers' helper [`presenced::webhooks::verify`], records each request,
//! and can be told to answer 500 or to be down (connection refused).
//!
//! Included with `#[path = "common/webhook_receiver.rs"] mod webhook_receiver;`
//! by the test files that need it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The path the receiver listens on.
pub const PATH: &str = "/hook";

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Request {
    /// What the receiver answered.
    pub status: u16,
    pub signature: String,
    pub content_type: String,
    pub body: Bytes,
    /// The signature checked out (and the content type is JSON).
    pub valid: bool,
    /// `events` of the body (empty if the body is not the expected shape).
    pub events: Vec<Value>,
}

struct Shared {
    secret: Mutex<Vec<u8>>,
    /// Answer 500 to this many more requests.
    fail_next: AtomicUsize,
    requests: Mutex<Vec<Request>>,
    /// Bumped on every request, so tests wait instead of polling.
    seen: watch::Sender<usize>,
}

/// The receiver. Stops listening on drop.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver that is up, on a fresh port.
    pub async fn start(secret: &str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut r = Receiver::new(listener.local_addr().unwrap(), secret);
        r.serve(listener);
        r
    }

    /// A receiver that is down (its port is reserved but nothing listens, so
    /// connections are refused) until [`Receiver::up`].
    pub async fn down_from_start(secret: &str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        drop(listener);
        Receiver::new(addr, secret)
    }

    fn new(addr: SocketAddr, secret: &str) -> Receiver {
        Receiver {
            addr,
            shared: Arc::new(Shared {
                secret: Mutex::new(secret.as_bytes().to_vec()),
                fail_next: AtomicUsize::new(0),
                requests: Mutex::new(Vec::new()),
                seen: watch::channel(0).0,
            }),
            task: None,
        }
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = Router::new()
            .route(PATH, post(handle))
            .with_state(self.shared.clone());
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// `--webhook-url` and `--webhook-secret` for a server that posts here.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--webhook-url".into(),
            self.url(),
            "--webhook-secret".into(),
            String::from_utf8(self.shared.secret.lock().unwrap().clone()).unwrap(),
        ]
    }

    /// Checks signatures with `secret` from now on (for a server that
    /// generated its own).
    pub fn set_secret(&self, secret: &str) {
        *self.shared.secret.lock().unwrap() = secret.as_bytes().to_vec();
    }

    /// Answers the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Stops listening: connections are refused until [`Receiver::up`].
    pub async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        assert!(self.task.is_none(), "receiver already up");
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("receiver: rebinding {}: {e}; retrying", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("receiver: cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// The events of accepted batches in arrival order, duplicates included.
    pub fn events(&self) -> Vec<Value> {
        self.accepted().into_iter().flat_map(|r| r.events).collect()
    }

    /// [`Receiver::events`] without duplicates (first delivery of each id).
    /// Panics if one id was used for two different events.
    pub fn unique_events(&self) -> Vec<Value> {
        dedup(&self.events())
    }

    /// Waits (up to `within`) until `f` returns `Some`, re-checking after
    /// every request the receiver gets.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        f: impl Fn(&Receiver) -> Option<T>,
    ) -> T {
        let mut seen = self.shared.seen.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            seen.mark_unchanged();
            if let Some(v) = f(self) {
                return v;
            }
            if tokio::time::timeout_at(deadline, seen.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out after {within:?} waiting for {what}; the receiver got {} requests:\n{}",
                    self.requests().len(),
                    self.describe()
                );
            }
        }
    }

    /// Waits until every event in `want` (as [`key`]s) has been delivered.
    pub async fn wait_for_keys(&self, want: &[String], within: Duration) -> Vec<Value> {
        let want: HashSet<&str> = want.iter().map(String::as_str).collect();
        self.wait_for(&format!("webhook events {want:?}"), within, |r| {
            let events = r.unique_events();
            let got: HashSet<String> = events.iter().map(key).collect();
            want.iter().all(|k| got.contains(*k)).then_some(events)
        })
        .await
    }

    /// The requests, one line each, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for r in self.requests() {
            let keys: Vec<String> = r.events.iter().map(key).collect();
            s.push_str(&format!(
                "  {} valid={} {} events: {}\n",
                r.status,
                r.valid,
                r.events.len(),
                keys.join(", ")
            ));
        }
        s
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let signature = text("presence-signature");
    let content_type = text("content-type");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secret = shared.secret.lock().unwrap().clone();
    let valid = content_type.starts_with("application/json")
        && presenced::webhooks::verify(&secret, &signature, &body, now, Duration::from_secs(300));
    let events = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["events"].as_array().cloned())
        .unwrap_or_default();
    let status = if !valid {
        400
    } else if shared
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        500
    } else {
        200
    };
    shared.requests.lock().unwrap().push(Request {
        status,
        signature,
        content_type,
        body,
        valid,
        events,
    });
    shared.seen.send_modify(|n| *n += 1);
    (
        StatusCode::from_u16(status).unwrap(),
        // No keep-alive: "down" must mean connection refused at once.
        [(header::CONNECTION, "close")],
        "",
    )
}

/// A short name of an event: `user.online alice`, `member.joined alice room:1`.
pub fn key(e: &Value) -> String {
    let kind = e["type"].as_str().unwrap_or("?");
    let user = e["user"].as_str().unwrap_or("?");
    match e["channel"].as_str() {
        Some(ch) => format!("{kind} {user} {ch}"),
        None => format!("{kind} {user}"),
    }
}

/// `events` without repeated ids, first occurrence kept. Panics if one id was
/// used for two different events.
pub fn dedup(events: &[Value]) -> Vec<Value> {
    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        let id = e["id"]
            .as_str()
            .unwrap_or_else(|| panic!("event without string id: {e}"))
            .to_owned();
        match seen.get(&id) {
            Some(first) => assert_eq!(first, e, "one id for two different events"),
            None => {
                seen.insert(id, e.clone());
                out.push(e.clone());
            }
        }
    }
    out
}

/// The keys of `user`'s events, in delivery order.
pub fn keys_of(events: &[Value], user: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["user"] == user)
        .map(key)
        .collect()
}

/// Checks the shape of one event.
pub fn check_event_shape(e: &Value) {
    assert!(e["id"].as_str().is_some_and(|s| !s.is_empty()), "id: {e}");
    assert!(e["user"].is_string(), "user: {e}");
    let kind = e["type"].as_str().unwrap_or_else(|| panic!("type: {e}"));
    assert!(
        matches!(
            kind,
            "user.online" | "user.offline" | "user.away" | "member.joined" | "member.left"
        ),
        "unknown type: {e}"
    );
    assert_eq!(
        e["channel"].is_string(),
        kind.starts_with("member."),
        "channel only on member events: {e}"
    );
    let at = e["at"].as_str().unwrap_or_else(|| panic!("at: {e}"));
    chrono::DateTime::parse_from_rfc3339(at).unwrap_or_else(|err| panic!("at {at}: {err}"));
    if matches!(kind, "user.offline" | "member.left") {
        assert!(
            matches!(
                e["reason"].as_str(),
                Some("left" | "timeout" | "logout" | "kicked")
            ),
            "reason: {e}"
        );
    }
}

/// Asserts that `user`'s events come in a lifecycle order: `user.online`
/// before its joins, each channel's join before its leave, and leaves before
/// `user.offline`.
pub fn check_user_order(events: &[Value], user: &str) {
    let mine: Vec<&Value> = events.iter().filter(|e| e["user"] == user).collect();
    let shown = || keys_of(events, user).join(", ");
    let mut online = false;
    let mut joined: HashSet<String> = HashSet::new();
    for e in &mine {
        let ch = e["channel"].as_str().unwrap_or("").to_owned();
        match e["type"].as_str().unwrap() {
            "user.online" => {
                assert!(!online, "{user}: online twice: {}", shown());
                online = true;
            }
            "user.offline" => {
                assert!(online, "{user}: offline before online: {}", shown());
                assert!(
                    joined.is_empty(),
                    "{user}: offline before leaving {joined:?}: {}",
                    shown()
                );
                online = false;
            }
            "member.joined" => {
                assert!(online, "{user}: joined {ch} while offline: {}", shown());
                assert!(
                    joined.insert(ch.clone()),
                    "{user}: joined {ch} twice: {}",
                    shown()
                );
            }
            "member.left" => {
                assert!(
                    joined.remove(&ch),
                    "{user}: left {ch} without joining: {}",
                    shown()
                );
            }
            _ => {}
        }
    }
}

/// Parses an RFC 3339 time into unix milliseconds.
pub fn unix_ms(rfc3339: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("not RFC 3339: {rfc3339}: {e}"))
        .timestamp_millis() as u64
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
