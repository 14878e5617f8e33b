//! Sequences of engine operations, decoded from the input, drive the
//! sans-IO engine directly (as `crates/engine/tests/support.rs` does) and
//! the engine's promises are checked on everything it says:
//!
//! - every subscriber's view, rebuilt from its frames alone, is consistent:
//!   `seq` gap-free per channel, one `leave` per `join` (no join of a
//!   member, no leave or update of a non-member), no event before `sync`;
//! - guests never see private fields: member objects are `user` and the
//!   public fields only, watched presence is the status only;
//! - no frame reaches a connection that is detached or gone;
//! - events alternate: one `MemberLeft` per `MemberJoined` for each user and
//!   channel, and user status events always change the status;
//! - a refused request answers with its error alone and changes nothing;
//! - a resume takes over exactly the sessions that are still held;
//! - in the end, once every connection has gone and grace has passed, no
//!   ghost: no member, no user online, every observer's view empty, no
//!   connection, channel or timer left.
//!
//! The input is read byte by byte (`arbitrary`, one byte per choice): an
//! operation code, then its arguments; at most [`MAX_OPS`] operations.
//! The seeds in `fuzz/corpus/engine_ops/` are written that way.
#![no_main]

#[path = "../../crates/engine/tests/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use presenced_engine::{
    ChannelRule, ClientFrame, ConnId, Effect, EngineConfig, Identity, PresenceEvent, UserStatus,
    parse_client_frame,
};
use serde_json::{Map, Value, json};
use support::{Driver, Views, obj, rule, rules};

const MAX_OPS: usize = 64;
const USERS: [&str; 3] = ["u0", "u1", "u2"];
/// Guests may subscribe to `pub:*`; `cap:*` holds two members at most.
const CHANNELS: [&str; 4] = ["pub:a", "pub:b", "room:c", "cap:d"];
const GRACE: u64 = 1_000;
/// The fields guests see of a `pub:*` member, as `user` and `data` paths.
const PUBLIC_TOP: [&str; 2] = ["n", "info"];
const PUBLIC_INFO: [&str; 1] = ["name"];

fn config() -> EngineConfig {
    let mut public = rule("pub:*");
    public.guests = true;
    public.public_fields = vec!["n".into(), "info.name".into()];
    let capped = ChannelRule {
        max_members: Some(2),
        ..rule("cap:*")
    };
    EngineConfig {
        grace_ms: GRACE,
        coalesce_ms: 50,
        immediate_burst: 1,
        immediate_per_sec: 10,
        occupancy_interval_ms: 300,
        max_data_bytes: 96,
        max_channels_per_conn: 3,
        max_watch_per_conn: 3,
        // Small chunks: snapshots of three members come in several frames.
        snapshot_chunk: 2,
        guests_watch: true,
        offline_cache: 1,
        rules: rules(vec![public, capped]),
        ..EngineConfig::default()
    }
}

