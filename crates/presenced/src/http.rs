//! The HTTP edge: the one error type every route answers with
//! (`{"error": {"code", "message"}}`, never internal details in a 5xx) and
//! the extractors that turn axum's rejections into it, including the API key
//! check that comes first in every `/v1/*` handler.

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::state::AppState;

// ----- errors --------------------------------------------------------------

/// Every error the API answers with: a status and `{"error": {code, message}}`.
/// 5xx messages are generic; the cause goes to the log only.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// A request over a documented limit: 400, like any other invalid request.
    pub fn limit_exceeded(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "limit_exceeded", message)
    }

    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// A server fault: logged with its cause, answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "HTTP API internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// From an axum extractor rejection: its status, and a message of our
    /// own for what was wrong (never serde's or axum's text, which names
    /// parser internals; the text goes to the debug log).
    fn from_rejection(status: StatusCode, what: &'static str, text: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::too_large("request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_request",
                "expected `Content-Type: application/json`",
            ),
            s if s.is_server_error() => Self::internal(text),
            // 422 (valid JSON of the wrong shape) is as bad a request as a
            // syntax error: one status for both.
            _ => {
                tracing::debug!(%text, "request refused");
                Self::bad_request(what)
            }
        }
    }
}

/// A body that is JSON, but not what the route takes.
const BODY_SHAPE: &str =
    "request body does not have the fields and types this route takes (see /v1/openapi.json)";

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let what = match &r {
            JsonRejection::JsonSyntaxError(_) => "request body is not valid JSON",
            JsonRejection::JsonDataError(_) => BODY_SHAPE,
            _ => "request body could not be read",
        };
        Self::from_rejection(r.status(), what, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::from_rejection(r.status(), "invalid path parameter", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        let what = "invalid query parameters (see /v1/openapi.json)";
        Self::from_rejection(r.status(), what, r.body_text())
    }
}

/// The error body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// One of `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `too_large`, `limit_exceeded`, `unavailable`, `internal`.
    pub code: String,
    /// Human readable; never internal details.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.into_owned(),
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "bad_request",
        "method not allowed on this route",
    )
}

// ----- extractors ----------------------------------------------------------

/// A request that carried the right API key (`Authorization: Bearer <key>`).
/// Missing or malformed header: 401; wrong key: 403.
#[derive(Debug, Clone, Copy)]
pub struct ApiKey;

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <api key>`"))?;
        let given = bearer_token(header).ok_or_else(|| {
            ApiError::unauthorized("malformed Authorization header: expected `Bearer <api key>`")
        })?;
        if key_matches(given.as_bytes(), state.settings.api_key.expose().as_bytes()) {
            Ok(ApiKey)
        } else {
            Err(ApiError::forbidden("wrong API key"))
        }
    }
}

/// The token of a `Bearer` authorization header (scheme case-insensitive).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Constant-time comparison: the time taken says nothing about how much of
/// the key matched (only, at most, whether the lengths differ).
fn key_matches(given: &[u8], expected: &[u8]) -> bool {
    !expected.is_empty() && bool::from(given.ct_eq(expected))
}

/// `axum::Json` whose rejections are [`ApiError`]s, for a body that is a
/// JSON object (every body of this API is one).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // The content type and the syntax first, as axum checks them. Then
        // an object only: serde would also read a struct from an array of
        // its fields' values (`[["alice"]]` for `{"users": ["alice"]}`).
        let Json(raw) = Json::<Box<RawValue>>::from_request(req, state).await?;
        if !raw.get().starts_with('{') {
            return Err(ApiError::bad_request("request body must be a JSON object"));
        }
        serde_json::from_str(raw.get()).map(ApiJson).map_err(|e| {
            tracing::debug!(error = %e, "request refused");
            ApiError::bad_request(BODY_SHAPE)
        })
    }
}

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(v) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(v))
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(v) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(bearer_token(&h("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&h("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&h("Basic abc")), None);
        assert_eq!(bearer_token(&h("Bearer ")), None);
        assert_eq!(bearer_token(&h("Bearer")), None);
    }

    #[test]
    fn key_comparison() {
        assert!(key_matches(b"secret", b"secret"));
        assert!(!key_matches(b"secreT", b"secret"));
        assert!(!key_matches(b"secret-longer", b"secret"));
        assert!(!key_matches(b"", b""));
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let e = ApiError::internal("disk /var/secret exploded");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("secret"));
    }
}
