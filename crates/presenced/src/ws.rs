//! One WebSocket connection's task: hello (token check), then a loop that
//! reads requests and writes the outbox, then the close handshake.
//!
//! The task owns the socket; everything it knows about presence it asks the
//! hub through its [`HubSocket`]. Heartbeats and token expiry are the hub's
//! heartbeat task's job: it pushes pings and closes into the outbox, or
//! aborts the socket. When the task ends, however it ends (closed, aborted,
//! a panic), dropping the `HubSocket` detaches the connection into grace.

use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::clock::QuantaClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use presenced_engine::{
    ClientFrame, ErrorCode, Frame, Identity, ParseError, RequestError, error_frame,
    parse_client_frame,
};
use tokio::time::{Instant, sleep_until};

use crate::auth::{AuthError, Claims};
use crate::hub::{Counters, HubSocket, Outbox, Outgoing};
use crate::state::AppState;

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

/// Answers the client's close frame: the WebSocket library queued the
/// echo of its code when it read the frame; this sends it, bounded like
/// [`close`].
async fn answer_close(sink: &mut Sink) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, sink.close()).await;
}

fn text(frame: &Frame) -> Message {
    // Frames are serde_json output, always UTF-8.
    Message::Text(Utf8Bytes::try_from(frame.bytes().clone()).unwrap_or_default())
}

/// What ended a connection.
enum End {
    /// Close with this code; the connection is detached if still bound.
    Close(u16, &'static str),
    /// The client sent its close frame: answer it (RFC 6455 §5.5.1).
    PeerClosed,
    /// The socket is gone or silent: just drop it.
    Drop,
}

/// What a read error means for the connection: a frame over the limit or
/// a protocol violation (bad framing, RSV bits, reserved opcodes, invalid
/// UTF-8...) is told with a close code; a broken transport is dropped.
fn read_error(e: &axum::Error) -> End {
    use std::error::Error;
    let mut source: Option<&(dyn Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(ts) = s.downcast_ref::<tungstenite::Error>() {
            return match ts {
                tungstenite::Error::Capacity(_) => End::Close(4413, "frame too big"),
                tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_) => {
                    End::Close(4400, "protocol error")
                }
                _ => End::Drop,
            };
        }
        source = s.source();
    }
    End::Drop
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

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
    let Some(socket) = Box::pin(hello(&mut sink, &mut stream, &state)).await else {
        return;
    };
    let end = serve(&mut sink, &mut stream, &state, &socket).await;
    match end {
        End::Close(code, reason) => Box::pin(close(&mut sink, &mut stream, code, reason)).await,
        End::PeerClosed => Box::pin(answer_close(&mut sink)).await,
        End::Drop => {}
    }
    // Dropping `socket` detaches the connection, here or on a panic.
}

