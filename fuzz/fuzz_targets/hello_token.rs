//! The token check of `hello` and `refresh` ([`TokenVerifier::verify`]:
//! the header read before any key is chosen, the signature, the claims)
//! never panics, and a token that must be refused is refused.
//!
//! The input is a line of flags, a newline, then the rest:
//!
//! - with flag `r` the rest is the token itself, any text;
//! - otherwise the rest is the claims (any bytes, usually JSON), signed with
//!   HMAC into a token: with the server's secret unless `w` (a wrong one),
//!   with SHA-256 unless `3` (SHA-384) or `5` (SHA-512), its signature
//!   altered with `t`. The header says the signing algorithm, or `none`
//!   with `N`, RS256 with `R`, HS256 whatever signed it with `x`; it has a
//!   `kid` with `k` and a `crit` with `c`; with `h` the rest is a header
//!   line and then the claims.
//!
//! The server's rules: `e` requires `exp`, `a` the audience `aud-1`, `i`
//! the issuer `iss-1`, `l` makes the leeway 0 (default 5 s).
//!
//! Signed claims are judged on their own here: a verdict of "refuse" (bad
//! signature or header, `sub` missing, empty, too long or with a control
//! character, `exp` past, `nbf` ahead, `aud`/`iss` not the required ones,
//! `info` not an object, `channels` not strings) must be an error; a token
//! with none of these faults, signed right, must pass with its claims.
#![no_main]

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use presenced::auth::{ClaimRules, Claims, TokenVerifier};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

const SECRET: &str = "fuzz-secret";

fuzz_target!(|bytes: &[u8]| {
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (flags, rest) = (&bytes[..nl], &bytes[nl + 1..]);
    let flag = |c: u8| flags.contains(&c);
    let rules = ClaimRules {
        leeway_ms: if flag(b'l') { 0 } else { 5_000 },
        audience: flag(b'a').then(|| "aud-1".to_owned()),
        issuer: flag(b'i').then(|| "iss-1".to_owned()),
        require_exp: flag(b'e'),
    };
    let verifier = TokenVerifier::new(Some(SECRET), None)
        .expect("a verifier with a secret")
        .with_claim_rules(rules.clone());

    if flag(b'r') {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        if let Ok(claims) = verifier.verify(token) {
            check_subject(&claims);
        }
        return;
    }

    // Header and claims.
    let (header, payload, menu_header) = if flag(b'h') {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return;
        };
        (rest[..nl].to_vec(), &rest[nl + 1..], false)
    } else {
        let alg = match (flag(b'3'), flag(b'5')) {
            (true, _) => "HS384",
            (_, true) => "HS512",
            _ => "HS256",
        };
        let mut h = Map::new();
        let named = if flag(b'N') {
            "none"
        } else if flag(b'R') {
            "RS256"
        } else if flag(b'x') {
            "HS256"
        } else {
            alg
        };
        h.insert("alg".into(), named.into());
        h.insert("typ".into(), "JWT".into());
        if flag(b'k') {
            h.insert("kid".into(), "k1".into());
        }
        if flag(b'c') {
            h.insert("crit".into(), Value::Array(vec!["exp".into()]));
        }
        (serde_json::to_vec(&h).unwrap(), rest, true)
    };
    let sign_alg = match (flag(b'3'), flag(b'5')) {
        (true, _) => "HS384",
        (_, true) => "HS512",
        _ => "HS256",
    };
    let key = if flag(b'w') { "not-the-secret" } else { SECRET };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut sig = hmac(sign_alg, key, signing_input.as_bytes());
    if flag(b't') {
        sig[0] ^= 1;
    }
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&sig));

    let before = presenced::clock::wall_ms();
    let got = verifier.verify(&token);
    let after = presenced::clock::wall_ms();
    if let Ok(claims) = &got {
        check_subject(claims);
    }

    let header_ok = header_verdict(&header, sign_alg);
    let signed_right = !flag(b'w') && !flag(b't');
    let verdict = claims_verdict(payload, &rules, before, after);
    let refuse = !header_ok || !signed_right || matches!(verdict, Verdict::Refuse);
    let what = || {
        format!(
            "header {}, claims {}, signed right {signed_right}",
            String::from_utf8_lossy(&header),
            String::from_utf8_lossy(payload)
        )
    };
    match (got, verdict) {
        (Ok(c), _) if refuse => panic!("a token to refuse passed as {c:?}: {}", what()),
        (Ok(c), Verdict::Accept(want)) if c != want => {
            panic!("the token passed as {c:?}, not {want:?}: {}", what())
        }
        (Err(e), Verdict::Accept(_)) if !refuse && menu_header => {
            panic!("a good token was refused ({e:?}): {}", what())
        }
        _ => {}
    }
});

