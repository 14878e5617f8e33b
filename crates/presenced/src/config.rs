//! Server settings, layered: command-line flags, then `PRESENCED_*`
//! environment variables, then an optional `presenced.toml`, then defaults.
//!
//! clap resolves flags and environment variables into [`ServeArgs`], where
//! every field is optional so that "not given" can fall through to the file
//! and then to the default. [`Settings::load`] does the rest: reads the file,
//! validates everything, creates the data directory and, when no secret or key
//! is configured, reads or generates them there so a first run just works.
//!
//! An empty string (`PRESENCED_JWT_SECRET=` in a compose file, `jwt_secret =
//! ""`) counts as not set. Relative paths are relative to the working
//! directory, also inside the TOML file.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::builder::BoolishValueParser;
use presenced_engine::{ChannelRule, valid_channel_name};
use serde::Deserialize;

/// The file read when neither `--config` nor `PRESENCED_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "presenced.toml";
/// File in the data directory holding the generated JWT secret.
pub const JWT_SECRET_FILE: &str = "jwt_secret";
/// File in the data directory holding the generated API key.
pub const API_KEY_FILE: &str = "api_key";

/// Flags (and their environment variables) of `presenced serve`.
#[derive(Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Path of the TOML configuration file [default: ./presenced.toml if it exists]
    #[arg(long, env = "PRESENCED_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:7400]
    #[arg(long, env = "PRESENCED_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Directory for the journal, the webhook outbox and generated secrets [default: ./presenced-data]
    #[arg(long, env = "PRESENCED_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// HMAC secret for HS256/HS384/HS512 tokens
    #[arg(
        long,
        env = "PRESENCED_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA, EC P-256/P-384 or Ed25519) for RS*/PS*/ES*/EdDSA tokens
    #[arg(long, env = "PRESENCED_JWT_PUBLIC_KEY", value_name = "PEM_FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS for RS*/PS*/ES*/EdDSA tokens: a JSON file, or an http(s):// URL kept fresh in the background
    // The URL may carry credentials: `--help` must not show the env value.
    #[arg(
        long,
        env = "PRESENCED_JWT_JWKS",
        value_name = "FILE_OR_URL",
        hide_env_values = true
    )]
    pub jwt_jwks: Option<String>,

    /// Bearer key of the HTTP API
    #[arg(
        long,
        env = "PRESENCED_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,

    /// How long a dropped connection may come back before its user counts as gone [default: 15000]
    #[arg(long, env = "PRESENCED_GRACE_MS", value_name = "MS")]
    pub grace_ms: Option<u64>,

    /// WebSocket ping interval; two silent intervals drop a connection [default: 20000]
    #[arg(long, env = "PRESENCED_HEARTBEAT_MS", value_name = "MS")]
    pub heartbeat_ms: Option<u64>,

    /// Time allowed for the first frame (`hello`) [default: 10000]
    #[arg(long, env = "PRESENCED_HELLO_TIMEOUT_MS", value_name = "MS")]
    pub hello_timeout_ms: Option<u64>,

    /// Window in which a burst of member changes is merged into one diff [default: 50]
    #[arg(long, env = "PRESENCED_COALESCE_MS", value_name = "MS")]
    pub coalesce_ms: Option<u64>,

    /// Changes a quiet channel sends at once before it starts merging them
    /// (earned back at this many a second) [default: 10]
    #[arg(long, env = "PRESENCED_COALESCE_BURST", value_name = "N")]
    pub coalesce_burst: Option<u64>,

    /// Minimum interval between occupancy frames of a channel [default: 1000]
    #[arg(long, env = "PRESENCED_OCCUPANCY_INTERVAL_MS", value_name = "MS")]
    pub occupancy_interval_ms: Option<u64>,

    /// Allow connections without a token (guests) [default: false]
    #[arg(
        long,
        env = "PRESENCED_GUESTS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub guests: Option<bool>,

    /// Let guests watch users' status [default: false]
    #[arg(
        long,
        env = "PRESENCED_GUESTS_WATCH",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub guests_watch: Option<bool>,

    /// Webhook endpoint; repeat the flag (or separate with commas) for several
    #[arg(
        long = "webhook-url",
        env = "PRESENCED_WEBHOOK_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub webhook_urls: Vec<String>,

    /// Secret for the webhooks' Presence-Signature header
    #[arg(
        long,
        env = "PRESENCED_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,

    /// Redis URL for cluster mode
    #[arg(
        long,
        env = "PRESENCED_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,

    /// This node's id in cluster mode
    #[arg(long, env = "PRESENCED_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,

    /// Let the demo page mint tokens (never in production) [default: false]
    #[arg(
        long,
        env = "PRESENCED_DEV_TOKENS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub dev_tokens: Option<bool>,

    /// Largest WebSocket frame accepted [default: 16384]
    #[arg(long, env = "PRESENCED_MAX_FRAME_BYTES", value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,

    /// Largest member data or message data, as JSON [default: 2048]
    #[arg(long, env = "PRESENCED_MAX_DATA_BYTES", value_name = "BYTES")]
    pub max_data_bytes: Option<usize>,

    /// Channels one connection may subscribe to or enter [default: 100]
    #[arg(long, env = "PRESENCED_MAX_CHANNELS_PER_CONN", value_name = "N")]
    pub max_channels_per_conn: Option<usize>,

    /// Users one connection may watch [default: 1000]
    #[arg(long, env = "PRESENCED_MAX_WATCH_PER_CONN", value_name = "N")]
    pub max_watch_per_conn: Option<usize>,

    /// Frames queued for one connection before it counts as lagging [default: 1024]
    #[arg(long, env = "PRESENCED_OUTBOX_FRAMES", value_name = "N")]
    pub outbox_frames: Option<usize>,

    /// Requests per second allowed per connection [default: 50]
    #[arg(long, env = "PRESENCED_RATE_PER_SEC", value_name = "N")]
    pub rate_per_sec: Option<u32>,

    /// Request burst allowed per connection [default: 100]
    #[arg(long, env = "PRESENCED_RATE_BURST", value_name = "N")]
    pub rate_burst: Option<u32>,
}

