//! The server's own accept loop: every TCP connection is counted against the
//! connection caps, served by hyper with a header-read timeout and an idle
//! timeout, and handed to the routes (WebSocket upgrades included).
//!
//! Why not `axum::serve`: it has no header timeout, no idle timeout and no
//! cap, so a client holding half-sent requests could take every descriptor
//! the process has (a slowloris) and lock everybody out, `/healthz`
//! included. Here:
//!
//! - the soft open-files limit is raised to the hard one at start
//!   ([`raise_open_files_limit`]) and [`RESERVED_FDS`] of it are kept out of
//!   the default total cap, for the store, the webhook senders and the
//!   operations endpoints;
//! - a request's head must arrive within `http_header_timeout_ms` of the
//!   connection opening or of the previous response (so it also bounds an
//!   idle keep-alive connection), and an HTTP connection that moves no byte
//!   for `http_idle_timeout_ms` (a stalled body, a response nobody reads) is
//!   closed; an upgraded WebSocket is the heartbeat's business instead;
//! - a connection over a cap (`max_connections`, `max_connections_per_ip`)
//!   gets one request: `/healthz`, `/readyz` and `/metrics` are answered,
//!   anything else is refused with 503 `unavailable` (total cap) or 429
//!   `rate_limited` (per address), and the connection is closed. At most
//!   `caps::OVERFLOW` such connections at a time; past that a new one is
//!   closed at once.

mod caps;
mod io;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

pub use caps::{Admission, Caps, Over};

use crate::http::ApiError;

/// Descriptors of the open-files limit left out of the default total cap.
pub const RESERVED_FDS: u64 = 256;

/// The header timeout of a connection over a cap: it gets one short chance
/// to ask for an operations endpoint.
const OVER_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the loop waits before accepting again when the process is out
/// of descriptors (the pending connections wait in the kernel's backlog).
const OUT_OF_FILES_PAUSE: Duration = Duration::from_millis(50);

/// The timeouts of the accept loop's connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Raises the soft open-files limit to the hard one and returns the soft
/// limit now (or what it was, if it could not be raised).
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The total cap when none is set: the open-files limit less the reserve.
pub fn default_max_connections(open_files: u64) -> u32 {
    open_files
        .saturating_sub(RESERVED_FDS)
        .clamp(1, u64::from(u32::MAX)) as u32
}

/// Accepts and serves connections until `shutdown`; then stops accepting,
/// asks every HTTP connection to finish its request and close, and returns
/// once they have (the caller bounds that wait). Upgraded WebSockets live on
/// in their own tasks.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    caps: Arc<Caps>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let conns = TaskTracker::new();
    let mut out_of_files_logged = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_out_of_files(&e) => {
                if !out_of_files_logged {
                    tracing::warn!(error = %e, "out of file descriptors; new connections wait");
                    out_of_files_logged = true;
                }
                tokio::time::sleep(OUT_OF_FILES_PAUSE).await;
                continue;
            }
            // A connection reset before it was accepted, and the like.
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        out_of_files_logged = false;
        let (conn, over) = match caps.admit(peer.ip()) {
            Admission::Served(conn) => (conn, None),
            Admission::Over(conn, over) => (conn, Some(over)),
            Admission::Closed(over) => {
                crate::metrics::add_connection_refused(over.label());
                continue;
            }
        };
        conns.spawn(serve_connection(
            tcp,
            peer,
            Arc::new(conn),
            over,
            app.clone(),
            limits,
            shutdown.clone(),
        ));
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

fn is_out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// One connection: HTTP/1.1 with upgrades, until it closes, upgrades, times
/// out idle, or is asked to finish by the shutdown.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    conn: Arc<caps::Conn>,
    over: Option<Over>,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    // Presence frames are small and latency-bound: never wait for Nagle.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    let io = TokioIo::new(io::Tracked::new(tcp, conn.clone()));
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let (mut app, conn) = (app.clone(), conn.clone());
            async move {
                conn.request_started();
                let res = if let Some(over) = over
                    && !is_operations(&req)
                {
                    crate::metrics::add_connection_refused(over.label());
                    tracing::debug!(%peer, cap = over.label(), "connection over its cap refused");
                    refusal(over)
                } else {
                    let Ok(res) = app.call(req.map(Body::new)).await;
                    res
                };
                Ok::<_, Infallible>(res.map(|body| io::ResponseBody::new(body, conn)))
            }
        })
    };
    let header_timeout = if over.is_some() {
        OVER_HEADER_TIMEOUT
    } else {
        limits.header_timeout
    };
    // The timeouts are `watch`'s: hyper's own header timeout does not run
    // between the requests of a keep-alive connection.
    let http = http1::Builder::new()
        .keep_alive(over.is_none())
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(http);
    let timeouts = watch(&conn, header_timeout, limits.idle_timeout);
    tokio::pin!(timeouts);
    tokio::select! {
        _ = http.as_mut() => return,
        _ = &mut timeouts => return,
        _ = shutdown.cancelled() => {}
    }
    http.as_mut().graceful_shutdown();
    tokio::select! {
        _ = http => {}
        _ = timeouts => {}
    }
}

/// Ends once the connection has waited `header` for a request's head, or
/// has moved no byte for `idle`.
async fn watch(conn: &caps::Conn, header: Duration, idle: Duration) {
    let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let (header, idle) = (ms(header), ms(idle));
    loop {
        let idle_left = idle.saturating_sub(conn.idle_ms());
        let head_left = conn
            .waiting_for_head_ms()
            .map_or(u32::MAX, |waited| header.saturating_sub(waited));
        let left = idle_left.min(head_left);
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(u64::from(left))).await;
    }
}

/// What a connection over a cap may still ask for.
fn is_operations<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET && matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics")
}

fn refusal(over: Over) -> Response {
    let err = match over {
        Over::Total => ApiError::unavailable("the server is at its connection limit; retry later"),
        Over::PerIp => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many connections from this address; retry later",
        ),
    };
    let mut res = err.into_response();
    let headers = res.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}
