//! The cluster's Redis scripts, one transition at a time, against a real
//! `redis-server`: what each changes and replies, the events it records in
//! its partition's stream and the changes it publishes. Each test runs on a
//! plain Redis (`::single`) and on a one-node Redis Cluster (`::cluster`),
//! where Redis refuses a script that strays out of its slot.

#[path = "common/redis.rs"]
#[macro_use]
#[allow(dead_code)]
mod redis_server;

use presenced::cluster::{
    Entered, Member, MemberChange, Options, RedisPresence, SessionResult, UserChange,
};
use presenced_engine::{Reason, UserStatus};
use redis_server::{Listener, RedisServer, snapshot, stream};
use serde_json::{Map, Value, json};

/// A registered node. Two partitions: users (and channels) share them, so
/// a script that mixed up two users' keys would show.
async fn node(redis: &RedisServer, id: &str) -> RedisPresence {
    let mut o = Options::new(&redis.url(), id);
    o.prefix = "t".into();
    o.partitions = 2;
    let p = RedisPresence::connect(&o).await.unwrap();
    p.register().await.unwrap();
    p
}

fn map(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

on_both!(user_transitions_mirror_the_engine);
async fn user_transitions_mirror_the_engine(redis: RedisServer) {
    let a = node(&redis, "a").await;
    let k = a.keys().user("alice");
    let listener = Listener::start(&redis, std::slice::from_ref(&k.publish));

    let first = a.session_added(a.op(), "alice", "s1").await.unwrap();
    assert_eq!(first.result, SessionResult::Applied);
    assert_eq!(first.change, Some(UserChange::Online));
    assert_eq!((first.status, first.conns), (UserStatus::Online, 1));
    assert_eq!((first.since, first.last_seen), (first.at, first.at));

    let second = a.session_added(a.op(), "alice", "s2").await.unwrap();
    assert_eq!(
        (second.change, second.conns, second.since),
        (None, 2, first.at)
    );
    let again = a.session_added(a.op(), "alice", "s1").await.unwrap();
    assert_eq!(
        (again.result, again.change, again.conns),
        (SessionResult::Exists, None, 2)
    );

    // Away only when every session is.
    let s1_away = a.session_status(a.op(), "alice", "s1", true).await.unwrap();
    assert_eq!((s1_away.change, s1_away.status), (None, UserStatus::Online));
    let all_away = a.session_status(a.op(), "alice", "s2", true).await.unwrap();
    assert_eq!(all_away.change, Some(UserChange::Away));
    assert_eq!(all_away.since, all_away.at);
    let back_online = a
        .session_status(a.op(), "alice", "s1", false)
        .await
        .unwrap();
    assert_eq!(back_online.change, Some(UserChange::Online));

    // Drops keep the user online; the last one sets the last live time.
    let d1 = a.session_dropped(a.op(), "alice", "s1").await.unwrap();
    assert_eq!(
        (d1.change, d1.status, d1.last_seen),
        (None, UserStatus::Online, d1.at)
    );
    let d2 = a.session_dropped(a.op(), "alice", "s2").await.unwrap();
    assert_eq!((d2.change, d2.last_seen), (None, d2.at));
    let rec = a.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (rec.conns, rec.live, rec.away, rec.last_live_at),
        (2, 0, 1, d2.at)
    );
    let sessions = a.sessions("alice").await.unwrap();
    assert!(
        sessions.values().all(|s| !s.live && s.dropped_at > 0),
        "{sessions:?}"
    );

    let r = a.session_back(a.op(), "alice", "s1").await.unwrap();
    assert_eq!((r.was_live, r.moved, r.away), (false, false, false));
    let r = a.session_back(a.op(), "alice", "s1").await.unwrap();
    assert!(r.was_live, "a second resume replaces a live socket");
    assert_eq!(a.user("alice").await.unwrap().unwrap().live, 1);

    // s2 (away, dropped) ends: the one left is online, so nothing changes.
    let g2 = a
        .session_gone(a.op(), "alice", "s2", Reason::Timeout, true)
        .await
        .unwrap();
    assert_eq!(
        (g2.change, g2.conns, g2.status),
        (None, 1, UserStatus::Online)
    );
    // The last one: offline, last seen now (it was live).
    let g1 = a
        .session_gone(a.op(), "alice", "s1", Reason::Logout, true)
        .await
        .unwrap();
    assert_eq!(g1.change, Some(UserChange::Offline { last_seen: g1.at }));
    assert_eq!(
        (g1.status, g1.since, g1.conns),
        (UserStatus::Offline, g1.at, 0)
    );
    let rec = a.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.conns, rec.since),
        (UserStatus::Offline, 0, g1.at)
    );
    assert!(a.sessions("alice").await.unwrap().is_empty());
    let none = a
        .session_gone(a.op(), "alice", "s1", Reason::Logout, true)
        .await
        .unwrap();
    assert_eq!((none.result, none.change), (SessionResult::NoSession, None));

    // Online again: a new epoch.
    let epoch = rec.epoch;
    let again = a.session_added(a.op(), "alice", "s3").await.unwrap();
    assert_eq!(again.change, Some(UserChange::Online));
    assert!(a.user("alice").await.unwrap().unwrap().epoch > epoch);

    // The stream holds one event per change of status, ids all different.
    let events = stream(&mut redis.conn(), &k.events);
    let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "user.online",
            "user.away",
            "user.online",
            "user.offline",
            "user.online"
        ]
    );
    assert_eq!(events[3]["reason"], "logout");
    assert_eq!(events[3]["last_seen"], g1.at.to_string());
    assert!(events.iter().all(|e| e["user"] == "alice"));
    let mut ids: Vec<_> = events.iter().map(|e| e["id"].clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);

    // And the same changes were published, in order.
    let published: Vec<Value> = listener
        .drain()
        .iter()
        .map(|(_, m)| serde_json::from_str(m).unwrap())
        .collect();
    let statuses: Vec<_> = published.iter().map(|m| m["status"].clone()).collect();
    assert_eq!(statuses, ["online", "away", "online", "offline", "online"]);
    assert_eq!(published[3]["last_seen"], g1.at);
}

