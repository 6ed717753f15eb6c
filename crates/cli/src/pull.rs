//! `voxtrail pull`: the collector. Copies a report from a voxtrail server or the hosted API
//! into a destination (SQLite, NDJSON or CSV file), gap-free and without duplicates, once or
//! forever (`--follow`).
//!
//! Owns the command's flags (parsed once into [`Plan`]), the cycle loop (windows in the
//! operation's wall clock, `--lookback` re-reads, checkpoint after every window, SIGINT/SIGTERM
//! finish the current window) and the destinations. HTTP, retries, quirks and window halving
//! belong to `voxtrail-client`; this module knows nothing of the server crate.
//!
//! Destinations and their crash-safety:
//! - `postgres://…`: the same tables as SQLite (`row` kept as the exact JSON text; `row::jsonb`
//!   to query it), one transaction per window.
//! - `sqlite://FILE`: rows upserted by (source, report, conn_id) in `pulled_rows`, the
//!   checkpoint in `pull_checkpoints`, both in one transaction per window.
//! - `ndjson:PATH` / `csv:PATH`: exactly one row per line, appended to PATH. NDJSON lines are
//!   the report's flat objects. CSV starts with a header of the report's field names; inside
//!   every value (header included) `\` is written `\\`, LF `\n` and CR `\r`, then the usual
//!   CSV quoting applies to values holding commas or quotes — so no record spans lines, and
//!   reading reverses it exactly. Beside PATH:
//!   - `PATH.keys`, the index of written keys: line *i* is the key of row *i* (escaped the
//!     same way), append-only;
//!   - `PATH.state.json`, a few hundred bytes: source, report, checkpoint, the data file's
//!     length and row count; replaced atomically (temp file, fsync, rename).
//!
//!   Each window appends its new rows to PATH (fsync), then their keys to `PATH.keys` (fsync),
//!   then replaces the state, so the bytes written per window depend on that window's rows,
//!   not on the size of the copy. Every key is computed again, the same, from the row as the
//!   file holds it: with `KeyRule::Hash` a CSV row is hashed as the file holds it (the
//!   header's fields in the header's order, a missing one empty, others left out), never as
//!   the server sent it. At start the data file is the truth: it is re-read, a torn
//!   last record is cut off, the key log is cut to whole lines and extended with the keys of
//!   rows it lacks (a crash between the appends) or rebuilt when it does not match, and if the
//!   data file holds fewer rows than the state says the copy is re-read from `--since` (rows
//!   already there are skipped) — a crash anywhere neither loses nor duplicates a row.
//!   A state file of the first format (every key inside it, rewritten each window) is migrated
//!   on open; a CSV file of that format (RFC 4180 records spanning lines) is rewritten one
//!   record per line, by way of `PATH.v1` so that an interrupted conversion starts over
//!   (`PATH.converting` marks a `PATH.v1` as voxtrail's; anyone else's is never touched). A
//!   first-format state beside a key log (an earlier voxtrail run on a converted copy) is
//!   refused rather than converted twice.
//!
//! `--token-info` asks `token_info` once at start and prints the token's limit and today's
//! use. It is off by default because every `token_info` call counts as one use of the daily
//! limit; a run that hits the limit learns the same numbers anyway (the client asks
//! `token_info` once after a 403 TOKEN LIMIT EXCEEDED, when the server still answers it).

use std::collections::HashSet;
use std::io::{BufRead as _, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use chrono::{NaiveDateTime, Timelike as _};
use sha2::{Digest as _, Sha256};
use voxtrail_client::{Client, Row, Window, format_wall_clock, parse_wall_clock};

/// Flags of `voxtrail pull`, as typed.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Base URL of the API (e.g. http://127.0.0.1:8080).
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    url: Option<String>,
    /// Hosted server code: pulls from https://wv{CODE}.wolkvox.com.
    #[arg(long)]
    server: Option<String>,
    /// The report token.
    #[arg(long, env = "VOXTRAIL_TOKEN", hide_env_values = true)]
    token: String,
    /// First wall-clock second to copy, YYYYmmddHHiiss (operation time).
    #[arg(long)]
    since: String,
    /// Last wall-clock second to copy, YYYYmmddHHiiss [default: now, operation time].
    #[arg(long)]
    until: Option<String>,
    /// Keep going: pull again every --every until SIGINT/SIGTERM.
    #[arg(long)]
    follow: bool,
    /// Pause between cycles with --follow (90s, 5m, 1h).
    #[arg(long, default_value = "5m")]
    every: String,
    /// Re-read this much before the checkpoint on every cycle, to catch late rows.
    #[arg(long, default_value = "15m")]
    lookback: String,
    /// The operation's IANA time zone: windows are built in its wall-clock time.
    #[arg(long, default_value = "America/Bogota")]
    timezone: String,
    /// Report name (api=…).
    #[arg(long, default_value = "chat_12")]
    api: String,
    /// Field that identifies a row [default: conn_id for chat_12, else a hash of the row].
    #[arg(long)]
    key: Option<String>,
    /// Destination: sqlite://FILE, postgres://…, ndjson:PATH or csv:PATH.
    #[arg(long)]
    into: String,
    /// Longest window per request (at most 31 days; crowded windows are halved anyway).
    #[arg(long, default_value = "1d")]
    window: String,
    /// Lock file shared with other processes using the same token: requests take turns.
    #[arg(long)]
    lock_file: Option<PathBuf>,
    /// Time allowed for one request.
    #[arg(long, default_value = "120s")]
    timeout: String,
    /// Answers with this many rows are taken as silently truncated and their window halved.
    #[arg(long, default_value_t = voxtrail_client::DEFAULT_TRUNCATION_THRESHOLD)]
    truncation_threshold: usize,
    /// Ask token_info once at start and print the token's limit and today's use (costs one
    /// use of the daily limit, hence off by default).
    #[arg(long)]
    token_info: bool,
    /// Attempts per request on network errors, 5xx and 403 SIMULTANEOUS REQUESTS.
    #[arg(long, default_value_t = 8)]
    attempts: u32,
    /// First retry delay (doubles each attempt, with jitter).
    #[arg(long, default_value = "500ms", hide = true)]
    backoff: String,
}

