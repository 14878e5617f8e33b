//! The HTTP API (`/v1/*` beside the WebSocket), `/readyz`, `/metrics` and the
//! OpenAPI document generated from the handlers below.
//!
//! Every read and every action goes through the hub's lock, on the same engine
//! the sockets use: the API never keeps a second copy of presence. The lock is
//! a std `Mutex` and is only ever taken in a plain block, never across an
//! `.await`.
//!
//! `/v1/*` (except `/v1/ws`) needs `Authorization: Bearer <api key>`: the
//! [`ApiKey`] extractor comes first in every handler, so a request without a
//! valid key learns nothing else (not even whether its body was valid).
//!
//! Decisions the protocol leaves open, also in `docs/protocol.md`:
//! - every error is `{"error": {"code", "message"}}`, including bad JSON,
//!   a wrong content type (415, code `bad_request`), unknown routes (404
//!   `not_found`) and wrong methods (405, code `bad_request`);
//! - more than 1,000 ids in `POST /v1/users/query` is 400 `limit_exceeded`;
//! - `POST /v1/users/{user}/disconnect` is idempotent: 200 with
//!   `disconnected: 0` when the user has no connection (or was never seen);
//! - channels exist implicitly, so a valid but unused channel name reads as
//!   zero occupancy and no members, never 404;
//! - cursors are opaque strings (base64url without padding; any string of
//!   that form is a position, others are 400); `limit` is 1–1,000, default
//!   100; an empty `limit`, `cursor` or `status` is the same as none;
//! - the OpenAPI document is under `/v1/` and so needs the key too.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine as _;
use presenced_engine::{UserDetail, UserPresence, UserStatus, rfc3339, valid_channel_name};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::MAX_USER_ID_BYTES;
use crate::http::{
    ApiError, ApiJson, ApiKey, ApiPath, ApiQuery, ErrorBody, ErrorDetail, method_not_allowed,
    not_found,
};
use crate::state::AppState;

/// Most ids in one `POST /v1/users/query`.
pub const MAX_QUERY_USERS: usize = 1_000;
/// Page size when the request names none.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page a request may ask for.
pub const MAX_LIMIT: usize = 1_000;
/// Longest channel-name prefix accepted by `GET /v1/channels` (the longest
/// channel name).
const MAX_PREFIX_BYTES: usize = 200;

/// The API's routes, each with its document (the path and method are
/// written once, in the handler's `#[utoipa::path]`), on top of [`ApiDoc`]:
/// the server merges its other routes into this router and serves the whole
/// document with [`serve_document`].
pub fn routes() -> OpenApiRouter<AppState> {
    // The metrics recorder must exist before anything records into it.
    crate::metrics::init();
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_users))
        .routes(routes!(query_users))
        .routes(routes!(get_user))
        .routes(routes!(disconnect_user))
        .routes(routes!(list_channels))
        .routes(routes!(get_channel))
        .routes(routes!(channel_members))
        .routes(routes!(post_message))
        .routes(routes!(openapi_json))
        .routes(routes!(readyz))
        .routes(routes!(scrape_metrics))
}

/// Serves `doc` at `/v1/openapi.json` and answers unknown paths and wrong
/// methods with the API's JSON errors (404, 405).
pub fn serve_document(router: Router<AppState>, doc: utoipa::openapi::OpenApi) -> Router<AppState> {
    router
        .layer(axum::Extension(OpenApiJson::of(doc)))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
}

// ----- validation helpers --------------------------------------------------

fn check_user_id(user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.len() > MAX_USER_ID_BYTES {
        return Err(ApiError::bad_request("user ids are 1–200 bytes"));
    }
    Ok(())
}

fn check_channel(channel: &str) -> Result<(), ApiError> {
    if !valid_channel_name(channel) {
        return Err(ApiError::bad_request(
            "channel names are 1–200 bytes of [A-Za-z0-9_:.@/=-]",
        ));
    }
    Ok(())
}

/// A page size from the query: absent or empty means the default.
fn parse_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit.filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "limit must be an integer from 1 to 1000",
            )),
        },
    }
}

/// Cursors are the last key of the previous page, base64url-encoded
/// without padding so that clients treat them as opaque and can put them in
/// a URL as they are.
fn encode_cursor(key: &str) -> String {
    CURSOR.encode(key)
}

