//! Test driver shared by the engine's integration tests: an [`Engine`] on a
//! fake clock (plain unix milliseconds), with every effect parsed and filed
//! per connection, plus a client-side reconstruction of channel views from
//! `sync`/`join`/`update`/`leave`/`diff`/`occupancy` frames.
//!
//! Cargo also builds this file as its own (empty) test target.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use presenced_engine::{
    Attached, ChannelRule, ChannelRules, ConnId, Effect, Effects, Engine, EngineConfig, Frame,
    Identity, PresenceEvent, RequestError, parse_client_frame,
};
use serde_json::{Map, Value, json};

/// A start time far from zero, so "0" never hides a bug.
pub const T0: u64 = 1_700_000_000_000;

/// Engine configuration used by most tests: short grace, default windows.
/// After a quiet 100 ms, one change is sent at once and opens a coalescing
/// window: the window mechanics with the smallest token bucket (tests of
/// the bucket set their own).
pub fn cfg() -> EngineConfig {
    EngineConfig {
        grace_ms: 1_000,
        coalesce_ms: 50,
        immediate_burst: 1,
        immediate_per_sec: 10,
        occupancy_interval_ms: 1_000,
        ..EngineConfig::default()
    }
}

/// A rule with the permissive defaults and the given pattern.
pub fn rule(pattern: &str) -> ChannelRule {
    ChannelRule {
        pattern: pattern.into(),
        ..ChannelRule::default_for_unmatched()
    }
}

pub fn rules(list: Vec<ChannelRule>) -> ChannelRules {
    ChannelRules::new(list)
}

pub fn user(id: &str) -> Identity {
    Identity {
        user: Some(id.into()),
        info: None,
        channels: None,
    }
}

pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

pub struct Driver {
    pub eng: Engine,
    pub now: u64,
    next_conn: ConnId,
    next_session: u64,
    /// Every frame each connection received, in order (parsed on `take`:
    /// big snapshots nobody looks at are never parsed).
    pub frames: BTreeMap<ConnId, Vec<Frame>>,
    pub events: Vec<PresenceEvent>,
    pub closes: Vec<(ConnId, u16, &'static str)>,
    /// Raw effects of the latest engine call.
    pub last: Vec<Effect>,
    /// Latest session token per connection (from its welcome).
    pub sessions: HashMap<ConnId, String>,
    pub deadline_moved: bool,
}

impl Driver {
    pub fn new(cfg: EngineConfig) -> Self {
        Driver {
            eng: Engine::new(cfg),
            now: T0,
            next_conn: 1,
            next_session: 1,
            frames: BTreeMap::new(),
            events: Vec::new(),
            closes: Vec::new(),
            last: Vec::new(),
            sessions: HashMap::new(),
            deadline_moved: false,
        }
    }

    pub fn absorb(&mut self, fx: Effects) {
        self.deadline_moved = fx.deadline_moved;
        for e in &fx.items {
            match e {
                Effect::Reply { conn, frame } | Effect::Push { conn, frame } => {
                    self.frames.entry(*conn).or_default().push(frame.clone());
                }
                Effect::Close { conn, code, reason } => self.closes.push((*conn, *code, reason)),
                Effect::Event(ev) => self.events.push(ev.clone()),
            }
        }
        self.last = fx.items;
    }

    /// `hello` with an identity and an optional resume token; returns what
    /// the engine attached.
    pub fn connect(&mut self, ident: Identity, resume: Option<&str>) -> Attached {
        let conn = self.next_conn;
        self.next_conn += 1;
        let session = format!("session-{}", self.next_session);
        self.next_session += 1;
        let mut fx = Effects::new();
        let a = self.eng.connect(
            self.now,
            conn,
            ident,
            resume,
            session.clone(),
            Some(0),
            &mut fx,
        );
        self.absorb(fx);
        self.sessions.insert(a.conn, session);
        a
    }

    pub fn hello(&mut self, user_id: &str) -> ConnId {
        let a = self.connect(user(user_id), None);
        assert!(!a.resumed);
        a.conn
    }

    pub fn hello_as(&mut self, ident: Identity) -> ConnId {
        let a = self.connect(ident, None);
        assert!(!a.resumed);
        a.conn
    }

    pub fn guest(&mut self) -> ConnId {
        self.hello_as(Identity::default())
    }

    pub fn session(&self, conn: ConnId) -> String {
        self.sessions[&conn].clone()
    }

    /// Sends one client frame (JSON text) from `conn`.
    pub fn req(&mut self, conn: ConnId, frame: Value) -> Result<(), RequestError> {
        let r = parse_client_frame(&frame.to_string())
            .unwrap_or_else(|e| panic!("test sent an unparsable frame {frame}: {e:?}"));
        let mut fx = Effects::new();
        let res = self.eng.request(self.now, conn, r.id, r.frame, &mut fx);
        self.absorb(fx);
        res
    }

