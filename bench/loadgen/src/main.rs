//! `loadgen`: a closed-loop load generator for the chat_12 report (bench/polls.sh).
//!
//! N keep-alive HTTP/1.1 connections each send one request after another for a fixed time.
//! Every request asks a random operation for a random window of `--window-secs` inside the
//! seeded range, reads the whole body, and records its latency. Tokens are handed out so that
//! no token is used by more than `--per-token` requests at once (the server allows 2).
//! Only loopback addresses are accepted; the run stops by itself after warm-up + duration
//! (requests still running then get a grace period, then are abandoned).
//!
//! With `--pg-url`, the same windows are asked of PostgreSQL directly instead (the report's own
//! row query, binary results, one connection per "connection"): the database's ceiling for the
//! same work, as a baseline for voxtrail's PostgreSQL backend (bench/pg.sh). `--addr` is then
//! ignored and the operations of the tokens file are looked up by name.
//!
//! With `--windows K` the windows are K fixed ones (`--window-secs` apart from `--from`) instead
//! of any offset; with `--if-none-match` too, each connection remembers the `ETag` of every
//! (operation, window) it was answered and sends it back as `If-None-Match`, so after the first
//! round the load is conditional re-polls (`304`, counted in `not_modified`; bench/integrators.sh).
//!
//! Prints a human summary on stderr and one JSON object on stdout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use chrono::NaiveDateTime;
use clap::Parser;
use http_body::Body as _;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::net::TcpStream;
use tokio_stream::Stream as _;

