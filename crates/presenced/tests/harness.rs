//! The test harness's own pieces, tested: the TCP proxy that stands in for
//! the network between a server and Redis passes, holds and resets.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server on a free port.
async fn echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn roundtrip(s: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Vec<u8>> {
    s.write_all(msg).await.ok()?;
    let mut got = vec![0u8; msg.len()];
    match tokio::time::timeout(within, s.read_exact(&mut got)).await {
        Ok(Ok(_)) => Some(got),
        _ => None,
    }
}

#[tokio::test]
async fn the_proxy_passes_holds_and_resets() {
    let proxy = Proxy::start(echo().await).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(
        roundtrip(&mut s, b"one", WAIT).await.as_deref(),
        Some(&b"one"[..])
    );

    // A blackhole: the socket stays open, nothing comes back...
    proxy.set(Link::Blackhole);
    assert_eq!(
        roundtrip(&mut s, b"two", Duration::from_millis(300)).await,
        None
    );
    // ...until the link passes again: then what was held arrives.
    // A connection opened meanwhile gets nowhere either.
    let mut late = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(
        roundtrip(&mut late, b"late", Duration::from_millis(300)).await,
        None
    );
    proxy.set(Link::Pass);
    let mut got = [0u8; 3];
    tokio::time::timeout(WAIT, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"two");
    let mut got = [0u8; 4];
    tokio::time::timeout(WAIT, late.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"late");

    // A reset ends the connection (and refuses new ones while it lasts).
    proxy.set(Link::Reset);
    let mut buf = [0u8; 8];
    let r = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let mut fresh = TcpStream::connect(proxy.addr).await.unwrap();
    let r = tokio::time::timeout(WAIT, fresh.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    wait_for("no proxied connection", WAIT, || async {
        (proxy.open() == 0).then_some(())
    })
    .await;

    proxy.set(Link::Pass);
    let mut again = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(
        roundtrip(&mut again, b"three", WAIT).await.as_deref(),
        Some(&b"three"[..])
    );
}
