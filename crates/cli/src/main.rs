//! The `voxtrail` binary: parses the command line, sets up logging, and hands each command to
//! its module. No domain logic lives here.

mod admin;
mod import;
mod progress;
mod pull;
mod serve;

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
        /// Rows to seed.
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
    /// Switch maintenance mode on or off for every server sharing the database.
    Maintenance {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
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
        Command::Maintenance { state } => {
            admin::maintenance(&database(cli.database), state == "on")
        }
        Command::Migrate => admin::migrate(&database(cli.database)),
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
fn init_logging(serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter =
        EnvFilter::try_from_env("VOXTRAIL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if serving {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.without_time().init();
    }
}