const TS_FORMAT: &str = "%Y%m%d%H%M%S";
/// A request that takes longer than this counts as an error (and its connection is replaced).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long requests still running at the end may take before the run is cut short.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Closed-loop load generator for the voxtrail chat_12 report"
)]
struct Args {
    /// Server address; must be a loopback address (127.0.0.1:PORT).
    #[arg(long)]
    addr: SocketAddr,
    /// File with one `OPERATION TOKEN` pair per line.
    #[arg(long)]
    tokens: PathBuf,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts (not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Start of the seeded range, YYYYmmddHHiiss.
    #[arg(long)]
    from: String,
    /// End of the seeded range, YYYYmmddHHiiss.
    #[arg(long)]
    to: String,
    /// Window length in seconds; bounds are inclusive, so date_end = date_ini + window - 1 s.
    #[arg(long, default_value_t = 300)]
    window_secs: i64,
    /// Requests in flight per token at most (the server allows 2 per token).
    #[arg(long, default_value_t = 1)]
    per_token: u32,
    /// Worker threads of the load generator's own runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Random seed for operations and windows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Request path.
    #[arg(long, default_value = "/api/v2/reports_manager.php")]
    path: String,
    /// Label echoed in the output.
    #[arg(long, default_value = "")]
    label: String,
    /// Query this PostgreSQL database directly instead of the HTTP server (a 127.0.0.1 URL).
    #[arg(long)]
    pg_url: Option<String>,
    /// With --pg-url: also run the server's limit statements around each read (take a slot and
    /// count a use in the same statement as the rows, then unlock), on junk token ids
    /// 1,000,000+ of day 20990101 — what the cross-replica limits cost PostgreSQL itself.
    #[arg(long, requires = "pg_url")]
    pg_limits: bool,
    /// Ask only this many fixed windows (`--window-secs` apart from `--from`); 0 = any offset.
    #[arg(long, default_value_t = 0)]
    windows: i64,
    /// Send the ETag last answered for the same operation and window as `If-None-Match`
    /// (a `304` then counts as an answer, in `not_modified`). HTTP only.
    #[arg(long, conflicts_with = "pg_url")]
    if_none_match: bool,
}

struct Token {
    header: HeaderValue,
    /// The operation's name, then (with `--pg-url`) its id.
    operation: String,
    operation_id: std::sync::atomic::AtomicI64,
    /// Position in the tokens file: the advisory-lock key of --pg-limits.
    index: i64,
    in_use: AtomicU32,
}

struct Pool {
    ops: Vec<Vec<Token>>,
    per_token: u32,
}

impl Pool {
    fn load(path: &PathBuf, per_token: u32) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut by_op: BTreeMap<String, Vec<Token>> = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(op), Some(tok), None) = (parts.next(), parts.next(), parts.next()) else {
                bail!("{}:{}: expected `OPERATION TOKEN`", path.display(), n + 1);
            };
            by_op.entry(op.to_owned()).or_default().push(Token {
                header: HeaderValue::from_str(tok).context("token is not a valid header value")?,
                operation: op.to_owned(),
                operation_id: std::sync::atomic::AtomicI64::new(0),
                index: n as i64,
                in_use: AtomicU32::new(0),
            });
        }
        ensure!(!by_op.is_empty(), "{} holds no tokens", path.display());
        Ok(Self {
            ops: by_op.into_values().collect(),
            per_token: per_token.max(1),
        })
    }

    /// A token of a random operation with a free slot; `None` when every token looked at is busy.
    fn try_acquire(&self, rng: &mut SmallRng) -> Option<&Token> {
        for _ in 0..self.ops.len() * 2 {
            let op = &self.ops[rng.random_range(0..self.ops.len())];
            let start = rng.random_range(0..op.len());
            for i in 0..op.len() {
                let t = &op[(start + i) % op.len()];
                let took = t
                    .in_use
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                        (u < self.per_token).then_some(u + 1)
                    })
                    .is_ok();
                if took {
                    return Some(t);
                }
            }
        }
        None
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    bytes: u64,
    answers: u64,
    not_modified: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }
    fn merge(&mut self, o: Tally) {
        self.latencies_us.extend(o.latencies_us);
        self.bytes += o.bytes;
        self.answers += o.answers;
        self.not_modified += o.not_modified;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

struct Shared {
    args: Args,
    pool: Pool,
    from: NaiveDateTime,
    span_secs: i64,
    measure_from: Instant,
    measure_to: Instant,
    stop: AtomicBool,
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_empty::Empty>;

/// An empty request body, so no extra body crate is needed.
mod http_body_empty {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body::{Body, Frame};

    #[derive(Debug, Clone, Copy, Default)]
    pub struct Empty;

    impl Body for Empty {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(None)
        }
        fn is_end_stream(&self) -> bool {
            true
        }
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A request's answer: body bytes read, whether it was a `304`, and its `ETag`.
struct Reply {
    bytes: u64,
    not_modified: bool,
    etag: Option<HeaderValue>,
}

/// Outcome of one request: the reply, or an error kind.
async fn one_request(
    sender: &mut Sender,
    host: &HeaderValue,
    uri: &str,
    token: &HeaderValue,
    if_none_match: Option<&HeaderValue>,
) -> Result<Reply, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let mut req = Request::get(uri)
        .header(HOST, host.clone())
        .header("wolkvox-token", token.clone());
    if let Some(tag) = if_none_match {
        req = req.header(hyper::header::IF_NONE_MATCH, tag.clone());
    }
    let req = req
        .body(http_body_empty::Empty)
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = resp.status();
    let etag = resp.headers().get(hyper::header::ETAG).cloned();
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    let mut first: Option<Bytes> = None;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            bytes += data.len() as u64;
            if first.is_none() {
                first = Some(data);
            }
        }
    }
    if status == StatusCode::NOT_MODIFIED && if_none_match.is_some() && bytes == 0 {
        return Ok(Reply {
            bytes,
            not_modified: true,
            etag,
        });
    }
    if status != StatusCode::OK {
        return Err(format!("http {}", status.as_u16()));
    }
    if !first
        .as_deref()
        .unwrap_or_default()
        .starts_with(br#"{"code":"200""#)
    {
        return Err("unexpected body".to_owned());
    }
    Ok(Reply {
        bytes,
        not_modified: false,
        etag,
    })
}

/// What one "connection" talks to: the HTTP server, or PostgreSQL directly.
enum Target {
    Http(Option<Sender>),
    Pg(Option<PgTarget>),
}

/// The report's own row query (crates/server/src/store/postgres/report.rs).
const PG_ROWS: &str = "SELECT NULL::int4, NULL::int8, json FROM interactions
 WHERE operation_id = $1 AND local_ts BETWEEN $2 AND $3 ORDER BY local_ts, seq";

/// The server's admission-and-rows statement (ADMIT_AND_FIRST_ROWS in
/// crates/server/src/store/postgres/admission.rs) with a junk token `$4`: slot, use, then the rows.
const PG_LIMITED_ROWS: &str = "
WITH slot AS (
    SELECT k FROM generate_series(0, 1) AS k
     WHERE pg_try_advisory_lock($4::int4, k) LIMIT 1
), counted AS (
    INSERT INTO token_usage(token_id, day, used) SELECT 1000000 + $4::int8, 20990101, 1 FROM slot
    ON CONFLICT (token_id, day) DO UPDATE SET used = token_usage.used + 1
    WHERE token_usage.used < 1000000000000
    RETURNING used
)
SELECT (SELECT k FROM slot), (SELECT used FROM counted), NULL::bytea
UNION ALL
(SELECT NULL, NULL, json FROM interactions
  WHERE operation_id = $1 AND local_ts BETWEEN $2 AND $3 AND EXISTS (SELECT 1 FROM counted)
  ORDER BY local_ts, seq
  LIMIT 257)";

/// A direct PostgreSQL connection with its prepared statements.
struct PgTarget {
    client: tokio_postgres::Client,
    rows: tokio_postgres::Statement,
    unlock: Option<tokio_postgres::Statement>,
}

async fn pg_connect(url: &str, limits: bool) -> anyhow::Result<PgTarget> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if limits {
        // As the server's lock connections run.
        config.options("-c synchronous_commit=off -c plan_cache_mode=force_generic_plan");
    }
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let rows = client
        .prepare(if limits { PG_LIMITED_ROWS } else { PG_ROWS })
        .await?;
    let unlock = match limits {
        true => Some(
            client
                .prepare("SELECT pg_advisory_unlock($1::int4, $2)")
                .await?,
        ),
        false => None,
    };
    Ok(PgTarget {
        client,
        rows,
        unlock,
    })
}

