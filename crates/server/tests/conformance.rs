//! One conformance suite, two backends: every store behaviour below is written once and run
//! against SQLite (always) and PostgreSQL (a fresh database per test on the server named by
//! `VOXTRAIL_TEST_POSTGRES`, default postgres://postgres@127.0.0.1:5432/postgres, dropped
//! afterwards). Without a reachable PostgreSQL the PostgreSQL half says plainly on stderr that
//! it was skipped; with `CI=true` it fails instead.

use std::sync::Arc;

use voxtrail_server::domain::{Interaction, OperationTz, Scope, TokenSecret, WallClock, Window};
use voxtrail_server::store::console::ListQuery;
use voxtrail_server::store::testing::TestDatabase;
use voxtrail_server::store::{
    AdmitRequest, Admitted, InsertOutcome, MirrorDef, MirrorOutcome, Refused, ReportHead,
    ReportQuery, ReportRefusal, SlotGuard, Store, StoreError,
};

/// A store under test; the store is dropped before its database.
struct Fixture {
    store: Store,
    _db: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    Fixture {
        store: Store::open(&url).unwrap(),
        _db: None,
        _dir: Some(dir),
    }
}

fn postgres(label: &str) -> Option<Fixture> {
    let db = TestDatabase::create(label)?;
    let store = Store::open(&db.url).unwrap();
    Some(Fixture {
        store,
        _db: Some(db),
        _dir: None,
    })
}

/// Writes each behaviour's two tests: `sqlite::NAME` and `postgres::NAME`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { let f = super::sqlite(); super::$name(&f.store, &f); } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if let Some(f) = super::postgres(stringify!($name)) { super::$name(&f.store, &f); }
            } )*
        }
    };
}

conformance!(
    operations_are_unique_and_listed_in_byte_order,
    tokens_are_found_by_hash_listed_and_revoked,
    maintenance_switch_round_trips,
    usage_is_saved_as_a_maximum_and_summed_per_operation,
    ingestion_tells_inserted_duplicate_and_conflict,
    an_uncommitted_ingestion_leaves_nothing,
    report_is_the_window_in_order_byte_exact,
    report_refuses_before_streaming,
    report_is_exact_around_the_poll_sized_path,
    report_reads_one_snapshot_while_ingestion_commits,
    migrations_are_idempotent,
    daily_limit_is_exact_under_concurrency,
    concurrency_slots_are_bounded_and_freed,
    a_second_store_on_the_same_database_shares_the_limits,
    batched_inserts_match_one_by_one_outcomes,
    concurrent_ingestions_of_the_same_rows_store_each_once,
    admission_takes_a_slot_then_counts_one_use,
    report_admission_refuses_first_then_answers_exactly,
    an_admission_abandoned_midway_leaves_no_slot_held,
    slots_are_checked_before_the_daily_limit_and_shared_with_ingestion,
    operation_names_are_checked_on_the_way_in_and_out,
    concurrent_admissions_of_one_token_never_share_a_slot,
    mirrors_are_set_listed_redefined_and_removed,
    a_mirror_commit_upserts_in_place_with_its_checkpoint,
    a_mirror_commit_after_removal_keeps_nothing,
    report_head_carries_the_xor_of_its_rows_hashes,
    feed_pages_end_at_their_byte_budget,
);

fn tz() -> OperationTz {
    OperationTz::parse("America/Bogota").unwrap()
}

fn rec(conn_id: &str, ts: i64, body: &str) -> Interaction {
    let date = WallClock::from_i64(ts).unwrap();
    let json = format!(
        r#"{{"conn_id":"{conn_id}","agent_id":"7","agent_name":"Ána","channel":"email","from":"a@x.co","to":"b@y.co","subject":"s","body":"{body}","date":"{date}","cod_act":"","description_cod_act":""}}"#
    );
    Interaction {
        conn_id: conn_id.to_owned(),
        date,
        json: json.into_bytes(),
    }
}

fn ingest(store: &Store, op: i64, recs: &[Interaction]) -> Vec<InsertOutcome> {
    let mut sink = store.begin_ingest(op).unwrap();
    let out = recs.iter().map(|r| sink.insert(r).unwrap()).collect();
    sink.commit().unwrap();
    out
}

fn window(ini: i64, end: i64) -> Window {
    Window::parse(&ini.to_string(), &end.to_string(), 31).unwrap()
}

fn query(op: i64, ini: i64, end: i64) -> ReportQuery {
    ReportQuery {
        operation_id: op,
        window: window(ini, end),
        max_records: 60_000,
        max_bytes: 256 << 20,
    }
}

/// What a request of token `t` asks on `day`: `daily` uses, `slots` at once.
fn ask(t: i64, day: i64, daily: u64, slots: u32) -> AdmitRequest {
    AdmitRequest {
        token: t,
        day,
        daily_limit: daily,
        max_slots: slots,
    }
}

/// `Store::admit` without a report: the slot and today's uses, or the refusal.
async fn admit(s: &Store, req: AdmitRequest) -> Result<(SlotGuard, u64), Refused> {
    let admitted = s.admit(req, None).await.unwrap();
    admitted.map(|a| {
        assert!(a.head.is_none(), "no report asked for, none started");
        (a.slot, a.used)
    })
}