// Hand-written so that secrets given on the command line never reach a log.
impl fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeArgs")
            .field("config", &self.config)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_data_bytes: usize,
    pub max_channels_per_conn: usize,
    pub max_watch_per_conn: usize,
    pub outbox_frames: usize,
    pub rate_per_sec: u32,
    pub rate_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 * 1024,
            max_data_bytes: 2 * 1024,
            max_channels_per_conn: 100,
            max_watch_per_conn: 1000,
            outbox_frames: 1024,
            rate_per_sec: 50,
            rate_burst: 100,
        }
    }
}

/// A secret that [`Settings::load`] generated and stored because none was
/// configured; main prints it once so the operator can use it.
#[derive(Clone)]
pub struct GeneratedSecret {
    /// What it is, for people: "JWT secret" or "API key".
    pub what: &'static str,
    /// Where it is kept.
    pub path: PathBuf,
    pub value: String,
}

impl fmt::Debug for GeneratedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedSecret")
            .field("what", &self.what)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Where the JSON Web Key Set of `jwt_jwks` comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local JSON file, read at start-up.
    File(PathBuf),
    /// An `http://` or `https://` URL, fetched at start-up and then refreshed.
    Url(String),
}

// Hand-written: a URL may carry credentials (user info, a query token).
impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File(path) => f.debug_tuple("File").field(path).finish(),
            JwksSource::Url(url) => f
                .debug_tuple("Url")
                .field(&crate::outbound::redact_url(url))
                .finish(),
        }
    }
}

/// The resolved settings of a server.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The TOML file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// HMAC secret. After [`Settings::load`], at least one of `jwt_secret`,
    /// `jwt_public_key` and `jwt_jwks` is set.
    pub jwt_secret: Option<String>,
    /// Path of the PEM public key file (checked to be readable).
    pub jwt_public_key: Option<PathBuf>,
    /// The JWKS file (checked to be readable) or URL; never set together
    /// with `jwt_public_key`.
    pub jwt_jwks: Option<JwksSource>,
    pub api_key: String,
    pub grace_ms: u64,
    pub heartbeat_ms: u64,
    pub hello_timeout_ms: u64,
    pub coalesce_ms: u64,
    pub coalesce_burst: u64,
    pub occupancy_interval_ms: u64,
    pub guests: bool,
    pub guests_watch: bool,
    pub webhook_urls: Vec<String>,
    pub webhook_secret: Option<String>,
    pub redis_url: Option<String>,
    pub node_id: Option<String>,
    pub dev_tokens: bool,
    pub limits: Limits,
    /// `[[channels]]` rules, in file order (first match wins).
    pub channels: Vec<ChannelRule>,
    /// Secrets generated by this load, to be shown once.
    pub generated: Vec<GeneratedSecret>,
}

// Hand-written so that logging the settings cannot leak a secret.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "[redacted]");
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("config_file", &self.config_file)
            .field("jwt_secret", &redacted(&self.jwt_secret))
            .field("jwt_public_key", &self.jwt_public_key)
            .field("jwt_jwks", &self.jwt_jwks)
            .field("api_key", &"[redacted]")
            .field("grace_ms", &self.grace_ms)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("hello_timeout_ms", &self.hello_timeout_ms)
            .field("coalesce_ms", &self.coalesce_ms)
            .field("coalesce_burst", &self.coalesce_burst)
            .field("occupancy_interval_ms", &self.occupancy_interval_ms)
            .field("guests", &self.guests)
            .field("guests_watch", &self.guests_watch)
            .field("webhook_urls", &self.webhook_urls)
            .field("webhook_secret", &redacted(&self.webhook_secret))
            .field("redis_url", &redacted(&self.redis_url))
            .field("node_id", &self.node_id)
            .field("dev_tokens", &self.dev_tokens)
            .field("limits", &self.limits)
            .field("channels", &self.channels)
            .field("generated", &self.generated)
            .finish()
    }
}

