//! Extension: enter without subscribing.

use super::*;

// ----- extension: enter without subscribing -------------------------------

fn kinds(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["t"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn sync_channels(frames: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = frames
        .iter()
        .filter(|f| f["t"] == "sync")
        .map(|f| f["channel"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn enter_without_subscribe_is_a_member_that_hears_nothing() {
    let mut d = Driver::new(cfg());
    let o = d.hello("obs");
    d.ok(o, subscribe_occ(1, "room:1"));
    d.take(o);
    let a = d.hello("u1");
    d.take(a);
    d.tick(100);
    d.ok(a, enter_quiet_with(1, "room:1", json!({"v": 1})));
    // Only the ok: no sync, not even its own join.
    assert_eq!(d.take(a), vec![json!({"t": "ok", "id": 1})]);
    // Everyone else sees an ordinary member.
    let f = d.take(o);
    let joins: Vec<&Value> = f.iter().filter(|f| f["t"] == "join").collect();
    assert_eq!(joins.len(), 1, "{f:?}");
    assert_eq!(joins[0]["member"]["user"], "u1");
    assert_eq!(joins[0]["member"]["data"], json!({"v": 1}));
    assert!(
        f.iter()
            .any(|f| f["t"] == "occupancy" && f["members"] == 1 && f["connections"] == 1),
        "{f:?}"
    );
    assert_eq!(d.eng.member_ids("room:1"), vec!["u1"]);
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 1)));
    assert!(d.take_events().iter().any(|e| matches!(
        e,
        PresenceEvent::MemberJoined { user, channel, .. } if &**user == "u1" && &**channel == "room:1"
    )));
    let detail = d.eng.user_detail(d.now, "u1").unwrap();
    assert_eq!(detail.channels, vec!["room:1"]);

    // Other members' changes, its own update and messages: nothing for it.
    d.tick(100);
    let b = d.hello("u2");
    d.ok(b, enter(1, "room:1"));
    d.tick(100);
    d.ok(a, update(2, "room:1", json!({"v": 2})));
    d.ok(
        o,
        json!({"t": "publish", "id": 2, "channel": "room:1", "data": "hi"}),
    );
    d.run_for(2_000, 100);
    assert_eq!(d.take(a), vec![json!({"t": "ok", "id": 2})]);
    let f = d.take(o);
    assert!(
        f.iter()
            .any(|f| f["t"] == "update" && f["member"]["data"] == json!({"v": 2})),
        "{f:?}"
    );
    assert!(d.take(b).iter().any(|f| f["t"] == "message"));

    // Subscribing later: a snapshot, then live events as usual.
    d.ok(a, subscribe(3, "room:1"));
    let f = d.take(a);
    assert_eq!(kinds(&f), ["sync", "ok"]);
    let users: Vec<&str> = f[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["u1", "u2"]);
    d.ok(b, leave(2, "room:1"));
    d.run_for(200, 50);
    let leaves = d.take_t(a, "leave");
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0]["user"], "u2");
}

#[test]
fn enter_without_subscribe_keeps_an_existing_subscription() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a = d.hello("u1");
    d.ok(a, subscribe(1, "room:1"));
    d.take(a);
    d.tick(100);
    d.ok(a, enter_quiet(2, "room:1"));
    // Still subscribed: its own join arrives as an event, but no fresh sync.
    assert_eq!(kinds(&d.take(a)), ["join", "ok"]);
    d.tick(100);
    let b = d.hello("u2");
    d.ok(b, enter_quiet(1, "room:1"));
    assert_eq!(d.take_t(a, "join").len(), 1);
    d.take(o);
    // `unsubscribe` ends the subscription and the membership.
    d.tick(100);
    d.take_events();
    d.ok(a, unsubscribe(3, "room:1"));
    let leaves = d.take_t(o, "leave");
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0]["user"], "u1");
    assert_eq!(leaves[0]["reason"], "left");
    assert_eq!(d.eng.member_ids("room:1"), vec!["u2"]);
    d.tick(100);
    d.take(a);
    d.ok(b, leave(2, "room:1"));
    d.run_for(200, 50);
    assert!(d.take(a).is_empty());
}

