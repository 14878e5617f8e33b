//! The bounded cache of offline users' last presence
//! (`EngineConfig::offline_cache`): eviction, what the engine reports as
//! unknown, and watchers of users outside the cache once they are fed in.

mod support;

use presenced_engine::{
    Effects, EngineConfig, RestoredUser, SessionRecord, UserId, UserPresence, UserStatus, rfc3339,
};
use serde_json::json;
use support::*;

fn cache(n: usize) -> EngineConfig {
    EngineConfig {
        offline_cache: n,
        ..cfg()
    }
}

fn ids(list: &[&str]) -> Vec<UserId> {
    list.iter().map(|u| UserId::from(*u)).collect()
}

/// `user` connects at `now`, leaves 10 ms later: offline since then.
fn come_and_go(d: &mut Driver, user: &str) {
    let c = d.hello(user);
    d.tick(10);
    d.ok(c, json!({"t": "bye"}));
}

#[test]
fn the_oldest_offline_record_is_evicted_and_reported_unknown() {
    let mut d = Driver::new(cache(2));
    for u in ["a", "b", "c"] {
        come_and_go(&mut d, u);
    }
    d.hello("on");
    assert_eq!(
        d.eng.presence_unknown(["a", "b", "c", "on", "never", "a"]),
        ids(&["a", "never"])
    );
    assert_eq!(
        d.eng.presence(d.now, "a"),
        UserPresence {
            status: UserStatus::Offline,
            since: None,
            last_seen: None
        }
    );
    assert_eq!(d.eng.user_detail(d.now, "a"), None);
    assert_eq!(d.eng.presence(d.now, "b").since, Some(T0 + 20));

    // Fed back in from the store, `a` is the newest record: `b` goes.
    d.eng.restore_offline("a", T0 + 10, Some(T0 + 9));
    assert_eq!(d.eng.presence_unknown(["a", "b", "c"]), ids(&["b"]));
    assert_eq!(
        d.eng.presence(d.now, "a"),
        UserPresence {
            status: UserStatus::Offline,
            since: Some(T0 + 10),
            last_seen: Some(T0 + 9)
        }
    );
    // A user who is online is known, and not overwritten by a stale row.
    d.eng.restore_offline("on", T0, None);
    assert_eq!(d.eng.presence(d.now, "on").status, UserStatus::Online);
}

#[test]
fn a_zero_cache_keeps_only_watched_users() {
    let mut d = Driver::new(cache(0));
    come_and_go(&mut d, "a");
    assert_eq!(d.eng.presence_unknown(["a"]), ids(&["a"]));
    d.eng.restore_offline("a", T0, None);
    assert_eq!(d.eng.presence_unknown(["a"]), ids(&["a"]));
}

#[test]
fn a_watcher_gets_the_fed_presence_of_a_user_not_cached() {
    let mut d = Driver::new(cache(1));
    come_and_go(&mut d, "x");
    let x_since = d.now;
    come_and_go(&mut d, "y");
    let w = d.hello("w");
    d.skip(w);

    // `x` was evicted: the caller looks it up before the watch.
    assert_eq!(d.eng.presence_unknown(["x", "y"]), ids(&["x"]));
    d.eng.restore_offline("x", x_since, Some(x_since));
    d.ok(w, json!({"t": "watch", "users": ["x", "y"]}));
    let p = d.take_t(w, "presence");
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0]["users"]["x"],
        json!({"status": "offline", "since": rfc3339(x_since), "last_seen": rfc3339(x_since)})
    );
    assert_eq!(p[0]["users"]["y"]["status"], "offline");

    // Watched, `x` stays known however many others go offline after it.
    for u in ["p", "q", "r"] {
        come_and_go(&mut d, u);
    }
    assert_eq!(d.eng.presence_unknown(["x", "p", "q"]), ids(&["p", "q"]));
    let mut fx = Effects::new();
    d.eng.resync(d.now, w, &mut fx);
    d.absorb(fx);
    let p = d.take_t(w, "presence");
    assert_eq!(p[0]["users"]["x"]["since"], rfc3339(x_since));

    // Its changes reach the watcher, the offline one with its own record.
    come_and_go(&mut d, "x");
    let p = d.take_t(w, "presence");
    let statuses: Vec<_> = p
        .iter()
        .map(|f| f["users"]["x"]["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("online"), json!("offline")]);
    assert_eq!(p[1]["users"]["x"]["since"], rfc3339(d.now));
    assert_eq!(p[1]["users"]["x"]["last_seen"], rfc3339(d.now));

    // Unwatched, it is one record among others again, and the oldest goes.
    d.ok(w, json!({"t": "unwatch", "users": ["x"]}));
    come_and_go(&mut d, "z");
    assert_eq!(d.eng.presence_unknown(["x", "z"]), ids(&["x"]));
}

#[test]
fn a_fed_record_never_replaces_a_newer_one() {
    let mut d = Driver::new(cache(10));
    come_and_go(&mut d, "a");
    let since = d.now;
    d.eng.restore_offline("a", T0 - 1_000, Some(T0 - 2_000));
    assert_eq!(d.eng.presence(d.now, "a").since, Some(since));
}

#[test]
fn restored_sessions_name_the_watched_users_to_feed() {
    let mut d = Driver::new(cache(0));
    let journal = vec![RestoredUser {
        user: "w".into(),
        status: UserStatus::Online,
        since: T0,
        last_seen: T0,
        channels: Vec::new(),
    }];
    let sessions = vec![SessionRecord {
        session: "s1".into(),
        user: Some("w".into()),
        away: false,
        entered: Vec::new(),
        subs: Vec::new(),
        watching: vec!["x".into(), "w".into()],
        info: None,
        channels: None,
    }];
    let mut fx = Effects::new();
    d.eng.restore(d.now, journal, sessions, || 100, &mut fx);
    d.absorb(fx);
    assert_eq!(d.eng.watched_unknown(), ids(&["x"]));
    d.eng.restore_offline("x", T0 - 50, Some(T0 - 60));
    assert_eq!(d.eng.watched_unknown(), ids(&[]));

    // Kept though the cache holds nothing: the resumed watcher sees it.
    let att = d.connect(user("w"), Some("s1"));
    assert!(att.resumed);
    let p = d.take_t(att.conn, "presence");
    assert_eq!(
        p[0]["users"]["x"],
        json!({"status": "offline", "since": rfc3339(T0 - 50), "last_seen": rfc3339(T0 - 60)})
    );
}