/// Frees a slot and waits until every replica sees it free.
async fn free(slot: SlotGuard) {
    if let Some(h) = slot.release() {
        h.await.unwrap();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs a report to the end: its head and the whole body.
fn report(store: &Store, q: ReportQuery) -> Result<(ReportHead, Vec<u8>), ReportRefusal> {
    let rt = runtime();
    let rx = {
        let _g = rt.enter();
        store.start_report(q)
    };
    let mut stream = rx.blocking_recv().expect("producer answered")?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.chunks.blocking_recv() {
        body.extend_from_slice(&chunk.expect("chunk"));
    }
    Ok((stream.head, body))
}

fn expected_body(rows: &[&Interaction]) -> Vec<u8> {
    let mut b = voxtrail_wire::report_head(rows.len() as u64).into_bytes();
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(&r.json);
    }
    b.extend_from_slice(voxtrail_wire::REPORT_TAIL);
    b
}

fn operations_are_unique_and_listed_in_byte_order(s: &Store, _: &Fixture) {
    let b = s.create_operation("beta", tz(), 3).unwrap();
    s.create_operation("Zeta", tz(), 10).unwrap();
    s.create_operation(
        "alpha",
        OperationTz::parse("Europe/Madrid").unwrap(),
        u32::MAX,
    )
    .unwrap();
    assert!(matches!(
        s.create_operation("beta", tz(), 1),
        Err(StoreError::OperationExists(n)) if n == "beta"
    ));
    let names: Vec<String> = s
        .list_operations()
        .unwrap()
        .into_iter()
        .map(|o| o.name.to_string())
        .collect();
    assert_eq!(names, ["Zeta", "alpha", "beta"]);
    assert_eq!(s.operation("beta").unwrap(), b);
    let a = s.operation("alpha").unwrap();
    assert_eq!((a.tz.name(), a.licenses), ("Europe/Madrid", u32::MAX));
    assert!(matches!(
        s.operation("nope"),
        Err(StoreError::NoSuchOperation(_))
    ));
}

fn tokens_are_found_by_hash_listed_and_revoked(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let secret = TokenSecret::generate();
    let id = s
        .create_token(op.id, &secret.hash(), Scope::Report, "reports ñ", Some(7))
        .unwrap();
    let other = TokenSecret::generate();
    let id2 = s
        .create_token(op.id, &other.hash(), Scope::Ingest, "", None)
        .unwrap();
    assert_ne!(id, id2);
    let t = s.token_by_hash(&secret.hash()).unwrap().unwrap();
    assert_eq!(
        (t.id, t.scope, t.description.as_str(), t.daily_limit),
        (id, Scope::Report, "reports ñ", Some(7))
    );
    assert_eq!(t.operation, op);
    assert!(t.revoked_at.is_none());
    assert!(!t.created_at.is_empty());
    assert!(
        s.token_by_hash(&TokenSecret::generate().hash())
            .unwrap()
            .is_none()
    );
    let listed: Vec<i64> = s.list_tokens().unwrap().iter().map(|t| t.id).collect();
    assert_eq!(listed, [id, id2]);
    assert!(s.revoke_token(id).unwrap());
    assert!(!s.revoke_token(id).unwrap(), "already revoked");
    assert!(matches!(
        s.revoke_token(9_999),
        Err(StoreError::NoSuchToken(9_999))
    ));
    assert!(
        s.token_by_hash(&secret.hash())
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert_eq!(
        s.token_by_hash(&other.hash()).unwrap().unwrap().daily_limit,
        None
    );
}

fn maintenance_switch_round_trips(s: &Store, _: &Fixture) {
    assert!(!s.maintenance().unwrap());
    s.set_maintenance(true).unwrap();
    assert!(s.maintenance().unwrap());
    s.set_maintenance(true).unwrap();
    s.set_maintenance(false).unwrap();
    assert!(!s.maintenance().unwrap());
}

fn usage_is_saved_as_a_maximum_and_summed_per_operation(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let other = s.create_operation("other", tz(), 10).unwrap();
    let t1 = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            None,
        )
        .unwrap();
    let t2 = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            None,
        )
        .unwrap();
    let t3 = s
        .create_token(
            other.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            None,
        )
        .unwrap();
    let day = 20_261_001;
    assert_eq!(s.token_usage(t1, day).unwrap(), 0);
    s.save_usage(&[(t1, day, 5), (t2, day, 2), (t3, day, 40), (t1, day + 1, 9)])
        .unwrap();
    s.save_usage(&[(t1, day, 3)]).unwrap(); // never lowers a count
    s.save_usage(&[]).unwrap();
    assert_eq!(s.token_usage(t1, day).unwrap(), 5);
    assert_eq!(s.token_usage(t1, day + 1).unwrap(), 9);
    assert_eq!(s.operation_usage(op.id, day).unwrap(), 7);
    assert_eq!(s.operation_usage(other.id, day).unwrap(), 40);
    assert_eq!(s.operation_usage(op.id, day - 1).unwrap(), 0);
}

fn ingestion_tells_inserted_duplicate_and_conflict(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let other = s.create_operation("other", tz(), 10).unwrap();
    let a = rec("c1", 20_261_001_081_500, "hola\\n");
    let out = ingest(
        s,
        op.id,
        &[a.clone(), rec("c2", 20_261_001_081_500, "x"), a.clone()],
    );
    use InsertOutcome::*;
    assert_eq!(
        out,
        [Inserted, Inserted, Duplicate],
        "duplicate within a batch"
    );
    let out = ingest(
        s,
        op.id,
        &[a.clone(), rec("c1", 20_261_001_081_500, "changed")],
    );
    assert_eq!(out, [Duplicate, Conflict]);
    // conn_id is unique per operation only.
    assert_eq!(ingest(s, other.id, &[a]), [Inserted]);
    let (head, _) = report(s, query(op.id, 20_261_001_000_000, 20_261_001_235_959)).unwrap();
    assert_eq!(head.rows, 2);
}

fn an_uncommitted_ingestion_leaves_nothing(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    {
        let mut sink = s.begin_ingest(op.id).unwrap();
        assert_eq!(
            sink.insert(&rec("c1", 20_261_001_081_500, "x")).unwrap(),
            InsertOutcome::Inserted
        );
    } // dropped without commit
    let mut sink = s.begin_synthetic(op.id).unwrap();
    assert_eq!(
        sink.insert(&rec("c1", 20_261_001_081_500, "y")).unwrap(),
        InsertOutcome::Inserted,
        "the rolled-back row is gone"
    );
    sink.commit().unwrap();
    let (head, _) = report(s, query(op.id, 20_261_001_000_000, 20_261_001_235_959)).unwrap();
    assert_eq!(head.rows, 1);
}