on_both!(a_kick_goes_straight_to_offline);
async fn a_kick_goes_straight_to_offline(redis: RedisServer) {
    let a = node(&redis, "a").await;
    a.session_added(a.op(), "bob", "s1").await.unwrap();
    a.session_added(a.op(), "bob", "s2").await.unwrap();
    a.session_status(a.op(), "bob", "s2", true).await.unwrap();
    // Without the recompute, bob does not pass through away.
    let g = a
        .session_gone(a.op(), "bob", "s1", Reason::Kicked, false)
        .await
        .unwrap();
    assert_eq!((g.change, g.status), (None, UserStatus::Online));
    let g = a
        .session_gone(a.op(), "bob", "s2", Reason::Kicked, false)
        .await
        .unwrap();
    assert!(matches!(g.change, Some(UserChange::Offline { .. })));
    let events = stream(&mut redis.conn(), &a.keys().user("bob").events);
    let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["user.online", "user.offline"]);
    assert_eq!(events[1]["reason"], "kicked");
}

on_both!(a_resume_moves_the_session_and_the_old_node_cannot_act_for_it);
async fn a_resume_moves_the_session_and_the_old_node_cannot_act_for_it(redis: RedisServer) {
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    a.session_added(a.op(), "bob", "s1").await.unwrap();
    a.session_status(a.op(), "bob", "s1", true).await.unwrap();
    a.session_dropped(a.op(), "bob", "s1").await.unwrap();

    let r = b.session_back(b.op(), "bob", "s1").await.unwrap();
    assert_eq!((r.was_live, r.moved, r.away), (false, true, true));
    assert_eq!(r.outcome.change, None);
    let owner = b.sessions("bob").await.unwrap()["s1"].owner;
    assert_eq!(owner, b.lease().unwrap().token);

    let before = snapshot(&mut redis.conn());
    let refused = [
        a.session_dropped(a.op(), "bob", "s1").await,
        a.session_status(a.op(), "bob", "s1", false).await,
        a.session_gone(a.op(), "bob", "s1", Reason::Timeout, true)
            .await,
    ];
    for r in refused {
        assert!(
            matches!(r, Err(presenced::cluster::ClusterError::NotOwner)),
            "{r:?}"
        );
    }
    assert_eq!(snapshot(&mut redis.conn()), before);

    // A resume while the old socket is still there takes it over too.
    a.session_added(a.op(), "bob", "s2").await.unwrap();
    let r = b.session_back(b.op(), "bob", "s2").await.unwrap();
    assert_eq!((r.was_live, r.moved), (true, true));
    assert_eq!(b.user("bob").await.unwrap().unwrap().live, 2);

    let missing = b.session_back(b.op(), "bob", "nope").await.unwrap();
    assert_eq!(missing.outcome.result, SessionResult::NoSession);
    let g = b
        .session_gone(b.op(), "bob", "s1", Reason::Timeout, true)
        .await
        .unwrap();
    assert_eq!(g.conns, 1);
}

