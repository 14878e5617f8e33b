//! [`Drone`]: a light connection for load tests, and connecting or entering
//! many of them a few at a time.

use futures_util::SinkExt;
use futures_util::stream::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::client::Ws;
use super::server::Server;

/// A light connection for load tests: says hello, enters one channel, then
/// reads and discards everything (answering pings) until dropped.
pub struct Drone {
    pub user: String,
    drain: Option<JoinHandle<()>>,
    ws: Option<Ws>,
}

impl Drone {
    /// Connects and completes `hello`.
    pub async fn connect(url: &str, token: &str, user: &str) -> Result<Drone, String> {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| format!("{user}: upgrade failed: {e}"))?;
        let hello = json!({"t": "hello", "token": token}).to_string();
        ws.send(Message::text(hello))
            .await
            .map_err(|e| format!("{user}: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value =
                        serde_json::from_str(t.as_str()).map_err(|e| format!("{user}: {e}"))?;
                    if v["t"] == "welcome" {
                        break;
                    }
                    return Err(format!("{user}: expected welcome, got {v}"));
                }
                Some(Ok(_)) => {}
                other => {
                    return Err(format!(
                        "{user}: connection ended before welcome: {other:?}"
                    ));
                }
            }
        }
        Ok(Drone {
            user: user.to_owned(),
            drain: None,
            ws: Some(ws),
        })
    }

    /// Sends `enter` and waits for its reply, discarding other frames
    /// unparsed; then keeps draining in the background.
    pub async fn enter(&mut self, channel: &str) -> Result<(), String> {
        let mut ws = self.ws.take().expect("drone already entered");
        let req = json!({"t": "enter", "channel": channel, "id": 1, "data": {"n": self.user}})
            .to_string();
        ws.send(Message::text(req))
            .await
            .map_err(|e| format!("{}: {e}", self.user))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    // Snapshots and diffs are big; only small frames can be the reply.
                    if t.len() < 400 && (t.contains("\"ok\"") || t.contains("\"error\"")) {
                        let v: Value =
                            serde_json::from_str(t).map_err(|e| format!("{}: {e}", self.user))?;
                        if v["id"] == 1 {
                            if v["t"] == "ok" {
                                break;
                            }
                            return Err(format!("{}: enter failed: {v}", self.user));
                        }
                    }
                }
                Some(Ok(_)) => {}
                other => {
                    return Err(format!(
                        "{}: connection ended before enter's reply: {other:?}",
                        self.user
                    ));
                }
            }
        }
        self.drain = Some(tokio::spawn(async move {
            while let Some(Ok(_)) = ws.next().await {}
        }));
        Ok(())
    }
}

impl Drop for Drone {
    fn drop(&mut self) {
        if let Some(h) = &self.drain {
            h.abort();
        }
    }
}

/// Connects `users` as drones, `concurrency` at a time.
pub async fn connect_drones(server: &Server, users: &[String], concurrency: usize) -> Vec<Drone> {
    let url = server.ws_url();
    let tasks = futures_util::stream::iter(users.iter().cloned().map(|u| {
        let url = url.clone();
        let token = server.token(&u);
        tokio::spawn(async move { Drone::connect(&url, &token, &u).await })
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<_>>()
    .await;
    tasks
        .into_iter()
        .map(|r| {
            r.expect("drone task")
                .unwrap_or_else(|e| panic!("drone connect: {e}"))
        })
        .collect()
}

/// Makes every drone enter `channel`, `concurrency` at a time.
pub async fn enter_drones(drones: Vec<Drone>, channel: &str, concurrency: usize) -> Vec<Drone> {
    let tasks = futures_util::stream::iter(drones.into_iter().map(|mut d| {
        let ch = channel.to_owned();
        tokio::spawn(async move { d.enter(&ch).await.map(|()| d) })
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<_>>()
    .await;
    tasks
        .into_iter()
        .map(|r| {
            r.expect("drone task")
                .unwrap_or_else(|e| panic!("drone enter: {e}"))
        })
        .collect()
}
