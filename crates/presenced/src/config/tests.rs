//! Unit tests of the settings: layering, defaults, validation and secrets.

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;

use super::*;

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
    let v = &s.values;
    assert_eq!(v.listen, "127.0.0.1:7400".parse().unwrap());
    assert_eq!(v.data_dir, tmp.path().join("data"));
    assert_eq!(v.grace_ms, 15_000);
    assert_eq!(v.heartbeat_ms, 20_000);
    assert_eq!(v.hello_timeout_ms, 10_000);
    assert_eq!(v.shutdown_timeout_ms, 10_000);
    assert_eq!(v.coalesce_ms, 50);
    assert_eq!(v.coalesce_burst, 10);
    assert_eq!(v.occupancy_interval_ms, 1_000);
    assert!(!v.guests && !v.guests_watch && !v.dev_tokens);
    assert!(v.webhook_urls.is_empty());
    assert_eq!(v.max_frame_bytes, 16_384);
    assert_eq!(v.max_data_bytes, 2_048);
    assert_eq!(v.max_channels_per_conn, 100);
    assert_eq!(v.max_watch_per_conn, 1_000);
    assert_eq!(v.outbox_frames, 1_024);
    assert_eq!(v.offline_cache, 10_000);
    assert_eq!(v.journal_queue, 100_000);
    assert_eq!(v.rate_per_sec, 50);
    assert_eq!(v.rate_burst, 100);
    assert_eq!(v.http_header_timeout_ms, 10_000);
    assert_eq!(v.http_idle_timeout_ms, 60_000);
    assert_eq!((v.max_connections, v.max_connections_per_ip), (None, None));
    assert!(v.channels.is_empty());
    assert_eq!(v.jwt_leeway_ms, LeewayMs(5_000));
    assert_eq!((&v.jwt_audience, &v.jwt_issuer), (&None, &None));
    assert!(!v.jwt_require_exp);
    assert_eq!(v.config, None);
}

#[test]
fn a_jwt_leeway_of_0_is_allowed_and_flags_win() {
    // (every_flag_but_config_is_a_file_key reads all four from the file.)
    let tmp = tempfile::tempdir().unwrap();
    let file = with_toml(tmp.path(), "jwt_leeway_ms = 0\njwt_require_exp = true");
    let v = Settings::load(file.clone()).unwrap().values;
    assert_eq!(v.jwt_leeway_ms, LeewayMs(0));
    let flags = parse(&["--jwt-leeway-ms", "30000", "--jwt-require-exp=false"]);
    let v = Settings::load(flags.or(file)).unwrap().values;
    assert_eq!(v.jwt_leeway_ms, LeewayMs(30_000));
    assert!(!v.jwt_require_exp);
    assert!(Cli::try_parse_from(["presenced", "--jwt-leeway-ms", "-1"]).is_err());
}

