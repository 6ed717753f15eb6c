//! `voxtrail pull`: copies a report from a voxtrail server or the hosted API into a
//! destination (SQLite, PostgreSQL, NDJSON or CSV file), gap-free and without duplicates,
//! once or forever (`--follow`).
//!
//! `--mode auto` (the default) follows a voxtrail source's change feed and falls back to
//! windows, saying so once, when the source answers 404 for it (the hosted API, older
//! voxtrails); `--mode feed` and `--mode windows` force one.
//!
//! The collector itself (cycle loop, checkpoints, destinations, file repair and migration)
//! is the `voxtrail-collect` crate; this module owns only the command: its flags (checked
//! into a `voxtrail_collect::Config`), SIGINT/SIGTERM (they stop the run after the current
//! window), and what is printed on stderr (one line per event, a progress bar on a terminal,
//! the summary line).
//!
//! `--token-info` asks `token_info` once at start and prints the token's limit and today's
//! use. It is off by default because every `token_info` call counts as one use of the daily
//! limit; a run that hits the limit learns the same numbers anyway (the client asks
//! `token_info` once after a 403 TOKEN LIMIT EXCEEDED, when the server still answers it).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use voxtrail_client::{Client, parse_wall_clock};
use voxtrail_collect::{
    Collector, Config, DestSpec, Event, KeyRule, Mode, Stop, Target, chrono_dur, parse_duration,
};

use crate::progress::{Reporter, Unit};

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
    /// How to read the source: feed (a voxtrail server's change feed), windows, or auto (the
    /// feed when the source has it, else windows).
    #[arg(long, default_value = "auto", value_parser = ["auto", "feed", "windows"])]
    mode: String,
    /// Rows per change-feed page (1 to 10000).
    #[arg(long, default_value_t = voxtrail_client::MAX_FEED_LIMIT)]
    page: u32,
    /// Copy nothing: compare the per-hour digests of source (a voxtrail server) and
    /// destination over --since..--until and print each hour that differs (exit 1 if any).
    #[arg(long, conflicts_with = "follow")]
    verify: bool,
}

impl PullArgs {
    /// Checks every flag; every problem becomes one line.
    fn check(self) -> anyhow::Result<(Config, DestSpec, Client)> {
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
        let into = DestSpec::parse(&self.into).map_err(|e| anyhow!("--into {:?}: {e}", self.into));
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
        if !(1..=voxtrail_client::MAX_FEED_LIMIT).contains(&self.page) {
            note(Err(anyhow!(
                "--page {}: a feed page holds 1 to {} rows",
                self.page,
                voxtrail_client::MAX_FEED_LIMIT
            )));
        }
        let mode: Result<Mode, _> = self.mode.parse().map_err(|e| anyhow!("--mode {e}"));
        note(mode.as_ref().map(|_| ()).map_err(|e| anyhow!("{e}")));
        if matches!(mode, Ok(Mode::Feed)) && self.api != voxtrail_wire::CHAT_12 {
            note(Err(anyhow!(
                "--mode feed: the change feed carries chat_12 only, not {}",
                self.api
            )));
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
            None => KeyRule::default_for(&self.api),
        };
        let config = Config {
            target: Target {
                source: client.base_url().to_owned(),
                report: self.api,
                key,
            },
            since: since?,
            until: until?,
            follow: self.follow,
            every: every?,
            lookback: chrono_dur(lookback?),
            window: chrono_dur(window?),
            tz,
            token_info: self.token_info,
            mode: mode?,
            page: self.page,
        };
        Ok((config, into?, client))
    }
}

/// Runs `voxtrail pull`.
pub fn run(args: PullArgs) -> anyhow::Result<()> {
    let verifying = args.verify;
    let (config, into, client) = args.check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if verifying {
        return rt.block_on(verify(config, into, client));
    }
    rt.block_on(collect(config, into, client))
}

/// `--verify`: one line per differing hour on stdout, a summary on stderr; `Err` (exit 1)
/// when any hour differs.
async fn verify(config: Config, into: DestSpec, client: Client) -> anyhow::Result<()> {
    let until = config
        .until
        .unwrap_or_else(|| chrono::Utc::now().with_timezone(&config.tz).naive_local());
    let dest =
        voxtrail_collect::open(&into, &config.target, voxtrail_collect::no_progress()).await?;
    let diffs = voxtrail_collect::verify::verify(&client, &*dest, config.since, until).await?;
    let side = |s: &Option<voxtrail_collect::verify::HourSide>| match s {
        Some(s) => format!("{} rows {}", s.records, s.digest),
        None => "no rows".to_owned(),
    };
    for d in &diffs {
        println!(
            "{}: source {}, destination {}",
            d.hour,
            side(&d.source),
            side(&d.destination)
        );
    }
    if diffs.is_empty() {
        eprintln!("verify: every hour matches");
        Ok(())
    } else {
        bail!("verify: {} hours differ", diffs.len())
    }
}

