//! One WebSocket connection: hello, then a loop that reads requests, writes
//! the outbox, sends heartbeats and enforces the token's expiry.
//!
//! The task owns the socket; everything it knows about presence it asks the
//! hub's engine. When the socket goes (closed, heartbeat missed, token
//! expired) the connection is detached and enters grace, unless the engine
//! already removed it (`bye`, kick) or a resume bound it to another socket.

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::clock::QuantaClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use presenced_engine::{
    ClientFrame, ConnId, Effects, ErrorCode, Frame, Identity, ParseError, RequestError,
    error_frame, parse_client_frame,
};
use tokio::time::{Instant, sleep_until};

use crate::auth::{AuthError, Claims};
use crate::hub::{Counters, Outbox, Outgoing, now_ms};
use crate::server::AppState;

/// Most frames written between two flushes.
const WRITE_BATCH: u64 = 64;

/// Bytes after which a batch ends early: a connection with a large backlog
/// (snapshots of a big channel) yields to the others between batches, so
/// reading requests and small frames to other clients keep flowing.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

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
/// The whole handshake is bounded: a client that reads nothing (its buffers
/// full) cannot hold the task, and so its presence, forever.
async fn close(sink: &mut Sink, stream: &mut Stream, code: u16, reason: &'static str) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        if sink.send(close_msg(code, reason)).await.is_err() {
            return;
        }
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

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// A socket that said hello and is bound to an engine connection.
struct Bound {
    conn: ConnId,
    socket_id: u64,
    outbox: Arc<Outbox>,
}

/// Runs one WebSocket from upgrade to close.
///
/// Memory matters here: an idle connection is mostly this task. The hello
/// phase (deadline, token check) and the close handshake run in their own
/// heap allocations, freed when they end, and heartbeats, token expiry and
/// shutdown are driven from outside (the hub's heartbeat task and
/// `Hub::close_all` push into the outbox), so the long-lived state is the
/// socket halves, the outbox and a rate limiter.
pub fn run(socket: WebSocket, state: AppState) -> impl Future<Output = ()> + Send {
    // Split before the task's future is built: an async fn keeps its
    // arguments for its whole life, and the socket is 368 bytes.
    let (sink, stream) = socket.split();
    run_split(sink, stream, state)
}

async fn run_split(mut sink: Sink, mut stream: Stream, state: AppState) {
    let Some(bound) = Box::pin(hello(&mut sink, &mut stream, &state)).await else {
        return;
    };
    let end = serve(&mut sink, &mut stream, &state, &bound).await;
    if let End::Close(code, reason) = end {
        Box::pin(close(&mut sink, &mut stream, code, reason)).await;
    }
    let hub = &state.hub;
    let mut g = hub.lock();
    if g.unbind(bound.conn, bound.socket_id) {
        let mut fx = Effects::new();
        g.engine().disconnect(now_ms(), bound.conn, &mut fx);
        g.dispatch(fx);
    }
}

/// Waits for `hello` (closing 4408 when it does not come in time), checks
/// the token and binds the socket to a connection. `None`: the socket was
/// closed.
async fn hello(sink: &mut Sink, stream: &mut Stream, state: &AppState) -> Option<Bound> {
    let (settings, shutdown) = (&state.settings, &state.shutdown);
    let hello_deadline = Instant::now() + Duration::from_millis(settings.hello_timeout_ms);
    let first = tokio::select! {
        m = stream.next() => m,
        _ = sleep_until(hello_deadline) => {
            close(sink, stream, 4408, "no hello in time").await;
            return None;
        }
        _ = shutdown.cancelled() => {
            close(sink, stream, 1001, "server shutting down").await;
            return None;
        }
    };
    let text_in = match first {
        Some(Ok(Message::Text(t))) => t,
        Some(Err(e)) if is_too_big(&e) => {
            close(sink, stream, 4413, "frame too big").await;
            return None;
        }
        Some(Ok(Message::Binary(_))) => {
            close(sink, stream, 4400, "text frames only").await;
            return None;
        }
        _ => return None,
    };
    let (req_id, token, resume) = match parse_client_frame(&text_in) {
        Ok(r) => match r.frame {
            ClientFrame::Hello { token, resume } => (r.id, token, resume),
            _ => {
                let e = RequestError::new(ErrorCode::BadRequest, "the first frame must be hello");
                let _ = sink.send(text(&error_frame(r.id, &e))).await;
                close(sink, stream, 4400, "expected hello").await;
                return None;
            }
        },
        Err(ParseError { id, error }) => {
            let _ = sink.send(text(&error_frame(id, &error))).await;
            close(sink, stream, 4400, "expected hello").await;
            return None;
        }
    };
    let (ident, expires) = match token {
        None if settings.guests => (Identity::default(), None),
        None => {
            let e = RequestError::new(ErrorCode::Unauthorized, "a token is required");
            let _ = sink.send(text(&error_frame(req_id, &e))).await;
            close(sink, stream, 4401, "unauthorized").await;
            return None;
        }
        Some(t) => match state.verifier.verify(&t) {
            Ok(claims) => {
                let exp = claims.exp;
                (claims_identity(claims), exp)
            }
            Err(e) => {
                let e = RequestError::new(ErrorCode::Unauthorized, auth_message(&e));
                let _ = sink.send(text(&error_frame(req_id, &e))).await;
                close(sink, stream, 4401, "unauthorized").await;
                return None;
            }
        },
    };

    let hub = &state.hub;
    let socket_id = hub.next_id();
    let outbox = Outbox::new(settings.limits.outbox_frames);
    outbox.set_expiry(expires);
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
    // `Hub::close_all` runs under the lock after the token is cancelled:
    // a socket bound after it went by closes itself.
    if shutdown.is_cancelled() {
        outbox.close(1001, "server shutting down");
    }
    drop(g);
    Some(Bound {
        conn: attached.conn,
        socket_id,
        outbox,
    })
}

