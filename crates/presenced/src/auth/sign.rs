//! Signing HS256 tokens, for the `presenced token` command and tests.

use std::time::Duration;

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use super::claims::unix_now;
use super::{ClaimRules, MAX_USER_ID_BYTES};

/// Signs an HS256 token for `user` (the `presenced token` command, the demo's
/// development tokens and tests) that a server with `rules` accepts: with
/// its `aud` and `iss` when it requires them. `info` must be a JSON object;
/// `ttl` of `None` makes a token without `exp` (refused when the server
/// requires one).
pub fn sign_hs256(
    secret: &str,
    user: &str,
    info: Option<Value>,
    ttl: Option<Duration>,
    rules: &ClaimRules,
) -> anyhow::Result<String> {
    if secret.is_empty() {
        bail!("the JWT secret is empty");
    }
    if ttl.is_none() && rules.require_exp {
        bail!("the server refuses tokens without exp (jwt_require_exp): give the token a lifetime");
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
    if let Some(aud) = &rules.audience {
        claims.insert("aud".into(), Value::from(aud.as_str()));
    }
    if let Some(iss) = &rules.issuer {
        claims.insert("iss".into(), Value::from(iss.as_str()));
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
