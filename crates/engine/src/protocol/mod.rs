//! Wire protocol v1: parsing client frames, and the words both directions
//! share (error codes, statuses, reasons).
//!
//! Parsing never echoes parser internals back: every failure maps to an
//! [`ErrorCode`] with a fixed, human-readable message. Every frame the server
//! sends is built in [`out`]; the engine decides what goes in a frame, never
//! how it is spelled.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::rules::valid_channel_name;

pub mod out;

pub use out::{Frame, Time, error_frame, ok_frame, rfc3339};

/// Most users one `watch` request may name.
pub const MAX_WATCH_PER_REQUEST: usize = 500;
/// Longest user id accepted in requests.
pub const MAX_USER_ID_BYTES: usize = 200;

/// Error codes of the protocol (PROTOCOL.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotMember,
    TooLarge,
    RateLimited,
    LimitExceeded,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotMember => "not_member",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A refused request: code plus a message safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: &'static str,
}

impl RequestError {
    pub const fn new(code: ErrorCode, message: &'static str) -> Self {
        RequestError { code, message }
    }
}

/// A connection's own status choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnStatus {
    Online,
    Away,
}

/// Aggregated status of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Online,
    Away,
    Offline,
}

/// Why a member left a channel or a user went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Left,
    Timeout,
    Logout,
    Kicked,
}

/// Presence of one user as the protocol shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPresence {
    pub status: UserStatus,
    pub since: Option<u64>,
    pub last_seen: Option<u64>,
}

/// What a client asks for, after parsing and validation of shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Hello {
        token: Option<String>,
        resume: Option<String>,
    },
    Refresh {
        token: String,
    },
    Subscribe {
        channel: String,
        occupancy: bool,
    },
    Unsubscribe {
        channel: String,
    },
    Enter {
        channel: String,
        data: Option<Map<String, Value>>,
        /// Extension (docs/protocol.md, "Extensions"): `false` enters
        /// without subscribing. Absent or null means `true`, as the contract
        /// says `enter` implies `subscribe`.
        subscribe: bool,
    },
    Update {
        channel: String,
        data: Map<String, Value>,
    },
    Leave {
        channel: String,
    },
    Watch {
        users: Vec<String>,
    },
    Unwatch {
        users: Vec<String>,
    },
    Status {
        status: ConnStatus,
    },
    Publish {
        channel: String,
        data: Value,
    },
    Ping,
    Bye,
}

/// A parsed request: its optional id and what it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Option<u64>,
    pub frame: ClientFrame,
}

/// Parse failure: the id when it could be read, and the error to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub id: Option<u64>,
    pub error: RequestError,
}

fn bad(id: Option<u64>, message: &'static str) -> ParseError {
    ParseError {
        id,
        error: RequestError::new(ErrorCode::BadRequest, message),
    }
}

/// Parses one text frame from a client.
pub fn parse_client_frame(text: &str) -> Result<Request, ParseError> {
    let value: Value =
        serde_json::from_str(text).map_err(|_| bad(None, "frame is not valid JSON"))?;
    let Value::Object(mut obj) = value else {
        return Err(bad(None, "frame must be a JSON object"));
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad(None, "`id` must be a non-negative integer"))?,
        ),
    };
    let t = match obj.get("t") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(bad(id, "frame needs a string field `t`")),
    };
    let frame = match t.as_str() {
        "hello" => ClientFrame::Hello {
            token: opt_string(&mut obj, "token")
                .map_err(|_| bad(id, "`token` must be a string or null"))?,
            resume: opt_string(&mut obj, "resume")
                .map_err(|_| bad(id, "`resume` must be a string or null"))?,
        },
        "refresh" => ClientFrame::Refresh {
            token: opt_string(&mut obj, "token")
                .ok()
                .flatten()
                .ok_or_else(|| bad(id, "`refresh` needs a string `token`"))?,
        },
        "subscribe" => ClientFrame::Subscribe {
            channel: channel(&mut obj, id)?,
            occupancy: match obj.get("occupancy") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad(id, "`occupancy` must be a boolean")),
            },
        },
        "unsubscribe" => ClientFrame::Unsubscribe {
            channel: channel(&mut obj, id)?,
        },
        "enter" => ClientFrame::Enter {
            channel: channel(&mut obj, id)?,
            data: match obj.remove("data") {
                None | Some(Value::Null) => None,
                Some(Value::Object(m)) => Some(m),
                Some(_) => return Err(bad(id, "`data` must be a JSON object")),
            },
            subscribe: match obj.get("subscribe") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad(id, "`subscribe` must be a boolean")),
            },
        },
        "update" => ClientFrame::Update {
            channel: channel(&mut obj, id)?,
            data: match obj.remove("data") {
                Some(Value::Object(m)) => m,
                _ => return Err(bad(id, "`data` must be a JSON object")),
            },
        },
        "leave" => ClientFrame::Leave {
            channel: channel(&mut obj, id)?,
        },
        "watch" => ClientFrame::Watch {
            users: users(&mut obj, id)?,
        },
        "unwatch" => ClientFrame::Unwatch {
            users: users(&mut obj, id)?,
        },
        "status" => ClientFrame::Status {
            status: match obj.get("status").and_then(Value::as_str) {
                Some("online") => ConnStatus::Online,
                Some("away") => ConnStatus::Away,
                _ => return Err(bad(id, "`status` must be \"online\" or \"away\"")),
            },
        },
        "publish" => ClientFrame::Publish {
            channel: channel(&mut obj, id)?,
            data: obj.remove("data").unwrap_or(Value::Null),
        },
        "ping" => ClientFrame::Ping,
        "bye" => ClientFrame::Bye,
        _ => return Err(bad(id, "unknown frame type")),
    };
    Ok(Request { id, frame })
}