/// base64url, no padding; the unused low bits of the last character may be
/// anything, so that every string of the form the OpenAPI document gives
/// (`^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$`: no length of 1 modulo 4)
/// decodes.
const CURSOR: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// The key a page starts after. A cursor this server made decodes to that
/// key; any other string of the documented form is a position too (bytes
/// that are not UTF-8 read as the lossy text), and one outside it is 400.
fn decode_cursor(cursor: Option<&str>) -> Result<Option<String>, ApiError> {
    match cursor.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(c) => CURSOR
            .decode(c)
            .map(|b| Some(String::from_utf8_lossy(&b).into_owned()))
            .map_err(|_| ApiError::bad_request("invalid cursor")),
    }
}

/// Waits until every presence change made before this read is committed to
/// the store, so what the API answers is never ahead of what survives a
/// crash.
async fn store_barrier(state: &AppState) -> Result<(), ApiError> {
    if state.backends.journal.barrier().wait().await {
        Ok(())
    } else {
        Err(ApiError::unavailable("the store is not available; retry"))
    }
}

fn unavailable(_: crate::hub::Unavailable) -> ApiError {
    ApiError::unavailable("the store is not available; retry")
}

/// Whether the server is ready to serve: its store commits and takes new
/// transitions (its queue is under the bound).
fn is_ready(state: &AppState) -> bool {
    state.backends.journal.accepting()
}

// ----- bodies --------------------------------------------------------------

/// A user's aggregated status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Away,
    Offline,
}

impl From<UserStatus> for Status {
    fn from(s: UserStatus) -> Self {
        match s {
            UserStatus::Online => Status::Online,
            UserStatus::Away => Status::Away,
            UserStatus::Offline => Status::Offline,
        }
    }
}

/// A user's presence: status, since when, and when last seen.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceOut {
    pub status: Status,
    /// Since when the user has had this status (RFC 3339); null if never seen.
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339; now while connected; null if never seen.
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
}

impl From<UserPresence> for PresenceOut {
    fn from(p: UserPresence) -> Self {
        PresenceOut {
            status: p.status.into(),
            since: p.since.map(rfc3339),
            last_seen: p.last_seen.map(rfc3339),
        }
    }
}

/// A user with presence, connection count and channels entered.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserOut {
    pub user: String,
    pub status: Status,
    #[schema(format = DateTime)]
    pub since: Option<String>,
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
    /// Connections, live or inside the grace window.
    pub connections: usize,
    /// Channels the user is a member of.
    pub channels: Vec<String>,
}

impl From<UserDetail> for UserOut {
    fn from(d: UserDetail) -> Self {
        let p = PresenceOut::from(d.presence);
        UserOut {
            user: d.user,
            status: p.status,
            since: p.since,
            last_seen: p.last_seen,
            connections: d.connections,
            channels: d.channels,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsersQueryBody {
    /// 1–1,000 user ids, each 1–200 bytes.
    #[schema(schema_with = user_ids_schema)]
    pub users: Vec<String>,
}

/// The schema of [`UsersQueryBody::users`]: the limits of the list and of
/// each id, as [`query_users`] checks them.
fn user_ids_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let id = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_USER_ID_BYTES));
    ArrayBuilder::new()
        .items(id)
        .min_items(Some(1))
        .max_items(Some(MAX_QUERY_USERS))
        .description(Some("1–1,000 user ids, each 1–200 bytes."))
        .build()
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsersQueryOut {
    /// Every requested id; never-seen users are offline with null times.
    pub users: BTreeMap<String, PresenceOut>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<UserOut>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DisconnectOut {
    pub user: String,
    /// Connections closed (live ones with close code 4409) or ended inside
    /// their grace window.
    pub disconnected: usize,
}

/// A channel's occupancy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelOut {
    pub channel: String,
    /// Distinct users who entered.
    pub members: usize,
    /// Their connections in the channel.
    pub connections: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelPage {
    pub channels: Vec<ChannelOut>,
    pub next_cursor: Option<String>,
}

/// A member object, as in the WebSocket protocol.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberOut {
    pub user: String,
    /// Member data (the token's trusted `info` under `data.info`).
    pub data: serde_json::Map<String, Value>,
    /// The user's connections in the channel.
    pub conns: usize,
    #[schema(format = DateTime)]
    pub since: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberPage {
    #[schema(value_type = Vec<MemberOut>)]
    pub members: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageBody {
    /// Any JSON value, at most `max_data_bytes` (default 2 KiB) serialized.
    pub data: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageOut {
    /// Subscriber connections the message was queued for.
    pub delivered: usize,
}

/// The schema of the `limit` query parameter: an integer from 1 to 1,000,
/// or empty for the default, as [`parse_limit`] reads it.
pub struct PageLimit;

impl utoipa::PartialSchema for PageLimit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
        let number = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT as f64));
        let empty = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(0));
        AnyOfBuilder::new().item(number).item(empty).into()
    }
}

