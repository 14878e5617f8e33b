//! A real `redis-server` for one test: its own free port and temporary
//! directory, nothing saved, killed on drop. [`RedisServer::start`] runs a
//! plain Redis; [`RedisServer::start_cluster`] a one-node Redis Cluster
//! that owns every slot, where Redis refuses any script that touches keys
//! (or shard channels) of more than one slot.
//!
//! Beside it, for looking at what the scripts left: [`snapshot`] (every key
//! and its contents) and [`Listener`] (what was published on shard
//! channels).
//!
//! There is no skipping: without `redis-server` on PATH the tests fail and
//! say how to install it (`./scripts/test` installs Debian's package).

/// Runs the test `$name(RedisServer)` twice: on a plain Redis and on a
/// one-node cluster (the file must `use` [`RedisServer`]).
#[allow(unused_macros)]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn single() {
                super::$name(super::RedisServer::start()).await
            }
            #[tokio::test]
            async fn cluster() {
                super::$name(super::RedisServer::start_cluster()).await
            }
        }
    };
}

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;

use tempfile::TempDir;

#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::launch(false)
    }

    /// A one-node Redis Cluster: `cluster-enabled`, every slot assigned.
    pub fn start_cluster() -> RedisServer {
        let server = Self::launch(true);
        let mut c = server.conn();
        let _: () = redis::cmd("CLUSTER")
            .arg(&["ADDSLOTSRANGE", "0", "16383"])
            .query(&mut c)
            .expect("assign every slot");
        server.wait("the cluster state to be ok", || {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?;
            info.contains("cluster_state:ok").then_some(())
        });
        server
    }

    fn launch(cluster: bool) -> RedisServer {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temporary directory");
            let port = free_port();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if cluster {
                cmd.args(["--cluster-enabled", "yes"]);
            }
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-server is not on PATH: these tests need a real Redis \
                     (Debian: apt-get install redis-server; ./scripts/test installs it)"
                ),
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            let mut server = RedisServer {
                child,
                port,
                _dir: dir,
            };
            if server.ready() {
                return server;
            }
            // The port was taken in between: another one.
            let _ = server.child.kill();
        }
        panic!("redis-server did not start");
    }

    /// Waits for PING to answer, or for the process to exit.
    fn ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if let Ok(mut c) = redis::Client::open(self.url()).and_then(|c| c.get_connection())
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends the process a signal (`STOP`, `CONT`): a stalled Redis.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain blocking connection, for the tests' own reads.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to the test's redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped process dies of SIGKILL all the same.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every key but the replay records (`…:r:<token>:<op>`), with its
/// contents as text: hashes and streams sorted, stream entries with their
/// fields.
pub fn snapshot(c: &mut redis::Connection) -> BTreeMap<String, String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    let mut out = BTreeMap::new();
    for key in keys {
        if key.contains(":r:") {
            continue;
        }
        let kind: String = redis::cmd("TYPE").arg(&key).query(c).unwrap();
        let text = match kind.as_str() {
            "hash" => {
                let h: BTreeMap<String, String> = redis::cmd("HGETALL").arg(&key).query(c).unwrap();
                format!("{h:?}")
            }
            "string" => redis::cmd("GET").arg(&key).query::<String>(c).unwrap(),
            "stream" => {
                let v: Value = redis::cmd("XRANGE")
                    .arg(&[&key, "-", "+"])
                    .query(c)
                    .unwrap();
                format!("{v:?}")
            }
            other => panic!("{key}: unexpected type {other}"),
        };
        out.insert(key, text);
    }
    out
}

/// The entries of a stream, each as its field → value map.
pub fn stream(c: &mut redis::Connection, key: &str) -> Vec<BTreeMap<String, String>> {
    let v: Vec<(String, Vec<String>)> =
        redis::cmd("XRANGE").arg(&[key, "-", "+"]).query(c).unwrap();
    v.into_iter()
        .map(|(_, f)| {
            f.chunks(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect()
        })
        .collect()
}

/// Subscribed (`SSUBSCRIBE`) to shard channels, it keeps every message in
/// order of arrival.
pub struct Listener {
    messages: Arc<Mutex<Vec<(String, String)>>>,
    url: String,
    last: String,
}

impl Listener {
    /// Subscribes to each channel (one at a time: a Redis Cluster takes one
    /// slot per call), and returns once every subscription is confirmed.
    pub fn start(server: &RedisServer, channels: &[String]) -> Listener {
        let mut c = server.conn();
        for ch in channels {
            c.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(ch).get_packed_command())
                .unwrap();
            let confirm = c.recv_response().unwrap();
            assert!(format!("{confirm:?}").contains("ssubscribe"), "{confirm:?}");
        }
        let messages = Arc::new(Mutex::new(Vec::new()));
        let into = messages.clone();
        std::thread::spawn(move || {
            // Ends when the server goes.
            while let Ok(Value::Array(parts)) = c.recv_response() {
                let text = |v: &Value| match v {
                    Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    other => format!("{other:?}"),
                };
                if parts.len() == 3 && text(&parts[0]) == "smessage" {
                    into.lock()
                        .unwrap()
                        .push((text(&parts[1]), text(&parts[2])));
                }
            }
        });
        Listener {
            messages,
            url: server.url(),
            last: channels.last().cloned().unwrap_or_default(),
        }
    }

    /// Everything published so far: publishes an end mark after it (one
    /// server, one connection: messages arrive in order) and waits for it.
    pub fn drain(&self) -> Vec<(String, String)> {
        let mut c = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .unwrap();
        let _: i64 = redis::cmd("SPUBLISH")
            .arg(&[&self.last, "END"])
            .query(&mut c)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut m = self.messages.lock().unwrap();
                if let Some(end) = m
                    .iter()
                    .position(|(ch, msg)| *ch == self.last && msg == "END")
                {
                    let got: Vec<_> = m.drain(..=end).collect();
                    return got[..got.len() - 1].to_vec();
                }
            }
            assert!(Instant::now() < deadline, "the end mark did not arrive");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
