//! Mirrors of an upstream `chat_12` API (docs/api.md, "Mirrors"): the `voxtrail mirror`
//! commands (`set`, `list`, `remove`, `run`), the fifth collector destination
//! ([`StoreDestination`]: the server's own store) and the supervisor that `voxtrail serve`
//! runs ([`spawn_supervisor`]).
//!
//! This module lives in the binary because it joins the collector (`voxtrail-collect`) and the
//! server's store (`voxtrail-server`): the server crate does not depend on the collector, and
//! the collector knows nothing of the server (ARCHITECTURE.md, "Invariants").
//!
//! In `serve`, the mirrors run on their own runtime whose threads have a lower scheduling
//! priority ([`MIRROR_NICE`]): a catch-up uses the cores reports leave idle.
//!
//! A mirror's run is the collector in follow mode (or one pass with `run --once`) writing
//! through [`StoreDestination`]: each window's rows are upserted by conn_id together with the
//! mirror's checkpoint (`Store::mirror_commit`). Errors are recorded on the mirror (shown by
//! `mirror list`): a refused token halts it until `mirror set`; a used-up daily limit waits
//! until the next midnight of the operation's time zone; anything else is tried again after
//! `--every`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use voxtrail_client::{Client, Row, parse_wall_clock};
use voxtrail_collect::{
    BoxFuture, Checkpoint, Collector, CommitOutcome, Config, Destination, Event, KeyRule, KeyedRow,
    Mode, Stop, Target, WindowDone, chrono_dur, parse_duration,
};
use voxtrail_server::Store;
use voxtrail_server::domain::{Interaction, Operation, OperationTz, WallClock};
use voxtrail_server::http::mirrors::MirrorView;
use voxtrail_server::store::{Mirror, MirrorDef};

/// How often the supervisor looks at the mirror definitions (the server re-reads them about
/// every second, `MirrorView`; a `mirror set` is picked up within both), and how often a lease
/// held by another replica is tried for.
const POLL: Duration = Duration::from_secs(5);
/// Time allowed for one upstream request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Subcommand)]
pub enum MirrorCmd {
    /// Define (or redefine) the mirror of an operation; the upstream token is read from
    /// --token-file or VOXTRAIL_UPSTREAM_TOKEN, never from a flag.
    Set(SetArgs),
    /// One line per mirror: operation, upstream URL, checkpoint, last success, rows inserted,
    /// rows updated, last error (or -). Never the token.
    List,
    /// Stop mirroring an operation (its rows stay).
    Remove {
        #[arg(long)]
        operation: String,
    },
    /// Run one mirror in the foreground: with --once, up to now, then exit; without, follow
    /// until SIGINT/SIGTERM.
    Run {
        #[arg(long)]
        operation: String,
        #[arg(long)]
        once: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The local operation (created when missing, in --timezone).
    #[arg(long)]
    operation: String,
    /// Hosted server code: mirrors https://wv{CODE}.wolkvox.com.
    #[arg(long, required_unless_present = "url", conflicts_with = "url")]
    server: Option<String>,
    /// Base URL of the upstream API (another voxtrail, e.g. http://10.0.0.5:8080).
    #[arg(long)]
    url: Option<String>,
    /// First wall-clock second to copy, YYYYmmddHHiiss (operation time).
    #[arg(long)]
    since: String,
    /// Pause between cycles (90s, 5m, 1h).
    #[arg(long, default_value = "5m")]
    every: String,
    /// Re-read this much before the checkpoint on every cycle, for late and changed rows.
    #[arg(long, default_value = "15m")]
    lookback: String,
    /// Longest window per request (at most 31 days; crowded windows are halved anyway).
    #[arg(long, default_value = "1d")]
    window: String,
    /// File holding the upstream token (its first line).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Time zone of the operation when it is created here.
    #[arg(long, default_value = OperationTz::DEFAULT)]
    timezone: String,
}

fn open(database: &str) -> anyhow::Result<Store> {
    Store::open(database).with_context(|| format!("opening database {database}"))
}

/// Runs a `voxtrail mirror` command.
pub fn command(database: &str, cmd: MirrorCmd) -> anyhow::Result<()> {
    match cmd {
        MirrorCmd::Set(args) => set(database, args),
        MirrorCmd::List => list(database),
        MirrorCmd::Remove { operation } => {
            let store = open(database)?;
            let op = store.operation(&operation)?;
            if !store.remove_mirror(op.id)? {
                bail!("operation {operation:?} is not a mirror");
            }
            eprintln!("mirror of {operation} removed (its rows stay)");
            Ok(())
        }
        MirrorCmd::Run { operation, once } => {
            let store = open(database)?;
            let op = store.operation(&operation)?;
            let mirror = store
                .mirror(op.id)?
                .ok_or_else(|| anyhow!("operation {operation:?} is not a mirror"))?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(run_foreground(store, op, mirror, once))
        }
    }
}

fn duration_secs(flag: &str, v: &str) -> anyhow::Result<u64> {
    Ok(parse_duration(v)
        .with_context(|| format!("--{flag}"))?
        .as_secs())
}

/// The upstream token: `--token-file` (first line) or `VOXTRAIL_UPSTREAM_TOKEN`.
fn upstream_token(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let raw = match file {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading --token-file {}", p.display()))?,
        None => std::env::var("VOXTRAIL_UPSTREAM_TOKEN").map_err(|_| {
            anyhow!("the upstream token is missing: give --token-file PATH or set VOXTRAIL_UPSTREAM_TOKEN")
        })?,
    };
    let token = raw.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        bail!("the upstream token is empty");
    }
    if token.chars().any(|c| c.is_control() || c.is_whitespace()) || token.len() > 4096 {
        bail!("the upstream token has characters a header cannot carry, or is too long");
    }
    Ok(token)
}