/// The checked plan of a run.
#[derive(Debug)]
struct Plan {
    source: String,
    api: String,
    key: KeyRule,
    since: NaiveDateTime,
    until: Option<NaiveDateTime>,
    follow: bool,
    every: Duration,
    lookback: chrono::Duration,
    window: chrono::Duration,
    tz: chrono_tz::Tz,
    into: DestSpec,
    token_info: bool,
}

#[derive(Debug, Clone)]
enum KeyRule {
    Field(String),
    Hash,
}

impl KeyRule {
    fn key(&self, row: &Row) -> anyhow::Result<String> {
        match self {
            KeyRule::Field(f) => row
                .get(f)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("a row has no {f:?} field: {}", row.to_json())),
            KeyRule::Hash => {
                let h = Sha256::digest(row.to_json().as_bytes());
                Ok(h.iter().map(|b| format!("{b:02x}")).collect())
            }
        }
    }
}

#[derive(Debug, Clone)]
enum DestSpec {
    Postgres(String),
    Sqlite(PathBuf),
    Ndjson(PathBuf),
    Csv(PathBuf),
}

impl DestSpec {
    fn parse(s: &str) -> anyhow::Result<Self> {
        if let Some(p) = s.strip_prefix("sqlite://") {
            Ok(DestSpec::Sqlite(PathBuf::from(p)))
        } else if let Some(p) = s.strip_prefix("ndjson:") {
            Ok(DestSpec::Ndjson(PathBuf::from(p)))
        } else if let Some(p) = s.strip_prefix("csv:") {
            Ok(DestSpec::Csv(PathBuf::from(p)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(DestSpec::Postgres(s.to_owned()))
        } else {
            bail!("--into {s:?}: expected sqlite://FILE, postgres://…, ndjson:PATH or csv:PATH")
        }
        .and_then(|d: DestSpec| {
            let p = match &d {
                DestSpec::Postgres(_) => return Ok(d),
                DestSpec::Sqlite(p) | DestSpec::Ndjson(p) | DestSpec::Csv(p) => p,
            };
            if p.as_os_str().is_empty() {
                bail!("--into {s:?}: the path is empty");
            }
            Ok(d)
        })
    }
}

/// Parses `90s`, `5m`, `1h`, `1d`, `500ms` or plain seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a duration such as 90s, 5m or 1h"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("{s:?} is not a duration such as 90s, 5m or 1h"),
    };
    Ok(Duration::from_secs(secs))
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(36_500))
}

impl PullArgs {
    /// Checks every flag; every problem becomes one line.
    fn check(self) -> anyhow::Result<(Plan, Client)> {
        let mut problems = Vec::new();
        let mut note = |r: Result<(), anyhow::Error>| {
            if let Err(e) = r {
                problems.push(format!("{e:#}"));
            }
        };
        let base = match (&self.url, &self.server) {
            (Some(u), _) => u.clone(),
            (None, Some(code)) => Client::server_url(code),
            (None, None) => String::new(),
        };
        let since = parse_wall_clock(&self.since).map_err(|e| anyhow!("--since: {e}"));
        let until = self
            .until
            .as_deref()
            .map(|u| parse_wall_clock(u).map_err(|e| anyhow!("--until: {e}")))
            .transpose();
        let dur = |flag: &str, v: &str| parse_duration(v).with_context(|| format!("--{flag}"));
        let every = dur("every", &self.every);
        let lookback = dur("lookback", &self.lookback);
        let window = dur("window", &self.window);
        let timeout = dur("timeout", &self.timeout);
        let backoff = dur("backoff", &self.backoff);
        let tz: Result<chrono_tz::Tz, _> = self
            .timezone
            .parse()
            .map_err(|_| anyhow!("--timezone {:?} is not an IANA time zone", self.timezone));
        let into = DestSpec::parse(&self.into);
        note(since.as_ref().map(|_| ()).map_err(|e| anyhow!("{e}")));
        note(until.as_ref().map(|_| ()).map_err(|e| anyhow!("{e}")));
        for r in [&every, &lookback, &window, &timeout, &backoff] {
            note(r.as_ref().map(|_| ()).map_err(|e| anyhow!("{e:#}")));
        }
        note(tz.as_ref().map(|_| ()).map_err(|e| anyhow!("{e}")));
        note(into.as_ref().map(|_| ()).map_err(|e| anyhow!("{e}")));
        if matches!(&window, Ok(w) if w.is_zero()) {
            note(Err(anyhow!("--window must be at least 1s")));
        }
        if let (Ok(s), Ok(Some(u))) = (&since, &until)
            && s > u
        {
            note(Err(anyhow!("--since is after --until")));
        }
        // A chat_12 CSV file holds the report's fields only: a key outside them could not be
        // read back from the file.
        if let (Some(k), Ok(DestSpec::Csv(_))) = (&self.key, &into)
            && self.api == voxtrail_wire::CHAT_12
            && !voxtrail_wire::CHAT_12_FIELDS.contains(&k.as_str())
        {
            note(Err(anyhow!(
                "--key {k:?}: a chat_12 CSV file holds only the fields {}",
                voxtrail_wire::CHAT_12_FIELDS.join(", ")
            )));
        }
        if self.follow && matches!(every, Ok(d) if d.is_zero()) {
            note(Err(anyhow!("--every must be at least 1s")));
        }
        if !problems.is_empty() {
            bail!(problems.join("\n"));
        }
        let tz = tz?;
        let mut b = Client::builder(base.clone(), self.token)
            .timeout(timeout?)
            .attempts(self.attempts)
            .backoff(backoff?, Duration::from_secs(60))
            .truncation_threshold(self.truncation_threshold)
            .timezone(tz);
        if let Some(l) = &self.lock_file {
            b = b.lock_file(l);
        }
        let client = b.build()?;
        let key = match self.key {
            Some(k) => KeyRule::Field(k),
            None if self.api == voxtrail_wire::CHAT_12 => KeyRule::Field("conn_id".into()),
            None => KeyRule::Hash,
        };
        Ok((
            Plan {
                source: client.base_url().to_owned(),
                api: self.api,
                key,
                since: since?,
                until: until?,
                follow: self.follow,
                every: every?,
                lookback: chrono_dur(lookback?),
                window: chrono_dur(window?),
                tz,
                into: into?,
                token_info: self.token_info,
            },
            client,
        ))
    }
}

