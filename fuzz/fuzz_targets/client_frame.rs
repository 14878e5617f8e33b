//! The client frame parser ([`parse_client_frame`]) never panics, whatever
//! the text, and what it lets through has the shapes the engine relies on:
//! valid channel names, at most 500 user ids of 1-200 bytes each. A refusal
//! carries a fixed message (never the JSON parser's own words) and the
//! request id only when the frame had a valid one. Parsing is a function:
//! the same text, the same result.
//!
//! The input is the text of one frame (bytes that are not UTF-8 are parsed
//! as the lossy text a WebSocket peer could not send, but a test can).
#![no_main]

use libfuzzer_sys::fuzz_target;
use presenced_engine::protocol::{MAX_USER_ID_BYTES, MAX_WATCH_PER_REQUEST};
use presenced_engine::{ClientFrame, parse_client_frame, valid_channel_name};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let got = parse_client_frame(&text);
    assert_eq!(got, parse_client_frame(&text), "parsing is not a function");
    match got {
        Ok(r) => match &r.frame {
            ClientFrame::Subscribe { channel, .. }
            | ClientFrame::Unsubscribe { channel }
            | ClientFrame::Enter { channel, .. }
            | ClientFrame::Update { channel, .. }
            | ClientFrame::Leave { channel }
            | ClientFrame::Publish { channel, .. } => {
                assert!(
                    valid_channel_name(channel),
                    "channel {channel:?} let through"
                );
            }
            ClientFrame::Watch { users } | ClientFrame::Unwatch { users } => {
                assert!(
                    users.len() <= MAX_WATCH_PER_REQUEST,
                    "{} users",
                    users.len()
                );
                for u in users {
                    assert!(!u.is_empty() && u.len() <= MAX_USER_ID_BYTES, "user {u:?}");
                }
            }
            _ => {}
        },
        Err(e) => {
            let m = e.error.message;
            assert!(
                !m.contains(" at line ") && !m.contains("column"),
                "message {m:?}"
            );
            if let Some(id) = e.id {
                // The id came from the frame: it is in the text.
                assert!(text.contains(&id.to_string()), "id {id} not in {text:?}");
            }
        }
    }
});