impl Settings {
    /// Resolves flags/env (already in `args`), the TOML file and defaults,
    /// validates them, creates the data directory and reads or generates the
    /// JWT secret (only when no secret, public key or JWKS is configured) and
    /// the API key there.
    pub fn load(args: ServeArgs) -> anyhow::Result<Settings> {
        let mut resolved = Resolved::new(args)?;
        let mut generated = Vec::new();

        create_data_dir(&resolved.data_dir)?;
        if resolved.jwt_secret.is_none()
            && resolved.jwt_public_key.is_none()
            && resolved.jwt_jwks.is_none()
        {
            let (secret, new) = stored_secret(&resolved.data_dir, JWT_SECRET_FILE, "JWT secret")?;
            resolved.jwt_secret = Some(secret);
            generated.extend(new);
        }
        let api_key = match resolved.api_key.take() {
            Some(key) => key,
            None => {
                let (key, new) = stored_secret(&resolved.data_dir, API_KEY_FILE, "API key")?;
                generated.extend(new);
                key
            }
        };

        let r = resolved;
        Ok(Settings {
            listen: r.listen,
            data_dir: r.data_dir,
            config_file: r.config_file,
            jwt_secret: r.jwt_secret,
            jwt_public_key: r.jwt_public_key,
            jwt_jwks: r.jwt_jwks,
            api_key,
            grace_ms: r.grace_ms,
            heartbeat_ms: r.heartbeat_ms,
            hello_timeout_ms: r.hello_timeout_ms,
            coalesce_ms: r.coalesce_ms,
            coalesce_burst: r.coalesce_burst,
            occupancy_interval_ms: r.occupancy_interval_ms,
            guests: r.guests,
            guests_watch: r.guests_watch,
            webhook_urls: r.webhook_urls,
            webhook_secret: r.webhook_secret,
            redis_url: r.redis_url,
            node_id: r.node_id,
            dev_tokens: r.dev_tokens,
            limits: r.limits,
            channels: r.channels,
            generated,
        })
    }

    /// The HMAC secret that `presenced token` signs with, from the same
    /// sources as [`Settings::load`]; generated in the data directory if
    /// nothing is configured, so tokens made before the first `serve` work.
    /// Unlike `load` it leaves the API key alone: a key generated here would
    /// never be shown by `serve`.
    pub fn load_signing_secret(
        args: ServeArgs,
    ) -> anyhow::Result<(String, Option<GeneratedSecret>)> {
        let resolved = Resolved::new(args)?;
        if let Some(secret) = resolved.jwt_secret {
            return Ok((secret, None));
        }
        if let Some(pem) = resolved.jwt_public_key {
            bail!(
                "the server verifies tokens with the public key {} and has no JWT secret \
                 to sign with; sign tokens with the matching private key instead",
                pem.display()
            );
        }
        if resolved.jwt_jwks.is_some() {
            bail!(
                "the server verifies tokens with a JWKS (jwt_jwks) and has no JWT secret \
                 to sign with; sign tokens with the matching private key instead"
            );
        }
        create_data_dir(&resolved.data_dir)?;
        stored_secret(&resolved.data_dir, JWT_SECRET_FILE, "JWT secret")
    }

    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }

    pub fn coalesce(&self) -> Duration {
        Duration::from_millis(self.coalesce_ms)
    }

    pub fn occupancy_interval(&self) -> Duration {
        Duration::from_millis(self.occupancy_interval_ms)
    }
}