fn set(database: &str, a: SetArgs) -> anyhow::Result<()> {
    let url = match (&a.url, &a.server) {
        (Some(u), _) => u.trim_end_matches('/').to_owned(),
        (None, Some(code)) => Client::server_url(code),
        (None, None) => bail!("give --server CODE or --url URL"),
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--url {url:?}: expected http://… or https://…");
    }
    let since = parse_wall_clock(&a.since).map_err(|e| anyhow!("--since: {e}"))?;
    let every = duration_secs("every", &a.every)?;
    let lookback = duration_secs("lookback", &a.lookback)?;
    let window = duration_secs("window", &a.window)?;
    if every == 0 {
        bail!("--every must be at least 1s");
    }
    if window == 0 {
        bail!("--window must be at least 1s");
    }
    let token = upstream_token(a.token_file.as_ref())?;
    let store = open(database)?;
    let op = match store.operation(&a.operation) {
        Ok(op) => op,
        Err(voxtrail_server::store::StoreError::NoSuchOperation(_)) => {
            let tz = OperationTz::parse(&a.timezone).map_err(|e| anyhow!("--timezone: {e}"))?;
            store.create_operation(&a.operation, tz, 1)?
        }
        Err(e) => return Err(e.into()),
    };
    store.set_mirror(&MirrorDef {
        operation_id: op.id,
        url: url.clone(),
        token,
        since: WallClock::from_naive(since),
        every_secs: every,
        lookback_secs: lookback,
        window_secs: window,
    })?;
    eprintln!(
        "operation {} mirrors {url} from {}; every voxtrail serve on this database runs it",
        op.name, a.since
    );
    Ok(())
}

fn list(database: &str) -> anyhow::Result<()> {
    let store = open(database)?;
    for m in store.mirrors()? {
        println!("{}", list_line(&m));
    }
    Ok(())
}

