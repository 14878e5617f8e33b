//! The server's clock and its fresh ids.
//!
//! - [`now_ms`], the server's clock: unix milliseconds that never jump. It
//!   is the wall clock read once, when the process starts, plus the
//!   monotonic time elapsed since. Every deadline (heartbeats, grace
//!   windows, coalescing windows, webhook batches and retries) and every
//!   time the engine shows or stores (`since`, `last_seen`, event times)
//!   come from it, so a step of the wall clock (`date -s`, NTP correcting a
//!   clock that was off) moves no deadline.
//! - [`wall_ms`], the wall clock itself: only where a time is compared with
//!   another machine's (a token's `exp` and `nbf`, the webhook signature's
//!   `t`).
//! - [`WallWatch`] notices when the two part (a step, a suspended host) and
//!   says so in the log. The server's clock is not moved to follow: that
//!   would move every deadline with it. Times shown follow the server's
//!   clock until the next restart, which reads the wall clock again.
//! - [`random_token`]: unguessable session ids and event ids.

use std::sync::LazyLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The wall clock and the monotonic clock, read together once.
struct Anchor {
    wall_ms: u64,
    at: Instant,
}

static ANCHOR: LazyLock<Anchor> = LazyLock::new(|| Anchor {
    wall_ms: wall_ms(),
    at: Instant::now(),
});

/// Reads the wall clock that [`now_ms`] starts from; the first call of
/// either does. `main` calls it first thing.
pub fn start() {
    LazyLock::force(&ANCHOR);
}

/// The server's clock, in unix milliseconds: the wall clock at start plus
/// the monotonic time since. Never goes back, never jumps.
pub fn now_ms() -> u64 {
    let a = &*ANCHOR;
    a.wall_ms
        .saturating_add(u64::try_from(a.at.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// The wall clock, in unix milliseconds. It can jump either way.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How far the wall clock may part from [`now_ms`] before it is reported.
pub const WALL_STEP_MS: u64 = 1_000;
/// How often [`WallWatch::check`] compares the two clocks at most.
pub const WALL_CHECK_MS: u64 = 5_000;

/// Compares the wall clock with the server's clock now and then, and logs
/// one warning each time their difference changes by more than
/// [`WALL_STEP_MS`].
#[derive(Debug, Default)]
pub struct WallWatch {
    /// The difference (wall minus server, ms) last reported; 0 at start.
    reported: i64,
    next_check: u64,
}

impl WallWatch {
    /// Compares the clocks if [`WALL_CHECK_MS`] have passed since the last
    /// time; cheap otherwise. Call it often (the heartbeat task does).
    pub fn check(&mut self) {
        let now = now_ms();
        if now < self.next_check {
            return;
        }
        self.next_check = now + WALL_CHECK_MS;
        if let Some(offset) = self.observe(wall_ms() as i64 - now as i64) {
            let secs = offset as f64 / 1000.0;
            if offset == 0 {
                tracing::info!("the wall clock agrees with the server's clock again");
            } else {
                tracing::warn!(
                    offset_ms = offset,
                    "the wall clock moved: it is now {secs:+.1} s from the server's clock. \
                     Heartbeats, grace windows and retries are not affected; times shown and \
                     stored keep following the server's clock (the wall clock as it was at start) \
                     until the next restart"
                );
            }
        }
    }

    /// The difference to report, if `offset` (wall minus server, ms) is
    /// more than [`WALL_STEP_MS`] from the one reported last; back within
    /// that of zero is reported as 0.
    fn observe(&mut self, offset: i64) -> Option<i64> {
        if offset.abs_diff(self.reported) <= WALL_STEP_MS {
            return None;
        }
        self.reported = if offset.unsigned_abs() <= WALL_STEP_MS {
            0
        } else {
            offset
        };
        Some(self.reported)
    }
}

/// A fresh unguessable token (128 random bits, base64url): session ids and
/// webhook event ids.
pub fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unguessable_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
    }

    #[test]
    fn the_server_clock_starts_at_the_wall_clock_and_never_goes_back() {
        start();
        let a = now_ms();
        assert!(a.abs_diff(wall_ms()) < 1_000, "{a} {}", wall_ms());
        let b = now_ms();
        assert!(b >= a);
    }

    #[test]
    fn a_step_is_reported_once_and_the_return_once() {
        let mut w = WallWatch::default();
        assert_eq!(w.observe(3), None, "jitter");
        assert_eq!(w.observe(-900), None, "within the threshold");
        assert_eq!(w.observe(-600_000), Some(-600_000), "ten minutes back");
        assert_eq!(w.observe(-600_400), None, "the same step");
        assert_eq!(w.observe(-480_000), Some(-480_000), "two minutes ahead");
        assert_eq!(w.observe(200), Some(0), "agrees again");
        assert_eq!(w.observe(-200), None);
    }
}
