//! The connection caps and timeouts, from outside: half-sent requests are
//! closed and never lock anyone out, a full server still answers its
//! operations endpoints and refuses the rest clearly, one address cannot
//! take every place, a stalled body is closed, an idle WebSocket is not, and
//! the open-files limit is raised at start.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HALF_SENT: &[u8] = b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n";

const UPGRADE: &str = "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    tokio::time::timeout(WAIT, socket.connect(to))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// Sends `request` from `from` and reads the response head and what body
/// arrives before the server closes or `WAIT` passes: (status, body).
async fn exchange(from: Ipv4Addr, to: SocketAddr, request: &str) -> (u16, String) {
    let mut tcp = connect_from(from, to).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break,
        }
        let text = String::from_utf8_lossy(&got);
        // A 101 stays open: its head is all there is to read.
        if text.starts_with("HTTP/1.1 101") && text.contains("\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

fn error_code(body: &str) -> String {
    // The body may be chunked; the JSON object is on one line of it.
    let json = body
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in {body:?}"));
    let v: Value = serde_json::from_str(json).unwrap();
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// Reads until the server closes the connection; the time it took, or
/// `None` if it stayed open for `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((start + within).into(), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_and_never_lock_anyone_out() {
    let _heavy = heavy_lock().await;
    let mut opts = Opts::new();
    opts.extra_args = [
        "--http-header-timeout-ms",
        "1500",
        "--max-connections",
        "200",
    ]
    .map(String::from)
    .to_vec();
    let s = Server::start(opts).await;
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let me = Ipv4Addr::LOCALHOST;
    // More half-sent requests than the cap (bounded: 400 sockets).
    let mut held = Vec::new();
    for _ in 0..400 {
        let Ok(mut tcp) = connect_from(attacker, s.addr).await else {
            break;
        };
        if tcp.write_all(HALF_SENT).await.is_ok() {
            held.push(tcp);
        }
    }
    assert_eq!(held.len(), 400, "the kernel took every connection");
    // While they are held: the operations endpoints answer from another
    // address, and a WebSocket is refused with a clear 503.
    let (status, body) = exchange(me, s.addr, &get("/healthz")).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = exchange(me, s.addr, &get("/metrics")).await;
    assert_eq!(status, 200);
    let (status, body) = exchange(me, s.addr, UPGRADE).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body), "unavailable");
    // Every half-sent request is closed after the header timeout.
    let start = Instant::now();
    for tcp in &mut held {
        let left = Duration::from_secs(10).saturating_sub(start.elapsed());
        assert!(
            closed_within(tcp, left).await.is_some(),
            "a half-sent request was still open after 10 s"
        );
    }
    drop(held);
    // And the server serves WebSockets again.
    wait_for("a WebSocket after the flood", WAIT, || async {
        let (status, _) = exchange(me, s.addr, UPGRADE).await;
        (status == 101).then_some(())
    })
    .await;
    let mut u = s.user("after").await;
    u.enter("room:1", json!({})).await;
    let metrics = exchange(me, s.addr, &get("/metrics")).await.1;
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("presenced_connections_refused_total{reason=\"total\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .expect("the refusal counter");
    assert!(refused >= 1.0, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_place() {
    let mut opts = Opts::new();
    opts.extra_args = ["--max-connections-per-ip", "3"].map(String::from).to_vec();
    let s = Server::start(opts).await;
    let mut three = Vec::new();
    for i in 0..3 {
        three.push(s.user(&format!("u{i}")).await);
    }
    let me = Ipv4Addr::LOCALHOST;
    let (status, body) = exchange(me, s.addr, UPGRADE).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(error_code(&body), "rate_limited");
    // The operations endpoints still answer that address.
    assert_eq!(exchange(me, s.addr, &get("/readyz")).await.0, 200);
    // Another address is not affected.
    let (status, _) = exchange(Ipv4Addr::new(127, 0, 0, 3), s.addr, UPGRADE).await;
    assert_eq!(status, 101);
    // A place given back is taken again.
    three.pop().unwrap().close().await;
    wait_for("a place back for 127.0.0.1", WAIT, || async {
        let (status, _) = exchange(me, s.addr, UPGRADE).await;
        (status == 101).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_closed_and_an_idle_websocket_is_not() {
    let mut opts = Opts::new();
    opts.extra_args = ["--http-idle-timeout-ms", "500"].map(String::from).to_vec();
    let s = Server::start(opts).await;
    let mut ws = s.user("idle").await;
    let mut tcp = connect_from(Ipv4Addr::LOCALHOST, s.addr).await.unwrap();
    let head = format!(
        "POST /v1/users/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"users\":",
        s.api_key
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let took = closed_within(&mut tcp, Duration::from_secs(10)).await;
    assert!(
        took.is_some(),
        "a stalled body held its connection for 10 s"
    );
    assert!(took.unwrap() >= Duration::from_millis(400), "{took:?}");
    // The WebSocket said nothing for longer than the idle timeout and is
    // still served.
    ws.send(json!({"t": "ping"})).await;
    ws.expect("pong", |f| f["t"] == "pong").await;
    assert!(!ws.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let mut opts = Opts::new();
    opts.extra_args = ["--http-header-timeout-ms", "600"]
        .map(String::from)
        .to_vec();
    let s = Server::start(opts).await;
    let mut tcp = connect_from(Ipv4Addr::LOCALHOST, s.addr).await.unwrap();
    // Two requests on one connection, the second after a pause shorter
    // than the timeout: keep-alive works.
    for _ in 0..2 {
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&got).ends_with("ok") {
            let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then silence: closed once the timeout has passed since the response.
    let took = closed_within(&mut tcp, Duration::from_secs(10)).await;
    let took = took.expect("an idle keep-alive connection stayed open for 10 s");
    assert!(took >= Duration::from_millis(300), "{took:?}");
}

#[tokio::test]
async fn the_open_files_limit_is_raised_at_start() {
    // The server inherits a low soft limit (nextest runs each test in a
    // process of its own, so no other test sees it).
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(hard > 512, "the hard limit is {hard}");
    rlimit::setrlimit(rlimit::Resource::NOFILE, 512, hard).unwrap();
    let s = Server::start(Opts::new()).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "Max open files  <soft>  <hard>  files"
    assert_eq!(fields[3], hard.to_string(), "{line}");
    assert_eq!(fields[4], hard.to_string(), "{line}");
}