/// One `mirror list` line (tab-separated, never the token).
fn list_line(m: &Mirror) -> String {
    let one_line = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    [
        m.operation.clone(),
        one_line(&m.def.url),
        m.checkpoint
            .map(|c| format!("{:014}", c.as_i64()))
            .unwrap_or_else(|| "-".into()),
        m.last_success.clone().unwrap_or_else(|| "-".into()),
        m.rows_inserted.to_string(),
        m.rows_updated.to_string(),
        m.last_error
            .as_deref()
            .map(one_line)
            .unwrap_or_else(|| "-".into()),
    ]
    .join("\t")
}

// ---------------------------------------------------------------------------------------------
// The fifth destination.

/// The server's own store as a collector destination: the rows of a mirrored operation,
/// upserted by conn_id, and the mirror's checkpoint, committed together.
pub struct StoreDestination {
    store: Store,
    operation: Operation,
    /// After each window's commit, pause this many times as long as the commit took (0: none).
    rest: f64,
}

/// How long a mirror run by `serve` rests after each window's commit, as a multiple of the
/// commit's own time: a catch-up writes at most about half the time, and the reports and
/// ingestions of other operations (which share the database, and on SQLite its write
/// connection and WAL) keep most of their pace. `mirror run` in the foreground does not rest.
pub const BACKGROUND_REST: f64 = 1.0;

impl StoreDestination {
    pub fn new(store: Store, operation: Operation) -> Self {
        Self {
            store,
            operation,
            rest: 0.0,
        }
    }

    /// Rests `factor` times a commit's duration after each commit (see [`BACKGROUND_REST`]).
    pub fn resting(mut self, factor: f64) -> Self {
        self.rest = factor.max(0.0);
        self
    }
}

/// An upstream row in the report's shape: all eleven fields, in wire order, strings, a
/// missing field `""`; its wall clock from `date` (display format, or RFC 3339 converted to
/// the operation's time zone).
pub fn normalise(row: &Row, tz: OperationTz) -> anyhow::Result<Interaction> {
    let f = |name: &str| row.get(name).unwrap_or("");
    let conn_id = f("conn_id");
    if conn_id.is_empty() {
        bail!("an upstream row has no conn_id: {}", row.to_json());
    }
    let date = voxtrail_server::ingest::parse_date(f("date"), tz).ok_or_else(|| {
        anyhow!(
            "upstream row {conn_id:?} has a date that is not a date: {:?}",
            f("date")
        )
    })?;
    let shaped = voxtrail_wire::Chat12RowRef {
        conn_id,
        agent_id: f("agent_id"),
        agent_name: f("agent_name"),
        channel: f("channel"),
        from: f("from"),
        to: f("to"),
        subject: f("subject"),
        body: f("body"),
        date: f("date"),
        cod_act: f("cod_act"),
        description_cod_act: f("description_cod_act"),
    };
    let mut json = Vec::with_capacity(256);
    shaped.write_json(&mut json);
    Ok(Interaction {
        conn_id: conn_id.to_owned(),
        date,
        json,
    })
}

