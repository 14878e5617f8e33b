// Kept in one file: its scenarios share helpers and are read by section (the `// -----` headings).
//! Scenario tests of the presence engine on a fake clock (docs/protocol.md).

mod support;

use presenced_engine::{
    Effects, EngineConfig, ErrorCode, Identity, PresenceEvent, Reason, RestoredUser, SessionRecord,
    UserStatus, parse_client_frame, rfc3339,
};
use serde_json::{Value, json};
use support::*;

fn ev_user_offline(events: &[PresenceEvent]) -> Vec<(String, u64, u64, Reason)> {
    events
        .iter()
        .filter_map(|e| match e {
            PresenceEvent::UserOffline {
                user,
                at,
                last_seen,
                reason,
            } => Some((user.to_string(), *at, *last_seen, *reason)),
            _ => None,
        })
        .collect()
}

fn ev_member_left(events: &[PresenceEvent]) -> Vec<(String, String, Reason)> {
    events
        .iter()
        .filter_map(|e| match e {
            PresenceEvent::MemberLeft {
                user,
                channel,
                reason,
                ..
            } => Some((user.to_string(), channel.to_string(), *reason)),
            _ => None,
        })
        .collect()
}

/// An observer connection subscribed to `ch`, frames cleared.
fn observer(d: &mut Driver, name: &str, ch: &str) -> u64 {
    let o = d.hello(name);
    d.ok(o, subscribe(1, ch));
    d.take(o);
    o
}

fn event_frames(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| ["join", "update", "leave", "diff"].contains(&f["t"].as_str().unwrap_or("")))
        .cloned()
        .collect()
}

// ----- users, connections, grace ------------------------------------------

#[test]
fn two_conns_of_one_user_are_one_member() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a1 = d.hello("u1");
    let a2 = d.hello("u1");
    d.ok(a1, enter_with(1, "room:1", json!({"x": 1})));
    let f = d.take(o);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["t"], "join");
    assert_eq!(f[0]["member"]["conns"], 1);
    d.tick(100);
    d.ok(a2, enter(2, "room:1"));
    // A connection count change alone sends no update.
    assert!(event_frames(&d.take(o)).is_empty());
    assert_eq!(d.eng.member_ids("room:1"), vec!["u1"]);
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 2)));
    // A fresh snapshot shows one member with two connections, data kept.
    d.ok(o, subscribe(3, "room:1"));
    let sync = d.take_t(o, "sync");
    assert_eq!(sync[0]["members"].as_array().unwrap().len(), 1);
    assert_eq!(sync[0]["members"][0]["conns"], 2);
    assert_eq!(sync[0]["members"][0]["data"], json!({"x": 1}));

    // One goes away and its grace expires: still a member, nobody sees a thing.
    d.disconnect(a1);
    d.run_for(1_500, 100);
    assert!(!d.eng.has_conn(a1));
    assert!(d.take(o).is_empty());
    assert_eq!(d.eng.member_ids("room:1"), vec!["u1"]);
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 1)));
    assert_eq!(d.eng.presence(d.now, "u1").status, UserStatus::Online);
    assert!(ev_member_left(&d.take_events()).is_empty());

    // The last one goes: leave with reason timeout exactly after grace.
    d.disconnect(a2);
    let gone_at = d.now;
    d.tick(999);
    assert!(d.take(o).is_empty());
    assert_eq!(d.eng.presence(d.now, "u1").status, UserStatus::Online);
    d.tick(1);
    let f = d.take(o);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["t"], "leave");
    assert_eq!(f[0]["user"], "u1");
    assert_eq!(f[0]["reason"], "timeout");
    let ev = d.take_events();
    assert_eq!(
        ev_member_left(&ev),
        vec![("u1".into(), "room:1".into(), Reason::Timeout)]
    );
    assert_eq!(
        ev_user_offline(&ev),
        vec![("u1".into(), d.now, gone_at, Reason::Timeout)]
    );
    assert_eq!(d.eng.member_ids("room:1"), Vec::<String>::new());
}

#[test]
fn resume_inside_grace_is_invisible() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    d.ok(o, json!({"t": "watch", "id": 2, "users": ["u1"]}));
    let a = d.hello("u1");
    d.ok(a, enter_with(1, "room:1", json!({"k": "v"})));
    d.ok(a, json!({"t": "watch", "id": 2, "users": ["obs"]}));
    d.tick(100);
    d.clear();

    let old_session = d.session(a);
    d.disconnect(a);
    assert!(d.deadline_moved);
    assert_eq!(d.eng.next_deadline(), Some(d.now + 1_000));
    let dropped_at = d.now;
    d.tick(500);
    assert_eq!(d.eng.presence(d.now, "u1").last_seen, Some(dropped_at));
    let att = d.connect(user("u1"), Some(&old_session));
    assert!(att.resumed);
    assert!(!att.replaced_live_socket);
    assert_eq!(att.conn, a);
    assert!(d.take(o).is_empty(), "observer saw the resume");
    assert!(d.take_events().is_empty(), "resume produced events");

    let f = d.take(a);
    assert_eq!(f[0]["t"], "welcome");
    assert_eq!(f[0]["resumed"], true);
    assert_eq!(f[0]["conn"], a.to_string());
    assert_ne!(f[0]["session"], old_session.as_str());
    assert_eq!(f[1]["t"], "sync");
    assert_eq!(f[1]["channel"], "room:1");
    assert_eq!(f[1]["members"][0]["user"], "u1");
    assert_eq!(f[1]["members"][0]["data"], json!({"k": "v"}));
    assert_eq!(f[2]["t"], "presence");
    assert_eq!(f[2]["users"]["obs"]["status"], "online");
    assert_eq!(f.len(), 3, "{f:?}");

    // Live again: last_seen is now, and the original grace deadline is gone.
    assert_eq!(d.eng.presence(d.now, "u1").last_seen, Some(d.now));
    d.run_for(2_000, 100);
    assert!(d.eng.has_conn(a));
    assert_eq!(d.eng.member_ids("room:1"), vec!["u1"]);
    assert!(d.take(o).is_empty());
    assert!(d.take_events().is_empty());
    assert_eq!(d.eng.next_deadline(), None);
    // And the resumed connection acts as before.
    d.ok(a, update(3, "room:1", json!({"k": "w"})));
    let f = d.take(o);
    assert_eq!(f[0]["t"], "update");
    assert_eq!(f[0]["member"]["data"], json!({"k": "w"}));
}

