//! HTTP and WebSocket server: routes, start-up and graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use utoipa_axum::routes;

use crate::auth::TokenVerifier;
use crate::clock::now_ms;
use crate::config::Settings;
use crate::state::AppState;
use crate::store::ALIVE_INTERVAL_MS;

/// The routes, serving the OpenAPI document made from them.
pub fn app(state: AppState) -> Router {
    let (router, doc) = routes();
    crate::api::serve_document(router, doc).with_state(state)
}

/// Every route, and the OpenAPI document of the documented ones.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    crate::api::routes()
        .routes(routes!(ws_upgrade))
        .routes(routes!(healthz))
        .merge(crate::web::routes())
        .split_for_parts()
}

/// Liveness.
#[utoipa::path(
    get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain")),
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Bytes of outgoing frames tungstenite collects before writing: the frames
/// of one batch (`ws::write_batch`) go out in one write, not one each. The
/// buffer is freed once written (see `vendor/README.md`), so an idle
/// connection does not keep it.
const WRITE_BUFFER: usize = 16 * 1024;

/// The WebSocket endpoint: upgrade, then the presence protocol (`hello`
/// first). Authenticated by the token in `hello`, not by the API key.
#[utoipa::path(
    get, path = "/v1/ws", tag = "websocket", security(()),
    // What the upgrade needs (RFC 6455 §4.1), as the server checks it:
    // header names and `websocket` in any case.
    params(
        ("Connection" = String, Header, pattern = "^.*[Uu][Pp][Gg][Rr][Aa][Dd][Ee].*$",
            description = "Holds `upgrade`"),
        ("Upgrade" = String, Header, pattern = "^[Ww][Ee][Bb][Ss][Oo][Cc][Kk][Ee][Tt]$",
            description = "`websocket`"),
        ("Sec-WebSocket-Version" = String, Header, pattern = "^13$", description = "`13`"),
        ("Sec-WebSocket-Key" = String, Header,
            description = "The client's nonce: base64 of 16 random bytes"),
    ),
    responses(
        (status = 101, description = "Switching protocols to WebSocket"),
        (status = 400, description = "Not a WebSocket upgrade request"),
    ),
)]
async fn ws_upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> impl IntoResponse {
    let max = state.settings.values.max_frame_bytes;
    // Small buffers: an idle connection should cost a few KiB, not the
    // 128 KiB default read buffer (frames larger than the buffer are read in
    // several chunks; a hello with a typical token fits in one or two).
    ws.read_buffer_size(512)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            // The connection gets a task of its own and axum's upgrade task
            // ends here: that task's future keeps axum's upgrade state and
            // a slot for the 368-byte socket beside ours for as long as it
            // runs (measured with heaptrack: 890 → 768 bytes of task per
            // connection).
            let tasks = state.tasks.clone();
            tasks.spawn(crate::ws::run(socket, state));
            std::future::ready(())
        })
}

