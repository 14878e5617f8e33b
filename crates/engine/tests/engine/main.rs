//! Scenario tests of the presence engine on a fake clock (docs/protocol.md),
//! one module per part of the protocol; helpers several of them use are here
//! or imported here from their module.

#[path = "../support.rs"]
mod support;

mod channels;
mod enter_only;
mod guests;
mod member_data;
mod refusals;
mod rights;
mod status;
mod users;

use guests::*;
use presenced_engine::{
    Effects, EngineConfig, ErrorCode, Identity, PresenceEvent, Reason, RestoredUser, SessionRecord,
    UserStatus, parse_client_frame, rfc3339,
};
use refusals::*;
use serde_json::{Value, json};
use support::*;

fn ev_user_offline(events: &[PresenceEvent]) -> Vec<(String, u64, u64, Reason)> {
    events
        .iter()
        .filter_map(|e| match e {
            PresenceEvent::UserOffline {
                user,
                at,
                last_seen,
                reason,
            } => Some((user.to_string(), *at, *last_seen, *reason)),
            _ => None,
        })
        .collect()
}

fn ev_member_left(events: &[PresenceEvent]) -> Vec<(String, String, Reason)> {
    events
        .iter()
        .filter_map(|e| match e {
            PresenceEvent::MemberLeft {
                user,
                channel,
                reason,
                ..
            } => Some((user.to_string(), channel.to_string(), *reason)),
            _ => None,
        })
        .collect()
}

/// An observer connection subscribed to `ch`, frames cleared.
fn observer(d: &mut Driver, name: &str, ch: &str) -> u64 {
    let o = d.hello(name);
    d.ok(o, subscribe(1, ch));
    d.take(o);
    o
}

fn event_frames(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| ["join", "update", "leave", "diff"].contains(&f["t"].as_str().unwrap_or("")))
        .cloned()
        .collect()
}