/// Bytes of the rows of one window, straight from PostgreSQL, streamed as they arrive (as the
/// server reads them); with limits, the slot is freed afterwards as the server frees it.
async fn pg_request(pg: &PgTarget, op: i64, ini: i64, end: i64, token: i64) -> Result<u64, String> {
    let key = token as i32;
    let rows = match &pg.unlock {
        Some(_) => {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&op, &ini, &end, &key];
            pg.client.query_raw(&pg.rows, params).await
        }
        None => {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&op, &ini, &end];
            pg.client.query_raw(&pg.rows, params).await
        }
    }
    .map_err(|e| format!("transport: {e}"))?;
    let mut rows = std::pin::pin!(rows);
    let mut bytes = 0u64;
    let mut slot: Option<i32> = None;
    while let Some(r) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
        let r = r.map_err(|e| format!("body: {e}"))?;
        match r
            .try_get::<_, Option<&[u8]>>(2)
            .map_err(|e| format!("body: {e}"))?
        {
            Some(json) => bytes += json.len() as u64 + 1,
            None => slot = r.try_get(0).map_err(|e| format!("body: {e}"))?,
        }
    }
    if let Some(unlock) = &pg.unlock {
        let k = slot.ok_or("no free slot (two per token)")?;
        pg.client
            .query_one(unlock, &[&key, &k])
            .await
            .map_err(|e| format!("transport: {e}"))?;
    }
    Ok(bytes)
}