#[test]
fn resume_after_grace_is_a_fresh_connection() {
    let mut d = Driver::new(cfg());
    let a = d.hello("u1");
    d.ok(a, enter(1, "room:1"));
    let s = d.session(a);
    d.disconnect(a);
    d.tick(1_000);
    assert!(!d.eng.has_conn(a));
    assert_eq!(d.eng.presence(d.now, "u1").status, UserStatus::Offline);
    let att = d.connect(user("u1"), Some(&s));
    assert!(!att.resumed);
    assert_ne!(att.conn, a);
    let f = d.take(att.conn);
    assert_eq!(f[0]["t"], "welcome");
    assert_eq!(f[0]["resumed"], false);
    assert_eq!(d.eng.member_ids("room:1"), Vec::<String>::new());
}

#[test]
fn session_token_works_once() {
    let mut d = Driver::new(cfg());
    let a = d.hello("u1");
    let s1 = d.session(a);
    d.disconnect(a);
    let att = d.connect(user("u1"), Some(&s1));
    assert!(att.resumed && att.conn == a);
    let s2 = d.session(a);
    assert_ne!(s1, s2);
    d.disconnect(a);
    // The used token no longer resumes: a fresh connection instead.
    let fresh = d.connect(user("u1"), Some(&s1));
    assert!(!fresh.resumed);
    assert_ne!(fresh.conn, a);
    assert!(d.eng.has_conn(a));
    // The new one does.
    let again = d.connect(user("u1"), Some(&s2));
    assert!(again.resumed && again.conn == a);
    assert_eq!(d.eng.connection_count(), 2);
}

#[test]
fn resume_of_a_live_connection_replaces_the_socket() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a = d.hello("u1");
    d.ok(a, enter(1, "room:1"));
    d.tick(100);
    d.clear();
    let att = d.connect(user("u1"), Some(&d.session(a)));
    assert!(att.resumed);
    assert!(att.replaced_live_socket);
    assert_eq!(att.conn, a);
    assert_eq!(d.eng.connection_count(), 2);
    assert!(d.take(o).is_empty());
    assert!(d.take_events().is_empty());
    let f = d.take(a);
    assert_eq!(f[0]["t"], "welcome");
    assert_eq!(f[0]["resumed"], true);
    assert_eq!(f[1]["t"], "sync");
    // Still live: nothing expires.
    d.run_for(3_000, 500);
    assert!(d.eng.has_conn(a));
    assert_eq!(d.eng.presence(d.now, "u1").last_seen, Some(d.now));
}

#[test]
fn resume_with_another_users_session_is_a_fresh_connection() {
    let mut d = Driver::new(cfg());
    let a = d.hello("u1");
    d.disconnect(a);
    let att = d.connect(user("u2"), Some(&d.session(a)));
    assert!(!att.resumed);
    assert_ne!(att.conn, a);
    // u1's session still works for u1.
    let att = d.connect(user("u1"), Some(&d.session(a)));
    assert!(att.resumed && att.conn == a);
    // A guest cannot take a user's session either.
    d.disconnect(a);
    let g = d.connect(Identity::default(), Some(&d.session(a)));
    assert!(!g.resumed);
}

#[test]
fn guests_resume_their_subscriptions() {
    let mut c = cfg();
    let mut r = rule("pub:*");
    r.guests = true;
    c.rules = rules(vec![r]);
    let mut d = Driver::new(c);
    let g = d.guest();
    d.ok(g, subscribe(1, "pub:1"));
    d.disconnect(g);
    d.tick(10);
    let att = d.connect(Identity::default(), Some(&d.session(g)));
    assert!(att.resumed && att.conn == g);
    let f = d.take(g);
    assert!(
        f.iter()
            .any(|f| f["t"] == "sync" && f["channel"] == "pub:1")
    );
}

#[test]
fn bye_ends_presence_at_once() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    d.ok(o, json!({"t": "watch", "id": 2, "users": ["u1"]}));
    let a = d.hello("u1");
    d.ok(a, enter(1, "room:1"));
    d.tick(100);
    d.clear();
    d.ok(a, json!({"t": "bye", "id": 9}));
    assert!(!d.eng.has_conn(a));
    // ok, then the close, last.
    let last_two: Vec<_> = d.last.iter().rev().take(2).collect();
    assert!(
        matches!(last_two[0], presenced_engine::Effect::Close { conn, code: 1000, .. } if *conn == a),
        "{:?}",
        d.last
    );
    match last_two[1] {
        presenced_engine::Effect::Reply { conn, frame } => {
            assert_eq!(*conn, a);
            let v: Value = serde_json::from_str(frame.as_str()).unwrap();
            assert_eq!(v, json!({"t": "ok", "id": 9}));
        }
        other => panic!("expected the ok before the close, got {other:?}"),
    }
    let f = d.take(o);
    let leave: Vec<_> = f.iter().filter(|f| f["t"] == "leave").collect();
    assert_eq!(leave.len(), 1);
    assert_eq!(leave[0]["reason"], "logout");
    let presence: Vec<_> = f.iter().filter(|f| f["t"] == "presence").collect();
    assert_eq!(presence.len(), 1);
    assert_eq!(presence[0]["users"]["u1"]["status"], "offline");
    assert_eq!(presence[0]["users"]["u1"]["last_seen"], rfc3339(d.now));
    let ev = d.take_events();
    assert_eq!(
        ev_member_left(&ev),
        vec![("u1".into(), "room:1".into(), Reason::Logout)]
    );
    assert_eq!(
        ev_user_offline(&ev),
        vec![("u1".into(), d.now, d.now, Reason::Logout)]
    );
    assert_eq!(d.closes, vec![(a, 1000, "bye")]);
    assert_eq!(d.eng.next_deadline(), Some(d.now + 50)); // the leave's window only
}

#[test]
fn bye_leaves_other_connections_alone() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a = d.hello("u1");
    let b = d.hello("u1");
    d.ok(a, enter(1, "room:1"));
    d.ok(b, enter(1, "room:1"));
    d.tick(100);
    d.clear();
    d.ok(a, json!({"t": "bye"}));
    assert!(event_frames(&d.take(o)).is_empty());
    assert!(d.take_events().is_empty());
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 1)));
    assert_eq!(d.eng.presence(d.now, "u1").status, UserStatus::Online);
}

#[test]
fn kick_closes_everything_with_4409() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    d.ok(o, json!({"t": "watch", "id": 2, "users": ["u1"]}));
    let a = d.hello("u1");
    let b = d.hello("u1");
    d.ok(a, enter(1, "room:1"));
    d.ok(b, enter(1, "room:1"));
    d.tick(100);
    d.disconnect(b);
    d.tick(100);
    d.clear();
    assert_eq!(d.kick("u1"), 2);
    // Only the live socket is closed; the detached one has none.
    assert_eq!(d.closes, vec![(a, 4409, "kicked")]);
    assert!(!d.eng.has_conn(a) && !d.eng.has_conn(b));
    let f = d.take(o);
    let leaves: Vec<_> = f.iter().filter(|f| f["t"] == "leave").collect();
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0]["reason"], "kicked");
    assert_eq!(
        f.iter().rfind(|f| f["t"] == "presence").unwrap()["users"]["u1"]["status"],
        "offline"
    );
    let ev = d.take_events();
    assert_eq!(
        ev_user_offline(&ev),
        vec![("u1".into(), d.now, d.now, Reason::Kicked)]
    );
    assert_eq!(d.eng.users_present(), 1);
    assert_eq!(d.kick("nobody"), 0);
    // Grace timer of the detached connection is gone too.
    d.run_for(2_000, 100);
    assert_eq!(d.eng.next_deadline(), None);
}

