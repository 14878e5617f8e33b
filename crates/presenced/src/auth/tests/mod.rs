//! Tests of token verification, beside the file they test: `claims.rs`
//! (header and claims), `keys.rs` (the PEM public key), `jwks.rs` (the key
//! set and its refresh) and `sign.rs`. This file holds the helpers they share.

mod claims;
mod jwks;
mod keys;
mod sign;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::claims::unix_now;
use super::{AuthError, ClaimRules, DEFAULT_JWT_LEEWAY_MS, TokenVerifier, sign_hs256};

const SECRET: &str = "test-secret-that-is-long-enough-0123456789";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn future() -> u64 {
    unix_now() + 3600
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(alg: Algorithm, secret: &str, claims: &Value) -> String {
    sign(alg, &EncodingKey::from_secret(secret.as_bytes()), claims)
}

/// A token with an arbitrary header, for algorithms no library will sign.
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn secret_verifier() -> TokenVerifier {
    TokenVerifier::new(Some(SECRET), None).unwrap()
}

/// A secret verifier with `rules`.
fn verifier_with(rules: ClaimRules) -> TokenVerifier {
    secret_verifier().with_claim_rules(rules)
}
