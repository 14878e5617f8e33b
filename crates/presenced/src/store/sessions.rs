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
    use std::io::Write;
    let tmp = data_dir.join(format!("{SESSIONS_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // Resume tokens: readable by the owner only, like the secrets.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let bytes = serde_json::to_vec(sessions)?;
    options
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_kept_readable_by_the_owner_only_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        save_sessions(dir.path(), &[]).unwrap();
        save_sessions(dir.path(), &[]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SESSIONS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        assert!(take_sessions(dir.path()).is_empty());
        assert!(!dir.path().join(SESSIONS_FILE).exists(), "taken once");
    }
}
