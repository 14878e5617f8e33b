//! A client that stops reading cannot make the server buffer without bound:
//! its outbox fills, broadcasts to it are dropped (and counted), and once it
//! reads again it gets a fresh `sync` that makes its view whole.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn metric(s: &Server, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", s.addr))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_resynced_not_buffered() {
    let mut opts = Opts::new().rate(1_000_000, 1_000_000);
    opts.extra_args = vec!["--outbox-frames".into(), "64".into()];
    let s = Server::start(opts).await;

    // The slow client: subscribes, then does not read its socket at all.
    let (mut slow, _) = tokio_tungstenite::connect_async(s.ws_url())
        .await
        .expect("connect");
    let hello = json!({"t": "hello", "token": s.token("slow")});
    let sub = json!({"t": "subscribe", "channel": "room:bp", "id": 1});
    slow.send(Message::text(hello.to_string())).await.unwrap();
    slow.send(Message::text(sub.to_string())).await.unwrap();

    // Far more broadcast bytes than the kernel's socket buffers hold.
    let mut publisher = s.user("publisher").await;
    let pad = "x".repeat(1_900);
    let n = 20_000;
    let frames: Vec<String> = (0..n)
        .map(|i| {
            json!({"t": "publish", "channel": "room:bp", "data": {"i": i, "pad": pad}}).to_string()
        })
        .collect();
    assert!(publisher.send_batch(&frames).await, "publisher was closed");
    publisher.barrier().await;
    // A membership change the slow client has not heard of yet.
    let mut member = s.user("member").await;
    member.enter("room:bp", json!({"late": true})).await;

    let dropped = metric(&s, "presenced_dropped_broadcasts_total").await;
    assert!(
        dropped > 0.0,
        "no broadcast was dropped for the slow client"
    );

    // Reading again, the slow client gets what was queued, then a fresh
    // snapshot that includes the member it missed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut messages = 0usize;
    let resync = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, slow.next())
            .await
            .expect("no resync within 60 s")
            .expect("socket closed")
            .expect("socket error");
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        match v["t"].as_str() {
            Some("message") => messages += 1,
            Some("sync")
                if v["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["user"] == "member")) =>
            {
                break v;
            }
            _ => {}
        }
    };
    assert!(
        messages < n,
        "all {n} messages were delivered: nothing was bounded"
    );
    assert_eq!(resync["channel"], "room:bp");
    let resyncs = metric(&s, "presenced_resyncs_total").await;
    assert!(resyncs >= 1.0, "resync not counted");
}