fn report_is_the_window_in_order_byte_exact(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let other = s.create_operation("other", tz(), 10).unwrap();
    let r = [
        rec("late", 20_261_001_235_959, "ü \\\"q\\\""),
        rec("b-first-stored", 20_261_001_013_000, "1"),
        rec("a-second-stored", 20_261_001_013_000, "2"),
        rec("start", 20_261_001_000_000, "3"),
        rec("before", 20_260_930_235_959, "4"),
        rec("after", 20_261_002_000_000, "5"),
    ];
    ingest(s, op.id, &r);
    ingest(s, other.id, &[rec("x", 20_261_001_120_000, "other op")]);
    let (head, body) = report(s, query(op.id, 20_261_001_000_000, 20_261_001_235_959)).unwrap();
    // Ordered by wall clock, then by storage order; both bounds inclusive.
    let want = expected_body(&[&r[3], &r[1], &r[2], &r[0]]);
    assert_eq!(
        String::from_utf8(body.clone()).unwrap(),
        String::from_utf8(want).unwrap()
    );
    assert_eq!(head.rows, 4);
    assert_eq!(head.body_len, body.len() as u64);
    serde_json::from_slice::<serde_json::Value>(&body).unwrap();

    let (head, body) = report(s, query(op.id, 20_250_101_000_000, 20_250_101_235_959)).unwrap();
    assert_eq!(body, expected_body(&[]));
    assert_eq!((head.rows, head.body_len), (0, body.len() as u64));

    let (head, body) = report(s, query(op.id, 20_261_001_013_000, 20_261_001_013_000)).unwrap();
    assert_eq!(body, expected_body(&[&r[1], &r[2]]));
    assert_eq!(head.rows, 2);
}

/// Backends may answer small windows by another path than large ones (PostgreSQL reads at most
/// 257 rows or ~4 MiB in one statement, then falls back to count-then-stream): the bodies must
/// be the same either side of both thresholds.
fn report_is_exact_around_the_poll_sized_path(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    // 258 rows, one per second from 00:00:00; windows ending at row 255, 256 and 257.
    let rows: Vec<Interaction> = (0..258)
        .map(|i| {
            rec(
                &format!("r{i:03}"),
                20_261_001_000_000 + (i / 60) * 100 + i % 60,
                "b",
            )
        })
        .collect();
    ingest(s, op.id, &rows);
    for n in [255usize, 256, 257, 258] {
        let last = rows[n - 1].date.as_i64();
        let (head, body) = report(s, query(op.id, 20_261_001_000_000, last)).unwrap();
        let want: Vec<&Interaction> = rows[..n].iter().collect();
        assert_eq!(head.rows, n as u64, "{n} rows");
        assert_eq!(body, expected_body(&want), "{n} rows");
    }
    // Few rows, many bytes: 3 rows of 1.5 MiB each cross the 4 MiB bound of the small path.
    let big = "x".repeat(1_536 * 1_024);
    let heavy: Vec<Interaction> = (0..3)
        .map(|i| rec(&format!("h{i}"), 20_261_002_000_000 + i, &big))
        .collect();
    ingest(s, op.id, &heavy);
    for n in 1..=3usize {
        let last = heavy[n - 1].date.as_i64();
        let (head, body) = report(s, query(op.id, 20_261_002_000_000, last)).unwrap();
        assert_eq!(head.rows, n as u64);
        assert_eq!(head.body_len, body.len() as u64);
        assert!(
            body == expected_body(&heavy[..n].iter().collect::<Vec<_>>()),
            "{n} heavy rows"
        );
    }
}

fn report_refuses_before_streaming(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let rows: Vec<Interaction> = (0..5)
        .map(|i| rec(&format!("c{i}"), 20_261_001_080_000 + i, "body"))
        .collect();
    ingest(s, op.id, &rows);
    let mut q = query(op.id, 20_261_001_000_000, 20_261_001_235_959);
    let exact = expected_body(&rows.iter().collect::<Vec<_>>()).len() as u64;
    q.max_records = 4;
    assert!(matches!(
        report(s, q),
        Err(ReportRefusal::TooManyRecords(5))
    ));
    q.max_records = 5;
    q.max_bytes = exact - 1;
    assert!(matches!(report(s, q), Err(ReportRefusal::TooLarge)));
    q.max_bytes = exact;
    assert_eq!(report(s, q).unwrap().0.body_len, exact);
}

fn report_reads_one_snapshot_while_ingestion_commits(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    // ~4 MB: the producer fills the bounded channel and waits for the reader.
    let big = "x".repeat(2_000);
    let rows: Vec<Interaction> = (0..2_000)
        .map(|i| rec(&format!("c{i:05}"), 20_261_001_080_000 + i % 60, &big))
        .collect();
    ingest(s, op.id, &rows);
    let rt = runtime();
    let rx = {
        let _g = rt.enter();
        s.start_report(query(op.id, 20_261_001_000_000, 20_261_001_235_959))
    };
    let mut stream = rx.blocking_recv().unwrap().unwrap();
    assert_eq!(stream.head.rows, 2_000);
    let mut body = stream.chunks.blocking_recv().unwrap().unwrap().to_vec();
    // Meanwhile more rows land in the same window, committed.
    let more: Vec<Interaction> = (0..50)
        .map(|i| rec(&format!("new{i}"), 20_261_001_080_000, "late"))
        .collect();
    let s2 = s.clone();
    std::thread::spawn(move || ingest(&s2, op.id, &more))
        .join()
        .unwrap();
    while let Some(c) = stream.chunks.blocking_recv() {
        body.extend_from_slice(&c.unwrap());
    }
    assert_eq!(body.len() as u64, stream.head.body_len);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2_000, "msg never lies");
    let (head, _) = report(s, query(op.id, 20_261_001_000_000, 20_261_001_235_959)).unwrap();
    assert_eq!(head.rows, 2_050, "the next answer sees the new rows");
}

fn migrations_are_idempotent(s: &Store, f: &Fixture) {
    let v = s.migrate().unwrap();
    assert!(v >= 1);
    assert_eq!(s.migrate().unwrap(), v);
    s.create_operation("kept", tz(), 1).unwrap();
    // Opening the same database again (a second replica) keeps the data and the version.
    let again = match (&f._db, &f._dir) {
        (Some(db), _) => Store::open(&db.url).unwrap(),
        (None, Some(dir)) => {
            Store::open(&format!("sqlite://{}", dir.path().join("c.db").display())).unwrap()
        }
        _ => unreachable!(),
    };
    assert_eq!(again.migrate().unwrap(), v);
    assert_eq!(again.operation("kept").unwrap().licenses, 1);
}

