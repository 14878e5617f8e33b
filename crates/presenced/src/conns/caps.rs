//! The connection caps: how many TCP connections the server holds in all and
//! per source address, and what a connection over a cap may still do.
//!
//! Every accepted socket gets an [`Admission`] whose [`Conn`] counts it until
//! the socket is gone: for an HTTP connection when it closes, for a WebSocket
//! when the upgraded socket is dropped (the count lives in the socket's I/O
//! wrapper, see `io.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Connections over a cap that may still be served, so that a full server
/// still answers `/healthz`, `/readyz` and `/metrics` (and refuses everything
/// else with a clear 503 or 429 rather than hanging). Part of the descriptors
/// kept in reserve (see `super::RESERVED_FDS`).
pub const OVERFLOW: u32 = 64;

/// Of [`OVERFLOW`], what one address may take: a client flooding the server
/// with half-sent requests cannot keep an operator's probe out.
pub const OVERFLOW_PER_IP: u32 = 8;

/// Why a connection is over a cap: what its requests are refused with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// The server holds `max_connections`: 503 `unavailable`.
    Total,
    /// Its address holds `max_connections_per_ip`: 429 `rate_limited`.
    PerIp,
}

impl Over {
    /// The label of `presenced_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Over::Total => "total",
            Over::PerIp => "per_ip",
        }
    }
}

/// What an accepted socket may do.
pub enum Admission {
    /// Within the caps: served as usual.
    Served(Conn),
    /// Over a cap: only the operations endpoints are served, once, and every
    /// other request is refused.
    Over(Conn, Over),
    /// Over a cap and the overflow is full too (or this address's part of
    /// it): closed at once.
    Closed(Over),
}

/// One address's connections.
#[derive(Debug, Default)]
struct Held {
    served: u32,
    over: u32,
}

/// The caps and the counts.
#[derive(Debug)]
pub struct Caps {
    /// 0: no cap.
    max_total: u32,
    /// 0: no cap.
    max_per_ip: u32,
    /// Connections within the caps.
    served: AtomicU32,
    /// Connections over a cap still being answered.
    overflow: AtomicU32,
    per_ip: Mutex<HashMap<IpAddr, Held>>,
}