impl ToSchema for PageLimit {}

/// Paging parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–1000 (absent or empty: 100).
    #[param(value_type = Option<PageLimit>, inline)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersListQuery {
    /// `online` or `away`; absent or empty means both.
    #[param(value_type = Option<String>, pattern = "^(online|away)?$")]
    pub status: Option<String>,
    /// Page size, 1–1000 (absent or empty: 100).
    #[param(value_type = Option<PageLimit>, inline)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChannelsListQuery {
    /// Only channels whose name starts with this (at most 200 bytes).
    #[param(max_length = 200)]
    pub prefix: Option<String>,
    /// Page size, 1–1000 (absent or empty: 100).
    #[param(value_type = Option<PageLimit>, inline)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

// ----- handlers: users -----------------------------------------------------

/// A user's presence, connections and channels.
#[utoipa::path(
    get, path = "/v1/users/{user}", tag = "users",
    params(("user" = String, Path, min_length = 1, max_length = 200,
        description = "User id (the token's `sub`), 1–200 bytes")),
    responses(
        (status = 200, description = "The user", body = UserOut),
        (status = 400, description = "Invalid user id", body = ErrorBody),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
        (status = 404, description = "Never seen", body = ErrorBody),
        (status = 503, description = "The store cannot commit now (`unavailable`); retry", body = ErrorBody),
    ),
)]
pub async fn get_user(
    _: ApiKey,
    State(state): State<AppState>,
    ApiPath(user): ApiPath<String>,
) -> Result<Json<UserOut>, ApiError> {
    check_user_id(&user)?;
    store_barrier(&state).await?;
    let detail = state.hub.user_detail(&user).await.map_err(unavailable)?;
    match detail {
        Some(d) => Ok(Json(d.into())),
        None => Err(ApiError::not_found("user never seen")),
    }
}

/// Presence of many users at once.
#[utoipa::path(
    post, path = "/v1/users/query", tag = "users",
    request_body = UsersQueryBody,
    responses(
        (status = 200, description = "Presence by user id", body = UsersQueryOut),
        (status = 400, description = "Bad body, or more than 1,000 ids (`limit_exceeded`)", body = ErrorBody),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "The store cannot commit now (`unavailable`); retry", body = ErrorBody),
    ),
)]
pub async fn query_users(
    _: ApiKey,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UsersQueryBody>,
) -> Result<Json<UsersQueryOut>, ApiError> {
    if body.users.len() > MAX_QUERY_USERS {
        return Err(ApiError::limit_exceeded("at most 1000 users per query"));
    }
    if body.users.is_empty() {
        return Err(ApiError::bad_request("users must name at least one user"));
    }
    for u in &body.users {
        check_user_id(u)?;
    }
    store_barrier(&state).await?;
    let users = state
        .hub
        .presence_of(&body.users)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|(u, p)| (u, p.into()))
        .collect();
    Ok(Json(UsersQueryOut { users }))
}

/// Users online or away, in id order.
#[utoipa::path(
    get, path = "/v1/users", tag = "users",
    params(UsersListQuery),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 400, description = "Invalid status, limit or cursor", body = ErrorBody),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
        (status = 503, description = "The store cannot commit now (`unavailable`); retry", body = ErrorBody),
    ),
)]
pub async fn list_users(
    _: ApiKey,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<UsersListQuery>,
) -> Result<Json<UserPage>, ApiError> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some("online") => Some(UserStatus::Online),
        Some("away") => Some(UserStatus::Away),
        Some(_) => return Err(ApiError::bad_request("status must be `online` or `away`")),
    };
    let limit = parse_limit(q.limit.as_deref())?;
    let cursor = decode_cursor(q.cursor.as_deref())?;
    store_barrier(&state).await?;
    let (page, next) = state.hub.list_users(status, cursor.as_deref(), limit);
    Ok(Json(UserPage {
        users: page.into_iter().map(UserOut::from).collect(),
        next_cursor: next.as_deref().map(encode_cursor),
    }))
}

