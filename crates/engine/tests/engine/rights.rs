//! Rights rechecked when a connection's claims change: a `refresh` or a
//! `resume` with a narrower token, a restart with other channel rules
//! (`unsubscribed` to the connection, `leave` to the others), and a new
//! `info` claim reaching every channel the user is in.

use super::*;

fn with_channels(id: &str, globs: &[&str]) -> Identity {
    Identity {
        user: Some(id.into()),
        info: None,
        channels: Some(globs.iter().map(|g| g.to_string()).collect()),
    }
}

fn unsubscribed(ch: &str) -> Value {
    json!({"t": "unsubscribed", "channel": ch, "reason": "forbidden"})
}

fn leaves(frames: &[Value], ch: &str, user: &str) -> usize {
    frames
        .iter()
        .filter(|f| {
            f["channel"] == ch
                && ((f["t"] == "leave" && f["user"] == user)
                    || (f["t"] == "diff" && f["leaves"].as_array().unwrap().contains(&json!(user))))
        })
        .count()
}

/// The sessions of `d` as a clean shutdown keeps them (JSON, like the store).
fn kept_sessions(d: &Driver) -> Vec<SessionRecord> {
    let json = serde_json::to_string(&d.eng.export_sessions()).unwrap();
    serde_json::from_str(&json).unwrap()
}

/// A new engine with `rules` that restores `sessions` (and the journal's
/// `users`) 100 ms after `d`'s clock.
fn restarted(
    d: &Driver,
    cfg: EngineConfig,
    users: Vec<RestoredUser>,
    sessions: Vec<SessionRecord>,
) -> Driver {
    let mut d2 = Driver::new(cfg);
    d2.now = d.now + 100;
    let mut next = 100;
    let mut fx = Effects::new();
    d2.eng.restore(
        d2.now,
        users,
        sessions,
        || {
            next += 1;
            next
        },
        &mut fx,
    );
    d2.absorb(fx);
    d2
}

#[test]
fn a_narrower_refresh_ends_what_it_no_longer_allows() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "secret:1");
    let a = d.hello_as(with_channels("u1", &["secret:*", "public:*"]));
    d.ok(a, enter(1, "secret:1"));
    d.ok(a, subscribe(2, "public:1"));
    d.tick(100);
    d.clear();

    d.refresh(a, with_channels("u1", &["public:*"])).unwrap();
    // `unsubscribed` before the ok, and nothing else of secret:1.
    assert_eq!(
        d.take(a),
        [unsubscribed("secret:1"), json!({"t": "ok", "id": 0})]
    );
    assert_eq!(leaves(&d.take(o), "secret:1", "u1"), 1);
    assert_eq!(
        ev_member_left(&d.take_events()),
        [("u1".into(), "secret:1".into(), Reason::Left)]
    );
    assert!(d.eng.member_ids("secret:1").is_empty());

    // No more secret:1 frames: another member's join, a message.
    let b = d.hello("u2");
    d.ok(b, enter(1, "secret:1"));
    d.ok(
        b,
        json!({"t": "publish", "id": 2, "channel": "secret:1", "data": 1}),
    );
    d.run_for(200, 50);
    assert!(d.take(a).is_empty(), "secret:1 still reaches u1");
    // Still allowed: public:1 keeps its subscription.
    d.ok(b, enter(3, "public:1"));
    d.run_for(200, 50);
    let f = d.take(a);
    assert!(
        f.iter()
            .any(|f| f["channel"] == "public:1" && f["t"] == "join"),
        "{f:?}"
    );
    // And what it forbids stays forbidden.
    let e = d.req(a, subscribe(4, "secret:1")).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
}

#[test]
fn a_refresh_keeps_the_member_while_another_connection_is_in() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "secret:1");
    let a = d.hello_as(with_channels("u1", &["secret:*"]));
    let b = d.hello_as(with_channels("u1", &["secret:*"]));
    d.ok(a, enter(1, "secret:1"));
    d.ok(b, enter_quiet(1, "secret:1"));
    d.tick(100);
    d.clear();

    d.refresh(a, with_channels("u1", &["public:*"])).unwrap();
    assert_eq!(d.take(a)[0], unsubscribed("secret:1"));
    d.run_for(200, 50);
    // The user is still a member (through b), with one connection.
    let f = d.take(o);
    assert_eq!(leaves(&f, "secret:1", "u1"), 0, "{f:?}");
    assert_eq!(d.eng.member_ids("secret:1"), ["u1"]);
    assert_eq!(d.eng.occupancy("secret:1"), Some((1, 1)));
    assert!(ev_member_left(&d.take_events()).is_empty());
}

