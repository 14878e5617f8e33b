//! Small shared pieces: the cross-process clock, a mergeable latency
//! histogram, the deterministic schedules every worker derives on its own,
//! and reading a process's memory from `/proc`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Wall-clock microseconds since the Unix epoch. Workers are separate
/// processes on one machine, so the realtime clock is the one they share
/// for send timestamps and schedules.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The tokio instant at which the shared clock reads `at_us`.
pub fn instant_at(at_us: u64) -> tokio::time::Instant {
    let now = now_us();
    tokio::time::Instant::now() + Duration::from_micros(at_us.saturating_sub(now))
}

/// Source address for connection number `g`: 127.0.0.2 .. 127.0.0.(1+n),
/// so that one source address never needs more than `total / n` ephemeral
/// ports (TIME_WAIT included).
pub fn source_ip(g: u64, n: u32) -> Ipv4Addr {
    let n = u64::from(n.clamp(1, 250));
    Ipv4Addr::new(127, 0, 0, 2 + (g % n) as u8)
}

/// A log-bucketed latency histogram (1 % resolution) in microseconds that
/// merges across workers.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Hist {
    counts: BTreeMap<u32, u64>,
    n: u64,
    max_us: u64,
}

const GROWTH: f64 = 1.01;

impl Hist {
    pub fn record(&mut self, us: u64) {
        let b = ((us as f64 + 1.0).ln() / GROWTH.ln()) as u32;
        *self.counts.entry(b).or_default() += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Hist) {
        for (b, c) in &other.counts {
            *self.counts.entry(*b).or_default() += c;
        }
        self.n += other.n;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    /// The `q` quantile in microseconds, `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (b, c) in &self.counts {
            seen += c;
            if seen >= rank {
                let mid = GROWTH.powf(f64::from(*b) + 0.5) - 1.0;
                return Some(mid.min(self.max_us as f64));
            }
        }
        Some(self.max_us as f64)
    }
}

/// A fixed pseudo-random permutation of `0..n` (splitmix64 + Fisher-Yates),
/// identical in every process.
pub fn permutation(n: u64, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// `pos[x]` = index of `x` in `perm`.
pub fn inverse(perm: &[u32]) -> Vec<u32> {
    let mut pos = vec![0u32; perm.len()];
    for (i, &x) in perm.iter().enumerate() {
        pos[x as usize] = i as u32;
    }
    pos
}

/// The users user `g` of `n` watches in the status scenario: `friends`
/// distinct others, and every user is watched by exactly `friends` users.
pub fn friends_of(g: u64, n: u64, friends: u64) -> Vec<u64> {
    let friends = friends.min(n.saturating_sub(1));
    let stride = (n / friends.max(1)).max(1);
    (0..friends).map(|j| (g + 1 + j * stride) % n).collect()
}

/// Resident set size of a process in KiB (VmRSS), from `/proc`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Raises this process's soft open-files limit to its hard limit.
pub fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// A free TCP port on 127.0.0.1 (bound then released; the tiny race is fine
/// for a benchmark that starts one server at a time).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Machine description for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!(
        "{cores} cores (nproc), {:.1} GiB RAM, {cpu}, open files {} per process",
        mem_kib as f64 / 1024.0 / 1024.0,
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(_, h)| h)
            .unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_two_percent() {
        let mut h = Hist::default();
        for us in 1..=10_000u64 {
            h.record(us);
        }
        let p50 = h.quantile_us(0.5).unwrap();
        let p99 = h.quantile_us(0.99).unwrap();
        assert!((p50 - 5_000.0).abs() / 5_000.0 < 0.02, "{p50}");
        assert!((p99 - 9_900.0).abs() / 9_900.0 < 0.02, "{p99}");
        let mut other = Hist::default();
        other.merge(&h);
        assert_eq!(other.len(), 10_000);
    }

    #[test]
    fn permutation_is_a_permutation_and_deterministic() {
        let p = permutation(1000, 7);
        assert_eq!(p, permutation(1000, 7));
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        let pos = inverse(&p);
        assert_eq!(p[pos[17] as usize], 17);
    }

    #[test]
    fn friends_are_distinct_and_never_self() {
        for (n, f) in [(10_000, 200), (1_000, 50), (7, 3), (5, 10)] {
            for g in 0..n.min(300) {
                let fr = friends_of(g, n, f);
                let mut s = fr.clone();
                s.sort_unstable();
                s.dedup();
                assert_eq!(s.len(), fr.len());
                assert!(!fr.contains(&g));
            }
        }
    }
}
