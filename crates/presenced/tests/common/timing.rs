//! Waiting in tests: the default wait for a frame, polling for state, the
//! clock, and the lock that keeps the heavy tests apart.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default time to wait for an expected frame.
pub const WAIT: Duration = Duration::from_secs(5);

/// Serialises the heavy tests (thousands of sockets) of one test binary so
/// they do not starve each other or the timing-sensitive tests.
pub async fn heavy_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Polls `f` until it returns `Some`, up to `within`. For state the server
/// exposes only on request (for example a fresh snapshot), not for frames.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
