//! The web pages and what only they need: the live demo at `/`, the
//! dashboard at `/admin`, their static assets under `/assets/`, development
//! tokens (`POST /v1/dev/token`, only with `--dev-tokens`), and for the
//! dashboard a live feed of presence events (`GET /v1/events`, Server-Sent
//! Events) and connection statistics with an hour of history (`GET
//! /v1/stats`).
//!
//! Every file under `web/` in the repository is compiled into the binary
//! (`include_bytes!`), so `presenced serve` alone serves the pages. The pages
//! are plain ES modules without a build step; they load the SDK from
//! `web/vendor/presenced-client/`, which `npm run build:web` in `clients/js`
//! generates and `scripts/check-web-assets` keeps current.
//!
//! Decisions (also in `docs/protocol.md`):
//! - `/v1/events` and `/v1/stats` need the API key like the rest of `/v1/`;
//!   `/v1/dev/token` needs none, and answers 404 `not_found` unless the
//!   server runs with `--dev-tokens` (whether or not the request is valid);
//! - the event feed is lossy under load: a subscriber that falls behind gets
//!   a `lagged` event saying how many events it missed, and the stream goes
//!   on (re-read `/v1/users` and `/v1/channels` for the whole picture);
//! - statistics are sampled every 5 s and kept for an hour, in memory only.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use presenced_engine::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::MAX_USER_ID_BYTES;
use crate::config::Secret;
use crate::http::{ApiError, ApiJson, ApiKey, ApiPath, ErrorBody};
use crate::state::AppState;
use crate::stats::{STATS_INTERVAL, Sample};

/// Lifetime of a development token.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Longest display name a development token carries (in characters).
pub const MAX_DEV_NAME_CHARS: usize = 64;

/// The pages' routes and the documented routes they read, merged into the
/// server's router (no fallback of their own: the API's JSON 404 answers
/// everything else).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(WebApiDoc::openapi())
        .route("/", get(demo_page))
        .route("/admin", get(admin_page))
        .route("/favicon.ico", get(favicon))
        .route("/assets/{*path}", get(asset))
        .routes(routes!(dev_token))
        .routes(routes!(events))
        .routes(routes!(stats))
}

// ----- static files ----------------------------------------------------------

/// A file under `web/` compiled into the binary, by its path there.
macro_rules! web_file {
    ($path:literal) => {
        (
            $path,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/", $path)) as &[u8],
        )
    };
}

/// The pages, with a placeholder the server fills in.
const DEMO_HTML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/index.html"));
const ADMIN_HTML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/admin.html"));

/// Everything served under `/assets/`. A unit test checks that every file
/// in `web/` is either here or one of the pages, so a new SDK module cannot
/// be forgotten.
static ASSETS: &[(&str, &[u8])] = &[
    web_file!("app.css"),
    web_file!("common.js"),
    web_file!("demo.js"),
    web_file!("admin.js"),
    web_file!("chart.js"),
    web_file!("favicon.svg"),
    web_file!("vendor/presenced-client/away.js"),
    web_file!("vendor/presenced-client/backoff.js"),
    web_file!("vendor/presenced-client/channel-plan.js"),
    web_file!("vendor/presenced-client/channel-view.js"),
    web_file!("vendor/presenced-client/channel.js"),
    web_file!("vendor/presenced-client/client.js"),
    web_file!("vendor/presenced-client/connection.js"),
    web_file!("vendor/presenced-client/emitter.js"),
    web_file!("vendor/presenced-client/errors.js"),
    web_file!("vendor/presenced-client/index.js"),
    web_file!("vendor/presenced-client/jwt.js"),
    web_file!("vendor/presenced-client/options.js"),
    web_file!("vendor/presenced-client/protocol.js"),
    web_file!("vendor/presenced-client/refset.js"),
    web_file!("vendor/presenced-client/requests.js"),
    web_file!("vendor/presenced-client/runtime.js"),
    web_file!("vendor/presenced-client/session-store.js"),
    web_file!("vendor/presenced-client/state-sync.js"),
    web_file!("vendor/presenced-client/throttle.js"),
    web_file!("vendor/presenced-client/token.js"),
    web_file!("vendor/presenced-client/version.js"),
    web_file!("vendor/presenced-client/link/link.js"),
    web_file!("vendor/presenced-client/link/transport.js"),
    web_file!("vendor/presenced-client/share/election.js"),
    web_file!("vendor/presenced-client/share/index.js"),
    web_file!("vendor/presenced-client/share/messages.js"),
    web_file!("vendor/presenced-client/share/shared-link.js"),
    web_file!("vendor/presenced-client/share/tab-leader.js"),
];

/// Files in `web/` that are not served (build configuration).
#[cfg(test)]
const NOT_SERVED: &[&str] = &["tsconfig.vendor.json"];

/// Scripts and styles from this origin only, no inline code, no framing;
/// `connect-src 'self'` covers the same-origin WebSocket.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// FNV-1a: a cheap, stable validator for the embedded files.
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}-{}\"", body.len())
}

