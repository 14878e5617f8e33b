//! [`Proxy`]: a TCP proxy between a server and a service it uses (Redis),
//! standing in for the network between them: it passes bytes, holds them
//! (a blackhole: the sockets stay open and nothing arrives, as when a link
//! is cut without either end knowing), or resets every connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwards both ways.
    Pass,
    /// Accepts and keeps connections but forwards nothing (until `Pass`).
    Blackhole,
    /// Resets every connection, and new ones at once (until `Pass`).
    Reset,
}

/// A running proxy to `upstream`, on a free loopback port. Stops on drop.
pub struct Proxy {
    pub addr: SocketAddr,
    link: watch::Sender<Link>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (link, _) = watch::channel(Link::Pass);
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (link, tasks) = (link.clone(), tasks.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if *link.borrow() == Link::Reset {
                        reset(client);
                        continue;
                    }
                    let task = tokio::spawn(connect_and_pipe(client, upstream, link.subscribe()));
                    let mut tasks = tasks.lock().unwrap();
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(task);
                }
            }
        });
        Proxy {
            addr,
            link,
            tasks,
            accept,
        }
    }

    /// Sets what the proxy does from now on.
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    /// Connections being proxied now.
    pub fn open(&self) -> usize {
        let mut tasks = self.tasks.lock().unwrap();
        tasks.retain(|t| !t.is_finished());
        tasks.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Closes with a TCP reset rather than a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Reaches `upstream` once the link is no blackhole (a cut link lets no
/// connection through either), then pipes.
async fn connect_and_pipe(
    client: TcpStream,
    upstream: SocketAddr,
    mut link: watch::Receiver<Link>,
) {
    loop {
        let now = *link.borrow_and_update();
        match now {
            Link::Reset => return reset(client),
            Link::Pass => break,
            Link::Blackhole => {
                if link.changed().await.is_err() {
                    return;
                }
            }
        }
    }
    match TcpStream::connect(upstream).await {
        Ok(server) => pipe(client, server, link).await,
        Err(_) => reset(client),
    }
}

/// Forwards both ways while the link passes; holds while it is a
/// blackhole; resets both ends when it resets or either end closes.
async fn pipe(client: TcpStream, server: TcpStream, mut link: watch::Receiver<Link>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    loop {
        let now = *link.borrow_and_update();
        match now {
            Link::Reset => break,
            Link::Blackhole => {
                // Nothing is read, so nothing is forwarded; wait for a change.
                if link.changed().await.is_err() {
                    break;
                }
                continue;
            }
            Link::Pass => {}
        }
        tokio::select! {
            r = cr.read(&mut up) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => if sw.write_all(&up[..n]).await.is_err() { break },
            },
            r = sr.read(&mut down) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => if cw.write_all(&down[..n]).await.is_err() { break },
            },
            changed = link.changed() => if changed.is_err() { break },
        }
    }
    let client = cr.reunite(cw).ok();
    let server = sr.reunite(sw).ok();
    for s in [client, server].into_iter().flatten() {
        reset(s);
    }
}
