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
//!
//! The module holds: this file, the routes (the one way in, merged into the
//! server's router) and their OpenAPI description; `assets.rs`, the pages
//! and the files under `/assets/` with their headers; `dev.rs`, development
//! tokens; `dashboard.rs`, the event feed and the statistics.

mod assets;
mod dashboard;
mod dev;
#[cfg(test)]
mod tests;

use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub use self::dashboard::{SampleOut, StatsOut, events, stats};
pub use self::dev::{
    DEV_TOKEN_TTL, DevTokenBody, DevTokenOut, DevTokensEnabled, MAX_DEV_NAME_CHARS, dev_token,
    valid_dev_user,
};

/// The pages' routes and the documented routes they read, merged into the
/// server's router (no fallback of their own: the API's JSON 404 answers
/// everything else).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(WebApiDoc::openapi())
        .route("/", get(assets::demo_page))
        .route("/admin", get(assets::admin_page))
        .route("/favicon.ico", get(assets::favicon))
        .route("/assets/{*path}", get(assets::asset))
        .routes(routes!(dev::dev_token))
        .routes(routes!(dashboard::events))
        .routes(routes!(dashboard::stats))
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
