//! The HTTP API, `/metrics`, `/healthz` and `/readyz`, black box against the
//! real binary: what the API says must agree with what the sockets see.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An HTTP client for one server, with its API key.
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
        let res = req.send().await.expect("HTTP request");
        let status = res.status();
        let text = res.text().await.expect("HTTP body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}), status {status}: {text:?}"));
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.key),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .json(&body),
        )
        .await
    }

    /// GET that must answer 200; returns the body.
    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    async fn post_ok(&self, path: &str, body: Value) -> Value {
        let (status, out) = self.post(path, body).await;
        assert_eq!(status, StatusCode::OK, "POST {path}: {out}");
        out
    }

    /// Every page of a listing, following `next_cursor`; returns the items.
    async fn pages(&self, path: &str, key: &str, limit: usize) -> (Vec<Value>, usize) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut url = format!("{path}{sep}limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let body = self.ok(&url).await;
            pages += 1;
            let page = body[key]
                .as_array()
                .unwrap_or_else(|| panic!("{url}: no {key} array: {body}"));
            assert!(page.len() <= limit, "{url}: page over the limit");
            items.extend(page.iter().cloned());
            match &body["next_cursor"] {
                Value::Null => break,
                Value::String(c) => {
                    assert!(!page.is_empty(), "{url}: empty page with a next_cursor");
                    cursor = Some(c.clone());
                }
                other => panic!("{url}: next_cursor is {other}"),
            }
            assert!(pages < 10_000, "pagination does not end");
        }
        (items, pages)
    }
}