/// A user id from a token: 1-200 bytes, no control character.
fn check_subject(c: &Claims) {
    assert!(!c.sub.is_empty() && c.sub.len() <= 200, "sub {:?}", c.sub);
    assert!(!c.sub.chars().any(char::is_control), "sub {:?}", c.sub);
}

fn hmac(alg: &str, key: &str, msg: &[u8]) -> Vec<u8> {
    macro_rules! mac {
        ($h:ty) => {{
            let mut m = Hmac::<$h>::new_from_slice(key.as_bytes()).unwrap();
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        "HS384" => mac!(sha2::Sha384),
        "HS512" => mac!(sha2::Sha512),
        _ => mac!(sha2::Sha256),
    }
}

/// Whether the header lets the token through to its claims: a JSON object
/// naming the HMAC algorithm that signed it, with no `crit`, and a `kid`
/// that is a string if there is one.
fn header_verdict(header: &[u8], sign_alg: &str) -> bool {
    let Ok(Value::Object(h)) = serde_json::from_slice::<Value>(header) else {
        return false;
    };
    h.get("alg").and_then(Value::as_str) == Some(sign_alg)
        && !h.contains_key("crit")
        && matches!(h.get("kid"), None | Some(Value::Null | Value::String(_)))
}

enum Verdict {
    /// Must be refused.
    Refuse,
    /// No fault: these are the claims.
    Accept(Claims),
    /// Too close to a time limit to tell, or keys given twice.
    Unsure,
}

/// The claims judged by the rules, for any time between `before` and
/// `after` (unix ms).
fn claims_verdict(payload: &[u8], rules: &ClaimRules, before: u64, after: u64) -> Verdict {
    let Ok(Value::Object(c)) = serde_json::from_slice::<Value>(payload) else {
        return Verdict::Refuse;
    };
    let sub = match c.get("sub") {
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= 200 && !s.chars().any(char::is_control) =>
        {
            s.clone()
        }
        _ => return Verdict::Refuse,
    };
    let mut unsure = false;
    match c.get("nbf") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let Some(nbf) = numeric_date(v) else {
                return Verdict::Refuse;
            };
            let nbf = nbf.saturating_mul(1000);
            if nbf > after.saturating_add(rules.leeway_ms) {
                return Verdict::Refuse;
            }
            unsure |= nbf > before.saturating_add(rules.leeway_ms);
        }
    }
    let exp = match c.get("exp") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let Some(exp) = numeric_date(v) else {
                return Verdict::Refuse;
            };
            let end = exp.saturating_mul(1000).saturating_add(rules.leeway_ms);
            if end <= before {
                return Verdict::Refuse;
            }
            unsure |= end <= after;
            Some(exp)
        }
    };
    if exp.is_none() && rules.require_exp {
        return Verdict::Refuse;
    }
    if let Some(aud) = &rules.audience {
        let ok = match c.get("aud") {
            Some(Value::String(a)) => a == aud,
            Some(Value::Array(a)) => a.iter().any(|a| a.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return Verdict::Refuse;
        }
    }
    if let Some(iss) = &rules.issuer
        && c.get("iss").and_then(Value::as_str) != Some(iss)
    {
        return Verdict::Refuse;
    }
    let info = match c.get("info") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Verdict::Refuse,
    };
    let channels = match c.get("channels") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let Some(list) = items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
            else {
                return Verdict::Refuse;
            };
            Some(list)
        }
        Some(_) => return Verdict::Refuse,
    };
    // A registered claim given twice: which one counts is not ours to say.
    if unsure || twice(payload) {
        return Verdict::Unsure;
    }
    Verdict::Accept(Claims {
        sub,
        exp,
        info,
        channels,
    })
}

/// A JWT NumericDate: non-negative seconds, possibly fractional.
fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.floor() as u64)
}

/// Whether the top-level object names a key twice.
fn twice(payload: &[u8]) -> bool {
    struct Keys(bool);
    impl<'de> Visitor<'de> for Keys {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<bool, A::Error> {
            let mut seen = HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                self.0 |= !seen.insert(k);
            }
            Ok(self.0)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    de.deserialize_map(Keys(false)).unwrap_or(true)
}
