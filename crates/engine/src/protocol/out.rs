//! Every frame the server sends, and how it is spelled on the wire
//! (PROTOCOL.md): the `*Out` structs are serialisation shapes only. Callers
//! pass plain values (a member's stored data, a sequence number, a list of
//! netted changes) and get a [`Frame`] back; what goes into a frame, and to
//! whom, is the engine's business.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Reason, RequestError, UserPresence, UserStatus};
use crate::data::{MemberData, Projection};
use crate::rules::ChannelRule;

/// One serialized server frame, cheap to clone for fan-out.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    pub fn from_json<T: Serialize>(value: &T) -> Frame {
        // Serializing our own frame types cannot fail: they hold no maps with
        // non-string keys and no types with fallible Serialize impls.
        Frame(Bytes::from(
            serde_json::to_vec(value).expect("server frames always serialize"),
        ))
    }

    pub fn as_str(&self) -> &str {
        // Only built from serde_json output, which is UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3339 time (UTC, milliseconds) from unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Serializes a unix-millisecond time as RFC 3339.
#[derive(Debug, Clone, Copy)]
pub struct Time(pub u64);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(self.0))
    }
}

/// `error` frame.
pub fn error_frame(id: Option<u64>, error: &RequestError) -> Frame {
    #[derive(Serialize)]
    struct ErrorOut<'a> {
        t: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        code: &'a str,
        message: &'a str,
    }
    Frame::from_json(&ErrorOut {
        t: "error",
        id,
        code: error.code.as_str(),
        message: error.message,
    })
}

/// `ok` frame without result fields.
pub fn ok_frame(id: u64) -> Frame {
    #[derive(Serialize)]
    struct OkOut {
        t: &'static str,
        id: u64,
    }
    Frame::from_json(&OkOut { t: "ok", id })
}

/// `welcome`, the answer to `hello`.
pub(crate) fn welcome_frame(
    id: Option<u64>,
    conn: u64,
    user: Option<&str>,
    session: &str,
    resumed: bool,
    heartbeat_ms: u64,
    grace_ms: u64,
) -> Frame {
    #[derive(Serialize)]
    struct WelcomeOut<'a> {
        t: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        conn: String,
        user: Option<&'a str>,
        session: &'a str,
        resumed: bool,
        heartbeat_ms: u64,
        grace_ms: u64,
    }
    Frame::from_json(&WelcomeOut {
        t: "welcome",
        id,
        conn: conn.to_string(),
        user,
        session,
        resumed,
        heartbeat_ms,
        grace_ms,
    })
}

/// `pong`, the answer to `ping`.
pub(crate) fn pong_frame() -> Frame {
    #[derive(Serialize)]
    struct PongOut {
        t: &'static str,
    }
    Frame::from_json(&PongOut { t: "pong" })
}

/// `message`: a publish (or an HTTP broadcast, `from: None`) to subscribers.
pub(crate) fn message_frame(channel: &str, from: Option<&str>, data: &Value) -> Frame {
    #[derive(Serialize)]
    struct MessageOut<'a> {
        t: &'static str,
        channel: &'a str,
        from: Option<&'a str>,
        data: &'a Value,
    }
    Frame::from_json(&MessageOut {
        t: "message",
        channel,
        from,
        data,
    })
}

/// `unsubscribed`: the server ended the connection's subscription and
/// membership of a channel it may no longer see (PROTOCOL.md §4).
pub(crate) fn unsubscribed_frame(channel: &str) -> Frame {
    #[derive(Serialize)]
    struct UnsubscribedOut<'a> {
        t: &'static str,
        channel: &'a str,
        reason: &'static str,
    }
    Frame::from_json(&UnsubscribedOut {
        t: "unsubscribed",
        channel,
        reason: "forbidden",
    })
}

/// A watched user's presence as one watcher sees it: whole, or its status
/// alone for a guest (PROTOCOL.md §6: no `since`, no `last_seen`).
#[derive(Serialize)]
#[serde(untagged)]
enum PresenceOut {
    Full {
        status: UserStatus,
        since: Option<Time>,
        last_seen: Option<Time>,
    },
    StatusOnly {
        status: UserStatus,
    },
}

impl PresenceOut {
    fn of(p: UserPresence, status_only: bool) -> Self {
        if status_only {
            PresenceOut::StatusOnly { status: p.status }
        } else {
            PresenceOut::Full {
                status: p.status,
                since: p.since.map(Time),
                last_seen: p.last_seen.map(Time),
            }
        }
    }
}

/// `presence`: the status of watched users, keyed (and so ordered) by id;
/// `status_only` for a guest watcher.
pub(crate) fn presence_frame<'a>(
    users: impl Iterator<Item = (&'a str, UserPresence)>,
    status_only: bool,
) -> Frame {
    #[derive(Serialize)]
    struct PresenceFrameOut<'a> {
        t: &'static str,
        users: BTreeMap<&'a str, PresenceOut>,
    }
    let users = users
        .map(|(u, p)| (u, PresenceOut::of(p, status_only)))
        .collect();
    Frame::from_json(&PresenceFrameOut {
        t: "presence",
        users,
    })
}