impl Destination for StoreDestination {
    fn checkpoint(&self) -> BoxFuture<'_, anyhow::Result<Option<Checkpoint>>> {
        Box::pin(async move {
            let id = self.operation.id;
            let m = self.store.blocking(move |s| s.mirror(id)).await?;
            let m = m.ok_or_else(|| anyhow!("operation {} is no longer a mirror", id))?;
            Ok(m.checkpoint.map(|c| Checkpoint(c.to_naive())))
        })
    }

    fn commit<'a>(
        &'a mut self,
        window: &'a WindowDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        Box::pin(async move {
            let tz = self.operation.tz;
            let id = self.operation.id;
            let cp = WallClock::from_naive(window.checkpoint.0);
            let started = std::time::Instant::now();
            // Normalising is CPU work proportional to the window: on the blocking thread with
            // the write, off the async workers (which meanwhile read the next window).
            let out = self
                .store
                .blocking(move |s| {
                    let recs = match rows
                        .iter()
                        .map(|r| normalise(&r.row, tz))
                        .collect::<anyhow::Result<Vec<_>>>()
                    {
                        Ok(recs) => recs,
                        Err(e) => return Ok(Err(e)),
                    };
                    // Freeing a large window's parsed rows (a few allocations per field) is
                    // left to another thread: the write is what the next window waits for.
                    // (Should no thread be available, the refused closure frees them here.)
                    if rows.len() >= 1_000 {
                        let _ = std::thread::Builder::new().spawn(move || drop(rows));
                    } else {
                        drop(rows);
                    }
                    s.mirror_commit(id, &recs, cp).map(Ok)
                })
                .await??;
            if self.rest > 0.0 {
                tokio::time::sleep(started.elapsed().mul_f64(self.rest)).await;
            }
            Ok(CommitOutcome {
                inserted: out.inserted,
                updated: out.updated,
                unchanged: out.unchanged,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Running a mirror.

/// How a run of a mirror ended.
#[derive(Debug, PartialEq, Eq)]
enum RunEnd {
    /// Up to date (`--once`) or stopped as asked.
    Done,
    /// The upstream refused the token: halted until `mirror set`.
    Halted,
    /// The upstream's daily limit is used up: wait until the operation's midnight.
    LimitReached,
    /// Anything else (recorded): try again after `every`.
    Failed,
}

fn collector_config(m: &Mirror, op: &Operation, client: &Client, follow: bool) -> Config {
    Config {
        target: Target {
            source: client.base_url().to_owned(),
            report: voxtrail_wire::CHAT_12.to_owned(),
            key: KeyRule::default_for(voxtrail_wire::CHAT_12),
        },
        since: m.def.since.to_naive(),
        until: None,
        follow,
        every: Duration::from_secs(m.def.every_secs.max(1)),
        lookback: chrono_dur(Duration::from_secs(m.def.lookback_secs)),
        window: chrono_dur(Duration::from_secs(m.def.window_secs.max(1))),
        tz: op.tz.name().parse().unwrap_or(chrono_tz::UTC),
        token_info: false,
        // A mirror reads windows (SPEC §9), the hosted API has no feed.
        mode: Mode::Windows,
        page: voxtrail_client::MAX_FEED_LIMIT,
    }
}

fn client_for(m: &Mirror, op: &Operation) -> anyhow::Result<Client> {
    let mut b = Client::builder(m.def.url.clone(), m.def.token.clone())
        .timeout(REQUEST_TIMEOUT)
        .attempts(8)
        .backoff(Duration::from_millis(500), Duration::from_secs(60))
        .timezone(op.tz.name().parse().unwrap_or(chrono_tz::UTC));
    // Tests shorten the first retry delay; operators never need to.
    if let Some(ms) = std::env::var("VOXTRAIL_MIRROR_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        b = b.backoff(Duration::from_millis(ms), Duration::from_secs(60));
    }
    Ok(b.build()?)
}

/// Records an error on the mirror, off the async workers; a failure to record is logged.
async fn record_error(store: &Store, operation_id: i64, text: String, halt: bool) {
    if let Err(e) = store
        .blocking(move |s| s.mirror_error(operation_id, &text, halt))
        .await
    {
        tracing::warn!(operation_id, error = %e, "could not record a mirror error");
    }
}

/// One run of a mirror's collector: until up to date (`follow == false`), or until stopped.
/// `rest`: see [`StoreDestination::resting`] (`serve` passes [`BACKGROUND_REST`]).
async fn run_mirror(
    store: &Store,
    m: &Mirror,
    op: &Operation,
    follow: bool,
    rest: f64,
    stop: Stop,
) -> RunEnd {
    let client = match client_for(m, op) {
        Ok(c) => c,
        Err(e) => {
            record_error(store, op.id, format!("{e:#}"), true).await;
            return RunEnd::Halted;
        }
    };
    let config = collector_config(m, op, &client, follow);
    let deferred_store = store.clone();
    let op_id = op.id;
    let progress = Arc::new(move |e: &Event<'_>| {
        if let Event::WindowDeferred { window, error } = e {
            let text = format!("window {window}: {error}");
            tracing::warn!(operation_id = op_id, error = %text, "mirror window deferred");
            let s = deferred_store.clone();
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move { record_error(&s, op_id, text, false).await });
            }
        }
    });
    let dest = StoreDestination::new(store.clone(), op.clone()).resting(rest);
    let summary = Collector::new(config, client, dest)
        .progress(progress)
        .run(stop)
        .await;
    let Some(err) = summary.error else {
        return RunEnd::Done;
    };
    let text = format!("{err:#}");
    let end = match err.downcast_ref::<voxtrail_client::Error>() {
        Some(
            voxtrail_client::Error::InvalidToken | voxtrail_client::Error::Unauthorized { .. },
        ) => RunEnd::Halted,
        Some(voxtrail_client::Error::TokenLimitExceeded { .. }) => RunEnd::LimitReached,
        _ => RunEnd::Failed,
    };
    tracing::warn!(operation = %op.name, error = %text, "mirror run failed");
    record_error(store, op.id, text, end == RunEnd::Halted).await;
    end
}

