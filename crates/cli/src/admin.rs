//! Admin commands: `operation`, `token`, `seed`, `maintenance`. Arguments are parsed into
//! domain types first; then one store call does the work.

use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use voxtrail_server::Store;
use voxtrail_server::domain::{OperationName, OperationTz, Scope, TokenSecret, WallClock};
use voxtrail_server::seed::{self, SeedSpec};

use crate::progress::{Reporter, Unit};

#[derive(Debug, Subcommand)]
pub enum OperationCmd {
    /// Create an operation.
    Create {
        name: String,
        /// IANA time zone of the operation's dates.
        #[arg(long, default_value = OperationTz::DEFAULT)]
        timezone: String,
        /// Licenses, at least 1; the default daily limit of a token is licenses × 1000.
        #[arg(long, default_value_t = 10)]
        licenses: u32,
    },
    /// List operations.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; prints the secret alone on stdout (shown once) and its ID on stderr.
    Create {
        #[arg(long)]
        operation: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "report", value_parser = ["report", "ingest", "console"])]
        scope: String,
        /// Uses per operation-local day, 1 to 9223372036854775807 [default: licenses × 1000].
        #[arg(long)]
        daily_limit: Option<u64>,
    },
    /// List tokens (never their secrets): ID, operation, scope, description, daily limit,
    /// created, revoked.
    List,
    /// Revoke a token; every running server refuses it within 5 seconds.
    Revoke { id: i64 },
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[arg(long)]
    operation: String,
    /// Interactions to generate, at most 100000000.
    #[arg(long)]
    count: u64,
    /// Days the interactions spread over, 1 to 36600.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// End of the spread, YYYYmmddHHiiss in the operation's time [default: now].
    #[arg(long)]
    until: Option<String>,
    /// Random seed; the same arguments give the same rows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Most interactions one `seed` (or `demo`) run generates.
pub const MAX_SEED_COUNT: u64 = 100_000_000;
/// Longest spread of seeded interactions, in days (100 years).
const MAX_SEED_DAYS: u32 = 36_600;
/// Largest daily limit a token can have: what both stores hold (a signed 64-bit integer).
const MAX_DAILY_LIMIT: u64 = i64::MAX as u64;

fn open(database: &str) -> anyhow::Result<Store> {
    Store::open(database).with_context(|| format!("opening database {database}"))
}

/// Replaces control characters so one record stays on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub fn operation(database: &str, cmd: OperationCmd) -> anyhow::Result<()> {
    match cmd {
        OperationCmd::Create {
            name,
            timezone,
            licenses,
        } => {
            let name = OperationName::parse(&name).map_err(anyhow::Error::msg)?;
            let tz = OperationTz::parse(&timezone).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(licenses >= 1, "--licenses must be at least 1");
            let op = open(database)?.create_operation(name.as_str(), tz, licenses)?;
            println!("{}\t{}\t{}\t{}", op.id, op.name, op.tz.name(), op.licenses);
        }
        OperationCmd::List => {
            for op in open(database)?.list_operations()? {
                println!("{}\t{}\t{}\t{}", op.id, op.name, op.tz.name(), op.licenses);
            }
        }
    }
    Ok(())
}

pub fn token(database: &str, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            operation,
            description,
            scope,
            daily_limit,
        } => {
            let scope = Scope::parse(&scope).map_err(anyhow::Error::msg)?;
            if let Some(limit) = daily_limit {
                anyhow::ensure!(
                    (1..=MAX_DAILY_LIMIT).contains(&limit),
                    "--daily-limit must be from 1 to {MAX_DAILY_LIMIT}, not {limit} \
                     (a limit of 0 would refuse every request; omit the flag for the default)"
                );
            }
            anyhow::ensure!(
                description.chars().count() <= 500,
                "--description has at most 500 characters"
            );
            let store = open(database)?;
            let op = store.operation(&operation)?;
            let secret = TokenSecret::generate();
            let id = store.create_token(op.id, &secret.hash(), scope, &description, daily_limit)?;
            println!("{}", secret.expose());
            eprintln!("token id: {id}");
        }
        TokenCmd::List => {
            let per_license = voxtrail_server::Config::default().limits.daily_per_license;
            for t in open(database)?.list_tokens()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    one_line(&t.operation.name),
                    t.scope.as_str(),
                    one_line(&t.description),
                    match t.scope {
                        Scope::Report => t.effective_daily_limit(per_license).to_string(),
                        Scope::Ingest | Scope::Console => "-".to_owned(),
                    },
                    t.created_at,
                    t.revoked_at.as_deref().unwrap_or("-"),
                );
            }
        }
        TokenCmd::Revoke { id } => {
            if open(database)?.revoke_token(id)? {
                eprintln!("token {id} revoked");
            } else {
                eprintln!("token {id} was already revoked");
            }
        }
    }
    Ok(())
}

pub fn seed(database: &str, args: SeedArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_SEED_DAYS).contains(&args.days),
        "--days must be from 1 to {MAX_SEED_DAYS}, not {}",
        args.days
    );
    anyhow::ensure!(
        args.count <= MAX_SEED_COUNT,
        "--count is at most {MAX_SEED_COUNT}"
    );
    let days = args.days;
    let store = open(database)?;
    let op = store.operation(&args.operation)?;
    let until = match &args.until {
        Some(s) => WallClock::parse_compact(s).map_err(|_| {
            anyhow::anyhow!("--until {s:?} is not a real time in the form YYYYmmddHHiiss")
        })?,
        None => WallClock::now_in(op.tz),
    };
    // Seeded dates stay inside the years ingestion accepts (1000–9999).
    let earliest = chrono::NaiveDate::from_ymd_opt(1000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a real date");
    anyhow::ensure!(
        until.to_naive() - chrono::Duration::days(i64::from(days)) >= earliest,
        "--until minus --days must not fall before 1000-01-01 00:00:00"
    );
    let spec = SeedSpec {
        count: args.count,
        days,
        until,
        seed: args.seed,
    };
    let start = Instant::now();
    let bar = Reporter::new(Unit::Rows, Some(args.count));
    let summary = seed::run(&store, &op, spec, |done| {
        if bar.is_bar() {
            bar.set_position(done);
        } else {
            eprintln!("seeded {done}/{}", args.count);
        }
    });
    bar.finish();
    let summary = summary?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "seed done: {} inserted, {} already present, {:.1} s ({:.0} rows/s)",
        summary.inserted,
        summary.duplicates,
        secs,
        args.count as f64 / secs.max(1e-9)
    );
    Ok(())
}

pub fn maintenance(database: &str, on: bool) -> anyhow::Result<()> {
    open(database)?.set_maintenance(on)?;
    eprintln!(
        "maintenance {}; running servers follow within 5 seconds",
        if on { "on" } else { "off" }
    );
    Ok(())
}

/// `voxtrail migrate`: opening the store applies pending migrations (under a lock on
/// PostgreSQL, so replicas starting together do not race); prints the version in force.
pub fn migrate(database: &str) -> anyhow::Result<()> {
    let store = open(database)?;
    let version = store.migrate()?;
    println!("database schema at version {version}");
    Ok(())
}