fn daily_limit_is_exact_under_concurrency(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let t = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            Some(25),
        )
        .unwrap();
    let day = 20_261_001;
    let rt = runtime();
    let results = rt.block_on(async {
        // More slots than requests: only the daily limit refuses here.
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let st = s.clone();
                tokio::spawn(async move {
                    let got = admit(&st, ask(t, day, 25, 64)).await;
                    got.map(|(slot, used)| {
                        drop(slot);
                        used
                    })
                })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        s.flush_usage().await.unwrap();
        out
    });
    let mut granted: Vec<u64> = results.iter().filter_map(|r| r.ok()).collect();
    granted.sort_unstable();
    assert_eq!(granted, (1..=25).collect::<Vec<u64>>());
    assert!(results.iter().all(|r| *r != Err(Refused::Simultaneous)));
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 15);
    assert_eq!(s.token_usage(t, day).unwrap(), 25);
    assert_eq!(s.operation_usage(op.id, day).unwrap(), 25);
    // Another day starts from zero.
    let next = rt.block_on(async { admit(s, ask(t, day + 1, 25, 64)).await.map(|(_, n)| n) });
    assert_eq!(next, Ok(1));
    drop(rt);
}

fn concurrency_slots_are_bounded_and_freed(s: &Store, _: &Fixture) {
    let rt = runtime();
    rt.block_on(async {
        let a = s.take_slot(1, 2).await.unwrap().expect("first");
        let b = s.take_slot(1, 2).await.unwrap().expect("second");
        assert!(s.take_slot(1, 2).await.unwrap().is_none(), "third refused");
        let c = s.take_slot(2, 2).await.unwrap();
        assert!(c.is_some(), "tokens are independent");
        assert!(
            s.take_slot(3, 0).await.unwrap().is_none(),
            "no slot when max is 0"
        );
        drop(a);
        assert!(
            eventually(|| async { s.take_slot(1, 2).await.unwrap() }).await,
            "a dropped guard frees its slot"
        );
        drop((b, c));
    });
}

/// True once `f` yields a guard (within 5 s); the guard is dropped at once.
async fn eventually<F, Fut, G>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<G>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if f().await.is_some() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// Two stores on one database stand for two replicas: on PostgreSQL they share slots and daily
/// counts; SQLite supports one serving process, so there only the stored data is shared.
fn a_second_store_on_the_same_database_shares_the_limits(s: &Store, f: &Fixture) {
    let Some(db) = &f._db else {
        return; // SQLite: limits are per process by design (docs/adr/0002)
    };
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let t = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            Some(5),
        )
        .unwrap();
    let other = Store::open(&db.url).unwrap();
    let rt = runtime();
    rt.block_on(async {
        let a1 = s.take_slot(t, 2).await.unwrap().expect("A first");
        let _a2 = s.take_slot(t, 2).await.unwrap().expect("A second");
        assert!(
            other.take_slot(t, 2).await.unwrap().is_none(),
            "B sees A's two slots"
        );
        drop(a1);
        assert!(eventually(|| async { other.take_slot(t, 2).await.unwrap() }).await);

        let day = 20_261_001;
        let mut granted = 0;
        for i in 0..8 {
            let st = if i % 2 == 0 { s } else { &other };
            if let Ok((slot, _)) = admit(st, ask(t, day, 5, 64)).await {
                granted += 1;
                free(slot).await;
            }
        }
        assert_eq!(granted, 5);
    });
    drop(rt);
    drop(other);
}

/// The batched path gives exactly the outcomes of one-by-one inserts: repeats inside the batch,
/// rows stored before, rows stored earlier in the same transaction.
fn batched_inserts_match_one_by_one_outcomes(s: &Store, _: &Fixture) {
    use InsertOutcome::*;
    let op = s.create_operation("acme", tz(), 10).unwrap();
    ingest(s, op.id, &[rec("old", 20_261_001_080_000, "o")]);
    let mut sink = s.begin_ingest(op.id).unwrap();
    assert_eq!(
        sink.insert(&rec("tx", 20_261_001_080_000, "t")).unwrap(),
        Inserted
    );
    let batch = [
        rec("n1", 20_261_001_090_000, "a"),
        rec("old", 20_261_001_080_000, "o"),
        rec("old", 20_261_001_080_000, "changed"),
        rec("n1", 20_261_001_090_000, "a"),
        rec("n1", 20_261_001_090_000, "b"),
        rec("tx", 20_261_001_080_000, "t"),
        rec("tx", 20_261_001_080_000, "u"),
        rec("n0", 20_261_001_070_000, "c"),
    ];
    let out = sink.insert_batch(&batch).unwrap();
    assert_eq!(
        out,
        [
            Inserted, Duplicate, Conflict, Duplicate, Conflict, Duplicate, Conflict, Inserted
        ]
    );
    assert_eq!(sink.insert_batch(&[]).unwrap(), []);
    sink.commit().unwrap();
    let (head, body) = report(s, query(op.id, 20_261_001_000_000, 20_261_001_235_959)).unwrap();
    assert_eq!(head.rows, 4);
    assert_eq!(
        body,
        expected_body(&[
            &batch[7],
            &rec("old", 20_261_001_080_000, "o"),
            &rec("tx", 20_261_001_080_000, "t"),
            &batch[0]
        ])
    );
}

/// Two ingestions of the same rows at the same time (two replicas, or two clients retrying):
/// each row is stored once and every record is told Inserted or Duplicate, never an error.
fn concurrent_ingestions_of_the_same_rows_store_each_once(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let rows: Vec<Interaction> = (0..3_000)
        .map(|i| rec(&format!("c{i:05}"), 20_261_001_080_000 + i % 60, "same"))
        .collect();
    let rows = Arc::new(rows);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (st, rows) = (s.clone(), rows.clone());
            std::thread::spawn(move || {
                let mut sink = st.begin_ingest(op.id).unwrap();
                let mut out = Vec::new();
                for chunk in rows.chunks(500) {
                    out.extend(sink.insert_batch(chunk).unwrap());
                }
                sink.commit().unwrap();
                out
            })
        })
        .collect();
    let outs: Vec<Vec<InsertOutcome>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!((outs[0].len(), outs[1].len()), (rows.len(), rows.len()));
    for (i, (a, b)) in outs[0].iter().zip(&outs[1]).enumerate() {
        let mut pair = [*a, *b];
        pair.sort_by_key(|o| *o as u8);
        assert_eq!(
            pair,
            [InsertOutcome::Inserted, InsertOutcome::Duplicate],
            "row {i}"
        );
    }
    let (head, _) = report(s, query(op.id, 20_261_001_000_000, 20_261_001_235_959)).unwrap();
    assert_eq!(head.rows, 3_000);
}