on_both!(member_transitions_mirror_the_engine);
async fn member_transitions_mirror_the_engine(redis: RedisServer) {
    let a = node(&redis, "a").await;
    let ch = "room:1";
    let k = a.keys().channel(ch);
    let listener = Listener::start(&redis, std::slice::from_ref(&k.publish));
    let none = Map::new();
    let default = map(json!({"d": true}));
    let n = |i: i64| map(json!({ "n": i }));
    let enter = |user: &'static str, sid: &'static str, data: Option<Map<String, Value>>| {
        let (a, default, ch) = (&a, &default, ch);
        async move {
            match a
                .member_enter(a.op(), ch, user, sid, data.as_ref(), default, Some(2))
                .await
                .unwrap()
            {
                Entered::Done(o) => Some(o),
                Entered::Full => None,
            }
        }
    };

    let j = enter("alice", "s1", Some(n(1))).await.unwrap();
    let q = j.seq.unwrap();
    assert_eq!(
        j.change,
        Some(MemberChange::Joined {
            data: r#"{"n":1}"#.into()
        })
    );
    assert!(j.conns_changed);
    assert_eq!((j.members, j.connections), (1, 1));
    let since = j.at;
    assert_eq!(
        j.member.as_ref().map(|m| (m.conns, m.since)),
        Some((1, since))
    );

    // The same session again: no new connection; the same data: nothing.
    for data in [None, Some(n(1))] {
        let o = enter("alice", "s1", data).await.unwrap();
        assert_eq!((o.change, o.conns_changed, o.seq), (None, false, None));
    }
    // Another session of alice with new data: one more connection, and an
    // update whose old member already counts it.
    let u = enter("alice", "s2", Some(n(2))).await.unwrap();
    let old = Member {
        data: r#"{"n":1}"#.into(),
        conns: 2,
        since,
    };
    let data = r#"{"n":2}"#.to_owned();
    assert_eq!(u.change, Some(MemberChange::Updated { old, data }));
    assert_eq!(
        (u.conns_changed, u.seq, u.connections),
        (true, Some(q + 1), 2)
    );

    let b = enter("bob", "s3", None).await.unwrap();
    assert_eq!(
        b.change,
        Some(MemberChange::Joined {
            data: r#"{"d":true}"#.into()
        })
    );
    assert_eq!((b.seq, b.members), (Some(q + 2), 2));
    // Full for a third user; alice's third session still gets in.
    let before = snapshot(&mut redis.conn());
    assert_eq!(enter("carol", "s4", None).await, None);
    assert_eq!(snapshot(&mut redis.conn()), before);
    let c = enter("alice", "s5", None).await.unwrap();
    assert_eq!(
        (c.change, c.conns_changed, c.seq),
        (None, true, Some(q + 3))
    );
    assert_eq!(c.member.unwrap().conns, 3);

    let same = a
        .member_update(a.op(), ch, "s1", &n(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((same.change, same.seq), (None, None));
    let upd = a
        .member_update(a.op(), ch, "s1", &n(3))
        .await
        .unwrap()
        .unwrap();
    let old = Member {
        data: r#"{"n":2}"#.into(),
        conns: 3,
        since,
    };
    let data = r#"{"n":3}"#.to_owned();
    assert_eq!(upd.change, Some(MemberChange::Updated { old, data }));
    assert_eq!(upd.seq, Some(q + 4));
    assert_eq!(
        a.member_update(a.op(), ch, "s9", &none).await.unwrap(),
        None
    );

    // Leaves: connection counts first, the member with its last session.
    let leave = |sid: &'static str, why| {
        let a = &a;
        async move { a.member_leave(a.op(), ch, sid, why).await.unwrap() }
    };
    let l = leave("s1", Reason::Left).await.unwrap();
    assert_eq!(
        (l.change, l.conns_changed, l.seq),
        (None, true, Some(q + 5))
    );
    leave("s5", Reason::Left).await.unwrap();
    let l = leave("s2", Reason::Timeout).await.unwrap();
    let old = Member {
        data: r#"{"n":3}"#.into(),
        conns: 1,
        since,
    };
    assert_eq!(l.change, Some(MemberChange::Left { old }));
    assert_eq!(
        (l.seq, l.members, l.connections, l.member),
        (Some(q + 7), 1, 1, None)
    );
    assert_eq!(leave("s2", Reason::Left).await, None);
    let l = leave("s3", Reason::Kicked).await.unwrap();
    assert_eq!((l.members, l.connections), (0, 0));
    assert!(a.members(ch).await.unwrap().is_empty());
    let ttl: i64 = redis::cmd("TTL")
        .arg(&k.seq)
        .query(&mut redis.conn())
        .unwrap();
    assert!(ttl > 0, "an empty channel's seq expires: {ttl}");

    // The channel fills again: its sequence goes on.
    let j = enter("alice", "s1", None).await.unwrap();
    assert_eq!(j.seq, Some(q + 9));
    let ttl: i64 = redis::cmd("TTL")
        .arg(&k.seq)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(ttl, -1);
    let members = a.members(ch).await.unwrap();
    assert_eq!(members["alice"].data, r#"{"d":true}"#);
    assert_eq!(a.channel_sessions(ch).await.unwrap()["s1"], "alice");
    assert_eq!(a.seq(ch).await.unwrap(), Some(q + 9));

    // Events: joins and leaves only.
    let events = stream(&mut redis.conn(), &k.events);
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            let reason = e.get("reason").map(String::as_str).unwrap_or("");
            (e["type"].as_str(), e["user"].as_str(), reason)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("member.joined", "alice", ""),
            ("member.joined", "bob", ""),
            ("member.left", "alice", "timeout"),
            ("member.left", "bob", "kicked"),
            ("member.joined", "alice", ""),
        ]
    );
    assert!(events.iter().all(|e| e["channel"] == ch));

    // Every change published once with its seq, gap-free.
    let published: Vec<Value> = listener
        .drain()
        .iter()
        .map(|(_, m)| serde_json::from_str(m).unwrap())
        .collect();
    let seqs: Vec<u64> = published
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (q..=q + 9).collect::<Vec<_>>());
    let kinds: Vec<_> = published
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "join", "update", "join", "update", "update", "update", "update", "leave", "leave",
            "join"
        ]
    );
    assert_eq!(published[1]["data"], json!({"n": 2}));
    assert_eq!(
        (
            published[3]["conns"].clone(),
            published[3]["connections"].clone()
        ),
        (json!(3), json!(4))
    );
    assert_eq!(published[8]["reason"], "kicked");
    assert_eq!(published[8]["members"], 0);
}