/// Runs `voxtrail pull`.
pub fn run(args: PullArgs) -> anyhow::Result<()> {
    let (plan, client) = args.check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(collect(plan, client))
}

#[derive(Debug, Default)]
struct Totals {
    windows: u64,
    rows: u64,
    written: u64,
}

async fn collect(plan: Plan, client: Client) -> anyhow::Result<()> {
    let mut dest = Dest::open(&plan)?;
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    spawn_signal_watch(stop.clone(), wake.clone())?;
    if plan.token_info {
        match client.token_info().await {
            Ok(t) => eprintln!(
                "token: limit {}, used today {} (all tokens of the operation today: {}), {} left",
                t.token_limit,
                t.token_use_today,
                t.all_token_today,
                t.available_consumption_options
            ),
            // The first window meets the same refusal and ends the run with it, if final.
            Err(e) => eprintln!("token_info: {e}"),
        }
    }
    let mut totals = Totals::default();
    let result = cycles(&plan, &client, &mut dest, &stop, &wake, &mut totals).await;
    let cp = dest
        .checkpoint()
        .map(format_wall_clock)
        .unwrap_or_else(|| "none".into());
    eprintln!(
        "pull {}: {} windows, {} rows read, {} new rows written, checkpoint {cp}",
        if result.is_ok() { "done" } else { "stopped" },
        totals.windows,
        totals.rows,
        totals.written
    );
    result
}

