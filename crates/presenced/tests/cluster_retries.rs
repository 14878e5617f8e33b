//! The cluster's Redis scripts under retries and fencing, against a real
//! `redis-server`: a write retried with its op id changes and announces
//! nothing twice; a node whose lease lapsed or was replaced has its writes
//! and renewals refused, changing nothing; and every script keeps to one
//! slot, which a one-node Redis Cluster enforces. Each test runs on a plain
//! Redis (`::single`) and on a one-node Redis Cluster (`::cluster`).

#[path = "common/redis.rs"]
#[macro_use]
#[allow(dead_code)]
mod redis_server;

use std::time::Duration;

use presenced::cluster::{ClusterError, Entered, Lease, Options, RedisPresence};
use presenced_engine::Reason;
use redis_server::{Listener, RedisServer, snapshot};
use serde_json::{Map, json};

fn options(redis: &RedisServer, id: &str) -> Options {
    let mut o = Options::new(&redis.url(), id);
    o.prefix = "t".into();
    o.partitions = 2;
    o
}

async fn node(redis: &RedisServer, id: &str) -> RedisPresence {
    let p = RedisPresence::connect(&options(redis, id)).await.unwrap();
    p.register().await.unwrap();
    p
}

/// Runs a write, then the same write again with the same op id: the first
/// changes something, the second changes nothing and replies the same.
/// Then once more with a fresh op id: changes nothing either (the scripts
/// are idempotent by state as well).
macro_rules! twice {
    ($redis:expr, $node:expr, |$op:ident| $call:expr) => {{
        let before = snapshot(&mut $redis.conn());
        let $op = $node.op();
        let first = $call.await.unwrap();
        let after = snapshot(&mut $redis.conn());
        assert_ne!(after, before, "the first call changes something");
        let second = $call.await.unwrap();
        assert_eq!(second, first, "a retry gets the first reply");
        assert_eq!(
            snapshot(&mut $redis.conn()),
            after,
            "a retry changes nothing"
        );
        let $op = $node.op();
        let _ = $call.await.unwrap();
        assert_eq!(snapshot(&mut $redis.conn()), after, "nor does a repeat");
        first
    }};
}

on_both!(a_retried_write_changes_and_announces_nothing_twice);
async fn a_retried_write_changes_and_announces_nothing_twice(redis: RedisServer) {
    let a = node(&redis, "a").await;
    let (user, ch) = ("alice", "room:1");
    let listener = Listener::start(
        &redis,
        &[a.keys().user(user).publish, a.keys().channel(ch).publish],
    );
    let data = json!({"n": 1}).as_object().unwrap().clone();
    let other = json!({"n": 2}).as_object().unwrap().clone();
    let none = Map::new();

    twice!(redis, a, |op| a.session_added(op, user, "s1"));
    twice!(redis, a, |op| a.session_status(op, user, "s1", true));
    twice!(redis, a, |op| a.session_dropped(op, user, "s1"));
    twice!(redis, a, |op| a.session_back(op, user, "s1"));
    let entered = twice!(redis, a, |op| a.member_enter(
        op,
        ch,
        user,
        "s1",
        Some(&data),
        &none,
        None
    ));
    assert!(matches!(entered, Entered::Done(_)));
    twice!(redis, a, |op| a.member_update(op, ch, "s1", &other));
    twice!(redis, a, |op| a.member_leave(op, ch, "s1", Reason::Left));
    twice!(redis, a, |op| a.session_gone(
        op,
        user,
        "s1",
        Reason::Logout,
        true
    ));

    // One message per change: online, away, offline; join, update, leave.
    let published = listener.drain();
    let kinds: Vec<String> = published
        .iter()
        .map(|(_, m)| {
            let v: serde_json::Value = serde_json::from_str(m).unwrap();
            v.get("status").or(v.get("kind")).unwrap().to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            r#""online""#,
            r#""away""#,
            r#""join""#,
            r#""update""#,
            r#""leave""#,
            r#""offline""#
        ]
    );
    // And one event each in the streams.
    let mut c = redis.conn();
    let mut len = |key: &str| -> usize { redis::cmd("XLEN").arg(key).query(&mut c).unwrap() };
    assert_eq!(len(&a.keys().user(user).events), 3);
    assert_eq!(len(&a.keys().channel(ch).events), 2);
}

