//! Every setting, declared once: its flag, environment variable, help text,
//! file key, type and default.
//!
//! [`ServeArgs`] is both the clap flags of `presenced serve` and the serde
//! form of `presenced.toml`; every field is optional so that "not given" can
//! fall through from flags and environment to the file and then to the
//! default. The `settings!` macro around it adds the layering
//! ([`ServeArgs::or`]) and [`Values`], the same settings with their defaults
//! filled in, so that no field is listed twice.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use presenced_engine::ChannelRule;
use serde::Deserialize;

use super::JwksSource;
use super::file;
use super::secrets::Secret;

/// Declares [`ServeArgs`] (the fields as written, all `Option`) and
/// [`Values`] (a field with `= default` holds a value, the others stay
/// `Option`; the `not_yet` fields are left out), with the generic layering.
macro_rules! settings {
    (
        $(#[$attr:meta])*
        pub struct $args:ident => $values:ident {
            $(
                $(#[$fattr:meta])*
                pub $field:ident: Option<$ty:ty> $(= $default:expr)?,
            )*
        }
        not_yet {
            $(
                $(#[$nattr:meta])*
                pub $nfield:ident: Option<$nty:ty>,
            )*
        }
    ) => {
        $(#[$attr])*
        pub struct $args {
            $( $(#[$fattr])* pub $field: Option<$ty>, )*
            $( $(#[$nattr])* pub $nfield: Option<$nty>, )*
        }

        /// The settings of [`ServeArgs`] (but those not available yet)
        /// after layering: a setting with a default holds a value, the
        /// others stay optional.
        #[derive(Clone, Debug)]
        pub struct $values {
            $( pub $field: settings!(@value_type $ty $(, $default)?), )*
        }

        impl $args {
            /// Each setting from `self` where it is set, else from `lower`.
            /// An empty string, path or list counts as not set.
            pub fn or(self, lower: $args) -> $args {
                $args {
                    $( $field: set(self.$field).or(set(lower.$field)), )*
                    $( $nfield: set(self.$nfield).or(set(lower.$nfield)), )*
                }
            }

            /// The keys of the settings that are not available yet and are set.
            pub(super) fn not_yet_set(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $( if self.$nfield.is_some() { keys.push(stringify!($nfield)); } )*
                keys
            }

            /// Fills in the defaults.
            pub(super) fn resolve(self) -> $values {
                $values {
                    $( $field: settings!(@resolve self.$field $(, $default)?), )*
                }
            }
        }

        impl $values {
            /// The key of the first number setting that is 0.
            pub(super) fn first_zero(&self) -> Option<&'static str> {
                $( if SettingValue::is_zero(&self.$field) { return Some(stringify!($field)); } )*
                None
            }
        }
    };
    (@value_type $ty:ty) => { Option<$ty> };
    (@value_type $ty:ty, $default:expr) => { $ty };
    (@resolve $value:expr) => { $value };
    (@resolve $value:expr, $default:expr) => { $value.unwrap_or_else(|| $default) };
}

/// What the layering and the validation need to know of a setting's type.
trait SettingValue {
    /// An empty string, path or list counts as not given
    /// (`PRESENCED_JWT_SECRET=` in a compose file, `jwt_secret = ""`).
    fn is_empty(&self) -> bool {
        false
    }

    /// A number setting must be greater than 0: none of them (times, sizes,
    /// counts, rates) has a useful meaning at 0.
    fn is_zero(&self) -> bool {
        false
    }
}

fn set<T: SettingValue>(value: Option<T>) -> Option<T> {
    value.filter(|v| !v.is_empty())
}

impl<T: SettingValue> SettingValue for Option<T> {
    fn is_zero(&self) -> bool {
        self.as_ref().is_some_and(T::is_zero)
    }
}

macro_rules! number_settings {
    ($($t:ty),*) => {
        $(impl SettingValue for $t {
            fn is_zero(&self) -> bool {
                *self == 0
            }
        })*
    };
}
number_settings!(u32, u64, usize);

/// Default of `jwt_leeway_ms`: how far a token's `nbf` may be in the future
/// and the token still be accepted (clocks a few seconds apart). `exp` has
/// no leeway: a token is refused, and a connection closed 4401, at `exp`.
pub const DEFAULT_JWT_LEEWAY_MS: u64 = 5_000;

/// Milliseconds of leeway, where 0 means something (none), unlike the other
/// numbers: exempt from the greater-than-0 check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct LeewayMs(pub u64);

impl std::str::FromStr for LeewayMs {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(LeewayMs)
    }
}

impl SettingValue for LeewayMs {}
impl SettingValue for bool {}
impl SettingValue for SocketAddr {}

impl SettingValue for String {
    fn is_empty(&self) -> bool {
        self.is_empty()
    }
}

impl SettingValue for Secret {
    fn is_empty(&self) -> bool {
        self.is_empty()
    }
}

impl SettingValue for PathBuf {
    fn is_empty(&self) -> bool {
        self.as_os_str().is_empty()
    }
}

impl SettingValue for JwksSource {
    fn is_empty(&self) -> bool {
        matches!(self, JwksSource::File(path) if path.as_os_str().is_empty())
    }
}

impl<T> SettingValue for Vec<T> {
    fn is_empty(&self) -> bool {
        self.is_empty()
    }
}

settings! {
    /// Flags (and their environment variables) of `presenced serve`, and the
    /// keys of `presenced.toml`. Every key is optional; unknown keys in the
    /// file are errors so that a typo does not silently leave a default in
    /// place.
    #[derive(Clone, Debug, Default, clap::Args, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct ServeArgs => Values {
        /// Path of the TOML configuration file [default: ./presenced.toml if it exists]
        // Not a file key. After layering: the file that was read, if any.
        #[arg(long, env = "PRESENCED_CONFIG", value_name = "PATH")]
        #[serde(skip)]
        pub config: Option<PathBuf>,

        /// Address to listen on [default: 127.0.0.1:7400]
        #[arg(long, env = "PRESENCED_LISTEN", value_name = "ADDR")]
        #[serde(deserialize_with = "file::listen")]
        pub listen: Option<SocketAddr> = SocketAddr::from(([127, 0, 0, 1], 7400)),

        /// Directory for the journal, the webhook outbox and generated secrets [default: ./presenced-data]
        #[arg(long, env = "PRESENCED_DATA_DIR", value_name = "DIR")]
        pub data_dir: Option<PathBuf> = PathBuf::from("presenced-data"),

        /// HMAC secret for HS256/HS384/HS512 tokens
        #[arg(
            long,
            env = "PRESENCED_JWT_SECRET",
            value_name = "SECRET",
            hide_env_values = true
        )]
        pub jwt_secret: Option<Secret>,

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
        pub jwt_jwks: Option<JwksSource>,

        /// Clock skew allowed on a token's `nbf` (0 for none; `exp` is exact) [default: 5000]
        #[arg(long, env = "PRESENCED_JWT_LEEWAY_MS", value_name = "MS")]
        pub jwt_leeway_ms: Option<LeewayMs> = LeewayMs(DEFAULT_JWT_LEEWAY_MS),

        /// Audience every token must name in `aud` [default: not checked]
        #[arg(long, env = "PRESENCED_JWT_AUDIENCE", value_name = "AUD")]
        pub jwt_audience: Option<String>,

        /// Issuer every token must name in `iss` [default: not checked]
        #[arg(long, env = "PRESENCED_JWT_ISSUER", value_name = "ISS")]
        pub jwt_issuer: Option<String>,

        /// Refuse tokens without `exp` [default: false]
        #[arg(
            long,
            env = "PRESENCED_JWT_REQUIRE_EXP",
            value_name = "BOOL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true",
            value_parser = BoolishValueParser::new()
        )]
        pub jwt_require_exp: Option<bool> = false,

        /// Bearer key of the HTTP API
        #[arg(
            long,
            env = "PRESENCED_API_KEY",
            value_name = "KEY",
            hide_env_values = true
        )]
        pub api_key: Option<Secret>,

        /// How long a dropped connection may come back before its user counts as gone [default: 15000]
        #[arg(long, env = "PRESENCED_GRACE_MS", value_name = "MS")]
        pub grace_ms: Option<u64> = 15_000,

        /// WebSocket ping interval; two silent intervals drop a connection [default: 20000]
        #[arg(long, env = "PRESENCED_HEARTBEAT_MS", value_name = "MS")]
        pub heartbeat_ms: Option<u64> = 20_000,

        /// Time allowed for the first frame (`hello`) [default: 10000]
        #[arg(long, env = "PRESENCED_HELLO_TIMEOUT_MS", value_name = "MS")]
        pub hello_timeout_ms: Option<u64> = 10_000,

        /// Longest a shutdown (SIGTERM, SIGINT) waits for open requests and connections to close [default: 10000]
        #[arg(long, env = "PRESENCED_SHUTDOWN_TIMEOUT_MS", value_name = "MS")]
        pub shutdown_timeout_ms: Option<u64> = 10_000,

        /// Window in which a burst of member changes is merged into one diff [default: 50]
        #[arg(long, env = "PRESENCED_COALESCE_MS", value_name = "MS")]
        pub coalesce_ms: Option<u64> = 50,

        /// Changes a quiet channel sends at once before it starts merging them
        /// (earned back at this many a second) [default: 10]
        #[arg(long, env = "PRESENCED_COALESCE_BURST", value_name = "N")]
        pub coalesce_burst: Option<u64> = 10,

        /// Minimum interval between occupancy frames of a channel [default: 1000]
        #[arg(long, env = "PRESENCED_OCCUPANCY_INTERVAL_MS", value_name = "MS")]
        pub occupancy_interval_ms: Option<u64> = 1_000,

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
        pub guests: Option<bool> = false,

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
        pub guests_watch: Option<bool> = false,

        /// Webhook endpoint; repeat the flag (or separate with commas) for several
        // In the file: `webhook_urls` (or `webhook_url`), a string or an array.
        #[arg(
            long = "webhook-url",
            env = "PRESENCED_WEBHOOK_URL",
            value_name = "URL",
            value_delimiter = ','
        )]
        #[serde(alias = "webhook_url", deserialize_with = "file::one_or_many")]
        pub webhook_urls: Option<Vec<String>> = Vec::new(),

        /// Secret for the webhooks' Presence-Signature header
        #[arg(
            long,
            env = "PRESENCED_WEBHOOK_SECRET",
            value_name = "SECRET",
            hide_env_values = true
        )]
        pub webhook_secret: Option<Secret>,

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
        pub dev_tokens: Option<bool> = false,

        /// Largest WebSocket frame accepted [default: 16384]
        #[arg(long, env = "PRESENCED_MAX_FRAME_BYTES", value_name = "BYTES")]
        pub max_frame_bytes: Option<usize> = 16 * 1024,

        /// Largest member data or message data, as JSON [default: 2048]
        #[arg(long, env = "PRESENCED_MAX_DATA_BYTES", value_name = "BYTES")]
        pub max_data_bytes: Option<usize> = 2 * 1024,

        /// Channels one connection may subscribe to or enter [default: 100]
        #[arg(long, env = "PRESENCED_MAX_CHANNELS_PER_CONN", value_name = "N")]
        pub max_channels_per_conn: Option<usize> = 100,

        /// Users one connection may watch [default: 1000]
        #[arg(long, env = "PRESENCED_MAX_WATCH_PER_CONN", value_name = "N")]
        pub max_watch_per_conn: Option<usize> = 1000,

        /// Frames queued for one connection before it counts as lagging [default: 1024]
        #[arg(long, env = "PRESENCED_OUTBOX_FRAMES", value_name = "N")]
        pub outbox_frames: Option<usize> = 1024,

        /// Offline users whose last presence is kept in memory; the others are read from the store when asked for [default: 10000]
        #[arg(long, env = "PRESENCED_OFFLINE_CACHE", value_name = "N")]
        pub offline_cache: Option<usize> = 10_000,

        /// Presence events waiting for the disk before new connections and changes are refused with `unavailable` [default: 100000]
        #[arg(long, env = "PRESENCED_JOURNAL_QUEUE", value_name = "N")]
        pub journal_queue: Option<usize> = 100_000,

        /// Requests per second allowed per connection [default: 50]
        #[arg(long, env = "PRESENCED_RATE_PER_SEC", value_name = "N")]
        pub rate_per_sec: Option<u32> = 50,

        /// Request burst allowed per connection [default: 100]
        #[arg(long, env = "PRESENCED_RATE_BURST", value_name = "N")]
        pub rate_burst: Option<u32> = 100,

        /// Time a client has to send a request's headers, from connecting or from the end of its
        /// previous response (so also how long an idle keep-alive connection stays open) [default: 10000]
        #[arg(long, env = "PRESENCED_HTTP_HEADER_TIMEOUT_MS", value_name = "MS")]
        pub http_header_timeout_ms: Option<u64> = 10_000,

        /// An HTTP connection (not a WebSocket) that moves no byte for this long is closed [default: 60000]
        #[arg(long, env = "PRESENCED_HTTP_IDLE_TIMEOUT_MS", value_name = "MS")]
        pub http_idle_timeout_ms: Option<u64> = 60_000,

        /// TCP connections (HTTP and WebSocket) held at once; more are refused with 503
        /// [default: the open-files limit less 256]
        #[arg(long, env = "PRESENCED_MAX_CONNECTIONS", value_name = "N")]
        pub max_connections: Option<u32>,

        /// TCP connections held at once from one address; more are refused with 429
        /// [default: no cap; behind a proxy every client has the proxy's address]
        #[arg(long, env = "PRESENCED_MAX_CONNECTIONS_PER_IP", value_name = "N")]
        pub max_connections_per_ip: Option<u32>,

        /// `[[channels]]` rules, in file order (first match wins); only in the file.
        #[arg(skip)]
        pub channels: Option<Vec<ChannelRule>> = Vec::new(),
    }
    // Accepted so that a deployment written for cluster mode fails loudly
    // rather than running alone: `serve` refuses to start when one is set.
    not_yet {
        /// Redis URL for cluster mode (not available yet: the server refuses to start with it)
        #[arg(
            long,
            env = "PRESENCED_REDIS_URL",
            value_name = "URL",
            hide_env_values = true
        )]
        pub redis_url: Option<Secret>,

        /// This node's id in cluster mode (not available yet: the server refuses to start with it)
        #[arg(long, env = "PRESENCED_NODE_ID", value_name = "ID")]
        pub node_id: Option<String>,
    }
}