/// `presenced.toml`. Every key is optional; unknown keys are errors so that a
/// typo does not silently leave a default in place.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    jwt_jwks: Option<String>,
    api_key: Option<String>,
    grace_ms: Option<u64>,
    heartbeat_ms: Option<u64>,
    hello_timeout_ms: Option<u64>,
    coalesce_ms: Option<u64>,
    coalesce_burst: Option<u64>,
    occupancy_interval_ms: Option<u64>,
    guests: Option<bool>,
    guests_watch: Option<bool>,
    webhook_urls: Option<OneOrMany>,
    webhook_url: Option<OneOrMany>,
    webhook_secret: Option<String>,
    redis_url: Option<String>,
    node_id: Option<String>,
    dev_tokens: Option<bool>,
    max_frame_bytes: Option<usize>,
    max_data_bytes: Option<usize>,
    max_channels_per_conn: Option<usize>,
    max_watch_per_conn: Option<usize>,
    outbox_frames: Option<usize>,
    rate_per_sec: Option<u32>,
    rate_burst: Option<u32>,
    channels: Option<Vec<ChannelRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a URL string or an array of URL strings"
)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Everything but the stored secrets, merged and validated.
struct Resolved {
    listen: SocketAddr,
    data_dir: PathBuf,
    config_file: Option<PathBuf>,
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    jwt_jwks: Option<JwksSource>,
    api_key: Option<String>,
    grace_ms: u64,
    heartbeat_ms: u64,
    hello_timeout_ms: u64,
    coalesce_ms: u64,
    coalesce_burst: u64,
    occupancy_interval_ms: u64,
    guests: bool,
    guests_watch: bool,
    webhook_urls: Vec<String>,
    webhook_secret: Option<String>,
    redis_url: Option<String>,
    node_id: Option<String>,
    dev_tokens: bool,
    limits: Limits,
    channels: Vec<ChannelRule>,
}

impl Resolved {
    fn new(args: ServeArgs) -> anyhow::Result<Resolved> {
        let (file, config_file) = read_config_file(args.config.as_deref())?;
        let defaults = Limits::default();

        let listen = match (args.listen, file.listen) {
            (Some(addr), _) => addr,
            (None, Some(text)) => text.trim().parse().map_err(|e| {
                let file = config_file
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_CONFIG_FILE));
                anyhow::anyhow!(
                    "{}: listen: invalid address \"{text}\" ({e}); expected IP:port, \
                     e.g. 127.0.0.1:7400",
                    file.display()
                )
            })?,
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 7400)),
        };

        let webhook_urls = if !args.webhook_urls.is_empty() {
            args.webhook_urls
        } else {
            match (file.webhook_urls, file.webhook_url) {
                (Some(_), Some(_)) => {
                    bail!("set either webhook_urls or webhook_url in the config file, not both")
                }
                (Some(urls), None) | (None, Some(urls)) => urls.into_vec(),
                (None, None) => Vec::new(),
            }
        };
        let webhook_urls: Vec<String> = webhook_urls
            .into_iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        for url in &webhook_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("webhook_urls: \"{url}\" is not an http:// or https:// URL");
            }
        }

        let jwt_public_key = text(
            args.jwt_public_key.map(path_string),
            file.jwt_public_key.map(path_string),
        )
        .map(PathBuf::from);
        if let Some(path) = &jwt_public_key {
            fs::File::open(path)
                .with_context(|| format!("jwt_public_key: cannot read {}", path.display()))?;
        }
        let jwt_jwks = text(args.jwt_jwks, file.jwt_jwks)
            .map(|s| jwks_source(s.trim()))
            .transpose()?;
        if jwt_jwks.is_some() && jwt_public_key.is_some() {
            bail!(
                "set either jwt_public_key (--jwt-public-key, PRESENCED_JWT_PUBLIC_KEY) or \
                 jwt_jwks (--jwt-jwks, PRESENCED_JWT_JWKS), not both; put the public key \
                 in the JWKS instead"
            );
        }

        let limits = Limits {
            max_frame_bytes: positive(
                "max_frame_bytes",
                pick(
                    args.max_frame_bytes,
                    file.max_frame_bytes,
                    defaults.max_frame_bytes,
                ),
            )?,
            max_data_bytes: positive(
                "max_data_bytes",
                pick(
                    args.max_data_bytes,
                    file.max_data_bytes,
                    defaults.max_data_bytes,
                ),
            )?,
            max_channels_per_conn: positive(
                "max_channels_per_conn",
                pick(
                    args.max_channels_per_conn,
                    file.max_channels_per_conn,
                    defaults.max_channels_per_conn,
                ),
            )?,
            max_watch_per_conn: positive(
                "max_watch_per_conn",
                pick(
                    args.max_watch_per_conn,
                    file.max_watch_per_conn,
                    defaults.max_watch_per_conn,
                ),
            )?,
            outbox_frames: positive(
                "outbox_frames",
                pick(
                    args.outbox_frames,
                    file.outbox_frames,
                    defaults.outbox_frames,
                ),
            )?,
            rate_per_sec: positive(
                "rate_per_sec",
                pick(args.rate_per_sec, file.rate_per_sec, defaults.rate_per_sec),
            )?,
            rate_burst: positive(
                "rate_burst",
                pick(args.rate_burst, file.rate_burst, defaults.rate_burst),
            )?,
        };

        let channels = file.channels.unwrap_or_default();
        validate_channels(&channels)?;

        Ok(Resolved {
            listen,
            data_dir: pick(args.data_dir, file.data_dir, "presenced-data".into()),
            config_file,
            jwt_secret: text(args.jwt_secret, file.jwt_secret),
            jwt_public_key,
            jwt_jwks,
            api_key: text(args.api_key, file.api_key),
            grace_ms: positive("grace_ms", pick(args.grace_ms, file.grace_ms, 15_000))?,
            heartbeat_ms: positive(
                "heartbeat_ms",
                pick(args.heartbeat_ms, file.heartbeat_ms, 20_000),
            )?,
            hello_timeout_ms: positive(
                "hello_timeout_ms",
                pick(args.hello_timeout_ms, file.hello_timeout_ms, 10_000),
            )?,
            coalesce_ms: positive("coalesce_ms", pick(args.coalesce_ms, file.coalesce_ms, 50))?,
            coalesce_burst: positive(
                "coalesce_burst",
                pick(args.coalesce_burst, file.coalesce_burst, 10),
            )?,
            occupancy_interval_ms: positive(
                "occupancy_interval_ms",
                pick(
                    args.occupancy_interval_ms,
                    file.occupancy_interval_ms,
                    1_000,
                ),
            )?,
            guests: pick(args.guests, file.guests, false),
            guests_watch: pick(args.guests_watch, file.guests_watch, false),
            webhook_urls,
            webhook_secret: text(args.webhook_secret, file.webhook_secret),
            redis_url: text(args.redis_url, file.redis_url),
            node_id: text(args.node_id, file.node_id),
            dev_tokens: pick(args.dev_tokens, file.dev_tokens, false),
            limits,
            channels,
        })
    }
}

