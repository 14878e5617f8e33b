//! [`Client`]: one WebSocket connection to the server, with a background
//! reader (so pings are answered and no frame is lost), requests with ids,
//! and waiting for the frames a test expects.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use futures_util::stream::{SplitSink, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::timing::WAIT;
use super::view::{View, syncs};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the background reader of a [`Client`] saw.
#[derive(Debug)]
enum Event {
    Frame(Value),
    /// A text frame that is not JSON (the server should never send one).
    BadText(String),
    /// The connection ended: close code if a close frame came, and how.
    Closed(Option<u16>, String),
}

/// One WebSocket connection to the server.
pub struct Client {
    pub name: String,
    sink: SplitSink<Ws, Message>,
    rx: mpsc::UnboundedReceiver<Event>,
    reader: JoinHandle<()>,
    /// Every frame received so far, in order.
    pub history: Vec<Value>,
    /// The `welcome` frame (Null before `hello`).
    pub welcome: Value,
    next_id: u64,
    /// How long `next`/`expect`/`closed` wait.
    pub timeout: Duration,
    closed: Option<(Option<u16>, String)>,
}

impl Client {
    pub async fn open(url: &str) -> Client {
        let (ws, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("WebSocket upgrade to {url} timed out"))
            .unwrap_or_else(|e| panic!("WebSocket upgrade to {url} failed: {e}"));
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            // Reading also flushes the automatic pong replies to server pings.
            loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let ev = match serde_json::from_str::<Value>(t.as_str()) {
                            Ok(v) => Event::Frame(v),
                            Err(_) => Event::BadText(t.as_str().to_owned()),
                        };
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        let reason = frame
                            .map(|f| f.reason.as_str().to_owned())
                            .unwrap_or_default();
                        let _ = tx.send(Event::Closed(
                            code,
                            format!("close frame, reason {reason:?}"),
                        ));
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        let _ = tx.send(Event::Closed(None, format!("error: {e}")));
                        return;
                    }
                    None => {
                        let _ = tx.send(Event::Closed(
                            None,
                            "stream ended without close frame".into(),
                        ));
                        return;
                    }
                }
            }
        });
        Client {
            name: "client".into(),
            sink,
            rx,
            reader,
            history: Vec::new(),
            welcome: Value::Null,
            next_id: 1,
            timeout: WAIT,
            closed: None,
        }
    }

    /// Sends `hello` and waits for `welcome`.
    pub async fn hello(&mut self, token: Option<&str>, resume: Option<&str>) -> Value {
        let mut hello = json!({
            "t": "hello",
            "token": token,
            "client": {"name": "presenced-tests", "version": "0"},
        });
        if let Some(r) = resume {
            hello["resume"] = json!(r);
        }
        self.send(hello).await;
        let f = self.next().await;
        assert_eq!(
            f["t"], "welcome",
            "{}: expected welcome after hello, got {f}",
            self.name
        );
        self.welcome = f.clone();
        f
    }

    pub fn session(&self) -> String {
        self.welcome["session"]
            .as_str()
            .expect("welcome.session")
            .to_owned()
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.sink
            .send(Message::text(text.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{}: send failed: {e}", self.name));
    }

    /// Sends many text frames in one write (they reach the server together).
    /// Returns false if the socket failed (the server may already have closed).
    pub async fn send_batch(&mut self, texts: &[String]) -> bool {
        for t in texts {
            if self.sink.feed(Message::text(t.clone())).await.is_err() {
                return false;
            }
        }
        self.sink.flush().await.is_ok()
    }

    /// Like `send_text` but does not panic (the server may already have closed).
    pub async fn try_send_text(&mut self, text: &str) -> bool {
        self.sink.send(Message::text(text.to_owned())).await.is_ok()
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.sink
            .send(Message::binary(bytes))
            .await
            .expect("send binary");
    }

    /// Sends a close frame (a clean socket close, not `bye`).
    pub async fn close(&mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
        let _ = self.sink.flush().await;
    }

    /// Stops reading: from now on the connection answers no pings and sends
    /// nothing, but the TCP socket stays open (a half-open client).
    pub fn stop_reading(&mut self) {
        self.reader.abort();
    }

    fn describe(&self, n: usize) -> String {
        let start = self.history.len().saturating_sub(n);
        let mut s = format!(
            "last {} of {} frames seen by {}:",
            self.history.len() - start,
            self.history.len(),
            self.name
        );
        for f in &self.history[start..] {
            let mut t = f.to_string();
            if t.len() > 600 {
                t.truncate(600);
                t.push('…');
            }
            s.push_str("\n  ");
            s.push_str(&t);
        }
        s
    }

    async fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        if self.closed.is_some() {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.rx.recv()).await {
            Ok(Some(Event::Frame(v))) => {
                self.history.push(v.clone());
                Some(Event::Frame(v))
            }
            Ok(Some(Event::BadText(t))) => {
                panic!("{}: server sent a non-JSON text frame: {t:?}", self.name)
            }
            Ok(Some(Event::Closed(code, how))) => {
                self.closed = Some((code, how.clone()));
                Some(Event::Closed(code, how))
            }
            Ok(None) => {
                self.closed = Some((None, "reader stopped".into()));
                Some(Event::Closed(None, "reader stopped".into()))
            }
            Err(_) => None,
        }
    }

    /// The next frame, waiting up to `self.timeout`.
    pub async fn next(&mut self) -> Value {
        let deadline = Instant::now() + self.timeout;
        match self.next_event(deadline).await {
            Some(Event::Frame(v)) => v,
            Some(Event::Closed(code, how)) => panic!(
                "{}: connection closed (code {code:?}, {how}) while waiting for a frame\n{}",
                self.name,
                self.describe(20)
            ),
            _ => panic!(
                "{}: no frame within {:?} (closed: {:?})\n{}",
                self.name,
                self.timeout,
                self.closed,
                self.describe(20)
            ),
        }
    }

    /// Waits for the first frame matching `pred`; returns the frames skipped
    /// before it and the match.
    pub async fn until(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, Value) {
        self.until_within(what, self.timeout, pred).await
    }

    pub async fn until_within(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, Value) {
        let deadline = Instant::now() + within;
        let mut skipped = Vec::new();
        loop {
            match self.next_event(deadline).await {
                Some(Event::Frame(v)) if pred(&v) => return (skipped, v),
                Some(Event::Frame(v)) => skipped.push(v),
                Some(Event::Closed(code, how)) => panic!(
                    "{}: connection closed (code {code:?}, {how}) while waiting for {what}\n{}",
                    self.name,
                    self.describe(30)
                ),
                _ => panic!(
                    "{}: timed out after {within:?} waiting for {what} (closed: {:?})\n{}",
                    self.name,
                    self.closed,
                    self.describe(30)
                ),
            }
        }
    }

    /// Waits until every predicate has matched some frame (in any order);
    /// returns the first match of each.
    pub async fn expect_each(
        &mut self,
        what: &str,
        preds: &[&dyn Fn(&Value) -> bool],
    ) -> Vec<Value> {
        let deadline = Instant::now() + self.timeout;
        let mut found: Vec<Option<Value>> = vec![None; preds.len()];
        while found.iter().any(Option::is_none) {
            match self.next_event(deadline).await {
                Some(Event::Frame(v)) => {
                    for (i, p) in preds.iter().enumerate() {
                        if found[i].is_none() && p(&v) {
                            found[i] = Some(v.clone());
                        }
                    }
                }
                Some(Event::Closed(code, how)) => panic!(
                    "{}: connection closed (code {code:?}, {how}) while waiting for {what}\n{}",
                    self.name,
                    self.describe(30)
                ),
                _ => panic!(
                    "{}: timed out after {:?} waiting for {what} (matched so far: {found:?})\n{}",
                    self.name,
                    self.timeout,
                    self.describe(30)
                ),
            }
        }
        found.into_iter().map(Option::unwrap).collect()
    }

    /// Waits for the first frame matching `pred` (other frames are skipped).
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.until(what, pred).await.1
    }

    pub async fn expect_within(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.until_within(what, within, pred).await.1
    }

    /// Asserts that no frame matching `pred` arrives for `dur`. This waits on
    /// purpose (an assertion of absence): keep `dur` short and justified.
    /// Returns the frames that did arrive.
    pub async fn expect_none(
        &mut self,
        what: &str,
        dur: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + dur;
        let mut seen = Vec::new();
        loop {
            match self.next_event(deadline).await {
                Some(Event::Frame(v)) => {
                    if pred(&v) {
                        panic!(
                            "{}: got {what} but expected none within {dur:?}: {v}\n{}",
                            self.name,
                            self.describe(30)
                        );
                    }
                    seen.push(v);
                }
                _ => return seen,
            }
        }
    }

    /// Takes every frame that arrives within `dur` (bounded wait on purpose).
    pub async fn collect_for(&mut self, dur: Duration) -> Vec<Value> {
        self.expect_none("nothing", dur, |_| false).await
    }

    /// Waits for the server to close the connection; returns the close code
    /// (`None` if the socket ended without a close frame). Frames before the
    /// close are skipped.
    pub async fn closed(&mut self) -> Option<u16> {
        self.closed_within(self.timeout).await
    }

    pub async fn closed_within(&mut self, within: Duration) -> Option<u16> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((code, _)) = &self.closed {
                return *code;
            }
            match self.next_event(deadline).await {
                Some(Event::Frame(_)) => {}
                Some(Event::Closed(code, _)) => return code,
                None if self.closed.is_some() => return self.closed.as_ref().unwrap().0,
                _ => panic!(
                    "{}: connection not closed within {within:?}\n{}",
                    self.name,
                    self.describe(30)
                ),
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// How the connection ended (close frame and reason, or the socket error).
    pub fn close_info(&self) -> Option<String> {
        self.closed
            .as_ref()
            .map(|(code, how)| format!("code {code:?}, {how}"))
    }

    /// Sends `req` with a fresh `id` and waits for its `ok`/`error`; returns
    /// the frames that came before the reply, and the reply.
    pub async fn request(&mut self, mut req: Value) -> (Vec<Value>, Value) {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        let what = format!("reply to {req}");
        self.send(req).await;
        self.until(&what, |f| {
            (f["t"] == "ok" || f["t"] == "error") && f["id"] == json!(id)
        })
        .await
    }

    /// `request` that must succeed; returns the frames before the `ok`.
    pub async fn ok(&mut self, req: Value) -> Vec<Value> {
        let shown = req.to_string();
        let (frames, reply) = self.request(req).await;
        assert_eq!(
            reply["t"],
            "ok",
            "{}: request {shown} failed: {reply}\n{}",
            self.name,
            self.describe(20)
        );
        frames
    }

    /// `request` that must fail; returns the `error` frame.
    pub async fn err(&mut self, req: Value) -> Value {
        let shown = req.to_string();
        let (_, reply) = self.request(req).await;
        assert_eq!(
            reply["t"], "error",
            "{}: request {shown} should have failed, got {reply}",
            self.name
        );
        reply
    }

    /// `request` that must fail with `code`; returns the `error` frame.
    pub async fn err_code(&mut self, req: Value, code: &str) -> Value {
        let shown = req.to_string();
        let channel = req["channel"].clone();
        let (frames, reply) = self.request(req).await;
        assert_eq!(
            reply["t"], "error",
            "{}: request {shown} should have failed with {code}, got {reply}",
            self.name
        );
        assert_eq!(
            reply["code"], code,
            "{}: request {shown}: wrong error code in {reply}",
            self.name
        );
        assert!(
            reply["message"].is_string(),
            "{}: error without a string message: {reply}",
            self.name
        );
        // A failed request produces no frames of its own.
        for f in &frames {
            assert!(
                !(f["t"] == "sync" && !channel.is_null() && f["channel"] == channel),
                "{}: failed request {shown} still sent {f}",
                self.name
            );
        }
        reply
    }

    /// A `ping` request used as a barrier: everything the server queued for
    /// this connection before it handled the ping arrives before the reply.
    /// Returns those frames.
    pub async fn barrier(&mut self) -> Vec<Value> {
        self.ok(json!({"t": "ping"})).await
    }

    pub async fn subscribe(&mut self, channel: &str) -> Vec<Value> {
        let frames = self.ok(json!({"t": "subscribe", "channel": channel})).await;
        syncs(&frames, channel)
    }

    /// Subscribes and returns a [`View`] built from the snapshot.
    pub async fn view(&mut self, channel: &str) -> View {
        let frames = self.ok(json!({"t": "subscribe", "channel": channel})).await;
        let mut v = View::new(channel);
        for f in &frames {
            v.apply(f);
        }
        assert!(
            v.complete(),
            "{}: snapshot of {channel} incomplete before ok: {frames:?}",
            self.name
        );
        v
    }

    pub async fn enter(&mut self, channel: &str, data: Value) -> Vec<Value> {
        self.ok(json!({"t": "enter", "channel": channel, "data": data}))
            .await
    }

    pub async fn update(&mut self, channel: &str, data: Value) {
        self.ok(json!({"t": "update", "channel": channel, "data": data}))
            .await;
    }

    pub async fn leave(&mut self, channel: &str) {
        self.ok(json!({"t": "leave", "channel": channel})).await;
    }

    /// Watches users; returns the `presence` frame that came before the `ok`.
    pub async fn watch(&mut self, users: &[&str]) -> Value {
        let frames = self.ok(json!({"t": "watch", "users": users})).await;
        let p: Vec<&Value> = frames.iter().filter(|f| f["t"] == "presence").collect();
        assert_eq!(
            p.len(),
            1,
            "{}: expected one presence frame before the ok of watch, got {frames:?}",
            self.name
        );
        p[0].clone()
    }

    /// Waits for a `presence` frame that reports `user` with `status`.
    pub async fn expect_status(&mut self, user: &str, status: &str) -> Value {
        let what = format!("presence {user} {status}");
        self.expect(&what, |f| {
            f["t"] == "presence" && f["users"][user]["status"] == status
        })
        .await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
