//! The operator's PEM public key (`jwt_public_key`): which algorithms it
//! may verify, and the refusal of anything else (private keys,
//! certificates, curves we do not support).

use std::path::Path;

use anyhow::{Context, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The configured public key and the algorithms it may verify.
#[derive(Clone)]
pub(super) struct PublicKey {
    pub(super) key: DecodingKey,
    pub(super) algorithms: &'static [Algorithm],
    pub(super) kind: &'static str,
}

pub(super) const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

pub(super) fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the JWT public key {}", path.display()))
}

/// Parses the operator's PEM public key and works out which algorithms it may
/// verify, refusing anything we would only half understand.
pub(super) fn parse_public_key(pem: &[u8]) -> anyhow::Result<PublicKey> {
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
