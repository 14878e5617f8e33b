//! One WebSocket connection: hello, then a loop that reads requests, writes
//! the outbox, sends heartbeats and enforces the token's expiry.
//!
//! The task owns the socket; everything it knows about presence it asks the
//! hub's engine. When the socket goes (closed, heartbeat missed, token
//! expired) the connection is detached and enters grace, unless the engine
//! already removed it (`bye`, kick) or a resume bound it to another socket.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use presenced_engine::{
    ClientFrame, ConnId, Effects, ErrorCode, Frame, Identity, ParseError, RequestError,
    error_frame, parse_client_frame,
};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, Claims};
use crate::hub::{Outbox, Outgoing, now_ms};
use crate::server::AppState;

/// Most frames written between two flushes.
const WRITE_BATCH: u64 = 64;

/// Refused frames in a row after which a flooding client is closed 4429.
const MAX_REFUSED_IN_A_ROW: u32 = 100;

const E_RATE: RequestError = RequestError::new(ErrorCode::RateLimited, "too many requests");

fn claims_identity(claims: Claims) -> Identity {
    Identity {
        user: Some(claims.sub),
        info: claims.info,
        channels: claims.channels,
    }
}

fn auth_message(e: &AuthError) -> &'static str {
    match e {
        AuthError::Expired => "token expired",
        _ => "invalid token",
    }
}