/// Runs the server until SIGTERM/SIGINT, then closes every connection with
/// 1001 and returns.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    // Before anything opens a file: the caps are computed from the limit.
    let open_files = crate::conns::raise_open_files_limit();
    let v = &settings.values;
    let limits = crate::conns::Limits {
        header_timeout: Duration::from_millis(v.http_header_timeout_ms),
        idle_timeout: Duration::from_millis(v.http_idle_timeout_ms),
    };
    let caps = crate::conns::Caps::new(
        v.max_connections
            .unwrap_or_else(|| crate::conns::default_max_connections(open_files)),
        v.max_connections_per_ip.unwrap_or(0),
    );
    tracing::debug!(
        open_files,
        max_connections = caps.max_total(),
        "connection caps"
    );
    let listener = TcpListener::bind(settings.values.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.values.listen))?;
    if settings.values.dev_tokens {
        tracing::warn!(
            "--dev-tokens is on: anyone who can reach this server can sign in as anyone; never in production"
        );
    }
    let addr: SocketAddr = listener.local_addr()?;
    let data_dir = settings.values.data_dir.clone();
    // A JWKS URL is fetched now, before anything is opened: a failure stops
    // the start. A task then keeps the key set fresh.
    let verifier = TokenVerifier::load(&settings).await?;
    let state = AppState::with_verifier(settings, verifier)?;
    let jwks_refresh = state.verifier.jwks_refresher().map(tokio::spawn);
    let state_hub = state.hub.clone();
    let heartbeat_ms = state.settings.values.heartbeat_ms;
    let shutdown_timeout_ms = state.settings.values.shutdown_timeout_ms;
    let shutdown = state.shutdown.clone();
    let tasks = state.tasks.clone();
    let timers = tokio::spawn(state.hub.clone().drive_timers(shutdown.clone()));
    let heartbeats = tokio::spawn(
        state
            .hub
            .clone()
            .drive_heartbeats(state.settings.values.heartbeat_ms),
    );
    // On shutdown every socket is asked to close with 1001 (and a socket
    // that says hello later closes itself: see `ws::hello`).
    tokio::spawn({
        let (hub, shutdown) = (state.hub.clone(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            hub.close_all(1001, "server shutting down");
        }
    });
    tokio::spawn(crate::stats::run_sampler(
        state.hub.clone(),
        state.stats.clone(),
        shutdown.clone(),
    ));
    let backends = state.backends.clone();
    let alive = tokio::spawn({
        let liveness = backends.liveness.clone();
        async move {
            let mut every =
                tokio::time::interval(std::time::Duration::from_millis(ALIVE_INTERVAL_MS));
            loop {
                every.tick().await;
                liveness.beat(now_ms());
            }
        }
    });
    // One sender per webhook URL, draining the durable outbox.
    let webhooks =
        crate::webhooks::Webhooks::start(backends.webhooks.clone(), &state.settings).await?;
    println!("listening on http://{addr}");
    tracing::info!(%addr, "presenced serving");
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        // Before logging: a log line must never be what stops a shutdown.
        signal_token.cancel();
        tracing::info!("shutting down");
    });
    // `into_make_service` is not needed: the accept loop hands each
    // connection a clone of one router.
    let serve = crate::conns::serve(listener, app(state), caps, limits, shutdown.clone());
    tokio::pin!(serve);
    let served = tokio::select! {
        _ = &mut serve => true,
        _ = shutdown.cancelled() => false,
    };
    // From the signal on, everything below shares one bounded budget, so
    // neither a client holding a half-sent request nor one that does not
    // read can hold the shutdown.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(shutdown_timeout_ms);
    // The listener is closed; requests in flight may finish until then.
    if !served && tokio::time::timeout_at(deadline, &mut serve).await.is_err() {
        tracing::warn!("HTTP connections still open at the shutdown deadline; left behind");
    }
    tasks.close();
    // A client that does not read cannot be sent its close frame; the
    // heartbeat gives up on it within two heartbeats. Wait no longer than
    // that, nor past the deadline.
    let linger = Duration::from_millis(heartbeat_ms.saturating_mul(3));
    let until = deadline.min(tokio::time::Instant::now() + linger);
    if tokio::time::timeout_at(until, tasks.wait()).await.is_err() {
        tracing::warn!("some connections did not close in time");
    }
    heartbeats.abort();
    timers.abort();
    alive.abort();
    if let Some(jwks_refresh) = jwks_refresh {
        jwks_refresh.abort();
    }
    // Connections closed with 1001 are inside grace now: the journal keeps
    // them online, and the next start gives them their window back.
    let sessions = state_hub.export_sessions();
    if let Err(e) = crate::store::save_sessions(&data_dir, &sessions) {
        tracing::warn!(error = %e, "sessions not kept; clients will enter again after the restart");
    }
    // The last beat, then wait until everything queued is durable (a store
    // that cannot commit gets a second past the deadline, no more: what it
    // did not commit is re-derived at the next start).
    backends.liveness.beat(now_ms());
    let committed = tokio::time::timeout_at(
        deadline.max(tokio::time::Instant::now()) + Duration::from_secs(1),
        backends.journal.barrier().wait(),
    )
    .await;
    if committed != Ok(true) {
        tracing::error!("the journal could not commit its last events");
    }
    // One last, bounded attempt to deliver what is due; the rest stays in
    // the outbox for the next start.
    if let Some(webhooks) = webhooks {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        webhooks
            .shutdown(left.clamp(Duration::from_millis(200), Duration::from_secs(2)))
            .await;
    }
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    #[test]
    fn openapi_document_has_every_path_and_the_bearer_scheme() {
        let doc: Value = serde_json::from_str(&super::routes().1.to_json().unwrap()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(doc["info"]["title"], "presenced HTTP API");
        for (p, method) in [
            ("/v1/users/{user}", "get"),
            ("/v1/users/query", "post"),
            ("/v1/users", "get"),
            ("/v1/users/{user}/disconnect", "post"),
            ("/v1/channels", "get"),
            ("/v1/channels/{channel}", "get"),
            ("/v1/channels/{channel}/members", "get"),
            ("/v1/channels/{channel}/messages", "post"),
            ("/v1/openapi.json", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/metrics", "get"),
            ("/v1/ws", "get"),
            ("/v1/dev/token", "post"),
            ("/v1/events", "get"),
            ("/v1/stats", "get"),
        ] {
            assert!(
                doc["paths"][p].get(method).is_some(),
                "missing {method} {p}"
            );
        }
        assert!(
            doc["paths"].get("/assets/{*path}").is_none(),
            "pages are not API"
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["api_key"]["scheme"],
            "bearer"
        );
        assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
        // The bounds the handlers enforce are in the document.
        let param = |path: &str, method: &str, name: &str| {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{method} {path}: no parameter {name}"))["schema"]
                .clone()
        };
        let user = param("/v1/users/{user}", "get", "user");
        assert_eq!(
            (&user["minLength"], &user["maxLength"]),
            (&1.into(), &200.into())
        );
        let channel = param("/v1/channels/{channel}/members", "get", "channel");
        assert_eq!(channel["pattern"], "^[A-Za-z0-9_:.@/=-]{1,200}$");
        let cursor = param("/v1/users", "get", "cursor");
        assert_eq!(
            cursor["pattern"],
            "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$"
        );
        let users = &doc["components"]["schemas"]["UsersQueryBody"]["properties"]["users"];
        assert_eq!(
            (&users["minItems"], &users["maxItems"]),
            (&1.into(), &1000.into())
        );
        assert!(doc["components"]["schemas"].get("StatsOut").is_some());
        let tags: Vec<&str> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(tags.contains(&"users") && tags.contains(&"dashboard"));
    }
}