#[derive(Debug)]
enum Op {
    /// `who` 3 is a guest; `claims` picks the token's `info` and `channels`.
    Hello {
        who: u8,
        claims: u8,
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
    Enter {
        conn: u8,
        ch: u8,
        data: Option<u8>,
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
    Status {
        conn: u8,
        away: bool,
    },
    Watch {
        conn: u8,
        users: u8,
    },
    Unwatch {
        conn: u8,
        users: u8,
    },
    Publish {
        conn: u8,
        ch: u8,
    },
    Refresh {
        conn: u8,
        claims: u8,
        other_user: bool,
    },
    Disconnect {
        conn: u8,
    },
    /// Resumes the session of any connection ever seen, as its user or
    /// (with `as_other`) as somebody else.
    Resume {
        conn: u8,
        as_other: bool,
    },
    Bye {
        conn: u8,
    },
    Kick {
        user: u8,
    },
    /// Advances the clock by `ms` × 10 milliseconds.
    Advance {
        ms: u8,
    },
    /// Any client text, through the frame parser.
    Raw {
        conn: u8,
        text: String,
    },
}

fn op(u: &mut Unstructured) -> Result<Op> {
    Ok(match u.int_in_range(0u8..=16)? {
        0 => Op::Hello {
            who: u.arbitrary()?,
            claims: u.arbitrary()?,
        },
        1 => Op::Subscribe {
            conn: u.arbitrary()?,
            ch: u.arbitrary()?,
            occupancy: u.arbitrary()?,
        },
        2 => Op::Unsubscribe {
            conn: u.arbitrary()?,
            ch: u.arbitrary()?,
        },
        3 => Op::Enter {
            conn: u.arbitrary()?,
            ch: u.arbitrary()?,
            data: u.arbitrary()?,
            subscribe: u.arbitrary()?,
        },
        4 => Op::Update {
            conn: u.arbitrary()?,
            ch: u.arbitrary()?,
            data: u.arbitrary()?,
        },
        5 => Op::Leave {
            conn: u.arbitrary()?,
            ch: u.arbitrary()?,
        },
        6 => Op::Status {
            conn: u.arbitrary()?,
            away: u.arbitrary()?,
        },
        7 => Op::Watch {
            conn: u.arbitrary()?,
            users: u.arbitrary()?,
        },
        8 => Op::Unwatch {
            conn: u.arbitrary()?,
            users: u.arbitrary()?,
        },
        9 => Op::Publish {
            conn: u.arbitrary()?,
            ch: u.arbitrary()?,
        },
        10 => Op::Refresh {
            conn: u.arbitrary()?,
            claims: u.arbitrary()?,
            other_user: u.arbitrary()?,
        },
        11 => Op::Disconnect {
            conn: u.arbitrary()?,
        },
        12 => Op::Resume {
            conn: u.arbitrary()?,
            as_other: u.arbitrary()?,
        },
        13 => Op::Bye {
            conn: u.arbitrary()?,
        },
        14 => Op::Kick {
            user: u.arbitrary()?,
        },
        15 => Op::Advance { ms: u.arbitrary()? },
        _ => {
            let conn = u.arbitrary()?;
            let len = u.int_in_range(0u8..=120)? as usize;
            let bytes = u.bytes(len.min(u.len()))?;
            Op::Raw {
                conn,
                text: String::from_utf8_lossy(bytes).into_owned(),
            }
        }
    })
}

/// Member data: a public `n`, a private `secret`, and (for the largest
/// values) a blob over `max_data_bytes`.
fn data(d: u8) -> Value {
    let mut v = json!({"n": d % 3, "secret": d});
    if d >= 250 {
        v["blob"] = json!("x".repeat(100));
    }
    v
}

/// A token's claims: `info` with a public `name` and a private `email`;
/// `channels` unrestricted, `pub:*` only, or the rooms only.
fn identity(user: Option<&str>, claims: u8) -> Identity {
    let Some(user) = user else {
        return Identity::default();
    };
    let info = (claims & 1 == 1)
        .then(|| obj(json!({"name": format!("N{}", claims >> 4), "email": "e@x"})));
    let channels = match (claims >> 1) % 3 {
        0 => None,
        1 => Some(vec!["pub:*".to_owned()]),
        _ => Some(vec![
            "room:*".to_owned(),
            "cap:*".to_owned(),
            "pub:a".to_owned(),
        ]),
    };
    Identity {
        user: Some(user.to_owned()),
        info,
        channels,
    }
}

/// One connection as its client sees it.
struct Client {
    id: ConnId,
    ident: Identity,
    /// The socket is open (not detached into grace).
    live: bool,
    /// Removed for good: closed by the server, kicked, or grace ran out.
    gone: bool,
    /// When a detached connection's grace runs out.
    deadline: Option<u64>,
    views: Views,
}

impl Client {
    fn guest(&self) -> bool {
        self.ident.user.is_none()
    }
}

struct Harness {
    d: Driver,
    clients: Vec<Client>,
    /// (user, channel) pairs that joined and have not left, from events.
    joined: BTreeSet<(String, String)>,
    /// User status from events.
    status: BTreeMap<String, UserStatus>,
    next_id: u64,
}

fn fail(msg: String) -> ! {
    panic!("{msg}");
}

impl Harness {
    fn new() -> Self {
        Harness {
            d: Driver::new(config()),
            clients: Vec::new(),
            joined: BTreeSet::new(),
            status: BTreeMap::new(),
            next_id: 1,
        }
    }

    fn slot(&self, id: ConnId) -> Option<usize> {
        self.clients.iter().position(|c| c.id == id && !c.gone)
    }

    /// A connection with an open socket, picked by `i`.
    fn live(&self, i: u8) -> Option<usize> {
        let live: Vec<usize> = (0..self.clients.len())
            .filter(|&k| self.clients[k].live && !self.clients[k].gone)
            .collect();
        (!live.is_empty()).then(|| live[i as usize % live.len()])
    }

    /// Checks and files the effects of the latest engine call.
    fn absorb(&mut self) {
        let effects = std::mem::take(&mut self.d.last);
        self.d.frames.clear();
        self.d.events.clear();
        self.d.closes.clear();
        for e in effects {
            match e {
                Effect::Reply { conn, frame } | Effect::Push { conn, frame } => {
                    let Some(s) = self.slot(conn) else {
                        fail(format!("frame for a connection that is gone: {frame:?}"));
                    };
                    if !self.clients[s].live {
                        fail(format!("frame for detached conn {conn}: {frame:?}"));
                    }
                    let f = support::parse(&frame);
                    if self.clients[s].guest() {
                        check_guest_frame(&f);
                    }
                    let c = &mut self.clients[s];
                    if f["t"] == "unsubscribed" {
                        // The subscription and membership ended (a member
                        // that never subscribed has no view).
                        let ch = f["channel"].as_str().unwrap_or_default();
                        c.views.channels.remove(ch);
                    } else if let Err(e) = c.views.apply(&f) {
                        fail(format!("conn {conn}: {e}"));
                    }
                }
                Effect::Close { conn, .. } => {
                    let Some(s) = self.slot(conn) else {
                        fail(format!("close of conn {conn}, which is gone"));
                    };
                    if !self.clients[s].live {
                        fail(format!("close of detached conn {conn}"));
                    }
                    self.clients[s].gone = true;
                }
                Effect::Event(ev) => self.event(&ev),
            }
        }
    }

    fn event(&mut self, ev: &PresenceEvent) {
        match ev {
            PresenceEvent::MemberJoined { user, channel, .. } => {
                if !self.joined.insert((user.to_string(), channel.to_string())) {
                    fail(format!("{ev:?} of a member"));
                }
            }
            PresenceEvent::MemberLeft { user, channel, .. } => {
                if !self.joined.remove(&(user.to_string(), channel.to_string())) {
                    fail(format!("{ev:?} of a non-member"));
                }
            }
            PresenceEvent::MemberUpdated { user, channel, .. } => {
                if !self
                    .joined
                    .contains(&(user.to_string(), channel.to_string()))
                {
                    fail(format!("{ev:?} of a non-member"));
                }
            }
            PresenceEvent::UserOnline { user, .. }
            | PresenceEvent::UserAway { user, .. }
            | PresenceEvent::UserOffline { user, .. } => {
                let to = match ev {
                    PresenceEvent::UserOnline { .. } => UserStatus::Online,
                    PresenceEvent::UserAway { .. } => UserStatus::Away,
                    _ => UserStatus::Offline,
                };
                let from = self
                    .status
                    .insert(user.to_string(), to)
                    .unwrap_or(UserStatus::Offline);
                if from == to {
                    fail(format!("{ev:?}: {user} was already {from:?}"));
                }
            }
        }
    }

    /// Sends `frame` (JSON text) from the connection in `slot`, with an id.
    fn request(&mut self, slot: usize, text: &str) {
        let conn = self.clients[slot].id;
        let id = self.next_id;
        self.next_id += 1;
        let Ok(r) = parse_client_frame(text) else {
            return;
        };
        let id = r.id.map(|_| id);
        // What the client forgets once the server said ok.
        let (unsubscribed, unwatched) = match &r.frame {
            ClientFrame::Unsubscribe { channel } => (Some(channel.clone()), Vec::new()),
            ClientFrame::Unwatch { users } => (None, users.clone()),
            _ => (None, Vec::new()),
        };
        let mut fx = presenced_engine::Effects::new();
        let res = self.d.eng.request(self.d.now, conn, id, r.frame, &mut fx);
        if res.is_err() && fx.items.len() != 1 {
            fail(format!("refused {text} had other effects: {:?}", fx.items));
        }
        if let Some(id) = id {
            let last = fx.items.iter().rev().find_map(|e| match e {
                Effect::Reply { conn: c, frame } if *c == conn => Some(support::parse(frame)),
                _ => None,
            });
            let want = if res.is_ok() { "ok" } else { "error" };
            match last {
                Some(f) if f["t"] == want && f["id"] == id => {}
                other => fail(format!(
                    "{text}: reply should be {want} {id}, got {other:?}"
                )),
            }
        }
        self.d.absorb(fx);
        self.absorb();
        if res.is_ok() {
            let views = &mut self.clients[slot].views;
            if let Some(ch) = unsubscribed {
                views.channels.remove(&ch);
            }
            for u in unwatched {
                views.presence.remove(&u);
            }
        }
    }

    fn send(&mut self, slot: usize, mut frame: Value) {
        frame["id"] = json!(0);
        self.request(slot, &frame.to_string());
    }

    fn connect(&mut self, ident: Identity, resume: Option<ConnId>) {
        let session = resume.map(|id| self.d.session(id));
        let held = resume.and_then(|id| {
            self.clients
                .iter()
                .position(|c| c.id == id && !c.gone && c.ident.user == ident.user)
        });
        if let Some(s) = held {
            // A fresh socket: the client starts its views anew.
            self.clients[s].views = Views::default();
        }
        let a = self.d.connect(ident.clone(), session.as_deref());
        match held {
            Some(s) => {
                if !a.resumed || a.conn != self.clients[s].id {
                    fail(format!("resume of a held session: {a:?}"));
                }
                if a.replaced_live_socket != self.clients[s].live {
                    fail(format!(
                        "resume: {a:?}, socket live {}",
                        self.clients[s].live
                    ));
                }
                let c = &mut self.clients[s];
                c.live = true;
                c.deadline = None;
                c.ident = ident;
            }
            None => {
                if a.resumed {
                    fail(format!("resumed a session that is not held: {a:?}"));
                }
                self.clients.push(Client {
                    id: a.conn,
                    ident,
                    live: true,
                    gone: false,
                    deadline: None,
                    views: Views::default(),
                });
            }
        }
        self.absorb();
    }

    fn disconnect(&mut self, slot: usize) {
        let id = self.clients[slot].id;
        let c = &mut self.clients[slot];
        c.live = false;
        c.deadline = Some(self.d.now + GRACE);
        c.views = Views::default();
        self.d.disconnect(id);
        self.absorb();
    }

    fn advance(&mut self, ms: u64) {
        let now = self.d.now + ms;
        for c in &mut self.clients {
            if c.deadline.is_some_and(|t| t <= now) {
                c.gone = true;
            }
        }
        self.d.tick(ms);
        self.absorb();
    }

    fn step(&mut self, op: Op) {
        let ch = |c: u8| CHANNELS[c as usize % CHANNELS.len()];
        let users = |mask: u8| -> Vec<&str> {
            USERS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, u)| *u)
                .collect()
        };
        match op {
            Op::Hello { who, claims } => {
                let user = USERS.get(who as usize % 4).copied();
                self.connect(identity(user, claims), None);
            }
            Op::Subscribe {
                conn,
                ch: c,
                occupancy,
            } => {
                let Some(s) = self.live(conn) else { return };
                let f = json!({"t": "subscribe", "channel": ch(c), "occupancy": occupancy});
                self.send(s, f);
            }
            Op::Unsubscribe { conn, ch: c } => {
                let Some(s) = self.live(conn) else { return };
                self.send(s, json!({"t": "unsubscribe", "channel": ch(c)}));
            }
            Op::Enter {
                conn,
                ch: c,
                data: d,
                subscribe,
            } => {
                let Some(s) = self.live(conn) else { return };
                let mut f = json!({"t": "enter", "channel": ch(c), "subscribe": subscribe});
                if let Some(d) = d {
                    f["data"] = data(d);
                }
                self.send(s, f);
            }
            Op::Update {
                conn,
                ch: c,
                data: d,
            } => {
                let Some(s) = self.live(conn) else { return };
                self.send(s, json!({"t": "update", "channel": ch(c), "data": data(d)}));
            }
            Op::Leave { conn, ch: c } => {
                let Some(s) = self.live(conn) else { return };
                self.send(s, json!({"t": "leave", "channel": ch(c)}));
            }
            Op::Status { conn, away } => {
                let Some(s) = self.live(conn) else { return };
                let status = if away { "away" } else { "online" };
                self.send(s, json!({"t": "status", "status": status}));
            }
            Op::Watch { conn, users: m } => {
                let Some(s) = self.live(conn) else { return };
                self.send(s, json!({"t": "watch", "users": users(m)}));
            }
            Op::Unwatch { conn, users: m } => {
                let Some(s) = self.live(conn) else { return };
                self.send(s, json!({"t": "unwatch", "users": users(m)}));
            }
            Op::Publish { conn, ch: c } => {
                let Some(s) = self.live(conn) else { return };
                self.send(
                    s,
                    json!({"t": "publish", "channel": ch(c), "data": {"hi": c}}),
                );
            }
            Op::Refresh {
                conn,
                claims,
                other_user,
            } => {
                let Some(s) = self.live(conn) else { return };
                let id = self.clients[s].id;
                let user = match (&self.clients[s].ident.user, other_user) {
                    (Some(u), false) => Some(u.clone()),
                    (Some(u), true) => Some(format!("{u}x")),
                    (None, _) => Some(USERS[0].to_owned()),
                };
                let ident = identity(user.as_deref(), claims);
                let same = self.clients[s].ident.user == ident.user;
                let res = self.d.refresh(id, ident.clone());
                if res.is_ok() != same {
                    fail(format!("refresh to {user:?} of conn {id}: {res:?}"));
                }
                if res.is_ok() {
                    self.clients[s].ident = ident;
                }
                self.absorb();
            }
            Op::Disconnect { conn } => {
                let Some(s) = self.live(conn) else { return };
                self.disconnect(s);
            }
            Op::Resume { conn, as_other } => {
                if self.clients.is_empty() {
                    return;
                }
                let s = conn as usize % self.clients.len();
                let id = self.clients[s].id;
                let ident = if as_other {
                    let other = match &self.clients[s].ident.user {
                        Some(u) if u == USERS[0] => Some(USERS[1]),
                        Some(_) => None,
                        None => Some(USERS[0]),
                    };
                    identity(other, 0)
                } else {
                    self.clients[s].ident.clone()
                };
                self.connect(ident, Some(id));
            }
            Op::Bye { conn } => {
                let Some(s) = self.live(conn) else { return };
                self.send(s, json!({"t": "bye"}));
                if !self.clients[s].gone {
                    fail(format!(
                        "bye of conn {} did not close it",
                        self.clients[s].id
                    ));
                }
            }
            Op::Kick { user } => {
                let user = USERS[user as usize % USERS.len()];
                let n = self.d.kick(user);
                let mine: Vec<usize> = (0..self.clients.len())
                    .filter(|&k| {
                        let c = &self.clients[k];
                        !c.gone && c.ident.user.as_deref() == Some(user)
                    })
                    .collect();
                if n != mine.len() {
                    fail(format!("kick_user({user}) = {n}, held {}", mine.len()));
                }
                self.absorb();
                for k in mine {
                    self.clients[k].gone = true;
                }
            }
            Op::Advance { ms } => self.advance(u64::from(ms) * 10),
            Op::Raw { conn, text } => {
                let Some(s) = self.live(conn) else { return };
                self.request(s, &text);
            }
        }
    }