/// `Store::admit`, as the report and token_info handlers use it: a slot first, then one use
/// counted only when a slot was free; a refusal for the daily limit holds no slot afterwards.
fn admission_takes_a_slot_then_counts_one_use(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let t = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            Some(3),
        )
        .unwrap();
    let day = 20_261_001;
    let req = ask(t, day, 3, 2);
    let rt = runtime();
    rt.block_on(async {
        let (g1, n1) = admit(s, req).await.unwrap();
        let (g2, n2) = admit(s, req).await.unwrap();
        assert_eq!((n1, n2), (1, 2));
        assert_eq!(
            admit(s, req).await.err(),
            Some(Refused::Simultaneous),
            "no slot: not counted"
        );
        drop(g1);
        let mut third = None;
        for _ in 0..500 {
            if let Ok(got) = admit(s, req).await {
                third = Some(got);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (g3, n3) = third.expect("a slot frees up");
        assert_eq!(n3, 3);
        free(g2).await;
        free(g3).await;
        for _ in 0..5 {
            assert_eq!(admit(s, req).await.err(), Some(Refused::DailyLimit));
        }
        // Each daily-limit refusal freed the slot it took before it answered.
        let both = (
            s.take_slot(t, 2).await.unwrap(),
            s.take_slot(t, 2).await.unwrap(),
        );
        assert!(
            both.0.is_some() && both.1.is_some(),
            "refusals hold no slot"
        );
        s.flush_usage().await.unwrap();
    });
    assert_eq!(s.token_usage(t, day).unwrap(), 3);
}

/// `Store::admit` with a report (PostgreSQL: admission and a poll-sized answer in one
/// statement) refuses exactly as without one, counts only admitted requests, and answers small
/// and large windows byte for byte.
fn report_admission_refuses_first_then_answers_exactly(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let t = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            Some(4),
        )
        .unwrap();
    let rows: Vec<Interaction> = (0..300)
        .map(|i| {
            rec(
                &format!("r{i:03}"),
                20_261_001_000_000 + (i / 60) * 100 + i % 60,
                "b",
            )
        })
        .collect();
    ingest(s, op.id, &rows);
    let small = query(op.id, 20_261_001_000_000, rows[9].date.as_i64());
    let large = query(op.id, 20_261_001_000_000, 20_261_001_235_959);
    let req = ask(t, 20_261_001, 4, 2);
    let rt = runtime();
    rt.block_on(async {
        let read = |rx: Option<tokio::sync::oneshot::Receiver<_>>| async move {
            let rx = rx.expect("a report was asked for");
            let stream: voxtrail_server::store::ReportStream =
                Result::<_, ReportRefusal>::unwrap(rx.await.expect("producer answered"));
            let mut chunks = stream.chunks;
            let mut body = Vec::new();
            while let Some(c) = chunks.recv().await {
                body.extend_from_slice(&c.expect("chunk"));
            }
            (stream.head, body)
        };
        let Admitted {
            slot: g1,
            used: n1,
            head: rx1,
        } = s.admit(req, Some(small)).await.unwrap().unwrap();
        let Admitted {
            slot: g2,
            used: n2,
            head: rx2,
        } = s.admit(req, Some(large)).await.unwrap().unwrap();
        assert_eq!((n1, n2), (1, 2));
        assert!(
            matches!(
                s.admit(req, Some(small)).await.unwrap(),
                Err(Refused::Simultaneous)
            ),
            "no slot: not counted, no answer"
        );
        let (head, body) = read(rx1).await;
        assert_eq!(head.rows, 10);
        assert_eq!(body, expected_body(&rows[..10].iter().collect::<Vec<_>>()));
        let (head, body) = read(rx2).await;
        assert_eq!(head.rows, 300);
        assert_eq!(body, expected_body(&rows.iter().collect::<Vec<_>>()));
        drop((g1, g2));
        let mut admitted = Vec::new();
        for _ in 0..500 {
            match s.admit(req, Some(small)).await.unwrap() {
                Ok(a) => {
                    let (head, _) = read(a.head).await;
                    assert_eq!(head.rows, 10);
                    admitted.push(a.used);
                    drop(a.slot);
                }
                Err(Refused::DailyLimit) => break,
                Err(Refused::Simultaneous) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
            }
        }
        assert_eq!(admitted, vec![3, 4], "two more uses, then the limit");
    });
}

/// A request dropped while its admission is in flight (its client gone) at any moment must not
/// leave a slot held: on PostgreSQL the session may already hold the lock when the caller
/// stops waiting. Checked from a second store (another replica), which shares the slots.
fn an_admission_abandoned_midway_leaves_no_slot_held(s: &Store, f: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let t = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            None,
        )
        .unwrap();
    // SQLite's slots are per process (docs/adr/0002): check them on the same store.
    let other = match &f._db {
        Some(db) => Store::open(&db.url).unwrap(),
        None => s.clone(),
    };
    let req = ask(t, 20_261_001, 1_000_000, 2);
    let rt = runtime();
    rt.block_on(async {
        for micros in 0..400u64 {
            let wait = std::time::Duration::from_micros(micros / 2);
            // Whatever was admitted in time is dropped at once; the rest is abandoned.
            let _ = tokio::time::timeout(wait, s.admit(req, None)).await;
        }
        let mut held = Vec::new();
        for _ in 0..300 {
            match admit(&other, req).await {
                Ok((g, _)) => held.push(g),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
            if held.len() == 2 {
                break;
            }
        }
        assert_eq!(
            held.len(),
            2,
            "a slot stayed held after abandoned admissions"
        );
        assert_eq!(admit(&other, req).await.err(), Some(Refused::Simultaneous));
    });
}