    /// Like [`Driver::req`] but the request must succeed.
    pub fn ok(&mut self, conn: ConnId, frame: Value) {
        let f = frame.clone();
        if let Err(e) = self.req(conn, frame) {
            panic!("request {f} from conn {conn} failed: {e:?}");
        }
    }

    /// `refresh` of `conn` with an already verified identity (request id 0).
    pub fn refresh(&mut self, conn: ConnId, ident: Identity) -> Result<(), RequestError> {
        let mut fx = Effects::new();
        let res = self.eng.refresh(self.now, conn, Some(0), ident, &mut fx);
        self.absorb(fx);
        res
    }

    /// Advances the clock by `ms` and fires due timers.
    pub fn tick(&mut self, ms: u64) {
        self.now += ms;
        let mut fx = Effects::new();
        self.eng.tick(self.now, &mut fx);
        self.absorb(fx);
    }

    /// Advances the clock in steps of at most `step` ms, ticking each time.
    pub fn run_for(&mut self, total: u64, step: u64) {
        let end = self.now + total;
        while self.now < end {
            let d = step.min(end - self.now);
            self.tick(d);
        }
    }

    pub fn disconnect(&mut self, conn: ConnId) {
        let mut fx = Effects::new();
        self.eng.disconnect(self.now, conn, &mut fx);
        self.absorb(fx);
    }

    pub fn kick(&mut self, user_id: &str) -> usize {
        let mut fx = Effects::new();
        let n = self.eng.kick_user(self.now, user_id, &mut fx);
        self.absorb(fx);
        n
    }

    /// Frames `conn` received since the last `take`.
    pub fn take(&mut self, conn: ConnId) -> Vec<Value> {
        self.frames
            .remove(&conn)
            .unwrap_or_default()
            .iter()
            .map(parse)
            .collect()
    }

    /// Drops the frames `conn` received so far without parsing them.
    pub fn skip(&mut self, conn: ConnId) {
        self.frames.remove(&conn);
    }

    /// Frames of type `t` that `conn` received since the last `take`.
    pub fn take_t(&mut self, conn: ConnId, t: &str) -> Vec<Value> {
        self.take(conn)
            .into_iter()
            .filter(|f| f["t"] == t)
            .collect()
    }

    pub fn take_events(&mut self) -> Vec<PresenceEvent> {
        std::mem::take(&mut self.events)
    }

    /// Forgets every frame, event and close seen so far.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.events.clear();
        self.closes.clear();
    }

    /// Frames for `conn` in the latest call, in effect order.
    pub fn last_frames(&self, conn: ConnId) -> Vec<Value> {
        self.last
            .iter()
            .filter_map(|e| match e {
                Effect::Reply { conn: c, frame } | Effect::Push { conn: c, frame }
                    if *c == conn =>
                {
                    Some(serde_json::from_str(frame.as_str()).unwrap())
                }
                _ => None,
            })
            .collect()
    }
}

pub fn parse(frame: &Frame) -> Value {
    serde_json::from_str(frame.as_str())
        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {frame:?}"))
}

/// Convenience constructors for client frames.
pub fn subscribe(id: u64, ch: &str) -> Value {
    json!({"t": "subscribe", "id": id, "channel": ch})
}
pub fn subscribe_occ(id: u64, ch: &str) -> Value {
    json!({"t": "subscribe", "id": id, "channel": ch, "occupancy": true})
}
pub fn enter(id: u64, ch: &str) -> Value {
    json!({"t": "enter", "id": id, "channel": ch})
}
pub fn enter_with(id: u64, ch: &str, data: Value) -> Value {
    json!({"t": "enter", "id": id, "channel": ch, "data": data})
}
/// `enter` with `subscribe: false` (the extension): a member, not a subscriber.
pub fn enter_quiet(id: u64, ch: &str) -> Value {
    json!({"t": "enter", "id": id, "channel": ch, "subscribe": false})
}
pub fn enter_quiet_with(id: u64, ch: &str, data: Value) -> Value {
    json!({"t": "enter", "id": id, "channel": ch, "data": data, "subscribe": false})
}
pub fn unsubscribe(id: u64, ch: &str) -> Value {
    json!({"t": "unsubscribe", "id": id, "channel": ch})
}
pub fn update(id: u64, ch: &str, data: Value) -> Value {
    json!({"t": "update", "id": id, "channel": ch, "data": data})
}
pub fn leave(id: u64, ch: &str) -> Value {
    json!({"t": "leave", "id": id, "channel": ch})
}

/// One channel as a client reconstructs it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct View {
    pub seq: u64,
    /// user id → member object as last received.
    pub members: BTreeMap<String, Value>,
    /// A chunked `sync` is under way (the last chunk said `more: true`).
    pub in_sync: bool,
    pub occupancy: Option<(u64, u64)>,
}

impl View {
    pub fn ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    pub fn data(&self) -> BTreeMap<String, Value> {
        self.members
            .iter()
            .map(|(k, v)| (k.clone(), v["data"].clone()))
            .collect()
    }
}

