//! The collector in-process, against the fault-injecting fake upstream on 127.0.0.1: every
//! destination copies completely, writes nothing twice on a second run, resumes from its
//! checkpoint, survives halved windows, and commits a window's rows and checkpoint together
//! (a commit that fails leaves the previous checkpoint and none of its rows).

#[path = "../../client/tests/fake/mod.rs"]
mod fake;
mod pg;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake::{Fake, FakeRow, Mode, spread};
use voxtrail_client::{Client, parse_wall_clock};
use voxtrail_collect::{
    BoxFuture, Checkpoint, Collector, CommitOutcome, Config, DestSpec, Destination, Event, KeyRule,
    KeyedRow, Progress, Stop, Summary, Target, WindowDone, no_progress, open,
};

const SINCE: &str = "20260101000000";
const UNTIL: &str = "20260104000000";

fn client(fake: &Fake, threshold: Option<usize>) -> Client {
    let mut b = Client::builder(fake.url(), "tok")
        .timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(1), Duration::from_millis(20))
        .attempts(6)
        .timezone(chrono_tz::America::Bogota);
    if let Some(t) = threshold {
        b = b.truncation_threshold(t);
    }
    b.build().unwrap()
}

fn config(client: &Client, since: &str, until: &str) -> Config {
    Config {
        target: Target {
            source: client.base_url().to_owned(),
            report: "chat_12".into(),
            key: KeyRule::default_for("chat_12"),
        },
        since: parse_wall_clock(since).unwrap(),
        until: Some(parse_wall_clock(until).unwrap()),
        follow: false,
        every: Duration::from_secs(3600),
        lookback: chrono::Duration::zero(),
        window: chrono::Duration::days(1),
        tz: chrono_tz::America::Bogota,
        token_info: false,
        // These tests are about windows; the feed is tested end to end (cli/tests/pull.rs).
        mode: voxtrail_collect::Mode::Windows,
        page: voxtrail_client::MAX_FEED_LIMIT,
    }
}

/// Opens `spec` and runs one collector over it.
async fn pull(fake: &Fake, spec: &DestSpec, since: &str, until: &str) -> Summary {
    pull_with(client(fake, None), spec, config_for(fake, since, until)).await
}

fn config_for(fake: &Fake, since: &str, until: &str) -> Config {
    config(&client(fake, None), since, until)
}

async fn pull_with(client: Client, spec: &DestSpec, config: Config) -> Summary {
    let dest = open(spec, &config.target, no_progress()).await.unwrap();
    Collector::new(config, client, dest).run(Stop::new()).await
}

/// The conn_ids a destination holds, with how many times each appears.
async fn stored(spec: &DestSpec) -> Vec<String> {
    let mut ids: Vec<String> = match spec {
        DestSpec::Sqlite(p) => {
            let c = rusqlite::Connection::open(p).unwrap();
            let mut st = c.prepare("SELECT conn_id FROM pulled_rows").unwrap();
            st.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
        DestSpec::Postgres(url) => {
            let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.query("SELECT conn_id FROM pulled_rows", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
        }
        DestSpec::Ndjson(p) => std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["conn_id"].as_str().unwrap().to_owned()
            })
            .collect(),
        DestSpec::Csv(p) => std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_owned())
            .collect(),
    };
    ids.sort();
    ids
}

fn ids(rows: &[FakeRow]) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(|r| r.get("conn_id").to_owned()).collect();
    v.sort();
    v
}

fn file_specs(dir: &Path) -> Vec<DestSpec> {
    vec![
        DestSpec::Sqlite(dir.join("copy.db")),
        DestSpec::Ndjson(dir.join("copy.ndjson")),
        DestSpec::Csv(dir.join("copy.csv")),
    ]
}