/// The refusal order of one admission: with every slot held the answer is "simultaneous"
/// even when the daily limit is used up too (the use is not counted); a request that only the
/// daily limit refuses frees its slot before the answer. Ingestion's slots (taken without a
/// use) and report admissions share one count per token.
fn slots_are_checked_before_the_daily_limit_and_shared_with_ingestion(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let t = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            Some(1),
        )
        .unwrap();
    let day = 20_261_001;
    let rt = runtime();
    rt.block_on(async {
        let ingesting = s
            .take_slot(t, 2)
            .await
            .unwrap()
            .expect("an ingestion's slot");
        let (reporting, used) = admit(s, ask(t, day, 1, 2)).await.unwrap();
        assert_eq!(used, 1);
        // Both slots held and the daily limit used up: the slot is checked first.
        assert_eq!(
            admit(s, ask(t, day, 1, 2)).await.err(),
            Some(Refused::Simultaneous)
        );
        assert_eq!(
            admit(s, ask(t, day, 0, 2)).await.err(),
            Some(Refused::Simultaneous)
        );
        assert!(
            s.take_slot(t, 2).await.unwrap().is_none(),
            "ingestion waits too"
        );
        free(reporting).await;
        assert_eq!(
            admit(s, ask(t, day, 1, 2)).await.err(),
            Some(Refused::DailyLimit)
        );
        assert_eq!(
            admit(s, ask(t, day, 0, 2)).await.err(),
            Some(Refused::DailyLimit)
        );
        // The refused requests freed their slot: one is free besides the ingestion's.
        let last = s
            .take_slot(t, 2)
            .await
            .unwrap()
            .expect("the refusals hold no slot");
        assert!(s.take_slot(t, 2).await.unwrap().is_none());
        drop((ingesting, last));
        s.flush_usage().await.unwrap();
    });
    assert_eq!(
        s.token_usage(t, day).unwrap(),
        1,
        "refusals are not counted"
    );
}

/// Runs one statement on the fixture's database behind the store's back.
fn raw_sql(f: &Fixture, sql: &str) {
    match (&f._db, &f._dir) {
        (Some(db), _) => {
            let mut c = ::postgres::Client::connect(&db.url, ::postgres::NoTls).unwrap();
            c.batch_execute(sql).unwrap();
        }
        (None, Some(dir)) => {
            let c = rusqlite::Connection::open(dir.path().join("c.db")).unwrap();
            c.execute_batch(sql).unwrap();
        }
        (None, None) => unreachable!("every fixture has a database"),
    }
}

/// A name `OperationName::parse` refuses is refused on creation, and one found stored (written
/// by hand, or by an older version) is reported as corrupt data, never served.
fn operation_names_are_checked_on_the_way_in_and_out(s: &Store, f: &Fixture) {
    for bad in ["", " edge", "tab\tname", &"x".repeat(101)] {
        assert!(
            matches!(
                s.create_operation(bad, tz(), 1),
                Err(StoreError::InvalidOperationName(_))
            ),
            "{bad:?} accepted"
        );
    }
    assert!(
        s.list_operations().unwrap().is_empty(),
        "nothing was stored"
    );
    let op = s.create_operation("acme", tz(), 1).unwrap();
    assert_eq!(op.name.as_str(), "acme");
    assert_eq!(s.operation("acme").unwrap().name.as_str(), "acme");
    raw_sql(
        f,
        "UPDATE operations SET name = ' acme' WHERE name = 'acme'",
    );
    assert!(matches!(s.operation(" acme"), Err(StoreError::Corrupt(_))));
    assert!(matches!(s.list_operations(), Err(StoreError::Corrupt(_))));
}

/// Many admissions of one token at once, on one store: exactly `max` are admitted, and each
/// admitted one holds a slot of its own (on PostgreSQL the keeper's session re-enters a lock it
/// already holds, so it must never try one it has handed out): with every admitted request
/// still holding, a second store sees none free; once they are freed, all `max` are free again.
fn concurrent_admissions_of_one_token_never_share_a_slot(s: &Store, f: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let t = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            None,
        )
        .unwrap();
    let other = match &f._db {
        Some(db) => Store::open(&db.url).unwrap(),
        None => s.clone(),
    };
    let req = ask(t, 20_261_001, 1_000_000, 3);
    let rt = runtime();
    rt.block_on(async {
        for _ in 0..5 {
            let tries: Vec<_> = (0..24)
                .map(|_| {
                    let s = s.clone();
                    tokio::spawn(async move { s.admit(req, None).await.unwrap() })
                })
                .collect();
            let mut held = Vec::new();
            for t in tries {
                if let Ok(a) = t.await.unwrap() {
                    held.push(a.slot);
                }
            }
            assert_eq!(held.len(), 3, "admitted at once");
            assert_eq!(admit(&other, req).await.err(), Some(Refused::Simultaneous));
            for slot in held {
                free(slot).await;
            }
            let mut again = Vec::new();
            for _ in 0..3 {
                again.push(admit(&other, req).await.expect("a freed slot").0);
            }
            for slot in again {
                free(slot).await;
            }
        }
    });
}

fn mirror_def(op: i64, url: &str, since: i64) -> MirrorDef {
    MirrorDef {
        operation_id: op,
        url: url.into(),
        token: "upstream-secret".into(),
        since: WallClock::from_i64(since).unwrap(),
        every_secs: 300,
        lookback_secs: 900,
        window_secs: 86_400,
    }
}

