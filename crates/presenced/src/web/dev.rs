//! Development tokens: `POST /v1/dev/token` mints an HS256 token for any
//! user, only when the server runs with `--dev-tokens` (otherwise the route
//! answers 404, whatever the request).

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::MAX_USER_ID_BYTES;
use crate::config::Secret;
use crate::http::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// Lifetime of a development token.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Longest display name a development token carries (in characters).
pub const MAX_DEV_NAME_CHARS: usize = 64;

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
    #[schema(pattern = "^[A-Za-z0-9_.@:+=-]{1,200}$")]
    pub user: String,
    /// Display name, put in the token's `info` (default: the user id; so
    /// is a blank one): at most 64 characters, no control character.
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
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
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
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
    // The name as given is checked (as the document states it), the
    // trimmed one used.
    let name = body.name.as_deref().unwrap_or_default();
    if name.chars().count() > MAX_DEV_NAME_CHARS {
        return Err(ApiError::bad_request("name is longer than 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must not contain control characters",
        ));
    }
    let name = match name.trim() {
        "" => body.user.clone(),
        n => n.to_owned(),
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
        state.verifier.claim_rules(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
