//! Reading the header and checking the claims of a token.

use super::*;

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
fn expired_is_refused_from_exp_whatever_the_leeway() {
    // The leeway is for `nbf` only: `exp` is exact with none, the default
    // 5 s and a minute alike.
    let now = unix_now();
    assert_eq!(DEFAULT_JWT_LEEWAY_MS, 5_000);
    for leeway_ms in [0, DEFAULT_JWT_LEEWAY_MS, 60_000] {
        let v = verifier_with(ClaimRules {
            leeway_ms,
            ..ClaimRules::default()
        });
        for exp in [now - 3600, now - 6, now - 1, now] {
            let token = hs(Algorithm::HS256, SECRET, &json!({"sub": "a", "exp": exp}));
            assert_eq!(
                v.verify(&token),
                Err(AuthError::Expired),
                "exp {exp}, leeway {leeway_ms} ms"
            );
        }
        let token = hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "a", "exp": now + 5}),
        );
        assert!(v.verify(&token).is_ok(), "leeway {leeway_ms} ms");
        // And a live connection is closed at exp itself.
        assert_eq!(v.expiry_ms(Some(now)), Some(now * 1000), "{leeway_ms}");
        assert_eq!(v.expiry_ms(None), None);
    }
    assert_eq!(
        secret_verifier().expiry_ms(Some(now)),
        Some(now * 1000),
        "the default rules"
    );
}

#[test]
fn exp_is_required_when_the_server_says_so() {
    let v = verifier_with(ClaimRules {
        require_exp: true,
        ..ClaimRules::default()
    });
    for claims in [json!({"sub": "a"}), json!({"sub": "a", "exp": null})] {
        let token = hs(Algorithm::HS256, SECRET, &claims);
        assert_eq!(v.verify(&token), Err(AuthError::MissingExpiry), "{claims}");
    }
    let token = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "a", "exp": future()}),
    );
    assert!(v.verify(&token).is_ok());
    // Off by default: a token without exp never expires.
    let token = hs(Algorithm::HS256, SECRET, &json!({"sub": "a"}));
    assert_eq!(secret_verifier().verify(&token).unwrap().exp, None);
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let v = verifier_with(ClaimRules {
        audience: Some("presence".into()),
        issuer: Some("https://id.example".into()),
        ..ClaimRules::default()
    });
    let iss = "https://id.example";
    for claims in [
        json!({"sub": "a", "aud": "presence", "iss": iss}),
        json!({"sub": "a", "aud": ["billing", "presence"], "iss": iss}),
    ] {
        let token = hs(Algorithm::HS256, SECRET, &claims);
        assert!(v.verify(&token).is_ok(), "{claims}");
    }
    for claims in [
        json!({"sub": "a", "iss": iss}),
        json!({"sub": "a", "aud": "billing", "iss": iss}),
        json!({"sub": "a", "aud": ["billing"], "iss": iss}),
        json!({"sub": "a", "aud": "Presence", "iss": iss}),
        json!({"sub": "a", "aud": 7, "iss": iss}),
    ] {
        let token = hs(Algorithm::HS256, SECRET, &claims);
        assert_eq!(v.verify(&token), Err(AuthError::WrongAudience), "{claims}");
    }
    for claims in [
        json!({"sub": "a", "aud": "presence"}),
        json!({"sub": "a", "aud": "presence", "iss": "https://evil.example"}),
        json!({"sub": "a", "aud": "presence", "iss": ["https://id.example"]}),
    ] {
        let token = hs(Algorithm::HS256, SECRET, &claims);
        assert_eq!(v.verify(&token), Err(AuthError::WrongIssuer), "{claims}");
    }
    // Not configured: neither is looked at.
    let token = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "a", "aud": "anything", "iss": 3}),
    );
    assert!(secret_verifier().verify(&token).is_ok());
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
fn a_subject_with_a_control_character_is_refused() {
    let v = secret_verifier();
    for sub in [
        "a\u{0}b",
        "alice\n",
        "\u{1b}[31mred",
        "tab\there",
        "del\u{7f}",
    ] {
        let token = hs(Algorithm::HS256, SECRET, &json!({"sub": sub}));
        assert_eq!(v.verify(&token), Err(AuthError::SubjectInvalid), "{sub:?}");
    }
    for sub in ["alice", "Élodie", "名前", "a b", "user@example.com"] {
        let token = hs(Algorithm::HS256, SECRET, &json!({"sub": sub}));
        assert!(v.verify(&token).is_ok(), "{sub:?}");
    }
}

#[test]
fn nbf_is_honoured_with_the_leeway() {
    let v = secret_verifier();
    let now = unix_now();
    let leeway = DEFAULT_JWT_LEEWAY_MS / 1000;
    for nbf in [now + 60, now + leeway + 2] {
        let token = hs(Algorithm::HS256, SECRET, &json!({"sub": "a", "nbf": nbf}));
        assert_eq!(v.verify(&token), Err(AuthError::NotYetValid), "nbf {nbf}");
    }
    for nbf in [now - 3600, now, now + 1] {
        let token = hs(Algorithm::HS256, SECRET, &json!({"sub": "a", "nbf": nbf}));
        assert!(v.verify(&token).is_ok(), "nbf {nbf}");
    }
    let bad = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "a", "nbf": "soon"}),
    );
    assert_eq!(v.verify(&bad), Err(AuthError::Malformed));

    // Another leeway: none, or a minute.
    let soon = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "a", "nbf": now + 2}),
    );
    let strict = verifier_with(ClaimRules {
        leeway_ms: 0,
        ..ClaimRules::default()
    });
    assert_eq!(strict.verify(&soon), Err(AuthError::NotYetValid));
    let later = hs(
        Algorithm::HS256,
        SECRET,
        &json!({"sub": "a", "nbf": now + 30}),
    );
    let lenient = verifier_with(ClaimRules {
        leeway_ms: 60_000,
        ..ClaimRules::default()
    });
    assert!(lenient.verify(&later).is_ok());
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