on_both!(a_lapsed_lease_fences_every_write);
async fn a_lapsed_lease_fences_every_write(redis: RedisServer) {
    let a = node(&redis, "a").await;
    a.session_added(a.op(), "alice", "s1").await.unwrap();
    let lease = a.lease().unwrap();
    let before = snapshot(&mut redis.conn());

    // Writes that carry a deadline Redis's clock has passed: a node that
    // was paused past its lease, its writes landing late.
    a.use_lease(Lease {
        token: lease.token,
        deadline: 1_000,
    });
    let none = Map::new();
    let results = [
        a.session_added(a.op(), "bob", "s2").await.err(),
        a.session_dropped(a.op(), "alice", "s1").await.err(),
        a.session_back(a.op(), "alice", "s1").await.err(),
        a.session_status(a.op(), "alice", "s1", true).await.err(),
        a.session_gone(a.op(), "alice", "s1", Reason::Left, true)
            .await
            .err(),
        a.member_enter(a.op(), "room:1", "alice", "s1", None, &none, None)
            .await
            .err(),
        a.member_update(a.op(), "room:1", "s1", &none).await.err(),
        a.member_leave(a.op(), "room:1", "s1", Reason::Left)
            .await
            .err(),
    ];
    for r in results {
        assert!(matches!(r, Some(ClusterError::Fenced)), "{r:?}");
    }
    assert_eq!(
        snapshot(&mut redis.conn()),
        before,
        "a fenced write changes nothing"
    );

    // A lease that really lapsed is not renewed: the node registers afresh.
    let mut o = options(&redis, "b");
    o.lease_ms = 200;
    let b = RedisPresence::connect(&o).await.unwrap();
    let reg = b.register().await.unwrap();
    let before = snapshot(&mut redis.conn());
    let mut c = redis.conn();
    loop {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut c).unwrap();
        if secs * 1000 + micros / 1000 > reg.lease.deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late = b.session_added(b.op(), "carol", "s3").await;
    assert!(matches!(late, Err(ClusterError::Fenced)), "{late:?}");
    assert!(matches!(b.renew().await, Err(ClusterError::Fenced)));
    assert_eq!(b.lease(), None);
    let unregistered = b.session_added(b.op(), "carol", "s3").await;
    assert!(
        matches!(unregistered, Err(ClusterError::NotRegistered)),
        "{unregistered:?}"
    );
    assert_eq!(snapshot(&mut redis.conn()), before);
    let again = b.register().await.unwrap();
    assert!(again.lease.token > reg.lease.token);
    assert_eq!(again.previous, Some(reg.lease));
    b.session_added(b.op(), "carol", "s3").await.unwrap();
}

on_both!(a_replaced_registration_cannot_renew);
async fn a_replaced_registration_cannot_renew(redis: RedisServer) {
    let old = node(&redis, "a").await;
    let first = old.lease().unwrap();
    assert!(old.renew().await.unwrap().deadline >= first.deadline);
    // The same node id registers again (a restart while the old process
    // was paused): a new token; the old one can no longer renew.
    let new = node(&redis, "a").await;
    let lease = new.lease().unwrap();
    assert!(lease.token > first.token);
    assert!(matches!(old.renew().await, Err(ClusterError::Fenced)));
    assert_eq!(old.lease(), None);
    new.renew().await.unwrap();
    // The replaced registration is kept for whoever reaps it.
    let lapsed: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(&new.keys().nodes().lapsed)
        .query(&mut redis.conn())
        .unwrap();
    assert!(
        lapsed[&first.token.to_string()].starts_with("a "),
        "{lapsed:?}"
    );
}

/// The shebang line of the scripts is what makes Redis Cluster check their
/// slots: a script that strays is refused there (so the `::cluster` runs
/// above prove that every script keeps to one slot), and every key of one
/// partition hashes to one slot.
#[tokio::test]
async fn a_redis_cluster_refuses_a_script_across_slots() {
    let redis = RedisServer::start_cluster();
    let mut c = redis.conn();
    let stray = "#!lua\nredis.call('SET', '{t:u:0}:x', 1)\nredis.call('SET', '{t:u:1}:x', 1)";
    let err = redis::cmd("EVAL")
        .arg(&[stray, "0"])
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("same slot"), "{err}");

    let a = node(&redis, "a").await;
    let keys = a.keys();
    let u = keys.user("alice");
    let ch = keys.channel("room:1");
    let mut slot = |key: &str| -> i64 {
        redis::cmd("CLUSTER")
            .arg(&["KEYSLOT", key])
            .query(&mut c)
            .unwrap()
    };
    let user_slot = slot(&u.user);
    for key in [&u.sessions, &u.events, &u.publish, &u.replay(1, 2)] {
        assert_eq!(slot(key), user_slot, "{key}");
    }
    let channel_slot = slot(&ch.members);
    for key in [
        &ch.sessions,
        &ch.seq,
        &ch.events,
        &ch.publish,
        &ch.replay(1, 2),
    ] {
        assert_eq!(slot(key), channel_slot, "{key}");
    }
}

on_both!(a_stalled_redis_times_out_and_the_retry_lands_once);
async fn a_stalled_redis_times_out_and_the_retry_lands_once(redis: RedisServer) {
    let mut o = options(&redis, "a");
    o.timeout = Duration::from_millis(300);
    o.lease_ms = 60_000;
    let a = RedisPresence::connect(&o).await.unwrap();
    a.register().await.unwrap();

    redis.signal("STOP");
    let op = a.op();
    let started = std::time::Instant::now();
    let stalled = a.session_added(op, "alice", "s1").await;
    let waited = started.elapsed();
    redis.signal("CONT");
    let err = stalled.unwrap_err();
    assert!(matches!(err, ClusterError::Timeout), "{err:?}");
    assert!(err.outcome_unknown());
    assert!(waited < Duration::from_secs(2), "{waited:?}");

    // The write was sent: Redis runs it once it wakes. The retry gets its
    // reply and changes nothing more.
    let retried = a.session_added(op, "alice", "s1").await.unwrap();
    assert_eq!(retried.result, presenced::cluster::SessionResult::Applied);
    assert_eq!(retried.change, Some(presenced::cluster::UserChange::Online));
    let events: usize = redis::cmd("XLEN")
        .arg(&a.keys().user("alice").events)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(events, 1);
}