#[test]

fn kick_goes_offline_without_intermediate_status() {
    let mut d = Driver::new(cfg());
    let o = d.hello("obs");
    d.ok(o, json!({"t": "watch", "id": 2, "users": ["u1"]}));
    d.hello("u1"); // online
    let b = d.hello("u1");
    d.ok(b, json!({"t": "status", "status": "away"}));
    d.clear();
    d.kick("u1");
    let statuses: Vec<_> = d
        .take_events()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                PresenceEvent::UserAway { .. }
                    | PresenceEvent::UserOnline { .. }
                    | PresenceEvent::UserOffline { .. }
            )
        })
        .collect();
    assert_eq!(
        statuses.len(),
        1,
        "kick must go straight to offline: {statuses:?}"
    );
    let presence = d.take_t(o, "presence");
    assert_eq!(presence.len(), 1, "{presence:?}");
    assert_eq!(presence[0]["users"]["u1"]["status"], "offline");
}

// ----- status, watch, last_seen/since -------------------------------------

#[test]
fn away_only_when_every_connection_is_away() {
    let mut d = Driver::new(cfg());
    let o = d.hello("obs");
    d.ok(o, json!({"t": "watch", "id": 1, "users": ["u1"]}));
    let a = d.hello("u1");
    let b = d.hello("u1");
    d.clear();
    d.tick(10);
    d.ok(a, json!({"t": "status", "id": 1, "status": "away"}));
    assert!(d.take_events().is_empty());
    assert!(d.take(o).is_empty());
    assert_eq!(d.eng.presence(d.now, "u1").status, UserStatus::Online);
    d.tick(10);
    d.ok(b, json!({"t": "status", "id": 2, "status": "away"}));
    assert!(
        matches!(&d.take_events()[..], [PresenceEvent::UserAway { user, at }] if &**user == "u1" && *at == d.now)
    );
    let p = d.take_t(o, "presence");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["users"]["u1"]["status"], "away");
    assert_eq!(p[0]["users"]["u1"]["since"], rfc3339(d.now));
    let p = d.eng.presence(d.now, "u1");
    assert_eq!((p.status, p.since), (UserStatus::Away, Some(d.now)));
    // Setting away again changes nothing.
    d.ok(b, json!({"t": "status", "status": "away"}));
    assert!(d.take_events().is_empty());
    d.tick(10);
    d.ok(a, json!({"t": "status", "status": "online"}));
    assert!(matches!(
        &d.take_events()[..],
        [PresenceEvent::UserOnline { .. }]
    ));
    assert_eq!(
        d.take_t(o, "presence")[0]["users"]["u1"]["status"],
        "online"
    );
    // A new connection of an away user makes it online.
    d.ok(a, json!({"t": "status", "status": "away"}));
    assert!(matches!(
        &d.take_events()[..],
        [PresenceEvent::UserAway { .. }]
    ));
    let c = d.hello("u1");
    assert!(matches!(
        &d.take_events()[..],
        [PresenceEvent::UserOnline { .. }]
    ));
    // A detached online connection still counts until its grace ends.
    d.disconnect(c);
    assert_eq!(d.eng.presence(d.now, "u1").status, UserStatus::Online);
    d.tick(1_000);
    assert!(matches!(
        &d.take_events()[..],
        [PresenceEvent::UserAway { .. }]
    ));
    assert_eq!(d.eng.presence(d.now, "u1").status, UserStatus::Away);
}

#[test]
fn watchers_follow_status_changes() {
    let mut d = Driver::new(cfg());
    let o = d.hello("obs");
    d.skip(o);
    d.tick(5);
    d.ok(o, json!({"t": "watch", "id": 1, "users": ["u1", "u2"]}));
    let f = d.take(o);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0]["t"], "presence");
    assert_eq!(
        f[0]["users"]["u1"],
        json!({"status": "offline", "since": null, "last_seen": null})
    );
    assert_eq!(f[1], json!({"t": "ok", "id": 1}));
    d.tick(5);
    let a = d.hello("u1");
    let f = d.take(o);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0]["users"],
        json!({"u1": {"status": "online", "since": rfc3339(d.now), "last_seen": rfc3339(d.now)}})
    );
    // A second connection changes no status: no frame.
    let b = d.hello("u1");
    assert!(d.take(o).is_empty());
    d.ok(b, json!({"t": "bye"}));
    assert!(d.take(o).is_empty());
    d.ok(
        o,
        json!({"t": "unwatch", "id": 3, "users": ["u1", "nobody"]}),
    );
    d.take(o);
    d.ok(a, json!({"t": "bye"}));
    assert!(d.take(o).is_empty());
    // A detached watcher gets nothing; its resume brings one presence frame.
    d.ok(o, json!({"t": "watch", "users": ["u1"]}));
    d.disconnect(o);
    d.take(o);
    d.hello("u1");
    assert!(d.take(o).is_empty());
    d.connect(user("obs"), Some(&d.session(o)));
    let p = d.take_t(o, "presence");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["users"]["u1"]["status"], "online");
    assert_eq!(p[0]["users"]["u2"]["status"], "offline");
}