#[derive(Serialize)]
pub(crate) struct MemberOut<'a> {
    user: &'a str,
    data: &'a RawValue,
    conns: u32,
    since: Time,
}

#[derive(Serialize)]
pub(crate) struct PublicMemberOut<'a> {
    user: &'a str,
    data: Projection<'a>,
}

/// A member as one subscriber sees it: whole, or a guest's public projection.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum MemberView<'a> {
    Full(MemberOut<'a>),
    Public(PublicMemberOut<'a>),
}

/// A member object: whole, or projected by the channel's public rule.
pub(crate) fn member_view<'a>(
    user: &'a str,
    data: &'a MemberData,
    conns: u32,
    since: u64,
    public: Option<&ChannelRule>,
) -> MemberView<'a> {
    match public {
        None => MemberView::Full(MemberOut {
            user,
            data: data.raw(),
            conns,
            since: Time(since),
        }),
        Some(rule) => MemberView::Public(PublicMemberOut {
            user,
            data: data.project(rule),
        }),
    }
}

/// One netted member change of a channel event. A joined or updated member
/// is shown as it is now (`None` only if it is gone, which netting rules out).
pub(crate) enum Change<'a> {
    Joined(Option<MemberView<'a>>),
    Updated(Option<MemberView<'a>>),
    Left { user: &'a str, reason: Reason },
}

/// `sync` frames of a snapshot, `chunk` members each (one empty frame for
/// an empty channel); every frame but the last says `more`.
pub(crate) fn snapshot_frames(
    name: &str,
    seq: u64,
    members: &[MemberView],
    chunk: usize,
) -> Vec<Frame> {
    #[derive(Serialize)]
    struct SyncOut<'a> {
        t: &'static str,
        channel: &'a str,
        seq: u64,
        members: &'a [MemberView<'a>],
        more: bool,
    }
    if members.is_empty() {
        return vec![Frame::from_json(&SyncOut {
            t: "sync",
            channel: name,
            seq,
            members: &[],
            more: false,
        })];
    }
    let n = members.len().div_ceil(chunk);
    members
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            Frame::from_json(&SyncOut {
                t: "sync",
                channel: name,
                seq,
                members: part,
                more: i + 1 < n,
            })
        })
        .collect()
}

/// The event of one flush: `join`, `update` or `leave` for a single change,
/// else a `diff` of them all (in the order given).
pub(crate) fn event_frame(name: &str, seq: u64, changes: Vec<Change>) -> Frame {
    #[derive(Serialize)]
    struct OneOut<'a> {
        t: &'static str,
        channel: &'a str,
        seq: u64,
        member: Option<MemberView<'a>>,
    }
    #[derive(Serialize)]
    struct LeaveOut<'a> {
        t: &'static str,
        channel: &'a str,
        seq: u64,
        user: &'a str,
        reason: Reason,
    }
    #[derive(Serialize)]
    struct DiffOut<'a> {
        t: &'static str,
        channel: &'a str,
        seq: u64,
        joins: Vec<MemberView<'a>>,
        updates: Vec<MemberView<'a>>,
        leaves: Vec<&'a str>,
    }
    if changes.len() == 1 {
        let change = changes.into_iter().next().expect("one change");
        return match change {
            Change::Joined(member) => Frame::from_json(&OneOut {
                t: "join",
                channel: name,
                seq,
                member,
            }),
            Change::Updated(member) => Frame::from_json(&OneOut {
                t: "update",
                channel: name,
                seq,
                member,
            }),
            Change::Left { user, reason } => Frame::from_json(&LeaveOut {
                t: "leave",
                channel: name,
                seq,
                user,
                reason,
            }),
        };
    }
    let mut diff = DiffOut {
        t: "diff",
        channel: name,
        seq,
        joins: Vec::new(),
        updates: Vec::new(),
        leaves: Vec::new(),
    };
    for change in changes {
        match change {
            Change::Joined(member) => diff.joins.extend(member),
            Change::Updated(member) => diff.updates.extend(member),
            Change::Left { user, .. } => diff.leaves.push(user),
        }
    }
    Frame::from_json(&diff)
}

/// `occupancy` of a channel.
pub(crate) fn occupancy_frame(name: &str, (members, connections): (usize, usize)) -> Frame {
    #[derive(Serialize)]
    struct OccupancyOut<'a> {
        t: &'static str,
        channel: &'a str,
        members: usize,
        connections: usize,
    }
    Frame::from_json(&OccupancyOut {
        t: "occupancy",
        channel: name,
        members,
        connections,
    })
}