fn mirrors_are_set_listed_redefined_and_removed(s: &Store, _: &Fixture) {
    let b = s.create_operation("b-op", tz(), 1).unwrap();
    let a = s.create_operation("a-op", tz(), 1).unwrap();
    assert!(s.mirrors().unwrap().is_empty());
    s.set_mirror(&mirror_def(b.id, "http://up/b", 20_261_001_000_000))
        .unwrap();
    s.set_mirror(&mirror_def(a.id, "http://up/a", 20_261_001_000_000))
        .unwrap();
    let all = s.mirrors().unwrap();
    assert_eq!(
        all.iter().map(|m| m.operation.as_str()).collect::<Vec<_>>(),
        ["a-op", "b-op"]
    );
    let m = s.mirror(a.id).unwrap().unwrap();
    assert_eq!(m.def, mirror_def(a.id, "http://up/a", 20_261_001_000_000));
    assert_eq!((m.checkpoint, m.rows_inserted, m.errors), (None, 0, 0));
    assert!(!m.halted && m.last_error.is_none() && m.last_success.is_none());
    let g0 = m.generation;

    // A commit moves the checkpoint; an error is recorded and can halt the mirror.
    s.mirror_commit(a.id, &[], WallClock::from_i64(20_261_001_120_000).unwrap())
        .unwrap();
    s.mirror_error(a.id, "403 PLEASE VALIDATE TOKEN", true)
        .unwrap();
    let m = s.mirror(a.id).unwrap().unwrap();
    assert_eq!(m.checkpoint.unwrap().as_i64(), 20_261_001_120_000);
    assert!(m.last_success.is_some());
    assert_eq!(m.errors, 1);
    assert!(m.halted);
    assert_eq!(m.last_error.as_deref(), Some("403 PLEASE VALIDATE TOKEN"));

    // Set again with the same upstream: the halt is lifted, the checkpoint kept, the
    // generation moves.
    let mut d = mirror_def(a.id, "http://up/a", 20_261_001_000_000);
    d.token = "new-secret".into();
    d.every_secs = 60;
    s.set_mirror(&d).unwrap();
    let m = s.mirror(a.id).unwrap().unwrap();
    assert!(!m.halted && m.last_error.is_none());
    assert_eq!(m.def.token, "new-secret");
    assert_eq!(m.def.every_secs, 60);
    assert_eq!(m.checkpoint.unwrap().as_i64(), 20_261_001_120_000);
    assert!(m.generation > g0);
    // Another upstream: the checkpoint starts over.
    s.set_mirror(&mirror_def(a.id, "http://other/a", 20_261_001_000_000))
        .unwrap();
    assert_eq!(s.mirror(a.id).unwrap().unwrap().checkpoint, None);

    // A hostile, huge error text is stored bounded.
    s.mirror_error(b.id, &"x".repeat(100_000), false).unwrap();
    assert!(s.mirror(b.id).unwrap().unwrap().last_error.unwrap().len() < 1_000);

    assert!(s.remove_mirror(a.id).unwrap());
    assert!(!s.remove_mirror(a.id).unwrap());
    assert!(s.mirror(a.id).unwrap().is_none());
    assert_eq!(s.mirrors().unwrap().len(), 1);
}

fn a_mirror_commit_upserts_in_place_with_its_checkpoint(s: &Store, _: &Fixture) {
    let op = s.create_operation("mirrored", tz(), 1).unwrap();
    s.set_mirror(&mirror_def(op.id, "http://up", 20_261_001_000_000))
        .unwrap();
    let cp = |v: i64| WallClock::from_i64(v).unwrap();
    let first = [
        rec("a", 20_261_001_010_000, "1"),
        rec("b", 20_261_001_010_000, "2"),
        rec("c", 20_261_001_020_000, "3"),
    ];
    let out = s
        .mirror_commit(op.id, &first, cp(20_261_001_235_959))
        .unwrap();
    assert_eq!(
        out,
        MirrorOutcome {
            inserted: 3,
            updated: 0,
            unchanged: 0
        }
    );
    // "a" changed upstream (same second), "c" moved to another time, "d" is new, "b" is
    // repeated within the window (the last occurrence wins), "b" is as stored.
    let a2 = rec("a", 20_261_001_010_000, "1 edited");
    let c2 = rec("c", 20_261_001_005_000, "3 moved");
    let second = [
        a2.clone(),
        rec("b", 20_261_001_010_000, "something else"),
        rec("b", 20_261_001_010_000, "2"),
        c2.clone(),
        rec("d", 20_261_001_030_000, "4"),
    ];
    // The console's word search has indexed the first window (SQLite's indexer; PostgreSQL
    // computes the words at search time).
    s.index_search_batch(10_000).unwrap();
    // The feed position before the second window: what it replaces or adds comes after it.
    let rt = runtime();
    let before = rt
        .block_on(s.feed(op.id, 0, 10_000, usize::MAX))
        .unwrap()
        .unwrap()
        .last;
    // An older checkpoint never moves the stored one back.
    let out = s
        .mirror_commit(op.id, &second, cp(20_261_001_120_000))
        .unwrap();
    assert_eq!(
        out,
        MirrorOutcome {
            inserted: 1,
            updated: 2,
            unchanged: 1
        }
    );
    let m = s.mirror(op.id).unwrap().unwrap();
    assert_eq!(m.checkpoint.unwrap().as_i64(), 20_261_001_235_959);
    assert_eq!((m.rows_inserted, m.rows_updated), (4, 2));
    // "a" kept its place before "b" (same second), "c" is found at its new time.
    let (head, body) = report(s, query(op.id, 20_261_001_000_000, 20_261_001_235_959)).unwrap();
    let want = expected_body(&[&c2, &a2, &first[1], &second[4]]);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        String::from_utf8(want).unwrap()
    );
    assert_eq!(head.rows, 4);
    // Replaced and new rows carry their own hashes (the digests equal the report's rows) and
    // come again in the feed, in their latest version.
    let window = Window::parse("20261001000000", "20261001235959", 31).unwrap();
    let digests = rt.block_on(s.hour_digests(op.id, window)).unwrap();
    let mut stored = [0u8; 32];
    for r in [&c2, &a2, &first[1], &second[4]] {
        for (x, b) in stored
            .iter_mut()
            .zip(voxtrail_server::store::digest::row_hash(&r.json))
        {
            *x ^= b;
        }
    }
    let mut served = [0u8; 32];
    for d in &digests {
        for (x, b) in served.iter_mut().zip(d.xor) {
            *x ^= b;
        }
    }
    assert_eq!(served, stored, "hour digests follow replaced rows");
    let page = rt
        .block_on(s.feed(op.id, before, 10_000, usize::MAX))
        .unwrap()
        .unwrap();
    // One commit: its rows' order among themselves is the backend's.
    let mut changed: Vec<&[u8]> = page.rows.iter().map(Vec::as_slice).collect();
    changed.sort();
    let mut want = vec![
        a2.json.as_slice(),
        c2.json.as_slice(),
        second[4].json.as_slice(),
    ];
    want.sort();
    assert_eq!(changed, want, "the feed gives each changed or new row once");
    // A replaced row is found by its new words, though it was indexed with its old ones.
    for (word, conn) in [("edited", "a"), ("moved", "c")] {
        let found = s
            .console_list(&ListQuery {
                operation_id: op.id,
                window,
                agent: None,
                recipient: None,
                words: vec![word.to_owned()],
                before: None,
                limit: 50,
            })
            .unwrap();
        assert_eq!(found.len(), 1, "{word}");
        let text = String::from_utf8(found[0].json.clone()).unwrap();
        assert!(
            text.contains(&format!("\"conn_id\":\"{conn}\"")),
            "{word}: {text}"
        );
    }
    // Committing the same window again changes nothing.
    let out = s
        .mirror_commit(op.id, &second, cp(20_261_001_235_959))
        .unwrap();
    assert_eq!((out.inserted, out.updated, out.unchanged), (0, 0, 4));
}