#[test]
fn last_seen_and_since() {
    let mut d = Driver::new(cfg());
    assert_eq!(
        d.eng.presence(d.now, "u1"),
        presenced_engine::UserPresence {
            status: UserStatus::Offline,
            since: None,
            last_seen: None
        }
    );
    let t_on = d.now;
    let a = d.hello("u1");
    d.tick(700);
    let p = d.eng.presence(d.now, "u1");
    assert_eq!(
        (p.status, p.since, p.last_seen),
        (UserStatus::Online, Some(t_on), Some(d.now))
    );
    let t_drop = d.now;
    d.disconnect(a);
    d.tick(400);
    // Inside grace: still online since the same time, last seen when it dropped.
    let p = d.eng.presence(d.now, "u1");
    assert_eq!(
        (p.status, p.since, p.last_seen),
        (UserStatus::Online, Some(t_on), Some(t_drop))
    );
    d.tick(600);
    let t_off = d.now;
    let p = d.eng.presence(d.now, "u1");
    assert_eq!(
        (p.status, p.since, p.last_seen),
        (UserStatus::Offline, Some(t_off), Some(t_drop))
    );
    d.tick(5_000);
    let p = d.eng.presence(d.now, "u1");
    assert_eq!((p.since, p.last_seen), (Some(t_off), Some(t_drop)));
    // Back online: since is the new time.
    let t_back = d.now;
    let b = d.hello("u1");
    let p = d.eng.presence(d.now, "u1");
    assert_eq!((p.status, p.since), (UserStatus::Online, Some(t_back)));
    // Two connections: last_seen only stops moving when the last live one drops.
    let c = d.hello("u1");
    d.tick(100);
    d.disconnect(b);
    d.tick(100);
    assert_eq!(d.eng.presence(d.now, "u1").last_seen, Some(d.now));
    let t_last = d.now;
    d.ok(c, json!({"t": "bye"}));
    d.tick(200);
    // b is in grace: online, last seen at the logout of c.
    let p = d.eng.presence(d.now, "u1");
    assert_eq!((p.status, p.last_seen), (UserStatus::Online, Some(t_last)));
    d.tick(1_000);
    let p = d.eng.presence(d.now, "u1");
    assert_eq!((p.status, p.last_seen), (UserStatus::Offline, Some(t_last)));
}

// ----- occupancy ------------------------------------------------------------

