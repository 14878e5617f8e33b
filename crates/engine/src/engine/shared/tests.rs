//! Property test of the shared presence state on its own: random sequences
//! of connections added, detached, reattached, set away and removed (one at
//! a time or a whole user at once, as a kick does), and of enters, updates
//! and leaves, against a reference model that recounts everything from a
//! plain list of connections. Every outcome and, after every step, every
//! read must agree with the model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

const USERS: usize = 4;
const CHANNELS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Add(usize),
    Detach(usize),
    Reattach(usize),
    Status(usize, bool),
    Remove(usize),
    Kick(usize),
    Enter(usize, usize, Option<u8>),
    Update(usize, usize, u8),
    Leave(usize, usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..USERS).prop_map(Op::Add),
        1 => any::<usize>().prop_map(Op::Detach),
        1 => any::<usize>().prop_map(Op::Reattach),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(i, a)| Op::Status(i, a)),
        2 => any::<usize>().prop_map(Op::Remove),
        1 => (0..USERS).prop_map(Op::Kick),
        4 => (any::<usize>(), 0..CHANNELS, proptest::option::of(0..3u8))
            .prop_map(|(i, c, d)| Op::Enter(i, c, d)),
        2 => (any::<usize>(), 0..CHANNELS, 0..3u8).prop_map(|(i, c, d)| Op::Update(i, c, d)),
        2 => (any::<usize>(), 0..CHANNELS).prop_map(|(i, c)| Op::Leave(i, c)),
        2 => (0..5u64).prop_map(Op::Advance),
    ]
}

fn user(u: usize) -> UserId {
    Arc::from(format!("u{u}"))
}

fn channel(c: usize) -> ChannelName {
    Arc::from(format!("c{c}"))
}

fn data(d: u8) -> Map<String, Value> {
    let Value::Object(m) = json!({ "k": d }) else {
        unreachable!()
    };
    m
}

fn default_data() -> Map<String, Value> {
    let Value::Object(m) = json!({ "default": true }) else {
        unreachable!()
    };
    m
}

/// One connection as the caller knows it.
#[derive(Debug, Clone)]
struct Conn {
    user: usize,
    live: bool,
    away: bool,
    entered: BTreeSet<usize>,
}

#[derive(Debug, Clone, Default)]
struct RefUser {
    /// `None` while offline.
    status: Option<UserStatus>,
    since: Option<u64>,
    last_live_at: u64,
    /// Last seen as of going offline.
    last_seen: Option<u64>,
}

#[derive(Debug, Clone)]
struct RefMember {
    data: Map<String, Value>,
    since: u64,
}

/// The reference: statuses and counts recomputed from `conns` every time.
#[derive(Debug, Default)]
struct Model {
    now: u64,
    conns: Vec<Conn>,
    users: BTreeMap<usize, RefUser>,
    members: BTreeMap<(usize, usize), RefMember>,
}

impl Model {
    fn conns_of(&self, u: usize) -> impl Iterator<Item = &Conn> {
        self.conns.iter().filter(move |c| c.user == u)
    }

    fn derived(&self, u: usize) -> Option<UserStatus> {
        let mut conns = self.conns_of(u).peekable();
        conns.peek()?;
        Some(if conns.all(|c| c.away) {
            UserStatus::Away
        } else {
            UserStatus::Online
        })
    }

    /// Moves the user to its derived status; the change, if any.
    fn settle(&mut self, u: usize) -> Option<UserChange> {
        let derived = self.derived(u);
        let now = self.now;
        let live = self.conns_of(u).any(|c| c.live);
        let r = self.users.entry(u).or_default();
        if derived == r.status {
            return None;
        }
        let was_present = r.status.is_some();
        r.status = derived;
        r.since = Some(now);
        Some(match derived {
            Some(UserStatus::Away) => UserChange::Away,
            Some(_) => {
                if !was_present {
                    r.last_live_at = now;
                }
                UserChange::Online
            }
            None => {
                let last_seen = if live { now } else { r.last_live_at };
                r.last_seen = Some(last_seen);
                UserChange::Offline { last_seen }
            }
        })
    }

    fn presence(&self, u: usize) -> UserPresence {
        let Some(r) = self.users.get(&u) else {
            return UserPresence {
                status: UserStatus::Offline,
                since: None,
                last_seen: None,
            };
        };
        match r.status {
            Some(status) => UserPresence {
                status,
                since: r.since,
                last_seen: Some(if self.conns_of(u).any(|c| c.live) {
                    self.now
                } else {
                    r.last_live_at
                }),
            },
            None => UserPresence {
                status: UserStatus::Offline,
                since: r.since,
                last_seen: r.last_seen,
            },
        }
    }

