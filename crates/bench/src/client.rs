//! The client side of the three wire protocols the bench speaks itself, so
//! that no Node client sits in the load path:
//!
//! - presenced v1 (`hello`, `enter`, `subscribe`, `watch`, `status`; `sync`,
//!   `join`, `leave`, `diff`, `presence`),
//! - Pusher (soketi, sockudo): `pusher:connection_established` gives the
//!   socket id, presence channels are joined with `pusher:subscribe` signed
//!   with HMAC-SHA256 of `socket_id:channel:channel_data`,
//! - Socket.IO v4 over a raw WebSocket (engine.io `0{..}` open, `40{auth}`
//!   connect, `42[..]` events, `42<id>[..]`/`43<id>[..]` acks).
//!
//! Incoming frames are normalised into [`Inbound`] for the observers.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// Which protocol a server speaks, and for Socket.IO which presence design
/// it runs (the frames differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proto {
    Presenced,
    Pusher,
    SioFull,
    SioDelta,
}

/// Where and how to connect.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    pub proto: Proto,
    pub port: u16,
    /// JWT secret (presenced, Socket.IO) or the Pusher app secret.
    pub secret: String,
    /// Pusher app key (unused otherwise).
    pub app_key: String,
}

/// A channel name as the protocol wants it (Pusher presence channels carry a
/// `presence-` prefix).
pub fn wire_channel(proto: Proto, channel: &str) -> String {
    match proto {
        Proto::Pusher => format!("presence-{channel}"),
        _ => channel.to_owned(),
    }
}

fn bare_channel(name: &str) -> String {
    name.strip_prefix("presence-").unwrap_or(name).to_owned()
}

pub fn jwt(secret: &str, user: &str) -> String {
    #[derive(Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
    }
    let exp = crate::util::now_us() / 1_000_000 + 24 * 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub: user, exp },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

/// One client connection after its protocol handshake.
pub struct Conn {
    pub ws: WebSocketStream<TcpStream>,
    pub target: Arc<Target>,
    pub user: String,
    socket_id: String,
}

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens a WebSocket from `src` (if given) and completes the handshake as
/// `user` (authenticated).
pub async fn connect(target: &Arc<Target>, src: Option<Ipv4Addr>, user: &str) -> Result<Conn> {
    let addr = SocketAddr::from(([127, 0, 0, 1], target.port));
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::from((ip, 0)))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = timeout(STEP_TIMEOUT, sock.connect(addr))
        .await
        .context("tcp connect timed out")?
        .context("tcp connect")?;
    stream.set_nodelay(true)?;
    let url = match target.proto {
        Proto::Presenced => format!("ws://127.0.0.1:{}/v1/ws", target.port),
        Proto::Pusher => format!(
            "ws://127.0.0.1:{}/app/{}?protocol=7&client=presenced-bench&version=1.0",
            target.port, target.app_key
        ),
        Proto::SioFull | Proto::SioDelta => format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
            target.port
        ),
    };
    // Small client buffers: a worker holds up to ~15,000 of these.
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = timeout(
        STEP_TIMEOUT,
        client_async_with_config(url, stream, Some(cfg)),
    )
    .await
    .context("websocket upgrade timed out")?
    .context("websocket upgrade")?;
    let mut conn = Conn {
        ws,
        target: target.clone(),
        user: user.to_owned(),
        socket_id: String::new(),
    };
    timeout(STEP_TIMEOUT, conn.handshake())
        .await
        .context("handshake timed out")??;
    Ok(conn)
}

#[derive(Deserialize)]
struct Probe {
    t: Option<String>,
    id: Option<u64>,
    code: Option<String>,
    event: Option<String>,
    data: Option<Value>,
}

