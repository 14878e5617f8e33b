//! The `presenced` command: `serve` runs the server, `token` mints a token for
//! trying things out.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use presenced::auth::{ClaimRules, sign_hs256};
use presenced::config::{ClusterModeUnavailable, GeneratedSecret, ServeArgs, Settings};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "presenced",
    version,
    about = "Self-hosted real-time user presence server."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print a token signed (HS256) with the server's JWT secret.
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// User id (the token's `sub`)
    #[arg(long)]
    user: String,

    /// Trusted member data, a JSON object (the token's `info`), e.g. '{"name":"Alice"}'
    #[arg(long, value_name = "JSON")]
    info: Option<String>,

    /// Lifetime, e.g. 30m, 1h, 7days; 0 or none for a token that never expires
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    ttl: String,

    // The same sources as `serve`, so the token is signed with the secret
    // that server will check.
    #[command(flatten, next_help_heading = "Server settings (to find the secret)")]
    settings: ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            // The server's clock starts from the wall clock as it is now.
            presenced::clock::start();
            init_tracing("info");
            limit_malloc_arenas();
            serve(args)
        }
        Command::Token(args) => {
            // Quiet by default: stdout carries only the token.
            init_tracing("warn");
            token(args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, so it reads well in a terminal and in journald alike.
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("presenced: error: {message}");
            // A setting that cannot work yet is a usage error, like clap's.
            if e.is::<ClusterModeUnavailable>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or journald gets plain
        // text (and `NO_COLOR` turns them off in a terminal too).
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        // A log pipe whose reader has gone must not panic the task that
        // logs (tracing would report its write error with eprintln!, which
        // panics on that same pipe): the line is lost, the server goes on.
        .log_internal_errors(false)
        .init();
}

/// One glibc malloc arena per core instead of glibc's eight per core. The
/// server's threads are tokio's workers (one per core) and a few blocking
/// ones; with eight arenas per core, memory freed after a busy minute stays
/// spread over arenas that are never used again, and an idle server keeps
/// it (BENCHMARKS.md, "users"). Runs before any thread starts; an operator's
/// own `GLIBC_TUNABLES=glibc.malloc.arena_max=…` wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set_by_operator =
            std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"));
        if !set_by_operator {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
            // The workspace's one unsafe block. SAFETY: mallopt changes a
            // malloc parameter and touches no memory of ours; it runs
            // before the runtime starts any thread.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }
}

#[tokio::main]
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args)?;
    for secret in &settings.generated {
        println!("{}", generated_notice(secret));
    }
    if let Some(file) = &settings.values.config {
        tracing::info!(config = %file.display(), "read the configuration file");
    }
    presenced::server::run(settings).await
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let info = args.info.as_deref().map(parse_info).transpose()?;
    let ttl = parse_ttl(&args.ttl)?;
    let (secret, values) = Settings::load_signing(args.settings)?;
    let rules = ClaimRules::from_values(&values);
    println!(
        "{}",
        sign_hs256(secret.expose(), &args.user, info, ttl, &rules)?
    );
    Ok(())
}

fn generated_notice(secret: &GeneratedSecret) -> String {
    format!(
        "generated {} (kept in {}): {}",
        secret.what,
        secret.path.display(),
        secret.value.expose()
    )
}

fn parse_info(text: &str) -> anyhow::Result<serde_json::Value> {
    let value: serde_json::Value =
        serde_json::from_str(text).context("--info is not valid JSON")?;
    if !value.is_object() {
        bail!("--info must be a JSON object, like '{{\"name\":\"Alice\"}}'");
    }
    Ok(value)
}

fn parse_ttl(text: &str) -> anyhow::Result<Option<Duration>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") || text == "0" {
        return Ok(None);
    }
    let ttl = humantime::parse_duration(text)
        .with_context(|| format!("--ttl \"{text}\" is not a duration like 30m, 1h or 7days"))?;
    Ok((!ttl.is_zero()).then_some(ttl))
}
