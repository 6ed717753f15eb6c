//! The console's store calls, written once and run against SQLite and PostgreSQL (a fresh
//! database per test; without a reachable PostgreSQL that half is skipped, except with
//! `CI=true`): sessions, overview counts, keyset pages, word search, one interaction, use.

use voxtrail_server::domain::{Interaction, OperationTz, Scope, TokenSecret, WallClock, Window};
use voxtrail_server::store::MirrorDef;
use voxtrail_server::store::Store;
use voxtrail_server::store::console::{
    Bucket, ListQuery, Overview, SESSION_TTL_SECS, search_words,
};
use voxtrail_server::store::testing::TestDatabase;

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
    Some(Fixture {
        store: Store::open(&db.url).unwrap(),
        _db: Some(db),
        _dir: None,
    })
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { let f = super::sqlite(); super::$name(&f.store); } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if let Some(f) = super::postgres(concat!("console_", stringify!($name))) {
                    super::$name(&f.store);
                }
            } )*
        }
    };
}

both!(
    sessions_live_until_expiry_revocation_or_sign_out,
    overview_counts_the_report_window,
    pages_are_keyset_and_search_finds_whole_words,
    one_interaction_belongs_to_its_operation,
    overview_stays_exact_across_the_indexer_and_replaced_rows,
    search_stays_exact_across_the_indexer_and_replaced_rows,
);

fn tz() -> OperationTz {
    OperationTz::parse("America/Bogota").unwrap()
}

fn interaction(conn_id: &str, ts: i64, agent: &str, subject: &str, body: &str) -> Interaction {
    let date = WallClock::from_i64(ts).unwrap();
    let json = serde_json::json!({
        "conn_id": conn_id, "agent_id": agent, "agent_name": format!("Agent {agent}"),
        "channel": "email", "from": "a@cc.co", "to": format!("{conn_id}@x.co"),
        "subject": subject, "body": body, "date": date.display(),
        "cod_act": if ts % 2 == 0 { "A" } else { "B" }, "description_cod_act": "d",
    });
    Interaction {
        conn_id: conn_id.into(),
        date,
        json: serde_json::to_vec(&json).unwrap(),
    }
}

fn store_rows(s: &Store, op: i64, rows: &[Interaction]) {
    let mut tx = s.begin_ingest(op).unwrap();
    tx.insert_batch(rows).unwrap();
    tx.commit().unwrap();
}

fn sessions_live_until_expiry_revocation_or_sign_out(s: &Store) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let secret = TokenSecret::generate();
    let id = s
        .create_token(op.id, &secret.hash(), Scope::Console, "", None)
        .unwrap();
    let report = s
        .create_token(
            op.id,
            &TokenSecret::generate().hash(),
            Scope::Report,
            "",
            None,
        )
        .unwrap();
    let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let now = 1_800_000_000;
    s.create_console_session(&a, id, now).unwrap();
    s.create_console_session(&b, id, now).unwrap();
    s.create_console_session(&c, report, now).unwrap();
    let t = s
        .console_session(&a, now + 1)
        .unwrap()
        .expect("live session");
    assert_eq!((t.id, t.operation.id, t.scope), (id, op.id, Scope::Console));
    assert!(
        s.console_session(&c, now).unwrap().is_none(),
        "not a console token"
    );
    assert!(s.console_session(&[9; 32], now).unwrap().is_none());
    assert!(
        s.console_session(&a, now + SESSION_TTL_SECS)
            .unwrap()
            .is_none(),
        "12 h"
    );
    s.delete_console_session(&a).unwrap();
    assert!(s.console_session(&a, now).unwrap().is_none(), "signed out");
    assert!(s.console_session(&b, now).unwrap().is_some());
    s.revoke_token(id).unwrap();
    assert!(s.console_session(&b, now).unwrap().is_none(), "revoked");
}

