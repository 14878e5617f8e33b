//! Status, watching, `last_seen` and `since`.

use super::*;

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