#[test]
fn occupancy_is_throttled_and_the_final_value_arrives() {
    let mut d = Driver::new(cfg());
    let o = d.hello("obs");
    d.skip(o);
    d.ok(o, subscribe_occ(1, "room:1"));
    let f = d.take(o);
    assert_eq!(
        f.iter()
            .map(|f| f["t"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["sync", "occupancy", "ok"]
    );
    assert_eq!(
        f[1],
        json!({"t": "occupancy", "channel": "room:1", "members": 0, "connections": 0})
    );
    let occ = |d: &mut Driver| -> Vec<(u64, u64)> {
        d.take_t(o, "occupancy")
            .iter()
            .map(|f| {
                (
                    f["members"].as_u64().unwrap(),
                    f["connections"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let u: Vec<_> = (0..4).map(|i| d.hello(&format!("u{i}"))).collect();
    let t = d.now;
    d.ok(u[0], enter(1, "room:1"));
    assert_eq!(occ(&mut d), vec![(1, 1)]);
    d.tick(10);
    d.ok(u[1], enter(1, "room:1"));
    d.tick(10);
    d.ok(u[2], enter(1, "room:1"));
    let u1b = d.hello("u1");
    d.ok(u1b, enter(1, "room:1"));
    assert_eq!(occ(&mut d), vec![]);
    d.run_for(t + 999 - d.now, 100);
    assert_eq!(occ(&mut d), vec![]);
    d.tick(1);
    assert_eq!(occ(&mut d), vec![(3, 4)]);
    // Changing back and forth within an interval sends nothing new.
    d.tick(100);
    d.ok(u[3], enter(1, "room:1"));
    d.ok(u[3], leave(2, "room:1"));
    d.run_for(2_000, 50);
    assert_eq!(occ(&mut d), vec![]);
    // After a quiet interval a change goes out at once.
    d.ok(u[3], enter(3, "room:1"));
    assert_eq!(occ(&mut d), vec![(4, 5)]);
    assert_eq!(d.eng.occupancy("room:1"), Some((4, 5)));
    // At most one push per interval under a stream of changes.
    let start = d.now;
    let mut pushes = Vec::new();
    for i in 0..40 {
        d.tick(50);
        let who = u[3];
        if i % 2 == 0 {
            d.ok(who, leave(4, "room:1"));
        } else {
            d.ok(who, enter(5, "room:1"));
        }
        for _ in occ(&mut d) {
            pushes.push(d.now);
        }
    }
    d.run_for(1_000, 50);
    for _ in occ(&mut d) {
        pushes.push(d.now);
    }
    assert!(pushes.len() >= 2, "{pushes:?}");
    for w in pushes.windows(2) {
        assert!(
            w[1] - w[0] >= 1_000,
            "two occupancy pushes {}ms apart",
            w[1] - w[0]
        );
    }
    assert!(pushes[0] >= start);
    // Guests never count.
    let (m, c) = d.eng.occupancy("room:1").unwrap();
    assert_eq!(m, d.eng.member_ids("room:1").len());
    assert!(c >= m);
}

#[test]

fn occupancy_snapshot_inside_a_throttle_interval_converges() {
    let mut d = Driver::new(cfg());
    let a = d.hello("a");
    let b = d.hello("b");
    d.ok(a, enter(1, "room:1")); // (1,1) sent at once, throttle until +1000
    d.tick(100);
    d.ok(b, enter(1, "room:1")); // (2,2) throttled, timer at +1000
    d.tick(100);
    let o = d.hello("obs");
    d.ok(o, subscribe_occ(1, "room:1")); // snapshot occupancy: (2,2)
    d.tick(100);
    d.ok(b, leave(2, "room:1")); // back to (1,1) == last sent
    d.run_for(3_000, 100);
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 1)));
    let last = d.take_t(o, "occupancy").pop().unwrap();
    assert_eq!(
        (last["members"].as_u64(), last["connections"].as_u64()),
        (Some(1), Some(1)),
        "observer is stuck at {last}"
    );
}

// ----- channels, seq, coalescing ------------------------------------------

#[test]
fn empty_channel_is_removed_and_timers_cleaned() {
    let mut d = Driver::new(cfg());
    let o = d.hello("obs");
    d.ok(o, subscribe_occ(1, "room:1"));
    let a = d.hello("u1");
    d.ok(a, enter_with(1, "room:1", json!({"v": 1})));
    d.ok(a, update(2, "room:1", json!({"v": 2})));
    d.ok(a, leave(3, "room:1"));
    assert_eq!(d.eng.channel_count(), 1);
    d.ok(a, json!({"t": "unsubscribe", "id": 4, "channel": "room:1"}));
    assert_eq!(d.eng.channel_count(), 1);
    d.ok(o, json!({"t": "unsubscribe", "id": 5, "channel": "room:1"}));
    assert_eq!(d.eng.channel_count(), 0);
    assert_eq!(d.eng.occupancy("room:1"), None);
    // Dropping the channel dropped its window and occupancy timers.
    assert_eq!(d.eng.next_deadline(), None);
    // Unsubscribing again is a no-op ok.
    d.ok(o, json!({"t": "unsubscribe", "id": 6, "channel": "room:1"}));
    assert_eq!(d.take(o).last().unwrap(), &json!({"t": "ok", "id": 6}));
    // It comes back with seq 0.
    d.ok(o, subscribe(7, "room:1"));
    let s = d.take_t(o, "sync");
    assert_eq!(s[0]["seq"], 0);
    d.ok(a, enter(8, "room:1"));
    assert_eq!(d.take_t(o, "join")[0]["seq"], 1);
    d.ok(a, json!({"t": "bye"}));
    d.ok(o, json!({"t": "bye"}));
    assert_eq!(d.eng.channel_count(), 0);
    d.run_for(500, 100);
    assert_eq!(d.eng.next_deadline(), None);
    assert_eq!(d.eng.connection_count(), 0);
    assert_eq!(d.eng.users_present(), 0);
}

#[test]
fn seq_increments_by_one_per_event_frame() {
    let mut d = Driver::new(cfg());
    let o = d.hello("obs");
    let o2 = d.hello("obs2");
    d.ok(o, subscribe(1, "room:1"));
    d.ok(o2, subscribe(1, "room:1"));
    let mut views = [Views::default(), Views::default()];
    let a = d.hello("a");
    let b = d.hello("b");
    let steps: Vec<(u64, Value)> = vec![
        (a, enter(1, "room:1")),
        (b, enter_with(1, "room:1", json!({"x": 1}))),
        (a, update(1, "room:1", json!({"y": 1}))),
        (b, leave(1, "room:1")),
        (b, enter(1, "room:1")),
        (a, json!({"t": "unsubscribe", "channel": "room:1"})),
    ];
    for (i, (c, f)) in steps.into_iter().enumerate() {
        d.ok(c, f);
        if i % 2 == 0 {
            d.tick(10);
        } else {
            d.tick(100);
        }
    }
    d.run_for(500, 50);
    let mut seqs = Vec::new();
    for (v, c) in views.iter_mut().zip([o, o2]) {
        let f = d.take(c);
        v.apply_all(&f).unwrap();
        seqs.push(
            event_frames(&f)
                .iter()
                .map(|f| f["seq"].as_u64().unwrap())
                .collect::<Vec<_>>(),
        );
        assert_eq!(v.channels["room:1"].ids(), d.eng.member_ids("room:1"));
    }
    assert_eq!(seqs[0], seqs[1]);
    assert_eq!(seqs[0], (1..=seqs[0].len() as u64).collect::<Vec<_>>());
    assert!(seqs[0].len() >= 3);
}

#[test]
fn a_burst_of_1000_enters_is_one_join_then_one_diff() {
    let mut d = Driver::new(cfg());
    let o = d.hello("obs");
    d.ok(o, subscribe(1, "big"));
    let mut view = Views::default();
    view.apply_all(&d.take(o)).unwrap();
    let conns: Vec<_> = (0..1_000)
        .map(|i| d.hello(&format!("user{i:04}")))
        .collect();
    for (i, &c) in conns.iter().enumerate() {
        d.ok(c, enter_with(1, "big", json!({"i": i})));
        if i % 100 == 99 {
            d.tick(4); // 40 ms in all: still inside the window
        }
    }
    let f = d.take(o);
    assert_eq!(f.len(), 1, "only the first change goes out at once");
    assert_eq!(f[0]["t"], "join");
    assert_eq!(f[0]["seq"], 1);
    view.apply_all(&f).unwrap();
    d.tick(9);
    assert!(d.take(o).is_empty());
    d.tick(1);
    let f = d.take(o);
    assert_eq!(f.len(), 1, "one diff at the window end");
    assert_eq!(f[0]["t"], "diff");
    assert_eq!(f[0]["seq"], 2);
    assert_eq!(f[0]["joins"].as_array().unwrap().len(), 999);
    view.apply_all(&f).unwrap();
    d.run_for(500, 50);
    assert!(d.take(o).is_empty());
    assert_eq!(view.channels["big"].ids(), d.eng.member_ids("big"));
    assert_eq!(d.eng.member_ids("big").len(), 1_000);
    assert_eq!(d.eng.occupancy("big"), Some((1_000, 1_000)));
    assert_eq!(
        view.channels["big"].members["user0500"]["data"],
        json!({"i": 500})
    );
}

#[test]
fn a_quiet_channel_sends_every_change_at_once() {
    let mut d = Driver::new(EngineConfig {
        immediate_burst: 3,
        immediate_per_sec: 10,
        ..cfg()
    });
    let o = observer(&mut d, "obs", "room:1");
    // Changes spread out (one every 200 ms earns the token back): each one
    // goes out in the same call, never waiting for a window.
    for i in 0..20 {
        let c = d.hello(&format!("u{i}"));
        d.ok(c, enter(1, "room:1"));
        assert_eq!(d.take_t(o, "join").len(), 1, "change {i} was held back");
        d.tick(200);
    }
    // A burst: the bucket's three tokens go out at once, the rest waits for
    // the window and arrives as one diff.
    let burst: Vec<_> = (0..10).map(|i| d.hello(&format!("b{i}"))).collect();
    for &c in &burst {
        d.ok(c, enter(1, "room:1"));
    }
    assert_eq!(d.take_t(o, "join").len(), 3);
    d.tick(50);
    let diffs = d.take_t(o, "diff");
    assert_eq!(diffs.len(), 1);
    assert_eq!(diffs[0]["joins"].as_array().unwrap().len(), 7);
}

#[test]
fn join_then_leave_inside_a_window_sends_nothing() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let x = d.hello("x");
    let y = d.hello("y");
    d.ok(x, enter(1, "room:1"));
    assert_eq!(d.take_t(o, "join").len(), 1);
    d.tick(10);
    d.ok(y, enter(1, "room:1"));
    d.tick(10);
    d.ok(y, leave(2, "room:1"));
    d.run_for(500, 10);
    assert!(d.take(o).is_empty());
    assert_eq!(d.eng.member_ids("room:1"), vec!["x"]);
    // Events are not netted: webhooks see both.
    let ev = d.take_events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, PresenceEvent::MemberJoined { user, .. } if &**user == "y"))
    );
    assert_eq!(
        ev_member_left(&ev),
        vec![("y".into(), "room:1".into(), Reason::Left)]
    );
    // Leave then rejoin inside a window is one update for the observer.
    d.ok(y, enter_with(1, "room:1", json!({"a": 1})));
    assert_eq!(d.take_t(o, "join").len(), 1);
    d.tick(10);
    d.ok(y, leave(2, "room:1"));
    d.ok(y, enter_with(1, "room:1", json!({"a": 2})));
    d.tick(40);
    let f = d.take(o);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["t"], "update");
    assert_eq!(f[0]["member"]["data"], json!({"a": 2}));
}