impl Caps {
    pub fn new(max_total: u32, max_per_ip: u32) -> Arc<Caps> {
        Arc::new(Caps {
            max_total,
            max_per_ip,
            served: AtomicU32::new(0),
            overflow: AtomicU32::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// The total cap (0: none).
    pub fn max_total(&self) -> u32 {
        self.max_total
    }

    /// Connections held within the caps now.
    pub fn served(&self) -> u32 {
        self.served.load(Ordering::Relaxed)
    }

    /// Counts a new socket from `ip` and says what it may do.
    pub fn admit(self: &Arc<Caps>, ip: IpAddr) -> Admission {
        // Every count changes under the map's lock: two accepts cannot both
        // take the last place.
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let held = per_ip.entry(ip).or_default();
        let total = self.served.load(Ordering::Relaxed);
        let over = if self.max_per_ip > 0 && held.served >= self.max_per_ip {
            Over::PerIp
        } else if self.max_total > 0 && total >= self.max_total {
            Over::Total
        } else {
            held.served += 1;
            self.served.store(total + 1, Ordering::Relaxed);
            crate::metrics::set_tcp_connections(total + 1);
            return Admission::Served(Conn::new(self.clone(), ip, false));
        };
        let overflow = self.overflow.load(Ordering::Relaxed);
        if overflow >= OVERFLOW || held.over >= OVERFLOW_PER_IP {
            if held.served == 0 && held.over == 0 {
                per_ip.remove(&ip);
            }
            return Admission::Closed(over);
        }
        held.over += 1;
        self.overflow.store(overflow + 1, Ordering::Relaxed);
        Admission::Over(Conn::new(self.clone(), ip, true), over)
    }

    fn release(&self, ip: IpAddr, over: bool) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let Some(held) = per_ip.get_mut(&ip) else {
            return;
        };
        if over {
            held.over -= 1;
            self.overflow.fetch_sub(1, Ordering::Relaxed);
        } else {
            held.served -= 1;
            let left = self.served.fetch_sub(1, Ordering::Relaxed) - 1;
            crate::metrics::set_tcp_connections(left);
        }
        if held.served == 0 && held.over == 0 {
            per_ip.remove(&ip);
        }
    }
}

/// One counted socket: its place in the caps, given back on drop, and when
/// it last moved a byte (for the idle timeout).
#[derive(Debug)]
pub struct Conn {
    caps: Arc<Caps>,
    ip: IpAddr,
    /// In the overflow rather than within the caps.
    over: bool,
    /// Milliseconds on `io::ticks`' clock at the last byte read or written.
    last_active: AtomicU32,
    /// When it began to wait for a request's head (on `io::ticks`' clock:
    /// its opening, or the end of the previous response), or [`BUSY`]
    /// while a request is being answered.
    head_since: AtomicU32,
}

/// `Conn::head_since` while a request is being answered.
const BUSY: u32 = u32::MAX;

impl Conn {
    fn new(caps: Arc<Caps>, ip: IpAddr, over: bool) -> Conn {
        Conn {
            caps,
            ip,
            over,
            last_active: AtomicU32::new(super::io::ticks()),
            head_since: AtomicU32::new(super::io::ticks()),
        }
    }

    /// A request's head has arrived: it is being answered.
    pub fn request_started(&self) {
        self.head_since.store(BUSY, Ordering::Relaxed);
    }

    /// The response is written: the next request's head is awaited.
    pub fn request_done(&self) {
        // Not `BUSY` even when the clock reads it.
        let now = super::io::ticks().min(BUSY - 1);
        self.head_since.store(now, Ordering::Relaxed);
    }

    /// Milliseconds it has waited for a request's head, if it is waiting.
    pub fn waiting_for_head_ms(&self) -> Option<u32> {
        match self.head_since.load(Ordering::Relaxed) {
            BUSY => None,
            since => Some(super::io::ticks().saturating_sub(since)),
        }
    }

    /// Notes that a byte moved now.
    pub fn touch(&self) {
        self.last_active
            .store(super::io::ticks(), Ordering::Relaxed);
    }

    /// Milliseconds since the last byte moved.
    pub fn idle_ms(&self) -> u32 {
        super::io::ticks().saturating_sub(self.last_active.load(Ordering::Relaxed))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.caps.release(self.ip, self.over);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_caps_count_sockets_until_they_are_dropped() {
        let caps = Caps::new(3, 2);
        let a1 = caps.admit(ip(1));
        let a2 = caps.admit(ip(1));
        assert!(matches!(a1, Admission::Served(_)) && matches!(a2, Admission::Served(_)));
        assert!(matches!(caps.admit(ip(1)), Admission::Over(_, Over::PerIp)));
        let b1 = caps.admit(ip(2));
        assert!(matches!(b1, Admission::Served(_)));
        assert!(matches!(caps.admit(ip(3)), Admission::Over(_, Over::Total)));
        assert_eq!(caps.served(), 3);
        drop(a1);
        assert_eq!(caps.served(), 2);
        assert!(matches!(caps.admit(ip(3)), Admission::Served(_)));
        // Dropped admissions above gave their places back.
        assert_eq!(caps.overflow.load(Ordering::Relaxed), 0);
        drop((a2, b1));
        assert!(caps.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn the_overflow_is_bounded_in_all_and_per_address() {
        let caps = Caps::new(1, 0);
        let _served = caps.admit(ip(1));
        let mine: Vec<_> = (0..OVERFLOW_PER_IP).map(|_| caps.admit(ip(1))).collect();
        assert!(
            mine.iter()
                .all(|a| matches!(a, Admission::Over(_, Over::Total)))
        );
        // One address cannot take the whole overflow...
        assert!(matches!(caps.admit(ip(1)), Admission::Closed(Over::Total)));
        // ...so another still gets in.
        assert!(matches!(caps.admit(ip(2)), Admission::Over(..)));
        let others: Vec<_> = (0..OVERFLOW)
            .map(|i| caps.admit(IpAddr::from([10, 0, (i / 200) as u8, (i % 200) as u8])))
            .collect();
        let kept = others
            .iter()
            .filter(|a| matches!(a, Admission::Over(..)))
            .count();
        assert_eq!(kept as u32, OVERFLOW - OVERFLOW_PER_IP);
        assert!(matches!(caps.admit(ip(9)), Admission::Closed(Over::Total)));
        drop((mine, others));
        assert!(matches!(caps.admit(ip(9)), Admission::Over(..)));
        // What was dropped is forgotten: only 127.0.0.1's served one is left.
        assert_eq!(caps.per_ip.lock().unwrap().len(), 1);
    }

    #[test]
    fn zero_means_no_cap() {
        let caps = Caps::new(0, 0);
        let all: Vec<_> = (0..1000).map(|_| caps.admit(ip(1))).collect();
        assert!(all.iter().all(|a| matches!(a, Admission::Served(_))));
    }
}
