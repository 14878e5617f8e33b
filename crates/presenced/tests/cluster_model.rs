//! The cluster's Redis scripts against a model: random sequences of
//! session add/drop/back/status/end and channel enter/update/leave, from
//! two nodes, applied both to a plain model of the engine's shared
//! presence rules (`SharedPresence`, counted by session) and to a real
//! `redis-server`. Every reply must equal the model's, retries included;
//! at the end the state, every partition's event stream and every shard
//! channel's messages must too, with each channel's `seq` gap-free. Runs
//! on a plain Redis and on a one-node Redis Cluster.

#[path = "common/presence_model.rs"]
mod presence_model;
#[path = "common/redis.rs"]
#[macro_use]
#[allow(dead_code)]
mod redis_server;

use std::collections::BTreeMap;

use presence_model::{Model, Op, run};
use presenced::cluster::{Options, RedisPresence};
use presenced_engine::Reason;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis_server::{Listener, RedisServer, stream};
use serde_json::Value;

const USERS: [&str; 4] = ["alice", "bob", "c:a}{rol", "dave"];
const CHANNELS: [&str; 3] = ["room:1", "room:2", "doc:x"];
const REASONS: [Reason; 4] = [
    Reason::Left,
    Reason::Timeout,
    Reason::Logout,
    Reason::Kicked,
];

