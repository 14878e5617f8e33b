//! Occupancy, and channels: `seq`, netting and coalescing, snapshots.

use super::*;

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