/// Runs `check` on every local destination, then on PostgreSQL when it is reachable.
async fn each_destination<F>(label: &str, check: F)
where
    F: AsyncFn(DestSpec),
{
    let dir = tempfile::tempdir().unwrap();
    for spec in file_specs(dir.path()) {
        check(spec).await;
    }
    if let Some(db) = pg::TestDb::create(label).await {
        check(DestSpec::Postgres(db.url.clone())).await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_copy_is_complete_and_a_second_run_writes_nothing_twice() {
    each_destination("complete", async |spec| {
        let rows = spread("c", 120, "2026-01-01 00:00:00", 1800);
        let fake = Fake::start(rows.clone(), Mode::default()).await;
        let s = pull(&fake, &spec, SINCE, UNTIL).await;
        assert!(s.error.is_none(), "{spec:?}: {:?}", s.error);
        assert_eq!(s.rows, 120, "{spec:?}");
        assert_eq!(s.written, 120, "{spec:?}");
        assert_eq!(s.windows, 3, "{spec:?}: 3 days in 1-day windows");
        assert_eq!(
            s.checkpoint,
            Some(Checkpoint(parse_wall_clock(UNTIL).unwrap()))
        );
        assert_eq!(stored(&spec).await, ids(&rows), "{spec:?}");

        // Again from --since over the same range (a fresh source label would be another
        // copy; here the checkpoint is at the end, so look back over everything).
        let mut c = config_for(&fake, SINCE, UNTIL);
        c.lookback = chrono::Duration::days(10);
        let again = pull_with(client(&fake, None), &spec, c).await;
        assert!(again.error.is_none(), "{spec:?}: {:?}", again.error);
        assert_eq!(again.rows, 120, "{spec:?}: everything read again");
        assert_eq!(again.written, 0, "{spec:?}: nothing written twice");
        assert_eq!(stored(&spec).await, ids(&rows), "{spec:?}");
    })
    .await;
}

#[tokio::test]
async fn a_run_resumes_from_its_checkpoint() {
    each_destination("resume", async |spec| {
        let first = spread("a", 48, "2026-01-01 00:00:00", 1800);
        let fake = Fake::start(first.clone(), Mode::default()).await;
        let s = pull(&fake, &spec, SINCE, "20260101235959").await;
        assert!(s.error.is_none(), "{spec:?}: {:?}", s.error);
        assert_eq!(s.written, 48);
        // Rows arrive later, some of them before the checkpoint: without lookback those are
        // not re-read; the ones after it are.
        let late = spread("b", 10, "2026-01-02 06:00:00", 60);
        fake.add_rows(late.clone());
        fake.add_rows([FakeRow::chat12("old", "2026-01-01 12:00:30", true)]);
        let s = pull(&fake, &spec, SINCE, UNTIL).await;
        assert!(s.error.is_none(), "{spec:?}: {:?}", s.error);
        assert_eq!(
            s.rows, 10,
            "{spec:?}: only rows after the checkpoint were read"
        );
        assert_eq!(s.written, 10);
        let mut want = ids(&first);
        want.extend(ids(&late));
        want.sort();
        assert_eq!(stored(&spec).await, want, "{spec:?}");
    })
    .await;
}

#[tokio::test]
async fn silently_truncated_windows_are_halved_until_complete() {
    each_destination("halving", async |spec| {
        // 300 rows in one day; the fake truncates answers to 40 rows without a word.
        let rows = spread("h", 300, "2026-01-02 00:00:00", 240);
        let mode = Mode {
            cap: Some(40),
            refuse: false,
            quirks: false,
        };
        let fake = Fake::start(rows.clone(), mode).await;
        let c = client(&fake, Some(40));
        let config = config(&c, SINCE, UNTIL);
        let s = pull_with(c, &spec, config).await;
        assert!(s.error.is_none(), "{spec:?}: {:?}", s.error);
        assert_eq!(s.written, 300, "{spec:?}");
        assert_eq!(stored(&spec).await, ids(&rows), "{spec:?}");
    })
    .await;
}

#[tokio::test]
async fn hostile_rows_end_the_run_without_moving_the_checkpoint() {
    each_destination("hostile", async |spec| {
        let mut rows = spread("g", 10, "2026-01-01 00:00:00", 60);
        // A row without its key, in the second day's window.
        rows.push(FakeRow::chat12("", "2026-01-02 10:00:00", true));
        let fake = Fake::start(rows.clone(), Mode::default()).await;
        let s = pull(&fake, &spec, SINCE, UNTIL).await;
        let err = format!("{:#}", s.error.expect("a row without conn_id is an error"));
        assert!(err.contains("a row has no \"conn_id\" field"), "{err}");
        assert_eq!(s.windows, 1, "{spec:?}: the first window was committed");
        assert_eq!(
            s.checkpoint,
            Some(Checkpoint(parse_wall_clock("20260102000000").unwrap())),
            "{spec:?}: the end of the first window (bounds are inclusive)"
        );
        assert_eq!(stored(&spec).await, ids(&rows[..10]), "{spec:?}");
    })
    .await;
}

/// Makes the database refuse the row `boom` mid-commit, after other rows of its window were
/// inserted in the same transaction.
async fn plant_failure(spec: &DestSpec) {
    match spec {
        DestSpec::Sqlite(p) => {
            rusqlite::Connection::open(p)
                .unwrap()
                .execute_batch(
                    "CREATE TRIGGER boom BEFORE INSERT ON pulled_rows WHEN NEW.conn_id = 'boom'
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
                )
                .unwrap();
        }
        DestSpec::Postgres(url) => {
            let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.batch_execute(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   IF NEW.conn_id = 'boom' THEN RAISE EXCEPTION 'refused by the test'; END IF;
                   RETURN NEW;
                 END $$;
                 CREATE TRIGGER boom BEFORE INSERT ON pulled_rows
                   FOR EACH ROW EXECUTE FUNCTION boom();",
            )
            .await
            .unwrap();
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_failed_commit_leaves_the_previous_checkpoint_and_no_partial_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = vec![DestSpec::Sqlite(dir.path().join("atomic.db"))];
    let db = pg::TestDb::create("atomic").await;
    if let Some(db) = &db {
        specs.push(DestSpec::Postgres(db.url.clone()));
    }
    for spec in specs {
        let day1 = spread("d", 20, "2026-01-01 00:00:00", 60);
        let fake = Fake::start(day1.clone(), Mode::default()).await;
        let s = pull(&fake, &spec, SINCE, "20260101235959").await;
        assert!(s.error.is_none(), "{spec:?}: {:?}", s.error);
        plant_failure(&spec).await;
        // Day two: rows sorted before and after the refused one.
        fake.add_rows(spread("e", 5, "2026-01-02 01:00:00", 60));
        fake.add_rows([FakeRow::chat12("boom", "2026-01-02 02:00:00", true)]);
        fake.add_rows(spread("f", 5, "2026-01-02 03:00:00", 60));
        let s = pull(&fake, &spec, SINCE, UNTIL).await;
        let err = format!("{:#}", s.error.expect("the commit fails"));
        assert!(err.contains("writing window"), "{spec:?}: {err}");
        assert_eq!(s.windows, 0, "{spec:?}");
        assert_eq!(
            s.checkpoint,
            Some(Checkpoint(parse_wall_clock("20260101235959").unwrap())),
            "{spec:?}: the checkpoint did not move"
        );
        assert_eq!(
            stored(&spec).await,
            ids(&day1),
            "{spec:?}: no row of day two"
        );
        // Reopened, the stored checkpoint is still day one's.
        let cfg = config_for(&fake, SINCE, UNTIL);
        let d = open(&spec, &cfg.target, no_progress()).await.unwrap();
        assert_eq!(
            d.checkpoint().await.unwrap(),
            Some(Checkpoint(parse_wall_clock("20260101235959").unwrap()))
        );
    }
    if let Some(db) = db {
        db.drop_db().await;
    }
}

#[tokio::test]
async fn file_destinations_repair_a_torn_record_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    for spec in file_specs(dir.path()).into_iter().skip(1) {
        let rows = spread("t", 30, "2026-01-01 00:00:00", 60);
        let fake = Fake::start(rows.clone(), Mode::default()).await;
        let s = pull(&fake, &spec, SINCE, UNTIL).await;
        assert!(s.error.is_none(), "{spec:?}: {:?}", s.error);
        let (DestSpec::Ndjson(p) | DestSpec::Csv(p)) = &spec else {
            unreachable!()
        };
        // An interrupted write: half a record at the end, hostile bytes included.
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        std::io::Write::write_all(&mut f, b"{\"conn_id\":\"half\xff\",\"da").unwrap();
        drop(f);
        let notices = Arc::new(Mutex::new(Vec::<String>::new()));
        let n = notices.clone();
        let progress: Arc<dyn Progress> = Arc::new(move |e: &Event<'_>| {
            if let Event::Notice(t) = e {
                n.lock().unwrap().push((*t).to_owned());
            }
        });
        let cfg = config_for(&fake, SINCE, UNTIL);
        let d = open(&spec, &cfg.target, progress).await.unwrap();
        assert_eq!(
            d.checkpoint().await.unwrap(),
            Some(Checkpoint(parse_wall_clock(UNTIL).unwrap()))
        );
        let notices = notices.lock().unwrap().clone();
        assert!(
            notices
                .iter()
                .any(|t| t.contains("cutting a torn last record")),
            "{spec:?}: {notices:?}"
        );
        assert_eq!(stored(&spec).await, ids(&rows), "{spec:?}");
    }
}

#[tokio::test]
async fn a_following_collector_runs_in_a_task_and_stops_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DestSpec::Sqlite(dir.path().join("follow.db"));
    let rows = spread("w", 12, "2026-01-01 00:00:00", 60);
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    let c = client(&fake, None);
    let mut cfg = config(&c, SINCE, UNTIL);
    cfg.until = None;
    cfg.follow = true;
    cfg.every = Duration::from_secs(3600);
    let stop = Stop::new();
    let (s2, events) = (stop.clone(), Arc::new(Mutex::new(0usize)));
    let ev = events.clone();
    let progress: Arc<dyn Progress> = Arc::new(move |e: &Event<'_>| {
        if let Event::CycleStarted { .. } = e {
            *ev.lock().unwrap() += 1;
        }
        // The first cycle commits its windows; stopping during it ends the run after the
        // window under way instead of sleeping an hour.
        if let Event::WindowCommitted { .. } = e {
            s2.stop();
        }
    });
    let dest = open(&spec, &cfg.target, no_progress()).await.unwrap();
    let task = tokio::spawn(Collector::new(cfg, c, dest).progress(progress).run(stop));
    let s = task.await.unwrap();
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!(s.windows, 1, "stopped after the window under way");
    assert_eq!(*events.lock().unwrap(), 1);
    assert!(s.checkpoint.is_some());
}

