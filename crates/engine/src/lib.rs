//! The presence engine of presenced: a sans-IO state machine.
//!
//! Inputs (a connection attached, a request, a socket gone, a clock tick) go
//! in with the current time; effects (frames for connections, closes,
//! presence events for webhooks and metrics) come out. No sockets, no sleeps,
//! no clock reads: the transport owns all of those, which is what lets the
//! tests drive a refresh inside grace or ten thousand joins in one tick
//! deterministically.

mod data;
pub mod engine;
pub mod protocol;
pub mod rules;

pub use engine::{
    Attached, ChannelName, ConnId, Effect, Effects, Engine, EngineConfig, Identity, PresenceEvent,
    Reason, RestoredUser, SessionRecord, UserDetail, UserId, UserPresence, UserStatus,
};
pub use protocol::{
    ClientFrame, ConnStatus, ErrorCode, Frame, ParseError, Request, RequestError, error_frame,
    parse_client_frame, rfc3339,
};
pub use rules::{ChannelRule, ChannelRules, glob_match, valid_channel_name};