fn pick<T>(flag_or_env: Option<T>, file: Option<T>, default: T) -> T {
    flag_or_env.or(file).unwrap_or(default)
}

/// Like [`pick`] for optional strings, where empty means not set.
fn text(flag_or_env: Option<String>, file: Option<String>) -> Option<String> {
    flag_or_env
        .filter(|s| !s.is_empty())
        .or(file.filter(|s| !s.is_empty()))
}

/// `jwt_jwks`: an http(s):// URL, or else the path of a readable file.
fn jwks_source(value: &str) -> anyhow::Result<JwksSource> {
    let lower = value.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        // The URL is not repeated in the message: it may carry credentials.
        let url = reqwest::Url::parse(value)
            .map_err(|e| anyhow::anyhow!("jwt_jwks: invalid URL ({e})"))?;
        if url.host_str().is_none_or(str::is_empty) {
            bail!("jwt_jwks: invalid URL (no host)");
        }
        return Ok(JwksSource::Url(value.to_owned()));
    }
    if let Some((scheme, _)) = value.split_once("://") {
        bail!("jwt_jwks: {scheme}:// URLs are not supported; give a file or an http(s):// URL");
    }
    let path = PathBuf::from(value);
    fs::File::open(&path).with_context(|| format!("jwt_jwks: cannot read {}", path.display()))?;
    Ok(JwksSource::File(path))
}

fn path_string(path: PathBuf) -> String {
    path.to_string_lossy().into_owned()
}

fn positive<T: PartialEq + Default>(key: &str, value: T) -> anyhow::Result<T> {
    if value == T::default() {
        bail!(
            "{key} (--{}, PRESENCED_{}) must be greater than 0",
            key.replace('_', "-"),
            key.to_ascii_uppercase()
        );
    }
    Ok(value)
}

fn validate_channels(rules: &[ChannelRule]) -> anyhow::Result<()> {
    for (i, rule) in rules.iter().enumerate() {
        let pattern = &rule.pattern;
        if pattern.is_empty() {
            bail!("channels[{i}]: pattern must not be empty");
        }
        // A pattern with a character no channel name may contain would never
        // match, which is surely a mistake.
        if !valid_channel_name(&pattern.replace('*', "a")) {
            bail!(
                "channels[{i}]: pattern \"{pattern}\" can never match: channel names are \
                 1-200 bytes of A-Z a-z 0-9 _ : . @ / = - (and * is the wildcard)"
            );
        }
        if rule.max_members == Some(0) {
            bail!(
                "channels[{i}] (\"{pattern}\"): max_members must be greater than 0 \
                 (use enter = false to forbid entering)"
            );
        }
        if let Some(field) = rule.public_fields.iter().find(|f| f.is_empty()) {
            bail!("channels[{i}] (\"{pattern}\"): public_fields has an empty name {field:?}");
        }
    }
    Ok(())
}

/// Reads the explicit config file, or `./presenced.toml` when it exists.
fn read_config_file(explicit: Option<&Path>) -> anyhow::Result<(FileConfig, Option<PathBuf>)> {
    let explicit = explicit.filter(|p| !p.as_os_str().is_empty());
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !default.is_file() {
                return Ok((FileConfig::default(), None));
            }
            default
        }
    };
    let text = fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let file = parse_config(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))?;
    Ok((file, Some(path)))
}

