//! The cluster's Redis scripts against a model: random sequences of
//! session add/drop/back/status/end and channel enter/update/leave, from
//! two nodes, applied both to a plain model of the engine's shared
//! presence rules (`SharedPresence`, counted by session) and to a real
//! `redis-server`. Every reply must equal the model's, retries included;
//! at the end the state, every partition's event stream and every shard
//! channel's messages must too, with each channel's `seq` gap-free. Runs
//! on a plain Redis and on a one-node Redis Cluster.

#[path = "common/redis.rs"]
#[allow(dead_code)]
mod redis_server;

use std::collections::BTreeMap;

use presenced::cluster::{
    ClusterError, Entered, Member, MemberChange, MemberOutcome, OpId, Options, RedisPresence,
    Resumed, SessionResult, UserChange, UserOutcome,
};
use presenced_engine::{Reason, UserStatus};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis_server::{Listener, RedisServer, stream};
use serde_json::{Map, Value, json};

const USERS: [&str; 4] = ["alice", "bob", "c:a}{rol", "dave"];
const CHANNELS: [&str; 3] = ["room:1", "room:2", "doc:x"];
const REASONS: [Reason; 4] = [
    Reason::Left,
    Reason::Timeout,
    Reason::Logout,
    Reason::Kicked,
];

