//! Reading frames: predicates on single frames ([`is_join`], [`syncs`], …)
//! and [`View`], a channel's member map built from `sync` and the events
//! after it.

use std::collections::BTreeMap;

use serde_json::Value;

/// The `sync` frames for `channel` among `frames`.
pub fn syncs(frames: &[Value], channel: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["t"] == "sync" && f["channel"] == channel)
        .cloned()
        .collect()
}

/// The members of a one-chunk sync, by user.
pub fn members_of(sync: &Value) -> BTreeMap<String, Value> {
    sync["members"]
        .as_array()
        .unwrap_or_else(|| panic!("sync without members array: {sync}"))
        .iter()
        .map(|m| {
            (
                m["user"]
                    .as_str()
                    .unwrap_or_else(|| panic!("member without user: {m}"))
                    .to_owned(),
                m.clone(),
            )
        })
        .collect()
}

/// An event frame (`join`/`update`/`leave`/`diff`) for `channel`.
pub fn is_event(f: &Value, channel: &str) -> bool {
    matches!(f["t"].as_str(), Some("join" | "update" | "leave" | "diff")) && f["channel"] == channel
}

pub fn is_join(f: &Value, channel: &str, user: &str) -> bool {
    f["t"] == "join" && f["channel"] == channel && f["member"]["user"] == user
}

pub fn is_update(f: &Value, channel: &str, user: &str) -> bool {
    f["t"] == "update" && f["channel"] == channel && f["member"]["user"] == user
}

pub fn is_leave(f: &Value, channel: &str, user: &str) -> bool {
    f["t"] == "leave" && f["channel"] == channel && f["user"] == user
}

/// Whether `f` reports any change about `user` in any channel or presence.
pub fn mentions_user(f: &Value, user: &str) -> bool {
    match f["t"].as_str() {
        Some("join" | "update") => f["member"]["user"] == user,
        Some("leave") => f["user"] == user,
        Some("diff") => {
            let has = |k: &str, by_obj: bool| {
                f[k].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|m| if by_obj { m["user"] == user } else { m == user })
                })
            };
            has("joins", true) || has("updates", true) || has("leaves", false)
        }
        Some("presence") => f["users"].get(user).is_some(),
        _ => false,
    }
}

/// A subscriber's picture of one channel, built from the frames it receives.
#[derive(Debug, Clone)]
pub struct View {
    pub channel: String,
    pub seq: Option<u64>,
    pub members: BTreeMap<String, Value>,
    /// A snapshot is being received (a chunk with `more: true` came last).
    in_snapshot: bool,
    pub snapshot_chunks: Vec<usize>,
    /// Event frames (`join`/`update`/`leave`/`diff`) applied.
    pub events: usize,
}

impl View {
    pub fn new(channel: &str) -> View {
        View {
            channel: channel.to_owned(),
            seq: None,
            members: BTreeMap::new(),
            in_snapshot: false,
            snapshot_chunks: Vec::new(),
            events: 0,
        }
    }

    /// A whole snapshot has been received.
    pub fn complete(&self) -> bool {
        self.seq.is_some() && !self.in_snapshot
    }

    /// Applies `f` if it is about this channel; returns whether it was.
    /// Panics on a `seq` gap.
    pub fn apply(&mut self, f: &Value) -> bool {
        if f["channel"] != self.channel.as_str() {
            return false;
        }
        let t = f["t"].as_str().unwrap_or("");
        let seq = || {
            f["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("frame without integer seq: {f}"))
        };
        let user_of = |m: &Value| {
            m["user"]
                .as_str()
                .unwrap_or_else(|| panic!("member without user in {f}"))
                .to_owned()
        };
        match t {
            "sync" => {
                let s = seq();
                if self.in_snapshot {
                    assert_eq!(
                        Some(s),
                        self.seq,
                        "sync chunks of one snapshot must share seq: {f}"
                    );
                } else {
                    self.members.clear();
                    self.snapshot_chunks.clear();
                    self.seq = Some(s);
                }
                let ms = f["members"]
                    .as_array()
                    .unwrap_or_else(|| panic!("sync without members: {f}"));
                self.snapshot_chunks.push(ms.len());
                for m in ms {
                    self.members.insert(user_of(m), m.clone());
                }
                self.in_snapshot = f["more"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("sync without bool more: {f}"));
            }
            "join" | "update" | "leave" | "diff" => {
                let s = seq();
                let last = self
                    .seq
                    .unwrap_or_else(|| panic!("{t} before any sync: {f}"));
                assert!(
                    !self.in_snapshot,
                    "{t} in the middle of a chunked snapshot: {f}"
                );
                assert_eq!(
                    s,
                    last + 1,
                    "seq gap in {}: had {last}, got {f}",
                    self.channel
                );
                self.seq = Some(s);
                self.events += 1;
                match t {
                    "join" | "update" => {
                        self.members
                            .insert(user_of(&f["member"]), f["member"].clone());
                    }
                    "leave" => {
                        self.members.remove(
                            f["user"]
                                .as_str()
                                .unwrap_or_else(|| panic!("leave without user: {f}")),
                        );
                    }
                    _ => {
                        for m in f["joins"].as_array().into_iter().flatten() {
                            self.members.insert(user_of(m), m.clone());
                        }
                        for m in f["updates"].as_array().into_iter().flatten() {
                            self.members.insert(user_of(m), m.clone());
                        }
                        for u in f["leaves"].as_array().into_iter().flatten() {
                            self.members.remove(
                                u.as_str()
                                    .unwrap_or_else(|| panic!("leaves entry not a string: {f}")),
                            );
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }
}