/// Time until the next midnight of the operation's time zone.
fn until_midnight(tz: OperationTz) -> Duration {
    let now = chrono::Utc::now();
    let today = WallClock::now_in(tz).to_naive().date();
    let next = today
        .succ_opt()
        .unwrap_or(today)
        .and_time(chrono::NaiveTime::MIN);
    let at = tz.instant_of(WallClock::from_naive(next));
    (at - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(1)
}

/// `mirror run`: in the foreground, one pass (`once`) or following until SIGINT/SIGTERM.
async fn run_foreground(store: Store, op: Operation, m: Mirror, once: bool) -> anyhow::Result<()> {
    if m.halted && !once {
        bail!(
            "the mirror of {} is halted ({}); run mirror set again",
            op.name,
            m.last_error.as_deref().unwrap_or("token refused")
        );
    }
    let lease = store
        .mirror_lease(op.id)
        .await?
        .ok_or_else(|| anyhow!("another voxtrail is running the mirror of {} now", op.name))?;
    let stop = Stop::new();
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            stop.stop();
        });
    }
    let end = run_mirror(&store, &m, &op, !once, 0.0, stop).await;
    drop(lease);
    let id = op.id;
    let after = store.blocking(move |s| s.mirror(id)).await?;
    if let Some(a) = &after {
        eprintln!("{}", list_line(a));
    }
    match end {
        RunEnd::Done => Ok(()),
        _ => bail!(
            "mirror of {}: {}",
            op.name,
            after
                .and_then(|a| a.last_error)
                .unwrap_or_else(|| "failed".into())
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The supervisor inside `voxtrail serve`.

struct Running {
    generation: i64,
    stop: Stop,
    task: tokio::task::JoinHandle<()>,
}

/// Stops every mirror run of a supervisor.
pub struct Supervisor {
    stop: Stop,
    task: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Runtime,
}

impl Supervisor {
    /// Stops the supervisor and its runs (a window being committed finishes or rolls back).
    pub async fn shutdown(self) {
        self.stop.stop();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        // Not waited for: a commit still running rolls back with the process.
        self.runtime.shutdown_background();
    }
}

/// The nice value of the mirrors' threads in `serve` (Linux): the lowest priority. When
/// reports and a catch-up want the same cores, the scheduler gives a catch-up thread a weight of
/// 15 against a report thread's 1024, so polls keep their pace and the mirror takes the idle
/// time (bench/mirror.sh: with nice 10 polls lost more, with 0 far more). The price: a window's
/// commit holds the SQLite write connection at that priority, so on cores saturated by reports
/// an ingestion into another operation can wait for it longer. Lowering a thread's priority
/// needs no privilege.
pub const MIRROR_NICE: i32 = 19;

/// Name of the mirrors' threads in `serve` (visible in `top -H`, `/proc/PID/task/*/comm`).
pub const MIRROR_THREAD: &str = "voxtrail-mirror";

/// Lowers the calling thread's scheduling priority to [`MIRROR_NICE`] (Linux: the nice value
/// is per thread); elsewhere nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(me), MIRROR_NICE) {
            tracing::debug!(error = %e, "could not lower the mirror thread's priority");
        }
    }
}