fn random_op(rng: &mut StdRng) -> Op {
    let user = USERS[rng.random_range(0..USERS.len())];
    let sid = format!("{user}#{}", rng.random_range(0..2));
    let ch = CHANNELS[rng.random_range(0..CHANNELS.len())];
    let data = format!(r#"{{"n":{}}}"#, rng.random_range(0..3));
    let why = REASONS[rng.random_range(0..REASONS.len())];
    match rng.random_range(0..100) {
        0..15 => Op::Added(user, sid),
        15..25 => Op::Dropped(user, sid),
        25..35 => Op::Back(user, sid),
        35..50 => Op::Status(user, sid, rng.random_bool(0.5)),
        50..65 => Op::Gone(user, sid, why, rng.random_bool(0.8)),
        65..82 => {
            let data = rng.random_bool(0.7).then_some(data);
            let max = rng.random_bool(0.3).then_some(2);
            Op::Enter(ch, user, sid, data, max)
        }
        82..91 => Op::Update(ch, sid, data),
        _ => Op::Leave(ch, sid, why),
    }
}

async fn node(redis: &RedisServer, id: &str) -> RedisPresence {
    let mut o = Options::new(&redis.url(), id);
    o.prefix = "m".into();
    // Few partitions: users and channels share them.
    o.partitions = 2;
    let p = RedisPresence::connect(&o).await.unwrap();
    p.register().await.unwrap();
    p
}

on_both!(random_sequences_match_the_model);
async fn random_sequences_match_the_model(redis: RedisServer) {
    for seed in 1..=3 {
        // A fresh Redis state per seed, the same server.
        let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
        one_run(&redis, seed, 500).await;
    }
}

async fn one_run(redis: &RedisServer, seed: u64, steps: usize) {
    let nodes = [node(redis, "a").await, node(redis, "b").await];
    let keys = nodes[0].keys().clone();
    let mut label = BTreeMap::new();
    for u in USERS {
        label.insert(keys.user(u).publish, format!("u:{u}"));
    }
    for ch in CHANNELS {
        label.insert(keys.channel(ch).publish, format!("c:{ch}"));
    }
    let shard: Vec<String> = label.keys().cloned().collect();
    let listener = Listener::start(redis, &shard);
    let mut model = Model::default();
    let mut rng = StdRng::seed_from_u64(seed);
    for step in 0..steps {
        let what = random_op(&mut rng);
        // Mostly from the node the session belongs to; else either.
        let owner = match &what {
            Op::Dropped(u, s) | Op::Status(u, s, _) | Op::Gone(u, s, ..) => {
                model.sessions.get(&(*u, s.clone())).map(|s| s.owner)
            }
            _ => None,
        };
        let n = match owner {
            Some(o) if rng.random_bool(0.85) => o,
            _ => rng.random_range(0..2),
        };
        let op = nodes[n].op();
        let got = run(&nodes[n], op, &what).await;
        let mut expected = model.apply(n, got.at().unwrap_or(0), &what);
        model.learn_seq(&mut expected, &got);
        assert_eq!(
            got, expected,
            "seed {seed}, step {step}: {what:?} from node {n}"
        );
        if rng.random_bool(0.15) {
            let again = run(&nodes[n], op, &what).await;
            assert_eq!(
                again, got,
                "seed {seed}, step {step}: the retry of {what:?}"
            );
        }
    }

    // The state.
    let a = &nodes[0];
    let token = |n: usize| nodes[n].lease().unwrap().token;
    for user in USERS {
        let got = a
            .user(user)
            .await
            .unwrap()
            .map(|r| (r.conns, r.live, r.away, r.status, r.since, r.last_live_at));
        let want = model
            .users
            .get(user)
            .map(|m| (m.conns, m.live, m.away, m.status, m.since, m.last_live));
        assert_eq!(got, want, "seed {seed}: {user}");
        let sessions: Vec<_> = a
            .sessions(user)
            .await
            .unwrap()
            .into_iter()
            .map(|(sid, s)| (sid, s.owner, s.live, s.away, s.dropped_at))
            .collect();
        let want: Vec<_> = model
            .sessions
            .iter()
            .filter(|((u, _), _)| u == &user)
            .map(|((_, sid), s)| (sid.clone(), token(s.owner), s.live, s.away, s.dropped_at))
            .collect();
        assert_eq!(sessions, want, "seed {seed}: {user}'s sessions");
    }
    for ch in CHANNELS {
        let members = a.members(ch).await.unwrap();
        assert_eq!(
            members,
            model.members.get(ch).cloned().unwrap_or_default(),
            "{ch}"
        );
        let entered = a.channel_sessions(ch).await.unwrap();
        assert_eq!(
            entered,
            model.entered.get(ch).cloned().unwrap_or_default(),
            "{ch}"
        );
        assert_eq!(a.seq(ch).await.unwrap(), model.seq.get(ch).copied(), "{ch}");
    }

    // The streams: exactly the model's events, in order; ids unique.
    let mut c = redis.conn();
    let mut ids = Vec::new();
    let mut total = 0;
    for stream_key in keys.event_streams() {
        let entries = stream(&mut c, &stream_key);
        total += entries.len();
        ids.extend(entries.iter().map(|e| e["id"].clone()));
    }
    let field = |e: &BTreeMap<String, String>, f: &str| e.get(f).cloned().unwrap_or_default();
    for (label, want) in &model.events {
        let (kind, name) = label.split_once(':').unwrap();
        let stream_key = if kind == "u" {
            keys.user(name).events
        } else {
            keys.channel(name).events
        };
        let got: Vec<_> = stream(&mut c, &stream_key)
            .iter()
            .filter(|e| {
                if kind == "u" {
                    e["user"] == name && !e.contains_key("channel")
                } else {
                    field(e, "channel") == name
                }
            })
            .map(|e| {
                (
                    field(e, "type"),
                    field(e, "user"),
                    field(e, "channel"),
                    field(e, "reason"),
                )
            })
            .collect();
        assert_eq!(&got, want, "seed {seed}: events of {label}");
    }
    assert_eq!(
        total,
        model.events.values().map(Vec::len).sum::<usize>(),
        "seed {seed}: no other events"
    );
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "seed {seed}: event ids are unique");

    // The shard channels: every change once, in order, seq gap-free.
    let mut published: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (ch, msg) in listener.drain() {
        let v: Value = serde_json::from_str(&msg).unwrap();
        published.entry(label[&ch].clone()).or_default().push(v);
    }
    for (label, mut got) in published.clone() {
        if let Some(ch) = label.strip_prefix("c:") {
            let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "seed {seed}: {label}: {seqs:?}"
            );
            assert_eq!(
                seqs.last().copied(),
                model.seq.get(ch).copied(),
                "seed {seed}: {label}"
            );
        }
        for m in &mut got {
            let m = m.as_object_mut().unwrap();
            m.remove("seq");
            m.remove("id");
        }
        assert_eq!(
            Some(&got),
            model.published.get(&label),
            "seed {seed}: published on {label}"
        );
    }
    assert_eq!(
        published.len(),
        model.published.len(),
        "seed {seed}: nothing else published"
    );
}