#[test]
fn unsubscribe_and_leave_end_a_membership_without_subscription() {
    let mut d = Driver::new(cfg());
    let a = d.hello("u1");
    // Nobody subscribed: the channel exists while it has a member.
    d.ok(a, enter_quiet(1, "room:1"));
    assert_eq!(d.eng.channel_count(), 1);
    d.run_for(2_000, 100);
    assert_eq!(d.eng.channel_count(), 1);
    assert_eq!(d.eng.member_ids("room:1"), vec!["u1"]);
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 1)));
    d.ok(a, leave(2, "room:1"));
    assert_eq!(d.eng.channel_count(), 0);
    assert_eq!(d.eng.next_deadline(), None, "timers of a dropped channel");

    // `unsubscribe` leaves too (as it does for a subscribed member).
    let o = observer(&mut d, "obs", "room:2");
    d.tick(100);
    d.ok(a, enter_quiet(3, "room:2"));
    d.tick(100);
    d.take(o);
    d.take(a);
    d.take_events();
    d.ok(a, unsubscribe(4, "room:2"));
    assert_eq!(d.take(a), vec![json!({"t": "ok", "id": 4})]);
    let f = d.take(o);
    let leaves: Vec<&Value> = f.iter().filter(|f| f["t"] == "leave").collect();
    assert_eq!(leaves.len(), 1, "{f:?}");
    assert_eq!(leaves[0]["user"], "u1");
    assert_eq!(leaves[0]["reason"], "left");
    assert_eq!(
        ev_member_left(&d.take_events()),
        vec![("u1".into(), "room:2".into(), Reason::Left)]
    );
    assert!(d.eng.member_ids("room:2").is_empty());
    assert_eq!(d.eng.channel_count(), 1, "the observer still subscribes");
    refused(&mut d, a, leave(5, "room:2"), ErrorCode::NotMember);
    d.ok(a, unsubscribe(6, "room:2"));
    assert!(d.take_events().is_empty());
}

#[test]
fn kick_and_grace_end_memberships_without_subscription() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a = d.hello("u1");
    let b = d.hello("u2");
    d.ok(a, enter_quiet(1, "room:1"));
    d.tick(100);
    d.ok(b, enter_quiet(1, "room:1"));
    d.run_for(200, 50);
    d.take(o);
    d.take_events();
    d.kick("u1");
    let leaves = d.take_t(o, "leave");
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0]["reason"], "kicked");
    assert_eq!(d.eng.member_ids("room:1"), vec!["u2"]);
    d.run_for(200, 50);
    d.disconnect(b);
    d.run_for(1_100, 100);
    assert!(!d.eng.has_conn(b));
    let leaves = d.take_t(o, "leave");
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0]["user"], "u2");
    assert_eq!(leaves[0]["reason"], "timeout");
    assert!(d.eng.member_ids("room:1").is_empty());
}

#[test]
fn channel_limit_counts_entered_and_subscribed_channels() {
    let mut c = error_cfg();
    c.max_channels_per_conn = 2;
    let mut d = Driver::new(c);
    let a = d.hello("u1");
    d.ok(a, enter_quiet(1, "a"));
    d.ok(a, subscribe(2, "b"));
    refused(&mut d, a, enter_quiet(3, "c"), ErrorCode::LimitExceeded);
    refused(&mut d, a, enter(4, "c"), ErrorCode::LimitExceeded);
    refused(&mut d, a, subscribe(5, "c"), ErrorCode::LimitExceeded);
    // Channels it already holds are fine either way.
    d.ok(a, enter_quiet(6, "b"));
    d.ok(a, subscribe(7, "a"));
    assert_eq!(sync_channels(&d.last_frames(a)), ["a"]);
    // Letting one go frees a slot.
    d.ok(a, unsubscribe(8, "a"));
    d.ok(a, enter_quiet(9, "c"));
    refused(&mut d, a, enter_quiet(10, "d"), ErrorCode::LimitExceeded);
    assert_eq!(d.eng.member_ids("b"), vec!["u1"]);
    assert_eq!(d.eng.member_ids("c"), vec!["u1"]);
}

#[test]
fn enter_without_subscribe_needs_the_same_rights_and_room() {
    let mut d = Driver::new(error_cfg());
    let u1 = d.hello("u1");
    let u2 = d.hello("u2");
    let u3 = d.hello("u3");
    let g = d.guest();
    d.ok(u1, enter_quiet(1, "small:1"));
    d.ok(u2, enter_quiet(1, "small:1"));
    refused(
        &mut d,
        u3,
        enter_quiet(2, "small:1"),
        ErrorCode::LimitExceeded,
    );
    refused(&mut d, u3, enter_quiet(3, "ro:1"), ErrorCode::Forbidden);
    refused(&mut d, u3, enter_quiet(4, "nosub:1"), ErrorCode::Forbidden);
    refused(&mut d, g, enter_quiet(5, "pub:1"), ErrorCode::Forbidden);
    let big = json!({"blob": "x".repeat(2_100)});
    refused(
        &mut d,
        u3,
        enter_quiet_with(6, "room:1", big),
        ErrorCode::TooLarge,
    );
}