#[test]
fn a_snapshot_inside_a_window_excludes_pending_changes() {
    let mut d = Driver::new(cfg());
    let o1 = d.hello("obs1");
    d.ok(o1, subscribe(1, "room:1"));
    let mut v1 = Views::default();
    let x = d.hello("x");
    let y = d.hello("y");
    let z = d.hello("z");
    d.ok(z, enter_with(1, "room:1", json!({"z": 0})));
    d.tick(100);
    d.ok(x, enter_with(1, "room:1", json!({"x": 0}))); // join, window opens
    d.tick(10);
    d.ok(y, enter(1, "room:1")); // pending join
    d.ok(x, update(2, "room:1", json!({"x": 1}))); // pending update
    d.ok(z, leave(2, "room:1")); // pending leave
    d.tick(10);
    let o2 = d.hello("obs2");
    d.ok(o2, subscribe(1, "room:1"));
    let f2 = d.take(o2);
    let sync = f2.iter().find(|f| f["t"] == "sync").unwrap().clone();
    assert_eq!(sync["seq"], 2);
    let members: Vec<(Value, Value)> = sync["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user"].clone(), m["data"].clone()))
        .collect();
    assert_eq!(
        members,
        vec![(json!("x"), json!({"x": 0})), (json!("z"), json!({"z": 0}))],
        "snapshot must be the state as of the last flush"
    );
    let mut v2 = Views::default();
    v2.apply_all(&f2).unwrap();
    d.tick(30);
    let f = d.take(o2);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["t"], "diff");
    assert_eq!(f[0]["seq"], 3);
    v2.apply_all(&f).unwrap();
    v1.apply_all(&d.take(o1)).unwrap();
    for v in [&v1, &v2] {
        assert_eq!(v.channels["room:1"].ids(), d.eng.member_ids("room:1"));
        assert_eq!(v.channels["room:1"].members["x"]["data"], json!({"x": 1}));
    }
    assert_eq!(d.eng.member_ids("room:1"), vec!["x", "y"]);
}

#[test]

fn a_snapshot_inside_a_window_shows_leavers_as_they_were() {
    let mut d = Driver::new(cfg());
    let x = d.hello("x");
    let z = d.hello("z");
    d.ok(z, enter(1, "room:1"));
    d.tick(100);
    d.ok(x, enter(1, "room:1")); // window opens
    d.ok(z, leave(2, "room:1")); // pending leave
    let o = d.hello("obs");
    d.ok(o, subscribe(1, "room:1"));
    let sync = d.take_t(o, "sync").remove(0);
    let zm = sync["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"] == "z")
        .unwrap()
        .clone();
    assert_eq!(
        zm["conns"], 1,
        "as of the last flush z had one connection: {zm}"
    );
}

#[test]
fn snapshots_are_chunked_by_1000() {
    let mut d = Driver::new(cfg());
    let o = d.hello("obs");
    d.ok(o, subscribe(1, "big"));
    let s = d.take_t(o, "sync");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["members"], json!([]));
    assert_eq!(s[0]["more"], false);
    for i in 0..1_000 {
        let c = d.hello(&format!("u{i:04}"));
        d.ok(c, enter(1, "big"));
    }
    d.tick(100);
    d.ok(o, subscribe(2, "big"));
    let s = d.take_t(o, "sync");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["more"], false);
    assert_eq!(s[0]["members"].as_array().unwrap().len(), 1_000);
    for i in 1_000..2_500 {
        let c = d.hello(&format!("u{i:04}"));
        d.ok(c, enter(1, "big"));
    }
    d.tick(100);
    d.take(o);
    d.ok(o, subscribe_occ(3, "big"));
    let f = d.take(o);
    let kinds: Vec<&str> = f.iter().map(|f| f["t"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["sync", "sync", "sync", "occupancy", "ok"]);
    let lens: Vec<usize> = f[..3]
        .iter()
        .map(|f| f["members"].as_array().unwrap().len())
        .collect();
    assert_eq!(lens, [1_000, 1_000, 500]);
    let more: Vec<bool> = f[..3]
        .iter()
        .map(|f| f["more"].as_bool().unwrap())
        .collect();
    assert_eq!(more, [true, true, false]);
    assert!(f[..3].iter().all(|x| x["seq"] == f[0]["seq"]));
    let mut v = Views::default();
    v.apply_all(&f).unwrap();
    assert_eq!(v.channels["big"].ids(), d.eng.member_ids("big"));
    assert_eq!(v.channels["big"].occupancy, Some((2_500, 2_500)));
}

// ----- guests and projection -------------------------------------------------

fn guest_cfg() -> EngineConfig {
    let mut c = cfg();
    let mut r = rule("pub:*");
    r.guests = true;
    r.public_fields = vec!["name".into(), "info.avatar".into()];
    c.rules = rules(vec![r]);
    c
}

fn with_info(id: &str, info: Value) -> Identity {
    Identity {
        user: Some(id.into()),
        info: Some(obj(info)),
        channels: None,
    }
}

