//! Signing HS256 tokens, for the `presenced token` command and tests.

use std::time::Duration;

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use super::MAX_USER_ID_BYTES;
use super::claims::unix_now;

/// Signs an HS256 token for `user` (the `presenced token` command and tests).
/// `info` must be a JSON object; `ttl` of `None` makes a token without `exp`.
pub fn sign_hs256(
    secret: &str,
    user: &str,
    info: Option<Value>,
    ttl: Option<Duration>,
) -> anyhow::Result<String> {
    if secret.is_empty() {
        bail!("the JWT secret is empty");
    }
    if user.is_empty() || user.len() > MAX_USER_ID_BYTES {
        bail!("the user id must be 1 to {MAX_USER_ID_BYTES} bytes");
    }
    let now = unix_now();
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::from(user));
    claims.insert("iat".into(), Value::from(now));
    if let Some(ttl) = ttl {
        let exp = now
            .checked_add(ttl.as_secs())
            .context("the token lifetime is too long")?;
        claims.insert("exp".into(), Value::from(exp));
    }
    match info {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            claims.insert("info".into(), Value::Object(map));
        }
        Some(_) => bail!("info must be a JSON object"),
    }
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).context("signing the token")
}