/// A static file with its content type, security headers and an ETag
/// (`Cache-Control: no-cache`: always revalidated, so a new binary's files
/// are picked up at once, and a 304 costs no body).
fn file_response(req: &HeaderMap, path: &str, body: Vec<u8>) -> Response {
    let tag = etag(&body);
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut headers = security_headers();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, v);
    }
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, body).into_response()
    }
}

fn security_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h
}

async fn demo_page(State(state): State<AppState>, req: HeaderMap) -> Response {
    // The page learns whether it can mint tokens without a probe request.
    let flag = if state.settings.values.dev_tokens {
        "true"
    } else {
        "false"
    };
    let html = DEMO_HTML.replace("__DEV_TOKENS__", flag);
    file_response(&req, "index.html", html.into_bytes())
}

async fn admin_page(req: HeaderMap) -> Response {
    file_response(&req, "admin.html", ADMIN_HTML.as_bytes().to_vec())
}

async fn favicon(req: HeaderMap) -> Response {
    asset_response(&req, "favicon.svg")
}

async fn asset(req: HeaderMap, ApiPath(path): ApiPath<String>) -> Response {
    asset_response(&req, &path)
}

fn asset_response(req: &HeaderMap, path: &str) -> Response {
    match ASSETS.iter().find(|(p, _)| *p == path) {
        Some((p, body)) => file_response(req, p, body.to_vec()),
        None => ApiError::not_found("no such asset").into_response(),
    }
}

// ----- development tokens ----------------------------------------------------

/// Passes only when the server runs with `--dev-tokens`; otherwise the
/// route does not exist (404), whatever the request.
pub struct DevTokensEnabled;

impl FromRequestParts<AppState> for DevTokensEnabled {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.settings.values.dev_tokens {
            Ok(DevTokensEnabled)
        } else {
            Err(ApiError::not_found(
                "development tokens are off; start the server with --dev-tokens",
            ))
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DevTokenBody {
    /// The token's `sub`: 1–200 bytes of `[A-Za-z0-9_.@:+=-]`.
    pub user: String,
    /// Display name, put in the token's `info` (default: the user id).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DevTokenOut {
    /// An HS256 JWT for `hello`.
    pub token: String,
    pub user: String,
    /// Seconds the token is valid for.
    pub expires_in: u64,
}

/// A user id a development token may carry: 1–200 bytes of
/// `[A-Za-z0-9_.@:+=-]` (safe in a URL path and in a log line).
pub fn valid_dev_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER_ID_BYTES
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@:+=-".contains(&b))
}

/// `POST /v1/dev/token {user, name?}` → `{token}`: an HS256 token for any
/// user, valid for an hour, with `info: {name}`. Only with `--dev-tokens`:
/// anybody who can reach the server can be anybody.
#[utoipa::path(
    post, path = "/v1/dev/token", tag = "development", security(()),
    request_body = DevTokenBody,
    responses(
        (status = 200, description = "A token valid for an hour", body = DevTokenOut),
        (status = 400, description = "Invalid user id or name", body = ErrorBody),
        (status = 404, description = "The server does not run with `--dev-tokens`", body = ErrorBody),
        (status = 503, description = "The server has no HMAC secret", body = ErrorBody),
    ),
)]
pub async fn dev_token(
    _: DevTokensEnabled,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DevTokenBody>,
) -> Result<Response, ApiError> {
    if !valid_dev_user(&body.user) {
        return Err(ApiError::bad_request(
            "user must be 1–200 bytes of [A-Za-z0-9_.@:+=-]",
        ));
    }
    let name = match body.name.as_deref().map(str::trim) {
        None | Some("") => body.user.clone(),
        Some(n) if n.chars().count() > MAX_DEV_NAME_CHARS => {
            return Err(ApiError::bad_request("name is longer than 64 characters"));
        }
        Some(n) if n.chars().any(char::is_control) => {
            return Err(ApiError::bad_request(
                "name must not contain control characters",
            ));
        }
        Some(n) => n.to_owned(),
    };
    let Some(secret) = state.settings.jwt_secret.as_ref().map(Secret::expose) else {
        return Err(ApiError::unavailable(
            "development tokens need an HMAC secret (--jwt-secret); this server only has a public key",
        ));
    };
    let token = crate::auth::sign_hs256(
        secret,
        &body.user,
        Some(json!({ "name": name })),
        Some(DEV_TOKEN_TTL),
    )
    .map_err(ApiError::internal)?;
    let out = DevTokenOut {
        token,
        user: body.user,
        expires_in: DEV_TOKEN_TTL.as_secs(),
    };
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(out),
    )
        .into_response())
}

// ----- the event feed --------------------------------------------------------