fn overview_counts_the_report_window(s: &Store) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let other = s.create_operation("other", tz(), 10).unwrap();
    let rows: Vec<Interaction> = (0..40)
        .map(|i| {
            let ts = 20261001000000 + (i / 10) * 1_000_000 + (i % 10) * 10000;
            interaction(
                &format!("c{i}"),
                ts,
                if i % 4 == 0 { "7" } else { "8" },
                "s",
                "b",
            )
        })
        .collect();
    store_rows(s, op.id, &rows);
    store_rows(s, other.id, &rows[..5]);
    let w = Window::parse("20261001000000", "20261003235959", 31).unwrap();
    let o = s.console_overview(op.id, w, Bucket::Day).unwrap();
    assert_eq!(o.total, 30);
    assert_eq!(
        o.buckets,
        vec![(20261001, 10), (20261002, 10), (20261003, 10)]
    );
    assert_eq!(o.agents[0], ("8".into(), "Agent 8".into(), 22));
    assert_eq!(o.agents[1], ("7".into(), "Agent 7".into(), 8));
    let h = s
        .console_overview(
            op.id,
            Window::parse("20261004000000", "20261004235959", 31).unwrap(),
            Bucket::Hour,
        )
        .unwrap();
    assert_eq!(h.total, 10);
    assert_eq!(h.buckets[0], (2026100400, 1));
    assert_eq!(h.codes.iter().map(|c| c.2).sum::<u64>(), 10);
}

fn pages_are_keyset_and_search_finds_whole_words(s: &Store) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let big = "palabra ".repeat(140_000); // ~1 MB
    let mut rows: Vec<Interaction> = (0..30)
        .map(|i| {
            // Three rows share each second, so the cursor's seq matters.
            let ts = 20261001080000 + i / 3;
            let subject = if i % 5 == 0 {
                "Factura Pendiente"
            } else {
                "Hola"
            };
            interaction(&format!("c{i:02}"), ts, "7", subject, "cuerpo")
        })
        .collect();
    rows.push(interaction(
        "nul",
        20261001070000,
        "7",
        "x",
        "a\u{0}b zanahoria",
    ));
    rows.push(interaction("big", 20261001070001, "7", "x", &big));
    rows.push(interaction(
        "rtl",
        20261001070002,
        "7",
        "\u{202E}evil",
        "<b>zebra</b>",
    ));
    store_rows(s, op.id, &rows);
    let w = Window::parse("20261001000000", "20261001235959", 31).unwrap();
    let q = |words: &str, before| ListQuery {
        operation_id: op.id,
        window: w,
        agent: None,
        recipient: None,
        words: search_words(words),
        before,
        limit: 7,
    };
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s.console_list(&q("", before)).unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| (r.local_ts, r.seq));
        seen.extend(page.into_iter().map(|r| (r.local_ts, r.seq)));
    }
    assert_eq!(seen.len(), 33, "every row once");
    assert!(
        seen.windows(2).all(|p| p[0] > p[1]),
        "newest first, strictly"
    );
    let found = |words: &str| s.console_list(&q(words, None)).unwrap().len();
    // First with nothing indexed yet (SQLite: every row above the watermark, found by the scan),
    // then again once the indexer has caught up (FTS5).
    for indexed in [false, true] {
        if indexed {
            while s.index_search_batch(10).unwrap() > 0 {}
        }
        search_finds_whole_words(&found);
    }
    let mut agent = q("", None);
    agent.agent = Some("8".into());
    assert!(s.console_list(&agent).unwrap().is_empty());
    let mut to = q("", None);
    to.recipient = Some("C07@X".into());
    assert_eq!(s.console_list(&to).unwrap().len(), 1);
}

fn search_finds_whole_words(found: &dyn Fn(&str) -> usize) {
    assert_eq!(found("factura"), 6);
    assert_eq!(found("FACTURA pendiente"), 6);
    assert_eq!(found("factura hola"), 0, "all words");
    assert_eq!(
        found("zanahoria"),
        1,
        "a NUL in the body does not stop indexing"
    );
    assert_eq!(found("palabra"), 1, "a 1 MB body is indexed");
    assert_eq!(found("zebra"), 1, "words inside markup");
    assert_eq!(
        found("\"*( ) -^:"),
        7,
        "operators are not words: no filter, a full page"
    );
    assert_eq!(found("factur"), 0, "whole words only, no prefixes");
}

