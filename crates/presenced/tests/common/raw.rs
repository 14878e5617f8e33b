//! `presenced serve` as a bare child process, for what the [`Server`]
//! harness does not show: a server that generates its own secret in its
//! data directory, or whose log pipes a test closes.
//!
//! [`Server`]: super::Server

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A started child: the process (killed when dropped; its stderr piped and
/// left to the caller), its address, and the rest of its stdout.
pub struct RawServer {
    pub child: Child,
    pub addr: String,
    pub stdout: Lines<BufReader<ChildStdout>>,
}

/// Starts `presenced serve <args>` in `dir` (no `PRESENCED_*` settings from
/// the environment but `RUST_LOG=info`) and waits, at most 30 s, for its
/// `listening on` line.
pub async fn spawn_raw(dir: &Path, args: &[&str]) -> RawServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env_remove("PRESENCED_CONFIG")
        .env_remove("PRESENCED_JWT_SECRET")
        .env_remove("PRESENCED_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn presenced");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix("listening on http://") {
                return a.to_owned();
            }
        }
        panic!("presenced ended before listening");
    })
    .await
    .expect("presenced listens within 30 s");
    RawServer {
        child,
        addr,
        stdout,
    }
}
