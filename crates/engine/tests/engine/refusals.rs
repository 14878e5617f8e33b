//! Refused requests change nothing.

use super::*;

// ----- refused requests change nothing ---------------------------------------

/// Name, member ids, occupancy.
type ChannelSummary = (String, Vec<String>, Option<(usize, usize)>);

#[derive(Debug, PartialEq)]
struct Summary {
    channels: Vec<ChannelSummary>,
    channel_count: usize,
    users_present: usize,
    connection_count: usize,
    presence: Vec<presenced_engine::UserPresence>,
    next_deadline: Option<u64>,
}

const CHANNELS: &[&str] = &[
    "room:1", "room:2", "ro:1", "nosub:1", "nopub:1", "small:1", "pub:1", "team:7", "a", "b", "c",
    "d",
];
const USERS: &[&str] = &["u1", "u2", "u3", "g", "t", "x", "y", "z", "w"];

fn summary(d: &Driver) -> Summary {
    Summary {
        channels: CHANNELS
            .iter()
            .map(|c| (c.to_string(), d.eng.member_ids(c), d.eng.occupancy(c)))
            .collect(),
        channel_count: d.eng.channel_count(),
        users_present: d.eng.users_present(),
        connection_count: d.eng.connection_count(),
        presence: USERS.iter().map(|u| d.eng.presence(d.now, u)).collect(),
        next_deadline: d.eng.next_deadline(),
    }
}

/// The request must fail with `code`, produce exactly one `error` reply (with
/// the request's id) and nothing else, and leave the state as it was.
#[track_caller]
pub(super) fn refused(d: &mut Driver, conn: u64, frame: Value, code: ErrorCode) {
    let before = summary(d);
    let id = frame["id"].as_u64();
    let err = d
        .req(conn, frame.clone())
        .expect_err(&format!("{frame} must fail"));
    assert_eq!(err.code, code, "{frame}");
    assert_eq!(
        d.last.len(),
        1,
        "{frame} produced more than its error: {:?}",
        d.last
    );
    let f = d.last_frames(conn);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["t"], "error");
    assert_eq!(f[0]["code"], code.as_str());
    assert_eq!(f[0].get("id").and_then(Value::as_u64), id);
    assert_eq!(summary(d), before, "{frame} changed the state");
}

pub(super) fn error_cfg() -> EngineConfig {
    let mut c = cfg();
    c.max_channels_per_conn = 4;
    c.max_watch_per_conn = 3;
    let mut ro = rule("ro:*");
    ro.enter = false;
    let mut nosub = rule("nosub:*");
    nosub.subscribe = false;
    let mut nopub = rule("nopub:*");
    nopub.publish = false;
    let mut small = rule("small:*");
    small.max_members = Some(2);
    let mut public = rule("pub:*");
    public.guests = true;
    c.rules = rules(vec![ro, nosub, nopub, small, public]);
    c
}

#[test]
fn refused_requests_change_nothing() {
    let mut d = Driver::new(error_cfg());
    let o = d.hello("x");
    for ch in ["room:1", "small:1", "pub:1", "ro:1"] {
        d.ok(o, subscribe_occ(1, ch));
    }
    let u1 = d.hello("u1");
    let u1b = d.hello("u1");
    let u2 = d.hello("u2");
    let u3 = d.hello("u3");
    d.ok(u1, enter_with(1, "room:1", json!({"a": 1})));
    d.ok(u1, enter(1, "small:1"));
    d.ok(u2, enter(1, "small:1"));
    d.tick(2_000);
    d.clear();

    // Channel rules.
    refused(&mut d, u1, enter(2, "ro:1"), ErrorCode::Forbidden);
    d.ok(u1, subscribe(2, "ro:1"));
    refused(&mut d, u3, subscribe(3, "nosub:1"), ErrorCode::Forbidden);
    refused(&mut d, u3, enter(3, "nosub:1"), ErrorCode::Forbidden);
    refused(
        &mut d,
        u3,
        json!({"t": "publish", "id": 4, "channel": "nopub:1", "data": 1}),
        ErrorCode::Forbidden,
    );
    refused(
        &mut d,
        u3,
        json!({"t": "publish", "id": 4, "channel": "nosub:1", "data": 1}),
        ErrorCode::Forbidden,
    );
    // Membership.
    refused(
        &mut d,
        u3,
        update(5, "room:1", json!({})),
        ErrorCode::NotMember,
    );
    refused(&mut d, u3, leave(6, "room:1"), ErrorCode::NotMember);
    // u1 is a member through u1, not through u1b.
    refused(
        &mut d,
        u1b,
        update(7, "room:1", json!({"b": 1})),
        ErrorCode::NotMember,
    );
    refused(&mut d, u1b, leave(8, "room:1"), ErrorCode::NotMember);
    // Sizes.
    let big = json!({"blob": "x".repeat(2_100)});
    refused(
        &mut d,
        u3,
        enter_with(9, "room:1", big.clone()),
        ErrorCode::TooLarge,
    );
    refused(
        &mut d,
        u1,
        enter_with(9, "room:1", big.clone()),
        ErrorCode::TooLarge,
    );
    refused(
        &mut d,
        u1,
        update(10, "room:1", big.clone()),
        ErrorCode::TooLarge,
    );
    refused(
        &mut d,
        u1,
        json!({"t": "publish", "id": 11, "channel": "room:1", "data": big}),
        ErrorCode::TooLarge,
    );
    // max_members: two members already; a third user is refused, a second
    // connection of a member is not.
    refused(&mut d, u3, enter(12, "small:1"), ErrorCode::LimitExceeded);
    d.ok(u1b, enter(12, "small:1"));
    assert_eq!(d.eng.occupancy("small:1"), Some((2, 3)));
    // Channels per connection (4): subscribed and entered both count.
    d.ok(u3, subscribe(13, "a"));
    d.ok(u3, subscribe(13, "b"));
    d.ok(u3, enter(13, "c"));
    d.ok(u3, subscribe(13, "d"));
    refused(
        &mut d,
        u3,
        subscribe(14, "room:2"),
        ErrorCode::LimitExceeded,
    );
    refused(&mut d, u3, enter(15, "room:2"), ErrorCode::LimitExceeded);
    d.ok(u3, subscribe(16, "a")); // already subscribed: fine
    d.ok(u3, enter(16, "a")); // already subscribed: fine
    // Watched users per connection (3).
    d.ok(u3, json!({"t": "watch", "id": 17, "users": ["x", "y"]}));
    refused(
        &mut d,
        u3,
        json!({"t": "watch", "id": 18, "users": ["z", "w"]}),
        ErrorCode::LimitExceeded,
    );
    d.ok(
        u3,
        json!({"t": "watch", "id": 19, "users": ["x", "y", "z", "y"]}),
    );
    // A second hello.
    refused(
        &mut d,
        u3,
        json!({"t": "hello", "id": 20, "token": "t"}),
        ErrorCode::BadRequest,
    );
    refused(
        &mut d,
        u3,
        json!({"t": "refresh", "id": 21, "token": "t"}),
        ErrorCode::Forbidden,
    );
}

