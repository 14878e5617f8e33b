//! Tokens the server's own helpers would not make: any HMAC algorithm, and
//! `alg: none`. Tokens signed with a server's secret are [`Server::token`]
//! and [`Server::sign`].
//!
//! [`Server::token`]: super::Server::token
//! [`Server::sign`]: super::Server::sign

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

pub fn sign_with(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("sign token")
}

/// An unsigned token with `alg: none`.
pub fn alg_none_token(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    format!("{header}.{body}.")
}