#[test]
fn secrets_are_generated_once_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Settings::load(in_dir(tmp.path())).unwrap();
    let names: Vec<_> = first.generated.iter().map(|g| g.what).collect();
    assert_eq!(names, ["JWT secret", "API key"]);
    let secret = first.jwt_secret.clone().unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(secret.expose()).unwrap().len(), 32);
    assert_ne!(secret.expose(), first.api_key.expose());
    assert_eq!(first.generated[0].path, tmp.path().join("data/jwt_secret"));

    let second = Settings::load(in_dir(tmp.path())).unwrap();
    assert!(second.generated.is_empty());
    assert_eq!(second.jwt_secret.unwrap().expose(), secret.expose());
    assert_eq!(second.api_key.expose(), first.api_key.expose());

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
    assert_eq!(s.jwt_secret.as_ref().map(Secret::expose), Some("s3cret"));
    assert_eq!(s.api_key.expose(), "k3y");
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
    assert!(s.jwt_secret.is_none());
    assert_eq!(s.values.jwt_public_key, Some(pem));
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
    assert_eq!(s.values.jwt_jwks, Some(JwksSource::Url(url.into())));
    assert!(s.jwt_secret.is_none(), "a JWKS needs no generated secret");
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
    assert_eq!(s.values.jwt_jwks, Some(JwksSource::File(file.clone())));
    assert_eq!(s.jwt_secret.as_ref().map(Secret::expose), Some("s"));

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
fn signing_secret_is_the_one_serve_generated_and_never_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    // Before any server ran there: refused, saying where it looked and how
    // to pass one; nothing is written.
    let e = format!(
        "{:#}",
        Settings::load_signing_secret(in_dir(tmp.path())).unwrap_err()
    );
    assert!(
        e.contains("data/jwt_secret") && e.contains("--jwt-secret"),
        "{e}"
    );
    assert!(!tmp.path().join("data").exists());

    let s = Settings::load(in_dir(tmp.path())).unwrap();
    let secret = Settings::load_signing_secret(in_dir(tmp.path())).unwrap();
    assert_eq!(
        s.jwt_secret.as_ref().map(Secret::expose),
        Some(secret.expose())
    );
    // A configured secret wins, file or not.
    let other = tempfile::tempdir().unwrap();
    let given = Settings::load_signing_secret(ServeArgs {
        jwt_secret: Some("s3".into()),
        ..in_dir(other.path())
    })
    .unwrap();
    assert_eq!(given.expose(), "s3");
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
    let v = &s.values;
    assert_eq!(v.listen, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(v.grace_ms, 500);
    assert_eq!(v.heartbeat_ms, 1000);
    assert!(v.guests && v.guests_watch);
    assert_eq!(s.jwt_secret.as_ref().map(Secret::expose), Some("from-file"));
    assert_eq!(s.api_key.expose(), "key-from-file");
    assert_eq!(v.webhook_urls, ["https://example.com/hook"]);
    assert_eq!(v.max_frame_bytes, 4096);
    assert_eq!(v.rate_burst, 7);
    assert_eq!(v.rate_per_sec, 50);
    assert_eq!(v.channels.len(), 2);
    assert_eq!(v.channels[0].public_fields, ["name", "info.avatar"]);
    assert!(!v.channels[0].publish && v.channels[0].guests);
    assert_eq!(v.channels[0].max_members, Some(10_000));
    assert!(!v.channels[1].enter && v.channels[1].subscribe);
    assert_eq!(v.config, Some(tmp.path().join("presenced.toml")));

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
    let v = Settings::load(args).unwrap().values;
    assert_eq!(v.grace_ms, 250);
    assert!(!v.guests);
    assert!(v.guests_watch);
    assert_eq!(v.listen.port(), 0);
    assert_eq!(v.webhook_urls, ["http://a/1", "http://b/2", "http://c/3"]);
}

#[test]
fn webhook_urls_accept_an_array() {
    let tmp = tempfile::tempdir().unwrap();
    let args = with_toml(tmp.path(), r#"webhook_urls = ["http://a", "https://b"]"#);
    let s = Settings::load(args).unwrap();
    assert_eq!(s.values.webhook_urls, ["http://a", "https://b"]);

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
        jwt_secret: Some(String::new().into()),
        api_key: Some(String::new().into()),
        ..with_toml(tmp.path(), "webhook_secret = \"\"")
    };
    let s = Settings::load(args).unwrap();
    assert_eq!(s.generated.len(), 2);
    assert!(s.values.webhook_secret.is_none());
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

#[test]
fn cluster_settings_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = |args: ServeArgs| {
        let err = Settings::load(args).unwrap_err();
        let keys = err
            .downcast_ref::<ClusterModeUnavailable>()
            .unwrap()
            .keys
            .clone();
        let message = format!("{err:#}");
        assert!(
            message.starts_with("cluster mode is not available yet"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!tmp.path().join("data").exists(), "{message}");
        keys
    };
    let flag = parse(&["--redis-url", "redis://u:hunter2@localhost"]);
    let args = ServeArgs {
        redis_url: flag.redis_url,
        ..in_dir(tmp.path())
    };
    assert_eq!(refused(args), ["redis_url"]);
    assert_eq!(
        format!(
            "{:#}",
            Settings::load(in_dir(tmp.path()).or(parse(&["--node-id", "n1"]))).unwrap_err()
        ),
        "cluster mode is not available yet: unset node_id (--node-id, PRESENCED_NODE_ID) \
         to run this server on its own"
    );
    let both = with_toml(
        tmp.path(),
        "redis_url = \"redis://hunter2@x\"\nnode_id = \"hunter2\"",
    );
    assert_eq!(refused(both), ["redis_url", "node_id"]);

    // Empty counts as not set, as for every setting.
    let empty = ServeArgs {
        redis_url: Some("".into()),
        ..with_toml(tmp.path(), "node_id = \"\"")
    };
    Settings::load(empty).unwrap();
}

#[test]
fn every_setting_names_its_flag_and_env_var_after_its_key() {
    // Error messages name a setting as `key (--flag, ENV)` from its key.
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut keys = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.get_id() != "help") {
        let key = arg.get_id().as_str();
        let long = if key == "webhook_urls" {
            "webhook-url".to_owned()
        } else {
            key.replace('_', "-")
        };
        assert_eq!(arg.get_long(), Some(long.as_str()), "{key}");
        let env = format!("PRESENCED_{}", long.replace('-', "_").to_ascii_uppercase());
        assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&env)), "{key}");
        keys.push(key);
    }
    assert_eq!(
        keys,
        [
            "config",
            "listen",
            "data_dir",
            "jwt_secret",
            "jwt_public_key",
            "jwt_jwks",
            "jwt_leeway_ms",
            "jwt_audience",
            "jwt_issuer",
            "jwt_require_exp",
            "api_key",
            "grace_ms",
            "heartbeat_ms",
            "hello_timeout_ms",
            "shutdown_timeout_ms",
            "coalesce_ms",
            "coalesce_burst",
            "occupancy_interval_ms",
            "guests",
            "guests_watch",
            "webhook_urls",
            "webhook_secret",
            "dev_tokens",
            "max_frame_bytes",
            "max_data_bytes",
            "max_channels_per_conn",
            "max_watch_per_conn",
            "outbox_frames",
            "offline_cache",
            "journal_queue",
            "rate_per_sec",
            "rate_burst",
            "http_header_timeout_ms",
            "http_idle_timeout_ms",
            "max_connections",
            "max_connections_per_ip",
            "redis_url",
            "node_id",
        ]
    );
    let help = cmd.clone().render_help().to_string();
    for flag in ["--redis-url", "--node-id"] {
        let line = help.lines().find(|l| l.contains(flag)).unwrap();
        assert!(line.contains("not available yet"), "{line}");
    }
}