/// Waits for `hello` (closing 4408 when it does not come in time), checks
/// the token and binds the socket to a connection. `None`: the socket was
/// closed.
async fn hello(sink: &mut Sink, stream: &mut Stream, state: &AppState) -> Option<HubSocket> {
    let (settings, shutdown) = (&state.settings, &state.shutdown);
    let hello_deadline = Instant::now() + Duration::from_millis(settings.values.hello_timeout_ms);
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
        Some(Ok(Message::Text(t))) => {
            state
                .hub
                .counters()
                .frames_in
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            t
        }
        Some(Ok(Message::Close(_))) => {
            answer_close(sink).await;
            return None;
        }
        Some(Err(e)) => {
            if let End::Close(code, reason) = read_error(&e) {
                close(sink, stream, code, reason).await;
            }
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
        None if settings.values.guests => (Identity::default(), None),
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

    let outbox = Outbox::new(settings.values.outbox_frames);
    outbox.set_expiry(state.verifier.expiry_ms(expires));
    match state.hub.connect(ident, resume.as_deref(), req_id, outbox) {
        Ok(socket) => Some(socket),
        Err(e) => {
            // The store cannot take the transition: try again later (1013).
            let _ = sink.send(text(&error_frame(req_id, &e))).await;
            close(sink, stream, 1013, "unavailable").await;
            None
        }
    }
}

/// The connection's life after hello: writes the outbox, reads requests.
async fn serve(sink: &mut Sink, stream: &mut Stream, state: &AppState, socket: &HubSocket) -> End {
    let settings = &state.settings;
    let outbox = socket.outbox();
    let counters = state.hub.counters();
    // Boxed: the task's future is allocated in steps of 128 bytes, and the
    // limiter's 72 bytes inline push an idle connection's task a step up.
    let limiter = Box::new(rate_limiter(
        settings.values.rate_per_sec,
        settings.values.rate_burst,
    ));
    let mut refused_in_a_row = 0u32;
    loop {
        tokio::select! {
            biased;
            item = outbox.recv() => {
                let Some(item) = item else { return End::Drop };
                // Boxed: a write's state is only allocated while it runs.
                if let Err(end) = Box::pin(write_batch(sink, outbox, counters, item)).await {
                    return end;
                }
                if outbox.is_empty() && outbox.is_lagged() {
                    socket.resync();
                }
            }
            msg = stream.next(), if !outbox.over_limit() => {
                outbox.touch();
                let text_in = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => return End::Close(4400, "text frames only"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        // Control frames count against the same limit (the
                        // pong that answers a ping costs a write).
                        if limiter.check().is_err() {
                            refused_in_a_row += 1;
                            if refused_in_a_row > MAX_REFUSED_IN_A_ROW {
                                return End::Close(4429, "rate limited");
                            }
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) => return End::PeerClosed,
                    None => return End::Drop,
                    Some(Err(e)) => return read_error(&e),
                };
                counters.frames_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                match handle_text(state, socket, &text_in) {
                    Handled::Done => {}
                    Handled::Refreshed(new_exp) => {
                        outbox.set_expiry(state.verifier.expiry_ms(new_exp));
                    }
                    // Boxed: only a watch of forgotten users waits for the
                    // journal, and only then is that state allocated.
                    Handled::Watch(id, frame) => Box::pin(socket.watch(id, frame)).await,
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

/// What [`handle_text`] did, or left to do.
enum Handled {
    Done,
    /// A `refresh` succeeded: the token's new expiry.
    Refreshed(Option<u64>),
    /// A `watch` that must read users' last presence from the journal.
    Watch(Option<u64>, ClientFrame),
}

/// Handles one text frame after hello.
fn handle_text(state: &AppState, socket: &HubSocket, text_in: &str) -> Handled {
    let req = match parse_client_frame(text_in) {
        Ok(r) => r,
        Err(ParseError { id, error }) => {
            socket.outbox().reply(error_frame(id, &error));
            return Handled::Done;
        }
    };
    #[cfg(test)]
    tests::maybe_panic(&req.frame);
    if let ClientFrame::Refresh { token } = req.frame {
        // Verified before the hub is asked: signature checks can be slow.
        let claims = match state.verifier.verify(&token) {
            Ok(claims) => claims,
            Err(e) => {
                let e = RequestError::new(ErrorCode::Unauthorized, auth_message(&e));
                socket.outbox().reply(error_frame(req.id, &e));
                return Handled::Done;
            }
        };
        let exp = claims.exp;
        return if socket.refresh(req.id, claims_identity(claims)) {
            Handled::Refreshed(exp)
        } else {
            Handled::Done
        };
    }
    if matches!(req.frame, ClientFrame::Watch { .. }) {
        return Handled::Watch(req.id, req.frame);
    }
    socket.request(req.id, req.frame);
    Handled::Done
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures_util::{SinkExt, StreamExt};
    use presenced_engine::{ClientFrame, PresenceEvent};
    use serde_json::{Value, json};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    use crate::state::AppState;

    /// A `publish` to this channel panics the connection task, in test
    /// builds only: the hook for the drop guard's test.
    const PANIC_CHANNEL: &str = "test:panic";

    pub(super) fn maybe_panic(frame: &ClientFrame) {
        if let ClientFrame::Publish { channel, .. } = frame
            && channel == PANIC_CHANNEL
        {
            panic!("connection task panicked on purpose (test hook)");
        }
    }

    const SECRET: &str = "ws-test-secret-0123456789abcdef";
    const GRACE_MS: u64 = 400;

    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn start(dir: &std::path::Path) -> (String, AppState) {
        let args = crate::config::ServeArgs {
            data_dir: Some(dir.join("data")),
            jwt_secret: Some(SECRET.into()),
            api_key: Some("ws-test-key".into()),
            grace_ms: Some(GRACE_MS),
            ..Default::default()
        };
        let settings = crate::config::Settings::load(args).unwrap();
        let state = AppState::new(settings).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(state.hub.clone().drive_timers(state.shutdown.clone()));
        let app = crate::server::app(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("ws://{addr}/v1/ws"), state)
    }

    async fn recv(ws: &mut Ws, what: &str) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap_or_else(|_| panic!("no frame while waiting for {what}"))
                .expect("socket ended")
                .expect("socket error");
            if let WsMessage::Text(t) = m {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }

    /// The next frame of type `t`, skipping others.
    async fn recv_type(ws: &mut Ws, t: &str) -> Value {
        loop {
            let v = recv(ws, t).await;
            if v["t"] == t {
                return v;
            }
        }
    }

    async fn send(ws: &mut Ws, v: Value) {
        ws.send(WsMessage::text(v.to_string())).await.unwrap();
    }

    async fn hello(url: &str, user: &str) -> Ws {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let token = crate::auth::sign_hs256(SECRET, user, None, None, &Default::default()).unwrap();
        send(&mut ws, json!({"t": "hello", "token": token, "id": 1})).await;
        let welcome = recv_type(&mut ws, "welcome").await;
        assert_eq!(welcome["user"], user);
        ws
    }

    fn offline_events(events: &mut tokio::sync::broadcast::Receiver<PresenceEvent>) -> usize {
        let mut n = 0;
        while let Ok(ev) = events.try_recv() {
            if matches!(&ev, PresenceEvent::UserOffline { user, .. } if &**user == "alice") {
                n += 1;
            }
        }
        n
    }

    #[tokio::test]
    async fn a_panicking_connection_task_still_detaches_with_one_grace_window_and_one_offline() {
        let dir = tempfile::tempdir().unwrap();
        let (url, state) = start(dir.path()).await;
        let mut events = state.hub.subscribe_events();

        let mut alice = hello(&url, "alice").await;
        send(
            &mut alice,
            json!({"t": "enter", "channel": "room:1", "id": 2}),
        )
        .await;
        assert_eq!(recv_type(&mut alice, "ok").await["id"], 2);

        let mut bob = hello(&url, "bob").await;
        send(&mut bob, json!({"t": "watch", "users": ["alice"], "id": 2})).await;
        let p = recv_type(&mut bob, "presence").await;
        assert_eq!(p["users"]["alice"]["status"], "online");

        send(
            &mut alice,
            json!({"t": "publish", "channel": PANIC_CHANNEL, "data": {}, "id": 3}),
        )
        .await;
        let panicked = Instant::now();
        // The task is gone: its socket closes without an answer.
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = alice.next().await {
                if let WsMessage::Text(t) = m {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_ne!(v["id"], 3, "the panicking request was answered: {v}");
                }
            }
        })
        .await;
        assert!(end.is_ok(), "alice's socket did not close after the panic");

        // Bob sees alice go offline once the grace window has passed, not
        // before, and not never.
        let p = recv_type(&mut bob, "presence").await;
        assert_eq!(p["users"]["alice"]["status"], "offline", "{p}");
        let waited = panicked.elapsed();
        assert!(
            waited >= Duration::from_millis(GRACE_MS - 50),
            "offline after {waited:?}, inside the {GRACE_MS} ms grace window"
        );
        assert_eq!(state.hub.occupancy("room:1"), None, "alice left the room");

        // Nothing is left that could send alice offline again: bob's is the
        // only connection (no stand-in, no second grace timer). Reading the
        // counts also waits for the dispatch that sent bob's frame, so its
        // events are on the feed.
        assert_eq!(state.hub.counts().connections, 1, "only bob's connection");
        assert_eq!(offline_events(&mut events), 1, "one user.offline for alice");
        assert_eq!(
            state
                .hub
                .user_detail("alice")
                .await
                .unwrap()
                .unwrap()
                .presence
                .status,
            presenced_engine::UserStatus::Offline
        );
    }
}