async fn cycles(
    plan: &Plan,
    client: &Client,
    dest: &mut Dest,
    stop: &AtomicBool,
    wake: &tokio::sync::Notify,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    loop {
        let now = chrono::Utc::now()
            .with_timezone(&plan.tz)
            .naive_local()
            .with_nanosecond(0)
            .unwrap_or_default();
        let end = plan.until.unwrap_or(now);
        let start = match dest.checkpoint() {
            Some(cp) => (cp + chrono::Duration::seconds(1) - plan.lookback).max(plan.since),
            None => plan.since,
        };
        if let Some(range) = Window::new(start, end) {
            for w in range.split(plan.window) {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let rows = match client.window(&plan.api, w).await {
                    Ok(rows) => rows,
                    // Following, a server that stays unreachable through every retry is waited
                    // for: the next cycle starts again from the checkpoint. Final refusals
                    // (token, limit) end the run.
                    Err(e) if plan.follow && !e.is_final() => {
                        eprintln!("window {w}: {e}; trying again next cycle");
                        break;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("pulling {} window {w}", plan.api));
                    }
                };
                let keyed = rows
                    .iter()
                    .map(|r| Ok((plan.key.key(r)?, r)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let cp = dest.checkpoint().map_or(w.end, |c| c.max(w.end));
                let written = dest
                    .commit(&keyed, cp)
                    .with_context(|| format!("writing window {w}"))?;
                totals.windows += 1;
                totals.rows += rows.len() as u64;
                totals.written += written;
                if !rows.is_empty() || !plan.follow {
                    eprintln!("window {w}: {} rows, {written} new", rows.len());
                }
            }
        }
        let done = plan
            .until
            .is_some_and(|u| dest.checkpoint().is_some_and(|c| c >= u));
        if !plan.follow || stop.load(Ordering::SeqCst) || done {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(plan.every) => {}
            _ = wake.notified() => {}
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
}

/// SIGINT and SIGTERM set `stop`: the current window finishes, its checkpoint is saved.
fn spawn_signal_watch(stop: Arc<AtomicBool>, wake: Arc<tokio::sync::Notify>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("signal received: finishing the current window");
        stop.store(true, Ordering::SeqCst);
        wake.notify_one();
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Destinations
// ---------------------------------------------------------------------------------------

enum Dest {
    Postgres(PgDest),
    Sqlite(SqliteDest),
    File(FileDest),
}

impl Dest {
    fn open(plan: &Plan) -> anyhow::Result<Dest> {
        Ok(match &plan.into {
            DestSpec::Postgres(url) => Dest::Postgres(PgDest::open(url, plan)?),
            DestSpec::Sqlite(p) => Dest::Sqlite(SqliteDest::open(p, plan)?),
            DestSpec::Ndjson(p) => Dest::File(FileDest::open(p, Format::Ndjson, plan)?),
            DestSpec::Csv(p) => Dest::File(FileDest::open(p, Format::Csv, plan)?),
        })
    }

    fn checkpoint(&self) -> Option<NaiveDateTime> {
        match self {
            Dest::Postgres(d) => d.checkpoint,
            Dest::Sqlite(d) => d.checkpoint,
            Dest::File(d) => d.checkpoint,
        }
    }

    /// Stores the rows not stored yet and moves the checkpoint; returns rows newly written.
    fn commit(&mut self, rows: &[(String, &Row)], cp: NaiveDateTime) -> anyhow::Result<u64> {
        match self {
            Dest::Postgres(d) => d.commit(rows, cp),
            Dest::Sqlite(d) => d.commit(rows, cp),
            Dest::File(d) => d.commit(rows, cp),
        }
    }
}

/// Runs `f` on a plain thread and waits: the sync PostgreSQL driver runs its own runtime,
/// which must not start (or be dropped) on a thread of ours.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("postgres thread"))
}

struct PgDest {
    client: Option<postgres::Client>,
    source: String,
    report: String,
    checkpoint: Option<NaiveDateTime>,
}

impl Drop for PgDest {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            off_runtime(move || drop(c));
        }
    }
}

impl PgDest {
    fn open(url: &str, plan: &Plan) -> anyhow::Result<Self> {
        let (source, report) = (plan.source.clone(), plan.api.clone());
        off_runtime(|| {
            let mut client = postgres::Client::connect(url, postgres::NoTls)
                .context("connecting to postgres")?;
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS pulled_rows (
                         source TEXT NOT NULL,
                         report TEXT NOT NULL,
                         conn_id TEXT NOT NULL,
                         date TEXT NOT NULL,
                         row TEXT NOT NULL,
                         pulled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                         PRIMARY KEY (source, report, conn_id)
                     );
                     CREATE INDEX IF NOT EXISTS pulled_rows_date ON pulled_rows (source, report, date);
                     CREATE TABLE IF NOT EXISTS pull_checkpoints (
                         source TEXT NOT NULL,
                         report TEXT NOT NULL,
                         until TEXT NOT NULL,
                         updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                         PRIMARY KEY (source, report)
                     );",
                )
                .context("creating the pull tables")?;
            let cp = client
                .query_opt(
                    "SELECT until FROM pull_checkpoints WHERE source = $1 AND report = $2",
                    &[&source, &report],
                )
                .context("reading the checkpoint")?
                .map(|r| r.get::<_, String>(0));
            let checkpoint = cp
                .map(|c| parse_wall_clock(&c).map_err(|e| anyhow!("stored checkpoint: {e}")))
                .transpose()?;
            Ok(Self {
                client: Some(client),
                source,
                report,
                checkpoint,
            })
        })
    }

    fn commit(&mut self, rows: &[(String, &Row)], cp: NaiveDateTime) -> anyhow::Result<u64> {
        let client = self.client.as_mut().expect("open until dropped");
        let (source, report) = (&self.source, &self.report);
        let written = off_runtime(|| -> anyhow::Result<u64> {
            let mut tx = client.transaction()?;
            // One statement per 1,000 rows; a key twice in one statement would be an error
            // (ON CONFLICT cannot touch a row twice), so the last occurrence wins. xmax = 0
            // only on a freshly inserted tuple: counts new rows, not updates.
            let ins = tx.prepare(
                "INSERT INTO pulled_rows (source, report, conn_id, date, row)
                 SELECT $1, $2, k, d, r FROM unnest($3::text[], $4::text[], $5::text[]) AS t (k, d, r)
                 ON CONFLICT (source, report, conn_id) DO UPDATE
                   SET row = excluded.row, date = excluded.date, pulled_at = now()
                   WHERE pulled_rows.row IS DISTINCT FROM excluded.row
                 RETURNING (xmax = 0)",
            )?;
            let mut last: std::collections::HashMap<&str, usize> = Default::default();
            for (i, (key, _)) in rows.iter().enumerate() {
                last.insert(key.as_str(), i);
            }
            let unique: Vec<&(String, &Row)> = rows
                .iter()
                .enumerate()
                .filter(|(i, (k, _))| last[k.as_str()] == *i)
                .map(|(_, r)| r)
                .collect();
            let mut written = 0;
            for chunk in unique.chunks(1000) {
                let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
                let dates: Vec<&str> = chunk
                    .iter()
                    .map(|(_, r)| r.get("date").unwrap_or_default())
                    .collect();
                let json: Vec<String> = chunk.iter().map(|(_, r)| r.to_json()).collect();
                for r in tx.query(&ins, &[source, report, &keys, &dates, &json])? {
                    written += u64::from(r.get::<_, bool>(0));
                }
            }
            tx.execute(
                "INSERT INTO pull_checkpoints (source, report, until) VALUES ($1, $2, $3)
                 ON CONFLICT (source, report) DO UPDATE SET until = excluded.until, updated_at = now()",
                &[source, report, &format_wall_clock(cp)],
            )?;
            tx.commit().context("committing to postgres")?;
            Ok(written)
        })?;
        self.checkpoint = Some(cp);
        Ok(written)
    }
}

struct SqliteDest {
    conn: rusqlite::Connection,
    source: String,
    report: String,
    checkpoint: Option<NaiveDateTime>,
}