/// Parses the TOML text. The error is one line, `line:column: message`, with
/// the key in front when the error is about a value, since toml's own message
/// ("invalid value: integer `-5`, expected u64") does not name it.
fn parse_config(text: &str) -> Result<FileConfig, String> {
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

fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// Reads `<dir>/<file>`, or generates a secret and stores it there readable by
/// the owner only. Returns the secret and, when it was generated now, a note
/// to show the operator.
pub(crate) fn stored_secret(
    dir: &Path,
    file: &str,
    what: &'static str,
) -> anyhow::Result<(String, Option<GeneratedSecret>)> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(contents) => return Ok((stored_value(&path, &contents, what)?, None)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }

    let value = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
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
    f.write_all(format!("{value}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::debug!(path = %path.display(), "generated a {what}");
    Ok((value.clone(), Some(GeneratedSecret { what, path, value })))
}

fn stored_value(path: &Path, contents: &str, what: &str) -> anyhow::Result<String> {
    let value = contents.trim();
    if value.is_empty() {
        bail!(
            "{} is empty; delete it to have a new {what} generated",
            path.display()
        );
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(argv: &[&str]) -> ServeArgs {
        let mut full = vec!["presenced"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().args
    }

    fn in_dir(dir: &Path) -> ServeArgs {
        ServeArgs {
            data_dir: Some(dir.join("data")),
            ..ServeArgs::default()
        }
    }

    fn with_toml(dir: &Path, toml: &str) -> ServeArgs {
        let path = dir.join("presenced.toml");
        fs::write(&path, toml).unwrap();
        ServeArgs {
            config: Some(path),
            ..in_dir(dir)
        }
    }

    fn load_err(args: ServeArgs) -> String {
        format!("{:#}", Settings::load(args).unwrap_err())
    }

    #[test]
    fn defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Settings::load(in_dir(tmp.path())).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7400".parse().unwrap());
        assert_eq!(s.grace_ms, 15_000);
        assert_eq!(s.heartbeat_ms, 20_000);
        assert_eq!(s.hello_timeout_ms, 10_000);
        assert_eq!(s.coalesce_ms, 50);
        assert_eq!(s.occupancy_interval_ms, 1_000);
        assert!(!s.guests && !s.guests_watch && !s.dev_tokens);
        assert!(s.webhook_urls.is_empty());
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.limits.max_frame_bytes, 16_384);
        assert!(s.channels.is_empty());
        assert_eq!(s.grace(), Duration::from_secs(15));
    }

    #[test]
    fn secrets_are_generated_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Settings::load(in_dir(tmp.path())).unwrap();
        let names: Vec<_> = first.generated.iter().map(|g| g.what).collect();
        assert_eq!(names, ["JWT secret", "API key"]);
        let secret = first.jwt_secret.clone().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), 32);
        assert_ne!(secret, first.api_key);
        assert_eq!(first.generated[0].path, tmp.path().join("data/jwt_secret"));

        let second = Settings::load(in_dir(tmp.path())).unwrap();
        assert!(second.generated.is_empty());
        assert_eq!(second.jwt_secret, first.jwt_secret);
        assert_eq!(second.api_key, first.api_key);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for g in &first.generated {
                let mode = fs::metadata(&g.path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", g.path.display());
            }
        }
    }

    #[test]
    fn configured_secrets_are_not_generated() {
        let tmp = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            jwt_secret: Some("s3cret".into()),
            api_key: Some("k3y".into()),
            ..in_dir(tmp.path())
        };
        let s = Settings::load(args).unwrap();
        assert!(s.generated.is_empty());
        assert_eq!(s.jwt_secret.as_deref(), Some("s3cret"));
        assert_eq!(s.api_key, "k3y");
        assert!(!tmp.path().join("data/jwt_secret").exists());
    }

    #[test]
    fn a_public_key_alone_needs_no_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let pem = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ed25519_public.pem");
        let args = ServeArgs {
            jwt_public_key: Some(pem.clone()),
            ..in_dir(tmp.path())
        };
        let s = Settings::load(args.clone()).unwrap();
        assert_eq!(s.jwt_secret, None);
        assert_eq!(s.jwt_public_key, Some(pem));
        let names: Vec<_> = s.generated.iter().map(|g| g.what).collect();
        assert_eq!(names, ["API key"]);
        assert!(Settings::load_signing_secret(args).is_err());

        let missing = ServeArgs {
            jwt_public_key: Some(tmp.path().join("nope.pem")),
            ..in_dir(tmp.path())
        };
        assert!(load_err(missing).contains("jwt_public_key"));
    }

    #[test]
    fn jwks_is_a_file_or_a_url_and_excludes_the_public_key() {
        let tmp = tempfile::tempdir().unwrap();
        let url = "https://user:pw@idp.example/.well-known/jwks.json?t=hunter2";
        let args = ServeArgs {
            jwt_jwks: parse(&["--jwt-jwks", url]).jwt_jwks,
            ..in_dir(tmp.path())
        };
        let s = Settings::load(args.clone()).unwrap();
        assert_eq!(s.jwt_jwks, Some(JwksSource::Url(url.into())));
        assert_eq!(s.jwt_secret, None, "a JWKS needs no generated secret");
        let names: Vec<_> = s.generated.iter().map(|g| g.what).collect();
        assert_eq!(names, ["API key"]);
        assert!(Settings::load_signing_secret(args).is_err());
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw@"),
            "{shown}"
        );

        let file = tmp.path().join("jwks.json");
        fs::write(&file, r#"{"keys": []}"#).unwrap();
        let toml = format!("jwt_jwks = \"{}\"\njwt_secret = \"s\"", file.display());
        let s = Settings::load(with_toml(tmp.path(), &toml)).unwrap();
        assert_eq!(s.jwt_jwks, Some(JwksSource::File(file.clone())));
        assert_eq!(s.jwt_secret.as_deref(), Some("s"));

        let err = |jwks: &str| {
            load_err(ServeArgs {
                jwt_jwks: Some(jwks.into()),
                ..in_dir(tmp.path())
            })
        };
        assert!(err("missing.json").contains("jwt_jwks: cannot read missing.json"));
        assert!(err("ftp://idp.example/jwks").contains("ftp:// URLs are not supported"));
        assert!(err("https://").contains("jwt_jwks: invalid URL"));

        let pem = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ed25519_public.pem");
        let both = ServeArgs {
            jwt_public_key: Some(pem),
            ..with_toml(tmp.path(), &toml)
        };
        let e = load_err(both);
        assert!(
            e.contains("jwt_public_key") && e.contains("not both"),
            "{e}"
        );
    }

    #[test]
    fn signing_secret_is_shared_with_serve_and_leaves_the_api_key() {
        let tmp = tempfile::tempdir().unwrap();
        let (secret, generated) = Settings::load_signing_secret(in_dir(tmp.path())).unwrap();
        assert!(generated.is_some());
        assert!(!tmp.path().join("data/api_key").exists());

        let s = Settings::load(in_dir(tmp.path())).unwrap();
        assert_eq!(s.jwt_secret.as_deref(), Some(secret.as_str()));
        let names: Vec<_> = s.generated.iter().map(|g| g.what).collect();
        assert_eq!(names, ["API key"]);
    }

    #[test]
    fn empty_stored_secret_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("data")).unwrap();
        fs::write(tmp.path().join("data/jwt_secret"), "\n").unwrap();
        assert!(load_err(in_dir(tmp.path())).contains("is empty"));
    }

    #[test]
    fn toml_values_and_flags_over_toml() {
        let tmp = tempfile::tempdir().unwrap();
        let toml = r#"
            listen = "0.0.0.0:9000"
            grace_ms = 500
            heartbeat_ms = 1000
            guests = true
            guests_watch = true
            jwt_secret = "from-file"
            api_key = "key-from-file"
            webhook_url = "https://example.com/hook"
            max_frame_bytes = 4096
            rate_burst = 7

            [[channels]]
            pattern = "lobby:*"
            guests = true
            public_fields = ["name", "info.avatar"]
            publish = false
            max_members = 10000

            [[channels]]
            pattern = "*"
            enter = false
        "#;
        let s = Settings::load(with_toml(tmp.path(), toml)).unwrap();
        assert_eq!(s.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(s.grace_ms, 500);
        assert!(s.guests && s.guests_watch);
        assert_eq!(s.jwt_secret.as_deref(), Some("from-file"));
        assert_eq!(s.webhook_urls, ["https://example.com/hook"]);
        assert_eq!(s.limits.max_frame_bytes, 4096);
        assert_eq!(s.limits.rate_burst, 7);
        assert_eq!(s.limits.rate_per_sec, 50);
        assert_eq!(s.channels.len(), 2);
        assert_eq!(s.channels[0].public_fields, ["name", "info.avatar"]);
        assert!(!s.channels[0].publish && s.channels[0].guests);
        assert_eq!(s.channels[0].max_members, Some(10_000));
        assert!(!s.channels[1].enter && s.channels[1].subscribe);
        assert_eq!(s.config_file, Some(tmp.path().join("presenced.toml")));

        let mut args = with_toml(tmp.path(), toml);
        let flags = parse(&[
            "--grace-ms",
            "250",
            "--guests=false",
            "--listen",
            "127.0.0.1:0",
            "--webhook-url",
            "http://a/1",
            "--webhook-url",
            "http://b/2,http://c/3",
        ]);
        args.grace_ms = flags.grace_ms;
        args.guests = flags.guests;
        args.listen = flags.listen;
        args.webhook_urls = flags.webhook_urls;
        let s = Settings::load(args).unwrap();
        assert_eq!(s.grace_ms, 250);
        assert!(!s.guests);
        assert!(s.guests_watch);
        assert_eq!(s.listen.port(), 0);
        assert_eq!(s.webhook_urls, ["http://a/1", "http://b/2", "http://c/3"]);
    }

    #[test]
    fn webhook_urls_accept_an_array() {
        let tmp = tempfile::tempdir().unwrap();
        let args = with_toml(tmp.path(), r#"webhook_urls = ["http://a", "https://b"]"#);
        let s = Settings::load(args).unwrap();
        assert_eq!(s.webhook_urls, ["http://a", "https://b"]);

        let both = with_toml(
            tmp.path(),
            "webhook_urls = [\"http://a\"]\nwebhook_url = \"http://b\"",
        );
        assert!(load_err(both).contains("not both"));
        let bad = with_toml(tmp.path(), r#"webhook_url = "ftp://x""#);
        assert!(load_err(bad).contains("ftp://x"));
    }

    #[test]
    fn boolean_flags() {
        assert_eq!(parse(&["--guests"]).guests, Some(true));
        assert_eq!(parse(&["--guests=false"]).guests, Some(false));
        assert_eq!(parse(&["--guests=0"]).guests, Some(false));
        assert_eq!(parse(&["--guests=1"]).guests, Some(true));
        assert_eq!(
            parse(&["--dev-tokens", "--guests-watch"]).dev_tokens,
            Some(true)
        );
        assert_eq!(parse(&[]).guests, None);
        let mut argv = vec!["presenced", "--guests=maybe"];
        assert!(Cli::try_parse_from(&argv).is_err());
        argv[1] = "--listen=nonsense";
        assert!(Cli::try_parse_from(&argv).is_err());
    }

    #[test]
    fn unknown_toml_key_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = load_err(with_toml(
            tmp.path(),
            "listen = \"127.0.0.1:1\"\ngrace = 5\n",
        ));
        assert!(err.contains("presenced.toml:2:1"), "{err}");
        assert!(err.contains("unknown field `grace`"), "{err}");
        assert!(!err.contains('\n'), "{err}");

        let err = load_err(with_toml(
            tmp.path(),
            "[[channels]]\npattern = \"a\"\nguest = true\n",
        ));
        assert!(err.contains("unknown field `guest`"), "{err}");
    }

    #[test]
    fn invalid_values_are_explained() {
        let tmp = tempfile::tempdir().unwrap();
        for (toml, expect) in [
            (
                "grace_ms = 0",
                "grace_ms (--grace-ms, PRESENCED_GRACE_MS) must be greater than 0",
            ),
            ("heartbeat_ms = 0", "heartbeat_ms"),
            ("hello_timeout_ms = 0", "hello_timeout_ms"),
            ("coalesce_ms = 0", "coalesce_ms"),
            ("occupancy_interval_ms = 0", "occupancy_interval_ms"),
            ("max_data_bytes = 0", "max_data_bytes"),
            ("rate_per_sec = 0", "rate_per_sec"),
            ("grace_ms = -5", "grace_ms"),
            ("grace_ms = \"soon\"", "grace_ms"),
            (
                "listen = \"localhost\"",
                "listen: invalid address \"localhost\"",
            ),
            (
                "[[channels]]\npattern = \"\"",
                "channels[0]: pattern must not be empty",
            ),
            ("[[channels]]\npattern = \"room 1\"", "can never match"),
            (
                "[[channels]]\npattern = \"a\"\nmax_members = 0",
                "max_members",
            ),
            ("[[channels]]\nenter = true", "pattern"),
            ("this is not toml", "presenced.toml:1:"),
        ] {
            let err = load_err(with_toml(tmp.path(), toml));
            assert!(err.contains(expect), "{toml:?}: {err}");
        }
        let zero = ServeArgs {
            outbox_frames: Some(0),
            ..in_dir(tmp.path())
        };
        assert!(load_err(zero).contains("outbox_frames"));
    }

    #[test]
    fn explicit_config_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            config: Some(tmp.path().join("missing.toml")),
            ..in_dir(tmp.path())
        };
        assert!(load_err(args).contains("missing.toml"));
    }

    #[test]
    fn empty_strings_count_as_unset() {
        let tmp = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            jwt_secret: Some(String::new()),
            api_key: Some(String::new()),
            ..with_toml(tmp.path(), "webhook_secret = \"\"")
        };
        let s = Settings::load(args).unwrap();
        assert_eq!(s.generated.len(), 2);
        assert_eq!(s.webhook_secret, None);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            jwt_secret: Some("hunter2-jwt".into()),
            api_key: Some("hunter2-api".into()),
            webhook_secret: Some("hunter2-hook".into()),
            ..in_dir(tmp.path())
        };
        let shown = format!("{args:?} {:?}", Settings::load(args.clone()).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
