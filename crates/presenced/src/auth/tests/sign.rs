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