/// Closes every connection of a user (close code 4409); the user is offline
/// at once, with no grace window. Idempotent: a user without connections
/// gives `disconnected: 0`.
#[utoipa::path(
    post, path = "/v1/users/{user}/disconnect", tag = "users",
    params(("user" = String, Path, min_length = 1, max_length = 200,
        description = "User id, 1–200 bytes")),
    responses(
        (status = 200, description = "Disconnected", body = DisconnectOut),
        (status = 400, description = "Invalid user id", body = ErrorBody),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
    ),
)]
pub async fn disconnect_user(
    _: ApiKey,
    State(state): State<AppState>,
    ApiPath(user): ApiPath<String>,
) -> Result<Json<DisconnectOut>, ApiError> {
    check_user_id(&user)?;
    let disconnected = state.hub.kick_user(&user);
    Ok(Json(DisconnectOut { user, disconnected }))
}

// ----- handlers: channels --------------------------------------------------

/// Channels with their occupancy, in name order.
#[utoipa::path(
    get, path = "/v1/channels", tag = "channels",
    params(ChannelsListQuery),
    responses(
        (status = 200, description = "A page of channels", body = ChannelPage),
        (status = 400, description = "Invalid prefix, limit or cursor", body = ErrorBody),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
    ),
)]
pub async fn list_channels(
    _: ApiKey,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ChannelsListQuery>,
) -> Result<Json<ChannelPage>, ApiError> {
    let prefix = q.prefix.unwrap_or_default();
    if prefix.len() > MAX_PREFIX_BYTES {
        return Err(ApiError::bad_request("prefix is longer than 200 bytes"));
    }
    let limit = parse_limit(q.limit.as_deref())?;
    let cursor = decode_cursor(q.cursor.as_deref())?;
    let (page, next) = state.hub.list_channels(&prefix, cursor.as_deref(), limit);
    Ok(Json(ChannelPage {
        channels: page
            .into_iter()
            .map(|(channel, members, connections)| ChannelOut {
                channel,
                members,
                connections,
            })
            .collect(),
        next_cursor: next.as_deref().map(encode_cursor),
    }))
}

/// A channel's occupancy; zero for a channel nobody uses.
#[utoipa::path(
    get, path = "/v1/channels/{channel}", tag = "channels",
    params(("channel" = String, Path, pattern = r"^[A-Za-z0-9_:.@/=-]{1,200}$",
        description = "Channel name, percent-encoded (`/` as %2F)")),
    responses(
        (status = 200, description = "Occupancy", body = ChannelOut),
        (status = 400, description = "Invalid channel name", body = ErrorBody),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
    ),
)]
pub async fn get_channel(
    _: ApiKey,
    State(state): State<AppState>,
    ApiPath(channel): ApiPath<String>,
) -> Result<Json<ChannelOut>, ApiError> {
    check_channel(&channel)?;
    let (members, connections) = state.hub.occupancy(&channel).unwrap_or((0, 0));
    Ok(Json(ChannelOut {
        channel,
        members,
        connections,
    }))
}