fn a_mirror_commit_after_removal_keeps_nothing(s: &Store, _: &Fixture) {
    let op = s.create_operation("gone", tz(), 1).unwrap();
    s.set_mirror(&mirror_def(op.id, "http://up", 20_261_001_000_000))
        .unwrap();
    s.remove_mirror(op.id).unwrap();
    let err = s
        .mirror_commit(
            op.id,
            &[rec("a", 20_261_001_010_000, "1")],
            WallClock::from_i64(20_261_001_235_959).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::NotAMirror(_)), "{err}");
    let (head, _) = report(s, query(op.id, 20_261_001_000_000, 20_261_001_235_959)).unwrap();
    assert_eq!(head.rows, 0, "the window's rows were rolled back with it");
}

/// The XOR of the `row_hash` of `rows`, as a report's head must carry it.
fn xor_of(rows: &[Interaction]) -> [u8; 32] {
    let mut x = [0; 32];
    for r in rows {
        voxtrail_server::store::digest::xor_into(
            &mut x,
            &voxtrail_server::store::digest::row_hash(&r.json),
        );
    }
    x
}

/// A report's head carries the XOR of the stored hashes of exactly its rows, read in its own
/// snapshot, on every path (empty, poll-sized, streamed, through admission): the same value the
/// per-hour digests give, so the ETag of a window is the same whichever path computed it.
fn report_head_carries_the_xor_of_its_rows_hashes(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let t = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            None,
        )
        .unwrap();
    let rows: Vec<Interaction> = (0..300)
        .map(|i| {
            rec(
                &format!("r{i:03}"),
                20_261_001_000_000 + (i / 60) * 100 + i % 60,
                "b",
            )
        })
        .collect();
    ingest(s, op.id, &rows);
    // Few rows, many bytes: past the poll-sized paths of both backends.
    let big = "x".repeat(1_536 * 1_024);
    let heavy: Vec<Interaction> = (0..3)
        .map(|i| rec(&format!("h{i}"), 20_261_002_000_000 + i, &big))
        .collect();
    ingest(s, op.id, &heavy);
    let rt = runtime();
    let cases = [
        (
            query(op.id, 20_261_003_000_000, 20_261_003_235_959),
            &rows[..0],
        ),
        (
            query(op.id, 20_261_001_000_000, rows[0].date.as_i64()),
            &rows[..1],
        ),
        (
            query(op.id, 20_261_001_000_000, rows[9].date.as_i64()),
            &rows[..10],
        ),
        (
            query(op.id, 20_261_001_000_000, rows[255].date.as_i64()),
            &rows[..256],
        ),
        (
            query(op.id, 20_261_001_000_000, 20_261_001_235_959),
            &rows[..],
        ),
        (
            query(op.id, 20_261_002_000_000, 20_261_002_235_959),
            &heavy[..],
        ),
    ];
    for (i, (q, want)) in cases.into_iter().enumerate() {
        let (head, body) = report(s, q).unwrap();
        assert_eq!(head.rows, want.len() as u64, "case {i}");
        assert_eq!(
            body,
            expected_body(&want.iter().collect::<Vec<_>>()),
            "case {i}"
        );
        assert_eq!(head.xor, xor_of(want), "case {i}: report");
        let hours = rt.block_on(s.hour_digests(op.id, q.window)).unwrap();
        let (n, xor) = voxtrail_server::store::digest::window_of(&hours);
        assert_eq!(
            (n, xor),
            (head.rows, head.xor),
            "case {i}: hour digests agree"
        );
        // Through admission (on PostgreSQL a poll's rows come from the admission statement).
        let head = rt.block_on(async {
            let a = s
                .admit(ask(t, 20_261_001, 1_000, 1), Some(q))
                .await
                .unwrap()
                .unwrap();
            let stream = a.head.expect("report started").await.unwrap().unwrap();
            let mut chunks = stream.chunks;
            while let Some(c) = chunks.recv().await {
                c.unwrap();
            }
            free(a.slot).await;
            stream.head
        });
        assert_eq!(
            (head.rows, head.xor),
            (want.len() as u64, xor_of(want)),
            "case {i}: admitted"
        );
    }
}

fn feed_pages_end_at_their_byte_budget(s: &Store, _: &Fixture) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let rows: Vec<Interaction> = (0..5)
        .map(|i| rec(&format!("r{i}"), 20_261_001_080_000 + i, &"x".repeat(100)))
        .collect();
    ingest(s, op.id, &rows);
    let rt = runtime();
    let size = rows[0].json.len();
    // A budget of two rows' bytes: pages of two, the last one of one, then an empty page.
    let mut after = 0;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = rt
            .block_on(s.feed(op.id, after, 10, 2 * size))
            .unwrap()
            .unwrap();
        if page.rows.is_empty() {
            assert!(!page.more, "an empty page is the end");
            assert_eq!(page.last, after);
            break;
        }
        pages.push((page.rows.len(), page.more));
        seen.extend(page.rows);
        after = page.last;
    }
    assert_eq!(pages, [(2, true), (2, true), (1, false)]);
    let want: Vec<Vec<u8>> = rows.iter().map(|r| r.json.clone()).collect();
    assert_eq!(seen, want, "every row once, in order");
    // A budget smaller than a row still gives one row; a full page needs no `more`.
    let page = rt.block_on(s.feed(op.id, 0, 10, 1)).unwrap().unwrap();
    assert_eq!((page.rows.len(), page.more), (1, true));
    let page = rt.block_on(s.feed(op.id, 0, 2, 1 << 20)).unwrap().unwrap();
    assert_eq!((page.rows.len(), page.more), (2, false));
    let page = rt.block_on(s.feed(op.id, 0, 1, 1)).unwrap().unwrap();
    assert_eq!((page.rows.len(), page.more), (1, false));
    // A cursor never given out is still refused, whatever the budget.
    assert!(
        rt.block_on(s.feed(op.id, after + 1, 10, 1))
            .unwrap()
            .is_none()
    );
}
