//! The webhook senders' unit tests.

use super::sender::*;
use super::*;
use crate::store::OutboxEvent;

#[test]
fn signature_known_answer() {
    // Computed independently: Python's hmac.new(b"whsec_test",
    // b'1700000000.{"events":[]}', hashlib.sha256).hexdigest()
    let body = br#"{"events":[]}"#;
    let sig = sign(b"whsec_test", 1_700_000_000, body);
    assert_eq!(
        sig,
        "4f6f9b7a41398ad124e52a1320534f978e522923f3f2b2724e31d7a9dbf78a7f"
    );
    assert_eq!(
        signature_header(b"whsec_test", 1_700_000_000, body),
        format!("t=1700000000,v1={sig}")
    );
}

#[test]
fn verify_accepts_only_the_right_signature_in_time() {
    let secret = b"s3cret";
    let body = br#"{"events":[{"id":"a"}]}"#;
    let header = signature_header(secret, 1_000, body);
    let tol = Duration::from_secs(300);
    assert!(verify(secret, &header, body, 1_000, tol));
    assert!(verify(secret, &header, body, 1_300, tol));
    assert!(verify(secret, &header, body, 700, tol));
    assert!(!verify(secret, &header, body, 1_301, tol), "too old");
    assert!(!verify(b"other", &header, body, 1_000, tol), "wrong secret");
    assert!(!verify(secret, &header, b"{}", 1_000, tol), "other body");
    assert!(!verify(secret, "v1=abc", body, 1_000, tol), "no t");
    assert!(!verify(secret, "t=1000", body, 1_000, tol), "no v1");
    assert!(!verify(secret, "", body, 1_000, tol));
    let rotated = format!(
        "t=1000,v1={},v1={}",
        "0".repeat(64),
        sign(secret, 1_000, body)
    );
    assert!(
        verify(secret, &rotated, body, 1_000, tol),
        "any v1 may match"
    );
    let upper = header
        .to_ascii_uppercase()
        .replace("T=", "t=")
        .replace("V1=", "v1=");
    assert!(
        verify(secret, &upper, body, 1_000, tol),
        "hex case-insensitive"
    );
    let twice = format!("t=1000,{header}");
    assert!(!verify(secret, &twice, body, 1_000, tol), "ambiguous t");
}

#[test]
fn backoff_grows_and_is_capped() {
    assert_eq!(backoff_ceiling(0), Duration::from_millis(500));
    assert_eq!(backoff_ceiling(1), Duration::from_millis(500));
    assert_eq!(backoff_ceiling(2), Duration::from_secs(1));
    assert_eq!(backoff_ceiling(5), Duration::from_secs(8));
    assert_eq!(backoff_ceiling(10), Duration::from_secs(256));
    assert_eq!(backoff_ceiling(11), Duration::from_secs(300));
    assert_eq!(backoff_ceiling(u32::MAX), Duration::from_secs(300));
    for failures in [1, 2, 3, 8, 12, 40, u32::MAX] {
        for _ in 0..200 {
            assert!(backoff(failures) <= backoff_ceiling(failures));
        }
    }
    // Full jitter: spread over the whole range, not pinned to an end.
    let samples: Vec<Duration> = (0..400).map(|_| backoff(20)).collect();
    assert!(samples.iter().any(|d| *d < Duration::from_secs(100)));
    assert!(samples.iter().any(|d| *d > Duration::from_secs(200)));
}

#[test]
fn batch_body_is_the_payloads_in_order() {
    let row = |seq, payload: &str| OutboxEvent {
        seq,
        payload: payload.to_owned(),
        created_at: 0,
        attempts: 0,
        next_attempt_at: 0,
    };
    let body = batch_body(&[row(1, r#"{"id":"a"}"#), row(2, r#"{"id":"b"}"#)]);
    assert_eq!(body, r#"{"events":[{"id":"a"},{"id":"b"}]}"#);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["events"][1]["id"], "b");
    assert_eq!(batch_body(&[]), r#"{"events":[]}"#);
}

#[test]
fn head_waits_for_a_full_batch_or_the_window_and_the_backoff() {
    let row = |created_at, next_attempt_at| OutboxEvent {
        seq: 1,
        payload: "{}".into(),
        created_at,
        attempts: 0,
        next_attempt_at,
    };
    let one = Head {
        rows: vec![row(1_000, 0)],
        count: None,
    };
    assert_eq!(one.due_at(), 1_250);
    let full = Head {
        rows: (0..BATCH_MAX).map(|_| row(1_000, 0)).collect(),
        count: None,
    };
    assert_eq!(full.due_at(), 0);
    let backing_off = Head {
        rows: vec![row(1_000, 9_000), row(1_100, 0)],
        count: None,
    };
    assert_eq!(backing_off.due_at(), 9_000);
}

#[test]
fn rows_from_a_run_whose_clock_was_ahead_wait_no_longer_than_they_could() {
    let hour = 3_600_000;
    let row = |created_at, attempts, next_attempt_at| OutboxEvent {
        seq: 1,
        payload: "{}".into(),
        created_at,
        attempts,
        next_attempt_at,
    };
    let settled = |mut r: OutboxEvent, now, started| {
        settle(&mut r, now, started);
        (r.created_at, r.next_attempt_at)
    };
    let (started, now) = (10_000_000, 10_000_700);
    // Created an hour "later" than now: as if created at the start.
    assert_eq!(settled(row(now + hour, 0, 0), now, started), (started, 0));
    // Failed once, its retry stored an hour ahead: the longest backoff
    // of one failure (500 ms) after the start.
    assert_eq!(
        settled(row(now - 10, 1, now + hour), now, started),
        (now - 10, started + 500)
    );
    // This run's rows are kept as they are: created before now, retried
    // within the longest backoff from now.
    assert_eq!(
        settled(row(now, 3, now + 2_000), now, started),
        (now, now + 2_000)
    );
    assert_eq!(
        settled(row(now - hour, 40, now + 300_000), now, started),
        (now - hour, now + 300_000)
    );
}
