//! Token verification and signing: turns a client's JWT into [`Claims`].
//!
//! The algorithm in a token's header only ever selects among the keys the
//! operator configured, never the other way round: HMAC algorithms use the
//! shared secret, RSA/EC/EdDSA algorithms use the PEM public key and only when
//! that key is of the matching type. That is what blocks `alg: none` and the
//! classic key confusion (an HS256 token "signed" with the public key's bytes).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::config::Settings;

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
}

/// The configured public key and the algorithms it may verify.
#[derive(Clone)]
struct PublicKey {
    key: DecodingKey,
    algorithms: &'static [Algorithm],
    kind: &'static str,
}

/// Verifies client tokens against the configured secret and/or public key.
#[derive(Clone)]
pub struct TokenVerifier {
    secret: Option<DecodingKey>,
    public: Option<PublicKey>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("public_key", &self.public.as_ref().map(|p| p.kind))
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
        let secret = match secret {
            Some("") => bail!("the JWT secret is empty"),
            Some(s) => Some(DecodingKey::from_secret(s.as_bytes())),
            None => None,
        };
        let public = public_key_pem.map(parse_public_key).transpose()?;
        Ok(TokenVerifier { secret, public })
    }

    /// The verifier for a server's settings; reads the public key file.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let pem = settings
            .jwt_public_key
            .as_deref()
            .map(read_pem)
            .transpose()?;
        Self::new(settings.jwt_secret.as_deref(), pem.as_deref())
    }

    /// Checks the token's signature, expiry and claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let alg = header_algorithm(token)?;
        let key = self.key_for(alg)?;

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

    fn key_for(&self, alg: Algorithm) -> Result<&DecodingKey, AuthError> {
        let key = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => self.secret.as_ref(),
            _ => self
                .public
                .as_ref()
                .filter(|p| p.algorithms.contains(&alg))
                .map(|p| &p.key),
        };
        key.ok_or(AuthError::AlgorithmNotAllowed)
    }
}

/// Reads the algorithm from the header ourselves, before any key is chosen, so
/// that `none` and unknown names are told apart from garbage.
fn header_algorithm(token: &str) -> Result<Algorithm, AuthError> {
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
    let Some(Value::String(alg)) = header.get("alg") else {
        return Err(AuthError::Malformed);
    };
    Algorithm::from_str(alg).map_err(|_| AuthError::AlgorithmNotAllowed)
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

    const RSA_ALGS: &[Algorithm] = &[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];
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
        ] {
            let s = e.to_string();
            assert!(s.len() < 60 && !s.contains("key"), "{s}");
        }
    }
}