async fn connection(sh: Arc<Shared>, id: usize) -> Tally {
    let mut target = match &sh.args.pg_url {
        Some(_) => Target::Pg(None),
        None => Target::Http(None),
    };
    let mut rng =
        SmallRng::seed_from_u64(sh.args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ id as u64);
    let host =
        HeaderValue::from_str(&sh.args.addr.to_string()).expect("an address is a valid header");
    let mut tally = Tally::default();
    // With --if-none-match: the last ETag answered per (operation, window offset).
    let mut tags: std::collections::HashMap<(String, i64), HeaderValue> =
        std::collections::HashMap::new();
    while !sh.stop.load(Ordering::Relaxed) {
        let connected = match &mut target {
            Target::Http(s @ None) => connect(sh.args.addr).await.map(|c| {
                *s = Some(c);
            }),
            Target::Pg(s @ None) => {
                pg_connect(
                    sh.args.pg_url.as_deref().unwrap_or_default(),
                    sh.args.pg_limits,
                )
                .await
            }
            .map(|c| {
                *s = Some(c);
            }),
            _ => Ok(()),
        };
        if let Err(e) = connected {
            tally.error(format!("connect: {e}"));
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let Some(token) = sh.pool.try_acquire(&mut rng) else {
            tokio::task::yield_now().await;
            continue;
        };
        let last_off = (sh.span_secs - sh.args.window_secs).max(0);
        let off = match sh.args.windows {
            k if k > 0 => (rng.random_range(0..k) * sh.args.window_secs).min(last_off),
            _ => rng.random_range(0..=last_off),
        };
        let key = (token.operation.clone(), off);
        let ini = sh.from + chrono::Duration::seconds(off);
        let end = ini + chrono::Duration::seconds(sh.args.window_secs - 1);
        let started = Instant::now();
        let request = async {
            match &mut target {
                Target::Http(Some(s)) => {
                    let uri = format!(
                        "{}?api=chat_12&date_ini={}&date_end={}",
                        sh.args.path,
                        ini.format(TS_FORMAT),
                        end.format(TS_FORMAT)
                    );
                    let inm = match sh.args.if_none_match {
                        true => tags.get(&key),
                        false => None,
                    };
                    let reply = one_request(s, &host, &uri, &token.header, inm).await?;
                    Ok((reply.bytes, reply.not_modified, reply.etag))
                }
                Target::Pg(Some(pg)) => {
                    let ts = |t: NaiveDateTime| {
                        t.format(TS_FORMAT)
                            .to_string()
                            .parse::<i64>()
                            .unwrap_or_default()
                    };
                    let op = token.operation_id.load(Ordering::Relaxed);
                    pg_request(pg, op, ts(ini), ts(end), token.index)
                        .await
                        .map(|b| (b, false, None))
                }
                _ => Err("transport: not connected".to_owned()),
            }
        };
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, request).await;
        let done = Instant::now();
        token.in_use.fetch_sub(1, Ordering::AcqRel);
        let counted = done >= sh.measure_from && done <= sh.measure_to;
        match outcome {
            Ok(Ok((bytes, not_modified, etag))) => {
                if let Some(tag) = etag.filter(|_| sh.args.if_none_match) {
                    tags.insert(key, tag);
                }
                if counted {
                    tally.answers += 1;
                    tally.not_modified += u64::from(not_modified);
                    tally.bytes += bytes;
                    let us = done.duration_since(started).as_micros();
                    tally.latencies_us.push(us.min(u128::from(u32::MAX)) as u32);
                }
            }
            Ok(Err(kind)) => {
                if kind.starts_with("transport") || kind.starts_with("body") {
                    target.disconnect();
                }
                if counted {
                    tally.error(kind);
                }
            }
            Err(_) => {
                target.disconnect();
                if counted {
                    tally.error("timeout");
                }
            }
        }
    }
    tally
}

