//! Signing HS256 tokens.

use super::*;

#[test]
fn sign_hs256_round_trips() {
    let v = secret_verifier();
    let token = sign_hs256(
        SECRET,
        "alice",
        Some(json!({"name": "Alice"})),
        Some(Duration::from_secs(3600)),
        &ClaimRules::default(),
    )
    .unwrap();
    let claims = v.verify(&token).unwrap();
    assert_eq!(claims.sub, "alice");
    let exp = claims.exp.unwrap();
    assert!(exp > unix_now() + 3500 && exp <= unix_now() + 3600);
    assert_eq!(claims.info.unwrap()["name"], "Alice");

    let any = ClaimRules::default();
    let forever = sign_hs256(SECRET, "bob", None, None, &any).unwrap();
    assert_eq!(v.verify(&forever).unwrap().exp, None);

    assert!(sign_hs256(SECRET, "bob", Some(json!("x")), None, &any).is_err());
    assert!(sign_hs256(SECRET, "", None, None, &any).is_err());
    assert!(sign_hs256("", "bob", None, None, &any).is_err());
}

#[test]
fn signed_tokens_carry_what_the_server_requires() {
    let rules = ClaimRules {
        audience: Some("presence".into()),
        issuer: Some("https://id.example".into()),
        require_exp: true,
        ..ClaimRules::default()
    };
    let v = secret_verifier().with_claim_rules(rules.clone());
    let hour = Some(Duration::from_secs(3600));
    let token = sign_hs256(SECRET, "alice", None, hour, &rules).unwrap();
    assert_eq!(v.verify(&token).unwrap().sub, "alice");
    // A token that never expires would be refused: not signed at all.
    let e = sign_hs256(SECRET, "alice", None, None, &rules).unwrap_err();
    assert!(e.to_string().contains("jwt_require_exp"), "{e}");
}