    /// Past the grace of every connection detached now, and the coalescing
    /// windows and occupancy throttles that its end opens.
    fn pass_grace(&mut self) {
        for _ in 0..3 {
            self.advance(GRACE * 6 / 10);
        }
    }

    /// Every connection goes, grace passes: nobody is left anywhere.
    fn finish(&mut self) {
        // Observers from a user nobody else is: one per channel (a
        // connection holds three at most), each watching every user.
        let mut observers = Vec::new();
        for name in CHANNELS {
            self.connect(identity(Some("observer"), 0), None);
            let s = self.clients.len() - 1;
            observers.push(s);
            self.send(s, json!({"t": "subscribe", "channel": name}));
            self.send(s, json!({"t": "watch", "users": USERS}));
        }
        // Every other socket closes; live guests stay and watch.
        for s in 0..self.clients.len() {
            let c = &self.clients[s];
            if c.live && !c.gone && !c.guest() && !observers.contains(&s) {
                self.disconnect(s);
            }
        }
        self.pass_grace();
        if self.d.eng.member_count() != 0 {
            fail(format!("{} members after grace", self.d.eng.member_count()));
        }
        for name in CHANNELS {
            let left = self.d.eng.member_ids(name);
            if !left.is_empty() {
                fail(format!("ghosts in {name} after grace: {left:?}"));
            }
        }
        for u in USERS {
            let p = self.d.eng.presence(self.d.now, u);
            if p.status != UserStatus::Offline {
                fail(format!("{u} is {:?} after grace", p.status));
            }
        }
        if let Some((u, c)) = self.joined.iter().next() {
            fail(format!("{u} joined {c} and never left"));
        }
        for c in self.clients.iter().filter(|c| c.live && !c.gone) {
            for (name, view) in &c.views.channels {
                if !view.members.is_empty() || view.in_sync {
                    fail(format!("conn {} still sees {name}: {view:?}", c.id));
                }
            }
            for (u, p) in &c.views.presence {
                if p["status"] != "offline" {
                    fail(format!("conn {} still sees {u} as {p}", c.id));
                }
            }
        }
        for s in 0..self.clients.len() {
            if self.clients[s].live && !self.clients[s].gone {
                self.disconnect(s);
            }
        }
        self.pass_grace();
        let e = &self.d.eng;
        let counts = (
            e.connection_count(),
            e.users_present(),
            e.channel_count(),
            e.member_count(),
        );
        if counts != (0, 0, 0, 0) {
            fail(format!(
                "left at the end (conns, users, channels, members): {counts:?}"
            ));
        }
        if let Some(t) = e.next_deadline() {
            fail(format!("a timer left at the end: {t}"));
        }
        if let Some((u, s)) = self.status.iter().find(|(_, s)| **s != UserStatus::Offline) {
            fail(format!("{u} ends {s:?}"));
        }
    }
}