impl Target {
    fn disconnect(&mut self) {
        match self {
            Self::Http(s) => *s = None,
            Self::Pg(s) => *s = None,
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn parse_ts(s: &str) -> anyhow::Result<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, TS_FORMAT)
        .with_context(|| format!("{s:?} is not YYYYmmddHHiiss"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.addr.ip().is_loopback(),
        "loadgen only targets loopback addresses, not {}",
        args.addr
    );
    ensure!(args.connections >= 1, "--connections must be at least 1");
    ensure!(
        args.duration > 0.0 && args.duration <= 600.0,
        "--duration is in (0, 600] seconds"
    );
    ensure!(
        (0.0..=60.0).contains(&args.warmup),
        "--warmup is in [0, 60] seconds"
    );
    ensure!(args.window_secs >= 1, "--window-secs must be at least 1");
    let from = parse_ts(&args.from)?;
    let to = parse_ts(&args.to)?;
    ensure!(to > from, "--to must be after --from");
    let pool = Pool::load(&args.tokens, args.per_token)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    if let Some(url) = &args.pg_url {
        let config: tokio_postgres::Config = url.parse().context("--pg-url")?;
        let local = config.get_hosts().iter().all(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            tokio_postgres::config::Host::Unix(_) => true,
        });
        ensure!(local, "--pg-url must name a loopback host");
        runtime.block_on(resolve_operations(url, &pool))?;
    }
    runtime.block_on(run(args, pool, from, (to - from).num_seconds()))
}

/// Fills in each token's operation id from the operations table.
async fn resolve_operations(url: &str, pool: &Pool) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    for t in pool.ops.iter().flatten() {
        let row = client
            .query_one("SELECT id FROM operations WHERE name = $1", &[&t.operation])
            .await
            .with_context(|| format!("operation {:?}", t.operation))?;
        t.operation_id.store(row.get(0), Ordering::Relaxed);
    }
    Ok(())
}

async fn run(args: Args, pool: Pool, from: NaiveDateTime, span_secs: i64) -> anyhow::Result<()> {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(args.duration);
    let connections = args.connections;
    let sh = Arc::new(Shared {
        args,
        pool,
        from,
        span_secs,
        measure_from,
        measure_to,
        stop: AtomicBool::new(false),
    });
    let tasks: Vec<_> = (0..connections)
        .map(|i| tokio::spawn(connection(sh.clone(), i)))
        .collect();
    tokio::time::sleep_until(measure_to.into()).await;
    sh.stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    let mut abandoned = 0u64;
    let deadline = tokio::time::Instant::now() + GRACE;
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(tally)) => total.merge(tally),
            Ok(Err(e)) => total.error(format!("task: {e}")),
            Err(_) => {
                abort.abort();
                abandoned += 1;
            }
        }
    }
    if abandoned > 0 {
        total.error(format!(
            "{abandoned} connections still busy after the grace period"
        ));
    }
    report(&sh.args, total);
    Ok(())
}

fn report(args: &Args, mut t: Tally) {
    t.latencies_us.sort_unstable();
    let secs = args.duration;
    let errors: u64 = t.errors.values().sum();
    let mean_ms = if t.latencies_us.is_empty() {
        f64::NAN
    } else {
        t.latencies_us.iter().map(|&v| f64::from(v)).sum::<f64>()
            / t.latencies_us.len() as f64
            / 1000.0
    };
    let out = serde_json::json!({
        "label": args.label,
        "connections": args.connections,
        "seconds": secs,
        "answers": t.answers,
        "not_modified": t.not_modified,
        "answers_per_s": t.answers as f64 / secs,
        "mb_per_s": t.bytes as f64 / secs / 1e6,
        "mean_bytes": t.bytes.checked_div(t.answers).unwrap_or(0),
        "p50_ms": percentile(&t.latencies_us, 50.0),
        "p90_ms": percentile(&t.latencies_us, 90.0),
        "p99_ms": percentile(&t.latencies_us, 99.0),
        "max_ms": percentile(&t.latencies_us, 100.0),
        "mean_ms": mean_ms,
        "over_10ms": t.latencies_us.iter().filter(|&&us| us > 10_000).count(),
        "errors": errors,
        "error_kinds": t.errors,
    });
    eprintln!(
        "{:<12} conns={:<3} answers/s={:>9.1} MB/s={:>7.1} p50={:.2}ms p99={:.2}ms max={:.2}ms errors={} {:?}",
        args.label,
        args.connections,
        t.answers as f64 / secs,
        t.bytes as f64 / secs / 1e6,
        percentile(&t.latencies_us, 50.0),
        percentile(&t.latencies_us, 99.0),
        percentile(&t.latencies_us, 100.0),
        errors,
        t.errors
    );
    println!("{out}");
}
