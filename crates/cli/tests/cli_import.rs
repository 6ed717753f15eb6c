//! End-to-end tests of `voxtrail import` (docs/api.md, "POST /api/v2/interactions"; README.md):
//! formats, files and stdin, the summary, duplicates and conflicts, all-or-nothing, every rejected
//! record listed. What was stored is always checked through the report of a real `voxtrail serve`.

mod common;

use std::process::Output;

use common::*;
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A test database with one operation, a report token and helpers to import and read back.
struct Fixture {
    env: Env,
    op: &'static str,
    token: String,
}

impl Fixture {
    fn new(tz: &str) -> Self {
        let env = Env::new();
        env.operation("acme", tz);
        let token = env.token("acme", "report", None);
        Self {
            env,
            op: "acme",
            token,
        }
    }

    fn write(&self, name: &str, content: &[u8]) -> String {
        let p = self.env.path(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    /// `voxtrail import --operation acme EXTRA…` with `stdin`.
    fn import(&self, extra: &[&str], stdin: &[u8]) -> Output {
        let mut args = vec!["import", "--operation", self.op];
        args.extend_from_slice(extra);
        self.env.run_stdin(&args, stdin)
    }

    fn import_ok(&self, extra: &[&str], stdin: &[u8]) -> String {
        let out = self.import(extra, stdin);
        assert!(
            out.status.success(),
            "import {extra:?} failed: {}",
            stderr(&out)
        );
        stderr(&out)
    }

    /// The rows the report returns for a window (each window within 31 days).
    async fn rows(&self, ini: &str, end: &str) -> Vec<Value> {
        let server = self.env.serve(None);
        let resp = client()
            .get(server.report_url(ini, end))
            .header("wolkvox-token", &self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v = json(&resp.bytes().await.unwrap());
        v["data"].as_array().expect("data array").clone()
    }

    /// Every row stored around October 2026 (where most test records live).
    async fn october(&self) -> Vec<Value> {
        self.rows("20260915000000", "20261015000000").await
    }

    async fn conn_ids(&self) -> Vec<String> {
        self.october()
            .await
            .iter()
            .map(|r| r["conn_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A valid NDJSON record on 2026-10-01 with `extra` JSON members appended.
fn rec(conn_id: &str, extra: &str) -> String {
    format!(
        r#"{{"conn_id":"{conn_id}","agent_id":"7","agent_name":"Ana","from":"ana@cc.co","to":"client@x.co","subject":"Hola","body":"Texto","date":"2026-10-01 08:15:00","cod_act":"1","description_cod_act":"Venta"{extra}}}"#
    )
}

/// A record with every field given explicitly (later keys win over `rec`'s defaults).
fn rec_with(conn_id: &str, field: &str, value: &str) -> String {
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(&rec(conn_id, "")).unwrap();
    v.insert(field.to_owned(), serde_json::from_str(value).unwrap());
    serde_json::to_string(&v).unwrap()
}

fn lines(records: &[String]) -> Vec<u8> {
    let mut s = records.join("\n");
    s.push('\n');
    s.into_bytes()
}

/// The summary line says `N inserted, M duplicates`.
fn assert_summary(err: &str, inserted: u64, duplicates: u64) {
    let want = format!("{inserted} inserted, {duplicates} duplicates");
    assert!(err.contains(&want), "summary lacks {want:?}: {err}");
}

/// Lines of stderr that report a rejected record.
fn rejected(err: &str) -> Vec<&str> {
    err.lines()
        .filter(|l| l.to_lowercase().contains("rejected"))
        .collect()
}

/// The stderr lines that name `file` and `record N` (N not followed by another digit).
fn lines_for<'a>(err: &'a str, file: &str, n: u64) -> Vec<&'a str> {
    let needle = format!("record {n}");
    err.lines()
        .filter(|l| {
            l.contains(file)
                && l.match_indices(&needle)
                    .any(|(i, _)| !l[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect()
}

/// The first stderr line that names `file` and `record N`.
fn line_for<'a>(err: &'a str, file: &str, n: u64) -> &'a str {
    lines_for(err, file, n)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no line for {file} record {n} in: {err}"))
}

/// A refused import: non-zero exit and a final line saying nothing was imported.
fn assert_refused(out: &Output) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "expected the import to fail: {err}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.trim().is_empty());
    err
}

// ---------------------------------------------------------------------------------------
// formats, files and stdin
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn ndjson_file_is_imported_with_a_summary_and_text_kept_exactly() {
    let fx = Fixture::new("America/Bogota");
    let body = "Hola José,\n\n  Su pedido «Ñ» 🚚 llegó.\t\"fin\" \\ ";
    let first = rec_with("c-1", "body", &serde_json::to_string(body).unwrap());
    let content = format!(
        "\n{first}\n   \n{}\r\n\n{}\n",
        rec("c-2", ""),
        rec("c-3", r#","channel":"email""#)
    );
    let file = fx.write("in.ndjson", content.as_bytes());
    let err = fx.import_ok(&[&file], b"");
    assert_summary(&err, 3, 0);
    assert!(rejected(&err).is_empty(), "{err}");

    let rows = fx.october().await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0]["conn_id"], "c-1",
        "rows in the order they were stored"
    );
    assert_eq!(rows[0]["body"], body, "text comes back exactly as stored");
    assert_eq!(rows[1]["channel"], "email", "absent channel is email");
    assert_eq!(rows[2]["conn_id"], "c-3");
}

#[tokio::test]
async fn reimporting_the_same_file_finds_only_duplicates() {
    let fx = Fixture::new("America/Bogota");
    let file = fx.write(
        "in.ndjson",
        &lines(&[rec("c-1", ""), rec("c-2", ""), rec("c-3", "")]),
    );
    assert_summary(&fx.import_ok(&[&file], b""), 3, 0);
    assert_summary(&fx.import_ok(&[&file], b""), 0, 3);
    // The same records through stdin and as a JSON array are duplicates too.
    assert_summary(&fx.import_ok(&["-"], &std::fs::read(&file).unwrap()), 0, 3);
    let array = format!("[{},{}]", rec("c-2", ""), rec("c-4", ""));
    assert_summary(&fx.import_ok(&["-"], array.as_bytes()), 1, 1);
    assert_eq!(
        fx.conn_ids().await,
        ["c-1", "c-2", "c-3", "c-4"],
        "nothing stored twice"
    );
}

#[tokio::test]
async fn json_arrays_are_read_from_files_and_stdin() {
    let fx = Fixture::new("America/Bogota");
    let array = format!(" \n\t[\n{},\n{}\n]\n", rec("j-1", ""), rec("j-2", ""));
    let file = fx.write("in.json", array.as_bytes());
    assert_summary(&fx.import_ok(&[&file], b""), 2, 0);
    let stdin = format!("[{}]", rec("j-3", ""));
    assert_summary(
        &fx.import_ok(&["--format", "json", "-"], stdin.as_bytes()),
        1,
        0,
    );
    assert_summary(&fx.import_ok(&["-"], b"[]"), 0, 0);
    assert_eq!(fx.conn_ids().await, ["j-1", "j-2", "j-3"]);
}

const CSV_HEADER: &str =
    "conn_id,agent_id,agent_name,channel,from,to,subject,body,date,cod_act,description_cod_act";

#[tokio::test]
async fn csv_with_bom_quoted_multiline_body_and_any_column_order() {
    let fx = Fixture::new("America/Bogota");
    let csv = format!(
        "\u{feff}{CSV_HEADER}\r\n\
         k-1,7,\"Pérez, Ana\",email,ana@cc.co,\"a@x.co; b@y.co\",Hola,\"línea 1,\n\"\"citada\"\"\n\",2026-10-01 08:15:00,1,Venta\r\n\
         k-2,8,,,ana@cc.co,c@x.co,,,2026-10-01 09:00:00,,\r\n"
    );
    let file = fx.write("in.csv", csv.as_bytes());
    assert_summary(&fx.import_ok(&[&file], b""), 2, 0);

    // Other column order, unknown extra column, only the required columns, from stdin.
    let csv2 =
        "date,extra,to,from,agent_id,conn_id\n2026-10-01 10:00:00,zzz,d@x.co,ana@cc.co,9,k-3\n";
    assert_summary(&fx.import_ok(&["-"], csv2.as_bytes()), 1, 0);
    assert_summary(&fx.import_ok(&["--format", "csv", &file], b""), 0, 2);

    let rows = fx.october().await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        serde_json::json!({
            "conn_id": "k-1", "agent_id": "7", "agent_name": "Pérez, Ana", "channel": "email",
            "from": "ana@cc.co", "to": "a@x.co; b@y.co", "subject": "Hola",
            "body": "línea 1,\n\"citada\"\n", "date": "2026-10-01 08:15:00", "cod_act": "1",
            "description_cod_act": "Venta"
        })
    );
    assert_eq!(rows[1]["agent_name"], "");
    assert_eq!(rows[1]["channel"], "email");
    assert_eq!(rows[2]["conn_id"], "k-3");
    assert_eq!(rows[2]["agent_id"], "9");
    assert_eq!(rows[2]["subject"], "");
}

#[tokio::test]
async fn format_is_sniffed_per_file_and_an_explicit_format_wins() {
    let fx = Fixture::new("America/Bogota");
    let nd = fx.write("data.txt", &lines(&[rec("s-1", "")]));
    let arr = fx.write("data.ndjson", format!("[{}]", rec("s-2", "")).as_bytes());
    let csv = fx.write(
        "data.json",
        format!("{CSV_HEADER}\ns-3,7,,,a@b.co,c@d.co,,,2026-10-01 08:15:00,,\n").as_bytes(),
    );
    // File names do not matter, content does.
    assert_summary(&fx.import_ok(&[&nd, &arr, &csv], b""), 3, 0);
    // --format ndjson on an NDJSON file works; --format csv on a JSON array is read as CSV and refused.
    assert_summary(&fx.import_ok(&["--format", "ndjson", &nd], b""), 0, 1);
    assert_refused(&fx.import(&["--format", "csv", &arr], b""));
    assert_refused(&fx.import(&["--format", "json", &nd], b""));
    assert_summary(&fx.import_ok(&["--format", "ndjson", "-"], b""), 0, 0);
    assert_eq!(fx.conn_ids().await, ["s-1", "s-2", "s-3"]);
}

#[tokio::test]
async fn several_files_and_stdin_are_one_import() {
    let fx = Fixture::new("America/Bogota");
    let a = fx.write("a.ndjson", &lines(&[rec("m-1", ""), rec("m-2", "")]));
    let b = fx.write("b.json", format!("[{}]", rec("m-3", "")).as_bytes());
    let c = fx.write(
        "c.csv",
        format!("{CSV_HEADER}\nm-5,7,,,a@b.co,c@d.co,,,2026-10-01 08:15:00,,\n").as_bytes(),
    );
    let stdin = lines(&[rec("m-4", "")]);
    let err = fx.import_ok(&[&a, &b, "-", &c], &stdin);
    assert_summary(&err, 5, 0);
    assert_eq!(
        err.lines().filter(|l| l.contains("inserted")).count(),
        1,
        "one summary: {err}"
    );
    assert_eq!(fx.conn_ids().await, ["m-1", "m-2", "m-3", "m-4", "m-5"]);
    let twice = fx.import(&["-", &a, "-"], b"");
    assert_refused(&twice);
}

#[tokio::test]
async fn rejected_records_are_numbered_within_their_own_file() {
    let fx = Fixture::new("America/Bogota");
    let a = fx.write("a.ndjson", &lines(&[rec("p-1", ""), rec("p-2", "")]));
    let b = fx.write(
        "b.json",
        format!(
            "[{},{}]",
            rec("p-3", ""),
            rec_with("p-4", "from", r#""nobody""#)
        )
        .as_bytes(),
    );
    let c = fx.write(
        "c.csv",
        format!("{CSV_HEADER}\np-5,7,,,a@b.co,c@d.co,,,2026-10-01 08:15:00,,\np-6,7,,sms,a@b.co,c@d.co,,,2026-10-01 08:15:00,,\n")
            .as_bytes(),
    );
    let err = assert_refused(&fx.import(&[&a, &b, &c], b""));
    assert!(line_for(&err, "b.json", 1).contains("from"), "{err}");
    assert!(line_for(&err, "c.csv", 1).contains("channel"), "{err}");
    assert!(!err.contains("a.ndjson record"), "{err}");
    assert_eq!(rejected(&err).len(), 2, "{err}");
    assert!(fx.conn_ids().await.is_empty());
}

#[tokio::test]
async fn empty_inputs_import_nothing_without_error() {
    let fx = Fixture::new("America/Bogota");
    let header_only = fx.write("header.csv", format!("{CSV_HEADER}\n").as_bytes());
    assert_summary(&fx.import_ok(&[&header_only], b""), 0, 0);
    assert_summary(&fx.import_ok(&["--format", "ndjson", "-"], b"\n\n"), 0, 0);
    // Without --format, an empty export (nothing but blanks) is no records, not a broken CSV.
    let empty = fx.write("empty.ndjson", b"");
    assert_summary(&fx.import_ok(&[&empty], b""), 0, 0);
    assert_summary(&fx.import_ok(&["-"], b" \n\n"), 0, 0);
}

// ---------------------------------------------------------------------------------------
// duplicates, conflicts, all-or-nothing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_conflicting_conn_id_refuses_the_whole_import() {
    let fx = Fixture::new("America/Bogota");
    fx.import_ok(&["-"], &lines(&[rec("c-1", ""), rec("c-2", "")]));
    let changed = rec_with("c-1", "subject", r#""Hola otra vez""#);
    let file = fx.write(
        "conflict.ndjson",
        &lines(&[rec("c-9", ""), changed, rec("c-2", ""), rec("c-10", "")]),
    );
    let out = fx.import(&[&file], b"");
    let err = assert_refused(&out);
    let conflict: Vec<&str> = err.lines().filter(|l| l.contains("conflict")).collect();
    assert!(
        conflict.iter().any(|l| l.contains("c-1")),
        "no conflict line naming c-1: {err}"
    );
    assert!(
        !conflict
            .iter()
            .any(|l| l.contains("c-2") || l.contains("c-9")),
        "{err}"
    );
    assert_eq!(
        fx.conn_ids().await,
        ["c-1", "c-2"],
        "valid records of a refused file were stored"
    );
    let rows = fx.october().await;
    assert_eq!(rows[0]["subject"], "Hola", "the stored record was changed");
}

#[tokio::test]
async fn the_same_conn_id_twice_in_one_import_is_a_duplicate_or_a_conflict() {
    let fx = Fixture::new("America/Bogota");
    let same = lines(&[rec("d-1", ""), rec("d-1", "")]);
    assert_summary(&fx.import_ok(&["-"], &same), 1, 1);
    let differ = lines(&[rec("d-2", ""), rec_with("d-2", "body", r#""otro""#)]);
    let err = assert_refused(&fx.import(&["-"], &differ));
    assert!(
        err.lines()
            .any(|l| l.contains("conflict") && l.contains("d-2")),
        "{err}"
    );
    assert_eq!(fx.conn_ids().await, ["d-1"]);
}

#[tokio::test]
async fn every_invalid_record_is_listed_with_file_number_and_field_and_nothing_is_stored() {
    let fx = Fixture::new("America/Bogota");
    let good = fx.write("good.ndjson", &lines(&[rec("g-1", ""), rec("g-2", "")]));
    let bad_records = [
        rec("v-0", ""),                                      // 0 valid
        rec_with("v-1", "conn_id", r#""""#),                 // 1 conn_id empty
        rec_with("v-2", "from", r#""not an address""#),      // 2 from
        rec_with("v-3", "channel", r#""sms""#),              // 3 channel
        rec("v-4", ""),                                      // 4 valid
        rec_with("v-5", "date", r#""2026-10-01T08:15:00""#), // 5 date without offset
        rec_with("v-6", "agent_id", "true"),                 // 6 agent_id wrong type
        rec_with("v-7", "to", r#""a@x.co, nobody""#),        // 7 to
        rec_with("v-8", "date", r#""2026-02-30 10:00:00""#), // 8 not a real date
        r#"{"conn_id":"v-9"}"#.to_owned(),                   // 9 missing agent_id, from, to, date
    ];
    // Blank lines are not records: numbering must ignore them.
    let mut content = String::from("\n");
    for r in &bad_records {
        content.push_str(r);
        content.push_str("\n\n");
    }
    let bad = fx.write("bad.ndjson", content.as_bytes());
    let out = fx.import(&[&good, &bad], b"");
    let err = assert_refused(&out);
    let expected: &[(u64, &[&str])] = &[
        (1, &["conn_id"]),
        (2, &["from"]),
        (3, &["channel"]),
        (5, &["date"]),
        (6, &["agent_id"]),
        (7, &["to"]),
        (8, &["date"]),
        (9, &["agent_id", "from", "to", "date"]),
    ];
    for (n, fields) in expected {
        for f in *fields {
            let hit = lines_for(&err, "bad.ndjson", *n)
                .iter()
                .any(|l| l.contains(f));
            assert!(
                hit,
                "no rejected line for bad.ndjson record {n} naming {f}: {err}"
            );
        }
    }
    for ok in [0, 4] {
        assert!(
            lines_for(&err, "bad.ndjson", ok).is_empty(),
            "valid record {ok} was rejected: {err}"
        );
    }
    assert!(
        !err.contains("good.ndjson record"),
        "a valid file's record was rejected: {err}"
    );
    let listed: std::collections::BTreeSet<&str> = rejected(&err)
        .iter()
        .filter_map(|l| {
            l.split("record ")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .collect();
    assert_eq!(
        listed.len(),
        expected.len(),
        "one or more lines per invalid record only: {err}"
    );
    assert!(
        fx.conn_ids().await.is_empty(),
        "an import with invalid records stored something"
    );
}

#[tokio::test]
async fn many_invalid_records_are_listed_up_to_100_then_counted() {
    let fx = Fixture::new("America/Bogota");
    let records: Vec<String> = (0..1500)
        .map(|i| rec_with(&format!("x-{i}"), "channel", r#""sms""#))
        .collect();
    let err = assert_refused(&fx.import(&["-"], &lines(&records)));
    assert_eq!(
        rejected(&err).len(),
        100,
        "the first 100 rejected records on their own lines"
    );
    line_for(&err, "stdin", 99);
    assert!(err.contains("… and 1400 more invalid records"), "{err}");
    assert!(err.contains("1500 invalid records"), "{err}");
}

#[tokio::test]
async fn malformed_ndjson_lines_are_rejected_records() {
    let fx = Fixture::new("America/Bogota");
    let content = format!(
        "{}\n{{not json\n[1]\n42\n\"text\"\n{}\n{{\"conn_id\":\"t\",\n{}\n",
        rec("n-0", ""),
        rec("n-5", "").replace('}', "}}"),
        rec("n-7", "")
    );
    let file = fx.write("broken.ndjson", content.as_bytes());
    let err = assert_refused(&fx.import(&[&file], b""));
    for n in 1..=6 {
        line_for(&err, "broken.ndjson", n);
    }
    assert_eq!(rejected(&err).len(), 6, "{err}");
    assert!(fx.conn_ids().await.is_empty());
}

#[tokio::test]
async fn bad_json_arrays_are_refused() {
    let fx = Fixture::new("America/Bogota");
    let non_object = format!("[{}, 5, \"x\", null, {}]", rec("a-0", ""), rec("a-4", ""));
    let err = assert_refused(&fx.import(&["-"], non_object.as_bytes()));
    for n in 1..=3 {
        line_for(&err, "stdin", n);
    }
    let truncated = format!("[{}, {{\"conn_id\":\"a-9\"", rec("a-5", ""));
    let file = fx.write("cut.json", truncated.as_bytes());
    let err = assert_refused(&fx.import(&[&file], b""));
    assert!(err.contains("cut.json"), "{err}");
    assert_refused(&fx.import(&["--format", "json", "-"], b"{\"conn_id\":\"a-1\"}"));
    assert_refused(&fx.import(&["-"], b"[1,2"));
    assert!(fx.conn_ids().await.is_empty());
}

#[tokio::test]
async fn bad_csv_is_refused() {
    let fx = Fixture::new("America/Bogota");
    let missing = fx.write("missing.csv", b"conn_id,agent_id,from\nk-1,7,a@b.co\n");
    let err = assert_refused(&fx.import(&[&missing], b""));
    let line = err
        .lines()
        .find(|l| l.contains("missing.csv"))
        .unwrap_or_else(|| panic!("{err}"));
    let named = line.rsplit(':').next().unwrap();
    assert!(
        named.contains("to") && named.contains("date") && !named.contains("conn_id"),
        "the missing columns, and only they, are named: {line}"
    );

    let ragged = "conn_id,agent_id,from,to,date\nk-1,7,a@b.co,c@d.co,2026-10-01 08:15:00\nk-2,7\nk-3,7,a@b.co,c@d.co,2026-10-01 08:15:00,extra\nk-4,7,a@b.co,c@d.co,2026-10-01 08:15:00\n";
    let file = fx.write("ragged.csv", ragged.as_bytes());
    let err = assert_refused(&fx.import(&[&file], b""));
    line_for(&err, "ragged.csv", 1);
    line_for(&err, "ragged.csv", 2);
    assert!(fx.conn_ids().await.is_empty());
}

#[tokio::test]
async fn invalid_utf8_is_refused_in_every_format() {
    let fx = Fixture::new("America/Bogota");
    let mut nd = lines(&[rec("u-0", "")]);
    nd.extend_from_slice(b"{\"conn_id\":\"u-1\",\"agent_id\":\"7\",\"from\":\"a@b.co\",\"to\":\"c@d.co\",\"date\":\"2026-10-01 08:15:00\",\"body\":\"\xff\xfe\"}\n");
    let err = assert_refused(&fx.import(&["-"], &nd));
    line_for(&err, "stdin", 1);

    let mut csv =
        b"conn_id,agent_id,from,to,date,body\nu-2,7,a@b.co,c@d.co,2026-10-01 08:15:00,ok\n"
            .to_vec();
    csv.extend_from_slice(b"u-3,7,a@b.co,c@d.co,2026-10-01 08:15:00,caf\xe9\n");
    let file = fx.write("latin1.csv", &csv);
    let err = assert_refused(&fx.import(&[&file], b""));
    let line = line_for(&err, "latin1.csv", 1);
    assert!(line.contains("body"), "{line}");

    let mut arr = format!("[{},", rec("u-4", "")).into_bytes();
    arr.extend_from_slice(b"{\"conn_id\":\"u-5\xc3\"}]");
    assert_refused(&fx.import(&["-"], &arr));
    assert!(fx.conn_ids().await.is_empty());
}

#[tokio::test]
async fn ids_longer_than_255_bytes_are_refused() {
    let fx = Fixture::new("America/Bogota");
    let max = "i".repeat(255);
    let over = "i".repeat(256);
    let err = assert_refused(&fx.import(&["-"], &lines(&[rec(&max, ""), rec(&over, "")])));
    assert!(line_for(&err, "stdin", 1).contains("conn_id"), "{err}");
    // Multi-byte: 128 × "é" is 256 bytes.
    let err = assert_refused(&fx.import(&["-"], &lines(&[rec(&"é".repeat(128), "")])));
    assert!(line_for(&err, "stdin", 0).contains("conn_id"), "{err}");
    assert!(fx.conn_ids().await.is_empty());
    assert_summary(&fx.import_ok(&["-"], &lines(&[rec(&max, "")])), 1, 0);
    assert_eq!(fx.conn_ids().await, [max]);
}

// ---------------------------------------------------------------------------------------
// field rules
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn dates_are_converted_or_stored_as_given() {
    let fx = Fixture::new("America/New_York");
    let records = [
        rec_with("t-offset", "date", r#""2026-10-01T08:15:00+02:00""#), // 06:15Z = 02:15 EDT
        rec_with("t-zulu", "date", r#""2026-10-01T12:00:00Z""#),        // 08:00 EDT
        rec_with("t-local", "date", r#""2026-10-01 08:15:00""#),
    ];
    assert_summary(&fx.import_ok(&["-"], &lines(&records)), 3, 0);
    let rows = fx.october().await;
    let dates: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["conn_id"].as_str().unwrap(), r["date"].as_str().unwrap()))
        .collect();
    assert_eq!(
        dates,
        [
            ("t-offset", "2026-10-01 02:15:00"),
            ("t-zulu", "2026-10-01 08:00:00"),
            ("t-local", "2026-10-01 08:15:00")
        ]
    );

    // Inside the spring-forward gap of America/New_York: stored and reported as given.
    let gap = [
        rec_with("t-gap", "date", r#""2026-03-08 02:30:00""#),
        rec_with("t-winter", "date", r#""2026-03-08T06:59:59Z""#), // 01:59:59 EST
        rec_with("t-summer", "date", r#""2026-03-08T07:00:00Z""#), // 03:00:00 EDT
    ];
    assert_summary(&fx.import_ok(&["-"], &lines(&gap)), 3, 0);
    let rows = fx.rows("20260308000000", "20260308235959").await;
    let dates: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["conn_id"].as_str().unwrap(), r["date"].as_str().unwrap()))
        .collect();
    assert_eq!(
        dates,
        [
            ("t-winter", "2026-03-08 01:59:59"),
            ("t-gap", "2026-03-08 02:30:00"),
            ("t-summer", "2026-03-08 03:00:00")
        ]
    );
    let inside = fx.rows("20260308023000", "20260308023000").await;
    assert_eq!(
        inside.len(),
        1,
        "a bound inside the gap finds the row stored there"
    );
}

#[tokio::test]
async fn bad_dates_are_rejected() {
    let fx = Fixture::new("America/New_York");
    let bad = [
        "2026-10-01T08:15:00",
        "2026-10-01 08:15",
        "2026-10-01",
        "20261001081500",
        "2026-02-30 10:00:00",
        "2026-10-01 24:00:00",
        "2026-13-01 10:00:00",
        "01/10/2026 08:15:00",
        "2026-10-01 08:15:00 ",
        "",
        "mañana",
    ];
    let records: Vec<String> = bad
        .iter()
        .enumerate()
        .map(|(i, d)| {
            rec_with(
                &format!("b-{i}"),
                "date",
                &serde_json::to_string(d).unwrap(),
            )
        })
        .collect();
    let err = assert_refused(&fx.import(&["-"], &lines(&records)));
    for (i, d) in bad.iter().enumerate() {
        let line = line_for(&err, "stdin", i as u64);
        assert!(
            line.contains("date"),
            "date {d:?} not rejected on its field: {line}"
        );
    }
    assert!(fx.conn_ids().await.is_empty());
}

#[tokio::test]
async fn channel_must_be_email() {
    let fx = Fixture::new("America/Bogota");
    for channel in [
        r#""sms""#,
        r#""Email""#,
        r#""EMAIL""#,
        r#""email ""#,
        "1",
        "false",
    ] {
        let err =
            assert_refused(&fx.import(&["-"], &lines(&[rec_with("ch-1", "channel", channel)])));
        assert!(
            line_for(&err, "stdin", 0).contains("channel"),
            "{channel}: {err}"
        );
    }
    assert_summary(
        &fx.import_ok(&["-"], &lines(&[rec_with("ch-2", "channel", r#""email""#)])),
        1,
        0,
    );
    assert_eq!(fx.conn_ids().await, ["ch-2"]);
}

#[tokio::test]
async fn several_recipients_and_numeric_ids_are_accepted() {
    let fx = Fixture::new("America/Bogota");
    let to = "a@x.co, b@y.co;c@z.co ; Ana Pérez <ana@w.co>";
    let records = [
        rec_with("r-1", "to", &serde_json::to_string(to).unwrap()),
        rec_with("r-2", "agent_id", "1042"),
        rec_with("r-3", "cod_act", "7"),
        r#"{"conn_id":12345,"agent_id":7,"from":"a@b.co","to":"c@d.co","date":"2026-10-01 09:00:00"}"#.to_owned(),
    ];
    assert_summary(&fx.import_ok(&["-"], &lines(&records)), 4, 0);
    let rows = fx.october().await;
    assert_eq!(rows[0]["to"], to, "to stored as given");
    assert_eq!(rows[1]["agent_id"], "1042");
    assert_eq!(rows[2]["cod_act"], "7");
    assert_eq!(rows[3]["conn_id"], "12345");
    assert_eq!(rows[3]["agent_id"], "7");
    assert_eq!(
        rows[3]["subject"], "",
        "absent optional values are empty strings"
    );

    let bad_to = [
        r#""a@x.co,,""#,
        r#""a@x.co; not-an-address""#,
        r#""""#,
        r#"",;""#,
    ];
    let records: Vec<String> = bad_to
        .iter()
        .enumerate()
        .map(|(i, t)| rec_with(&format!("bt-{i}"), "to", t))
        .collect();
    let err = assert_refused(&fx.import(&["-"], &lines(&records)));
    for i in [1, 2, 3] {
        assert!(line_for(&err, "stdin", i).contains("to"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// bad invocations
// ---------------------------------------------------------------------------------------

/// Checks that a refused invocation printed one clear line and stored none of `ids`.
async fn refused_cleanly(fx: &Fixture, out: &Output, needle: &str) {
    let err = assert_refused(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(lines[0].contains(needle), "error lacks {needle:?}: {err}");
    assert!(
        fx.conn_ids().await.is_empty(),
        "a refused import stored records"
    );
}

#[tokio::test]
async fn a_missing_file_refuses_the_whole_import() {
    let fx = Fixture::new("America/Bogota");
    let good = fx.write("good.ndjson", &lines(&[rec("f-1", "")]));
    let missing = fx.env.path("missing.ndjson").display().to_string();
    refused_cleanly(&fx, &fx.import(&[&good, &missing], b""), "missing.ndjson").await;
    refused_cleanly(&fx, &fx.import(&[&missing, &good], b""), "missing.ndjson").await;
    refused_cleanly(
        &fx,
        &fx.import(&[&good, "-", &missing], &lines(&[rec("f-2", "")])),
        "missing.ndjson",
    )
    .await;
}

#[tokio::test]
async fn a_directory_is_not_a_file() {
    let fx = Fixture::new("America/Bogota");
    let good = fx.write("good.ndjson", &lines(&[rec("f-1", "")]));
    let dir = fx.env.dir.path().display().to_string();
    refused_cleanly(&fx, &fx.import(&[&good, &dir], b""), &dir).await;
}

#[tokio::test]
async fn an_unknown_format_or_operation_is_refused() {
    let fx = Fixture::new("America/Bogota");
    let good = fx.write("good.ndjson", &lines(&[rec("f-1", "")]));
    refused_cleanly(&fx, &fx.import(&["--format", "xml", &good], b""), "xml").await;
    let out = fx.env.run(&["import", "--operation", "nope", &good]);
    refused_cleanly(&fx, &out, "nope").await;
    let out = fx.env.run(&["import", "--operation", "acme"]);
    assert!(!out.status.success(), "import without files must fail");
}

#[tokio::test]
async fn a_refused_import_leaves_the_database_usable() {
    let fx = Fixture::new("America/Bogota");
    assert_refused(&fx.import(
        &["-"],
        &lines(&[rec("z-1", ""), rec_with("z-2", "channel", r#""sms""#)]),
    ));
    assert_summary(
        &fx.import_ok(&["-"], &lines(&[rec("z-1", ""), rec("z-2", "")])),
        2,
        0,
    );
    assert_eq!(fx.conn_ids().await, ["z-1", "z-2"]);
}
