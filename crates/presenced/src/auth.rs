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

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::config::{JwksSource, Secret, Settings};
use crate::outbound::{describe_error, redact_url};

/// Longest accepted user id (`sub`), in bytes; the same bound as channel names.
pub const MAX_USER_ID_BYTES: usize = 200;

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
    /// The token's `kid` is not in the JWKS (or it has none and the set has
    /// several keys).
    #[error("unknown token kid")]
    UnknownKey,
}

/// The configured public key and the algorithms it may verify.
#[derive(Clone)]
struct PublicKey {
    key: DecodingKey,
    algorithms: &'static [Algorithm],
    kind: &'static str,
}

const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Verifies client tokens against the configured secret and/or public key
/// or JWKS.
#[derive(Clone)]
pub struct TokenVerifier {
    secret: Option<DecodingKey>,
    public: Option<PublicKey>,
    jwks: Option<Arc<Jwks>>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("public_key", &self.public.as_ref().map(|p| p.kind))
            .field("jwks", &self.jwks.as_ref().map(|j| &j.from))
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
        })
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
        Self::build(
            settings.jwt_secret.as_ref().map(Secret::expose),
            public,
            jwks,
        )
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
        Self::build(
            settings.jwt_secret.as_ref().map(Secret::expose),
            None,
            Some(jwks),
        )
    }

    /// For a JWKS URL, the task that keeps the key set fresh (run it until
    /// shutdown); `None` when there is nothing to refresh.
    pub fn jwks_refresher(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let jwks = self.jwks.clone()?;
        jwks.remote.is_some().then(|| jwks.refresh_loop())
    }

    /// Checks the token's signature, expiry and claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = parse_header(token)?;
        let alg = header.alg;
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                // HMAC tokens are checked against the secret only, whatever
                // `kid` they name: never against a JWKS key.
                let key = self.secret.as_ref().ok_or(AuthError::AlgorithmNotAllowed)?;
                decode_claims(token, key, alg)
            }
            _ if self.public.is_some() => {
                let key = self
                    .public
                    .as_ref()
                    .filter(|p| p.algorithms.contains(&alg))
                    .map(|p| &p.key)
                    .ok_or(AuthError::AlgorithmNotAllowed)?;
                decode_claims(token, key, alg)
            }
            _ => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::AlgorithmNotAllowed)?;
                let set = jwks.current();
                match set.select(alg, header.kid.as_deref()) {
                    Ok(key) => decode_claims(token, &key.key, alg),
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

fn decode_claims(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims(&["sub"]);
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.validate_nbf = false;
    validation.validate_aud = false;

    let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
        .map_err(|e| map_jwt_error(e.kind()))?;
    claims_from(data.claims, unix_now())
}

/// What we use of a token's header.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

/// Reads the header ourselves, before any key is chosen, so that `none` and
/// unknown algorithm names are told apart from garbage.
fn parse_header(token: &str) -> Result<TokenHeader, AuthError> {
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

/// The claims we use, from an already verified payload.
fn claims_from(mut payload: Map<String, Value>, now: u64) -> Result<Claims, AuthError> {
    let sub = match payload.remove("sub") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(AuthError::MissingSubject),
    };
    if sub.len() > MAX_USER_ID_BYTES {
        return Err(AuthError::SubjectTooLong);
    }

    let exp = match payload.remove("exp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(numeric_date(&v).ok_or(AuthError::Malformed)?),
    };
    // RFC 7519 §4.1.4: the token must not be accepted on or after `exp`;
    // jsonwebtoken still accepts it during that very second.
    if exp.is_some_and(|exp| exp <= now) {
        return Err(AuthError::Expired);
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the JWT public key {}", path.display()))
}

/// Parses the operator's PEM public key and works out which algorithms it may
/// verify, refusing anything we would only half understand.
fn parse_public_key(pem: &[u8]) -> anyhow::Result<PublicKey> {
    let text = std::str::from_utf8(pem).context("the JWT public key is not a PEM file")?;
    let label = text
        .split_once("-----BEGIN ")
        .and_then(|(_, rest)| rest.split_once("-----"))
        .map(|(label, _)| label.trim())
        .context("the JWT public key is not a PEM file (no BEGIN line)")?;
    match label {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
        l if l.contains("PRIVATE") => bail!(
            "the JWT public key file holds a private key; give the public key instead \
             (openssl pkey -in key.pem -pubout)"
        ),
        l if l.contains("CERTIFICATE") => bail!(
            "the JWT public key file holds a certificate; extract its public key \
             (openssl x509 -in cert.pem -pubkey -noout)"
        ),
        l => bail!("the JWT public key has an unsupported PEM type \"{l}\""),
    }

    let (key, algorithms, kind): (_, &'static [Algorithm], _) =
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (key, &[Algorithm::EdDSA], "Ed25519")
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            match Jwk::from_decoding_key(&key, None).map(|j| j.algorithm) {
                Ok(AlgorithmParameters::EllipticCurve(p)) if p.curve == EllipticCurve::P256 => {
                    (key, &[Algorithm::ES256], "EC P-256")
                }
                Ok(AlgorithmParameters::EllipticCurve(p)) if p.curve == EllipticCurve::P384 => {
                    (key, &[Algorithm::ES384], "EC P-384")
                }
                _ => bail!("the JWT public key is an EC key on a curve other than P-256 or P-384"),
            }
        } else if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            Jwk::from_decoding_key(&key, None)
                .map_err(|_| anyhow::anyhow!("the JWT public key is not a valid RSA key"))?;
            (key, RSA_ALGS, "RSA")
        } else {
            bail!("the JWT public key is not an RSA, EC (P-256/P-384) or Ed25519 public key")
        };

    // Building a verifier parses the key material (the curve point, the
    // Ed25519 point), so a broken key fails here at start-up rather than on
    // every client's hello.
    for alg in algorithms {
        jsonwebtoken::crypto::verify("AA", b"", &key, *alg)
            .with_context(|| format!("the JWT public key ({kind}) is invalid"))?;
    }
    Ok(PublicKey {
        key,
        algorithms,
        kind,
    })
}

/// How often a JWKS URL is fetched when its response says nothing else.
const JWKS_REFRESH: Duration = Duration::from_secs(5 * 60);
/// The bounds put on a response's `Cache-Control: max-age`.
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(60);
const JWKS_MAX_REFRESH: Duration = Duration::from_secs(60 * 60);
/// The next attempt after a failed refresh.
const JWKS_RETRY: Duration = Duration::from_secs(60);
/// At most one early refresh (a token with an unknown `kid`) per this long.
const JWKS_DEMAND_INTERVAL: Duration = Duration::from_secs(30);
/// Time allowed for one fetch.
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JWKS document accepted.
const JWKS_MAX_BYTES: usize = 1024 * 1024;

/// One usable signature key of a JWKS.
struct JwksKey {
    kid: Option<String>,
    key: DecodingKey,
    /// What the key type (and curve) can verify.
    algorithms: &'static [Algorithm],
    /// The JWK's own `alg`, if it has one: then only that.
    alg: Option<Algorithm>,
}

impl JwksKey {
    fn fits(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// A parsed JSON Web Key Set: the keys that can verify token signatures.
struct KeySet {
    keys: Vec<JwksKey>,
    /// `kid`s of the keys left out (encryption keys, unsupported types), so
    /// that a token naming one is refused without a re-fetch.
    unusable: HashSet<String>,
}

impl KeySet {
    /// Parses a JWKS document. Keys we cannot use for signatures are left
    /// out (their reasons are returned); a set without a usable key is an
    /// error.
    fn parse(json: &[u8]) -> anyhow::Result<(KeySet, Vec<String>)> {
        let doc: Value = serde_json::from_slice(json).context("the JWKS is not valid JSON")?;
        let Some(Value::Array(items)) = doc.get("keys") else {
            bail!("the JWKS is not a JSON object with a \"keys\" array");
        };
        let mut keys = Vec::new();
        let mut unusable = HashSet::new();
        let mut skipped = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let kid = item.get("kid").and_then(Value::as_str).map(str::to_owned);
            match parse_jwk(item) {
                Ok((key, algorithms, alg)) => keys.push(JwksKey {
                    kid,
                    key,
                    algorithms,
                    alg,
                }),
                Err(reason) => {
                    match &kid {
                        Some(kid) => skipped.push(format!("key \"{kid}\": {reason}")),
                        None => skipped.push(format!("keys[{i}]: {reason}")),
                    }
                    unusable.extend(kid);
                }
            }
        }
        if keys.is_empty() {
            if skipped.is_empty() {
                bail!("the JWKS has no keys");
            }
            bail!(
                "the JWKS has no usable signature key ({})",
                skipped.join("; ")
            );
        }
        // A kid that also names a usable key is not unusable.
        for key in &keys {
            if let Some(kid) = &key.kid {
                unusable.remove(kid);
            }
        }
        Ok((KeySet { keys, unusable }, skipped))
    }

    /// The key for a token: the one its `kid` names (if the set has several
    /// with that kid, the first that fits `alg`), or the only key of the set
    /// for a token without `kid`. The key must fit `alg`.
    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<&JwksKey, AuthError> {
        match kid {
            Some(kid) if self.unusable.contains(kid) => return Err(AuthError::AlgorithmNotAllowed),
            Some(_) => {}
            None if self.keys.len() == 1 => {}
            None => return Err(AuthError::UnknownKey),
        }
        let mut named = self
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .peekable();
        if named.peek().is_none() {
            return Err(AuthError::UnknownKey);
        }
        named
            .find(|k| k.fits(alg))
            .ok_or(AuthError::AlgorithmNotAllowed)
    }

    fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("(no kid)"))
            .collect()
    }
}

