//! What every handler shares: the hub, the settings, the token verifier and
//! the dashboard's statistics; built once at start-up from the settings and
//! what the last run left in the data directory.

use std::sync::Arc;

use presenced_engine::{ChannelRules, EngineConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::TokenVerifier;
use crate::config::Settings;
use crate::hub::Hub;
use crate::store::Backends;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub settings: Arc<Settings>,
    pub verifier: Arc<TokenVerifier>,
    /// Connection statistics sampled for the dashboard (`GET /v1/stats`).
    pub stats: Arc<crate::stats::Stats>,
    /// Where presence, liveness and webhook events are kept.
    pub backends: Backends,
    pub(crate) shutdown: CancellationToken,
    /// Every connection task, for shutdown to wait for.
    pub(crate) tasks: TaskTracker,
}

impl AppState {
    /// Opens the store, restores what the last run left (every user who was
    /// online gets one grace window to come back) and builds the hub.
    pub fn new(settings: Settings) -> anyhow::Result<AppState> {
        let verifier = TokenVerifier::from_settings(&settings)?;
        AppState::with_verifier(settings, verifier)
    }

    /// [`AppState::new`] with a verifier built already (by
    /// [`TokenVerifier::load`], which fetches a JWKS URL).
    pub fn with_verifier(settings: Settings, verifier: TokenVerifier) -> anyhow::Result<AppState> {
        crate::metrics::init();
        // The most recently seen offline users start in the engine's cache;
        // the others are read from the journal when somebody asks.
        let (backends, recovered) = crate::store::open(
            &settings.values.data_dir,
            settings.values.webhook_urls.clone(),
            settings.values.offline_cache,
            settings.values.journal_queue,
        )?;
        let hub = Hub::new(engine_config(&settings), backends.journal.clone());
        // Oldest first: the cache keeps the newest when it is full.
        hub.restore_offline(recovered.offline.iter().rev());
        let restored = recovered.online.len();
        let sessions = crate::store::take_sessions(&settings.values.data_dir);
        let resumable = sessions.len();
        hub.restore(recovered.online, sessions);
        hub.recall_watched()?;
        if restored > 0 || resumable > 0 {
            tracing::info!(
                users = restored,
                sessions = resumable,
                "restored users online at the last stop; they have one grace window to come back"
            );
        }
        Ok(AppState {
            hub,
            settings: Arc::new(settings),
            verifier: Arc::new(verifier),
            stats: Arc::default(),
            backends,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }
}

/// The engine's tunables from the server's settings.
pub fn engine_config(settings: &Settings) -> EngineConfig {
    let s = &settings.values;
    EngineConfig {
        grace_ms: s.grace_ms,
        heartbeat_ms: s.heartbeat_ms,
        coalesce_ms: s.coalesce_ms,
        immediate_burst: s.coalesce_burst,
        immediate_per_sec: s.coalesce_burst,
        occupancy_interval_ms: s.occupancy_interval_ms,
        max_data_bytes: s.max_data_bytes,
        max_channels_per_conn: s.max_channels_per_conn,
        max_watch_per_conn: s.max_watch_per_conn,
        snapshot_chunk: 1_000,
        guests_watch: s.guests_watch,
        rules: ChannelRules::new(s.channels.clone()),
        offline_cache: s.offline_cache,
    }
}
