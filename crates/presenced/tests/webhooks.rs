//! Webhooks (PROTOCOL.md §10) against the real binary: signed batches from
//! the durable outbox, in order per user, retried until the receiver takes
//! them, across a restart; a flap inside grace sends nothing.

mod common;
#[path = "common/webhook_receiver.rs"]
mod webhook_receiver;

use std::time::Duration;

use common::*;
use serde_json::json;
use webhook_receiver::*;

const HOOK_SECRET: &str = "hook-secret-for-tests";
/// Time for every expected webhook to arrive (retries with backoff included).
const DELIVERY: Duration = Duration::from_secs(30);

fn opts(rx: &Receiver, grace_ms: u64) -> Opts {
    let mut o = Opts::new().grace(grace_ms);
    o.extra_args = rx.server_args();
    o
}

/// The keys of a whole lifecycle: online, joined each channel, left each, offline.
fn lifecycle(user: &str, channels: &[&str]) -> Vec<String> {
    let mut k = vec![format!("user.online {user}")];
    k.extend(channels.iter().map(|c| format!("member.joined {user} {c}")));
    k.extend(channels.iter().map(|c| format!("member.left {user} {c}")));
    k.push(format!("user.offline {user}"));
    k
}

/// Asserts that the delivered events, without duplicates, are exactly
/// `want` (no gaps, nothing extra) and in lifecycle order per user.
fn check_exactly(rx: &Receiver, want: &[String]) -> Vec<serde_json::Value> {
    let events = rx.unique_events();
    let mut got: Vec<String> = events.iter().map(key).collect();
    let mut want = want.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want, "delivered events\n{}", rx.describe());
    for e in &events {
        check_event_shape(e);
    }
    let users: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["user"].as_str()).collect();
    for u in users {
        check_user_order(&events, u);
    }
    for r in rx.requests() {
        assert!(r.valid, "a request failed the signature check: {r:?}");
        assert!(
            r.events.len() <= 100,
            "a batch of {} events",
            r.events.len()
        );
    }
    events
}

#[tokio::test]
async fn events_are_signed_batched_and_in_order_per_user() {
    let rx = Receiver::start(HOOK_SECRET).await;
    let s = Server::start(opts(&rx, 300)).await;

    // alice: online, joins, leaves, drops her socket → offline after grace.
    let mut alice = s.user("alice").await;
    alice.enter("room:1", json!({"n": 1})).await;
    alice.leave("room:1").await;
    // bob: logs out, which skips the grace window.
    let mut bob = s.user("bob").await;
    bob.enter("room:1", json!({})).await;
    bob.enter("room:2", json!({})).await;
    bob.ok(json!({"t": "bye"})).await;
    // Many users at once, so that batches hold many events.
    let users: Vec<String> = (0..60).map(|i| format!("crowd{i}")).collect();
    let drones = connect_drones(&s, &users, 16).await;
    let drones = enter_drones(drones, "room:crowd", 16).await;
    alice.close().await;

    let mut want = vec![
        "user.online alice".to_owned(),
        "member.joined alice room:1".into(),
        "member.left alice room:1".into(),
        "user.offline alice".into(),
    ];
    want.extend(lifecycle("bob", &["room:1", "room:2"]));
    for u in &users {
        want.push(format!("user.online {u}"));
        want.push(format!("member.joined {u} room:crowd"));
    }
    rx.wait_for_keys(&want, DELIVERY).await;
    let events = check_exactly(&rx, &want);

    // Signed with the configured secret over the exact body, as JSON.
    let requests = rx.requests();
    for r in &requests {
        assert_eq!(r.content_type, "application/json");
        let (t, v1) = r
            .signature
            .split_once(',')
            .unwrap_or_else(|| panic!("signature {:?}", r.signature));
        let t: u64 = t.strip_prefix("t=").unwrap().parse().unwrap();
        assert!(t.abs_diff(now_secs()) < 60, "t={t}");
        let v1 = v1.strip_prefix("v1=").unwrap();
        assert!(
            v1.len() == 64
                && v1
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "v1 is lowercase hex SHA-256: {v1}"
        );
        assert_eq!(
            v1,
            presenced::webhooks::sign(HOOK_SECRET.as_bytes(), t, &r.body)
        );
        assert!(!presenced::webhooks::verify(
            b"another secret",
            &r.signature,
            &r.body,
            t,
            Duration::from_secs(300)
        ));
    }
    // Batched: 128 events in far fewer POSTs, some holding many events.
    let biggest = requests.iter().map(|r| r.events.len()).max().unwrap();
    assert!(
        biggest >= 10 && requests.len() < events.len() / 4,
        "{} events came in {} POSTs (largest {biggest})\n{}",
        events.len(),
        requests.len(),
        rx.describe()
    );
    // Nothing failed here, so nothing was sent twice.
    assert_eq!(
        rx.events().len(),
        events.len(),
        "duplicates\n{}",
        rx.describe()
    );
    // Reasons as the protocol names them.
    let reason = |k: &str| {
        events
            .iter()
            .find(|e| key(e) == k)
            .map(|e| e["reason"].clone())
            .unwrap()
    };
    assert_eq!(reason("member.left alice room:1"), "left");
    assert_eq!(reason("user.offline alice"), "timeout");
    assert_eq!(reason("user.offline bob"), "logout");
    drop(drones);
}