/// Checks one JWK and makes its verifying key: `use` must be `sig` and
/// `key_ops` must allow `verify` when present; RSA, EC P-256/P-384 and OKP
/// Ed25519 only (symmetric keys never: HMAC tokens use the secret); `alg`,
/// when present, must be one its type can verify.
fn parse_jwk(
    item: &Value,
) -> Result<(DecodingKey, &'static [Algorithm], Option<Algorithm>), String> {
    let jwk: Jwk =
        serde_json::from_value(item.clone()).map_err(|_| "not a valid JWK".to_owned())?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("not a signature key (use is not \"sig\")".into()),
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("key_ops does not allow \"verify\"".into());
    }
    let (algorithms, kind): (&'static [Algorithm], &str) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (RSA_ALGS, "RSA"),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (&[Algorithm::ES256], "EC P-256")
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
            (&[Algorithm::ES384], "EC P-384")
        }
        AlgorithmParameters::EllipticCurve(_) => {
            return Err("EC key on a curve other than P-256 or P-384".into());
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (&[Algorithm::EdDSA], "Ed25519")
        }
        AlgorithmParameters::OctetKeyPair(_) => {
            return Err("OKP key on a curve other than Ed25519".into());
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys are not used; HMAC tokens use jwt_secret".into());
        }
        _ => return Err("unsupported or incomplete key (kty)".into()),
    };
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(ka) => {
            let alg = Algorithm::from_str(&ka.to_string())
                .ok()
                .filter(|a| algorithms.contains(a))
                .ok_or_else(|| format!("alg does not fit a {kind} signature key"))?;
            Some(alg)
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| format!("invalid {kind} key"))?;
    // As for the PEM key: parse the key material now, not on every hello.
    for a in algorithms {
        jsonwebtoken::crypto::verify("AA", b"", &key, *a)
            .map_err(|_| format!("invalid {kind} key"))?;
    }
    Ok((key, algorithms, alg))
}

