// Kept in one file: the model, its operations and the checks are one property, read together.
//! Model-based property test of the presence engine.
//!
//! Random sequences of hellos, enters, updates, leaves, (un)subscribes,
//! status changes, watches, disconnects, resumes, byes, kicks and clock
//! advances run against the engine and against a small reference model.
//! After every step each live client's view, rebuilt only from the frames it
//! received, must agree with the engine and the model; `seq` never skips;
//! occupancy, user counts, presence and events match the model.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use presenced_engine::{
    ConnId, EngineConfig, ErrorCode, Identity, PresenceEvent, Reason, UserStatus,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use support::*;

const USERS: [&str; 3] = ["u0", "u1", "u2"];
const CHANNELS: [&str; 3] = ["pub:a", "room:b", "room:c"];
const GRACE: u64 = 1_000;
const COALESCE: u64 = 50;
const OCCUPANCY: u64 = 300;

fn config() -> EngineConfig {
    let mut public = rule("pub:*");
    public.guests = true;
    public.public_fields = vec!["n".into()];
    EngineConfig {
        grace_ms: GRACE,
        coalesce_ms: COALESCE,
        occupancy_interval_ms: OCCUPANCY,
        guests_watch: true,
        rules: rules(vec![public]),
        ..EngineConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `user` 3 is a guest.
    Hello {
        user: u8,
    },
    Enter {
        conn: u8,
        ch: u8,
        data: Option<u8>,
        /// `false` sends `subscribe: false` (enter without subscribing).
        subscribe: bool,
    },
    Update {
        conn: u8,
        ch: u8,
        data: u8,
    },
    Leave {
        conn: u8,
        ch: u8,
    },
    Subscribe {
        conn: u8,
        ch: u8,
        occupancy: bool,
    },
    Unsubscribe {
        conn: u8,
        ch: u8,
    },
    Status {
        conn: u8,
        away: bool,
    },
    Watch {
        conn: u8,
    },
    Disconnect {
        conn: u8,
    },
    Resume {
        conn: u8,
    },
    Bye {
        conn: u8,
    },
    Kick {
        user: u8,
    },
    Advance {
        ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let conn = any::<u8>();
    let ch = 0u8..3;
    prop_oneof![
        3 => (0u8..4).prop_map(|user| Op::Hello { user }),
        6 => (conn, ch.clone(), proptest::option::of(0u8..6), proptest::bool::weighted(0.75))
            .prop_map(|(conn, ch, data, subscribe)| Op::Enter { conn, ch, data, subscribe }),
        4 => (conn, ch.clone(), 0u8..6).prop_map(|(conn, ch, data)| Op::Update { conn, ch, data }),
        3 => (conn, ch.clone()).prop_map(|(conn, ch)| Op::Leave { conn, ch }),
        3 => (conn, ch.clone(), any::<bool>())
            .prop_map(|(conn, ch, occupancy)| Op::Subscribe { conn, ch, occupancy }),
        1 => (conn, ch).prop_map(|(conn, ch)| Op::Unsubscribe { conn, ch }),
        2 => (conn, any::<bool>()).prop_map(|(conn, away)| Op::Status { conn, away }),
        1 => conn.prop_map(|conn| Op::Watch { conn }),
        2 => conn.prop_map(|conn| Op::Disconnect { conn }),
        2 => conn.prop_map(|conn| Op::Resume { conn }),
        1 => conn.prop_map(|conn| Op::Bye { conn }),
        1 => (0u8..3).prop_map(|user| Op::Kick { user }),
        3 => (0u16..=400).prop_map(|ms| Op::Advance { ms }),
        // Short steps keep several changes inside one coalescing window.
        3 => (0u16..=60).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn data(d: u8) -> Value {
    json!({"n": d % 3, "x": d / 3})
}

/// One connection as the model sees it, with its client-side views.
#[derive(Debug)]
struct MConn {
    id: ConnId,
    user: Option<String>,
    live: bool,
    deadline: Option<u64>,
    removed: bool,
    entered: BTreeSet<usize>,
    /// channel → wants occupancy.
    subs: BTreeMap<usize, bool>,
    away: bool,
    watching: bool,
    views: Views,
}

struct Harness {
    d: Driver,
    conns: Vec<MConn>,
    /// (channel, user) → member data.
    data: BTreeMap<(usize, String), Value>,
    last_change: [u64; 3],
    last_occupancy_change: [u64; 3],
    check_occupancy: bool,
    next_id: u64,
    log: Vec<String>,
}

type Members = [BTreeMap<String, Value>; 3];

impl Harness {
    fn new(check_occupancy: bool) -> Self {
        let d = Driver::new(config());
        let t = d.now;
        Harness {
            d,
            conns: Vec::new(),
            data: BTreeMap::new(),
            last_change: [t; 3],
            last_occupancy_change: [t; 3],
            check_occupancy,
            next_id: 1,
            log: Vec::new(),
        }
    }

    fn fail(&self, msg: String) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(40).rev().collect();
        panic!(
            "{msg}\n  at t+{} after ops:\n    {tail:#?}",
            self.d.now - T0
        );
    }

    // ----- model reads ---------------------------------------------------

    fn present(&self) -> impl Iterator<Item = &MConn> {
        self.conns.iter().filter(|c| !c.removed)
    }

    fn members(&self, ch: usize) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for c in self.present() {
            if let Some(u) = &c.user
                && c.entered.contains(&ch)
            {
                *out.entry(u.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    fn is_member(&self, ch: usize, user: &str) -> bool {
        self.members(ch).contains_key(user)
    }

    fn member_data(&self) -> Members {
        std::array::from_fn(|ch| {
            self.members(ch)
                .into_keys()
                .map(|u| {
                    let v = self.data.get(&(ch, u.clone())).cloned();
                    let v = v.unwrap_or_else(|| self.fail(format!("no data for {u} in {ch}")));
                    (u, v)
                })
                .collect()
        })
    }

    fn occupancy(&self, ch: usize) -> (usize, usize) {
        let m = self.members(ch);
        (m.len(), m.values().map(|&n| n as usize).sum())
    }

    fn channel_exists(&self, ch: usize) -> bool {
        self.present()
            .any(|c| c.subs.contains_key(&ch) || c.entered.contains(&ch))
    }

    fn status(&self, user: &str) -> UserStatus {
        let mine: Vec<&MConn> = self
            .present()
            .filter(|c| c.user.as_deref() == Some(user))
            .collect();
        if mine.is_empty() {
            UserStatus::Offline
        } else if mine.iter().all(|c| c.away) {
            UserStatus::Away
        } else {
            UserStatus::Online
        }
    }

    /// A live connection picked by `i`, if any.
    fn live(&self, i: u8) -> Option<usize> {
        let live: Vec<usize> = (0..self.conns.len())
            .filter(|&k| !self.conns[k].removed && self.conns[k].live)
            .collect();
        (!live.is_empty()).then(|| live[i as usize % live.len()])
    }

    fn slot_of(&self, id: ConnId) -> Option<usize> {
        (0..self.conns.len()).find(|&k| self.conns[k].id == id && !self.conns[k].removed)
    }

    // ----- model writes -------------------------------------------------

    /// `slot` stops being in `ch`; the member's data goes with its last conn.
    fn conn_leaves(&mut self, slot: usize, ch: usize) {
        if self.conns[slot].entered.remove(&ch) {
            let user = self.conns[slot].user.clone().expect("only users enter");
            if !self.is_member(ch, &user) {
                self.data.remove(&(ch, user));
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        for ch in self.conns[slot].entered.clone() {
            self.conn_leaves(slot, ch);
        }
        let c = &mut self.conns[slot];
        c.removed = true;
        c.subs.clear();
        c.views = Views::default();
    }

    // ----- driving ------------------------------------------------------

    /// Sends a request and checks the reply against the model's verdict.
    fn request(&mut self, slot: usize, mut frame: Value, expect: Result<(), ErrorCode>) {
        let id = self.next_id;
        self.next_id += 1;
        frame["id"] = json!(id);
        let conn = self.conns[slot].id;
        let got = self.d.req(conn, frame.clone()).map_err(|e| e.code);
        if got != expect {
            self.fail(format!(
                "{frame} from conn {conn}: engine {got:?}, model {expect:?}"
            ));
        }
        let frames = self.d.last_frames(conn);
        let reply = frames.last().cloned().unwrap_or(Value::Null);
        let want = if expect.is_ok() { "ok" } else { "error" };
        if reply["t"] != want || reply["id"] != id {
            self.fail(format!(
                "{frame}: last frame should be {want} {id}, got {reply}"
            ));
        }
        if expect.is_err() && self.d.last.len() != 1 {
            self.fail(format!(
                "refused {frame} had other effects: {:?}",
                self.d.last
            ));
        }
    }

    fn step(&mut self, op: &Op) {
        self.log.push(format!("t+{}: {op:?}", self.d.now - T0));
        let before: Members = self.member_data();
        let before_occ: [(usize, usize); 3] = std::array::from_fn(|ch| self.occupancy(ch));
        let before_status: Vec<UserStatus> = USERS.iter().map(|u| self.status(u)).collect();
        self.d.events.clear();
        self.d.closes.clear();
        self.d.frames.clear();
        let gone_before: BTreeSet<ConnId> = self
            .conns
            .iter()
            .filter(|c| c.removed)
            .map(|c| c.id)
            .collect();
        let mut reason: Option<Reason> = None;
        let mut expected_closes: Vec<(ConnId, u16, &'static str)> = Vec::new();
        // Views to drop after the frames of this step are applied.
        let mut drop_view: Option<(usize, usize)> = None;

        match *op {
            Op::Hello { user } => {
                let ident = match user {
                    3 => Identity::default(),
                    u => user_ident(USERS[u as usize]),
                };
                let name = ident.user.clone();
                let a = self.d.connect(ident, None);
                if a.resumed {
                    self.fail("a hello without resume resumed".into());
                }
                self.conns.push(MConn {
                    id: a.conn,
                    user: name,
                    live: true,
                    deadline: None,
                    removed: false,
                    entered: BTreeSet::new(),
                    subs: BTreeMap::new(),
                    away: false,
                    watching: false,
                    views: Views::default(),
                });
            }
            Op::Enter {
                conn,
                ch,
                data: d,
                subscribe,
            } => {
                let Some(s) = self.live(conn) else { return };
                let ch = ch as usize;
                let mut frame = enter(0, CHANNELS[ch]);
                if let Some(d) = d {
                    frame["data"] = data(d);
                }
                if !subscribe {
                    frame["subscribe"] = json!(false);
                }
                match self.conns[s].user.clone() {
                    None => self.request(s, frame, Err(ErrorCode::Forbidden)),
                    Some(user) => {
                        let was_member = self.is_member(ch, &user);
                        let c = &mut self.conns[s];
                        if subscribe {
                            c.subs.entry(ch).or_insert(false);
                        }
                        c.entered.insert(ch);
                        match (was_member, d) {
                            (false, d) => {
                                self.data
                                    .insert((ch, user), d.map_or_else(|| json!({}), data));
                            }
                            (true, Some(d)) => {
                                self.data.insert((ch, user), data(d));
                            }
                            (true, None) => {}
                        }
                        self.request(s, frame, Ok(()));
                    }
                }
            }
            Op::Update { conn, ch, data: d } => {
                let Some(s) = self.live(conn) else { return };
                let ch = ch as usize;
                let frame = update(0, CHANNELS[ch], data(d));
                let expect = match &self.conns[s].user {
                    None => Err(ErrorCode::Forbidden),
                    Some(_) if !self.conns[s].entered.contains(&ch) => Err(ErrorCode::NotMember),
                    Some(user) => {
                        self.data.insert((ch, user.clone()), data(d));
                        Ok(())
                    }
                };
                self.request(s, frame, expect);
            }
            Op::Leave { conn, ch } => {
                let Some(s) = self.live(conn) else { return };
                let ch = ch as usize;
                let expect = if self.conns[s].user.is_none() {
                    Err(ErrorCode::Forbidden)
                } else if !self.conns[s].entered.contains(&ch) {
                    Err(ErrorCode::NotMember)
                } else {
                    self.conn_leaves(s, ch);
                    reason = Some(Reason::Left);
                    Ok(())
                };
                self.request(s, leave(0, CHANNELS[ch]), expect);
            }
            Op::Subscribe {
                conn,
                ch,
                occupancy,
            } => {
                let Some(s) = self.live(conn) else { return };
                let ch = ch as usize;
                let frame =
                    json!({"t": "subscribe", "channel": CHANNELS[ch], "occupancy": occupancy});
                let expect = if self.conns[s].user.is_none() && ch != 0 {
                    Err(ErrorCode::Forbidden)
                } else {
                    self.conns[s].subs.insert(ch, occupancy);
                    Ok(())
                };
                self.request(s, frame, expect);
            }
            Op::Unsubscribe { conn, ch } => {
                let Some(s) = self.live(conn) else { return };
                let ch = ch as usize;
                // Leaves the channel if entered, subscribed or not.
                if self.conns[s].entered.contains(&ch) {
                    self.conn_leaves(s, ch);
                    reason = Some(Reason::Left);
                }
                if self.conns[s].subs.remove(&ch).is_some() {
                    drop_view = Some((s, ch));
                }
                self.request(
                    s,
                    json!({"t": "unsubscribe", "channel": CHANNELS[ch]}),
                    Ok(()),
                );
            }
            Op::Status { conn, away } => {
                let Some(s) = self.live(conn) else { return };
                let frame = json!({"t": "status", "status": if away { "away" } else { "online" }});
                let expect = if self.conns[s].user.is_none() {
                    Err(ErrorCode::Forbidden)
                } else {
                    self.conns[s].away = away;
                    Ok(())
                };
                self.request(s, frame, expect);
            }
            Op::Watch { conn } => {
                let Some(s) = self.live(conn) else { return };
                self.conns[s].watching = true;
                self.request(s, json!({"t": "watch", "users": USERS}), Ok(()));
            }
            Op::Disconnect { conn } => {
                let Some(s) = self.live(conn) else { return };
                let c = &mut self.conns[s];
                c.live = false;
                c.deadline = Some(self.d.now + GRACE);
                c.views = Views::default();
                let id = c.id;
                self.d.disconnect(id);
            }
            Op::Resume { conn } => {
                if self.conns.is_empty() {
                    return;
                }
                let s = conn as usize % self.conns.len();
                let id = self.conns[s].id;
                let ident = match &self.conns[s].user {
                    Some(u) => user_ident(u),
                    None => Identity::default(),
                };
                let session = self.d.session(id);
                let a = self.d.connect(ident, Some(&session));
                if self.conns[s].removed {
                    if a.resumed || a.conn == id {
                        self.fail(format!("resumed removed conn {id}: {a:?}"));
                    }
                    self.conns.push(MConn {
                        id: a.conn,
                        user: self.conns[s].user.clone(),
                        live: true,
                        deadline: None,
                        removed: false,
                        entered: BTreeSet::new(),
                        subs: BTreeMap::new(),
                        away: false,
                        watching: false,
                        views: Views::default(),
                    });
                } else {
                    let was_live = self.conns[s].live;
                    if !a.resumed || a.conn != id || a.replaced_live_socket != was_live {
                        self.fail(format!("resume of conn {id} (live {was_live}): {a:?}"));
                    }
                    let c = &mut self.conns[s];
                    c.live = true;
                    c.deadline = None;
                    c.views = Views::default();
                }
            }
            Op::Bye { conn } => {
                let Some(s) = self.live(conn) else { return };
                let id = self.conns[s].id;
                self.remove(s);
                reason = Some(Reason::Logout);
                expected_closes.push((id, 1000, "bye"));
                self.request(s, json!({"t": "bye"}), Ok(()));
            }
            Op::Kick { user } => {
                let user = USERS[user as usize];
                let mine: Vec<usize> = (0..self.conns.len())
                    .filter(|&k| {
                        !self.conns[k].removed && self.conns[k].user.as_deref() == Some(user)
                    })
                    .collect();
                for &k in &mine {
                    if self.conns[k].live {
                        expected_closes.push((self.conns[k].id, 4409, "kicked"));
                    }
                    self.remove(k);
                }
                reason = Some(Reason::Kicked);
                let n = self.d.kick(user);
                if n != mine.len() {
                    self.fail(format!("kick_user({user}) = {n}, model {}", mine.len()));
                }
                let mut got = self.d.closes.clone();
                got.sort();
                expected_closes.sort();
                if got != expected_closes {
                    self.fail(format!("kick closes {got:?}, want {expected_closes:?}"));
                }
            }
            Op::Advance { ms } => {
                let now = self.d.now + ms as u64;
                for k in 0..self.conns.len() {
                    if !self.conns[k].removed && self.conns[k].deadline.is_some_and(|t| t <= now) {
                        self.remove(k);
                        reason = Some(Reason::Timeout);
                    }
                }
                self.d.tick(ms as u64);
            }
        }
        if !matches!(op, Op::Kick { .. }) && self.d.closes != expected_closes {
            self.fail(format!(
                "closes {:?}, want {expected_closes:?}",
                self.d.closes
            ));
        }

        self.deliver(&gone_before);
        if let Some((s, ch)) = drop_view {
            self.conns[s].views.channels.remove(CHANNELS[ch]);
        }

        let after = self.member_data();
        let now = self.d.now;
        for ch in 0..3 {
            if before[ch] != after[ch] {
                self.last_change[ch] = now;
            }
            if before_occ[ch] != self.occupancy(ch) {
                self.last_occupancy_change[ch] = now;
            }
        }
        self.check_events(&before, &after, &before_status, reason);
        self.check_state();
    }

    /// Hands the frames of the last step to the connections' views.
    fn deliver(&mut self, gone_before: &BTreeSet<ConnId>) {
        let frames = std::mem::take(&mut self.d.frames);
        for (id, list) in frames {
            if gone_before.contains(&id) {
                self.fail(format!("frames for conn {id} removed earlier: {list:?}"));
            }
            // A connection removed by this very step may get its last frames.
            let Some(s) = self.slot_of(id) else { continue };
            if !self.conns[s].live {
                self.fail(format!("frames for detached conn {id}: {list:?}"));
            }
            for f in &list {
                let v = parse(f);
                if let Err(e) = self.conns[s].views.apply(&v) {
                    self.fail(format!("conn {id}: {e}"));
                }
            }
        }
    }

    fn check_events(
        &self,
        before: &Members,
        after: &Members,
        before_status: &[UserStatus],
        reason: Option<Reason>,
    ) {
        let mut joined = BTreeSet::new();
        let mut left = BTreeSet::new();
        let mut status: BTreeMap<String, Vec<UserStatus>> = BTreeMap::new();
        for e in &self.d.events {
            match e {
                PresenceEvent::MemberJoined { user, channel, .. } => {
                    let fresh = joined.insert((channel.to_string(), user.to_string()));
                    if !fresh {
                        self.fail(format!("two MemberJoined in one step: {e:?}"));
                    }
                }
                PresenceEvent::MemberLeft {
                    user,
                    channel,
                    reason: r,
                    ..
                } => {
                    if Some(*r) != reason {
                        self.fail(format!("{e:?}: expected reason {reason:?}"));
                    }
                    if !left.insert((channel.to_string(), user.to_string())) {
                        self.fail(format!("two MemberLeft in one step: {e:?}"));
                    }
                }
                PresenceEvent::UserOnline { user, .. } => status
                    .entry(user.to_string())
                    .or_default()
                    .push(UserStatus::Online),
                PresenceEvent::UserAway { user, .. } => status
                    .entry(user.to_string())
                    .or_default()
                    .push(UserStatus::Away),
                PresenceEvent::UserOffline {
                    user, reason: r, ..
                } => {
                    if Some(*r) != reason {
                        self.fail(format!("{e:?}: expected reason {reason:?}"));
                    }
                    status
                        .entry(user.to_string())
                        .or_default()
                        .push(UserStatus::Offline)
                }
                _ => {}
            }
        }
        let mut want_joined = BTreeSet::new();
        let mut want_left = BTreeSet::new();
        for ch in 0..3 {
            for u in after[ch].keys() {
                if !before[ch].contains_key(u) {
                    want_joined.insert((CHANNELS[ch].to_string(), u.clone()));
                }
            }
            for u in before[ch].keys() {
                if !after[ch].contains_key(u) {
                    want_left.insert((CHANNELS[ch].to_string(), u.clone()));
                }
            }
        }
        if joined != want_joined || left != want_left {
            self.fail(format!(
                "member events joined {joined:?} left {left:?}, model {want_joined:?} {want_left:?}"
            ));
        }
        for (i, u) in USERS.iter().enumerate() {
            let now = self.status(u);
            match status.get(*u) {
                None if now != before_status[i] => self.fail(format!(
                    "{u} went {:?} -> {now:?} without an event",
                    before_status[i]
                )),
                None => {}
                Some(seq) => {
                    let mut prev = before_status[i];
                    for s in seq {
                        if *s == prev {
                            self.fail(format!("{u}: status event {s:?} without a change"));
                        }
                        prev = *s;
                    }
                    if prev != now {
                        self.fail(format!("{u}: events end at {prev:?}, model {now:?}"));
                    }
                }
            }
        }
    }

    fn check_state(&self) {
        let e = &self.d.eng;
        let now = self.d.now;
        let truth = self.member_data();
        let mut channels = 0;
        for ch in 0..3 {
            let name = CHANNELS[ch];
            let ids: Vec<String> = truth[ch].keys().cloned().collect();
            if e.member_ids(name) != ids {
                self.fail(format!(
                    "{name}: engine members {:?}, model {ids:?}",
                    e.member_ids(name)
                ));
            }
            let exists = self.channel_exists(ch);
            channels += usize::from(exists);
            let want = exists.then(|| self.occupancy(ch));
            if e.occupancy(name) != want {
                self.fail(format!(
                    "{name}: occupancy {:?}, model {want:?}",
                    e.occupancy(name)
                ));
            }
        }
        if e.channel_count() != channels {
            self.fail(format!(
                "channel_count {}, model {channels}",
                e.channel_count()
            ));
        }
        let users: BTreeSet<&str> = self.present().filter_map(|c| c.user.as_deref()).collect();
        if e.users_present() != users.len() {
            self.fail(format!(
                "users_present {}, model {}",
                e.users_present(),
                users.len()
            ));
        }
        if e.connection_count() != self.present().count() {
            self.fail(format!(
                "connection_count {}, model {}",
                e.connection_count(),
                self.present().count()
            ));
        }
        for u in USERS {
            let p = e.presence(now, u);
            if p.status != self.status(u) {
                self.fail(format!(
                    "{u}: status {:?}, model {:?}",
                    p.status,
                    self.status(u)
                ));
            }
        }
        for c in self.present().filter(|c| c.live) {
            let subs: BTreeSet<&str> = c.subs.keys().map(|&ch| CHANNELS[ch]).collect();
            let views: BTreeSet<&str> = c.views.channels.keys().map(String::as_str).collect();
            if subs != views {
                self.fail(format!(
                    "conn {}: subscribed to {subs:?}, has views {views:?}",
                    c.id
                ));
            }
            for (&ch, &occ) in &c.subs {
                let view = &c.views.channels[CHANNELS[ch]];
                if view.in_sync {
                    self.fail(format!(
                        "conn {}: sync of {} never finished",
                        c.id, CHANNELS[ch]
                    ));
                }
                for m in view.members.values() {
                    let keys: BTreeSet<&str> =
                        m.as_object().unwrap().keys().map(String::as_str).collect();
                    let want: BTreeSet<&str> = if c.user.is_none() {
                        ["user", "data"].into()
                    } else {
                        ["user", "data", "conns", "since"].into()
                    };
                    if keys != want {
                        self.fail(format!("conn {}: member object {m}", c.id));
                    }
                }
                if now >= self.last_change[ch] + COALESCE {
                    let want: BTreeMap<String, Value> = truth[ch]
                        .iter()
                        .map(|(u, d)| {
                            (
                                u.clone(),
                                if c.user.is_none() {
                                    public(d)
                                } else {
                                    d.clone()
                                },
                            )
                        })
                        .collect();
                    if view.data() != want {
                        self.fail(format!(
                            "conn {} view of {} is {:?}, truth {want:?}",
                            c.id,
                            CHANNELS[ch],
                            view.data()
                        ));
                    }
                }
                if occ {
                    let Some((m, n)) = view.occupancy else {
                        self.fail(format!(
                            "conn {}: asked for occupancy of {}, has none",
                            c.id, CHANNELS[ch]
                        ))
                    };
                    let (wm, wn) = self.occupancy(ch);
                    if self.check_occupancy
                        && now >= self.last_occupancy_change[ch] + OCCUPANCY
                        && (m as usize, n as usize) != (wm, wn)
                    {
                        self.fail(format!(
                            "conn {}: occupancy of {} is ({m},{n}), truth ({wm},{wn})",
                            c.id, CHANNELS[ch]
                        ));
                    }
                }
            }
            if c.watching {
                for u in USERS {
                    let got = &c.views.presence.get(u).map(|p| p["status"].clone());
                    let want = json!(self.status(u));
                    if got.as_ref() != Some(&want) {
                        self.fail(format!("conn {} sees {u} as {got:?}, truth {want}", c.id));
                    }
                }
            }
        }
    }

    /// Lets every window, throttle and grace period run out, then logs
    /// everyone out: the engine must end empty with no timers.
    fn finish(&mut self) {
        for _ in 0..4 {
            self.step(&Op::Advance { ms: 100 });
        }
        let live: Vec<u8> = (0..self.conns.len() as u8).collect();
        for _ in &live {
            self.step(&Op::Bye { conn: 0 });
        }
        for _ in 0..25 {
            self.step(&Op::Advance { ms: 100 });
        }
        let e = &self.d.eng;
        if (e.channel_count(), e.connection_count(), e.users_present()) != (0, 0, 0) {
            self.fail(format!(
                "not empty at the end: {} channels, {} conns, {} users",
                e.channel_count(),
                e.connection_count(),
                e.users_present()
            ));
        }
        if e.next_deadline().is_some() {
            self.fail(format!("timer left at the end: {:?}", e.next_deadline()));
        }
    }
}

fn user_ident(u: &str) -> Identity {
    support::user(u)
}

fn public(d: &Value) -> Value {
    let mut out = Map::new();
    if let Some(n) = d.get("n") {
        out.insert("n".into(), n.clone());
    }
    Value::Object(out)
}

fn run(ops: &[Op], check_occupancy: bool) {
    let mut h = Harness::new(check_occupancy);
    for op in ops {
        h.step(op);
    }
    h.finish();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        // ChaCha in a debug build costs a third of the run.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..200)) {
        run(&ops, false);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        // ChaCha in a debug build costs a third of the run.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    })]

    /// Same run, also requiring every occupancy subscriber to hold the true
    /// occupancy once an interval has passed since the last change.
    #[test]

    fn occupancy_subscribers_converge(ops in prop::collection::vec(op(), 1..200)) {
        run(&ops, true);
    }
}

/// A fixed sequence covering resume, grace expiry and a coalesced burst,
/// so the model itself is exercised even if proptest finds nothing.
#[test]
fn model_smoke() {
    use Op::*;
    let ops = vec![
        Hello { user: 0 },
        Hello { user: 1 },
        Hello { user: 3 },
        Subscribe {
            conn: 2,
            ch: 0,
            occupancy: true,
        },
        Watch { conn: 2 },
        Enter {
            conn: 0,
            ch: 0,
            data: Some(1),
            subscribe: true,
        },
        Enter {
            conn: 1,
            ch: 0,
            data: None,
            subscribe: true,
        },
        Update {
            conn: 0,
            ch: 0,
            data: 4,
        },
        Leave { conn: 1, ch: 0 },
        Advance { ms: 60 },
        Status {
            conn: 0,
            away: true,
        },
        Disconnect { conn: 0 },
        Advance { ms: 400 },
        Resume { conn: 0 },
        Disconnect { conn: 1 },
        Advance { ms: 400 },
        Advance { ms: 400 },
        Advance { ms: 400 },
        Resume { conn: 1 },
        Enter {
            conn: 3,
            ch: 1,
            data: Some(2),
            subscribe: false,
        },
        Kick { user: 0 },
        Advance { ms: 10 },
    ];
    run(&ops, true);
}

/// Entering without a subscription, through update, resume, a later
/// subscribe, unsubscribe and grace expiry.
#[test]
fn model_smoke_enter_without_subscribe() {
    use Op::*;
    let ops = vec![
        Hello { user: 0 },
        Hello { user: 1 },
        Subscribe {
            conn: 1,
            ch: 1,
            occupancy: true,
        },
        Enter {
            conn: 0,
            ch: 1,
            data: Some(1),
            subscribe: false,
        },
        Update {
            conn: 0,
            ch: 1,
            data: 3,
        },
        Advance { ms: 60 },
        Disconnect { conn: 0 },
        Advance { ms: 400 },
        Resume { conn: 0 },
        Subscribe {
            conn: 0,
            ch: 1,
            occupancy: false,
        },
        Enter {
            conn: 0,
            ch: 2,
            data: None,
            subscribe: false,
        },
        Unsubscribe { conn: 0, ch: 2 },
        Enter {
            conn: 1,
            ch: 2,
            data: Some(4),
            subscribe: false,
        },
        Enter {
            conn: 1,
            ch: 1,
            data: None,
            subscribe: false,
        },
        Leave { conn: 1, ch: 1 },
        Advance { ms: 400 },
        Disconnect { conn: 1 },
        Advance { ms: 400 },
        Advance { ms: 400 },
        Advance { ms: 400 },
    ];
    run(&ops, true);
}