/// A destination of the caller's own (as the server's store will be), failing its second
/// commit: the trait is enough to plug one in, and a failure keeps the last checkpoint.
struct Memory {
    rows: Arc<Mutex<BTreeSet<String>>>,
    checkpoint: Option<Checkpoint>,
    commits: usize,
}

impl Destination for Memory {
    fn checkpoint(&self) -> BoxFuture<'_, anyhow::Result<Option<Checkpoint>>> {
        Box::pin(async move { Ok(self.checkpoint) })
    }

    fn commit<'a>(
        &'a mut self,
        window: &'a WindowDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        Box::pin(async move {
            self.commits += 1;
            anyhow::ensure!(self.commits < 2, "disk full");
            let mut out = CommitOutcome::default();
            let mut held = self.rows.lock().unwrap();
            for r in rows {
                if held.insert(r.key) {
                    out.inserted += 1;
                } else {
                    out.unchanged += 1;
                }
            }
            self.checkpoint = Some(window.checkpoint);
            Ok(out)
        })
    }
}

#[tokio::test]
async fn a_destination_of_ones_own_plugs_in_and_its_failure_keeps_the_checkpoint() {
    let rows = spread("m", 60, "2026-01-01 00:00:00", 3600);
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    let c = client(&fake, None);
    let cfg = config(&c, SINCE, UNTIL);
    let held = Arc::new(Mutex::new(BTreeSet::new()));
    let dest = Memory {
        rows: held.clone(),
        checkpoint: None,
        commits: 0,
    };
    let s = Collector::new(cfg, c, dest).run(Stop::new()).await;
    let err = format!("{:#}", s.error.expect("the second commit fails"));
    assert!(err.contains("disk full"), "{err}");
    // The first window is [Jan 1 00:00:00, Jan 2 00:00:00]: 25 hourly rows.
    assert_eq!(s.windows, 1);
    assert_eq!(s.written, 25);
    assert_eq!(
        s.checkpoint,
        Some(Checkpoint(parse_wall_clock("20260102000000").unwrap()))
    );
    assert_eq!(held.lock().unwrap().len(), 25);
}

