//! The pages and routes over HTTP, against the real router; and their
//! OpenAPI description. The unit tests of one file are at its bottom.

use std::time::Duration;

use axum::http::header;
use presenced_engine::PresenceEvent;
use serde_json::{Value, json};

use super::{DevTokenOut, routes};
use crate::clock::now_ms;
use crate::state::AppState;
use crate::stats::Sample;

#[test]
fn openapi_describes_the_routes() {
    let (_, doc) = routes().split_for_parts();
    let doc: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
    for p in ["/v1/dev/token", "/v1/events", "/v1/stats"] {
        assert!(doc["paths"].get(p).is_some(), "missing {p}");
    }
    assert!(doc["components"]["schemas"].get("StatsOut").is_some());
}

struct TestServer {
    base: String,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn start(dev_tokens: bool) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let args = crate::config::ServeArgs {
        data_dir: Some(dir.path().join("data")),
        jwt_secret: Some("web-test-secret-0123456789abcdef".into()),
        api_key: Some("web-test-key".into()),
        dev_tokens: Some(dev_tokens),
        ..Default::default()
    };
    let settings = crate::config::Settings::load(args).unwrap();
    let state = AppState::new(settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = crate::server::app(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestServer {
        base: format!("http://{addr}"),
        state,
        _dir: dir,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[tokio::test]
async fn pages_and_assets_are_served_with_types_and_csp() {
    let s = start(false).await;
    let c = http();
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/admin", "text/html; charset=utf-8"),
        ("/assets/demo.js", "text/javascript; charset=utf-8"),
        (
            "/assets/vendor/presenced-client/index.js",
            "text/javascript; charset=utf-8",
        ),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/favicon.ico", "image/svg+xml"),
    ] {
        let res = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()[header::CONTENT_TYPE], ty, "{path}");
        assert!(
            res.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        assert_eq!(res.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let tag = res.headers()[header::ETAG].clone();
        let again = c
            .get(format!("{}{path}", s.base))
            .header(header::IF_NONE_MATCH, tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let html = c.get(format!("{}/", s.base)).send().await.unwrap();
    let html = html.text().await.unwrap();
    assert!(html.contains(r#"content="false""#) && !html.contains("__DEV_TOKENS__"));

    for path in ["/assets/nope.js", "/assets/../Cargo.toml", "/assets/"] {
        let res = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn dev_tokens_only_when_enabled() {
    let off = start(false).await;
    let c = http();
    let res = c
        .post(format!("{}/v1/dev/token", off.base))
        .json(&json!({"user": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    // Not even a bad body tells that the route could exist.
    let res = c
        .post(format!("{}/v1/dev/token", off.base))
        .body("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let on = start(true).await;
    let html = c.get(format!("{}/", on.base)).send().await.unwrap();
    assert!(html.text().await.unwrap().contains(r#"content="true""#));
    let res = c
        .post(format!("{}/v1/dev/token", on.base))
        .json(&json!({"user": "alice", "name": "Alice A."}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out: DevTokenOut = res.json().await.unwrap();
    let claims = on.state.verifier.verify(&out.token).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.info.as_ref().unwrap()["name"], "Alice A.");
    assert!(claims.exp.is_some());

    let res = c
        .post(format!("{}/v1/dev/token", on.base))
        .json(&json!({"user": "bob"}))
        .send()
        .await
        .unwrap();
    let out: DevTokenOut = res.json().await.unwrap();
    let claims = on.state.verifier.verify(&out.token).unwrap();
    assert_eq!(claims.info.as_ref().unwrap()["name"], "bob");

    for bad in [
        json!({"user": ""}),
        json!({"user": "a b"}),
        json!({"user": "x".repeat(201)}),
        json!({"user": "ok", "name": "n".repeat(65)}),
        json!({"user": "ok", "name": "a\u{7}b"}),
        json!({"name": "no user"}),
    ] {
        let res = c
            .post(format!("{}/v1/dev/token", on.base))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
    }
}

/// The document states what the route takes: the user id's alphabet, the
/// name as given (at most 64 characters, no control character, even at
/// the ends where it is trimmed), and the 413 and 415 of any JSON body.
#[tokio::test]
async fn dev_token_takes_what_the_document_says() {
    let (_, doc) = routes().split_for_parts();
    let doc: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
    let body = &doc["components"]["schemas"]["DevTokenBody"]["properties"];
    assert_eq!(body["user"]["pattern"], "^[A-Za-z0-9_.@:+=-]{1,200}$");
    assert_eq!(body["name"]["maxLength"], 64, "{body}");
    assert_eq!(
        body["name"]["pattern"],
        "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    );
    let responses = &doc["paths"]["/v1/dev/token"]["post"]["responses"];
    for status in ["200", "400", "404", "413", "415", "503"] {
        assert!(responses.get(status).is_some(), "{status} not documented");
    }

    let on = start(true).await;
    let c = http();
    let post = |body: Value| {
        c.post(format!("{}/v1/dev/token", on.base))
            .json(&body)
            .send()
    };
    let spaced = format!("  {}", "n".repeat(64));
    for bad in [json!("\tBob"), json!("Bob\n"), json!(spaced)] {
        let res = post(json!({"user": "ok", "name": bad})).await.unwrap();
        assert_eq!(res.status(), 400, "name {bad}");
    }
    let res = post(json!({"user": "ok", "name": format!(" {} ", "n".repeat(62))}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "64 characters with the spaces");
    let out: DevTokenOut = res.json().await.unwrap();
    let claims = on.state.verifier.verify(&out.token).unwrap();
    assert_eq!(
        claims.info.as_ref().unwrap()["name"],
        "n".repeat(62),
        "trimmed"
    );
    let res = post(json!({"user": "ok", "name": "   "})).await.unwrap();
    let out: DevTokenOut = res.json().await.unwrap();
    let claims = on.state.verifier.verify(&out.token).unwrap();
    assert_eq!(claims.info.as_ref().unwrap()["name"], "ok", "a blank name");
    let res = c
        .post(format!("{}/v1/dev/token", on.base))
        .body(r#"{"user": "ok"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415, "no content type");
}

#[tokio::test]
async fn events_and_stats_need_the_key() {
    let s = start(false).await;
    let c = http();
    for path in ["/v1/events", "/v1/stats"] {
        let res = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        let res = c
            .get(format!("{}{path}", s.base))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
    }
}

#[tokio::test]
async fn stats_report_counts_and_history() {
    let s = start(false).await;
    s.state.stats.push(Sample::take(&s.state.hub));
    let res = http()
        .get(format!("{}/v1/stats", s.base))
        .bearer_auth("web-test-key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["interval_ms"], 5000);
    assert_eq!(body["now"]["connections"], 0);
    assert_eq!(body["now"]["users"], 0);
    assert_eq!(body["history"].as_array().unwrap().len(), 1);
    assert!(body["history"][0]["at"].as_str().unwrap().ends_with('Z'));
}

/// Reads SSE events from a response until `want` of them arrived.
async fn read_events(res: &mut reqwest::Response, want: usize) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < want {
        let chunk = tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .expect("an SSE chunk in time")
            .unwrap()
            .expect("the stream goes on");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut name = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !data.is_empty() {
                out.push((name, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn event_feed_streams_presence_and_survives_lag() {
    let s = start(false).await;
    let mut res = http()
        .get(format!("{}/v1/events", s.base))
        .bearer_auth("web-test-key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let first = read_events(&mut res, 1).await;
    assert_eq!(first[0].0, "ready");

    let send = |ev: PresenceEvent| s.state.hub.emit_for_test(ev);
    send(PresenceEvent::UserOnline {
        user: "alice".into(),
        at: now_ms(),
    });
    let got = read_events(&mut res, 1).await;
    assert_eq!(got[0].0, "presence");
    assert_eq!(got[0].1["type"], "user.online");
    assert_eq!(got[0].1["user"], "alice");

    // Far more than the broadcast buffer at once: the feed says what it
    // missed and goes on.
    for i in 0..10_000u64 {
        send(PresenceEvent::UserAway {
            user: format!("u{i}").into(),
            at: now_ms(),
        });
    }
    send(PresenceEvent::UserOnline {
        user: "last".into(),
        at: now_ms(),
    });
    let mut saw_lagged = false;
    loop {
        let (name, data) = read_events(&mut res, 1).await.remove(0);
        if name == "lagged" {
            assert!(data["missed"].as_u64().unwrap() > 0);
            saw_lagged = true;
        }
        if data["user"] == "last" {
            break;
        }
    }
    assert!(saw_lagged);
}