#[test]
fn a_refresh_ends_a_membership_without_subscription_too() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "secret:1");
    let a = d.hello_as(with_channels("u1", &["secret:*"]));
    d.ok(a, enter_quiet(1, "secret:1"));
    d.tick(100);
    d.clear();
    d.refresh(a, with_channels("u1", &[])).unwrap();
    assert_eq!(
        d.take(a),
        [unsubscribed("secret:1"), json!({"t": "ok", "id": 0})]
    );
    assert_eq!(leaves(&d.take(o), "secret:1", "u1"), 1);
    // Nothing held any more: a channel nobody holds is gone.
    d.ok(o, unsubscribe(9, "secret:1"));
    assert_eq!(d.eng.occupancy("secret:1"), None);
}

#[test]
fn a_refresh_that_allows_as_much_changes_nothing() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a = d.hello_as(with_channels("u1", &["room:*"]));
    d.ok(a, enter(1, "room:1"));
    d.tick(100);
    d.clear();
    d.refresh(a, with_channels("u1", &["room:1", "other:*"]))
        .unwrap();
    d.refresh(a, user("u1")).unwrap();
    assert_eq!(d.take(a), vec![json!({"t": "ok", "id": 0}); 2]);
    d.run_for(200, 50);
    assert!(d.take(o).is_empty());
    assert!(d.take_events().is_empty());
}

#[test]
fn a_refresh_with_new_info_updates_every_channel_the_user_is_in() {
    let mut d = Driver::new(cfg());
    let o1 = observer(&mut d, "obs1", "room:1");
    let o2 = observer(&mut d, "obs2", "room:2");
    let a = d.hello_as(with_info("u1", json!({"name": "Al"})));
    let b = d.hello_as(with_info("u1", json!({"name": "Al"})));
    d.ok(a, enter_with(1, "room:1", json!({"x": 1})));
    // room:2 through the user's other connection.
    d.ok(b, enter_quiet(1, "room:2"));
    d.tick(100);
    d.clear();

    d.refresh(a, with_info("u1", json!({"name": "Alice"})))
        .unwrap();
    let f = d.take(a);
    let t: Vec<&str> = f.iter().map(|f| f["t"].as_str().unwrap()).collect();
    assert_eq!(t, ["update", "ok"], "{f:?}");
    assert_eq!(
        f[0]["member"]["data"],
        json!({"x": 1, "info": {"name": "Alice"}})
    );
    d.run_for(200, 50);
    let u1 = d.take_t(o1, "update");
    assert_eq!(
        u1[0]["member"]["data"],
        json!({"x": 1, "info": {"name": "Alice"}})
    );
    let u2 = d.take_t(o2, "update");
    assert_eq!(u2[0]["member"]["data"], json!({"info": {"name": "Alice"}}));
    let updated = d
        .take_events()
        .iter()
        .filter(|e| matches!(e, PresenceEvent::MemberUpdated { .. }))
        .count();
    assert_eq!(updated, 2);

    // The same info again: nothing. A token without info: the claim goes.
    d.tick(500);
    d.refresh(a, with_info("u1", json!({"name": "Alice"})))
        .unwrap();
    d.run_for(200, 50);
    assert!(d.take_t(o1, "update").is_empty());
    d.refresh(a, user("u1")).unwrap();
    d.run_for(200, 50);
    assert_eq!(d.take_t(o1, "update")[0]["member"]["data"], json!({"x": 1}));
}

#[test]
fn a_resume_with_a_narrower_token_restores_only_what_it_allows() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "secret:1");
    let a = d.hello_as(with_channels("u1", &["secret:*", "public:*"]));
    d.ok(a, enter(1, "secret:1"));
    d.ok(a, enter(2, "public:1"));
    d.ok(a, json!({"t": "watch", "id": 3, "users": ["obs"]}));
    let session = d.session(a);
    d.disconnect(a);
    d.tick(100);
    d.clear();

    let att = d.connect(with_channels("u1", &["public:*"]), Some(&session));
    assert!(att.resumed);
    let f = d.take(att.conn);
    let t: Vec<&str> = f.iter().map(|f| f["t"].as_str().unwrap()).collect();
    assert_eq!(t, ["welcome", "unsubscribed", "sync", "presence"], "{f:?}");
    assert_eq!(f[1], unsubscribed("secret:1"));
    assert_eq!(f[2]["channel"], "public:1");
    assert_eq!(leaves(&d.take(o), "secret:1", "u1"), 1);
    assert_eq!(
        ev_member_left(&d.take_events()),
        [("u1".into(), "secret:1".into(), Reason::Left)]
    );
    // Past the grace window nothing more happens.
    d.run_for(2_000, 100);
    assert!(d.take(o).is_empty());
    assert_eq!(d.eng.member_ids("public:1"), ["u1"]);
}