#[tokio::test]
async fn a_flap_inside_grace_produces_no_event() {
    let rx = Receiver::start(HOOK_SECRET).await;
    let grace = 1_500;
    let s = Server::start(opts(&rx, grace)).await;

    let mut alice = s.user("alice").await;
    alice.enter("room:1", json!({"n": 1})).await;
    let mut watcher = s.user("watcher").await;
    watcher.watch(&["alice"]).await;
    rx.wait_for_keys(
        &[
            "user.online alice".into(),
            "member.joined alice room:1".into(),
            "user.online watcher".into(),
        ],
        DELIVERY,
    )
    .await;

    // A network blip: the socket drops and the client resumes.
    let session = alice.session();
    alice.close().await;
    alice.closed().await;
    drop(alice);
    let token = s.token("alice");
    let alice = s.connect_resume(Some(&token), Some(&session)).await;
    assert_eq!(alice.welcome["resumed"], true, "{}", alice.welcome);
    // A page refresh: a new connection that enters again.
    drop(alice);
    let mut alice = s.user("alice").await;
    alice.enter("room:1", json!({"n": 1})).await;

    // Absence, so this waits on purpose: past the grace window of the
    // connections that dropped.
    watcher
        .expect_none(
            "a presence change for alice",
            Duration::from_millis(grace + 700),
            |f| mentions_user(f, "alice"),
        )
        .await;
    // Events are delivered in order: once this one is in, anything the flap
    // had produced before it is in too.
    let _marker = s.user("marker").await;
    let events = rx
        .wait_for_keys(&["user.online marker".into()], DELIVERY)
        .await;
    assert_eq!(
        keys_of(&events, "alice"),
        ["user.online alice", "member.joined alice room:1"],
        "\n{}",
        rx.describe()
    );
    assert_eq!(keys_of(&events, "watcher"), ["user.online watcher"]);
}

#[tokio::test]
async fn a_failing_receiver_gets_every_event_once_it_recovers() {
    let rx = Receiver::start(HOOK_SECRET).await;
    rx.fail_next(4);
    let s = Server::start(opts(&rx, 300)).await;

    let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let drones = connect_drones(&s, &users, 8).await;
    let mut drones = enter_drones(drones, "room:r", 8).await;
    // Half of them go away for good.
    let gone: Vec<String> = drones.drain(..20).map(|d| d.user.clone()).collect();

    let mut want = Vec::new();
    for u in &users {
        if gone.contains(u) {
            want.extend(lifecycle(u, &["room:r"]));
        } else {
            want.push(format!("user.online {u}"));
            want.push(format!("member.joined {u} room:r"));
        }
    }
    rx.wait_for_keys(&want, DELIVERY).await;
    check_exactly(&rx, &want);
    let statuses: Vec<u16> = rx.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        &statuses[..4],
        [500, 500, 500, 500],
        "the first four requests were refused: {statuses:?}"
    );
    // Retried batches carry the same ids (receivers dedupe by id), and the
    // oldest batch went first: the first accepted event is the first event.
    let first_refused = &rx.requests()[0].events;
    let first_accepted = &rx.accepted()[0].events;
    assert_eq!(
        first_refused[0], first_accepted[0],
        "head of line: the refused batch is retried first"
    );
    drop(drones);
}

