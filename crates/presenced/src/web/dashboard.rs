//! What the dashboard reads besides the HTTP API: the live feed of presence
//! events (`GET /v1/events`, Server-Sent Events) and connection statistics
//! with an hour of history (`GET /v1/stats`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use presenced_engine::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use crate::http::{ApiKey, ErrorBody};
use crate::state::AppState;
use crate::stats::{STATS_INTERVAL, Sample};

/// One event of the `/v1/events` stream, as a client of Server-Sent Events
/// reads it (the document only; the stream is written by axum's `Event`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SseEventOut {
    /// `ready`, `presence` or `lagged`.
    #[schema(pattern = "^(ready|presence|lagged)$")]
    pub event: String,
    /// JSON text: `{}`, the presence event, or `{"missed": n}`.
    pub data: String,
}

/// `GET /v1/events`: Server-Sent Events. First `ready`, then one `presence`
/// event per change (data: [`crate::events::feed_json`]); a subscriber that fell behind
/// gets `lagged` (`{"missed": n}`) and the stream goes on. Comments keep the
/// connection alive every 15 s. The stream ends when the server shuts down.
#[utoipa::path(
    get, path = "/v1/events", tag = "dashboard",
    responses(
        (status = 200, description = "Server-Sent Events: `ready`, then `presence` (data: an event like a webhook's, \
            `type` one of user.online, user.away, user.offline, member.joined, member.updated, member.left) \
            and `lagged` (`{\"missed\": n}`) when this subscriber fell behind; the schema is that of one event",
            content_type = "text/event-stream", body = SseEventOut),
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