#[test]
fn token_channel_globs_narrow_the_rules() {
    let mut d = Driver::new(error_cfg());
    let t = d.hello_as(Identity {
        user: Some("t".into()),
        info: None,
        channels: Some(vec!["team:*".into(), "doc:a?".into()]),
    });
    refused(&mut d, t, subscribe(1, "room:1"), ErrorCode::Forbidden);
    refused(&mut d, t, enter(2, "room:1"), ErrorCode::Forbidden);
    refused(
        &mut d,
        t,
        json!({"t": "publish", "id": 3, "channel": "room:1", "data": 1}),
        ErrorCode::Forbidden,
    );
    refused(&mut d, t, subscribe(4, "doc:ab"), ErrorCode::Forbidden); // `?` is literal
    d.ok(t, enter(5, "team:7"));
    assert_eq!(d.eng.member_ids("team:7"), vec!["t"]);
    // The rules still apply inside the claim.
    let mut d = Driver::new(error_cfg());
    let t = d.hello_as(Identity {
        user: Some("t".into()),
        info: None,
        channels: Some(vec!["ro:*".into()]),
    });
    refused(&mut d, t, enter(1, "ro:1"), ErrorCode::Forbidden);
    d.ok(t, subscribe(2, "ro:1"));
    // An empty claim allows nothing.
    let e = d.hello_as(Identity {
        user: Some("u1".into()),
        info: None,
        channels: Some(vec![]),
    });
    refused(&mut d, e, subscribe(3, "room:1"), ErrorCode::Forbidden);
}

#[test]
fn guests_are_restricted() {
    let mut d = Driver::new(error_cfg());
    let o = d.hello("x");
    d.ok(o, subscribe(1, "pub:1"));
    let u1 = d.hello("u1");
    d.ok(u1, enter(1, "pub:1"));
    d.tick(100);
    let g = d.guest();
    assert_eq!(d.eng.users_present(), 2);
    d.ok(g, subscribe(1, "pub:1"));
    d.clear();
    refused(&mut d, g, enter(2, "pub:1"), ErrorCode::Forbidden);
    refused(
        &mut d,
        g,
        update(3, "pub:1", json!({})),
        ErrorCode::Forbidden,
    );
    refused(&mut d, g, leave(4, "pub:1"), ErrorCode::Forbidden);
    refused(
        &mut d,
        g,
        json!({"t": "publish", "id": 5, "channel": "pub:1", "data": 1}),
        ErrorCode::Forbidden,
    );
    refused(
        &mut d,
        g,
        json!({"t": "status", "id": 6, "status": "away"}),
        ErrorCode::Forbidden,
    );
    refused(&mut d, g, subscribe(7, "room:1"), ErrorCode::Forbidden);
    refused(
        &mut d,
        g,
        json!({"t": "watch", "id": 8, "users": ["u1"]}),
        ErrorCode::Forbidden,
    );
    // With guests_watch they may watch.
    let mut c = error_cfg();
    c.guests_watch = true;
    let mut d = Driver::new(c);
    let g = d.guest();
    d.ok(g, json!({"t": "watch", "id": 1, "users": ["u1"]}));
    d.hello("u1");
    assert_eq!(d.take_t(g, "presence").len(), 2);
    d.ok(g, json!({"t": "bye", "id": 2}));
    assert_eq!(d.closes, vec![(g, 1000, "bye")]);
}