#[derive(Debug, Clone)]
enum Op {
    Added(&'static str, String),
    Dropped(&'static str, String),
    Back(&'static str, String),
    Status(&'static str, String, bool),
    Gone(&'static str, String, Reason, bool),
    Enter(
        &'static str,
        &'static str,
        String,
        Option<String>,
        Option<usize>,
    ),
    Update(&'static str, String, String),
    Leave(&'static str, String, Reason),
}

#[derive(Debug, Clone, PartialEq)]
enum Out {
    User(UserOutcome),
    Resumed(Resumed),
    Entered(Entered),
    Member(Option<MemberOutcome>),
    NotOwner,
}

impl Out {
    /// Redis's clock in the reply, which the model takes as its own.
    fn at(&self) -> Option<u64> {
        match self {
            Out::User(u) => Some(u.at),
            Out::Resumed(r) => Some(r.outcome.at),
            Out::Entered(Entered::Done(m)) | Out::Member(Some(m)) => Some(m.at),
            _ => None,
        }
    }
}

fn data_map(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap()
}

async fn run(node: &RedisPresence, op: OpId, what: &Op) -> Out {
    let default = data_map(r#"{"d":1}"#);
    let r = match what {
        Op::Added(u, s) => node.session_added(op, u, s).await.map(Out::User),
        Op::Dropped(u, s) => node.session_dropped(op, u, s).await.map(Out::User),
        Op::Back(u, s) => node.session_back(op, u, s).await.map(Out::Resumed),
        Op::Status(u, s, away) => node.session_status(op, u, s, *away).await.map(Out::User),
        Op::Gone(u, s, why, re) => node.session_gone(op, u, s, *why, *re).await.map(Out::User),
        Op::Enter(ch, u, s, data, max) => {
            let data = data.as_deref().map(data_map);
            node.member_enter(op, ch, u, s, data.as_ref(), &default, *max)
                .await
                .map(Out::Entered)
        }
        Op::Update(ch, s, data) => node
            .member_update(op, ch, s, &data_map(data))
            .await
            .map(Out::Member),
        Op::Leave(ch, s, why) => node.member_leave(op, ch, s, *why).await.map(Out::Member),
    };
    match r {
        Ok(out) => out,
        Err(ClusterError::NotOwner) => Out::NotOwner,
        Err(e) => panic!("{what:?}: {e}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
struct MUser {
    conns: u32,
    live: u32,
    away: u32,
    status: UserStatus,
    since: u64,
    last_live: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct MSession {
    owner: usize,
    live: bool,
    away: bool,
    dropped_at: u64,
}

/// The engine's shared presence rules, counted by session.
#[derive(Debug, Default)]
struct Model {
    users: BTreeMap<&'static str, MUser>,
    sessions: BTreeMap<(&'static str, String), MSession>,
    members: BTreeMap<&'static str, BTreeMap<String, Member>>,
    entered: BTreeMap<&'static str, BTreeMap<String, String>>,
    seq: BTreeMap<&'static str, u64>,
    /// Per user or channel: the events (type, user, channel, reason) and
    /// the messages published (as JSON, without event ids).
    events: BTreeMap<String, Vec<(String, String, String, String)>>,
    published: BTreeMap<String, Vec<Value>>,
}

impl Model {
    fn user_out(
        &self,
        result: SessionResult,
        change: Option<UserChange>,
        now: u64,
        user: &str,
    ) -> UserOutcome {
        let u = self.users.get(user);
        UserOutcome {
            result,
            change,
            at: now,
            status: u.map_or(UserStatus::Offline, |u| u.status),
            since: u.map_or(0, |u| u.since),
            last_seen: u.map_or(0, |u| if u.live > 0 { now } else { u.last_live }),
            conns: u.map_or(0, |u| u.conns),
        }
    }

    fn announce_user(
        &mut self,
        now: u64,
        user: &'static str,
        change: Option<UserChange>,
        why: Reason,
    ) {
        let Some(change) = change else { return };
        let out = self.user_out(SessionResult::Applied, None, now, user);
        let (kind, reason, last_seen) = match change {
            UserChange::Online => ("online", "", out.last_seen),
            UserChange::Away => ("away", "", out.last_seen),
            UserChange::Offline { last_seen } => ("offline", reason_str(why), last_seen),
        };
        let event = (
            format!("user.{kind}"),
            user.to_owned(),
            String::new(),
            reason.to_owned(),
        );
        self.events
            .entry(format!("u:{user}"))
            .or_default()
            .push(event);
        let msg = json!({"user": user, "status": kind, "since": out.since, "last_seen": last_seen});
        self.published
            .entry(format!("u:{user}"))
            .or_default()
            .push(msg);
    }

    fn recompute(u: &mut MUser, now: u64) -> Option<UserChange> {
        let status = if u.away == u.conns {
            UserStatus::Away
        } else {
            UserStatus::Online
        };
        if status == u.status {
            return None;
        }
        u.status = status;
        u.since = now;
        Some(if status == UserStatus::Away {
            UserChange::Away
        } else {
            UserChange::Online
        })
    }

    fn apply(&mut self, node: usize, now: u64, what: &Op) -> Out {
        match what {
            Op::Added(user, sid) => {
                let key = (*user, sid.clone());
                if self.sessions.contains_key(&key) {
                    return Out::User(self.user_out(SessionResult::Exists, None, now, user));
                }
                self.sessions.insert(
                    key,
                    MSession {
                        owner: node,
                        live: true,
                        away: false,
                        dropped_at: 0,
                    },
                );
                let change = match self.users.get_mut(user) {
                    Some(u) if u.conns > 0 => {
                        u.conns += 1;
                        u.live += 1;
                        Self::recompute(u, now)
                    }
                    _ => {
                        let fresh = MUser {
                            conns: 1,
                            live: 1,
                            away: 0,
                            status: UserStatus::Online,
                            since: now,
                            last_live: now,
                        };
                        self.users.insert(user, fresh);
                        Some(UserChange::Online)
                    }
                };
                self.announce_user(now, user, change, Reason::Left);
                Out::User(self.user_out(SessionResult::Applied, change, now, user))
            }
            Op::Back(user, sid) => {
                let Some(s) = self.sessions.get_mut(&(*user, sid.clone())) else {
                    let outcome = self.user_out(SessionResult::NoSession, None, now, user);
                    return Out::Resumed(Resumed {
                        outcome,
                        was_live: false,
                        moved: false,
                        away: false,
                    });
                };
                let (was_live, moved, away) = (s.live, s.owner != node, s.away);
                if !s.live {
                    self.users.get_mut(user).unwrap().live += 1;
                }
                *s = MSession {
                    owner: node,
                    live: true,
                    away,
                    dropped_at: 0,
                };
                let outcome = self.user_out(SessionResult::Applied, None, now, user);
                Out::Resumed(Resumed {
                    outcome,
                    was_live,
                    moved,
                    away,
                })
            }
            Op::Dropped(user, sid) | Op::Status(user, sid, _) | Op::Gone(user, sid, _, _) => {
                let key = (*user, sid.clone());
                let Some(s) = self.sessions.get(&key).cloned() else {
                    return Out::User(self.user_out(SessionResult::NoSession, None, now, user));
                };
                if s.owner != node {
                    return Out::NotOwner;
                }
                let u = self.users.get_mut(user).unwrap();
                let mut change = None;
                match what {
                    Op::Dropped(..) => {
                        if s.live {
                            self.sessions.insert(
                                key,
                                MSession {
                                    live: false,
                                    dropped_at: now,
                                    ..s
                                },
                            );
                            u.live -= 1;
                            if u.live == 0 {
                                u.last_live = now;
                            }
                        }
                    }
                    Op::Status(_, _, away) => {
                        u.away = u.away - u32::from(s.away) + u32::from(*away);
                        self.sessions.insert(key, MSession { away: *away, ..s });
                        change = Self::recompute(u, now);
                    }
                    Op::Gone(_, _, why, recompute) => {
                        self.sessions.remove(&key);
                        u.conns -= 1;
                        u.away -= u32::from(s.away);
                        if s.live {
                            u.live -= 1;
                            if u.live == 0 {
                                u.last_live = now;
                            }
                        }
                        if u.conns == 0 {
                            change = Some(UserChange::Offline {
                                last_seen: u.last_live,
                            });
                            *u = MUser {
                                status: UserStatus::Offline,
                                since: now,
                                live: 0,
                                away: 0,
                                ..*u
                            };
                        } else if *recompute {
                            change = Self::recompute(u, now);
                        }
                        self.announce_user(now, user, change, *why);
                        return Out::User(self.user_out(SessionResult::Applied, change, now, user));
                    }
                    _ => unreachable!(),
                }
                self.announce_user(now, user, change, Reason::Left);
                Out::User(self.user_out(SessionResult::Applied, change, now, user))
            }
            Op::Enter(ch, user, sid, data, max) => {
                let members = self.members.entry(ch).or_default();
                let entered = self.entered.entry(ch).or_default();
                let Some(m) = members.get_mut(*user) else {
                    if max.is_some_and(|max| members.len() >= max) {
                        return Out::Entered(Entered::Full);
                    }
                    let data = data.clone().unwrap_or_else(|| r#"{"d":1}"#.to_owned());
                    members.insert(
                        user.to_string(),
                        Member {
                            data: data.clone(),
                            conns: 1,
                            since: now,
                        },
                    );
                    entered.insert(sid.clone(), user.to_string());
                    let change = MemberChange::Joined { data };
                    return Out::Entered(Entered::Done(self.member_out(
                        now,
                        ch,
                        user,
                        Some(change),
                        true,
                        Reason::Left,
                    )));
                };
                let new_conn = !entered.contains_key(sid);
                if new_conn {
                    m.conns += 1;
                    entered.insert(sid.clone(), user.to_string());
                }
                let old = m.clone();
                let change = match data {
                    Some(d) if *d != m.data => {
                        m.data = d.clone();
                        Some(MemberChange::Updated {
                            old,
                            data: d.clone(),
                        })
                    }
                    _ => None,
                };
                Out::Entered(Entered::Done(self.member_out(
                    now,
                    ch,
                    user,
                    change,
                    new_conn,
                    Reason::Left,
                )))
            }
            Op::Update(ch, sid, data) => {
                let Some(user) = self.entered.get(ch).and_then(|e| e.get(sid)).cloned() else {
                    return Out::Member(None);
                };
                let m = self.members.get_mut(ch).unwrap().get_mut(&user).unwrap();
                let old = m.clone();
                let change = (*data != m.data).then(|| {
                    m.data = data.clone();
                    MemberChange::Updated {
                        old,
                        data: data.clone(),
                    }
                });
                Out::Member(Some(self.member_out(
                    now,
                    ch,
                    &user,
                    change,
                    false,
                    Reason::Left,
                )))
            }
            Op::Leave(ch, sid, why) => {
                let Some(user) = self.entered.get_mut(ch).and_then(|e| e.remove(sid)) else {
                    return Out::Member(None);
                };
                let members = self.members.get_mut(ch).unwrap();
                let m = members.get_mut(&user).unwrap();
                m.conns -= 1;
                let change = (m.conns == 0).then(|| {
                    let mut old = members.remove(&user).unwrap();
                    old.conns = 1;
                    MemberChange::Left { old }
                });
                Out::Member(Some(self.member_out(now, ch, &user, change, true, *why)))
            }
        }
    }

    /// The outcome of a member op, with the seq, event and message of a
    /// change.
    fn member_out(
        &mut self,
        now: u64,
        ch: &'static str,
        user: &str,
        change: Option<MemberChange>,
        conns_changed: bool,
        why: Reason,
    ) -> MemberOutcome {
        let members = &self.members[ch];
        let member = members.get(user).cloned();
        let (n, connections) = (members.len() as u64, self.entered[ch].len() as u64);
        let changed = change.is_some() || conns_changed;
        // The first seq of a channel is Redis's to choose: 0 stands for it
        // until the reply tells (see `learn_seq`).
        let seq = changed.then(|| {
            let q = self.seq.entry(ch).or_insert(0);
            if *q != 0 {
                *q += 1;
            }
            *q
        });
        if changed {
            let (kind, reason) = match &change {
                Some(MemberChange::Joined { .. }) => ("join", ""),
                Some(MemberChange::Left { .. }) => ("leave", reason_str(why)),
                _ => ("update", ""),
            };
            let mut msg =
                json!({"user": user, "kind": kind, "members": n, "connections": connections});
            match &member {
                Some(m) => {
                    msg["conns"] = json!(m.conns);
                    msg["since"] = json!(m.since);
                    msg["data"] = serde_json::from_str(&m.data).unwrap();
                }
                None => msg["reason"] = json!(reason),
            }
            self.published
                .entry(format!("c:{ch}"))
                .or_default()
                .push(msg);
            if kind != "update" {
                let event = (
                    format!("member.{}", if kind == "join" { "joined" } else { "left" }),
                    user.to_owned(),
                    ch.to_owned(),
                    reason.to_owned(),
                );
                self.events
                    .entry(format!("c:{ch}"))
                    .or_default()
                    .push(event);
            }
        }
        MemberOutcome {
            change,
            conns_changed,
            seq,
            members: n,
            connections,
            at: now,
            member,
        }
    }

    /// Takes a channel's first seq from Redis's reply.
    fn learn_seq(&mut self, expected: &mut Out, got: &Out) {
        let (Out::Entered(Entered::Done(e)) | Out::Member(Some(e))) = expected else {
            return;
        };
        let (Out::Entered(Entered::Done(g)) | Out::Member(Some(g))) = got else {
            return;
        };
        if e.seq == Some(0)
            && let Some(q) = g.seq
        {
            e.seq = Some(q);
            let ch = CHANNELS
                .iter()
                .find(|c| self.seq.get(*c) == Some(&0))
                .unwrap();
            self.seq.insert(ch, q);
        }
    }
}

fn reason_str(r: Reason) -> &'static str {
    match r {
        Reason::Left => "left",
        Reason::Timeout => "timeout",
        Reason::Logout => "logout",
        Reason::Kicked => "kicked",
    }
}

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

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn single() {
                super::$name(super::RedisServer::start()).await
            }
            #[tokio::test]
            async fn cluster() {
                super::$name(super::RedisServer::start_cluster()).await
            }
        }
    };
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