/// How many times Redis has run a command (`INFO commandstats`).
fn calls(c: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

on_both!(every_transition_is_one_round_trip);
async fn every_transition_is_one_round_trip(redis: RedisServer) {
    let a = node(&redis, "a").await;
    let mut c = redis.conn();
    let counts =
        |c: &mut redis::Connection| ["evalsha", "eval", "script|load"].map(|cmd| calls(c, cmd));
    let before = counts(&mut c);
    let (user, ch, none) = ("alice", "room:1", Map::new());
    a.session_added(a.op(), user, "s1").await.unwrap();
    a.session_status(a.op(), user, "s1", true).await.unwrap();
    a.session_dropped(a.op(), user, "s1").await.unwrap();
    a.session_back(a.op(), user, "s1").await.unwrap();
    a.member_enter(a.op(), ch, user, "s1", None, &none, None)
        .await
        .unwrap();
    a.member_update(a.op(), ch, "s1", &map(json!({"n": 1})))
        .await
        .unwrap();
    a.member_leave(a.op(), ch, "s1", Reason::Left)
        .await
        .unwrap();
    a.session_gone(a.op(), user, "s1", Reason::Logout, true)
        .await
        .unwrap();
    a.renew().await.unwrap();
    let after = counts(&mut c);
    assert_eq!(
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ],
        [9, 0, 0],
        "one EVALSHA per transition and renewal, nothing else"
    );

    // A Redis that lost the scripts gets them again.
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    let again = a.session_added(a.op(), user, "s2").await.unwrap();
    assert_eq!(again.change, Some(UserChange::Online));
    assert_eq!(calls(&mut c, "script|load"), after[2] + 1);
}
