//! Token verification and signing: turns a client's JWT into [`Claims`].
//!
//! The algorithm in a token's header only ever selects among the keys the
//! operator configured, never the other way round: HMAC algorithms use the
//! shared secret, RSA/EC/EdDSA algorithms use the PEM public key (or the JWKS
//! key the header's `kid` names) and only when that key is of the matching
//! type. That is what blocks `alg: none` and the classic key confusion (an
//! HS256 token "signed" with the public key's bytes).
//!
//! A JWKS given by URL is fetched before the server starts and then refreshed
//! by a background task ([`TokenVerifier::jwks_refresher`]): every 5 minutes,
//! or as the response's `Cache-Control: max-age` says (clamped to 1 min–1 h),
//! and early, at most once every 30 s, when a token names a `kid` the set does
//! not have. Verifying never waits for the network: such a token is refused,
//! and the client's reconnect finds the new key.
//!
//! The module holds:
//!
//! - this file: [`TokenVerifier`], [`Claims`], [`ClaimRules`] (what the
//!   operator requires of claims: `nbf` leeway, audience, issuer, `exp`) and
//!   [`AuthError`], the one way in (every caller verifies through
//!   [`TokenVerifier::verify`]);
//! - `claims.rs`: reading a token's header, checking its claims, numeric
//!   dates;
//! - `keys.rs`: the operator's PEM public key and the algorithms it may
//!   verify;
//! - `jwks.rs`: the JSON Web Key Set, from a file or a URL, and the refresh
//!   of a URL's set with its timing constants;
//! - `sign.rs`: [`sign_hs256`], for the `presenced token` command and tests.

mod claims;
mod jwks;
mod keys;
mod sign;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use anyhow::bail;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::config::{DEFAULT_JWT_LEEWAY_MS, JwksSource, Secret, Settings, Values};

use self::claims::{decode_claims, parse_header};
use self::jwks::{Jwks, KeySet, read_jwks_file};
use self::keys::{PublicKey, parse_public_key, read_pem};

pub use self::sign::sign_hs256;

/// Longest accepted user id (`sub`), in bytes; the same bound as channel names.
pub const MAX_USER_ID_BYTES: usize = 200;

/// What a token's claims must satisfy beyond a good signature and `sub`:
/// the operator's `jwt_*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// Clock skew allowed on `nbf`, in milliseconds (`exp` is exact).
    pub leeway_ms: u64,
    /// When set, `aud` must be this (or an array holding it).
    pub audience: Option<String>,
    /// When set, `iss` must be this.
    pub issuer: Option<String>,
    /// A token without `exp` is refused.
    pub require_exp: bool,
}

impl Default for ClaimRules {
    fn default() -> Self {
        ClaimRules {
            leeway_ms: DEFAULT_JWT_LEEWAY_MS,
            audience: None,
            issuer: None,
            require_exp: false,
        }
    }
}

impl ClaimRules {
    /// The rules of a server's settings.
    pub fn from_values(v: &Values) -> Self {
        ClaimRules {
            leeway_ms: v.jwt_leeway_ms.0,
            audience: v.jwt_audience.clone(),
            issuer: v.jwt_issuer.clone(),
            require_exp: v.jwt_require_exp,
        }
    }
}

/// What a verified token says about its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, unix seconds; `None` for a token that never expires.
    pub exp: Option<u64>,
    /// Trusted member data, written under `data.info` on enter and update.
    pub info: Option<Map<String, Value>>,
    /// Glob patterns of the channels this user may use; `None` means the
    /// server's rules alone decide.
    pub channels: Option<Vec<String>>,
}

/// Why a token was refused. The messages go to clients, so they name the
/// problem and nothing about keys or internals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("token has no subject")]
    MissingSubject,
    #[error("token subject is longer than 200 bytes")]
    SubjectTooLong,
    /// `sub` holds a control character (NUL, newline, ESC...), which would
    /// become a user id and a log line.
    #[error("token subject has a control character")]
    SubjectInvalid,
    /// `nbf` is later than now (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// The server requires `exp` (`jwt_require_exp`) and the token has none.
    #[error("token has no expiry")]
    MissingExpiry,
    /// `aud` is not the configured audience (or is missing).
    #[error("token audience not accepted")]
    WrongAudience,
    /// `iss` is not the configured issuer (or is missing).
    #[error("token issuer not accepted")]
    WrongIssuer,
    /// The token's `kid` is not in the JWKS (or it has none and the set has
    /// several keys).
    #[error("unknown token kid")]
    UnknownKey,
}

/// Verifies client tokens against the configured secret and/or public key
/// or JWKS.
#[derive(Clone)]
pub struct TokenVerifier {
    secret: Option<DecodingKey>,
    public: Option<PublicKey>,
    jwks: Option<Arc<Jwks>>,
    rules: ClaimRules,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("public_key", &self.public.as_ref().map(|p| p.kind))
            .field("jwks", &self.jwks.as_ref().map(|j| &j.from))
            .field("rules", &self.rules)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier for HMAC tokens (with `secret`) and/or public-key tokens
    /// (with a PEM `SubjectPublicKeyInfo` or PKCS#1 RSA public key). At least
    /// one must be given.
    pub fn new(secret: Option<&str>, public_key_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        if secret.is_none() && public_key_pem.is_none() {
            bail!("no JWT secret or public key configured");
        }
        let public = public_key_pem.map(parse_public_key).transpose()?;
        Self::build(secret, public, None)
    }