/// A channel's members (full member objects), in user id order.
#[utoipa::path(
    get, path = "/v1/channels/{channel}/members", tag = "channels",
    params(
        ("channel" = String, Path, pattern = r"^[A-Za-z0-9_:.@/=-]{1,200}$",
            description = "Channel name, percent-encoded"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "A page of members", body = MemberPage),
        (status = 400, description = "Invalid channel name, limit or cursor", body = ErrorBody),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
    ),
)]
pub async fn channel_members(
    _: ApiKey,
    State(state): State<AppState>,
    ApiPath(channel): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<MemberPage>, ApiError> {
    check_channel(&channel)?;
    let limit = parse_limit(q.limit.as_deref())?;
    let cursor = decode_cursor(q.cursor.as_deref())?;
    let (members, next) = state
        .hub
        .channel_members(&channel, cursor.as_deref(), limit)
        .unwrap_or_default();
    Ok(Json(MemberPage {
        members,
        next_cursor: next.as_deref().map(encode_cursor),
    }))
}

/// Broadcasts a `message` with `from: null` to the channel's subscribers.
#[utoipa::path(
    post, path = "/v1/channels/{channel}/messages", tag = "channels",
    params(("channel" = String, Path, pattern = r"^[A-Za-z0-9_:.@/=-]{1,200}$",
        description = "Channel name, percent-encoded")),
    request_body = MessageBody,
    responses(
        (status = 200, description = "Queued for every live subscriber", body = MessageOut),
        (status = 400, description = "Invalid channel name or body", body = ErrorBody),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
        (status = 413, description = "`data` over the limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
)]
pub async fn post_message(
    _: ApiKey,
    State(state): State<AppState>,
    ApiPath(channel): ApiPath<String>,
    ApiJson(body): ApiJson<MessageBody>,
) -> Result<Json<MessageOut>, ApiError> {
    check_channel(&channel)?;
    let size = serde_json::to_vec(&body.data)
        .map_err(ApiError::internal)?
        .len();
    if size > state.settings.values.max_data_bytes {
        return Err(ApiError::too_large(format!(
            "data is over the limit of {} bytes",
            state.settings.values.max_data_bytes
        )));
    }
    let delivered = state.hub.publish(&channel, &body.data);
    Ok(Json(MessageOut { delivered }))
}

// ----- handlers: operations ------------------------------------------------

/// Readiness: 200 `ok` when the store commits and takes new changes, else
/// 503 (the disk is full or failing, or too many changes wait for it).
#[utoipa::path(
    get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if is_ready(&state) {
        Ok("ok")
    } else {
        Err(ApiError::unavailable("not ready"))
    }
}

/// This document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "operations",
    responses(
        (status = 200, description = "OpenAPI 3.1 document", body = Object),
        (status = 401, description = "No API key", body = ErrorBody),
        (status = 403, description = "Wrong API key", body = ErrorBody),
    ),
)]
pub async fn openapi_json(
    _: ApiKey,
    axum::Extension(doc): axum::Extension<OpenApiJson>,
) -> Response {
    match &*doc.0 {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes.clone(),
        )
            .into_response(),
        Err(e) => ApiError::internal(e.clone()).into_response(),
    }
}

/// The whole OpenAPI document, serialized once.
#[derive(Clone)]
pub struct OpenApiJson(std::sync::Arc<Result<bytes::Bytes, String>>);

impl OpenApiJson {
    fn of(doc: utoipa::openapi::OpenApi) -> OpenApiJson {
        let json = doc
            .to_json()
            .map(|s| bytes::Bytes::from(s.into_bytes()))
            .map_err(|e| e.to_string());
        OpenApiJson(std::sync::Arc::new(json))
    }
}

/// Prometheus metrics, text format; no key needed.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")),
)]
async fn scrape_metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::metrics::render(&state.hub.metrics_snapshot()),
    )
        .into_response()
}

// ----- the OpenAPI document ------------------------------------------------

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "presenced HTTP API",
        description = "Presence reads and actions on the same engine the WebSocket uses. \
            `/v1/*` (except `/v1/ws`) needs `Authorization: Bearer <api key>`.",
    ),
    components(schemas(ErrorBody, ErrorDetail, Status, MemberOut)),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "users", description = "User presence"),
        (name = "channels", description = "Channels, members and messages"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "websocket", description = "The real-time protocol"),
    ),
)]
pub struct ApiDoc;

/// Adds the `api_key` bearer security scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The server's API key (`--api-key`)"))
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for key in ["u1", "room:42/a=b", "ünï"] {
            let c = encode_cursor(key);
            assert_eq!(decode_cursor(Some(&c)).unwrap().as_deref(), Some(key));
        }
        assert_eq!(decode_cursor(Some("")).unwrap(), None);
        assert!(decode_cursor(Some("!!")).is_err());
        // Any string of the documented form is a position: lengths 2 and 3
        // modulo 4, whatever the last character's unused bits, bytes that
        // are not UTF-8.
        for c in ["86", "CGXCe0X", "_-_-", "AB", "AAB", "__8"] {
            assert!(decode_cursor(Some(c)).unwrap().is_some(), "{c}");
        }
        // Lengths of 1 modulo 4 are not base64.
        for c in ["y", "ABCDE"] {
            assert!(decode_cursor(Some(c)).is_err(), "{c}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("")).unwrap(), DEFAULT_LIMIT);
        assert_eq!(parse_limit(Some("1000")).unwrap(), 1000);
        assert!(parse_limit(Some("1001")).is_err());
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("x")).is_err());
    }
}