/// `GET /v1/events`: Server-Sent Events. First `ready`, then one `presence`
/// event per change (data: [`crate::events::feed_json`]); a subscriber that fell behind
/// gets `lagged` (`{"missed": n}`) and the stream goes on. Comments keep the
/// connection alive every 15 s. The stream ends when the server shuts down.
#[utoipa::path(
    get, path = "/v1/events", tag = "dashboard",
    responses(
        (status = 200, description = "Server-Sent Events: `ready`, then `presence` (data: an event like a webhook's, \
            `type` one of user.online, user.away, user.offline, member.joined, member.updated, member.left) \
            and `lagged` (`{\"missed\": n}`) when this subscriber fell behind", content_type = "text/event-stream", body = String),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
    ),
)]
pub async fn events(_: ApiKey, State(state): State<AppState>) -> impl IntoResponse {
    let rx = state.hub.subscribe_events();
    let shutdown = state.shutdown.clone();
    let ready = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("ready").data("{}"))
    });
    let feed = futures_util::stream::unfold((rx, shutdown), |(mut rx, shutdown)| async move {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = rx.recv() => match r {
                Ok(ev) => Event::default().event("presence").data(crate::events::feed_json(&ev).to_string()),
                Err(RecvError::Lagged(missed)) => Event::default()
                    .event("lagged")
                    .data(json!({ "missed": missed }).to_string()),
                Err(RecvError::Closed) => return None,
            },
        };
        Some((Ok(event), (rx, shutdown)))
    });
    let stream = futures_util::StreamExt::chain(ready, feed);
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        sse(stream),
    )
}

fn sse<S>(stream: S) -> impl IntoResponse
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

// ----- statistics ------------------------------------------------------------

fn sample_out(s: Sample) -> SampleOut {
    SampleOut {
        at: rfc3339(s.at),
        connections: s.connections,
        users: s.users,
        channels: s.channels,
        members: s.members,
    }
}

/// Counts at one moment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SampleOut {
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub at: String,
    /// Connections, live or inside grace.
    pub connections: usize,
    /// Users online or away.
    pub users: usize,
    /// Channels that exist.
    pub channels: usize,
    /// Members summed over all channels.
    pub members: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsOut {
    /// The counts now.
    pub now: SampleOut,
    /// Time between history samples (5,000).
    pub interval_ms: u64,
    /// The last hour, oldest first (kept in memory: empty after a restart).
    pub history: Vec<SampleOut>,
}

/// `GET /v1/stats`: `{now, interval_ms, history}`, each sample `{at,
/// connections, users, channels, members}`; history oldest first.
#[utoipa::path(
    get, path = "/v1/stats", tag = "dashboard",
    responses(
        (status = 200, description = "Counts now and over the last hour", body = StatsOut),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
    ),
)]
pub async fn stats(_: ApiKey, State(state): State<AppState>) -> Response {
    let out = StatsOut {
        now: sample_out(Sample::take(&state.hub)),
        interval_ms: STATS_INTERVAL.as_millis() as u64,
        history: state.stats.history().into_iter().map(sample_out).collect(),
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(out)).into_response()
}

/// The OpenAPI description of these routes, to merge into the API's
/// document (`ApiDoc::openapi().merge(WebApiDoc::openapi())`).
#[derive(OpenApi)]
#[openapi(
    components(schemas(DevTokenBody, DevTokenOut, SampleOut, StatsOut)),
    tags(
        (name = "dashboard", description = "What the dashboard at /admin reads"),
        (name = "development", description = "Only with --dev-tokens: never in production"),
    ),
)]
pub struct WebApiDoc;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_ms;
    use presenced_engine::PresenceEvent;
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    fn web_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
    }

    fn files_under(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_in_web_is_served() {
        let mut files = Vec::new();
        files_under(&web_dir(), &web_dir(), &mut files);
        for f in files {
            let known = ASSETS.iter().any(|(p, _)| *p == f)
                || f == "index.html"
                || f == "admin.html"
                || NOT_SERVED.contains(&f.as_str());
            assert!(known, "web/{f} is neither served nor listed as not served");
        }
        for (p, _) in ASSETS {
            assert!(web_dir().join(p).is_file(), "web/{p} is missing");
        }
    }

    #[test]
    fn pages_have_the_placeholder_and_load_only_local_modules() {
        assert!(DEMO_HTML.contains("__DEV_TOKENS__"));
        for html in [DEMO_HTML, ADMIN_HTML] {
            assert!(!html.contains("<script>"), "no inline scripts (CSP)");
            assert!(!html.contains(" style="), "no inline styles (CSP)");
            assert!(!html.contains("http://") && !html.contains("https://"));
        }
    }

    #[test]
    fn openapi_describes_the_routes() {
        let (_, doc) = routes().split_for_parts();
        let doc: Value = serde_json::from_str(&doc.to_json().unwrap()).unwrap();
        for p in ["/v1/dev/token", "/v1/events", "/v1/stats"] {
            assert!(doc["paths"].get(p).is_some(), "missing {p}");
        }
        assert!(doc["components"]["schemas"].get("StatsOut").is_some());
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn dev_user_ids() {
        assert!(valid_dev_user("alice"));
        assert!(valid_dev_user("a.b-c_d@x:y+z=1"));
        assert!(valid_dev_user(&"a".repeat(200)));
        assert!(!valid_dev_user(""));
        assert!(!valid_dev_user(&"a".repeat(201)));
        assert!(!valid_dev_user("a b"));
        assert!(!valid_dev_user("a/b"));
        assert!(!valid_dev_user("<script>"));
        assert!(!valid_dev_user("ünï"));
    }

    // ----- over HTTP, against the real router ---------------------------

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
}