/// The connection's life after hello: writes the outbox, reads requests.
async fn serve(sink: &mut Sink, stream: &mut Stream, state: &AppState, bound: &Bound) -> End {
    let settings = &state.settings;
    let (conn, outbox) = (bound.conn, &bound.outbox);
    // Boxed: the task's future is allocated in steps of 128 bytes, and the
    // limiter's 72 bytes inline push an idle connection's task a step up.
    let limiter = Box::new(rate_limiter(
        settings.limits.rate_per_sec,
        settings.limits.rate_burst,
    ));
    let mut refused_in_a_row = 0u32;
    loop {
        tokio::select! {
            biased;
            item = outbox.recv() => {
                let Some(item) = item else { return End::Drop };
                // Boxed: a write's state is only allocated while it runs.
                if let Err(end) = Box::pin(write_batch(sink, outbox, &state.hub.counters, item)).await {
                    return end;
                }
                if outbox.is_empty() && outbox.is_lagged() {
                    resync(state, conn, outbox);
                }
            }
            msg = stream.next(), if !outbox.over_limit() => {
                outbox.touch();
                let text_in = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => return End::Close(4400, "text frames only"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return End::Drop,
                    Some(Err(e)) if is_too_big(&e) => return End::Close(4413, "frame too big"),
                    Some(Err(_)) => return End::Drop,
                };
                state.hub.counters.frames_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if limiter.check().is_err() {
                    refused_in_a_row += 1;
                    if refused_in_a_row > MAX_REFUSED_IN_A_ROW {
                        return End::Close(4429, "rate limited");
                    }
                    let id = parse_client_frame(&text_in).ok().and_then(|r| r.id);
                    outbox.reply(error_frame(id, &E_RATE));
                    continue;
                }
                refused_in_a_row = 0;
                if let Some(new_exp) = handle_text(state, conn, outbox, &text_in) {
                    outbox.set_expiry(new_exp);
                }
            }
        }
    }
}

/// Writes `first` and what else is queued (a bounded batch) with one flush.
/// A write that cannot progress (a half-open client with full buffers) is
/// cut short when the heartbeat gives up on the socket.
async fn write_batch(
    sink: &mut Sink,
    outbox: &Outbox,
    counters: &Counters,
    first: Outgoing,
) -> Result<(), End> {
    tokio::select! {
        r = write_queued(sink, outbox, counters, first) => r,
        _ = outbox.aborted() => Err(End::Drop),
    }
}

async fn write_queued(
    sink: &mut Sink,
    outbox: &Outbox,
    counters: &Counters,
    first: Outgoing,
) -> Result<(), End> {
    let mut next = Some(first);
    let mut written = 0u64;
    let mut bytes = 0usize;
    let mut closing = None;
    while let Some(item) = next.take() {
        let msg = match item {
            Outgoing::Frame(f) => {
                bytes += f.bytes().len();
                text(&f)
            }
            Outgoing::Ping => Message::Ping(Default::default()),
            Outgoing::Close(code, reason) => {
                closing = Some((code, reason));
                break;
            }
        };
        if sink.feed(msg).await.is_err() {
            return Err(End::Drop);
        }
        written += 1;
        if written < WRITE_BATCH && bytes < WRITE_BATCH_BYTES {
            next = outbox.try_recv();
        }
    }
    counters
        .frames_out
        .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
    if let Some((code, reason)) = closing {
        return Err(End::Close(code, reason));
    }
    if sink.flush().await.is_err() {
        return Err(End::Drop);
    }
    if bytes >= WRITE_BATCH_BYTES {
        tokio::task::yield_now().await;
    }
    Ok(())
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
    // One clock for every limiter: creating a quanta clock queries CPUID,
    // which is slow (a VM exit under virtualisation), once per connection.
    static CLOCK: OnceLock<QuantaClock> = OnceLock::new();
    let clock = CLOCK.get_or_init(QuantaClock::default).clone();
    let per_sec = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(per_sec);
    RateLimiter::direct_with_clock(Quota::per_second(per_sec).allow_burst(burst), clock)
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