    /// A verifier for HMAC tokens (with `secret`, optional) and tokens signed
    /// by a key of the JSON Web Key Set `jwks_json`, which is used as it is
    /// (never refreshed).
    pub fn with_jwks(secret: Option<&str>, jwks_json: &[u8]) -> anyhow::Result<Self> {
        let (set, _skipped) = KeySet::parse(jwks_json)?;
        let jwks = Jwks::fixed("(inline)".into(), set);
        Self::build(secret, None, Some(jwks))
    }

    fn build(
        secret: Option<&str>,
        public: Option<PublicKey>,
        jwks: Option<Jwks>,
    ) -> anyhow::Result<Self> {
        let secret = match secret {
            Some("") => bail!("the JWT secret is empty"),
            Some(s) => Some(DecodingKey::from_secret(s.as_bytes())),
            None => None,
        };
        if public.is_some() && jwks.is_some() {
            bail!("a JWT public key and a JWKS cannot be used together");
        }
        if secret.is_none() && public.is_none() && jwks.is_none() {
            bail!("no JWT secret, public key or JWKS configured");
        }
        Ok(TokenVerifier {
            secret,
            public,
            jwks: jwks.map(Arc::new),
            rules: ClaimRules::default(),
        })
    }

    /// The same verifier with other claim rules (the default ones are
    /// [`ClaimRules::default`]).
    pub fn with_claim_rules(mut self, rules: ClaimRules) -> Self {
        self.rules = rules;
        self
    }

    pub fn claim_rules(&self) -> &ClaimRules {
        &self.rules
    }

    /// When a connection whose token has `exp` (unix seconds) is closed
    /// 4401, in unix milliseconds: at `exp` itself, with no leeway (the
    /// leeway is for `nbf` only); never for `None`.
    pub fn expiry_ms(&self, exp: Option<u64>) -> Option<u64> {
        exp.map(|exp| exp.saturating_mul(1000))
    }

    /// The verifier for a server's settings; reads the public key or JWKS
    /// file. A JWKS URL needs the network: use [`TokenVerifier::load`].
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let pem = settings
            .values
            .jwt_public_key
            .as_deref()
            .map(read_pem)
            .transpose()?;
        let public = pem.as_deref().map(parse_public_key).transpose()?;
        let jwks = match &settings.values.jwt_jwks {
            None => None,
            Some(JwksSource::File(path)) => Some(read_jwks_file(path)?),
            Some(JwksSource::Url(_)) => {
                bail!("a JWKS URL is fetched at start-up; build the verifier with load()")
            }
        };
        Ok(Self::build(
            settings.jwt_secret.as_ref().map(Secret::expose),
            public,
            jwks,
        )?
        .with_claim_rules(ClaimRules::from_values(&settings.values)))
    }

    /// Like [`TokenVerifier::from_settings`], and fetches a JWKS URL: a
    /// failure to get a usable key set is an error. Spawn
    /// [`TokenVerifier::jwks_refresher`] to keep the set fresh.
    pub async fn load(settings: &Settings) -> anyhow::Result<Self> {
        let Some(JwksSource::Url(url)) = &settings.values.jwt_jwks else {
            return Self::from_settings(settings);
        };
        if settings.values.jwt_public_key.is_some() {
            bail!("a JWT public key and a JWKS cannot be used together");
        }
        let jwks = Jwks::fetch_first(url).await?;
        Ok(Self::build(
            settings.jwt_secret.as_ref().map(Secret::expose),
            None,
            Some(jwks),
        )?
        .with_claim_rules(ClaimRules::from_values(&settings.values)))
    }

    /// For a JWKS URL, the task that keeps the key set fresh (run it until
    /// shutdown); `None` when there is nothing to refresh.
    pub fn jwks_refresher(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let jwks = self.jwks.clone()?;
        jwks.remote.is_some().then(|| jwks.refresh_loop())
    }

    /// Checks the token's signature, dates and claims (as its
    /// [`ClaimRules`] say).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = parse_header(token)?;
        let alg = header.alg;
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                // HMAC tokens are checked against the secret only, whatever
                // `kid` they name: never against a JWKS key.
                let key = self.secret.as_ref().ok_or(AuthError::AlgorithmNotAllowed)?;
                decode_claims(token, key, alg, &self.rules)
            }
            _ if self.public.is_some() => {
                let key = self
                    .public
                    .as_ref()
                    .filter(|p| p.algorithms.contains(&alg))
                    .map(|p| &p.key)
                    .ok_or(AuthError::AlgorithmNotAllowed)?;
                decode_claims(token, key, alg, &self.rules)
            }
            _ => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::AlgorithmNotAllowed)?;
                let set = jwks.current();
                match set.select(alg, header.kid.as_deref()) {
                    Ok(key) => decode_claims(token, &key.key, alg, &self.rules),
                    Err(AuthError::UnknownKey) => {
                        if header.kid.is_some() {
                            // Perhaps the issuer rotated its keys: look again
                            // (in the background, rate-limited).
                            jwks.request_refresh();
                        }
                        Err(AuthError::UnknownKey)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}