    fn member_conns(&self, c: usize, u: usize) -> u32 {
        self.conns_of(u).filter(|k| k.entered.contains(&c)).count() as u32
    }

    fn member(&self, c: usize, u: usize, conns: u32) -> Member {
        let m = &self.members[&(c, u)];
        Member {
            data: MemberData::from_map(&m.data),
            conns,
            since: m.since,
        }
    }

    /// Connection `i` (already out of `entered`) left channel `c`.
    fn left(&mut self, c: usize, u: usize) -> MemberOutcome {
        let change = if self.member_conns(c, u) == 0 {
            let old = self.member(c, u, 1);
            self.members.remove(&(c, u));
            Some(MemberChange::Left { old })
        } else {
            None
        };
        MemberOutcome {
            change,
            conns_changed: true,
        }
    }
}

fn check(shared: &SharedPresence, m: &Model) {
    for u in 0..USERS {
        assert_eq!(shared.presence(m.now, &user(u)), m.presence(u), "u{u}");
    }
    let present: Vec<(String, UserStatus)> = (0..USERS)
        .filter_map(|u| m.derived(u).map(|s| (format!("u{u}"), s)))
        .collect();
    let got: Vec<(String, UserStatus)> = shared
        .present_after(None)
        .map(|(id, s)| (id.to_string(), s))
        .collect();
    assert_eq!(got, present);
    assert_eq!(shared.present_count(), present.len());
    let mut total = 0;
    for c in 0..CHANNELS {
        let expected: BTreeMap<UserId, Member> = (0..USERS)
            .filter(|&u| m.member_conns(c, u) > 0)
            .map(|u| (user(u), m.member(c, u, m.member_conns(c, u))))
            .collect();
        assert_eq!(shared.members(&channel(c)), &expected, "c{c}");
        let conns: u32 = expected.values().map(|m| m.conns).sum();
        assert_eq!(
            shared.occupancy(&channel(c)),
            (expected.len(), conns as usize)
        );
        total += expected.len();
    }
    assert_eq!(shared.member_count(), total);
}

/// Connection `i` leaves every channel and goes, as the engine removes one.
fn remove(
    shared: &mut SharedPresence,
    m: &mut Model,
    i: usize,
    recompute: bool,
) -> Option<UserChange> {
    let conn = m.conns[i].clone();
    let u = conn.user;
    m.conns[i].entered.clear();
    for &c in &conn.entered {
        let expected = m.left(c, u);
        assert_eq!(shared.leave(&channel(c), &user(u)), expected);
    }
    m.conns.remove(i);
    let got = shared.conn_removed(m.now, &user(u), conn.live, conn.away, recompute);
    if !m.conns_of(u).any(|c| c.live) && conn.live {
        m.users.get_mut(&u).expect("present").last_live_at = m.now;
    }
    got
}

