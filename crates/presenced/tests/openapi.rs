//! The OpenAPI document says what the server does: every request of the
//! documented form is taken, every other one refused (what schemathesis
//! checks in `scripts/schemathesis`, here case by case against the real
//! binary).

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(s: &Server) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            base: format!("http://{}", s.addr),
            key: s.api_key.clone(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let res = req
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("HTTP request");
        let status = res.status();
        let text = res.text().await.expect("HTTP body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}), status {status}: {text:?}"));
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// POST of a raw JSON text.
    async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        self.send(req).await
    }

    async fn document(&self) -> Value {
        let (status, doc) = self.get("/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        doc
    }
}

/// The schema of query parameter `name` of `GET path`.
fn query_schema<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name && p["in"] == "query"))
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("GET {path} has no query parameter {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cursor_of_the_documented_form_is_a_position() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let mut alice = s.user("alice").await;
    alice.enter("room:1", json!({})).await;
    let doc = api.document().await;
    let form = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$";
    for (path, _) in [
        ("/v1/users", "users"),
        ("/v1/channels", "channels"),
        ("/v1/channels/{channel}/members", "members"),
    ] {
        assert_eq!(
            query_schema(&doc, path, "cursor")["pattern"],
            form,
            "{path}"
        );
    }
    // base64url without padding: lengths 2 and 3 modulo 4, whatever the
    // last character's unused bits and whether the bytes are UTF-8.
    for cursor in ["86", "CGXCe0X", "y_-_", "__8"] {
        for path in ["/v1/users", "/v1/channels", "/v1/channels/room:1/members"] {
            let (status, body) = api.get(&format!("{path}?cursor={cursor}")).await;
            assert_eq!(status, StatusCode::OK, "{path}?cursor={cursor}: {body}");
        }
    }
    // A cursor the server made still pages as before.
    let (_, page) = api.get("/v1/users?limit=1").await;
    assert_eq!(page["users"][0]["user"], "alice", "{page}");
    // Outside the form: 400.
    for cursor in ["y", "ABCDE", "a%2Bb"] {
        let (status, body) = api.get(&format!("/v1/users?cursor={cursor}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "cursor {cursor}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_query_parameters_are_documented_as_absent() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let doc = api.document().await;
    // `status=` lists both, as the document's pattern now says.
    assert_eq!(
        query_schema(&doc, "/v1/users", "status")["pattern"],
        "^(online|away)?$"
    );
    // `limit=` is the default page: an integer from 1 to 1,000, or empty.
    for path in [
        "/v1/users",
        "/v1/channels",
        "/v1/channels/{channel}/members",
    ] {
        assert_eq!(
            query_schema(&doc, path, "limit")["anyOf"],
            json!([
                {"type": "integer", "minimum": 1, "maximum": 1000},
                {"type": "string", "maxLength": 0}
            ]),
            "{path}"
        );
    }
    for q in ["status=", "limit=", "status=&limit=&cursor="] {
        let (status, body) = api.get(&format!("/v1/users?{q}")).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
    }
    for q in ["status=offline", "limit=0", "limit=1001", "limit=x"] {
        let (status, body) = api.get(&format!("/v1/users?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_must_be_an_object() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let mut bob = s.user("bob").await;
    bob.subscribe("lobby").await;
    // serde reads a struct from an array of its fields' values too: such a
    // body published a message and answered a query.
    for (path, body) in [
        ("/v1/channels/lobby/messages", r#"[[null]]"#),
        ("/v1/channels/lobby/messages", r#"  ["hi"]"#),
        ("/v1/users/query", r#"[["bob"]]"#),
    ] {
        let (status, out) = api.post(path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {out}");
        assert_eq!(out["error"]["code"], "bad_request", "{out}");
    }
    // Objects, with white space around them, are taken as before.
    let (status, out) = api
        .post("/v1/channels/lobby/messages", " \n{\"data\": \"x\"}\n")
        .await;
    assert_eq!((status, &out), (StatusCode::OK, &json!({"delivered": 1})));
    let (status, out) = api.post("/v1/users/query", r#"{"users": ["bob"]}"#).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["users"]["bob"]["status"], "online", "{out}");
    // The refused bodies delivered nothing: the first message is the good one.
    let m = bob.expect("message", |f| f["t"] == "message").await;
    assert_eq!(m["data"], "x", "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_states_ids_events_and_the_upgrade() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let doc = api.document().await;
    let schemas = &doc["components"]["schemas"];

    // Each id of a bulk query, as the server checks it.
    let users = &schemas["UsersQueryBody"]["properties"]["users"];
    assert_eq!(
        users["items"],
        json!({"type": "string", "minLength": 1, "maxLength": 200})
    );
    assert_eq!(
        (&users["minItems"], &users["maxItems"]),
        (&json!(1), &json!(1000))
    );

    // The event stream, one event at a time: its name and its data.
    let stream = &doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"];
    assert_eq!(
        stream["text/event-stream"]["schema"]["$ref"],
        "#/components/schemas/SseEventOut"
    );
    let event = &schemas["SseEventOut"];
    assert_eq!(event["required"], json!(["event", "data"]), "{event}");
    assert_eq!(
        event["properties"]["event"]["pattern"],
        "^(ready|presence|lagged)$"
    );

    // The headers a WebSocket upgrade needs.
    let params = doc["paths"]["/v1/ws"]["get"]["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p["in"] == "header" && p["required"] == true)
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        required,
        [
            "Connection",
            "Upgrade",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Key"
        ]
    );
}