#[tokio::test]
async fn a_stopped_handle_starts_no_window() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DestSpec::Ndjson(dir.path().join("stopped.ndjson"));
    let fake = Fake::start(spread("s", 5, "2026-01-01 00:00:00", 60), Mode::default()).await;
    let c = client(&fake, None);
    let cfg = config(&c, SINCE, UNTIL);
    let dest = open(&spec, &cfg.target, no_progress()).await.unwrap();
    let stop = Stop::new();
    stop.stop();
    stop.stopped().await;
    let s = Collector::new(cfg, c, dest).run(stop).await;
    assert!(s.error.is_none());
    assert_eq!((s.windows, s.rows, s.checkpoint), (0, 0, None));
    assert_eq!(fake.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn following_an_unreachable_upstream_defers_the_window_and_keeps_no_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DestSpec::Csv(dir.path().join("down.csv"));
    let fake = Fake::start(spread("u", 5, "2026-01-01 00:00:00", 60), Mode::default()).await;
    // Every answer a 500: retried, then given up on for this cycle.
    fake.always(Some(fake::Fault::Status500));
    let c = client(&fake, None);
    let mut cfg = config(&c, SINCE, UNTIL);
    cfg.follow = true;
    let stop = Stop::new();
    let s2 = stop.clone();
    let deferred = Arc::new(Mutex::new(Vec::<String>::new()));
    let d2 = deferred.clone();
    let progress: Arc<dyn Progress> = Arc::new(move |e: &Event<'_>| {
        if let Event::WindowDeferred { window, error } = e {
            d2.lock().unwrap().push(format!("{window}: {error}"));
            s2.stop();
        }
    });
    let dest = open(&spec, &cfg.target, no_progress()).await.unwrap();
    let s = tokio::spawn(Collector::new(cfg, c, dest).progress(progress).run(stop))
        .await
        .unwrap();
    assert!(s.error.is_none(), "not final: {:?}", s.error);
    assert_eq!((s.windows, s.checkpoint), (0, None));
    let deferred = deferred.lock().unwrap().clone();
    assert_eq!(deferred.len(), 1, "{deferred:?}");
    assert!(
        deferred[0].starts_with("20260101000000..20260102000000: "),
        "{deferred:?}"
    );
    assert!(stored(&spec).await.is_empty());
}

