//! Secrets: the [`Secret`] wrapper that keeps them out of logs, and the ones
//! kept in the data directory (read there, or generated once when none is
//! configured).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// File in the data directory holding the generated JWT secret.
pub const JWT_SECRET_FILE: &str = "jwt_secret";
/// File in the data directory holding the generated API key.
pub const API_KEY_FILE: &str = "api_key";

/// A value that must not reach a log: a secret, a key, or a URL that may
/// carry credentials. Its `Debug` prints `<redacted>`; [`Secret::expose`]
/// gives the value to the code that needs it.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// A secret that [`super::Settings::load`] generated and stored because none
/// was configured; main prints it once so the operator can use it.
#[derive(Clone, Debug)]
pub struct GeneratedSecret {
    /// What it is, for people: "JWT secret" or "API key".
    pub what: &'static str,
    /// Where it is kept.
    pub path: PathBuf,
    pub value: Secret,
}

pub(super) fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// Reads `<dir>/<file>`: `None` when there is no such file.
pub(crate) fn read_stored_secret(
    dir: &Path,
    file: &str,
    what: &'static str,
) -> anyhow::Result<Option<Secret>> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(contents) => Ok(Some(stored_value(&path, &contents, what)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Reads `<dir>/<file>`, or generates a secret and stores it there readable by
/// the owner only. Returns the secret and, when it was generated now, a note
/// to show the operator.
pub(crate) fn stored_secret(
    dir: &Path,
    file: &str,
    what: &'static str,
) -> anyhow::Result<(Secret, Option<GeneratedSecret>)> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(contents) => return Ok((stored_value(&path, &contents, what)?, None)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }

    let value = Secret(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let mut options = fs::OpenOptions::new();
    // create_new: two processes starting at once must not overwrite each
    // other's secret; the loser reads the winner's.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = match options.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let contents = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            return Ok((stored_value(&path, &contents, what)?, None));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    f.write_all(format!("{}\n", value.expose()).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::debug!(path = %path.display(), "generated a {what}");
    Ok((value.clone(), Some(GeneratedSecret { what, path, value })))
}

fn stored_value(path: &Path, contents: &str, what: &str) -> anyhow::Result<Secret> {
    let value = contents.trim();
    if value.is_empty() {
        bail!(
            "{} is empty; delete it to have a new {what} generated",
            path.display()
        );
    }
    Ok(Secret(value.to_owned()))
}
