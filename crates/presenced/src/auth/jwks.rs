//! The JSON Web Key Set (`jwt_jwks`): parsing a set into the keys that can
//! verify signatures, choosing a token's key by `kid`, reading a set from a
//! file, and fetching and refreshing a set from a URL (the timing constants
//! are at the top).

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::sync::Notify;

use super::AuthError;
use super::keys::RSA_ALGS;
use crate::outbound::{describe_error, redact_url};

/// How often a JWKS URL is fetched when its response says nothing else.
pub(super) const JWKS_REFRESH: Duration = Duration::from_secs(5 * 60);
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
pub(super) struct JwksKey {
    kid: Option<String>,
    pub(super) key: DecodingKey,
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
pub(super) struct KeySet {
    keys: Vec<JwksKey>,
    /// `kid`s of the keys left out (encryption keys, unsupported types), so
    /// that a token naming one is refused without a re-fetch.
    unusable: HashSet<String>,
}

impl KeySet {
    /// Parses a JWKS document. Keys we cannot use for signatures are left
    /// out (their reasons are returned); a set without a usable key is an
    /// error.
    pub(super) fn parse(json: &[u8]) -> anyhow::Result<(KeySet, Vec<String>)> {
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
    pub(super) fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<&JwksKey, AuthError> {
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

    pub(super) fn kids(&self) -> Vec<&str> {
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

pub(super) fn read_jwks_file(path: &Path) -> anyhow::Result<Jwks> {
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
pub(super) struct Jwks {
    /// Where the set comes from, for logs (a URL without credentials).
    pub(super) from: String,
    /// The current set. Readers clone the `Arc` and let go at once.
    set: RwLock<Arc<KeySet>>,
    pub(super) remote: Option<Remote>,
}

pub(super) struct Remote {
    pub(super) url: String,
    pub(super) http: reqwest::Client,
    /// When the refresh task should fetch next after the start-up fetch.
    pub(super) first_refresh: Duration,
    /// Wakes the refresh task early (a token named an unknown `kid`).
    pub(super) wake: Notify,
    /// When an early refresh was last asked for.
    pub(super) last_demand: Mutex<Option<Instant>>,
}

impl Jwks {
    pub(super) fn fixed(from: String, set: KeySet) -> Jwks {
        Jwks {
            from,
            set: RwLock::new(Arc::new(set)),
            remote: None,
        }
    }

    /// The start-up fetch of a JWKS URL.
    pub(super) async fn fetch_first(url: &str) -> anyhow::Result<Jwks> {
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

    pub(super) fn current(&self) -> Arc<KeySet> {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn replace(&self, set: KeySet) {
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }

    /// Asks the refresh task for an early fetch, at most once every
    /// [`JWKS_DEMAND_INTERVAL`]. Never waits.
    pub(super) fn request_refresh(&self) {
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
    pub(super) async fn refresh_loop(self: Arc<Self>) {
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
pub(super) fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
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

pub(super) fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| match u.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    })
}
