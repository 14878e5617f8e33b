//! Frames that reach the server in pieces, or several in one read, are read
//! whole. The server frees a connection's read buffer whenever nothing is
//! left to read (an idle connection holds none), so a frame whose header or
//! payload arrives over several reads must survive the buffer being
//! reallocated between them.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

/// A client text frame as RFC 6455 puts it on the wire: masked, FIN set.
fn masked_text_frame(payload: &str, mask: [u8; 4]) -> Vec<u8> {
    let bytes = payload.as_bytes();
    let mut out = vec![0x81];
    match bytes.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(
                &(u16::try_from(n).expect("test frames are small")).to_be_bytes(),
            );
        }
    }
    out.extend_from_slice(&mask);
    out.extend(bytes.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Writes `bytes` cut at `cuts`, one write and flush per piece. The short
/// pauses only make the pieces likely to arrive in separate reads; nothing
/// waits on them: the test waits for the server's frames.
async fn write_in_pieces(tcp: &mut TcpStream, bytes: &[u8], cuts: &[usize]) {
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        tcp.write_all(&bytes[from..cut]).await.expect("write");
        tcp.flush().await.expect("flush");
        from = cut;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next text frame from the server, parsed, within 10 s.
async fn next_json(ws: &mut WebSocketStream<TcpStream>) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

/// Reads frames until the reply to request `id`, returning it and the frames
/// before it.
async fn reply_to(ws: &mut WebSocketStream<TcpStream>, id: u64) -> (Vec<Value>, Value) {
    let mut before = Vec::new();
    loop {
        let f = next_json(ws).await;
        if f["id"] == json!(id) {
            return (before, f);
        }
        before.push(f);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_across_reads_and_joined_in_one_read_are_read_whole() {
    let s = Server::start(Opts::new()).await;
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (mut ws, _) = client_async(s.ws_url(), tcp).await.expect("handshake");
    let mask = [0x37, 0xfa, 0x21, 0x3d];

    // hello: the header's two bytes apart, the mask apart, the payload in
    // three pieces.
    let token = s.token("alice");
    let hello = masked_text_frame(
        &json!({"t": "hello", "id": 1, "token": token}).to_string(),
        mask,
    );
    assert!(hello.len() > 40, "the token makes hello long enough to cut");
    write_in_pieces(ws.get_mut(), &hello, &[1, 4, 9, 20, 40]).await;
    let (_, welcome) = reply_to(&mut ws, 1).await;
    assert_eq!(welcome["t"], "welcome", "{welcome}");
    assert_eq!(welcome["user"], "alice", "{welcome}");

    // An enter larger than the 512-byte read buffer, its extended length
    // cut in half and its payload in pieces across several buffer sizes.
    let blob = "b".repeat(1_500);
    let enter = json!({"t": "enter", "id": 2, "channel": "room:1", "data": {"blob": blob}});
    let enter = masked_text_frame(&enter.to_string(), mask);
    write_in_pieces(ws.get_mut(), &enter, &[3, 8, 300, 513, 1_100]).await;
    let (frames, ok) = reply_to(&mut ws, 2).await;
    assert_eq!(ok["t"], "ok", "{ok}");
    let is_my_join = |f: &Value| f["t"] == "join" && f["member"]["user"] == "alice";
    let join = match frames.iter().find(|f| is_my_join(f)) {
        Some(f) => f.clone(),
        None => loop {
            let f = next_json(&mut ws).await;
            if is_my_join(&f) {
                break f;
            }
        },
    };
    assert_eq!(
        join["member"]["data"]["blob"],
        json!(blob),
        "the whole blob arrived"
    );

    // Three frames in one write: all are answered, in order.
    let mut joined = Vec::new();
    for (id, name) in [(3, "x"), (4, "y"), (5, "z")] {
        let update = json!({"t": "update", "id": id, "channel": "room:1", "data": {"name": name}});
        joined.extend(masked_text_frame(&update.to_string(), mask));
    }
    ws.get_mut().write_all(&joined).await.expect("write");
    for id in 3..=5 {
        let (_, reply) = reply_to(&mut ws, id).await;
        assert_eq!(reply["t"], "ok", "{reply}");
    }

    // The state is the last update's, as the HTTP API reads it.
    let mut watcher = s.user("bob").await;
    let view = watcher.view("room:1").await;
    assert_eq!(
        view.members["alice"]["data"],
        json!({"name": "z"}),
        "{:?}",
        view.members
    );
}