impl SqliteDest {
    fn open(path: &Path, plan: &Plan) -> anyhow::Result<Self> {
        let conn = rusqlite::Connection::open(path)
            .with_context(|| format!("opening sqlite database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS pulled_rows (
                 source TEXT NOT NULL,
                 report TEXT NOT NULL,
                 conn_id TEXT NOT NULL,
                 date TEXT NOT NULL,
                 row TEXT NOT NULL,
                 pulled_at TEXT NOT NULL,
                 PRIMARY KEY (source, report, conn_id)
             );
             CREATE INDEX IF NOT EXISTS pulled_rows_date ON pulled_rows (source, report, date);
             CREATE TABLE IF NOT EXISTS pull_checkpoints (
                 source TEXT NOT NULL,
                 report TEXT NOT NULL,
                 until TEXT NOT NULL,
                 updated_at TEXT NOT NULL,
                 PRIMARY KEY (source, report)
             );
             CREATE VIEW IF NOT EXISTS chat_12_rows AS
               SELECT source, conn_id,
                 json_extract(row, '$.agent_id') AS agent_id,
                 json_extract(row, '$.agent_name') AS agent_name,
                 json_extract(row, '$.channel') AS channel,
                 json_extract(row, '$.from') AS \"from\",
                 json_extract(row, '$.to') AS \"to\",
                 json_extract(row, '$.subject') AS subject,
                 json_extract(row, '$.body') AS body,
                 date,
                 json_extract(row, '$.cod_act') AS cod_act,
                 json_extract(row, '$.description_cod_act') AS description_cod_act
               FROM pulled_rows WHERE report = 'chat_12';",
        )
        .context("creating the pull tables")?;
        let cp: Option<String> = conn
            .query_row(
                "SELECT until FROM pull_checkpoints WHERE source = ?1 AND report = ?2",
                (&plan.source, &plan.api),
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .context("reading the checkpoint")?;
        let checkpoint = cp
            .map(|c| parse_wall_clock(&c).map_err(|e| anyhow!("stored checkpoint: {e}")))
            .transpose()?;
        Ok(Self {
            conn,
            source: plan.source.clone(),
            report: plan.api.clone(),
            checkpoint,
        })
    }

    fn commit(&mut self, rows: &[(String, &Row)], cp: NaiveDateTime) -> anyhow::Result<u64> {
        let now = chrono::Utc::now().to_rfc3339();
        let tx = self.conn.transaction()?;
        let mut written = 0;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO pulled_rows (source, report, conn_id, date, row, pulled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (source, report, conn_id) DO UPDATE
                   SET row = excluded.row, date = excluded.date, pulled_at = excluded.pulled_at
                   WHERE pulled_rows.row IS NOT excluded.row",
            )?;
            let mut exists = tx.prepare_cached(
                "SELECT 1 FROM pulled_rows WHERE source = ?1 AND report = ?2 AND conn_id = ?3",
            )?;
            for (key, row) in rows {
                let new = !exists.exists((&self.source, &self.report, key))?;
                let date = row.get("date").unwrap_or_default();
                ins.execute((&self.source, &self.report, key, date, row.to_json(), &now))?;
                written += u64::from(new);
            }
        }
        tx.execute(
            "INSERT INTO pull_checkpoints (source, report, until, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, report) DO UPDATE SET until = excluded.until, updated_at = excluded.updated_at",
            (&self.source, &self.report, format_wall_clock(cp), &now),
        )?;
        tx.commit().context("committing to sqlite")?;
        self.checkpoint = Some(cp);
        Ok(written)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

/// The state format written now: a small state, the key log beside it, CSV records on one
/// line each. The first format (no `version`) kept every key in the state file and wrote
/// RFC 4180 CSV records that could span lines; it is migrated once, on open.
const STATE_VERSION: u32 = 2;

/// The state file beside a data file: a few hundred bytes whatever the size of the copy.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FileState {
    /// [`STATE_VERSION`]; absent (0) in the first format.
    #[serde(default)]
    version: u32,
    source: String,
    report: String,
    checkpoint: Option<String>,
    /// Length of the data file when this state was written.
    data_len: u64,
    /// Rows in the data file (= lines of the key log) when this state was written.
    #[serde(default)]
    rows: u64,
    /// First format only: every key written. Read to migrate, never written again.
    #[serde(default, skip_serializing)]
    keys: Option<Vec<String>>,
}

struct FileDest {
    path: PathBuf,
    state_path: PathBuf,
    keys_path: PathBuf,
    format: Format,
    file: std::fs::File,
    key_log: std::fs::File,
    len: u64,
    rows: u64,
    header: Option<Vec<String>>,
    rule: KeyRule,
    keys: HashSet<String>,
    source: String,
    report: String,
    checkpoint: Option<NaiveDateTime>,
}

/// `PATH` + `suffix` (`copy.csv` → `copy.csv.keys`).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Fsyncs the directory holding `path`, so a rename or a new file in it is durable.
fn sync_dir(path: &Path) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn read_state(path: &Path) -> anyhow::Result<Option<FileState>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
            format!("reading state file {}", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = beside(path, ".tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    sync_dir(path);
    Ok(())
}

impl FileDest {
    /// Opens a file destination and reconciles its three files. The data file is the truth
    /// about which rows exist: a torn last record is cut, the key log is cut to whole lines,
    /// extended with the keys of rows written after it (a crash between the two appends) or
    /// rebuilt when it does not describe the data file, and the checkpoint is dropped (the
    /// copy is re-read from `--since`, nothing written twice) when the data file holds fewer
    /// rows than the state says.
    fn open(path: &Path, format: Format, plan: &Plan) -> anyhow::Result<Self> {
        let state_path = beside(path, ".state.json");
        let keys_path = beside(path, ".keys");
        let mut state = read_state(&state_path)?;
        if let Some(s) = &state
            && (s.source != plan.source || s.report != plan.api)
        {
            bail!(
                "{} holds a copy of {} from {}, not of {} from {}",
                path.display(),
                s.report,
                s.source,
                plan.api,
                plan.source
            );
        }
        let backup = beside(path, ".v1");
        let marker = beside(path, ".converting");
        let first_format = state.as_ref().is_some_and(|s| s.version < STATE_VERSION);
        // PATH.v1 is voxtrail's only while PATH.converting says so: anyone else's is left alone.
        let ours = marker.exists();
        if format == Format::Csv && first_format && keys_path.exists() {
            bail!(
                "{} is in the first format (every key inside) but {} exists: an earlier voxtrail has written to a copy in the current format, and its CSV records may now span lines; converting again would escape values twice. Check {} by hand, or pull into a new file",
                state_path.display(),
                keys_path.display(),
                path.display()
            );
        }
        if format == Format::Csv && first_format && backup.exists() && !ours {
            bail!(
                "{} is in the way: an earlier voxtrail's CSV file is converted by way of that name, and this file was not left by a conversion; move it away and run again",
                backup.display()
            );
        }
        if format == Format::Csv && ((ours && backup.exists()) || (first_format && path.exists())) {
            state = convert_first_format_csv(path, &backup, &marker, &state_path, state, plan)
                .with_context(|| format!("converting {} to one record per line", path.display()))?;
        } else if ours {
            // A conversion done but for the removal of its marker.
            std::fs::remove_file(&marker)
                .with_context(|| format!("removing {}", marker.display()))?;
            sync_dir(path);
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Cut a torn last record (a crash in the middle of a write). The file is streamed,
        // never held in memory.
        let total = file.metadata()?.len();
        let complete = complete_len(&mut file, false)
            .with_context(|| format!("reading {}", path.display()))?;
        if complete < total {
            eprintln!(
                "{}: cutting a torn last record ({} bytes) left by an interrupted run",
                path.display(),
                total - complete
            );
            file.set_len(complete)?;
            file.sync_all()?;
        }
        file.seek(std::io::SeekFrom::Start(0))?;
        let mut data_keys = Vec::new();
        let header = for_each_row(
            std::io::BufReader::new((&file).take(complete)),
            format,
            |r| {
                data_keys.push(plan.key.key(&r)?);
                Ok(())
            },
        )
        .with_context(|| format!("reading the rows of {}", path.display()))?;
        let rows = data_keys.len() as u64;

        // The key log: line i is the key of row i. A key computed again from a row read back
        // is the key it was written under (a hash key of a CSV row is the hash of the row as
        // the file holds it), so the data file alone says which keys are written.
        let (mut key_log, logged) = open_key_log(&keys_path)?;
        let prefix = logged.len() <= data_keys.len() && logged[..] == data_keys[..logged.len()];
        let keys: HashSet<String> = data_keys.iter().cloned().collect();
        if prefix {
            if logged.len() < data_keys.len() {
                append_keys(&mut key_log, &data_keys[logged.len()..])
                    .with_context(|| format!("appending to {}", keys_path.display()))?;
            }
        } else {
            if !logged.is_empty() {
                eprintln!(
                    "{}: the key log does not describe {} ({} keys for {rows} rows); rebuilt from the data file",
                    keys_path.display(),
                    path.display(),
                    logged.len()
                );
            }
            let mut text = Vec::new();
            for k in &data_keys {
                text.extend_from_slice(escape_line(k).as_bytes());
                text.push(b'\n');
            }
            replace_file(&keys_path, &text)?;
            key_log = open_key_log(&keys_path)?.0;
        }
        drop(data_keys);

        // The state describes a prefix of the data file; if the file holds less (it was
        // replaced or cut), start over from --since so nothing is lost.
        let mut checkpoint = None;
        let mut migrated = false;
        if let Some(s) = state {
            let (lost, known) = match &s.keys {
                Some(v1) => {
                    migrated = true;
                    let lost = if v1_keys_comparable(format, &plan.key) {
                        v1.iter().any(|k| !keys.contains(k))
                    } else {
                        rows < v1.len() as u64
                    };
                    (lost, v1.len() as u64)
                }
                None => (complete < s.data_len || rows < s.rows, s.rows),
            };
            if lost {
                eprintln!(
                    "{}: the data file holds less than the state file says ({rows} rows, {complete} bytes; state: {known} rows, {} bytes); re-reading from --since",
                    path.display(),
                    s.data_len
                );
            } else {
                checkpoint = s
                    .checkpoint
                    .map(|c| parse_wall_clock(&c).map_err(|e| anyhow!("state checkpoint: {e}")))
                    .transpose()?;
                if rows > known {
                    eprintln!(
                        "{}: {} rows written after the last saved state were found and kept",
                        path.display(),
                        rows - known
                    );
                }
            }
        }
        let dest = Self {
            path: path.to_owned(),
            state_path,
            keys_path,
            format,
            len: complete,
            rows,
            file,
            key_log,
            header,
            rule: plan.key.clone(),
            keys,
            source: plan.source.clone(),
            report: plan.api.clone(),
            checkpoint,
        };
        if migrated {
            // The first format's state, with every key, is replaced by the small one.
            dest.save_state()?;
        }
        Ok(dest)
    }

    /// Appends the rows not written yet (data, fsync), then their keys (key log, fsync), then
    /// replaces the small state file: a crash between any two steps is repaired on open.
    fn commit(&mut self, rows: &[(String, &Row)], cp: NaiveDateTime) -> anyhow::Result<u64> {
        // A CSV file starts with the header: the report's fields for chat_12, else those of
        // the first row written.
        let new_header = match (self.format, &self.header, rows.first()) {
            (Format::Csv, None, Some((_, first))) => {
                Some(if self.report == voxtrail_wire::CHAT_12 {
                    voxtrail_wire::CHAT_12_FIELDS.map(String::from).to_vec()
                } else {
                    first.fields().map(|(k, _)| k.to_owned()).collect()
                })
            }
            _ => None,
        };
        let header = new_header.as_ref().or(self.header.as_ref());
        // A hash key of a CSV row is the hash of the row as the file holds it (the header's
        // fields in its order), so that it is computed again, the same, from the file.
        let rows: Vec<(String, &Row)> = match (header, &self.rule) {
            (Some(h), KeyRule::Hash) => rows
                .iter()
                .map(|(_, r)| Ok((KeyRule::Hash.key(&as_csv_row(h, r))?, *r)))
                .collect::<anyhow::Result<_>>()?,
            _ => rows.to_vec(),
        };
        let mut batch = HashSet::new();
        let fresh: Vec<&(String, &Row)> = rows
            .iter()
            .filter(|(k, _)| !self.keys.contains(k) && batch.insert(k.as_str()))
            .collect();
        let mut out = Vec::new();
        match self.format {
            Format::Ndjson => {
                for (_, row) in &fresh {
                    out.extend_from_slice(row.to_json().as_bytes());
                    out.push(b'\n');
                }
            }
            Format::Csv if !fresh.is_empty() => {
                let mut w = csv_line_writer(&mut out);
                let header = match new_header {
                    Some(h) => {
                        write_escaped(&mut w, h.iter().map(String::as_str))?;
                        h
                    }
                    None => self.header.clone().expect("a header before any row"),
                };
                for (_, row) in &fresh {
                    write_escaped(
                        &mut w,
                        header.iter().map(|f| row.get(f).unwrap_or_default()),
                    )?;
                }
                w.flush()?;
                drop(w);
                self.header = Some(header);
            }
            Format::Csv => {}
        }
        if !fresh.is_empty() {
            self.file
                .write_all(&out)
                .and_then(|()| self.file.sync_data())
                .with_context(|| format!("appending to {}", self.path.display()))?;
            self.len += out.len() as u64;
            let keys: Vec<String> = fresh.iter().map(|(k, _)| k.clone()).collect();
            append_keys(&mut self.key_log, &keys)
                .with_context(|| format!("appending to {}", self.keys_path.display()))?;
            self.rows += keys.len() as u64;
            self.keys.extend(keys);
        }
        self.checkpoint = Some(cp);
        self.save_state()?;
        Ok(fresh.len() as u64)
    }

    /// Replaces the small state file atomically.
    fn save_state(&self) -> anyhow::Result<()> {
        let state = FileState {
            version: STATE_VERSION,
            source: self.source.clone(),
            report: self.report.clone(),
            checkpoint: self.checkpoint.map(format_wall_clock),
            data_len: self.len,
            rows: self.rows,
            keys: None,
        };
        replace_file(&self.state_path, &serde_json::to_vec(&state)?)
    }
}

/// `row` as a CSV file holds it: the header's fields in the header's order, a missing one
/// empty, fields outside the header left out. Read back from the file it is exactly this.
fn as_csv_row(header: &[String], row: &Row) -> Row {
    Row::from_pairs(
        header
            .iter()
            .map(|f| (f.as_str(), row.get(f).unwrap_or_default())),
    )
}

/// Opens the key log for appending, cutting a torn last line; returns it and its keys.
fn open_key_log(path: &Path) -> anyhow::Result<(std::fs::File, Vec<String>)> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let total = f.metadata()?.len();
    let complete =
        complete_len(&mut f, false).with_context(|| format!("reading {}", path.display()))?;
    if complete < total {
        f.set_len(complete)?;
        f.sync_all()?;
    }
    f.seek(std::io::SeekFrom::Start(0))?;
    let mut keys = Vec::new();
    for line in std::io::BufReader::new((&f).take(complete)).split(b'\n') {
        // A line that is not UTF-8 matches no key, so the log is rebuilt.
        keys.push(unescape_line(&String::from_utf8_lossy(&line?)).into_owned());
    }
    Ok((f, keys))
}

/// Appends one escaped key per line and fsyncs.
fn append_keys(log: &mut std::fs::File, keys: &[String]) -> std::io::Result<()> {
    let mut text = Vec::new();
    for k in keys {
        text.extend_from_slice(escape_line(k).as_bytes());
        text.push(b'\n');
    }
    log.write_all(&text)?;
    log.sync_data()
}

/// Rewrites a CSV file of the first format (RFC 4180 records, which span lines when a value
/// holds a newline) as one line per record, and returns the state that now describes it.
/// Crash-safe: the marker `PATH.converting` is created (so `PATH.v1` is known to be
/// voxtrail's), the old file renamed to `PATH.v1`, the new one written and fsynced, the
/// state replaced (version 2), and only then `PATH.v1` and the marker removed; a run that
/// finds the marker and `PATH.v1` with a first-format state converts again from it.
fn convert_first_format_csv(
    path: &Path,
    backup: &Path,
    marker: &Path,
    state_path: &Path,
    state: Option<FileState>,
    plan: &Plan,
) -> anyhow::Result<Option<FileState>> {
    let done = |backup: &Path| -> anyhow::Result<()> {
        std::fs::remove_file(backup).with_context(|| format!("removing {}", backup.display()))?;
        std::fs::remove_file(marker).with_context(|| format!("removing {}", marker.display()))?;
        sync_dir(path);
        Ok(())
    };
    if state.as_ref().is_some_and(|s| s.version >= STATE_VERSION) {
        // Converted and recorded; only the removal of the old file was cut short.
        done(backup)?;
        return Ok(state);
    }
    if !backup.exists() {
        std::fs::File::create(marker)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("creating {}", marker.display()))?;
        std::fs::rename(path, backup)
            .with_context(|| format!("renaming {} to {}", path.display(), backup.display()))?;
        sync_dir(path);
    }
    eprintln!(
        "{}: converting a CSV file of an earlier voxtrail (records spanning lines) to one record per line; the original is kept as {} until done",
        path.display(),
        backup.display()
    );
    let mut src =
        std::fs::File::open(backup).with_context(|| format!("opening {}", backup.display()))?;
    let complete = complete_len(&mut src, true)?;
    src.seek(std::io::SeekFrom::Start(0))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(std::io::BufReader::new(src.take(complete)));
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut header: Option<Vec<String>> = None;
    let mut keys = HashSet::new();
    let mut rows = 0u64;
    for rec in reader.records() {
        let rec = rec?;
        let mut w = csv_line_writer(&mut out);
        write_escaped(&mut w, rec.iter())?;
        w.flush()?;
        drop(w);
        match &header {
            None => header = Some(rec.iter().map(str::to_owned).collect()),
            Some(h) => {
                let row = Row::from_pairs(h.iter().map(String::as_str).zip(rec.iter()));
                keys.insert(plan.key.key(&row)?);
                rows += 1;
            }
        }
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    sync_dir(path);
    let state = state.map(|s| {
        // The first format's check (the state names only rows the file holds) is made, and
        // reported, by the caller, with the old keys still in memory; the state saved here
        // keeps its verdict should the run stop before that.
        let v1 = s.keys.unwrap_or_default();
        let lost = if v1_keys_comparable(Format::Csv, &plan.key) {
            v1.iter().any(|k| !keys.contains(k))
        } else {
            rows < v1.len() as u64
        };
        FileState {
            version: STATE_VERSION,
            checkpoint: if lost { None } else { s.checkpoint },
            // Bytes of the converted prefix are unknown; the row count is the check.
            data_len: 0,
            rows: v1.len() as u64,
            keys: Some(v1),
            ..s
        }
    });
    if let Some(s) = &state {
        // `keys` is never serialised: the saved state is the small one.
        replace_file(state_path, &serde_json::to_vec(s)?)?;
    }
    done(backup)?;
    Ok(state)
}

/// Whether the keys a first-format state holds can be compared with keys computed from the
/// data file. Not for hash keys of a CSV copy: the first format hashed rows as the server
/// sent them, the file holds them in the header's order (missing fields empty, extra fields
/// left out); there only the row count is compared.
fn v1_keys_comparable(format: Format, rule: &KeyRule) -> bool {
    !(format == Format::Csv && matches!(rule, KeyRule::Hash))
}

/// A CSV writer that ends records with `\n` (values are escaped first, so one line each).
fn csv_line_writer<W: std::io::Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(out)
}

/// Writes one CSV record whose values are escaped with [`escape_line`].
fn write_escaped<'a, W: std::io::Write>(
    w: &mut csv::Writer<W>,
    fields: impl IntoIterator<Item = &'a str>,
) -> csv::Result<()> {
    w.write_record(fields.into_iter().map(|f| escape_line(f).into_owned()))
}