fn read_jwks_file(path: &Path) -> anyhow::Result<Jwks> {
    let json =
        std::fs::read(path).with_context(|| format!("reading the JWKS file {}", path.display()))?;
    let (set, skipped) =
        KeySet::parse(&json).with_context(|| format!("the JWKS file {}", path.display()))?;
    log_loaded(&set, &skipped, &path.display().to_string());
    Ok(Jwks::fixed(path.display().to_string(), set))
}

fn log_loaded(set: &KeySet, skipped: &[String], from: &str) {
    tracing::info!(from, kids = ?set.kids(), "loaded the JWKS");
    if !skipped.is_empty() {
        tracing::info!(from, skipped = ?skipped, "JWKS keys left out");
    }
}

/// The key set and, for a URL, what it takes to refresh it.
struct Jwks {
    /// Where the set comes from, for logs (a URL without credentials).
    from: String,
    /// The current set. Readers clone the `Arc` and let go at once.
    set: RwLock<Arc<KeySet>>,
    remote: Option<Remote>,
}

struct Remote {
    url: String,
    http: reqwest::Client,
    /// When the refresh task should fetch next after the start-up fetch.
    first_refresh: Duration,
    /// Wakes the refresh task early (a token named an unknown `kid`).
    wake: Notify,
    /// When an early refresh was last asked for.
    last_demand: Mutex<Option<Instant>>,
}

impl Jwks {
    fn fixed(from: String, set: KeySet) -> Jwks {
        Jwks {
            from,
            set: RwLock::new(Arc::new(set)),
            remote: None,
        }
    }

    /// The start-up fetch of a JWKS URL.
    async fn fetch_first(url: &str) -> anyhow::Result<Jwks> {
        if url.starts_with("http://") && !is_loopback_url(url) {
            tracing::warn!(
                url = %redact_url(url),
                "the JWKS is fetched over plain http: anyone on the path could swap the keys"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .connect_timeout(JWKS_TIMEOUT / 2)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("presenced/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the JWKS HTTP client")?;
        let (set, skipped, ttl) = fetch_jwks(&http, url)
            .await
            .with_context(|| format!("cannot load the JWKS from {}", redact_url(url)))?;
        log_loaded(&set, &skipped, &redact_url(url));
        Ok(Jwks {
            from: redact_url(url),
            set: RwLock::new(Arc::new(set)),
            remote: Some(Remote {
                url: url.to_owned(),
                http,
                first_refresh: ttl,
                wake: Notify::new(),
                last_demand: Mutex::new(None),
            }),
        })
    }

    fn current(&self) -> Arc<KeySet> {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, set: KeySet) {
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }

    /// Asks the refresh task for an early fetch, at most once every
    /// [`JWKS_DEMAND_INTERVAL`]. Never waits.
    fn request_refresh(&self) {
        let Some(remote) = &self.remote else { return };
        let now = Instant::now();
        {
            let mut last = remote
                .last_demand
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < JWKS_DEMAND_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        remote.wake.notify_one();
    }

    /// Fetches the set on schedule or when woken, forever; a failed fetch
    /// keeps the old set.
    async fn refresh_loop(self: Arc<Self>) {
        let Some(remote) = &self.remote else { return };
        let from = self.from.as_str();
        let mut wait = remote.first_refresh;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = remote.wake.notified() => {
                    tracing::debug!(from, "a token named an unknown kid; fetching the JWKS again");
                }
            }
            wait = match fetch_jwks(&remote.http, &remote.url).await {
                Ok((set, skipped, ttl)) => {
                    let old = self.current();
                    if old.kids() != set.kids() {
                        tracing::info!(from, kids = ?set.kids(), "the JWKS changed");
                    }
                    if !skipped.is_empty() {
                        tracing::debug!(from, skipped = ?skipped, "JWKS keys left out");
                    }
                    self.replace(set);
                    ttl
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::warn!(
                        from,
                        %error,
                        retry_in_s = JWKS_RETRY.as_secs(),
                        "JWKS refresh failed; keeping the keys we have"
                    );
                    JWKS_RETRY
                }
            };
        }
    }
}

/// One GET of a JWKS URL: the parsed set, the left-out keys and when to
/// fetch again.
async fn fetch_jwks(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<(KeySet, Vec<String>, Duration)> {
    let mut response = http
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe_error(&e)))?;
    let status = response.status();
    if !status.is_success() {
        bail!("HTTP status {status}");
    }
    let ttl = max_age(response.headers()).unwrap_or(JWKS_REFRESH);
    if response
        .content_length()
        .is_some_and(|n| n > JWKS_MAX_BYTES as u64)
    {
        bail!("the JWKS is larger than {JWKS_MAX_BYTES} bytes");
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe_error(&e)))?
    {
        if body.len() + chunk.len() > JWKS_MAX_BYTES {
            bail!("the JWKS is larger than {JWKS_MAX_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    let (set, skipped) = KeySet::parse(&body)?;
    Ok((set, skipped, ttl))
}

/// `Cache-Control: max-age`, clamped to [`JWKS_MIN_REFRESH`]..=[`JWKS_MAX_REFRESH`].
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("max-age") {
                return None;
            }
            let secs: u64 = value.trim().trim_matches('"').parse().ok()?;
            Some(Duration::from_secs(secs).clamp(JWKS_MIN_REFRESH, JWKS_MAX_REFRESH))
        })
}

fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| match u.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn every_hmac_algorithm_verifies() {
        let v = secret_verifier();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = hs(alg, SECRET, &json!({"sub": "alice", "exp": future()}));
            let claims = v.verify(&token).unwrap();
            assert_eq!(claims.sub, "alice", "{alg:?}");
            assert!(claims.exp.is_some());
        }
    }

    #[test]
    fn exp_is_optional() {
        let token = hs(Algorithm::HS256, SECRET, &json!({"sub": "alice"}));
        let claims = secret_verifier().verify(&token).unwrap();
        assert_eq!(claims.exp, None);
        assert_eq!(claims.info, None);
        assert_eq!(claims.channels, None);
    }

    #[test]
    fn rs256_and_ps256_with_an_rsa_key() {
        let enc = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).unwrap();
        for public in ["rsa_public.pem", "rsa_public_pkcs1.pem"] {
            let v = TokenVerifier::new(None, Some(&fixture(public))).unwrap();
            for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
                let token = sign(alg, &enc, &json!({"sub": "bob", "exp": future()}));
                assert_eq!(v.verify(&token).unwrap().sub, "bob", "{public} {alg:?}");
            }
        }
    }

    #[test]
    fn es256_and_es384_with_matching_curves_only() {
        let p256 = EncodingKey::from_ec_pem(&fixture("ec_p256_private.pem")).unwrap();
        let p384 = EncodingKey::from_ec_pem(&fixture("ec_p384_private.pem")).unwrap();
        let v256 = TokenVerifier::new(None, Some(&fixture("ec_p256_public.pem"))).unwrap();
        let v384 = TokenVerifier::new(None, Some(&fixture("ec_p384_public.pem"))).unwrap();
        let claims = json!({"sub": "carol"});

        let t256 = sign(Algorithm::ES256, &p256, &claims);
        let t384 = sign(Algorithm::ES384, &p384, &claims);
        assert_eq!(v256.verify(&t256).unwrap().sub, "carol");
        assert_eq!(v384.verify(&t384).unwrap().sub, "carol");
        assert_eq!(v256.verify(&t384), Err(AuthError::AlgorithmNotAllowed));
        assert_eq!(v384.verify(&t256), Err(AuthError::AlgorithmNotAllowed));
    }

    #[test]
    fn eddsa_with_an_ed25519_key() {
        let enc = EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).unwrap();
        let v = TokenVerifier::new(None, Some(&fixture("ed25519_public.pem"))).unwrap();
        let token = sign(Algorithm::EdDSA, &enc, &json!({"sub": "dave"}));
        assert_eq!(v.verify(&token).unwrap().sub, "dave");
    }

    #[test]
    fn public_key_of_the_wrong_type_is_not_used() {
        let rsa = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).unwrap();
        let ed = EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).unwrap();
        let v = TokenVerifier::new(None, Some(&fixture("ec_p256_public.pem"))).unwrap();
        let claims = json!({"sub": "eve"});
        assert_eq!(
            v.verify(&sign(Algorithm::RS256, &rsa, &claims)),
            Err(AuthError::AlgorithmNotAllowed)
        );
        assert_eq!(
            v.verify(&sign(Algorithm::EdDSA, &ed, &claims)),
            Err(AuthError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn token_signed_by_another_key_is_refused() {
        let other = EncodingKey::from_ec_pem(&fixture("ec_p256_private.pem")).unwrap();
        let v = TokenVerifier::new(None, Some(&fixture("ec_p256_public.pem"))).unwrap();
        let good = sign(Algorithm::ES256, &other, &json!({"sub": "eve"}));
        // Re-sign the same header with different claims by swapping payloads.
        let forged_payload = URL_SAFE_NO_PAD.encode(json!({"sub": "mallory"}).to_string());
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(v.verify(&parts.join(".")), Err(AuthError::BadSignature));
    }

    #[test]
    fn alg_none_is_refused() {
        let v = TokenVerifier::new(Some(SECRET), Some(&fixture("rsa_public.pem"))).unwrap();
        for alg in ["none", "None", "NONE"] {
            let token = raw_token(
                &json!({"alg": alg, "typ": "JWT"}),
                &json!({"sub": "mallory"}),
                b"",
            );
            assert_eq!(
                v.verify(&token),
                Err(AuthError::AlgorithmNotAllowed),
                "{alg}"
            );
        }
        let unknown = raw_token(&json!({"alg": "HS1"}), &json!({"sub": "m"}), b"x");
        assert_eq!(v.verify(&unknown), Err(AuthError::AlgorithmNotAllowed));
    }

    #[test]
    fn hmac_over_the_public_key_is_refused() {
        let pem = fixture("rsa_public.pem");
        let pem_as_secret = std::str::from_utf8(&pem).unwrap();
        let forged = hs(Algorithm::HS256, pem_as_secret, &json!({"sub": "mallory"}));

        let only_public = TokenVerifier::new(None, Some(&pem)).unwrap();
        assert_eq!(
            only_public.verify(&forged),
            Err(AuthError::AlgorithmNotAllowed)
        );

        // With both configured, HMAC tokens are checked against the secret only.
        let both = TokenVerifier::new(Some(SECRET), Some(&pem)).unwrap();
        assert_eq!(both.verify(&forged), Err(AuthError::BadSignature));
        let honest = hs(Algorithm::HS256, SECRET, &json!({"sub": "alice"}));
        assert_eq!(both.verify(&honest).unwrap().sub, "alice");
    }

    #[test]
    fn public_key_tokens_are_refused_without_a_public_key() {
        let enc = EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).unwrap();
        let token = sign(Algorithm::EdDSA, &enc, &json!({"sub": "dave"}));
        assert_eq!(
            secret_verifier().verify(&token),
            Err(AuthError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn expired_is_refused_without_leeway() {
        let v = secret_verifier();
        let now = unix_now();
        for exp in [now - 3600, now - 1, now] {
            let token = hs(Algorithm::HS256, SECRET, &json!({"sub": "a", "exp": exp}));
            assert_eq!(v.verify(&token), Err(AuthError::Expired), "exp {exp}");
        }
        let token = hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "a", "exp": now + 5}),
        );
        assert!(v.verify(&token).is_ok());
    }

    #[test]
    fn bad_exp_is_malformed() {
        let token = hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "a", "exp": "tomorrow"}),
        );
        assert_eq!(secret_verifier().verify(&token), Err(AuthError::Malformed));
    }

    #[test]
    fn wrong_secret_is_refused() {
        let token = hs(Algorithm::HS256, "another secret", &json!({"sub": "a"}));
        assert_eq!(
            secret_verifier().verify(&token),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn subject_is_required_and_bounded() {
        let v = secret_verifier();
        for claims in [
            json!({}),
            json!({"sub": ""}),
            json!({"sub": 42}),
            json!({"sub": null}),
        ] {
            let token = hs(Algorithm::HS256, SECRET, &claims);
            assert_eq!(v.verify(&token), Err(AuthError::MissingSubject), "{claims}");
        }
        let long = hs(Algorithm::HS256, SECRET, &json!({"sub": "x".repeat(201)}));
        assert_eq!(v.verify(&long), Err(AuthError::SubjectTooLong));
        let max = hs(Algorithm::HS256, SECRET, &json!({"sub": "x".repeat(200)}));
        assert!(v.verify(&max).is_ok());
    }

    #[test]
    fn info_and_channels_are_carried() {
        let token = hs(
            Algorithm::HS256,
            SECRET,
            &json!({
                "sub": "alice",
                "info": {"name": "Alice", "avatar": "a.png"},
                "channels": ["room:*", "doc:1"],
                "aud": "somebody-else",
                "iss": "whoever",
            }),
        );
        let claims = secret_verifier().verify(&token).unwrap();
        assert_eq!(
            Value::Object(claims.info.unwrap()),
            json!({"name": "Alice", "avatar": "a.png"})
        );
        assert_eq!(claims.channels.unwrap(), vec!["room:*", "doc:1"]);
    }

    #[test]
    fn wrongly_typed_info_or_channels_are_malformed() {
        let v = secret_verifier();
        for claims in [
            json!({"sub": "a", "info": "Alice"}),
            json!({"sub": "a", "info": ["Alice"]}),
            json!({"sub": "a", "channels": "room:*"}),
            json!({"sub": "a", "channels": ["room:*", 7]}),
        ] {
            let token = hs(Algorithm::HS256, SECRET, &claims);
            assert_eq!(v.verify(&token), Err(AuthError::Malformed), "{claims}");
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let v = secret_verifier();
        for token in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.e30.",
            "e30.e30.",
            &raw_token(
                &json!({"alg": "HS256", "crit": ["b64"]}),
                &json!({"sub": "a"}),
                b"",
            ),
        ] {
            assert_eq!(v.verify(token), Err(AuthError::Malformed), "{token:?}");
        }
        let good = hs(Algorithm::HS256, SECRET, &json!({"sub": "a"}));
        let (rest, _) = good.rsplit_once('.').unwrap();
        assert_eq!(
            v.verify(&format!("{rest}.not base64!")),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn sign_hs256_round_trips() {
        let v = secret_verifier();
        let token = sign_hs256(
            SECRET,
            "alice",
            Some(json!({"name": "Alice"})),
            Some(Duration::from_secs(3600)),
        )
        .unwrap();
        let claims = v.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        let exp = claims.exp.unwrap();
        assert!(exp > unix_now() + 3500 && exp <= unix_now() + 3600);
        assert_eq!(claims.info.unwrap()["name"], "Alice");

        let forever = sign_hs256(SECRET, "bob", None, None).unwrap();
        assert_eq!(v.verify(&forever).unwrap().exp, None);

        assert!(sign_hs256(SECRET, "bob", Some(json!("x")), None).is_err());
        assert!(sign_hs256(SECRET, "", None, None).is_err());
        assert!(sign_hs256("", "bob", None, None).is_err());
    }

    #[test]
    fn bad_public_keys_are_refused_with_a_reason() {
        let err = |pem: &[u8]| TokenVerifier::new(None, Some(pem)).unwrap_err().to_string();
        assert!(err(&fixture("rsa_private.pem")).contains("private key"));
        assert!(err(b"not a pem").contains("not a PEM"));
        assert!(
            err(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .contains("public key")
        );
        assert!(TokenVerifier::new(None, None).is_err());
        assert!(TokenVerifier::new(Some(""), None).is_err());
    }

    #[test]
    fn errors_say_little() {
        for e in [
            AuthError::Malformed,
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::AlgorithmNotAllowed,
            AuthError::MissingSubject,
            AuthError::SubjectTooLong,
            AuthError::UnknownKey,
        ] {
            let s = e.to_string();
            assert!(s.len() < 60 && !s.contains("key"), "{s}");
        }
    }
    // ---- JWKS ----

    fn rsa_enc() -> EncodingKey {
        EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).unwrap()
    }

    fn p256_enc() -> EncodingKey {
        EncodingKey::from_ec_pem(&fixture("ec_p256_private.pem")).unwrap()
    }

    fn p384_enc() -> EncodingKey {
        EncodingKey::from_ec_pem(&fixture("ec_p384_private.pem")).unwrap()
    }

    fn ed_enc() -> EncodingKey {
        EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).unwrap()
    }

    /// The public JWK of a private key, with `kid` (if any) and without `alg`
    /// unless `alg` is given.
    fn jwk(key: &EncodingKey, family: Algorithm, kid: Option<&str>, alg: Option<&str>) -> Value {
        let mut v = serde_json::to_value(Jwk::from_encoding_key(key, family).unwrap()).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("alg");
        if let Some(kid) = kid {
            obj.insert("kid".into(), json!(kid));
        }
        if let Some(alg) = alg {
            obj.insert("alg".into(), json!(alg));
        }
        v
    }

    fn jwks_verifier(secret: Option<&str>, keys: &[Value]) -> TokenVerifier {
        TokenVerifier::with_jwks(secret, json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn sign_kid(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    /// A set with one key of every supported type.
    fn full_set() -> Vec<Value> {
        vec![
            jwk(&rsa_enc(), Algorithm::RS256, Some("rsa"), None),
            jwk(&p256_enc(), Algorithm::ES256, Some("p256"), Some("ES256")),
            jwk(&p384_enc(), Algorithm::ES384, Some("p384"), None),
            jwk(&ed_enc(), Algorithm::EdDSA, Some("ed"), Some("EdDSA")),
        ]
    }

    #[test]
    fn jwks_rsa_ec_and_ed25519_keys_verify_by_kid() {
        let v = jwks_verifier(None, &full_set());
        let claims = json!({"sub": "frank", "exp": future()});
        for (alg, key, kid) in [
            (Algorithm::RS256, rsa_enc(), "rsa"),
            (Algorithm::RS512, rsa_enc(), "rsa"),
            (Algorithm::PS256, rsa_enc(), "rsa"),
            (Algorithm::ES256, p256_enc(), "p256"),
            (Algorithm::ES384, p384_enc(), "p384"),
            (Algorithm::EdDSA, ed_enc(), "ed"),
        ] {
            let token = sign_kid(alg, &key, Some(kid), &claims);
            assert_eq!(v.verify(&token).unwrap().sub, "frank", "{alg:?} {kid}");
        }
        // Claims are checked as for any token.
        let expired = sign_kid(
            Algorithm::EdDSA,
            &ed_enc(),
            Some("ed"),
            &json!({"sub": "frank", "exp": unix_now() - 1}),
        );
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));
    }

    #[test]
    fn jwks_key_is_chosen_by_kid() {
        let v = jwks_verifier(None, &full_set());
        let claims = json!({"sub": "grace"});
        let rsa = |kid| sign_kid(Algorithm::RS256, &rsa_enc(), kid, &claims);

        assert_eq!(v.verify(&rsa(Some("nope"))), Err(AuthError::UnknownKey));
        // Several keys: a token must say which.
        assert_eq!(v.verify(&rsa(None)), Err(AuthError::UnknownKey));
        // The kid of another key of the same type: a bad signature.
        let ours = jwk(&rsa_enc(), Algorithm::RS256, Some("ours"), None);
        let mut other = ours.clone();
        let mut n = URL_SAFE_NO_PAD.decode(ours["n"].as_str().unwrap()).unwrap();
        n[100] ^= 0x10;
        other["n"] = json!(URL_SAFE_NO_PAD.encode(&n));
        other["kid"] = json!("other");
        let two = jwks_verifier(None, &[ours, other]);
        assert_eq!(two.verify(&rsa(Some("ours"))).unwrap().sub, "grace");
        assert_eq!(
            two.verify(&rsa(Some("other"))),
            Err(AuthError::BadSignature)
        );

        // One key: a token without kid uses it; a token with another kid
        // does not.
        let one = jwks_verifier(None, &[jwk(&rsa_enc(), Algorithm::RS256, Some("k1"), None)]);
        assert_eq!(one.verify(&rsa(None)).unwrap().sub, "grace");
        assert_eq!(one.verify(&rsa(Some("k1"))).unwrap().sub, "grace");
        assert_eq!(one.verify(&rsa(Some("k2"))), Err(AuthError::UnknownKey));
        let no_kid = jwks_verifier(None, &[jwk(&ed_enc(), Algorithm::EdDSA, None, None)]);
        let ed = |kid| sign_kid(Algorithm::EdDSA, &ed_enc(), kid, &claims);
        assert_eq!(no_kid.verify(&ed(None)).unwrap().sub, "grace");
        assert_eq!(no_kid.verify(&ed(Some("x"))), Err(AuthError::UnknownKey));

        // Two keys under one kid (an issuer in the middle of a change of
        // algorithm): the one that fits the token's alg.
        let shared = jwks_verifier(
            None,
            &[
                jwk(&rsa_enc(), Algorithm::RS256, Some("same"), None),
                jwk(&p256_enc(), Algorithm::ES256, Some("same"), None),
            ],
        );
        assert!(shared.verify(&rsa(Some("same"))).is_ok());
        let es = sign_kid(Algorithm::ES256, &p256_enc(), Some("same"), &claims);
        assert!(shared.verify(&es).is_ok());

        // A kid that is not a string is garbage.
        let bad_kid = raw_token(&json!({"alg": "RS256", "kid": 7}), &claims, b"x");
        assert_eq!(v.verify(&bad_kid), Err(AuthError::Malformed));
    }

    #[test]
    fn jwks_key_type_and_alg_must_fit_the_token() {
        let v = jwks_verifier(
            None,
            &[
                jwk(
                    &rsa_enc(),
                    Algorithm::RS256,
                    Some("rs256-only"),
                    Some("RS256"),
                ),
                jwk(&rsa_enc(), Algorithm::RS256, Some("rsa"), None),
                jwk(&p256_enc(), Algorithm::ES256, Some("p256"), None),
                jwk(&p384_enc(), Algorithm::ES384, Some("p384"), None),
                jwk(&ed_enc(), Algorithm::EdDSA, Some("ed"), None),
            ],
        );
        let claims = json!({"sub": "heidi"});
        let refused = |alg, key: &EncodingKey, kid| {
            let token = sign_kid(alg, key, Some(kid), &claims);
            assert_eq!(
                v.verify(&token),
                Err(AuthError::AlgorithmNotAllowed),
                "{alg:?} with kid {kid}"
            );
        };
        // The JWK's alg pins the algorithm.
        assert!(
            v.verify(&sign_kid(
                Algorithm::RS256,
                &rsa_enc(),
                Some("rs256-only"),
                &claims
            ))
            .is_ok()
        );
        refused(Algorithm::PS256, &rsa_enc(), "rs256-only");
        refused(Algorithm::RS512, &rsa_enc(), "rs256-only");
        // kty/crv against alg.
        refused(Algorithm::ES256, &p256_enc(), "rsa");
        refused(Algorithm::ES384, &p384_enc(), "p256");
        refused(Algorithm::ES256, &p256_enc(), "p384");
        refused(Algorithm::EdDSA, &ed_enc(), "p256");
        refused(Algorithm::RS256, &rsa_enc(), "ed");
    }

    #[test]
    fn jwks_never_verifies_hmac_or_none() {
        let set = full_set();
        let claims = json!({"sub": "mallory"});
        // HMAC "signed" with what an attacker can read: the JWK's modulus,
        // or the whole JWK.
        let n = set[0]["n"].as_str().unwrap().to_owned();
        let forged = [
            sign_kid(
                Algorithm::HS256,
                &EncodingKey::from_secret(n.as_bytes()),
                Some("rsa"),
                &claims,
            ),
            sign_kid(
                Algorithm::HS256,
                &EncodingKey::from_secret(set[0].to_string().as_bytes()),
                Some("rsa"),
                &claims,
            ),
            sign_kid(
                Algorithm::HS512,
                &EncodingKey::from_secret(n.as_bytes()),
                None,
                &claims,
            ),
        ];
        let only_jwks = jwks_verifier(None, &set);
        for token in &forged {
            assert_eq!(only_jwks.verify(token), Err(AuthError::AlgorithmNotAllowed));
        }
        // With a secret too, HMAC tokens are checked against the secret only.
        let both = jwks_verifier(Some(SECRET), &set);
        for token in &forged {
            assert_eq!(both.verify(token), Err(AuthError::BadSignature));
        }
        let honest = sign_kid(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            Some("rsa"),
            &json!({"sub": "alice"}),
        );
        assert_eq!(both.verify(&honest).unwrap().sub, "alice");

        for alg in ["none", "None"] {
            let token = raw_token(&json!({"alg": alg, "kid": "rsa"}), &claims, b"");
            assert_eq!(both.verify(&token), Err(AuthError::AlgorithmNotAllowed));
        }
        // A symmetric key in the set is never used.
        let oct = json!({"kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode("k3y")});
        let with_oct = jwks_verifier(None, &[oct, set[0].clone()]);
        let token = sign_kid(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"k3y"),
            Some("hmac"),
            &claims,
        );
        assert_eq!(with_oct.verify(&token), Err(AuthError::AlgorithmNotAllowed));
    }

    #[test]
    fn jwks_keys_that_cannot_verify_are_left_out() {
        let good = jwk(&ed_enc(), Algorithm::EdDSA, Some("good"), None);
        let mut sig = jwk(&p256_enc(), Algorithm::ES256, Some("sig"), None);
        sig["use"] = json!("sig");
        let mut enc = jwk(&rsa_enc(), Algorithm::RS256, Some("enc"), None);
        enc["use"] = json!("enc");
        let mut oaep = jwk(&rsa_enc(), Algorithm::RS256, Some("oaep"), None);
        oaep["alg"] = json!("RSA-OAEP");
        let mut ops = jwk(&rsa_enc(), Algorithm::RS256, Some("ops"), None);
        ops["key_ops"] = json!(["encrypt"]);
        let mut verify_ops = jwk(&rsa_enc(), Algorithm::RS256, Some("verify-ops"), None);
        verify_ops["key_ops"] = json!(["verify"]);
        let mismatch = jwk(
            &p256_enc(),
            Algorithm::ES256,
            Some("mismatch"),
            Some("RS256"),
        );
        let mut p521 = jwk(&p256_enc(), Algorithm::ES256, Some("p521"), None);
        p521["crv"] = json!("P-521");
        let mut broken = jwk(&p256_enc(), Algorithm::ES256, Some("broken"), None);
        broken["x"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
        let odd = json!({"kty": "XYZ", "kid": "odd"});

        let doc = json!({"keys": [
            good, sig, enc, oaep, ops, verify_ops, mismatch, p521, broken, odd, "junk"
        ]});
        let (set, skipped) = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.kids(), ["good", "sig", "verify-ops"]);
        assert_eq!(skipped.len(), 8, "{skipped:?}");
        assert!(
            skipped
                .iter()
                .any(|s| s.contains("\"enc\"") && s.contains("sig"))
        );
        assert!(
            skipped.iter().any(|s| s.starts_with("keys[10]")),
            "{skipped:?}"
        );

        let v = TokenVerifier::with_jwks(None, doc.to_string().as_bytes()).unwrap();
        let claims = json!({"sub": "ivan"});
        let es = sign_kid(Algorithm::ES256, &p256_enc(), Some("sig"), &claims);
        assert!(v.verify(&es).is_ok());
        let rs = |kid| sign_kid(Algorithm::RS256, &rsa_enc(), Some(kid), &claims);
        assert!(v.verify(&rs("verify-ops")).is_ok());
        // Known but unusable: refused, and no reason to fetch the set again.
        for kid in ["enc", "oaep", "ops"] {
            assert_eq!(
                v.verify(&rs(kid)),
                Err(AuthError::AlgorithmNotAllowed),
                "{kid}"
            );
        }
    }

    #[test]
    fn jwks_documents_without_usable_keys_are_refused() {
        let err = |doc: &str| {
            TokenVerifier::with_jwks(None, doc.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(err("not json").contains("not valid JSON"));
        assert!(err("[]").contains("\"keys\" array"));
        assert!(err(r#"{"keys": {}}"#).contains("\"keys\" array"));
        assert!(err(r#"{"keys": []}"#).contains("no keys"));
        let e = err(r#"{"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}"#);
        assert!(
            e.contains("no usable signature key") && e.contains("\"h\""),
            "{e}"
        );
        // The PEM key and a JWKS do not go together.
        let one = json!({"keys": [jwk(&ed_enc(), Algorithm::EdDSA, None, None)]});
        let (set, _) = KeySet::parse(one.to_string().as_bytes()).unwrap();
        let public = parse_public_key(&fixture("ed25519_public.pem")).unwrap();
        assert!(
            TokenVerifier::build(None, Some(public), Some(Jwks::fixed("t".into(), set))).is_err()
        );
    }

    #[test]
    fn cache_control_max_age_is_clamped() {
        use reqwest::header::{CACHE_CONTROL, HeaderMap, HeaderValue};
        let age = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, HeaderValue::from_static(v));
            max_age(&h).map(|d| d.as_secs())
        };
        assert_eq!(age("public, max-age=600"), Some(600));
        assert_eq!(age("Max-Age=120, must-revalidate"), Some(120));
        assert_eq!(age("max-age=5"), Some(60));
        assert_eq!(age("max-age=0"), Some(60));
        assert_eq!(age("max-age=86400"), Some(3600));
        assert_eq!(age("no-cache"), None);
        assert_eq!(age("max-age=soon"), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn unknown_kid_asks_for_a_refresh_at_most_every_30_s() {
        let one = json!({"keys": [jwk(&ed_enc(), Algorithm::EdDSA, Some("k1"), None)]});
        let (set, _) = KeySet::parse(one.to_string().as_bytes()).unwrap();
        let mut jwks = Jwks::fixed("test".into(), set);
        jwks.remote = Some(Remote {
            url: "http://127.0.0.1:9/jwks.json".into(),
            http: reqwest::Client::new(),
            first_refresh: JWKS_REFRESH,
            wake: Notify::new(),
            last_demand: Mutex::new(None),
        });
        let v = TokenVerifier::build(None, None, Some(jwks)).unwrap();
        let jwks = v.jwks.clone().unwrap();
        let remote = jwks.remote.as_ref().unwrap();
        let last = || *remote.last_demand.lock().unwrap();
        let claims = json!({"sub": "judy"});

        // A known kid, or a token without kid, asks for nothing.
        assert!(
            v.verify(&sign_kid(Algorithm::EdDSA, &ed_enc(), Some("k1"), &claims))
                .is_ok()
        );
        let no_kid = sign_kid(Algorithm::RS256, &rsa_enc(), None, &claims);
        assert_eq!(v.verify(&no_kid), Err(AuthError::AlgorithmNotAllowed));
        assert_eq!(last(), None);

        let unknown = sign_kid(Algorithm::EdDSA, &ed_enc(), Some("k2"), &claims);
        assert_eq!(v.verify(&unknown), Err(AuthError::UnknownKey));
        let first = last().expect("a refresh was asked for");
        tokio::time::timeout(Duration::from_secs(1), remote.wake.notified())
            .await
            .expect("the refresh task is woken");
        assert_eq!(v.verify(&unknown), Err(AuthError::UnknownKey));
        assert_eq!(last(), Some(first), "not again within 30 s");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), remote.wake.notified())
                .await
                .is_err()
        );

        // Once the new set is in, the token verifies.
        let two = json!({"keys": [jwk(&ed_enc(), Algorithm::EdDSA, Some("k2"), None)]});
        jwks.replace(KeySet::parse(two.to_string().as_bytes()).unwrap().0);
        assert_eq!(v.verify(&unknown).unwrap().sub, "judy");
    }

    #[test]
    fn loopback_urls_are_recognised() {
        assert!(is_loopback_url("http://127.0.0.1:80/x"));
        assert!(is_loopback_url("http://[::1]:80/x"));
        assert!(is_loopback_url("http://localhost/x"));
        assert!(!is_loopback_url("http://idp.example/x"));
    }
}