/// The mirrors' own runtime in `serve`: one worker (HTTP to the upstreams, parsing answers)
/// and blocking threads for the commits, all at [`MIRROR_NICE`], so a catch-up never takes
/// the report server's workers nor its share of the cores.
fn mirror_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(8)
        .thread_name(MIRROR_THREAD)
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
}

/// Starts the supervisor of `voxtrail serve` on the mirrors' own runtime
/// ([`mirror_runtime`]): every [`POLL`] it looks at the mirror definitions the server last
/// read (`view`), starts a run for each new one (once it holds the mirror's lease), restarts
/// those `mirror set` changed, and stops the removed and halted ones. It makes no database
/// read of its own.
pub fn spawn_supervisor(store: Store, view: Arc<MirrorView>) -> anyhow::Result<Supervisor> {
    let runtime = mirror_runtime().context("starting the mirrors' runtime")?;
    let stop = Stop::new();
    let task = runtime.spawn(supervise(store, view, stop.clone()));
    Ok(Supervisor {
        stop,
        task,
        runtime,
    })
}

async fn supervise(store: Store, view: Arc<MirrorView>, stop: Stop) {
    let mut running: HashMap<i64, Running> = HashMap::new();
    loop {
        // `None`: not read yet (the server reads them within a second of starting).
        if let Some(mirrors) = view.mirrors() {
            let wanted: HashMap<i64, &Mirror> = mirrors
                .iter()
                .filter(|m| !m.halted)
                .map(|m| (m.def.operation_id, m))
                .collect();
            running.retain(|id, r| {
                let keep = wanted.get(id).is_some_and(|m| m.generation == r.generation)
                    && !r.task.is_finished();
                if !keep {
                    r.stop.stop();
                }
                keep
            });
            for (id, m) in wanted {
                if running.contains_key(&id) {
                    continue;
                }
                let run_stop = Stop::new();
                let task = tokio::spawn(run_supervised(
                    store.clone(),
                    (*m).clone(),
                    run_stop.clone(),
                ));
                running.insert(
                    id,
                    Running {
                        generation: m.generation,
                        stop: run_stop,
                        task,
                    },
                );
            }
        }
        let wait = if view.mirrors().is_some() {
            POLL
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.stopped() => break,
        }
    }
    for r in running.values() {
        r.stop.stop();
    }
    for (_, r) in running {
        let _ = r.task.await;
    }
}

/// Sleeps `d`, or less when `stop` fires; `true` when stopped.
async fn pause(d: Duration, stop: &Stop) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => stop.is_stopped(),
        _ = stop.stopped() => true,
    }
}