/// A value on one line: `\` → `\\`, LF → `\n`, CR → `\r`. CSV quoting (commas, quotes)
/// comes on top, so a CSV record never spans lines.
fn escape_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '\n', '\r']) {
        return s.into();
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o.into()
}

/// The inverse of [`escape_line`]. A backslash before any other character (never written)
/// is kept as it is.
fn unescape_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return s.into();
    }
    let mut o = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => o.push('\\'),
            Some('n') => o.push('\n'),
            Some('r') => o.push('\r'),
            Some(x) => {
                o.push('\\');
                o.push(x);
            }
            None => o.push('\\'),
        }
    }
    o.into()
}

/// Length of the data that ends with a complete record: up to the last newline, or (for the
/// first format's CSV, `quoted_newlines`) the last newline outside a quoted field.
fn complete_len(data: &mut impl std::io::Read, quoted_newlines: bool) -> std::io::Result<u64> {
    let mut in_quotes = false;
    let (mut end, mut at) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => return Ok(end),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for (i, &b) in buf[..n].iter().enumerate() {
            match b {
                b'"' if quoted_newlines => in_quotes = !in_quotes,
                b'\n' if !in_quotes => end = at + i as u64 + 1,
                _ => {}
            }
        }
        at += n as u64;
    }
}

