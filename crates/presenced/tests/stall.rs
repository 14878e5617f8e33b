//! A stall of the server process (SIGSTOP, then SIGCONT) does not drop the
//! clients that kept talking: what they sent meanwhile waits in their
//! sockets, and it is read before silence is judged.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn signal(s: &Server, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &s.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_keeps_the_clients_that_talked() {
    let _heavy = heavy_lock().await;
    let s = Server::start(Opts::new().heartbeat(500).grace(400)).await;
    let mut obs = s.user("obs").await;
    obs.subscribe("room:1").await;
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut c = s.user(&format!("u{i}")).await;
        c.enter("room:1", json!({})).await;
        clients.push(c);
    }
    // Each client pings every 200 ms, through the stall and after it
    // (bounded: 25 pings, 5 s).
    let talkers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for _ in 0..25 {
                    if c.is_closed() {
                        break;
                    }
                    c.send(json!({"t": "ping"})).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                c
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&s, "-STOP");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    signal(&s, "-CONT");
    let mut kept = Vec::new();
    for t in talkers {
        let c = t.await.unwrap();
        assert!(
            !c.is_closed(),
            "{} was dropped: {:?}",
            c.name,
            c.close_info()
        );
        kept.push(c);
    }
    obs.expect_none("a leave", Duration::from_millis(500), |f| f["t"] == "leave")
        .await;
    // The observer said nothing during the stall, but the stall was the
    // server's silence, not its: it stays too.
    assert!(!obs.is_closed(), "obs was dropped: {:?}", obs.close_info());
    obs.barrier().await;
    drop(kept);
}