#[test]
fn a_resume_with_new_info_shows_it_in_its_own_sync() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a = d.hello_as(with_info("u1", json!({"name": "Al"})));
    d.ok(a, enter(1, "room:1"));
    let session = d.session(a);
    d.disconnect(a);
    d.tick(100);
    d.clear();
    let att = d.connect(with_info("u1", json!({"name": "Alice"})), Some(&session));
    let f = d.take(att.conn);
    let t: Vec<&str> = f.iter().map(|f| f["t"].as_str().unwrap()).collect();
    // No event before the fresh sync; the sync shows the new name.
    assert_eq!(t, ["welcome", "sync"], "{f:?}");
    assert_eq!(
        f[1]["members"][0]["data"],
        json!({"info": {"name": "Alice"}})
    );
    let u = d.take_t(o, "update");
    assert_eq!(u[0]["member"]["data"], json!({"info": {"name": "Alice"}}));
}

#[test]
fn a_resume_of_a_live_socket_hears_no_event_before_its_syncs() {
    let mut d = Driver::new(cfg());
    let a = d.hello_as(with_info("u1", json!({"name": "Al"})));
    d.ok(a, enter(1, "room:1"));
    let session = d.session(a);
    d.tick(100);
    d.clear();
    // Not detached: a half-open socket the server has not noticed.
    let att = d.connect(with_info("u1", json!({"name": "Alice"})), Some(&session));
    assert!(att.resumed && att.replaced_live_socket);
    let t: Vec<String> = d
        .take(att.conn)
        .iter()
        .map(|f| f["t"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(t, ["welcome", "sync"]);
    // Live again: the next change reaches it.
    let b = d.hello("u2");
    d.ok(b, enter(1, "room:1"));
    d.run_for(200, 50);
    assert_eq!(d.take_t(att.conn, "join").len(), 1);
}

#[test]
fn a_guest_resuming_after_a_restart_without_its_rule_gets_nothing_back() {
    let mut lobby = rule("lobby:*");
    lobby.guests = true;
    let before = EngineConfig {
        rules: rules(vec![lobby]),
        guests_watch: true,
        ..cfg()
    };
    let mut d = Driver::new(before);
    let g = d.guest();
    d.ok(g, subscribe(1, "lobby:1"));
    d.ok(g, json!({"t": "watch", "id": 2, "users": ["u1"]}));
    let session = d.session(g);
    let sessions = kept_sessions(&d);

    // The operator removed `guests = true` (and guests_watch).
    let mut d2 = restarted(&d, cfg(), Vec::new(), sessions);
    let att = d2.connect(Identity::default(), Some(&session));
    assert!(att.resumed);
    let f = d2.take(att.conn);
    let t: Vec<&str> = f.iter().map(|f| f["t"].as_str().unwrap()).collect();
    // No sync of lobby:1, no presence of the watched user.
    assert_eq!(t, ["welcome", "unsubscribed"], "{f:?}");
    assert_eq!(f[1], unsubscribed("lobby:1"));
    let u = d2.hello("u1");
    d2.ok(u, enter(1, "lobby:1"));
    d2.run_for(200, 50);
    assert!(d2.take(att.conn).is_empty());
    assert_eq!(d2.eng.occupancy("lobby:1"), Some((1, 1)));
}

#[test]
fn a_member_resuming_after_a_restart_that_forbids_entering_leaves() {
    let mut d = Driver::new(cfg());
    let a = d.hello("u1");
    d.ok(a, enter_with(1, "stage:1", json!({"v": 1})));
    d.ok(a, enter(2, "room:1"));
    let session = d.session(a);
    let sessions = kept_sessions(&d);
    let journal = vec![RestoredUser {
        user: "u1".into(),
        status: UserStatus::Online,
        since: T0,
        last_seen: d.now,
        channels: vec![
            ("stage:1".into(), obj(json!({"v": 1})), T0),
            ("room:1".into(), obj(json!({})), T0),
        ],
    }];
    let mut stage = rule("stage:*");
    stage.enter = false;
    let after = EngineConfig {
        rules: rules(vec![stage]),
        ..cfg()
    };
    let mut d2 = restarted(&d, after, journal, sessions);
    // Resumed first: the driver's session names start again.
    let att = d2.connect(user("u1"), Some(&session));
    assert!(att.resumed);
    let o = d2.hello("obs");
    let f = d2.take(att.conn);
    let t: Vec<&str> = f.iter().map(|f| f["t"].as_str().unwrap()).collect();
    assert_eq!(t, ["welcome", "unsubscribed", "sync"], "{f:?}");
    assert_eq!(f[1], unsubscribed("stage:1"));
    assert_eq!(f[2]["channel"], "room:1");
    assert!(d2.eng.member_ids("stage:1").is_empty());
    assert_eq!(
        ev_member_left(&d2.take_events()),
        [("u1".into(), "stage:1".into(), Reason::Left)]
    );
    // Subscribing (without entering) is still allowed.
    d2.ok(att.conn, subscribe(3, "stage:1"));
    d2.ok(o, subscribe(1, "room:1"));
    assert_eq!(d2.take_t(o, "sync")[0]["members"][0]["user"], "u1");
}