/// One mirror inside `serve`: take its lease (tried every [`POLL`]), then run it in follow
/// mode; errors wait (`every`, or the operation's midnight) and run again; a refused token
/// ends the task (the supervisor starts a new one after `mirror set`). A lost lease stops the
/// run at once and the lease is sought again.
async fn run_supervised(store: Store, m: Mirror, stop: Stop) {
    let id = m.def.operation_id;
    let op = {
        let name = m.operation.clone();
        match store.blocking(move |s| s.operation(&name)).await {
            Ok(op) => op,
            Err(e) => {
                tracing::warn!(operation = %m.operation, error = %e, "mirror: no such operation");
                return;
            }
        }
    };
    loop {
        let lease = match store.mirror_lease(id).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                if pause(POLL, &stop).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(operation = %op.name, error = %e, "mirror lease");
                if pause(POLL, &stop).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(operation = %op.name, "mirror running");
        loop {
            let run_stop = Stop::new();
            let watch = {
                let (stop, run_stop) = (stop.clone(), run_stop.clone());
                let lost = async {
                    loop {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        if lease.is_lost() {
                            break;
                        }
                    }
                };
                async move {
                    tokio::select! {
                        _ = stop.stopped() => {}
                        _ = lost => tracing::warn!("mirror lease lost; stopping the run"),
                    }
                    run_stop.stop();
                }
            };
            let end = tokio::select! {
                end = run_mirror(&store, &m, &op, true, BACKGROUND_REST, run_stop.clone()) => end,
                _ = watch => {
                    // The run finishes its window; a lost lease must not keep writing.
                    RunEnd::Done
                }
            };
            if stop.is_stopped() {
                return;
            }
            if lease.is_lost() {
                break;
            }
            let wait = match end {
                RunEnd::Halted => return,
                RunEnd::LimitReached => until_midnight(op.tz),
                RunEnd::Done | RunEnd::Failed => Duration::from_secs(m.def.every_secs.max(1)),
            };
            if pause(wait, &stop).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_normalised_to_the_report_shape() {
        let tz = OperationTz::parse("America/Bogota").unwrap();
        let row = Row::from_pairs([
            ("date", "2026-10-01 08:00:00"),
            ("conn_id", "7"),
            ("extra", "ignored"),
            ("body", "hé \"q\""),
        ]);
        let r = normalise(&row, tz).unwrap();
        assert_eq!(r.conn_id, "7");
        assert_eq!(r.date.as_i64(), 20261001080000);
        assert_eq!(
            String::from_utf8(r.json).unwrap(),
            r#"{"conn_id":"7","agent_id":"","agent_name":"","channel":"","from":"","to":"","subject":"","body":"hé \"q\"","date":"2026-10-01 08:00:00","cod_act":"","description_cod_act":""}"#
        );
    }

    #[test]
    fn hostile_rows_are_refused() {
        let tz = OperationTz::parse("America/Bogota").unwrap();
        let no_id = Row::from_pairs([("date", "2026-10-01 08:00:00")]);
        assert!(normalise(&no_id, tz).is_err());
        let bad_date = Row::from_pairs([("conn_id", "1"), ("date", "yesterday")]);
        assert!(
            normalise(&bad_date, tz)
                .unwrap_err()
                .to_string()
                .contains("yesterday")
        );
    }

    #[test]
    fn midnight_is_within_a_day() {
        let tz = OperationTz::parse("Asia/Tokyo").unwrap();
        let d = until_midnight(tz);
        assert!(d > Duration::ZERO && d <= Duration::from_secs(86_401));
    }

    #[test]
    fn list_lines_never_carry_the_token_nor_break_lines() {
        let m = Mirror {
            def: MirrorDef {
                operation_id: 1,
                url: "http://up".into(),
                token: "SECRET".into(),
                since: WallClock::from_i64(20260101000000).unwrap(),
                every_secs: 300,
                lookback_secs: 900,
                window_secs: 86400,
            },
            operation: "acme".into(),
            checkpoint: WallClock::from_i64(20260102000000),
            last_success: Some("2026-01-02T05:00:00Z".into()),
            rows_inserted: 3,
            rows_updated: 1,
            errors: 1,
            last_error: Some("bad\nthing".into()),
            halted: false,
            generation: 1,
        };
        let line = list_line(&m);
        assert_eq!(
            line,
            "acme\thttp://up\t20260102000000\t2026-01-02T05:00:00Z\t3\t1\tbad thing"
        );
        assert!(!line.contains("SECRET"));
    }
}