fn one_interaction_belongs_to_its_operation(s: &Store) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let other = s.create_operation("other", tz(), 10).unwrap();
    store_rows(
        s,
        op.id,
        &[interaction("mine", 20261001080000, "7", "s", "b")],
    );
    let row = s.console_interaction(op.id, "mine").unwrap().unwrap();
    assert_eq!(row.local_ts, 20261001080000);
    assert!(s.console_interaction(other.id, "mine").unwrap().is_none());
    assert!(
        s.console_interaction(op.id, "'; DROP TABLE x; --")
            .unwrap()
            .is_none()
    );
    let uses = s.console_tokens(op.id, 20261001).unwrap();
    assert!(uses.is_empty());
}

/// The SQLite store of a fixture, for its word-search watermark.
fn sqlite_of(s: &Store) -> &voxtrail_server::store::SqliteStore {
    match s {
        Store::Sqlite(s) => s,
        _ => panic!("a SQLite store"),
    }
}

/// Conn ids of every page of a word search, 4 rows a page.
fn search_all(s: &Store, op: i64, words: &[String]) -> Vec<String> {
    let w = Window::parse("20261001000000", "20261001235959", 31).unwrap();
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .console_list(&ListQuery {
                operation_id: op,
                window: w,
                agent: None,
                recipient: None,
                words: words.to_vec(),
                before,
                limit: 4,
            })
            .unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        before = Some((last.local_ts, last.seq));
        for r in page {
            let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
            out.push(v["conn_id"].as_str().unwrap().to_owned());
        }
    }
}

#[test]
fn sqlite_search_is_exact_across_the_watermark_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let s = Store::open(&url).unwrap();
    let op = s.create_operation("acme", tz(), 10).unwrap();
    // Arrival order differs from time order, so each page mixes indexed and unindexed rows.
    let rows: Vec<Interaction> = (0..25)
        .map(|i| {
            let ts = 20261001080000 + (i * 7) % 25;
            let body = if i % 2 == 0 {
                "su Factura, gracias"
            } else {
                "nada"
            };
            interaction(&format!("c{i:02}"), ts, "7", "Hola", body)
        })
        .collect();
    store_rows(&s, op.id, &rows[..20]);
    let words = search_words("factura");
    let expected: Vec<String> = {
        let mut v: Vec<(i64, usize)> = (0..20)
            .filter(|i| i % 2 == 0)
            .map(|i| (20261001080000 + ((i * 7) % 25) as i64, i))
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter().map(|(_, i)| format!("c{i:02}")).collect()
    };
    let sq = sqlite_of(&s);
    assert_eq!(sq.search_indexed_upto().unwrap(), 0, "nothing indexed yet");
    assert_eq!(
        search_all(&s, op.id, &words),
        expected,
        "found before indexing"
    );

    assert_eq!(s.index_search_batch(7).unwrap(), 7, "a batch is bounded");
    let mark = sq.search_indexed_upto().unwrap();
    assert!(mark > 0, "the watermark advances");
    assert_eq!(search_all(&s, op.id, &words), expected, "half indexed");

    // Rows arriving now are found at once, the watermark not moving.
    store_rows(&s, op.id, &rows[20..]);
    assert_eq!(sq.search_indexed_upto().unwrap(), mark);
    let mut more = expected.clone();
    more.extend(["c20", "c22", "c24"].map(String::from));
    let sort = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sort(search_all(&s, op.id, &words)), sort(more.clone()));

    // A restart keeps the watermark; indexing resumes from it and indexes each row once.
    drop(s);
    let s = Store::open(&url).unwrap();
    assert_eq!(sqlite_of(&s).search_indexed_upto().unwrap(), mark);
    let mut total = 0;
    loop {
        let n = s.index_search_batch(7).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 25 - 7, "the rows above the watermark, once");
    assert_eq!(s.index_search_batch(7).unwrap(), 0, "caught up");
    assert_eq!(sort(search_all(&s, op.id, &words)), sort(more));

    // Hostile words reach neither FTS5's query syntax nor SQL, in either arm.
    store_rows(
        &s,
        op.id,
        &[interaction(
            "q",
            20261001090000,
            "7",
            "x",
            "say \"hi\" 100%",
        )],
    );
    for w in [
        "\"",
        "hi\" OR \"x",
        "%",
        "'; DROP TABLE interactions; --",
        "\u{0}",
    ] {
        assert!(search_all(&s, op.id, &[w.to_owned()]).is_empty(), "{w:?}");
    }
    assert_eq!(search_all(&s, op.id, &search_words("HI 100")), ["q"]);
}

