//! Member data: the info claim, limits, and its text on the wire.

use super::*;

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
    // refresh: the new info reaches the member data at once (and later
    // updates), same user only.
    d.tick(100);
    d.refresh(c, with_info("u3", json!({"n": 1}))).unwrap();
    let u = d.take_t(o, "update");
    assert_eq!(u[0]["member"]["data"], json!({"y": 1, "info": {"n": 1}}));
    let e = d.refresh(c, user("u9")).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    d.tick(100);
    d.ok(c, update(6, "room:1", json!({"y": 2})));
    let u = d.take_t(o, "update");
    assert_eq!(u[0]["member"]["data"], json!({"y": 2, "info": {"n": 1}}));
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
    // Another tab entering without data keeps the data; subscribers are
    // told the member's new connection count.
    d.ok(b, enter(4, "room:1"));
    let u = d.take_t(o, "update");
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(u[0]["member"]["conns"], 2);
    assert_eq!(u[0]["member"]["data"], json!({"v": 1}));
    d.tick(100);
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
    let u = d.take_t(o, "update");
    assert_eq!(u.len(), 1, "one connection fewer: {u:?}");
    assert_eq!(u[0]["member"]["conns"], 1);
    assert_eq!(d.eng.occupancy("room:1"), Some((1, 1)));
    d.tick(100);
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
