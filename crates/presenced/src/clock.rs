//! The server's clock and its fresh ids: unix milliseconds for the engine
//! and for every time that is shown or stored, and unguessable tokens for
//! session ids and event ids.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds: the engine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh unguessable token (128 random bits, base64url): session ids and
/// webhook event ids.
pub fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unguessable_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
    }
}