#[test]
fn guests_see_only_the_public_projection() {
    let mut d = Driver::new(guest_cfg());
    let g = d.guest();
    d.ok(g, subscribe(1, "pub:1"));
    let o = d.hello("obs");
    d.ok(o, subscribe(1, "pub:1"));
    let mut gv = Views::default();
    gv.apply_all(&d.take(g)).unwrap();
    d.clear();
    let u1 = d.hello_as(with_info("u1", json!({"avatar": "a.png", "email": "e@x"})));
    let u2 = d.hello_as(with_info("u2", json!({"avatar": "b.png"})));
    d.ok(
        u1,
        enter_with(1, "pub:1", json!({"name": "Al", "secret": 1})),
    );
    let f = d.take(g);
    assert_eq!(
        f,
        vec![json!({"t": "join", "channel": "pub:1", "seq": 1,
            "member": {"user": "u1", "data": {"name": "Al", "info": {"avatar": "a.png"}}}})]
    );
    gv.apply_all(&f).unwrap();
    let full = d.take_t(o, "join");
    assert_eq!(
        full[0]["member"]["data"],
        json!({"name": "Al", "secret": 1, "info": {"avatar": "a.png", "email": "e@x"}})
    );
    assert_eq!(full[0]["member"]["conns"], 1);
    assert!(full[0]["member"]["since"].is_string());
    d.tick(100);
    d.ok(u1, update(2, "pub:1", json!({"name": "Bo", "secret": 2})));
    let f = d.take(g);
    assert_eq!(
        f,
        vec![json!({"t": "update", "channel": "pub:1", "seq": 2,
            "member": {"user": "u1", "data": {"name": "Bo", "info": {"avatar": "a.png"}}}})]
    );
    gv.apply_all(&f).unwrap();
    d.tick(100);
    // Two changes in one window: a projected diff.
    d.ok(u1, update(3, "pub:1", json!({"name": "Cy"})));
    let f = d.take(g);
    assert_eq!(f[0]["t"], "update"); // the first change goes out at once
    gv.apply_all(&f).unwrap();
    d.ok(u2, enter_with(1, "pub:1", json!({"secret": true})));
    d.ok(u1, update(3, "pub:1", json!({"name": "Di"})));
    d.tick(50);
    let f = d.take(g);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0],
        json!({"t": "diff", "channel": "pub:1", "seq": 4,
            "joins": [{"user": "u2", "data": {"info": {"avatar": "b.png"}}}],
            "updates": [{"user": "u1", "data": {"name": "Di", "info": {"avatar": "a.png"}}}],
            "leaves": []})
    );
    gv.apply_all(&f).unwrap();
    // A fresh guest snapshot is projected too.
    let g2 = d.guest();
    d.ok(g2, subscribe(1, "pub:1"));
    let s = d.take_t(g2, "sync");
    assert_eq!(
        s[0]["members"],
        json!([
            {"user": "u1", "data": {"name": "Di", "info": {"avatar": "a.png"}}},
            {"user": "u2", "data": {"info": {"avatar": "b.png"}}}
        ])
    );
    assert_eq!(gv.channels["pub:1"].members, {
        let mut v = Views::default();
        v.apply_all(&s).unwrap();
        v.channels["pub:1"].members.clone()
    });
    // Guests count neither as members nor connections.
    assert_eq!(d.eng.occupancy("pub:1"), Some((2, 2)));
    assert_eq!(d.eng.users_present(), 3);
    // Messages reach guests, but not the sender.
    d.clear();
    d.ok(
        u1,
        json!({"t": "publish", "id": 5, "channel": "pub:1", "data": {"hi": 1}}),
    );
    let m = json!({"t": "message", "channel": "pub:1", "from": "u1", "data": {"hi": 1}});
    assert_eq!(d.take_t(g, "message"), vec![m.clone()]);
    assert_eq!(d.take_t(o, "message"), vec![m]);
    assert!(d.take_t(u1, "message").is_empty());
}

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
fn refused(d: &mut Driver, conn: u64, frame: Value, code: ErrorCode) {
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

fn error_cfg() -> EngineConfig {
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

// ----- member data -------------------------------------------------------------

#[test]
fn member_updates_carry_their_own_time() {
    let mut d = Driver::new(cfg());
    let a = d.hello("u1");
    d.ok(a, enter_with(1, "room:1", json!({"x": 1})));
    d.tick(250);
    d.take_events();
    d.ok(a, update(2, "room:1", json!({"x": 2})));
    // Re-entering with new data is an update too.
    d.tick(10);
    d.ok(a, enter_with(3, "room:1", json!({"x": 3})));
    let at: Vec<(u64, Value)> = d
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            PresenceEvent::MemberUpdated { at, data, .. } => Some((at, data["x"].clone())),
            _ => None,
        })
        .collect();
    assert_eq!(at, [(d.now - 10, json!(2)), (d.now, json!(3))]);
}

#[test]
fn the_info_claim_overrides_client_info() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a = d.hello_as(with_info("u1", json!({"name": "Alice"})));
    d.ok(
        a,
        enter_with(1, "room:1", json!({"info": {"name": "Mallory"}, "x": 1})),
    );
    let j = d.take_t(o, "join");
    assert_eq!(
        j[0]["member"]["data"],
        json!({"x": 1, "info": {"name": "Alice"}})
    );
    d.tick(100);
    d.ok(a, update(2, "room:1", json!({"info": "forged", "x": 2})));
    let u = d.take_t(o, "update");
    assert_eq!(
        u[0]["member"]["data"],
        json!({"x": 2, "info": {"name": "Alice"}})
    );
    // No data on a first enter: just the info claim.
    let b = d.hello_as(with_info("u2", json!({"name": "Bob"})));
    d.ok(b, enter(1, "room:2"));
    d.ok(o, subscribe(3, "room:2"));
    let s = d.take_t(o, "sync");
    assert_eq!(s[0]["members"][0]["data"], json!({"info": {"name": "Bob"}}));
    // A token without info: a client `info` key is removed.
    let c = d.hello("u3");
    d.tick(100);
    d.ok(
        c,
        enter_with(1, "room:1", json!({"info": {"admin": true}, "y": 1})),
    );
    let j = d.take_t(o, "join");
    assert_eq!(j[0]["member"]["data"], json!({"y": 1}));
    // refresh: new info applies to later updates, same user only.
    let mut fx = presenced_engine::Effects::new();
    assert!(
        d.eng
            .refresh(c, Some(4), with_info("u3", json!({"n": 1})), &mut fx)
            .is_ok()
    );
    let mut fx2 = presenced_engine::Effects::new();
    let e = d.eng.refresh(c, Some(5), user("u9"), &mut fx2).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    d.absorb(fx);
    d.tick(100);
    d.ok(c, update(6, "room:1", json!({"y": 1})));
    let u = d.take_t(o, "update");
    assert_eq!(u[0]["member"]["data"], json!({"y": 1, "info": {"n": 1}}));
}

#[test]
fn enter_again_and_update_semantics() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a = d.hello("u1");
    let b = d.hello("u1");
    d.ok(a, enter_with(1, "room:1", json!({"v": 1})));
    // sync before the ok, the join in between.
    let f = d.last_frames(a);
    let kinds: Vec<&str> = f.iter().map(|f| f["t"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["sync", "join", "ok"]);
    assert_eq!(f[0]["members"], json!([]));
    d.tick(100);
    d.take(o);
    // Entering again with the same data or none: nothing, but a fresh sync.
    d.ok(a, enter_with(2, "room:1", json!({"v": 1})));
    d.ok(a, enter(3, "room:1"));
    assert!(d.take(o).is_empty());
    assert_eq!(d.last_frames(a)[0]["t"], "sync");
    // Another tab entering without data keeps the data.
    d.ok(b, enter(4, "room:1"));
    d.ok(o, subscribe(5, "room:1"));
    assert_eq!(
        d.take_t(o, "sync")[0]["members"][0]["data"],
        json!({"v": 1})
    );
    // Equal update: nothing; different data from either tab: update.
    d.ok(b, update(6, "room:1", json!({"v": 1})));
    assert!(d.take(o).is_empty());
    d.ok(b, enter_with(7, "room:1", json!({"v": 2})));
    assert_eq!(d.take_t(o, "update")[0]["member"]["data"], json!({"v": 2}));
    // leave keeps the subscription; the user stays while another tab is in.
    d.tick(100);
    d.ok(a, leave(8, "room:1"));
    assert!(d.take(o).is_empty());
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 1)));
    d.ok(b, json!({"t": "unsubscribe", "id": 9, "channel": "room:1"}));
    assert_eq!(d.take_t(o, "leave")[0]["reason"], "left");
    d.tick(100);
    // `a` still gets events as a subscriber.
    d.take(a);
    d.take(b);
    let c = d.hello("u2");
    d.ok(c, enter(1, "room:1"));
    assert_eq!(d.take_t(a, "join").len(), 1);
    assert!(d.take_t(b, "join").is_empty());
}