/// A row with its own `cod_act` (the fixture's `interaction` derives it from the time).
fn coded(conn_id: &str, ts: i64, agent: &str, code: &str, body: &str) -> Interaction {
    let mut i = interaction(conn_id, ts, agent, "asunto", body);
    let mut v: serde_json::Value = serde_json::from_slice(&i.json).unwrap();
    v["cod_act"] = code.into();
    v["description_cod_act"] = format!("Code {code}").into();
    i.json = serde_json::to_vec(&v).unwrap();
    i
}

/// What the overview must be: every stored row of the window (the report's rule), counted.
fn expected_overview(rows: &[Interaction], w: Window, bucket: Bucket) -> Overview {
    use std::collections::BTreeMap;
    let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
    let mut agents: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut codes: BTreeMap<(String, String), u64> = BTreeMap::new();
    let div = match bucket {
        Bucket::Hour => 10_000,
        Bucket::Day => 1_000_000,
    };
    for r in rows {
        let ts = r.date.as_i64();
        if ts < w.ini().as_i64() || ts > w.end().as_i64() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        *buckets.entry(ts / div).or_default() += 1;
        *agents.entry((s("agent_id"), s("agent_name"))).or_default() += 1;
        *codes
            .entry((s("cod_act"), s("description_cod_act")))
            .or_default() += 1;
    }
    let ranked = |m: BTreeMap<(String, String), u64>| {
        let mut v: Vec<(String, String, u64)> =
            m.into_iter().map(|((a, b), n)| (a, b, n)).collect();
        v.sort_by(|x, y| y.2.cmp(&x.2).then_with(|| x.0.cmp(&y.0)));
        v
    };
    Overview {
        total: buckets.values().sum(),
        buckets: buckets.into_iter().collect(),
        agents: ranked(agents),
        codes: ranked(codes),
    }
}

/// The rows of one operation for the replacement tests: 60 rows over two days, several per
/// hour, at minutes that make windows cut through hours.
fn spread_rows() -> Vec<Interaction> {
    (0..60)
        .map(|i| {
            let day = 20261001 + i / 30;
            let hour = (i * 7) % 24;
            let ts = day * 1_000_000 + hour * 10_000 + (i % 6) * 1_000 + i % 60;
            let body = if i % 3 == 0 { "su factura" } else { "hola" };
            coded(
                &format!("r{i:02}"),
                ts,
                ["7", "8", "9"][(i % 3) as usize],
                ["A", "B"][(i % 2) as usize],
                body,
            )
        })
        .collect()
}

/// Replaces rows through a mirror commit (the one writer that changes stored rows): new agent,
/// code, body and time for some, counted or not yet.
fn replace_rows(s: &Store, op: i64, rows: &mut [Interaction], which: &[usize]) {
    let _ = s.set_mirror(&MirrorDef {
        operation_id: op,
        url: "http://127.0.0.1:9".into(),
        token: "t".into(),
        since: WallClock::from_i64(20261001000000).unwrap(),
        every_secs: 60,
        lookback_secs: 0,
        window_secs: 3600,
    });
    let mut changed = Vec::new();
    for &i in which {
        let old = &rows[i];
        let ts = old.date.as_i64() + if i % 2 == 0 { 10_000 } else { 0 };
        rows[i] = coded(&old.conn_id, ts, "Z", "Q", "nueva factura");
        changed.push(rows[i].clone());
    }
    let out = s
        .mirror_commit(op, &changed, WallClock::from_i64(20261002235959).unwrap())
        .unwrap();
    assert_eq!(out.updated, which.len() as u64);
}

