//! Users and their connections: grace, resume, sessions, kicks.

use super::*;

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
    // A connection count change is sent as an update (and is no event).
    let f = event_frames(&d.take(o));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["t"], "update");
    assert_eq!(f[0]["member"]["conns"], 2);
    assert_eq!(f[0]["member"]["data"], json!({"x": 1}));
    assert!(
        !d.take_events()
            .iter()
            .any(|e| matches!(e, presenced_engine::PresenceEvent::MemberUpdated { .. })),
        "a count is not a member.updated"
    );
    d.tick(100);
    assert_eq!(d.eng.member_ids("room:1"), vec!["u1"]);
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 2)));
    // A fresh snapshot shows one member with two connections, data kept.
    d.ok(o, subscribe(3, "room:1"));
    let sync = d.take_t(o, "sync");
    assert_eq!(sync[0]["members"].as_array().unwrap().len(), 1);
    assert_eq!(sync[0]["members"][0]["conns"], 2);
    assert_eq!(sync[0]["members"][0]["data"], json!({"x": 1}));

    // One goes away and its grace expires: still a member, and only its
    // count changes.
    d.disconnect(a1);
    d.run_for(1_500, 100);
    assert!(!d.eng.has_conn(a1));
    let f = event_frames(&d.take(o));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (&f[0]["t"], &f[0]["member"]["conns"]),
        (&json!("update"), &json!(1))
    );
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
fn connection_counts_are_coalesced_and_netted_like_any_change() {
    let mut d = Driver::new(cfg());
    let o = observer(&mut d, "obs", "room:1");
    let a1 = d.hello("u1");
    let a2 = d.hello("u1");
    let a3 = d.hello("u1");
    // The join goes at once and opens a window (a burst of one).
    d.ok(a1, enter(1, "room:1"));
    assert_eq!(event_frames(&d.take(o)).len(), 1);
    d.ok(a2, enter(1, "room:1"));
    assert!(event_frames(&d.take(o)).is_empty(), "held in the window");
    // A subscriber who comes now is shown the count as of the last frame,
    // and brought up to date by the window's update.
    let late = observer_keep(&mut d, "late", "room:1");
    assert_eq!(late["members"][0]["conns"], 1, "{late}");
    d.tick(50);
    let f = event_frames(&d.take(o));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (&f[0]["t"], &f[0]["member"]["conns"]),
        (&json!("update"), &json!(2))
    );
    // Inside the next window a count that goes up and back down is no change.
    d.ok(a3, enter(1, "room:1"));
    d.ok(a3, leave(2, "room:1"));
    d.tick(50);
    d.tick(50);
    assert!(event_frames(&d.take(o)).is_empty());
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 2)));
    // A kick of every connection is one leave, not counts dropping first.
    d.kick("u1");
    let f = event_frames(&d.take(o));
    d.tick(50);
    let f: Vec<Value> = f.into_iter().chain(event_frames(&d.take(o))).collect();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["t"], "leave");
}

/// An observer connection subscribed to `ch`; returns its `sync`.
fn observer_keep(d: &mut Driver, name: &str, ch: &str) -> Value {
    let o = d.hello(name);
    d.ok(o, subscribe(1, ch));
    d.take_t(o, "sync").remove(0)
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