/// Asserts the error shape `{"error": {"code", "message"}}` with `status`.
fn assert_error(what: &str, got: (StatusCode, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(s.as_u16(), status, "{what}: status, body {body}");
    assert_eq!(body["error"]["code"], code, "{what}: code in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: error without a message: {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "{what}: only `error` at the top level: {body}"
    );
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

fn user_ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|u| u["user"].as_str().expect("user id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_reads_agree_with_what_sockets_see() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let mut alice1 = s.user("alice").await;
    let mut alice2 = s.user("alice").await;
    alice1.enter("room:1", json!({"x": 1})).await;
    alice2.enter("doc:7", json!({})).await;
    let mut bob = s.user("bob").await;
    let seen = bob.watch(&["alice", "bob"]).await;

    let a = api.ok("/v1/users/alice").await;
    assert_eq!(a["user"], "alice", "{a}");
    assert_eq!(a["status"], "online", "{a}");
    assert_eq!(
        a["status"], seen["users"]["alice"]["status"],
        "{a} vs {seen}"
    );
    assert_eq!(a["since"], seen["users"]["alice"]["since"], "{a} vs {seen}");
    assert!(
        is_rfc3339(&a["since"]) && is_rfc3339(&a["last_seen"]),
        "{a}"
    );
    assert_eq!(a["connections"], 2, "{a}");
    assert_eq!(a["channels"], json!(["doc:7", "room:1"]), "{a}");
    let b = api.ok("/v1/users/bob").await;
    assert_eq!(b["connections"], 1, "{b}");
    assert_eq!(b["channels"], json!([]), "{b}");

    // Away on every connection: the watcher and the API both say away.
    alice1.ok(json!({"t": "status", "status": "away"})).await;
    alice2.ok(json!({"t": "status", "status": "away"})).await;
    let p = bob.expect_status("alice", "away").await;
    let a = api.ok("/v1/users/alice").await;
    assert_eq!(a["status"], "away", "{a}");
    assert_eq!(a["since"], p["users"]["alice"]["since"], "{a} vs {p}");

    let q = api
        .post_ok(
            "/v1/users/query",
            json!({"users": ["alice", "bob", "nobody"]}),
        )
        .await;
    assert_eq!(q["users"]["alice"]["status"], "away", "{q}");
    assert_eq!(q["users"]["alice"]["since"], a["since"], "{q}");
    assert_eq!(q["users"]["bob"]["status"], "online", "{q}");
    assert!(is_rfc3339(&q["users"]["bob"]["last_seen"]), "{q}");
    assert_eq!(
        q["users"]["nobody"],
        json!({"status": "offline", "since": null, "last_seen": null}),
        "{q}"
    );

    let all = api.ok("/v1/users").await;
    assert_eq!(user_ids(all["users"].as_array().unwrap()), ["alice", "bob"]);
    assert_eq!(all["next_cursor"], Value::Null);
    let away = api.ok("/v1/users?status=away").await;
    assert_eq!(user_ids(away["users"].as_array().unwrap()), ["alice"]);
    assert_eq!(away["users"][0]["connections"], 2, "{away}");
    let online = api.ok("/v1/users?status=online").await;
    assert_eq!(user_ids(online["users"].as_array().unwrap()), ["bob"]);
    assert_error(
        "status=offline",
        api.get("/v1/users?status=offline").await,
        400,
        "bad_request",
    );
    assert_error(
        "limit over 1000",
        api.get("/v1/users?limit=1001").await,
        400,
        "bad_request",
    );
    assert_error(
        "bad cursor",
        api.get("/v1/users?cursor=%21%21").await,
        400,
        "bad_request",
    );

    // A user who logged out is offline with a last_seen, and still known.
    alice1.send(json!({"t": "bye"})).await;
    alice2.send(json!({"t": "bye"})).await;
    bob.expect_status("alice", "offline").await;
    let a = api.ok("/v1/users/alice").await;
    assert_eq!(a["status"], "offline", "{a}");
    assert_eq!(a["connections"], 0, "{a}");
    assert!(is_rfc3339(&a["last_seen"]), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_seen_user_is_404_and_bad_ids_are_400() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    assert_error(
        "never seen",
        api.get("/v1/users/ghost").await,
        404,
        "not_found",
    );
    let long = "x".repeat(201);
    assert_error(
        "201-byte id",
        api.get(&format!("/v1/users/{long}")).await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_query_limits() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let ids: Vec<String> = (0..1001).map(|i| format!("user-{i}")).collect();
    let q = api
        .post_ok("/v1/users/query", json!({"users": &ids[..1000]}))
        .await;
    assert_eq!(q["users"].as_object().unwrap().len(), 1000);
    assert_error(
        "1001 ids",
        api.post("/v1/users/query", json!({"users": ids})).await,
        400,
        "limit_exceeded",
    );
    assert_error(
        "no ids",
        api.post("/v1/users/query", json!({"users": []})).await,
        400,
        "bad_request",
    );
    assert_error(
        "users not an array",
        api.post("/v1/users/query", json!({"users": "alice"})).await,
        400,
        "bad_request",
    );
    assert_error(
        "an empty id",
        api.post("/v1/users/query", json!({"users": [""]})).await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_visits_every_online_user_exactly_once() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let users: Vec<String> = (0..2500).map(|i| format!("p{i:05}")).collect();
    let drones = connect_drones(&s, &users, 200).await;
    let count = api.ok("/v1/users?limit=1").await;
    assert!(count["next_cursor"].is_string(), "{count}");

    let (items, pages) = api.pages("/v1/users", "users", 1000).await;
    assert_eq!(pages, 3, "2,500 users in pages of 1,000");
    let ids = user_ids(&items);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 2500, "every user once");
    assert_eq!(distinct.len(), 2500, "no user twice");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");
    assert_eq!(ids, users);
    assert!(
        items
            .iter()
            .all(|u| u["status"] == "online" && u["connections"] == 1 && is_rfc3339(&u["since"]))
    );

    let (online, _) = api.pages("/v1/users?status=online", "users", 700).await;
    assert_eq!(online.len(), 2500);
    let (away, pages) = api.pages("/v1/users?status=away", "users", 1000).await;
    assert!(away.is_empty() && pages == 1);
    drop(drones);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_list_with_prefix_and_pagination() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let mut a = s.user("a").await;
    let mut b = s.user("b").await;
    for i in 0..25 {
        a.enter(&format!("team:{i:02}"), json!({})).await;
    }
    for i in 0..5 {
        b.enter(&format!("room:{i}"), json!({})).await;
    }
    // team:00 gets a second member; watch:1 has a subscriber and no member
    // (it exists all the same).
    b.enter("team:00", json!({})).await;
    let mut c = s.user("c").await;
    c.subscribe("watch:1").await;

    let (teams, pages) = api.pages("/v1/channels?prefix=team:", "channels", 10).await;
    assert_eq!(pages, 3);
    let names: Vec<&str> = teams
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..25).map(|i| format!("team:{i:02}")).collect();
    assert_eq!(names, want);
    assert_eq!(
        teams[0],
        json!({"channel": "team:00", "members": 2, "connections": 2})
    );
    assert_eq!(
        teams[1],
        json!({"channel": "team:01", "members": 1, "connections": 1})
    );

    let (all, _) = api.pages("/v1/channels", "channels", 7).await;
    assert_eq!(all.len(), 31, "25 team, 5 room, 1 watch: {all:?}");
    let (rooms, _) = api
        .pages("/v1/channels?prefix=room", "channels", 1000)
        .await;
    assert_eq!(rooms.len(), 5);
    let (none, _) = api.pages("/v1/channels?prefix=zzz", "channels", 10).await;
    assert!(none.is_empty());
    let w = api.ok("/v1/channels/watch:1").await;
    assert_eq!(
        w,
        json!({"channel": "watch:1", "members": 0, "connections": 0})
    );

    let t = api.ok("/v1/channels/team:00").await;
    assert_eq!(
        t,
        json!({"channel": "team:00", "members": 2, "connections": 2})
    );
    let unused = api.ok("/v1/channels/nothing:here").await;
    assert_eq!(
        unused,
        json!({"channel": "nothing:here", "members": 0, "connections": 0})
    );
    // Names with `/` are percent-encoded in the path.
    b.enter("org/1", json!({})).await;
    let slash = api.ok("/v1/channels/org%2F1").await;
    assert_eq!(slash["members"], 1, "{slash}");
    assert_error(
        "invalid name",
        api.get("/v1/channels/bad%20name").await,
        400,
        "bad_request",
    );
    assert_error(
        "bad limit",
        api.get("/v1/channels?limit=0").await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_pagination() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let mut clients = Vec::new();
    for i in 0..25 {
        let user = format!("m{i:02}");
        let mut c = s
            .connect(Some(&s.token_info(&user, json!({"name": user}))))
            .await;
        c.enter("big:1", json!({"i": i})).await;
        clients.push(c);
    }
    // A second connection of m00: still 25 members, 26 connections.
    let mut again = s.user("m00").await;
    again.enter("big:1", json!({"i": 0})).await;

    let occ = api.ok("/v1/channels/big:1").await;
    assert_eq!(
        occ,
        json!({"channel": "big:1", "members": 25, "connections": 26})
    );

    let (members, pages) = api.pages("/v1/channels/big:1/members", "members", 10).await;
    assert_eq!(pages, 3);
    let ids = user_ids(&members);
    let want: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
    assert_eq!(ids, want, "every member once, in id order");
    let m0 = &members[0];
    assert_eq!(m0["conns"], 2, "{m0}");
    assert_eq!(m0["data"]["i"], 0, "{m0}");
    // m00's second connection (no info claim) wrote last; m01's data still
    // has the token's trusted info.
    assert_eq!(m0["data"], json!({"i": 0}), "{m0}");
    assert_eq!(members[1]["data"]["info"]["name"], "m01", "{}", members[1]);
    assert!(is_rfc3339(&m0["since"]), "{m0}");
    assert_eq!(members[7]["data"]["i"], 7);
    assert_eq!(members[7]["conns"], 1);

    // The API's members are the sockets' members.
    let mut obs = s.user("obs").await;
    let mut view = obs.view("big:1").await;
    // The snapshot is the state as of the channel's last frame; changes of
    // a coalescing window still open follow in the next one.
    while view.members.len() < ids.len() {
        let f = obs
            .expect("the rest of the window", |f| is_event(f, "big:1"))
            .await;
        view.apply(&f);
    }
    let api_set: BTreeSet<String> = ids.into_iter().collect();
    let ws_set: BTreeSet<String> = view.members.keys().cloned().collect();
    assert_eq!(api_set, ws_set);

    let empty = api.ok("/v1/channels/nobody:here/members").await;
    assert_eq!(empty, json!({"members": [], "next_cursor": null}));
    assert_error(
        "invalid channel",
        api.get("/v1/channels/bad%20name/members").await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_closes_4409_and_user_is_offline_at_once() {
    // A long grace window: offline now can only come from the kick.
    let s = Server::start(Opts::new().grace(60_000)).await;
    let api = Api::new(&s);
    let mut alice1 = s.user("alice").await;
    let mut alice2 = s.user("alice").await;
    alice1.enter("room:k", json!({})).await;
    let mut bob = s.user("bob").await;
    bob.watch(&["alice"]).await;
    bob.subscribe("room:k").await;

    let out = api.post_ok("/v1/users/alice/disconnect", json!({})).await;
    assert_eq!(out, json!({"user": "alice", "disconnected": 2}));
    assert_eq!(alice1.closed().await, Some(4409));
    assert_eq!(alice2.closed().await, Some(4409));
    let (_, leave) = bob
        .until("leave of alice", |f| is_leave(f, "room:k", "alice"))
        .await;
    assert_eq!(leave["reason"], "kicked", "{leave}");
    bob.expect_status("alice", "offline").await;

    let a = api.ok("/v1/users/alice").await;
    assert_eq!(a["status"], "offline", "{a}");
    assert_eq!(a["connections"], 0, "{a}");
    let occ = api.ok("/v1/channels/room:k").await;
    assert_eq!(occ["members"], 0, "{occ}");

    // Idempotent.
    let again = api.post_ok("/v1/users/alice/disconnect", json!({})).await;
    assert_eq!(again, json!({"user": "alice", "disconnected": 0}));
    let ghost = api.post_ok("/v1/users/ghost/disconnect", json!({})).await;
    assert_eq!(ghost["disconnected"], 0);

    // A fresh connection works (a kick is not a ban).
    let mut back = s.user("alice").await;
    back.barrier().await;
    bob.expect_status("alice", "online").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_broadcast_reaches_subscribers_from_null() {
    let s = Server::start(Opts::new().max_data_bytes(64)).await;
    let api = Api::new(&s);
    let mut bob = s.user("bob").await;
    bob.subscribe("room:m").await;
    let mut carol = s.user("carol").await;
    carol.enter("room:m", json!({})).await;
    let mut other = s.user("other").await;
    other.subscribe("room:other").await;

    let out = api
        .post_ok(
            "/v1/channels/room:m/messages",
            json!({"data": {"hello": "world"}}),
        )
        .await;
    assert_eq!(out, json!({"delivered": 2}));
    for c in [&mut bob, &mut carol] {
        let m = c.expect("message", |f| f["t"] == "message").await;
        assert_eq!(
            m,
            json!({"t": "message", "channel": "room:m", "from": null, "data": {"hello": "world"}})
        );
    }
    other
        .expect_none("message elsewhere", Duration::from_millis(200), |f| {
            f["t"] == "message"
        })
        .await;

    let nobody = api
        .post_ok("/v1/channels/empty:1/messages", json!({"data": 1}))
        .await;
    assert_eq!(nobody, json!({"delivered": 0}));
    assert_error(
        "data over the limit",
        api.post(
            "/v1/channels/room:m/messages",
            json!({"data": "x".repeat(100)}),
        )
        .await,
        413,
        "too_large",
    );
    assert_error(
        "no data",
        api.post("/v1/channels/room:m/messages", json!({})).await,
        400,
        "bad_request",
    );
    assert_error(
        "invalid channel",
        api.post("/v1/channels/bad%20name/messages", json!({"data": 1}))
            .await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_error_shapes() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let http = &api.http;
    let url = |p: &str| format!("{}{p}", api.base);
    let gets = [
        "/v1/users/alice",
        "/v1/users",
        "/v1/channels",
        "/v1/channels/room:1",
        "/v1/channels/room:1/members",
        "/v1/openapi.json",
    ];
    let posts = [
        ("/v1/users/query", json!({"users": ["a"]})),
        ("/v1/users/alice/disconnect", json!({})),
        ("/v1/channels/room:1/messages", json!({"data": 1})),
    ];
    for p in gets {
        let res = http.get(url(p)).send().await.unwrap();
        assert_eq!(
            res.headers()
                .get("www-authenticate")
                .and_then(|h| h.to_str().ok()),
            Some("Bearer"),
            "{p}"
        );
        assert_error(p, api.send(http.get(url(p))).await, 401, "unauthorized");
        assert_error(
            p,
            api.send(http.get(url(p)).bearer_auth("wrong-key")).await,
            403,
            "forbidden",
        );
        assert_error(
            p,
            api.send(
                http.get(url(p))
                    .header("authorization", format!("Basic {}", api.key)),
            )
            .await,
            401,
            "unauthorized",
        );
        assert_error(
            p,
            api.send(http.get(url(p)).header("authorization", "Bearer"))
                .await,
            401,
            "unauthorized",
        );
    }
    for (p, body) in &posts {
        assert_error(
            p,
            api.send(http.post(url(p)).json(body)).await,
            401,
            "unauthorized",
        );
        assert_error(
            p,
            api.send(http.post(url(p)).bearer_auth(&s.secret).json(body))
                .await,
            403,
            "forbidden",
        );
    }
    // A refused request changed nothing: alice was never seen.
    assert_error("after", api.get("/v1/users/alice").await, 404, "not_found");

    let json_post = |p: &str, body: &'static str| {
        http.post(url(p))
            .bearer_auth(&api.key)
            .header("content-type", "application/json")
            .body(body)
    };
    assert_error(
        "bad JSON",
        api.send(json_post("/v1/users/query", "{\"users\": ["))
            .await,
        400,
        "bad_request",
    );
    assert_error(
        "wrong type",
        api.send(json_post("/v1/users/query", "{\"users\": 5}"))
            .await,
        400,
        "bad_request",
    );
    assert_error(
        "wrong content type",
        api.send(
            http.post(url("/v1/users/query"))
                .bearer_auth(&api.key)
                .header("content-type", "text/plain")
                .body("{\"users\": [\"a\"]}"),
        )
        .await,
        415,
        "bad_request",
    );
    assert_error(
        "body too large",
        api.send(
            http.post(url("/v1/users/query"))
                .bearer_auth(&api.key)
                .header("content-type", "application/json")
                // The server answers 413 without reading the body and then
                // closes; the client must not reuse that connection.
                .header("connection", "close")
                .body(vec![b' '; 3 * 1024 * 1024]),
        )
        .await,
        413,
        "too_large",
    );
    assert_error(
        "unknown route",
        api.get("/v1/nothing/here").await,
        404,
        "not_found",
    );
    assert_error(
        "unknown route without key",
        api.send(http.get(url("/nothing"))).await,
        404,
        "not_found",
    );
    assert_error(
        "wrong method",
        api.send(http.delete(url("/v1/users")).bearer_auth(&api.key))
            .await,
        405,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_every_path() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let doc = api.ok("/v1/openapi.json").await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for p in [
        "/v1/users/{user}",
        "/v1/users/query",
        "/v1/users",
        "/v1/users/{user}/disconnect",
        "/v1/channels",
        "/v1/channels/{channel}",
        "/v1/channels/{channel}/members",
        "/v1/channels/{channel}/messages",
        "/v1/openapi.json",
        "/v1/ws",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi.json lacks {p}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"],
        json!({"type": "http", "scheme": "bearer", "description": "The server's API key (`--api-key`)"})
    );
    assert_eq!(doc["security"], json!([{"api_key": []}]));
    assert!(doc["paths"]["/v1/users/query"]["post"]["requestBody"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_need_no_key() {
    let s = Server::start(Opts::new()).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", s.addr);
    let mut alice = s.user("alice").await;
    alice.enter("room:1", json!({})).await;
    alice.barrier().await;

    for p in ["/healthz", "/readyz"] {
        let res = http.get(format!("{base}{p}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{p}");
        assert_eq!(res.text().await.unwrap().trim(), "ok", "{p}");
    }
    let res = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample of {name} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    for name in [
        "presenced_connections",
        "presenced_users_online",
        "presenced_channels",
        "presenced_members",
        "presenced_frames_in_total",
        "presenced_frames_out_total",
        "presenced_dropped_broadcasts_total",
        "presenced_resyncs_total",
        "presenced_webhook_queue_depth",
        "presenced_webhook_failures_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no {name} in\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE presenced_store_write_seconds histogram"),
        "{text}"
    );
    assert_eq!(value("presenced_connections"), 1.0);
    assert_eq!(value("presenced_users_online"), 1.0);
    assert_eq!(value("presenced_channels"), 1.0);
    assert_eq!(value("presenced_members"), 1.0);
    assert!(value("presenced_frames_in_total") >= 2.0, "enter and ping");
    assert!(value("presenced_frames_out_total") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_queries_get_messages_of_ours_not_the_parsers() {
    let s = Server::start(Opts::new()).await;
    let api = Api::new(&s);
    let raw = |body: &'static str| {
        api.http
            .post(format!("{}/v1/users/query", api.base))
            .bearer_auth(&api.key)
            .header("content-type", "application/json")
            .body(body)
    };
    let cases = [
        ("truncated JSON", raw(r#"{"users": ["#)),
        (
            "a duplicate field",
            raw(r#"{"users": ["a"], "users": ["b"]}"#),
        ),
        ("a wrong type", raw(r#"{"users": [1]}"#)),
    ];
    for (what, req) in cases {
        let got = api.send(req).await;
        let message = got.1["error"]["message"].as_str().unwrap_or("").to_owned();
        assert_error(what, got, 400, "bad_request");
        for internal in [
            "line",
            "column",
            "EOF",
            "duplicate",
            "invalid type",
            "serde",
            "`",
        ] {
            assert!(
                !message.contains(internal),
                "{what}: {message:?} passes the parser's text through"
            );
        }
    }
    let got = api.get("/v1/users?limit=many").await;
    let message = got.1["error"]["message"].as_str().unwrap_or("").to_owned();
    assert_error("a bad query", got, 400, "bad_request");
    assert!(!message.contains("invalid digit"), "{message}");
}