async fn collect(config: Config, into: DestSpec, client: Client) -> anyhow::Result<()> {
    let bar = Reporter::new(Unit::Span, Some(1));
    let printer = Arc::new(Printer {
        bar: bar.clone(),
        follow: config.follow,
        from: std::sync::Mutex::new(None),
        rows: AtomicU64::new(0),
        started: std::time::Instant::now(),
    });
    let dest = voxtrail_collect::open(&into, &config.target, printer.clone())
        .await
        .inspect_err(|_| bar.clear())?;
    let stop = Stop::new();
    spawn_signal_watch(stop.clone(), bar.clone())?;
    let summary = Collector::new(config, client, dest)
        .progress(printer)
        .run(stop)
        .await;
    bar.finish();
    let state = if summary.error.is_none() {
        "done"
    } else {
        "stopped"
    };
    if summary.feed {
        eprintln!(
            "pull {state}: {} feed pages, {} rows read, {} new rows written, {} replaced, cursor {}",
            summary.pages,
            summary.rows,
            summary.written,
            summary.updated,
            summary.cursor.as_deref().unwrap_or("none")
        );
    } else {
        let cp = summary
            .checkpoint
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none".into());
        eprintln!(
            "pull {state}: {} windows, {} rows read, {} new rows written, checkpoint {cp}",
            summary.windows, summary.rows, summary.written
        );
    }
    summary.into_result()
}

/// Turns the collector's events into stderr lines (and the bar's progress on a terminal).
struct Printer {
    bar: Reporter,
    follow: bool,
    /// Start of the cycle under way: the bar counts seconds copied since it.
    from: std::sync::Mutex<Option<chrono::NaiveDateTime>>,
    rows: AtomicU64,
    started: std::time::Instant,
}

impl voxtrail_collect::Progress for Printer {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Notice(text) => self.bar.line(text),
            Event::TokenInfo(t) => self.bar.line(&format!(
                "token: limit {}, used today {} (all tokens of the operation today: {}), {} left",
                t.token_limit,
                t.token_use_today,
                t.all_token_today,
                t.available_consumption_options
            )),
            Event::TokenInfoFailed(e) => self.bar.line(&format!("token_info: {e}")),
            Event::CycleStarted { from, to } => {
                *self.from.lock().unwrap_or_else(|e| e.into_inner()) = Some(*from);
                let span = (*to - *from).num_seconds().max(0) as u64 + 1;
                self.bar.restart(span, 0);
            }
            Event::WindowCommitted {
                window,
                rows,
                outcome,
            } => {
                if *rows > 0 || !self.follow {
                    self.bar.line(&format!(
                        "window {window}: {rows} rows, {} new",
                        outcome.inserted
                    ));
                }
                let total = self.rows.fetch_add(*rows as u64, Ordering::Relaxed) + *rows as u64;
                if let Some(from) = *self.from.lock().unwrap_or_else(|e| e.into_inner()) {
                    let done = (window.end - from).num_seconds().max(0) as u64 + 1;
                    self.bar.set_position(done);
                }
                let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                self.bar
                    .set_message(format!("{total} rows ({:.0} rows/s)", total as f64 / secs));
            }
            Event::WindowDeferred { window, error } => self.bar.line(&format!(
                "window {window}: {error}; trying again next cycle"
            )),
            Event::FeedUnavailable { error } => {
                self.bar.line(&format!("{error}: pulling by windows"))
            }
            Event::FeedStarted { cursor } => self.bar.line(&match cursor {
                Some(c) => format!("following the change feed after cursor {c}"),
                None => "following the change feed from its beginning".to_owned(),
            }),
            Event::PageCommitted {
                rows,
                kept,
                cursor,
                outcome,
            } => {
                if *rows > 0 || !self.follow {
                    let skipped = match rows - kept {
                        0 => String::new(),
                        n => format!(" ({n} outside --since/--until)"),
                    };
                    self.bar.line(&format!(
                        "feed page to cursor {cursor}: {rows} rows{skipped}, {} new, {} replaced",
                        outcome.inserted, outcome.updated
                    ));
                }
                let total = self.rows.fetch_add(*rows as u64, Ordering::Relaxed) + *rows as u64;
                let secs = self.started.elapsed().as_secs_f64().max(1e-9);
                self.bar
                    .set_message(format!("{total} rows ({:.0} rows/s)", total as f64 / secs));
            }
            Event::PageDeferred { error } => self
                .bar
                .line(&format!("change feed: {error}; trying again next cycle")),
            _ => {}
        }
    }
}

/// SIGINT and SIGTERM stop the run: the current window finishes, its checkpoint is saved.
fn spawn_signal_watch(stop: Stop, bar: Reporter) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        bar.line("signal received: finishing the current window");
        stop.stop();
    });
    Ok(())
}