#[test]
fn ping_and_deadlines() {
    let mut d = Driver::new(cfg());
    let a = d.hello("u1");
    let welcome = d.take(a);
    assert_eq!(welcome[0]["t"], "welcome");
    assert_eq!(welcome[0]["id"], 0);
    assert_eq!(welcome[0]["user"], "u1");
    assert_eq!(welcome[0]["grace_ms"], 1_000);
    assert_eq!(welcome[0]["heartbeat_ms"], 20_000);
    d.ok(a, json!({"t": "ping", "id": 1}));
    assert_eq!(
        d.take(a),
        vec![json!({"t": "pong"}), json!({"t": "ok", "id": 1})]
    );
    d.ok(a, json!({"t": "ping"}));
    assert_eq!(d.take(a), vec![json!({"t": "pong"})]);
    assert_eq!(d.eng.next_deadline(), None);
    d.ok(a, enter(2, "room:1"));
    assert!(d.deadline_moved);
    assert_eq!(d.eng.next_deadline(), Some(d.now + 50));
    d.tick(50);
    d.tick(50);
    assert_eq!(d.eng.next_deadline(), None);
}

#[test]

fn a_request_from_a_removed_connection_does_not_panic() {
    let mut d = Driver::new(cfg());
    let a = d.hello("u1");
    d.kick("u1");
    // The transport may still hand over a frame it read before the kick.
    for f in [
        subscribe(1, "room:1"),
        json!({"t": "unsubscribe", "id": 2, "channel": "room:1"}),
        json!({"t": "watch", "id": 3, "users": ["u2"]}),
    ] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.req(a, f.clone())));
        assert!(r.is_ok(), "{f} from a removed connection panicked");
    }
    assert_eq!(d.eng.channel_count(), 0);
}

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

// ----- member data on the wire ---------------------------------------------------

/// Raw text of the frames `conn` received since the last take.
fn take_raw(d: &mut Driver, conn: u64) -> Vec<String> {
    d.frames
        .remove(&conn)
        .unwrap_or_default()
        .iter()
        .map(|f| f.as_str().to_owned())
        .collect()
}

/// Sends a client frame as exactly this text (key order and all).
fn req_text(d: &mut Driver, conn: u64, text: &str) {
    let r = parse_client_frame(text).unwrap();
    let mut fx = Effects::new();
    d.eng.request(d.now, conn, r.id, r.frame, &mut fx).unwrap();
    d.absorb(fx);
}

#[test]
fn member_data_goes_out_as_the_map_writes_it_and_survives_a_restart() {
    let mut d = Driver::new(guest_cfg());
    let o = d.hello("obs");
    d.ok(o, subscribe(1, "pub:1"));
    let g = d.guest();
    d.ok(g, subscribe(1, "pub:1"));
    d.clear();
    let info = json!({"phone": "1", "avatar": "a.png"});
    let a = d.hello_as(with_info("u1", info.clone()));
    // Keys out of order, escapes, non-ASCII, floats: what the engine stores
    // and sends must be what serializing the parsed map gives.
    let client = r#"{"z":[1,2.5,null,-3e-7],"name":"Ann \u00e9 \"q\"","n":1e300,"info":"forged"}"#;
    req_text(
        &mut d,
        a,
        &format!(r#"{{"t":"enter","id":1,"channel":"pub:1","data":{client}}}"#),
    );
    let mut map: serde_json::Map<String, Value> = serde_json::from_str(client).unwrap();
    map.insert("info".into(), info);
    let full = serde_json::to_string(&map).unwrap();
    let rule = guest_cfg().rules.rule_for("pub:1").clone();
    let public = serde_json::to_string(&rule.project(&map)).unwrap();
    assert_eq!(
        public,
        r#"{"info":{"avatar":"a.png"},"name":"Ann é \"q\""}"#
    );

    let joined = take_raw(&mut d, o);
    assert_eq!(joined.len(), 1);
    assert!(
        joined[0].contains(&format!(
            r#""member":{{"user":"u1","data":{full},"conns":1,"#
        )),
        "{joined:?}"
    );
    let seen_by_guest = take_raw(&mut d, g);
    assert_eq!(
        seen_by_guest,
        [format!(
            r#"{{"t":"join","channel":"pub:1","seq":1,"member":{{"user":"u1","data":{public}}}}}"#
        )]
    );
    let events = d.take_events();
    let joined_data = events.iter().find_map(|e| match e {
        PresenceEvent::MemberJoined { data, .. } => Some(data.clone()),
        _ => None,
    });
    assert_eq!(joined_data, Some(map.clone()));

    // The same data in another key order is no change: nothing is sent.
    d.tick(1_000);
    req_text(
        &mut d,
        a,
        r#"{"t":"update","id":2,"channel":"pub:1","data":{"n":1e300,"name":"Ann \u00e9 \"q\"","z":[1,2.5,null,-3e-7]}}"#,
    );
    d.run_for(200, 50);
    assert!(take_raw(&mut d, o).is_empty());
    assert!(take_raw(&mut d, g).is_empty());
    assert!(d.take_events().is_empty());
    // A snapshot writes the same bytes as the join did.
    let o2 = d.hello("obs2");
    d.ok(o2, subscribe(1, "pub:1"));
    let sync = take_raw(&mut d, o2);
    assert!(sync[1].contains(&format!(r#""data":{full},"#)), "{sync:?}");

    // Through the journal (the event's map, as store.rs keeps it) into a
    // restarted engine: the same bytes again, for users and for guests.
    let mut d2 = Driver::new(guest_cfg());
    let journal = vec![RestoredUser {
        user: "u1".into(),
        status: UserStatus::Online,
        since: T0,
        last_seen: d.now,
        channels: vec![("pub:1".into(), joined_data.unwrap(), T0)],
    }];
    let mut fx = Effects::new();
    d2.eng.restore(d2.now, journal, Vec::new(), || 100, &mut fx);
    d2.absorb(fx);
    let o = d2.hello("obs");
    d2.ok(o, subscribe(1, "pub:1"));
    let sync = take_raw(&mut d2, o);
    assert!(sync[1].contains(&format!(r#""data":{full},"#)), "{sync:?}");
    let g = d2.guest();
    d2.ok(g, subscribe(1, "pub:1"));
    let sync = take_raw(&mut d2, g);
    assert!(
        sync[1].contains(&format!(r#""members":[{{"user":"u1","data":{public}}}]"#)),
        "{sync:?}"
    );
}
