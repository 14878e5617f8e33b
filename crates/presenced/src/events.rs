//! Every presence event the server tells the outside world about, named in
//! one place: the webhook payloads (queued by the store) and the dashboard's
//! live feed (`GET /v1/events`) are both built here, from the engine's
//! [`PresenceEvent`].
//!
//! Webhooks carry `user.online`, `user.away`, `user.offline`,
//! `member.joined` and `member.left`; the feed shows those and
//! `member.updated` (member data changes are too frequent to be webhooks).

use presenced_engine::{PresenceEvent, Reason, rfc3339};
use serde::Serialize;
use serde_json::{Map, Value};

/// The external name of an event (`user.online`, `member.left`, ...).
pub fn kind(event: &PresenceEvent) -> &'static str {
    match event {
        PresenceEvent::UserOnline { .. } => "user.online",
        PresenceEvent::UserAway { .. } => "user.away",
        PresenceEvent::UserOffline { .. } => "user.offline",
        PresenceEvent::MemberJoined { .. } => "member.joined",
        PresenceEvent::MemberUpdated { .. } => "member.updated",
        PresenceEvent::MemberLeft { .. } => "member.left",
    }
}

/// The user an event is about.
pub fn user(event: &PresenceEvent) -> &str {
    match event {
        PresenceEvent::UserOnline { user, .. }
        | PresenceEvent::UserAway { user, .. }
        | PresenceEvent::UserOffline { user, .. }
        | PresenceEvent::MemberJoined { user, .. }
        | PresenceEvent::MemberUpdated { user, .. }
        | PresenceEvent::MemberLeft { user, .. } => user,
    }
}

/// Whether the event is sent to webhooks.
pub fn is_webhook(event: &PresenceEvent) -> bool {
    !matches!(event, PresenceEvent::MemberUpdated { .. })
}

/// An event's fields, borrowed, in the shape both outputs serialize.
#[derive(Debug, Serialize)]
struct EventOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Reason>,
    /// The feed only: when an offline user was last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen: Option<String>,
    /// The feed only: member data.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Map<String, Value>>,
}

impl<'a> EventOut<'a> {
    fn of(event: &'a PresenceEvent) -> EventOut<'a> {
        let mut out = EventOut {
            id: None,
            kind: kind(event),
            user: "",
            channel: None,
            at: String::new(),
            reason: None,
            last_seen: None,
            data: None,
        };
        let at = match event {
            PresenceEvent::UserOnline { user, at } | PresenceEvent::UserAway { user, at } => {
                out.user = user;
                *at
            }
            PresenceEvent::UserOffline {
                user,
                at,
                last_seen,
                reason,
            } => {
                out.user = user;
                out.reason = Some(*reason);
                out.last_seen = Some(rfc3339(*last_seen));
                *at
            }
            PresenceEvent::MemberJoined {
                user,
                channel,
                at,
                data,
            }
            | PresenceEvent::MemberUpdated {
                user,
                channel,
                at,
                data,
            } => {
                out.user = user;
                out.channel = Some(channel);
                out.data = Some(data);
                *at
            }
            PresenceEvent::MemberLeft {
                user,
                channel,
                at,
                reason,
            } => {
                out.user = user;
                out.channel = Some(channel);
                out.reason = Some(*reason);
                *at
            }
        };
        out.at = rfc3339(at);
        out
    }
}

/// A webhook event: its `id`, the user it is about, when it happened (unix
/// ms) and its JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub id: String,
    pub user: String,
    pub at: u64,
    pub payload: String,
}

/// The webhook event of a presence event, with a fresh `id`; `None` for
/// events that are not webhooks.
pub fn webhook_event(event: &PresenceEvent) -> Option<WebhookEvent> {
    if !is_webhook(event) {
        return None;
    }
    let id = crate::clock::random_token();
    let payload = webhook_json(event, &id)?;
    let at = match event {
        PresenceEvent::UserOnline { at, .. }
        | PresenceEvent::UserAway { at, .. }
        | PresenceEvent::UserOffline { at, .. }
        | PresenceEvent::MemberJoined { at, .. }
        | PresenceEvent::MemberLeft { at, .. } => *at,
        PresenceEvent::MemberUpdated { .. } => return None,
    };
    Some(WebhookEvent {
        id,
        user: user(event).to_owned(),
        at,
        payload,
    })
}

fn webhook_json(event: &PresenceEvent, id: &str) -> Option<String> {
    let mut out = EventOut::of(event);
    out.id = Some(id);
    out.last_seen = None;
    out.data = None;
    // A struct of strings and a JSON map always serializes.
    serde_json::to_string(&out).ok()
}

/// The event as the live feed (and the dashboard) shows it.
pub fn feed_json(event: &PresenceEvent) -> Value {
    serde_json::to_value(EventOut::of(event)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn webhook_payloads_have_the_documented_fields_only() {
        let offline = PresenceEvent::UserOffline {
            user: Arc::from("bob"),
            at: 1_500,
            last_seen: 1_400,
            reason: Reason::Timeout,
        };
        let v: Value = serde_json::from_str(&webhook_json(&offline, "id1").unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "id1", "type": "user.offline", "user": "bob",
                "at": "1970-01-01T00:00:01.500Z", "reason": "timeout"})
        );
        let joined = PresenceEvent::MemberJoined {
            user: Arc::from("a"),
            channel: Arc::from("room:1"),
            at: 0,
            data: Map::new(),
        };
        let hook = webhook_event(&joined).unwrap();
        assert_eq!((hook.user.as_str(), hook.at, hook.id.len()), ("a", 0, 22));
        let v: Value = serde_json::from_str(&hook.payload).unwrap();
        assert_eq!(v["id"], hook.id);
        let v: Value = serde_json::from_str(&webhook_json(&joined, "id2").unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "id2", "type": "member.joined", "user": "a",
                "channel": "room:1", "at": "1970-01-01T00:00:00.000Z"})
        );
        let updated = PresenceEvent::MemberUpdated {
            user: Arc::from("a"),
            channel: Arc::from("room:1"),
            at: 0,
            data: Map::new(),
        };
        assert_eq!(webhook_event(&updated), None);
    }

    #[test]
    fn the_feed_uses_webhook_types_and_the_events_own_time() {
        let v = feed_json(&PresenceEvent::MemberLeft {
            user: "u1".into(),
            channel: "room:1".into(),
            at: 0,
            reason: Reason::Kicked,
        });
        assert_eq!(v["type"], "member.left");
        assert_eq!(v["reason"], "kicked");
        assert_eq!(v["channel"], "room:1");
        assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
        let v = feed_json(&PresenceEvent::UserOffline {
            user: "u1".into(),
            at: 1_000,
            last_seen: 900,
            reason: Reason::Timeout,
        });
        assert_eq!(v["last_seen"], "1970-01-01T00:00:00.900Z");
        let v = feed_json(&PresenceEvent::MemberUpdated {
            user: "u1".into(),
            channel: "room:1".into(),
            at: 2_000,
            data: Map::new(),
        });
        assert_eq!(v["type"], "member.updated");
        assert_eq!(v["at"], "1970-01-01T00:00:02.000Z");
    }
}