fn opt_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ()> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

fn channel(obj: &mut Map<String, Value>, id: Option<u64>) -> Result<String, ParseError> {
    match obj.remove("channel") {
        Some(Value::String(s)) if valid_channel_name(&s) => Ok(s),
        Some(Value::String(_)) => Err(bad(
            id,
            "channel names are 1-200 bytes of A-Z a-z 0-9 _ : . @ / = -",
        )),
        _ => Err(bad(id, "`channel` must be a string")),
    }
}

fn users(obj: &mut Map<String, Value>, id: Option<u64>) -> Result<Vec<String>, ParseError> {
    let Some(Value::Array(items)) = obj.remove("users") else {
        return Err(bad(id, "`users` must be an array of user ids"));
    };
    if items.len() > MAX_WATCH_PER_REQUEST {
        return Err(ParseError {
            id,
            error: RequestError::new(
                ErrorCode::LimitExceeded,
                "at most 500 users per watch request",
            ),
        });
    }
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_USER_ID_BYTES => Ok(s),
            _ => Err(bad(id, "user ids must be strings of 1-200 bytes")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ParseError {
        parse_client_frame(text).unwrap_err()
    }

    #[test]
    fn parses_requests() {
        let r =
            parse_client_frame(r#"{"t":"enter","id":3,"channel":"room:1","data":{"a":1},"x":9}"#)
                .unwrap();
        assert_eq!(r.id, Some(3));
        assert!(
            matches!(r.frame, ClientFrame::Enter { ref channel, data: Some(_), subscribe: true } if channel == "room:1")
        );
        let r =
            parse_client_frame(r#"{"t":"enter","channel":"room:1","subscribe":false}"#).unwrap();
        assert_eq!(
            r.frame,
            ClientFrame::Enter {
                channel: "room:1".into(),
                data: None,
                subscribe: false
            }
        );
        let r = parse_client_frame(r#"{"t":"enter","channel":"room:1","subscribe":null}"#).unwrap();
        assert!(matches!(
            r.frame,
            ClientFrame::Enter {
                subscribe: true,
                ..
            }
        ));
        let r = parse_client_frame(r#"{"t":"hello","token":null}"#).unwrap();
        assert_eq!(
            r.frame,
            ClientFrame::Hello {
                token: None,
                resume: None
            }
        );
    }

    #[test]
    fn rejects_bad_shapes_with_fixed_messages() {
        assert_eq!(err("nope").error.code, ErrorCode::BadRequest);
        assert_eq!(err("[1]").error.code, ErrorCode::BadRequest);
        assert_eq!(err(r#"{"t":"x","id":4}"#).id, Some(4));
        assert_eq!(err(r#"{"t":"ping","id":-1}"#).id, None);
        assert_eq!(
            err(r#"{"t":"ping","id":"a"}"#).error.code,
            ErrorCode::BadRequest
        );
        let e = err(r#"{"t":"enter","id":1,"channel":"bad name"}"#);
        assert_eq!((e.id, e.error.code), (Some(1), ErrorCode::BadRequest));
        for bad_flag in [r#""no""#, "0", "1", "[]", "{}"] {
            let e = err(&format!(
                r#"{{"t":"enter","id":2,"channel":"a","subscribe":{bad_flag}}}"#
            ));
            assert_eq!((e.id, e.error.code), (Some(2), ErrorCode::BadRequest));
            assert_eq!(e.error.message, "`subscribe` must be a boolean");
        }
        let e = err(r#"{"t":"update","id":1,"channel":"a","data":[1]}"#);
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        let users: Vec<String> = (0..501).map(|i| format!("u{i}")).collect();
        let e = err(&serde_json::json!({"t":"watch","users":users}).to_string());
        assert_eq!(e.error.code, ErrorCode::LimitExceeded);
        assert!(!err("{").error.message.contains("line"));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
