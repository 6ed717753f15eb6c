//! The `voxtrail` binary: parses the command line, sets up logging, and hands each command to
//! its module. No domain logic lives here.

mod admin;
mod audit;
mod import;
mod mirror;
mod progress;
mod pull;
mod serve;
mod serve_lock;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// voxtrail: the self-hosted chat_12 report server ("Interactions sent by agent").
#[derive(Debug, Parser)]
#[command(name = "voxtrail", version, about)]
struct Cli {
    /// Database URL: sqlite://PATH (default sqlite://voxtrail.db) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "VOXTRAIL_DATABASE_URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// TOML configuration file (limits, compat switches).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Start a ready-to-try server on a fresh demo database and print a working curl command.
    Demo {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Rows to seed, at most 100000000.
        #[arg(long, default_value_t = 20_000)]
        rows: u64,
    },
    /// Manage operations (contact centres).
    #[command(subcommand)]
    Operation(admin::OperationCmd),
    /// Manage tokens.
    #[command(subcommand)]
    Token(admin::TokenCmd),
    /// Import interactions from NDJSON, JSON-array or CSV files (`-` reads stdin), or from
    /// mailboxes (mbox, eml, maildir) with an agents file.
    Import(import::ImportArgs),
    /// Store realistic synthetic interactions (same arguments, same rows).
    Seed(admin::SeedArgs),
    /// Copy a report (this server or the hosted API) into SQLite, PostgreSQL, NDJSON or CSV.
    Pull(Box<pull::PullArgs>),
    /// Mirror the chat_12 report of an upstream API (the hosted one, or another voxtrail)
    /// into a local operation; every `voxtrail serve` on the database runs the mirrors.
    #[command(subcommand)]
    Mirror(mirror::MirrorCmd),
    /// Switch maintenance mode on or off for every server sharing the database.
    Maintenance {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Print the consumer audit: one line per request made with a valid token, oldest first.
    Audit(audit::AuditArgs),
    /// Apply pending database schema migrations (serve and every command also do it on start).
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve { .. } | Command::Demo { .. });
    init_logging(serving);
    let result = match cli.command {
        Command::Serve { listen, config } => serve::serve(cli.database, listen, config),
        Command::Demo { listen, rows } => serve::demo(cli.database, listen, rows),
        Command::Operation(cmd) => admin::operation(&database(cli.database), cmd),
        Command::Token(cmd) => admin::token(&database(cli.database), cmd),
        Command::Import(args) => import::run(&database(cli.database), args),
        Command::Seed(args) => admin::seed(&database(cli.database), args),
        Command::Pull(args) => pull::run(*args),
        Command::Mirror(cmd) => mirror::command(&database(cli.database), cmd),
        Command::Maintenance { state } => {
            admin::maintenance(&database(cli.database), state == "on")
        }
        Command::Migrate => admin::migrate(&database(cli.database)),
        Command::Audit(args) => audit::run(&database(cli.database), args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The database URL: `--database`, else `VOXTRAIL_DATABASE_URL`, else the default.
fn database(flag: Option<String>) -> String {
    flag.unwrap_or_else(|| voxtrail_server::Config::default().database)
}

/// Servers log one JSON line per event; admin commands only warnings, readable.
/// `VOXTRAIL_LOG` takes an env-filter directive (`debug`, `voxtrail_server=trace`, …).
///
/// Whatever `VOXTRAIL_LOG` says, the dependencies in [`PAYLOAD_LOGGERS`] are capped at `info`
/// by a second filter layer that no directive can widen: at `debug` and `trace` they log
/// statement parameters (interaction bodies, token hashes), request bytes or URLs.
fn init_logging(serving: bool) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = if serving { "info" } else { "warn" };
    let filter =
        EnvFilter::try_from_env("VOXTRAIL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(payload_cap());
    if serving {
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(false);
        registry.with(fmt).init();
    } else {
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .without_time();
        registry.with(fmt).init();
    }
}

/// Log targets (prefixes) of dependencies that put payloads in their `debug`/`trace` events:
/// the PostgreSQL drivers log every statement with its parameters; the HTTP stacks log
/// request and response details; the SQLite and mail crates are capped for the same reason.
const PAYLOAD_LOGGERS: [&str; 8] = [
    "tokio_postgres",
    "postgres",
    "hyper",
    "h2",
    "reqwest",
    "tower_http",
    "rusqlite",
    "mail_parser",
];

/// A filter that lets everything through except `debug`/`trace` events of
/// [`PAYLOAD_LOGGERS`]. It is a layer of its own, so it cannot be overridden by `VOXTRAIL_LOG`.
fn payload_cap() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    PAYLOAD_LOGGERS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::INFO),
    )
}