/// A destination whose every commit waits until the source has been asked for the window
/// after it (or 5 s pass, then fails): the collector reads window N+1 while window N commits.
struct WaitsForTheNextRequest {
    fake: Fake,
    rows: Vec<String>,
    checkpoints: Vec<Checkpoint>,
    commits: usize,
}

impl Destination for WaitsForTheNextRequest {
    fn checkpoint(&self) -> BoxFuture<'_, anyhow::Result<Option<Checkpoint>>> {
        Box::pin(async move { Ok(self.checkpoints.last().copied()) })
    }

    fn commit<'a>(
        &'a mut self,
        window: &'a WindowDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        Box::pin(async move {
            self.commits += 1;
            let last = window.window.end >= parse_wall_clock(UNTIL).unwrap();
            if !last {
                let asked = self.commits + 1;
                let seen = tokio::time::timeout(Duration::from_secs(5), async {
                    while self.fake.requests.load(std::sync::atomic::Ordering::SeqCst) < asked {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await;
                anyhow::ensure!(seen.is_ok(), "window {} committed alone", window.window);
            }
            let n = rows.len() as u64;
            self.rows.extend(rows.into_iter().map(|r| r.key));
            self.checkpoints.push(window.checkpoint);
            Ok(CommitOutcome {
                inserted: n,
                ..Default::default()
            })
        })
    }
}