/// Calls `f` with every row already in a data file, streaming; returns the CSV header.
fn for_each_row(
    data: impl std::io::BufRead,
    format: Format,
    mut f: impl FnMut(Row) -> anyhow::Result<()>,
) -> anyhow::Result<Option<Vec<String>>> {
    match format {
        Format::Ndjson => {
            for (i, line) in data.split(b'\n').enumerate() {
                let line = line?;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let row: Row = serde_json::from_slice(&line)
                    .with_context(|| format!("line {} is not a JSON object", i + 1))?;
                f(row)?;
            }
            Ok(None)
        }
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(data);
            let header: Vec<String> = r
                .headers()?
                .iter()
                .map(|h| unescape_line(h).into_owned())
                .collect();
            if header.is_empty() || header.iter().all(String::is_empty) {
                return Ok(None);
            }
            for rec in r.records() {
                let rec = rec?;
                f(Row::from_pairs(
                    header
                        .iter()
                        .map(String::as_str)
                        .zip(rec.iter().map(unescape_line)),
                ))?;
            }
            Ok(Some(header))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn torn_records_are_found() {
        let len = |d: &[u8], quoted| complete_len(&mut &d[..], quoted).unwrap();
        assert_eq!(len(b"{\"a\":1}\n{\"a\"", false), 8);
        assert_eq!(len(b"a,b\n1,\"x\\ny\"\n2,\"z", false), 13);
        assert_eq!(len(b"a,b\n1,\"x\ny\"\n2,\"z\n", true), 12);
        assert_eq!(len(b"", false), 0);
    }

    #[test]
    fn escaping_keeps_every_value_on_one_line_and_comes_back_exactly() {
        for v in [
            "",
            "plain",
            "a\nb",
            "a\r\nb",
            "\\",
            "C:\\new\\table",
            "literal \\n not a newline",
            "ends with \\",
            "\\\n\r\\r",
            "comma, \"quote\"",
            "línea 1\nlínea 2",
        ] {
            let e = escape_line(v);
            assert!(!e.contains(['\n', '\r']), "{v:?} → {e:?}");
            assert_eq!(unescape_line(&e), v, "{v:?} → {e:?}");
        }
        assert_eq!(escape_line("a\\b\nc\rd"), "a\\\\b\\nc\\rd");
        // Not written by us, read leniently.
        assert_eq!(unescape_line("a\\tb\\"), "a\\tb\\");
    }

    #[test]
    fn keys_by_field_or_by_hash() {
        let a = Row::from_pairs([("id", "1"), ("x", "a")]);
        let b = Row::from_pairs([("id", "1"), ("x", "b")]);
        let field = KeyRule::Field("id".into());
        assert_eq!(field.key(&a).unwrap(), "1");
        assert!(field.key(&Row::from_pairs([("x", "a")])).is_err());
        let h = KeyRule::Hash;
        assert_eq!(h.key(&a).unwrap(), h.key(&a.clone()).unwrap());
        assert_ne!(h.key(&a).unwrap(), h.key(&b).unwrap());
        assert_eq!(h.key(&a).unwrap().len(), 64);
    }

    #[test]
    fn destinations() {
        assert!(matches!(
            DestSpec::parse("sqlite://x.db").unwrap(),
            DestSpec::Sqlite(_)
        ));
        assert!(matches!(
            DestSpec::parse("ndjson:/tmp/x").unwrap(),
            DestSpec::Ndjson(_)
        ));
        assert!(matches!(
            DestSpec::parse("csv:x.csv").unwrap(),
            DestSpec::Csv(_)
        ));
        assert!(matches!(
            DestSpec::parse("postgres://localhost/x").unwrap(),
            DestSpec::Postgres(_)
        ));
        assert!(DestSpec::parse("ndjson:").is_err());
        assert!(DestSpec::parse("/tmp/x").is_err());
    }
}