#[test]
fn every_flag_but_config_is_a_file_key() {
    let tmp = tempfile::tempdir().unwrap();
    let pem = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ed25519_public.pem");
    let toml = format!(
        r#"
        listen = "127.0.0.1:0"
        data_dir = "{data}"
        jwt_secret = "s"
        jwt_public_key = "{pem}"
        api_key = "k"
        grace_ms = 1
        heartbeat_ms = 2
        hello_timeout_ms = 3
        shutdown_timeout_ms = 15
        coalesce_ms = 4
        coalesce_burst = 5
        occupancy_interval_ms = 6
        guests = true
        guests_watch = true
        webhook_url = "http://a"
        webhook_secret = "w"
        dev_tokens = true
        max_frame_bytes = 7
        max_data_bytes = 8
        max_channels_per_conn = 9
        max_watch_per_conn = 10
        outbox_frames = 11
        offline_cache = 14
        journal_queue = 16
        rate_per_sec = 12
        rate_burst = 13
        http_header_timeout_ms = 17
        http_idle_timeout_ms = 18
        max_connections = 19
        max_connections_per_ip = 20
        jwt_leeway_ms = 21
        jwt_audience = "aud"
        jwt_issuer = "iss"
        jwt_require_exp = true
        "#,
        data = tmp.path().join("d").display(),
        pem = pem.display(),
    );
    let path = tmp.path().join("all.toml");
    fs::write(&path, toml).unwrap();
    let s = Settings::load(ServeArgs {
        config: Some(path),
        ..ServeArgs::default()
    })
    .unwrap();
    let v = &s.values;
    assert_eq!(v.data_dir, tmp.path().join("d"));
    assert_eq!(v.jwt_public_key, Some(pem));
    assert_eq!(v.webhook_secret.as_ref().map(Secret::expose), Some("w"));
    assert!(v.guests && v.guests_watch && v.dev_tokens && v.jwt_require_exp);
    assert_eq!(v.jwt_leeway_ms, LeewayMs(21));
    assert_eq!(
        (v.jwt_audience.as_deref(), v.jwt_issuer.as_deref()),
        (Some("aud"), Some("iss"))
    );
    let numbers = [
        v.grace_ms,
        v.heartbeat_ms,
        v.hello_timeout_ms,
        v.coalesce_ms,
        v.coalesce_burst,
        v.occupancy_interval_ms,
        v.max_frame_bytes as u64,
        v.max_data_bytes as u64,
        v.max_channels_per_conn as u64,
        v.max_watch_per_conn as u64,
        v.outbox_frames as u64,
        u64::from(v.rate_per_sec),
        u64::from(v.rate_burst),
        v.offline_cache as u64,
        v.shutdown_timeout_ms,
        v.journal_queue as u64,
        v.http_header_timeout_ms,
        v.http_idle_timeout_ms,
        u64::from(v.max_connections.unwrap()),
        u64::from(v.max_connections_per_ip.unwrap()),
    ];
    assert_eq!(
        numbers,
        [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20
        ]
    );

    let err = load_err(with_toml(tmp.path(), "config = \"other.toml\""));
    assert!(err.contains("unknown field `config`"), "{err}");
}

#[test]
fn debug_output_hides_credentials_in_urls() {
    let args = ServeArgs {
        jwt_jwks: Some("https://u:hunter2@idp.example/jwks".into()),
        redis_url: Some("redis://u:hunter2@localhost".into()),
        ..ServeArgs::default()
    };
    let shown = format!("{args:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
