//! Settings of the real binary: the settings of cluster mode (`--redis-url`,
//! `--node-id`), which is not available yet, stop `serve` with status 2 and
//! one clear line on stderr, whether they come from a flag, the environment
//! or the TOML file.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A URL with a password, which must never be echoed.
const REDIS_URL: &str = "redis://presenced:hunter2@127.0.0.1:6379";

/// Runs `presenced <args>` in `dir` with the given environment (and none of
/// the cluster variables otherwise) and returns what it did; it must exit
/// within 30 s.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_presenced"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("PRESENCED_REDIS_URL")
        .env_remove("PRESENCED_NODE_ID")
        .env_remove("PRESENCED_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn presenced");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(output) => output.expect("wait for presenced"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("presenced {args:?} {env:?} did not exit within 30 s");
        }
    }
}

/// `serve` with one cluster setting, given as `how`: exits 2 and names the
/// setting, never its value, before it listens or writes anything.
fn refused(how: &str, key: &str, args: &[&str], env: &[(&str, &str)], toml: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let mut argv = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"];
    argv.extend_from_slice(args);
    if let Some(toml) = toml {
        std::fs::write(dir.path().join("cluster.toml"), toml).unwrap();
        argv.extend_from_slice(&["--config", "cluster.toml"]);
    }
    let out = run(dir.path(), &argv, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{how}: {stderr}{stdout}");

    let names = format!(
        "{key} (--{}, PRESENCED_{})",
        key.replace('_', "-"),
        key.to_ascii_uppercase()
    );
    assert_eq!(
        stderr.trim_end(),
        format!(
            "presenced: error: cluster mode is not available yet: unset {names} to run this \
             server on its own"
        ),
        "{how}"
    );
    assert!(!stderr.contains("hunter2"), "{how}: {stderr}");
    assert!(stdout.is_empty(), "{how}: {stdout}");
    assert!(
        !dir.path().join("data").exists(),
        "{how}: wrote its data directory"
    );
}

#[test]
fn redis_url_stops_serve_from_a_flag_the_environment_or_the_file() {
    refused("flag", "redis_url", &["--redis-url", REDIS_URL], &[], None);
    refused(
        "flag with =",
        "redis_url",
        &[&format!("--redis-url={REDIS_URL}")],
        &[],
        None,
    );
    refused(
        "env",
        "redis_url",
        &[],
        &[("PRESENCED_REDIS_URL", REDIS_URL)],
        None,
    );
    refused(
        "file",
        "redis_url",
        &[],
        &[],
        Some(&format!("redis_url = \"{REDIS_URL}\"\n")),
    );
}

#[test]
fn node_id_stops_serve_from_a_flag_the_environment_or_the_file() {
    refused("flag", "node_id", &["--node-id", "hunter2"], &[], None);
    refused(
        "env",
        "node_id",
        &[],
        &[("PRESENCED_NODE_ID", "hunter2")],
        None,
    );
    refused("file", "node_id", &[], &[], Some("node_id = \"hunter2\"\n"));
}

#[test]
fn both_cluster_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"],
        &[
            ("PRESENCED_REDIS_URL", REDIS_URL),
            ("PRESENCED_NODE_ID", "hunter2"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "unset redis_url (--redis-url, PRESENCED_REDIS_URL) and node_id (--node-id, \
             PRESENCED_NODE_ID)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn help_lists_the_cluster_settings_as_not_available_yet() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["serve", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--redis-url <URL>", "--node-id <ID>"] {
        let line = help.lines().find(|l| l.contains(flag)).unwrap_or_else(|| {
            panic!("{flag} is not in the help:\n{help}");
        });
        assert!(line.contains("not available yet"), "{line}");
    }
}
