//! HTTP and WebSocket server: routes, start-up and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use presenced_engine::{ChannelRules, Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::TokenVerifier;
use crate::config::Settings;
use crate::hub::Hub;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub settings: Arc<Settings>,
    pub verifier: Arc<TokenVerifier>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl AppState {
    pub fn new(settings: Settings) -> anyhow::Result<AppState> {
        let verifier = TokenVerifier::from_settings(&settings)?;
        let engine = Engine::new(engine_config(&settings));
        Ok(AppState {
            hub: Hub::new(engine),
            settings: Arc::new(settings),
            verifier: Arc::new(verifier),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }
}

/// The engine's tunables from the server's settings.
pub fn engine_config(s: &Settings) -> EngineConfig {
    EngineConfig {
        grace_ms: s.grace_ms,
        heartbeat_ms: s.heartbeat_ms,
        coalesce_ms: s.coalesce_ms,
        occupancy_interval_ms: s.occupancy_interval_ms,
        max_data_bytes: s.limits.max_data_bytes,
        max_channels_per_conn: s.limits.max_channels_per_conn,
        max_watch_per_conn: s.limits.max_watch_per_conn,
        snapshot_chunk: 1_000,
        guests_watch: s.guests_watch,
        rules: ChannelRules::new(s.channels.clone()),
    }
}

/// The routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/ws", get(ws_upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn ws_upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> impl IntoResponse {
    let max = state.settings.limits.max_frame_bytes;
    // Small buffers: an idle connection should cost a few KiB, not the
    // 128 KiB default read buffer.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let shutdown = state.shutdown.clone();
            let tasks = state.tasks.clone();
            tasks.track_future(crate::ws::run(socket, state, shutdown))
        })
}

/// Runs the server until SIGTERM/SIGINT, then closes every connection with
/// 1001 and returns.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen).await?;
    let addr: SocketAddr = listener.local_addr()?;
    let state = AppState::new(settings)?;
    let shutdown = state.shutdown.clone();
    let tasks = state.tasks.clone();
    let timers = tokio::spawn(state.hub.clone().drive_timers(shutdown.clone()));
    println!("listening on http://{addr}");
    tracing::info!(%addr, "presenced serving");
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal_token.cancel();
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    tasks.close();
    tasks.wait().await;
    timers.abort();
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
