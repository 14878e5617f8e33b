//! `presenced.toml`: reading it into [`ServeArgs`], and errors that say where.
//!
//! Relative paths in the file are relative to the working directory, like
//! those given as flags.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};

use super::args::ServeArgs;

/// The file read when neither `--config` nor `PRESENCED_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "presenced.toml";

/// Reads the explicit config file, or `./presenced.toml` when it exists, and
/// says which file it read.
pub(super) fn read(explicit: Option<&Path>) -> anyhow::Result<(ServeArgs, Option<PathBuf>)> {
    let explicit = explicit.filter(|p| !p.as_os_str().is_empty());
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !default.is_file() {
                return Ok((ServeArgs::default(), None));
            }
            default
        }
    };
    let text = fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    if both_webhook_keys(&text) {
        bail!("set either webhook_urls or webhook_url in the config file, not both");
    }
    let file = parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
    Ok((file, Some(path)))
}

/// Whether the file has both spellings of the webhook URLs key (to parse,
/// `webhook_url` is an alias of `webhook_urls`). Text that is not TOML has
/// neither: parsing it again reports the error.
fn both_webhook_keys(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Keys {
        webhook_url: Option<IgnoredAny>,
        webhook_urls: Option<IgnoredAny>,
    }
    toml::from_str::<Keys>(text)
        .is_ok_and(|keys| keys.webhook_url.is_some() && keys.webhook_urls.is_some())
}

/// Parses the TOML text. The error is one line, `line:column: message`, with
/// the key in front when the error is about a value, since toml's own message
/// ("invalid value: integer `-5`, expected u64") does not name it.
pub(super) fn parse(text: &str) -> Result<ServeArgs, String> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let message = e.message().trim().replace('\n', " ");
        let Some(span) = e.span() else {
            return format!("1:1: {message}");
        };
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_no = text[..start].matches('\n').count() + 1;
        let col = text[line_start..start].chars().count() + 1;
        let line = text[line_start..].lines().next().unwrap_or("");
        let key = match line.find('=') {
            Some(eq) if start - line_start > eq => Some(line[..eq].trim()),
            _ => None,
        }
        .filter(|key| !key.is_empty() && !message.contains(&format!("`{key}`")));
        match key {
            Some(key) => format!("{line_no}:{col}: {key}: {message}"),
            None => format!("{line_no}:{col}: {message}"),
        }
    })
}

/// `listen = "IP:port"`.
pub(super) fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    let addr = text.trim().parse().map_err(|e| {
        D::Error::custom(format!(
            "invalid address \"{text}\" ({e}); expected IP:port, e.g. 127.0.0.1:7400"
        ))
    })?;
    Ok(Some(addr))
}

/// `webhook_urls = "https://..."` or `webhook_urls = ["https://...", ...]`.
pub(super) fn one_or_many<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "expected a URL string or an array of URL strings"
    )]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(d)? {
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    }))
}
