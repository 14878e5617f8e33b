//! A model of the engine's shared presence rules (`SharedPresence`),
//! counted by session as the cluster's Redis scripts count: the ops the
//! model test (`cluster_model.rs`) sends to both, how it runs one against
//! Redis, and what the model expects it to reply, record in the streams
//! and publish.

use std::collections::BTreeMap;

use presenced::cluster::{
    ClusterError, Entered, Member, MemberChange, MemberOutcome, OpId, RedisPresence, Resumed,
    SessionResult, UserChange, UserOutcome,
};
use presenced_engine::{Reason, UserStatus};
use serde_json::{Map, Value, json};

/// One op: user ops name the user and the session, member ops the
/// channel first; then the data (JSON text), `max_members`, the reason,
/// away or recompute, as the `RedisPresence` method takes them.
#[derive(Debug, Clone)]
pub enum Op {
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
pub enum Out {
    User(UserOutcome),
    Resumed(Resumed),
    Entered(Entered),
    Member(Option<MemberOutcome>),
    NotOwner,
}

impl Out {
    /// Redis's clock in the reply, which the model takes as its own.
    pub fn at(&self) -> Option<u64> {
        match self {
            Out::User(u) => Some(u.at),
            Out::Resumed(r) => Some(r.outcome.at),
            Out::Entered(Entered::Done(m)) | Out::Member(Some(m)) => Some(m.at),
            _ => None,
        }
    }
}

pub fn data_map(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap()
}

pub async fn run(node: &RedisPresence, op: OpId, what: &Op) -> Out {
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
pub struct MUser {
    pub conns: u32,
    pub live: u32,
    pub away: u32,
    pub status: UserStatus,
    pub since: u64,
    pub last_live: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MSession {
    pub owner: usize,
    pub live: bool,
    pub away: bool,
    pub dropped_at: u64,
}

/// The engine's shared presence rules, counted by session.
#[derive(Debug, Default)]
pub struct Model {
    pub users: BTreeMap<&'static str, MUser>,
    pub sessions: BTreeMap<(&'static str, String), MSession>,
    pub members: BTreeMap<&'static str, BTreeMap<String, Member>>,
    pub entered: BTreeMap<&'static str, BTreeMap<String, String>>,
    pub seq: BTreeMap<&'static str, u64>,
    /// Per user or channel: the events (type, user, channel, reason) and
    /// the messages published (as JSON, without event ids).
    pub events: BTreeMap<String, Vec<(String, String, String, String)>>,
    pub published: BTreeMap<String, Vec<Value>>,
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

    pub fn apply(&mut self, node: usize, now: u64, what: &Op) -> Out {
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
    pub fn learn_seq(&mut self, expected: &mut Out, got: &Out) {
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
            let ch = self.seq.iter().find(|(_, q)| **q == 0).map(|(ch, _)| *ch);
            self.seq
                .insert(ch.expect("a channel waits for its first seq"), q);
        }
    }
}

pub fn reason_str(r: Reason) -> &'static str {
    match r {
        Reason::Left => "left",
        Reason::Timeout => "timeout",
        Reason::Logout => "logout",
        Reason::Kicked => "kicked",
    }
}