#[tokio::test]
async fn a_receiver_down_across_a_graceful_restart_gets_everything_after() {
    let mut rx = Receiver::down_from_start(HOOK_SECRET).await;
    let grace = 500;
    let mut s = Server::start(opts(&rx, grace)).await;

    let users: Vec<String> = (0..60).map(|i| format!("d{i}")).collect();
    let drones = connect_drones(&s, &users, 16).await;
    let drones = enter_drones(drones, "room:d", 16).await;
    let mut carol = s.user("carol").await;
    carol.enter("room:c", json!({})).await;
    carol.ok(json!({"t": "bye"})).await;

    s.sigterm();
    let status = s.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
    drop(drones);
    assert!(rx.requests().is_empty());

    // The users who were online get one grace window after the restart and
    // do not come back: their leaves and offlines follow.
    s.restart(opts(&rx, grace)).await;
    rx.up().await;
    let mut want = lifecycle("carol", &["room:c"]);
    for u in &users {
        want.extend(lifecycle(u, &["room:d"]));
    }
    rx.wait_for_keys(&want, DELIVERY).await;
    check_exactly(&rx, &want);
    // The backlog (over 100 events) goes out in full batches.
    assert_eq!(
        rx.accepted()[0].events.len(),
        100,
        "first batch after the restart\n{}",
        rx.describe()
    );
}

#[tokio::test]
async fn events_due_at_shutdown_are_delivered_before_exit() {
    let rx = Receiver::start(HOOK_SECRET).await;
    let mut s = Server::start(opts(&rx, 300)).await;
    let mut dave = s.user("dave").await;
    dave.enter("room:x", json!({})).await;
    dave.ok(json!({"t": "bye"})).await;
    // Straight away, inside the 250 ms batching window: the shutdown's last
    // attempt sends them.
    s.sigterm();
    let status = s.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}");
    check_exactly(&rx, &lifecycle("dave", &["room:x"]));
}

#[tokio::test]
async fn each_url_gets_every_event_and_a_dead_one_holds_up_no_other() {
    let healthy = Receiver::start(HOOK_SECRET).await;
    let dead = Receiver::down_from_start(HOOK_SECRET).await;
    let mut o = opts(&healthy, 300);
    o.extra_args.extend(["--webhook-url".into(), dead.url()]);
    let s = Server::start(o).await;

    let mut erin = s.user("erin").await;
    erin.enter("room:e", json!({})).await;
    erin.ok(json!({"t": "bye"})).await;
    let want = lifecycle("erin", &["room:e"]);
    healthy.wait_for_keys(&want, DELIVERY).await;
    check_exactly(&healthy, &want);
    assert!(dead.requests().is_empty());
}

#[tokio::test]
async fn without_a_configured_secret_one_is_generated_once_and_kept() {
    let rx = Receiver::start("not yet known").await;
    let mut o = Opts::new().grace(300);
    o.extra_args = vec!["--webhook-url".into(), rx.url()];
    let mut s = Server::start(o.clone()).await;
    let path = s.data_dir().join("webhook_secret");
    let secret = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned();
    assert!(secret.len() >= 32, "{secret:?}");
    assert!(
        s.output().contains(&format!(
            "generated webhook secret (kept in {}): {secret}",
            path.display()
        )),
        "the generated secret is printed once at start-up:\n{}",
        s.output()
    );
    rx.set_secret(&secret);

    let mut frank = s.user("frank").await;
    frank.ok(json!({"t": "bye"})).await;
    rx.wait_for_keys(&lifecycle("frank", &[]), DELIVERY).await;

    // The same secret after a restart.
    s.sigterm();
    s.wait_exit(Duration::from_secs(10)).await;
    s.restart(o).await;
    let mut gina = s.user("gina").await;
    gina.ok(json!({"t": "bye"})).await;
    let mut want = lifecycle("frank", &[]);
    want.extend(lifecycle("gina", &[]));
    rx.wait_for_keys(&want, DELIVERY).await;
    check_exactly(&rx, &want);
    assert_eq!(s.output().matches("generated webhook secret").count(), 1);
}