fn overview_stays_exact_across_the_indexer_and_replaced_rows(s: &Store) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let other = s.create_operation("other", tz(), 10).unwrap();
    let mut rows = spread_rows();
    store_rows(s, op.id, &rows[..40]);
    store_rows(s, other.id, &rows[..10]);
    let windows = [
        ("20261001000000", "20261002235959", Bucket::Day),
        ("20261001000000", "20261002235959", Bucket::Hour),
        ("20261001033000", "20261002154559", Bucket::Hour),
        ("20261001070500", "20261001071000", Bucket::Hour),
        ("20261002000000", "20261002005959", Bucket::Day),
    ];
    let check = |rows: &[Interaction], stage: &str| {
        for (a, b, bucket) in windows {
            let w = Window::parse(a, b, 31).unwrap();
            assert_eq!(
                s.console_overview(op.id, w, bucket).unwrap(),
                expected_overview(rows, w, bucket),
                "{stage}: {a}..{b} {bucket:?}"
            );
        }
    };
    check(&rows[..40], "nothing counted");
    assert_eq!(s.index_search_batch(15).unwrap(), 15, "a bounded batch");
    check(&rows[..40], "partly counted");
    store_rows(s, op.id, &rows[40..]);
    check(&rows, "new rows");
    // Replaced: rows counted already (low positions) and rows not counted yet.
    replace_rows(s, op.id, &mut rows, &[1, 2, 5, 44, 51]);
    check(&rows, "replaced, partly counted");
    while s.index_search_batch(15).unwrap() > 0 {}
    check(&rows, "all counted");
    replace_rows(s, op.id, &mut rows, &[0, 2, 3, 59]);
    check(&rows, "replaced after counting");
    while s.index_search_batch(15).unwrap() > 0 {}
    check(&rows, "counted again");
    assert_eq!(s.index_search_batch(15).unwrap(), 0, "caught up");
}

fn search_stays_exact_across_the_indexer_and_replaced_rows(s: &Store) {
    let op = s.create_operation("acme", tz(), 10).unwrap();
    let other = s.create_operation("other", tz(), 10).unwrap();
    let mut rows = spread_rows();
    store_rows(s, op.id, &rows[..40]);
    store_rows(s, other.id, &rows[..10]);
    let window = Window::parse("20261001000000", "20261002235959", 31).unwrap();
    let check = |rows: &[Interaction], stage: &str| {
        let want: Vec<(i64, String)> = rows
            .iter()
            .filter(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
                v["body"].as_str().unwrap().contains("factura")
            })
            .map(|r| (r.date.as_i64(), r.conn_id.clone()))
            .collect();
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let page = s
                .console_list(&ListQuery {
                    operation_id: op.id,
                    window,
                    agent: None,
                    recipient: None,
                    words: search_words("factura"),
                    before,
                    limit: 4,
                })
                .unwrap();
            let Some(last) = page.last() else { break };
            before = Some((last.local_ts, last.seq));
            for r in page {
                let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
                got.push((r.local_ts, v["conn_id"].as_str().unwrap().to_owned()));
            }
        }
        let key = |v: &mut Vec<(i64, String)>| v.sort();
        let (mut a, mut b) = (got.clone(), want.clone());
        key(&mut a);
        key(&mut b);
        assert_eq!(a, b, "{stage}");
        assert!(
            got.windows(2).all(|p| p[0].0 >= p[1].0),
            "{stage}: newest first"
        );
    };
    check(&rows[..40], "nothing indexed");
    s.index_search_batch(15).unwrap();
    check(&rows[..40], "partly indexed");
    store_rows(s, op.id, &rows[40..]);
    replace_rows(s, op.id, &mut rows, &[1, 3, 6, 44]);
    check(&rows, "replaced, partly indexed");
    while s.index_search_batch(15).unwrap() > 0 {}
    check(&rows, "all indexed");
    // A replaced row loses its old words too.
    let mut gone = rows[0].clone();
    let mut v: serde_json::Value = serde_json::from_slice(&gone.json).unwrap();
    v["body"] = "sin palabras".into();
    gone.json = serde_json::to_vec(&v).unwrap();
    rows[0] = gone.clone();
    s.mirror_commit(op.id, &[gone], WallClock::from_i64(20261002235959).unwrap())
        .unwrap();
    check(&rows, "a word removed");
    while s.index_search_batch(15).unwrap() > 0 {}
    check(&rows, "a word removed, indexed");
}
