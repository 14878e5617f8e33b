//! Protocol violations are answered with a close code, not a dropped TCP
//! connection (a client would see 1006); a client's own close frame is
//! answered; WebSocket pings count against the rate limit.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{WebSocketStream, client_async};

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A masked client frame with the given first byte (FIN, RSV, opcode).
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![first, 0x80 | payload.len() as u8];
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A socket after a successful hello.
async fn connected(s: &Server) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let (mut ws, _) = client_async(s.ws_url(), tcp).await.expect("handshake");
    let hello = json!({"t": "hello", "id": 1, "token": s.token("alice")});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("welcome");
        if let Some(Ok(Message::Text(t))) = m
            && t.contains("\"welcome\"")
        {
            return ws;
        }
    }
}

/// The close code the server sends before the connection ends (`None`: it
/// ended without a close frame).
async fn close_code(ws: &mut WebSocketStream<TcpStream>) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return Some(f.code.into()),
            Ok(Some(Ok(Message::Close(None)))) => return Some(1005),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => panic!("the server neither closed nor dropped within 5 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_closed_4400() {
    let s = Server::start(Opts::new()).await;
    let unmasked = {
        let mut f = vec![0x81, 2];
        f.extend_from_slice(b"hi");
        f
    };
    let cases: [(&str, Vec<u8>); 6] = [
        ("RSV1 set without an extension", frame(0xC1, b"{}")),
        ("a reserved opcode", frame(0x83, b"x")),
        (
            "invalid UTF-8 in a text frame",
            frame(0x81, &[0xff, 0xfe, 0xfd]),
        ),
        ("a continuation with nothing to continue", frame(0x80, b"x")),
        ("a fragmented ping", frame(0x09, b"p")),
        ("an unmasked client frame", unmasked),
    ];
    for (what, bytes) in cases {
        let mut ws = connected(&s).await;
        ws.get_mut().write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut ws).await, Some(4400), "{what}");
    }
    // The server still serves.
    let mut c = s.user("bob").await;
    c.barrier().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_close_frame_is_answered() {
    let s = Server::start(Opts::new()).await;
    let mut ws = connected(&s).await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1000), "the close is echoed");

    // Before hello too.
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let (mut ws, _) = client_async(s.ws_url(), tcp).await.unwrap();
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    })))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_closed_4429() {
    let s = Server::start(Opts::new().rate(50, 100)).await;
    let mut ws = connected(&s).await;
    // Bounded: far more pings than the limit allows, in one go.
    let mut flood = Vec::new();
    for _ in 0..2_000 {
        flood.extend(frame(0x89, b"p"));
    }
    ws.get_mut().write_all(&flood).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4429));
}