fn run(ops: Vec<Op>) {
    let mut shared = SharedPresence::new(usize::MAX);
    let mut m = Model {
        now: 1_000,
        ..Model::default()
    };
    for op in ops {
        let pick = |i: usize, m: &Model| (!m.conns.is_empty()).then(|| i % m.conns.len());
        match op {
            Op::Add(u) => {
                m.conns.push(Conn {
                    user: u,
                    live: true,
                    away: false,
                    entered: BTreeSet::new(),
                });
                let got = shared.conn_added(m.now, &user(u));
                assert_eq!(got, m.settle(u));
            }
            Op::Detach(i) => {
                if let Some(i) = pick(i, &m).filter(|&i| m.conns[i].live) {
                    m.conns[i].live = false;
                    let u = m.conns[i].user;
                    if !m.conns_of(u).any(|c| c.live) {
                        m.users.get_mut(&u).expect("present").last_live_at = m.now;
                    }
                    shared.conn_detached(m.now, &user(u));
                }
            }
            Op::Reattach(i) => {
                if let Some(i) = pick(i, &m).filter(|&i| !m.conns[i].live) {
                    m.conns[i].live = true;
                    shared.conn_reattached(&user(m.conns[i].user));
                }
            }
            Op::Status(i, away) => {
                if let Some(i) = pick(i, &m) {
                    let was = std::mem::replace(&mut m.conns[i].away, away);
                    let u = m.conns[i].user;
                    let got = shared.conn_status(m.now, &user(u), was, away);
                    assert_eq!(got, m.settle(u));
                }
            }
            Op::Remove(i) => {
                if let Some(i) = pick(i, &m) {
                    let u = m.conns[i].user;
                    let got = remove(&mut shared, &mut m, i, true);
                    assert_eq!(got, m.settle(u));
                }
            }
            Op::Kick(u) => {
                let mut changes = Vec::new();
                while let Some(i) = m.conns.iter().position(|c| c.user == u) {
                    changes.extend(remove(&mut shared, &mut m, i, false));
                }
                // Straight to offline, nothing on the way.
                let expected: Vec<UserChange> = m.settle(u).into_iter().collect();
                assert_eq!(changes, expected);
            }
            Op::Enter(i, c, d) => {
                if let Some(i) = pick(i, &m) {
                    let u = m.conns[i].user;
                    let new_conn = m.conns[i].entered.insert(c);
                    let data = d.map(data);
                    let expected = match m.members.get(&(c, u)).cloned() {
                        None => {
                            let joined = data.clone().unwrap_or_else(default_data);
                            m.members.insert(
                                (c, u),
                                RefMember {
                                    data: joined.clone(),
                                    since: m.now,
                                },
                            );
                            MemberOutcome {
                                change: Some(MemberChange::Joined { data: joined }),
                                conns_changed: true,
                            }
                        }
                        Some(was) => {
                            let old = Member {
                                data: MemberData::from_map(&was.data),
                                conns: m.member_conns(c, u) - u32::from(new_conn),
                                since: was.since,
                            };
                            let change = data.clone().filter(|d| *d != was.data).map(|d| {
                                m.members.get_mut(&(c, u)).expect("member").data = d.clone();
                                MemberChange::Updated {
                                    old: Member {
                                        conns: m.member_conns(c, u),
                                        ..old
                                    },
                                    data: d,
                                }
                            });
                            MemberOutcome {
                                change,
                                conns_changed: new_conn,
                            }
                        }
                    };
                    let got =
                        shared.enter(m.now, &channel(c), &user(u), new_conn, data, default_data);
                    assert_eq!(got, expected);
                }
            }
            Op::Update(i, c, d) => {
                if let Some(i) = pick(i, &m).filter(|&i| m.conns[i].entered.contains(&c)) {
                    let u = m.conns[i].user;
                    let was = m.members[&(c, u)].clone();
                    let d = data(d);
                    let expected = (d != was.data).then(|| {
                        let old = m.member(c, u, m.member_conns(c, u));
                        m.members.get_mut(&(c, u)).expect("member").data = d.clone();
                        MemberChange::Updated {
                            old,
                            data: d.clone(),
                        }
                    });
                    assert_eq!(shared.update(&channel(c), &user(u), d), expected);
                }
            }
            Op::Leave(i, c) => {
                if let Some(i) = pick(i, &m).filter(|&i| m.conns[i].entered.contains(&c)) {
                    let u = m.conns[i].user;
                    m.conns[i].entered.remove(&c);
                    let expected = m.left(c, u);
                    assert_eq!(shared.leave(&channel(c), &user(u)), expected);
                }
            }
            Op::Advance(dt) => m.now += dt,
        }
        check(&shared, &m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn shared_presence_matches_a_recounting_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}

#[test]
fn a_member_entered_twice_leaves_with_its_last_connection() {
    let mut shared = SharedPresence::new(usize::MAX);
    let (c, u) = (channel(0), user(0));
    shared.conn_added(0, &u);
    let first = shared.enter(0, &c, &u, true, Some(data(1)), default_data);
    assert!(matches!(first.change, Some(MemberChange::Joined { .. })));
    let second = shared.enter(5, &c, &u, true, None, default_data);
    assert_eq!(second.change, None);
    assert_eq!(shared.occupancy(&c), (1, 2));
    assert_eq!(shared.leave(&c, &u).change, None);
    let last = shared.leave(&c, &u);
    let Some(MemberChange::Left { old }) = last.change else {
        panic!("{last:?}")
    };
    assert_eq!((old.conns, old.since), (1, 0));
    assert_eq!(shared.occupancy(&c), (0, 0));
    assert!(shared.members(&c).is_empty());
}
