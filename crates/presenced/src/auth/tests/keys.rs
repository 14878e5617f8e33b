//! Tokens verified with the PEM public key, and the keys refused.

use super::*;

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
fn bad_public_keys_are_refused_with_a_reason() {
    let err = |pem: &[u8]| TokenVerifier::new(None, Some(pem)).unwrap_err().to_string();
    assert!(err(&fixture("rsa_private.pem")).contains("private key"));
    assert!(err(b"not a pem").contains("not a PEM"));
    assert!(
        err(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").contains("public key")
    );
    assert!(TokenVerifier::new(None, None).is_err());
    assert!(TokenVerifier::new(Some(""), None).is_err());
}