#[test]
fn a_non_boolean_subscribe_flag_is_a_bad_request() {
    for flag in [json!("false"), json!(0), json!([]), json!({})] {
        let frame = json!({"t": "enter", "id": 7, "channel": "room:1", "subscribe": flag});
        let e = parse_client_frame(&frame.to_string()).unwrap_err();
        assert_eq!(e.id, Some(7), "{frame}");
        assert_eq!(e.error.code, ErrorCode::BadRequest, "{frame}");
    }
}

#[test]
fn resume_and_resync_keep_entered_channels_without_a_sync() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a = d.hello("u1");
    d.ok(a, enter_quiet_with(1, "room:1", json!({"v": 1})));
    d.ok(a, subscribe(2, "room:2"));
    d.tick(100);
    d.clear();

    // A lagged connection's resync covers its subscriptions only.
    let mut fx = Effects::new();
    d.eng.resync(d.now, a, &mut fx);
    d.absorb(fx);
    assert_eq!(sync_channels(&d.take(a)), ["room:2"]);

    let session = d.session(a);
    d.disconnect(a);
    d.tick(500);
    let att = d.connect(user("u1"), Some(&session));
    assert!(att.resumed);
    assert_eq!(att.conn, a);
    let f = d.take(a);
    assert_eq!(kinds(&f), ["welcome", "sync"]);
    assert_eq!(sync_channels(&f), ["room:2"]);
    assert!(d.take(o).is_empty(), "the observer saw the resume");
    assert!(d.take_events().is_empty());
    // Past the old grace deadline: still a member, able to update.
    d.run_for(1_000, 100);
    assert_eq!(d.eng.member_ids("room:1"), vec!["u1"]);
    d.ok(a, update(3, "room:1", json!({"v": 2})));
    assert_eq!(d.take_t(o, "update")[0]["member"]["data"], json!({"v": 2}));
    assert_eq!(d.take(a), vec![json!({"t": "ok", "id": 3})]);
}

#[test]
fn a_clean_restart_restores_entered_channels_without_subscription() {
    let mut d = Driver::new(cfg());
    let a = d.hello("u1");
    d.ok(a, enter_quiet_with(1, "room:1", json!({"v": 1})));
    d.ok(a, subscribe(2, "room:2"));
    d.ok(a, enter(3, "room:3"));
    let session = d.session(a);
    // As store.rs keeps them: JSON.
    let json = serde_json::to_string(&d.eng.export_sessions()).unwrap();
    let sessions: Vec<SessionRecord> = serde_json::from_str(&json).unwrap();
    assert_eq!(sessions.len(), 1);

    let mut d2 = Driver::new(cfg());
    d2.now = d.now + 100;
    let journal = vec![RestoredUser {
        user: "u1".into(),
        status: UserStatus::Online,
        since: T0,
        last_seen: d.now,
        channels: vec![
            ("room:1".into(), obj(json!({"v": 1})), T0),
            ("room:3".into(), obj(json!({})), T0),
        ],
    }];
    let mut next = 100;
    let mut fx = Effects::new();
    d2.eng.restore(
        d2.now,
        journal,
        sessions,
        || {
            next += 1;
            next
        },
        &mut fx,
    );
    d2.absorb(fx);
    assert_eq!(d2.eng.member_ids("room:1"), vec!["u1"]);
    assert_eq!(d2.eng.member_ids("room:3"), vec!["u1"]);
    assert_eq!(d2.eng.occupancy("room:1"), Some((1, 1)));

    // (Resumed before any other hello: the driver's session names restart.)
    let att = d2.connect(user("u1"), Some(&session));
    assert!(att.resumed);
    assert_eq!(att.conn, 101);
    let f = d2.take(101);
    assert_eq!(sync_channels(&f), ["room:2", "room:3"]);
    let o = d2.hello("obs");
    d2.ok(o, subscribe(1, "room:1"));
    let sync = d2.take_t(o, "sync");
    assert_eq!(sync[0]["members"][0]["data"], json!({"v": 1}));
    d2.run_for(2_000, 100);
    assert!(d2.take_t(o, "leave").is_empty());
    assert_eq!(d2.eng.member_ids("room:1"), vec!["u1"]);
    // Still no subscription to room:1: another member's join is not sent.
    let b = d2.hello("u2");
    d2.ok(b, enter(1, "room:1"));
    d2.run_for(200, 50);
    assert!(d2.take(101).is_empty());
    // And unsubscribe still leaves it.
    d2.ok(101, unsubscribe(4, "room:1"));
    assert_eq!(d2.eng.member_ids("room:1"), vec!["u2"]);
}
