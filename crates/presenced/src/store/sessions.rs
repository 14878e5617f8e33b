//! Sessions kept at a clean shutdown: the resumable state of every
//! connection, so clients resume (`resumed: true`) after the restart. A
//! file in the data directory, written at the stop and taken at the start.

use std::path::Path;

use anyhow::Context;
use presenced_engine::SessionRecord;

const SESSIONS_FILE: &str = "sessions.json";

/// Keeps the resumable state of every connection at a clean shutdown, so
/// clients resume (`resumed: true`) after the restart.
pub fn save_sessions(data_dir: &Path, sessions: &[SessionRecord]) -> anyhow::Result<()> {
    let tmp = data_dir.join(format!("{SESSIONS_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(sessions)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, data_dir.join(SESSIONS_FILE))?;
    Ok(())
}

/// Takes the sessions a clean shutdown left (and removes the file: after a
/// later crash they would be stale). None after a crash.
pub fn take_sessions(data_dir: &Path) -> Vec<SessionRecord> {
    let path = data_dir.join(SESSIONS_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    let _ = std::fs::remove_file(&path);
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring an unreadable sessions file");
        Vec::new()
    })
}