fn close_msg(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// How long a closing socket waits for the client's close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);

/// Sends a close frame, then reads (and discards) until the client answers
/// with its own close or a second passes. Dropping the socket at once would
/// let the kernel reset the connection over unread client frames, and the
/// reset can destroy the close frame (and its code) before the client reads
/// it.
async fn close(
    sink: &mut SplitSink<WebSocket, Message>,
    stream: &mut SplitStream<WebSocket>,
    code: u16,
    reason: &'static str,
) {
    if sink.send(close_msg(code, reason)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

fn text(frame: &Frame) -> Message {
    // Frames are serde_json output, always UTF-8.
    Message::Text(Utf8Bytes::try_from(frame.bytes().clone()).unwrap_or_default())
}

/// What ended a connection.
enum End {
    /// Close with this code; the connection is detached if still bound.
    Close(u16, &'static str),
    /// The socket is gone or silent: just drop it.
    Drop,
}

/// Runs one WebSocket from upgrade to close.
pub async fn run(socket: WebSocket, state: AppState, shutdown: CancellationToken) {
    let (mut sink, mut stream) = socket.split();
    let settings = &state.settings;
    let hello_deadline = Instant::now() + Duration::from_millis(settings.hello_timeout_ms);

    // ---- hello -----------------------------------------------------------
    let first = tokio::select! {
        m = stream.next() => m,
        _ = sleep_until(hello_deadline) => {
            close(&mut sink, &mut stream, 4408, "no hello in time").await;
            return;
        }
        _ = shutdown.cancelled() => {
            close(&mut sink, &mut stream, 1001, "server shutting down").await;
            return;
        }
    };
    let text_in = match first {
        Some(Ok(Message::Text(t))) => t,
        Some(Err(e)) if is_too_big(&e) => {
            close(&mut sink, &mut stream, 4413, "frame too big").await;
            return;
        }
        Some(Ok(Message::Binary(_))) => {
            close(&mut sink, &mut stream, 4400, "text frames only").await;
            return;
        }
        _ => return,
    };
    let (req_id, token, resume) = match parse_client_frame(&text_in) {
        Ok(r) => match r.frame {
            ClientFrame::Hello { token, resume } => (r.id, token, resume),
            _ => {
                let e = RequestError::new(ErrorCode::BadRequest, "the first frame must be hello");
                let _ = sink.send(text(&error_frame(r.id, &e))).await;
                close(&mut sink, &mut stream, 4400, "expected hello").await;
                return;
            }
        },
        Err(ParseError { id, error }) => {
            let _ = sink.send(text(&error_frame(id, &error))).await;
            close(&mut sink, &mut stream, 4400, "expected hello").await;
            return;
        }
    };
    let (ident, mut expires) = match token {
        None if settings.guests => (Identity::default(), None),
        None => {
            let e = RequestError::new(ErrorCode::Unauthorized, "a token is required");
            let _ = sink.send(text(&error_frame(req_id, &e))).await;
            close(&mut sink, &mut stream, 4401, "unauthorized").await;
            return;
        }
        Some(t) => match state.verifier.verify(&t) {
            Ok(claims) => {
                let exp = claims.exp;
                (claims_identity(claims), exp)
            }
            Err(e) => {
                let e = RequestError::new(ErrorCode::Unauthorized, auth_message(&e));
                let _ = sink.send(text(&error_frame(req_id, &e))).await;
                close(&mut sink, &mut stream, 4401, "unauthorized").await;
                return;
            }
        },
    };

    let hub = &state.hub;
    let socket_id = hub.next_id();
    let outbox = Outbox::new(settings.limits.outbox_frames);
    let conn: ConnId = {
        let mut g = hub.lock();
        let mut fx = Effects::new();
        let session = crate::hub::random_token();
        let attached = g.engine().connect(
            now_ms(),
            hub.next_id(),
            ident,
            resume.as_deref(),
            session,
            req_id,
            &mut fx,
        );
        if let Some(old) = g.bind(attached.conn, socket_id, outbox.clone()) {
            old.close(1000, "replaced");
        }
        g.dispatch(fx);
        attached.conn
    };

    // ---- serve -----------------------------------------------------------
    let heartbeat = Duration::from_millis(settings.heartbeat_ms);
    let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut last_rx = Instant::now();
    let limiter = rate_limiter(settings.limits.rate_per_sec, settings.limits.rate_burst);
    let mut refused_in_a_row = 0u32;
    let end = loop {
        let exp_at = expires.map(expiry_instant);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Close(1001, "server shutting down"),
            item = outbox.recv() => {
                // Write this item and what else is queued (a bounded batch)
                // with one flush.
                let mut next = Some(item);
                let mut written = 0u64;
                let mut closing = None;
                while let Some(item) = next.take() {
                    match item {
                        Outgoing::Frame(f) => {
                            if sink.feed(text(&f)).await.is_err() { break; }
                            written += 1;
                        }
                        Outgoing::Close(code, reason) => { closing = Some((code, reason)); break; }
                    }
                    if written < WRITE_BATCH {
                        next = outbox.try_recv();
                    }
                }
                hub.counters.frames_out.fetch_add(written, std::sync::atomic::Ordering::Relaxed);
                if let Some((code, reason)) = closing { break End::Close(code, reason); }
                if sink.flush().await.is_err() { break End::Drop; }
                if outbox.is_empty() && outbox.is_lagged() {
                    resync(&state, conn, &outbox);
                }
            }
            msg = stream.next(), if !outbox.over_limit() => {
                last_rx = Instant::now();
                let text_in = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => break End::Close(4400, "text frames only"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break End::Drop,
                    Some(Err(e)) if is_too_big(&e) => break End::Close(4413, "frame too big"),
                    Some(Err(_)) => break End::Drop,
                };
                hub.counters.frames_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if limiter.check().is_err() {
                    refused_in_a_row += 1;
                    if refused_in_a_row > MAX_REFUSED_IN_A_ROW {
                        break End::Close(4429, "rate limited");
                    }
                    let id = parse_client_frame(&text_in).ok().and_then(|r| r.id);
                    outbox.reply(error_frame(id, &E_RATE));
                    continue;
                }
                refused_in_a_row = 0;
                if let Some(new_exp) = handle_text(&state, conn, &outbox, &text_in) {
                    expires = new_exp;
                }
            }
            _ = ping.tick() => {
                if last_rx.elapsed() > heartbeat * 2 {
                    tracing::debug!(conn, "heartbeat missed");
                    break End::Drop;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() { break End::Drop; }
            }
            _ = async { sleep_until(exp_at.unwrap_or_else(Instant::now)).await }, if exp_at.is_some() => {
                break End::Close(4401, "token expired");
            }
        }
    };

    if let End::Close(code, reason) = end {
        close(&mut sink, &mut stream, code, reason).await;
    }
    let mut g = hub.lock();
    if g.unbind(conn, socket_id) {
        let mut fx = Effects::new();
        g.engine().disconnect(now_ms(), conn, &mut fx);
        g.dispatch(fx);
    }
}

/// Handles one text frame after hello. Returns `Some(new expiry)` after a
/// successful `refresh`.
fn handle_text(
    state: &AppState,
    conn: ConnId,
    outbox: &Arc<Outbox>,
    text_in: &str,
) -> Option<Option<u64>> {
    let req = match parse_client_frame(text_in) {
        Ok(r) => r,
        Err(ParseError { id, error }) => {
            outbox.reply(error_frame(id, &error));
            return None;
        }
    };
    let mut fx = Effects::new();
    let mut new_exp = None;
    if let ClientFrame::Refresh { token } = req.frame {
        // Verify before taking the lock: signature checks can be slow.
        let claims = match state.verifier.verify(&token) {
            Ok(claims) => claims,
            Err(e) => {
                let e = RequestError::new(ErrorCode::Unauthorized, auth_message(&e));
                outbox.reply(error_frame(req.id, &e));
                return None;
            }
        };
        let exp = claims.exp;
        let mut g = state.hub.lock();
        if g.engine()
            .refresh(conn, req.id, claims_identity(claims), &mut fx)
            .is_ok()
        {
            new_exp = Some(exp);
        }
        g.dispatch(fx);
        return new_exp;
    }
    let mut g = state.hub.lock();
    let _ = g
        .engine()
        .request(now_ms(), conn, req.id, req.frame, &mut fx);
    g.dispatch(fx);
    None
}

fn resync(state: &AppState, conn: ConnId, outbox: &Arc<Outbox>) {
    let mut g = state.hub.lock();
    // Cleared under the lock so no broadcast slips between the snapshot and
    // the flag.
    outbox.clear_lagged();
    state
        .hub
        .counters
        .resyncs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut fx = Effects::new();
    g.engine().resync(now_ms(), conn, &mut fx);
    g.dispatch(fx);
}

fn rate_limiter(per_sec: u32, burst: u32) -> DefaultDirectRateLimiter {
    let per_sec = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(per_sec);
    RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst))
}

fn expiry_instant(exp_unix_secs: u64) -> Instant {
    let now = now_ms();
    let at = exp_unix_secs.saturating_mul(1000);
    Instant::now() + Duration::from_millis(at.saturating_sub(now))
}

fn is_too_big(e: &axum::Error) -> bool {
    use std::error::Error;
    let mut source: Option<&(dyn Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(ts) = s.downcast_ref::<tungstenite::Error>() {
            return matches!(ts, tungstenite::Error::Capacity(_));
        }
        source = s.source();
    }
    false
}