/// A frame for a guest: members are `user` and public `data` only, watched
/// presence is the status only.
fn check_guest_frame(f: &Value) {
    let member = |m: &Value| {
        let Some(m) = m.as_object() else {
            fail(format!("member is not an object: {f}"));
        };
        if m.keys().any(|k| k != "user" && k != "data") {
            fail(format!("a guest sees {m:?}"));
        }
        let data = m.get("data").and_then(Value::as_object);
        let public = |d: &Map<String, Value>| -> bool {
            d.iter().all(|(k, v)| match k.as_str() {
                "info" => v
                    .as_object()
                    .is_some_and(|i| i.keys().all(|k| PUBLIC_INFO.contains(&k.as_str()))),
                k => PUBLIC_TOP.contains(&k),
            })
        };
        if !data.is_some_and(public) {
            fail(format!("a guest sees private data: {m:?}"));
        }
    };
    match f["t"].as_str() {
        Some("sync") => f["members"]
            .as_array()
            .into_iter()
            .flatten()
            .for_each(member),
        Some("join") | Some("update") => member(&f["member"]),
        Some("diff") => {
            for k in ["joins", "updates"] {
                f[k].as_array().into_iter().flatten().for_each(member);
            }
        }
        Some("presence") => {
            for p in f["users"].as_object().into_iter().flat_map(|u| u.values()) {
                if p.as_object()
                    .is_none_or(|p| p.keys().any(|k| k != "status"))
                {
                    fail(format!("a guest sees presence {p}"));
                }
            }
        }
        _ => {}
    }
}

/// `ENGINE_OPS_TRACE=1` prints each operation (to replay a crash).
static TRACE: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var_os("ENGINE_OPS_TRACE").is_some());

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let mut h = Harness::new();
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = op(&mut u) else { break };
        if *TRACE {
            eprintln!("t+{}: {op:?}", h.d.now - support::T0);
        }
        h.step(op);
    }
    h.finish();
});
