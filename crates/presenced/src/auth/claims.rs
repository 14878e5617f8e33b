//! A token's header and claims: [`parse_header`] reads the header before
//! any key is chosen, [`decode_claims`] checks the signature with the chosen
//! key and turns the payload into [`Claims`], with JWT numeric dates read as
//! RFC 7519 says and the operator's [`ClaimRules`] (leeway on `nbf`,
//! audience, issuer, required `exp`) applied.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthError, ClaimRules, Claims, MAX_USER_ID_BYTES};

pub(super) fn decode_claims(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    rules: &ClaimRules,
) -> Result<Claims, AuthError> {
    // jsonwebtoken checks the signature; every claim is checked below, in
    // milliseconds and with the operator's rules.
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims(&["sub"]);
    validation.leeway = 0;
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;

    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
        .map_err(|e| map_jwt_error(e.kind()))?;
    claims_from(data.claims, unix_now_ms(), rules)
}

/// What we use of a token's header.
pub(super) struct TokenHeader {
    pub(super) alg: Algorithm,
    pub(super) kid: Option<String>,
}

/// Reads the header ourselves, before any key is chosen, so that `none` and
/// unknown algorithm names are told apart from garbage.
pub(super) fn parse_header(token: &str) -> Result<TokenHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    // We implement no JWS extensions, and RFC 7515 §4.1.11 says a token that
    // marks any as critical must then be refused.
    if header.contains_key("crit") {
        return Err(AuthError::Malformed);
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(AuthError::Malformed),
    };
    let Some(Value::String(alg)) = header.get("alg") else {
        return Err(AuthError::Malformed);
    };
    let alg = Algorithm::from_str(alg).map_err(|_| AuthError::AlgorithmNotAllowed)?;
    Ok(TokenHeader { alg, kid })
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingSubject,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => AuthError::AlgorithmNotAllowed,
        // Key errors cannot come from the token (keys are checked when the
        // verifier is built), so a signature that cannot be checked is bad.
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        _ => AuthError::Malformed,
    }
}

/// The claims we use, from an already verified payload, checked at `now`
/// (unix milliseconds) against `rules`.
fn claims_from(
    mut payload: Map<String, Value>,
    now: u64,
    rules: &ClaimRules,
) -> Result<Claims, AuthError> {
    let sub = match payload.remove("sub") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(AuthError::MissingSubject),
    };
    if sub.len() > MAX_USER_ID_BYTES {
        return Err(AuthError::SubjectTooLong);
    }
    if sub.chars().any(char::is_control) {
        return Err(AuthError::SubjectInvalid);
    }
    // RFC 7519 §4.1.5 and §4.1.4. `nbf` has the leeway for clocks a few
    // seconds apart (a token minted by a machine slightly ahead is accepted
    // from `nbf` − leeway); `exp` is exact: refused from `exp` on, as a live
    // connection is closed 4401 at `exp` (PROTOCOL.md §6).
    match payload.remove("nbf") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let nbf = numeric_date(&v).ok_or(AuthError::Malformed)?;
            if nbf.saturating_mul(1000) > now.saturating_add(rules.leeway_ms) {
                return Err(AuthError::NotYetValid);
            }
        }
    }
    let exp = match payload.remove("exp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(numeric_date(&v).ok_or(AuthError::Malformed)?),
    };
    match exp {
        None if rules.require_exp => return Err(AuthError::MissingExpiry),
        Some(exp) if exp.saturating_mul(1000) <= now => {
            return Err(AuthError::Expired);
        }
        _ => {}
    }
    // RFC 7519 §4.1.3 and §4.1.1, when the operator names an audience or
    // an issuer (otherwise they are not looked at).
    if let Some(audience) = &rules.audience {
        let ok = match payload.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !ok {
            return Err(AuthError::WrongAudience);
        }
    }
    if let Some(issuer) = &rules.issuer
        && payload.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
    {
        return Err(AuthError::WrongIssuer);
    }

    let info = match payload.remove("info") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => return Err(AuthError::Malformed),
    };

    let channels = match payload.remove("channels") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(AuthError::Malformed),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(AuthError::Malformed),
    };

    Ok(Claims {
        sub,
        exp,
        info,
        channels,
    })
}

/// A JWT NumericDate: seconds, possibly fractional (RFC 7519 §2).
fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.floor() as u64)
}

/// Unix seconds on the wall clock: `exp` and `nbf` were set by another
/// machine's.
pub(super) fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Unix milliseconds on the wall clock.
fn unix_now_ms() -> u64 {
    crate::clock::wall_ms()
}