#[tokio::test]
async fn the_next_window_is_read_while_the_previous_one_commits_one_request_at_a_time() {
    // Three daily windows of hourly rows.
    let rows = spread("p", 72, "2026-01-01 00:00:00", 3600);
    let fake = Fake::start(rows.clone(), Mode::default()).await;
    let c = client(&fake, None);
    let cfg = config(&c, SINCE, UNTIL);
    let dest = WaitsForTheNextRequest {
        fake: fake.clone(),
        rows: Vec::new(),
        checkpoints: Vec::new(),
        commits: 0,
    };
    let s = Collector::new(cfg, c, dest).run(Stop::new()).await;
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!((s.windows, s.rows, s.written), (3, 72, 72));
    assert_eq!(fake.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(
        fake.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "still one request at a time"
    );
    assert_eq!(
        s.checkpoint,
        Some(Checkpoint(parse_wall_clock(UNTIL).unwrap()))
    );
}

/// The quota arithmetic of docs/operations.md ("Mirrors"): a caught-up collector following a
/// quiet source with `--window 1d` asks one request per cycle (it re-reads `lookback + every`),
/// so `--every 5m` costs 86400 / 300 = 288 requests a day.
#[tokio::test]
async fn a_caught_up_follower_of_a_quiet_source_asks_one_request_per_cycle() {
    let tz = chrono_tz::America::Bogota;
    let now = chrono::Utc::now().with_timezone(&tz).naive_local();
    let start = (now - chrono::Duration::minutes(30)).format("%Y-%m-%d %H:%M:%S");
    let fake = Fake::start(spread("q", 3, &start.to_string(), 60), Mode::default()).await;
    let c = client(&fake, None);
    let mut cfg = config(&c, SINCE, UNTIL);
    cfg.since = now - chrono::Duration::hours(1);
    cfg.until = None;
    cfg.follow = true;
    cfg.every = Duration::from_millis(50);
    cfg.lookback = chrono::Duration::minutes(15);
    cfg.window = chrono::Duration::days(1);
    let stop = Stop::new();
    let (s2, cycles) = (stop.clone(), Arc::new(Mutex::new(0usize)));
    let seen = cycles.clone();
    let progress: Arc<dyn Progress> = Arc::new(move |e: &Event<'_>| {
        if let Event::CycleStarted { .. } = e {
            let mut n = seen.lock().unwrap();
            *n += 1;
            // The sixth cycle is stopped before it asks anything.
            if *n == 6 {
                s2.stop();
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = DestSpec::Sqlite(dir.path().join("quiet.db"));
    let dest = open(&spec, &cfg.target, no_progress()).await.unwrap();
    let s = Collector::new(cfg, c, dest)
        .progress(progress)
        .run(stop)
        .await;
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!(*cycles.lock().unwrap(), 6);
    assert_eq!(s.windows, 5, "one window per cycle");
    assert_eq!(s.written, 3);
    assert_eq!(
        fake.requests.load(std::sync::atomic::Ordering::SeqCst),
        5,
        "one request per cycle"
    );
}
