//! Tokens verified with a JWKS key, the keys left out of a set, and the
//! refresh of a URL's set.

use jsonwebtoken::jwk::Jwk;
use std::sync::Mutex;
use tokio::sync::Notify;

use super::*;
use crate::auth::jwks::{JWKS_REFRESH, Jwks, KeySet, Remote, is_loopback_url, max_age};
use crate::auth::keys::parse_public_key;

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
        &json!({"sub": "frank", "exp": unix_now() - 60}),
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
    assert!(TokenVerifier::build(None, Some(public), Some(Jwks::fixed("t".into(), set))).is_err());
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