/// All channel views of one connection.
#[derive(Debug, Default, Clone)]
pub struct Views {
    pub channels: BTreeMap<String, View>,
    /// user → status from the latest `presence` frame mentioning it.
    pub presence: BTreeMap<String, Value>,
}

fn member_user(m: &Value) -> Result<String, String> {
    m["user"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("member without user: {m}"))
}

impl Views {
    /// Applies one received frame. Errors on anything a careful client would
    /// reject: a `seq` gap, a join of a present member, an event before the
    /// first `sync`, chunks with different `seq`s.
    pub fn apply(&mut self, f: &Value) -> Result<(), String> {
        let t = f["t"]
            .as_str()
            .ok_or_else(|| format!("frame without t: {f}"))?;
        let channel = f["channel"].as_str().map(str::to_owned);
        match t {
            "sync" => {
                let ch = channel.ok_or("sync without channel")?;
                let seq = f["seq"].as_u64().ok_or("sync without seq")?;
                let members = f["members"].as_array().ok_or("sync without members")?;
                let more = f["more"].as_bool().ok_or("sync without more")?;
                let view = self.channels.entry(ch.clone()).or_default();
                if view.in_sync {
                    if view.seq != seq {
                        return Err(format!(
                            "sync chunks of {ch} with seq {} then {seq}",
                            view.seq
                        ));
                    }
                } else {
                    view.members.clear();
                    view.seq = seq;
                }
                for m in members {
                    let u = member_user(m)?;
                    if view.members.insert(u.clone(), m.clone()).is_some() {
                        return Err(format!("sync of {ch} lists {u} twice"));
                    }
                }
                view.in_sync = more;
            }
            "join" | "update" | "leave" | "diff" => {
                let ch = channel.ok_or("event without channel")?;
                let seq = f["seq"].as_u64().ok_or("event without seq")?;
                let view = self
                    .channels
                    .get_mut(&ch)
                    .ok_or_else(|| format!("{t} for {ch} before any sync: {f}"))?;
                if view.in_sync {
                    return Err(format!("{t} for {ch} in the middle of a chunked sync"));
                }
                if seq != view.seq + 1 {
                    return Err(format!("seq gap on {ch}: had {}, got {t} {seq}", view.seq));
                }
                view.seq = seq;
                let join = |view: &mut View, m: &Value| -> Result<(), String> {
                    let u = member_user(m)?;
                    if view.members.insert(u.clone(), m.clone()).is_some() {
                        return Err(format!("join of {u} who is already a member of {ch}"));
                    }
                    Ok(())
                };
                let upd = |view: &mut View, m: &Value| -> Result<(), String> {
                    let u = member_user(m)?;
                    match view.members.get_mut(&u) {
                        Some(slot) => {
                            *slot = m.clone();
                            Ok(())
                        }
                        None => Err(format!("update of {u} who is not a member of {ch}")),
                    }
                };
                let gone = |view: &mut View, u: &str| -> Result<(), String> {
                    view.members
                        .remove(u)
                        .map(|_| ())
                        .ok_or_else(|| format!("leave of {u} who is not a member of {ch}"))
                };
                match t {
                    "join" => join(view, &f["member"])?,
                    "update" => upd(view, &f["member"])?,
                    "leave" => {
                        let r = f["reason"].as_str().unwrap_or("");
                        if !["left", "timeout", "logout", "kicked"].contains(&r) {
                            return Err(format!("leave with reason {r:?}"));
                        }
                        gone(view, f["user"].as_str().ok_or("leave without user")?)?
                    }
                    _ => {
                        let list = |k: &str| f[k].as_array().cloned().unwrap_or_default();
                        let (joins, updates, leaves) =
                            (list("joins"), list("updates"), list("leaves"));
                        if joins.len() + updates.len() + leaves.len() < 2 {
                            return Err(format!("diff with fewer than two changes: {f}"));
                        }
                        for m in &joins {
                            join(view, m)?;
                        }
                        for m in &updates {
                            upd(view, m)?;
                        }
                        for u in &leaves {
                            gone(view, u.as_str().ok_or("leave id not a string")?)?;
                        }
                    }
                }
            }
            "occupancy" => {
                let ch = channel.ok_or("occupancy without channel")?;
                let view = self
                    .channels
                    .get_mut(&ch)
                    .ok_or_else(|| format!("occupancy for {ch} before any sync"))?;
                let m = f["members"].as_u64().ok_or("occupancy without members")?;
                let c = f["connections"]
                    .as_u64()
                    .ok_or("occupancy without connections")?;
                view.occupancy = Some((m, c));
            }
            "presence" => {
                let users = f["users"].as_object().ok_or("presence without users")?;
                for (u, p) in users {
                    self.presence.insert(u.clone(), p.clone());
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub fn apply_all(&mut self, frames: &[Value]) -> Result<(), String> {
        frames.iter().try_for_each(|f| self.apply(f))
    }
}