impl Conn {
    pub async fn send(&mut self, text: String) -> Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// The next text frame; answers protocol-level pings on the way.
    pub async fn next_text(&mut self) -> Result<Option<tokio_tungstenite::tungstenite::Utf8Bytes>> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Some(reply) = ping_reply(self.target.proto, &t) {
                        self.send(reply.to_owned()).await?;
                        continue;
                    }
                    return Ok(Some(t));
                }
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    async fn handshake(&mut self) -> Result<()> {
        match self.target.proto {
            Proto::Presenced => {
                let token = jwt(&self.target.secret, &self.user);
                self.send(json!({"t": "hello", "token": token, "id": 0}).to_string())
                    .await?;
                loop {
                    let t = self.next_text().await?.ok_or_else(|| anyhow!("closed"))?;
                    let p: Probe = serde_json::from_str(&t)?;
                    match p.t.as_deref() {
                        Some("welcome") => return Ok(()),
                        Some("error") => bail!("hello refused: {t}"),
                        _ => {}
                    }
                }
            }
            Proto::Pusher => loop {
                let t = self.next_text().await?.ok_or_else(|| anyhow!("closed"))?;
                let p: Probe = serde_json::from_str(&t)?;
                if p.event.as_deref() == Some("pusher:connection_established") {
                    let data: Value = match p.data {
                        Some(Value::String(s)) => serde_json::from_str(&s)?,
                        Some(v) => v,
                        None => bail!("no data in {t}"),
                    };
                    self.socket_id = data["socket_id"]
                        .as_str()
                        .ok_or_else(|| anyhow!("no socket_id in {t}"))?
                        .to_owned();
                    return Ok(());
                }
                if p.event.as_deref() == Some("pusher:error") {
                    bail!("pusher error: {t}");
                }
            },
            Proto::SioFull | Proto::SioDelta => {
                let open = self.next_text().await?.ok_or_else(|| anyhow!("closed"))?;
                if !open.starts_with('0') {
                    bail!("expected engine.io open, got {open}");
                }
                let token = jwt(&self.target.secret, &self.user);
                self.send(format!("40{}", json!({ "token": token })))
                    .await?;
                loop {
                    let t = self.next_text().await?.ok_or_else(|| anyhow!("closed"))?;
                    if t.starts_with("40") {
                        return Ok(());
                    }
                    if t.starts_with("44") {
                        bail!("socket.io connect refused: {t}");
                    }
                }
            }
        }
    }

    /// Enters `channel` with member `data` (a JSON object). `id` asks for a
    /// reply where the protocol has one.
    pub async fn enter(&mut self, channel: &str, data: &Value, id: Option<u64>) -> Result<()> {
        self.enter_with(channel, data, id, true).await
    }

    /// [`Conn::enter`]; `subscribe: false` enters a presenced channel
    /// without subscribing to it (other protocols always subscribe).
    pub async fn enter_with(
        &mut self,
        channel: &str,
        data: &Value,
        id: Option<u64>,
        subscribe: bool,
    ) -> Result<()> {
        let text = match self.target.proto {
            Proto::Presenced => {
                let mut f = json!({"t": "enter", "channel": channel, "data": data});
                if let Some(id) = id {
                    f["id"] = id.into();
                }
                if !subscribe {
                    f["subscribe"] = false.into();
                }
                f.to_string()
            }
            Proto::Pusher => self.pusher_subscribe(channel, data),
            Proto::SioFull | Proto::SioDelta => {
                sio_event("enter", &json!({"room": channel, "data": data}), id)
            }
        };
        self.send(text).await
    }

    /// Leaves `channel` and stops receiving it.
    pub async fn leave(&mut self, channel: &str) -> Result<()> {
        let text = match self.target.proto {
            // `unsubscribe` leaves and stops delivery, like Pusher's.
            Proto::Presenced => json!({"t": "unsubscribe", "channel": channel}).to_string(),
            Proto::Pusher => json!({"event": "pusher:unsubscribe",
                "data": {"channel": wire_channel(Proto::Pusher, channel)}})
            .to_string(),
            Proto::SioFull | Proto::SioDelta => {
                sio_event("leave", &json!({ "room": channel }), None)
            }
        };
        self.send(text).await
    }

    /// Subscribes as an observer. On Pusher an observer of a presence
    /// channel is necessarily a member too (with empty user info).
    pub async fn subscribe(&mut self, channel: &str, id: u64) -> Result<()> {
        let text = match self.target.proto {
            Proto::Presenced => json!({"t": "subscribe", "channel": channel, "id": id}).to_string(),
            Proto::Pusher => self.pusher_subscribe(channel, &json!({})),
            Proto::SioFull | Proto::SioDelta => {
                sio_event("subscribe", &json!({ "room": channel }), Some(id))
            }
        };
        self.send(text).await
    }

    pub async fn watch(&mut self, users: &[String], id: u64) -> Result<()> {
        let text = match self.target.proto {
            Proto::Presenced => json!({"t": "watch", "users": users, "id": id}).to_string(),
            Proto::Pusher => bail!("Pusher has no user watch"),
            Proto::SioFull | Proto::SioDelta => {
                sio_event("watch", &json!({ "users": users }), Some(id))
            }
        };
        self.send(text).await
    }

    pub async fn set_status(&mut self, away: bool) -> Result<()> {
        let status = if away { "away" } else { "online" };
        let text = match self.target.proto {
            Proto::Presenced => json!({"t": "status", "status": status}).to_string(),
            Proto::Pusher => bail!("Pusher has no user status"),
            Proto::SioFull | Proto::SioDelta => {
                sio_event("status", &json!({ "status": status }), None)
            }
        };
        self.send(text).await
    }

    fn pusher_subscribe(&self, channel: &str, info: &Value) -> String {
        let name = wire_channel(Proto::Pusher, channel);
        let channel_data = json!({"user_id": self.user, "user_info": info}).to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(self.target.secret.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(format!("{}:{}:{}", self.socket_id, name, channel_data).as_bytes());
        let auth = format!(
            "{}:{}",
            self.target.app_key,
            hex::encode(mac.finalize().into_bytes())
        );
        json!({"event": "pusher:subscribe",
            "data": {"channel": name, "auth": auth, "channel_data": channel_data}})
        .to_string()
    }

    /// Reads until the reply to request `id` (Pusher: the subscription
    /// answer for `channel`), handing every frame to `on_frame`.
    pub async fn await_reply(
        &mut self,
        id: u64,
        channel: &str,
        mut on_frame: impl FnMut(&str),
    ) -> Result<()> {
        let proto = self.target.proto;
        let ack_prefix = format!("43{id}");
        let pusher_channel = wire_channel(Proto::Pusher, channel);
        loop {
            let t = self.next_text().await?.ok_or_else(|| anyhow!("closed"))?;
            on_frame(&t);
            match proto {
                Proto::Presenced => {
                    // Cheap pre-filter: only small frames can be ok/error.
                    if t.len() < 512 && (t.contains("\"ok\"") || t.contains("\"error\"")) {
                        let p: Probe = serde_json::from_str(&t)?;
                        match (p.t.as_deref(), p.id) {
                            (Some("ok"), Some(i)) if i == id => return Ok(()),
                            (Some("error"), Some(i)) if i == id => {
                                bail!("request refused: {}", p.code.unwrap_or_default())
                            }
                            _ => {}
                        }
                    }
                }
                Proto::Pusher => {
                    if t.contains("subscription_succeeded") && t.contains(&pusher_channel) {
                        return Ok(());
                    }
                    if t.contains("subscription_error") || t.contains("pusher:error") {
                        bail!("subscribe refused: {t}");
                    }
                }
                Proto::SioFull | Proto::SioDelta => {
                    if let Some(rest) = t.strip_prefix(ack_prefix.as_str())
                        && rest.starts_with('[')
                    {
                        if rest.contains("\"error\"") {
                            bail!("request refused: {t}");
                        }
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn sio_event(name: &str, payload: &Value, id: Option<u64>) -> String {
    let body = json!([name, payload]).to_string();
    match id {
        Some(id) => format!("42{id}{body}"),
        None => format!("42{body}"),
    }
}

/// The answer a protocol-level ping needs, if `text` is one.
pub fn ping_reply(proto: Proto, text: &str) -> Option<&'static str> {
    match proto {
        Proto::SioFull | Proto::SioDelta if text == "2" => Some("3"),
        Proto::Pusher if text.len() < 80 && text.contains("pusher:ping") => {
            Some(r#"{"event":"pusher:pong","data":{}}"#)
        }
        _ => None,
    }
}

/// A member as the observers see it: user id and the send timestamp the
/// bench put into its data, if any.
pub type Member = (String, Option<u64>);

/// An incoming frame, normalised across protocols.
#[derive(Debug)]
pub enum Inbound {
    /// A (chunk of a) full member list that replaces the view; `more`: more
    /// chunks of the same snapshot follow.
    Snapshot {
        channel: String,
        members: Vec<Member>,
        more: bool,
    },
    Delta {
        channel: String,
        joins: Vec<Member>,
        leaves: Vec<String>,
    },
    /// Status changes: (user, away).
    Presence(Vec<(String, bool)>),
    /// The full status map (Socket.IO full-list design).
    FullPresence(HashMap<String, bool>),
    Error,
    Other,
}

fn member(user: &Value, data: &Value) -> Option<Member> {
    let user = user.as_str()?.to_owned();
    Some((user, data.get("ts").and_then(Value::as_u64)))
}

fn members(list: &Value) -> Vec<Member> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| member(&m["user"], &m["data"]))
                .collect()
        })
        .unwrap_or_default()
}

fn away(v: &Value) -> bool {
    v.as_str() == Some("away") || v["status"].as_str() == Some("away")
}

/// Parses one text frame.
pub fn parse(proto: Proto, text: &str) -> Inbound {
    match proto {
        Proto::Presenced => parse_presenced(text),
        Proto::Pusher => parse_pusher(text),
        Proto::SioFull | Proto::SioDelta => parse_sio(text),
    }
    .unwrap_or(Inbound::Other)
}

fn parse_presenced(text: &str) -> Option<Inbound> {
    let v: Value = serde_json::from_str(text).ok()?;
    let channel = || v["channel"].as_str().unwrap_or_default().to_owned();
    Some(match v["t"].as_str()? {
        "sync" => Inbound::Snapshot {
            channel: channel(),
            members: members(&v["members"]),
            more: v["more"].as_bool().unwrap_or(false),
        },
        "join" | "update" => Inbound::Delta {
            channel: channel(),
            joins: member(&v["member"]["user"], &v["member"]["data"])
                .into_iter()
                .collect(),
            leaves: vec![],
        },
        "leave" => Inbound::Delta {
            channel: channel(),
            joins: vec![],
            leaves: v["user"].as_str().map(str::to_owned).into_iter().collect(),
        },
        "diff" => {
            let mut joins = members(&v["joins"]);
            joins.extend(members(&v["updates"]));
            Inbound::Delta {
                channel: channel(),
                joins,
                leaves: v["leaves"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|u| u.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        }
        "presence" => Inbound::Presence(
            v["users"]
                .as_object()?
                .iter()
                .map(|(u, s)| (u.clone(), away(s)))
                .collect(),
        ),
        "error" => Inbound::Error,
        _ => Inbound::Other,
    })
}

fn parse_pusher(text: &str) -> Option<Inbound> {
    let v: Value = serde_json::from_str(text).ok()?;
    let data: Value = match &v["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let channel = bare_channel(v["channel"].as_str().unwrap_or_default());
    Some(match v["event"].as_str()? {
        "pusher_internal:subscription_succeeded" => {
            let hash = &data["presence"]["hash"];
            let members = data["presence"]["ids"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .map(|id| {
                            let user = match id {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            let ts = hash[&user]["ts"].as_u64();
                            (user, ts)
                        })
                        .collect()
                })
                .unwrap_or_default();
            Inbound::Snapshot {
                channel,
                members,
                more: false,
            }
        }
        "pusher_internal:member_added" => Inbound::Delta {
            channel,
            joins: member(&data["user_id"], &data["user_info"])
                .into_iter()
                .collect(),
            leaves: vec![],
        },
        "pusher_internal:member_removed" => Inbound::Delta {
            channel,
            joins: vec![],
            leaves: data["user_id"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect(),
        },
        "pusher:error" | "pusher_internal:subscription_error" | "pusher:subscription_error" => {
            Inbound::Error
        }
        _ => Inbound::Other,
    })
}

fn parse_sio(text: &str) -> Option<Inbound> {
    if text.starts_with("44") {
        return Some(Inbound::Error);
    }
    if let Some(rest) = text.strip_prefix("43") {
        // Ack: `43<id>[payload]`; a payload with members is a snapshot.
        let body = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        let v: Value = serde_json::from_str(body).ok()?;
        let p = &v[0];
        if p.get("error").is_some() {
            return Some(Inbound::Error);
        }
        if p.get("members").is_some() {
            return Some(Inbound::Snapshot {
                channel: p["room"].as_str().unwrap_or_default().to_owned(),
                members: members(&p["members"]),
                more: false,
            });
        }
        return Some(Inbound::Other);
    }
    let body = text.strip_prefix("42")?;
    let v: Value = serde_json::from_str(body).ok()?;
    let p = &v[1];
    let room = || p["room"].as_str().unwrap_or_default().to_owned();
    Some(match v[0].as_str()? {
        "members" => Inbound::Snapshot {
            channel: room(),
            members: members(&p["members"]),
            more: false,
        },
        "join" => Inbound::Delta {
            channel: room(),
            joins: member(&p["member"]["user"], &p["member"]["data"])
                .into_iter()
                .collect(),
            leaves: vec![],
        },
        "leave" => Inbound::Delta {
            channel: room(),
            joins: vec![],
            leaves: p["user"].as_str().map(str::to_owned).into_iter().collect(),
        },
        "presence" => Inbound::Presence(vec![(p["user"].as_str()?.to_owned(), away(&p["status"]))]),
        "online" => Inbound::FullPresence(
            p.as_object()?
                .iter()
                .map(|(u, s)| (u.clone(), away(s)))
                .collect(),
        ),
        _ => Inbound::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_presenced_frames() {
        let f = r#"{"t":"diff","channel":"c","seq":3,"joins":[{"user":"a","data":{"ts":5},"conns":1}],"updates":[],"leaves":["b"]}"#;
        match parse(Proto::Presenced, f) {
            Inbound::Delta { joins, leaves, .. } => {
                assert_eq!(joins, vec![("a".to_owned(), Some(5))]);
                assert_eq!(leaves, vec!["b".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
        let f =
            r#"{"t":"presence","users":{"u1":{"status":"away","since":null,"last_seen":null}}}"#;
        assert!(
            matches!(parse(Proto::Presenced, f), Inbound::Presence(v) if v == vec![("u1".to_owned(), true)])
        );
    }

    #[test]
    fn parses_pusher_frames() {
        let f = r#"{"event":"pusher_internal:member_added","channel":"presence-c","data":"{\"user_id\":\"a\",\"user_info\":{\"ts\":9}}"}"#;
        match parse(Proto::Pusher, f) {
            Inbound::Delta { channel, joins, .. } => {
                assert_eq!(channel, "c");
                assert_eq!(joins, vec![("a".to_owned(), Some(9))]);
            }
            other => panic!("{other:?}"),
        }
        let f = r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-c","data":"{\"presence\":{\"ids\":[\"a\",\"b\"],\"hash\":{\"a\":{\"ts\":1},\"b\":{}},\"count\":2}}"}"#;
        match parse(Proto::Pusher, f) {
            Inbound::Snapshot { members, .. } => assert_eq!(members.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_socketio_frames() {
        let f = r#"431[{"room":"c","members":[{"user":"a","data":{"ts":1}}]}]"#;
        assert!(
            matches!(parse(Proto::SioDelta, f), Inbound::Snapshot { members, .. } if members.len() == 1)
        );
        let f = r#"42["leave",{"room":"c","user":"a"}]"#;
        assert!(
            matches!(parse(Proto::SioDelta, f), Inbound::Delta { leaves, .. } if leaves == vec!["a".to_owned()])
        );
        assert_eq!(ping_reply(Proto::SioFull, "2"), Some("3"));
    }
}
