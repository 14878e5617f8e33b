//! The `Presence-Signature` header: how a batch is signed, and [`verify`]
//! for receivers.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The `v1` signature: hex HMAC-SHA256 of `"<t>.<body>"` keyed with `secret`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The whole `Presence-Signature` header value for `body` sent at `t`.
pub fn signature_header(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

/// Checks a `Presence-Signature` header: for receivers.
///
/// True when the header has a `t` within `tolerance` of `now` (unix seconds)
/// and a `v1` that is the signature of `body` (the exact bytes received)
/// with `secret`. Several `v1` entries are allowed (any may match, for secret
/// rotation); unknown entries are ignored. The comparison is constant-time.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64, tolerance: Duration) -> bool {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => {
                if t.is_some() {
                    return false;
                }
                match value.trim().parse::<u64>() {
                    Ok(v) => t = Some(v),
                    Err(_) => return false,
                }
            }
            "v1" => candidates.push(value.trim().to_ascii_lowercase()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if now.abs_diff(t) > tolerance.as_secs() {
        return false;
    }
    let expected = sign(secret, t, body);
    candidates
        .iter()
        .any(|c| bool::from(c.as_bytes().ct_eq(expected.as_bytes())))
}
