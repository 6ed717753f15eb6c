//! The ingestion rules (docs/api.md, "POST /api/v2/interactions"), in one place, for every way
//! records arrive: the HTTP endpoint and `voxtrail import` both call [`ingest`].
//!
//! It owns: reading records from NDJSON, JSON arrays and CSV; validating each one into a
//! [`Interaction`] (the `chat_12` JSON object serialised once, here); listing every invalid
//! record as `{index, field, reason}`; telling duplicates from conflicts; all-or-nothing.
//! It knows nothing of HTTP; storage is reached through [`IngestSink`].

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use voxtrail_wire::{Chat12RowRef, IngestSummary, RecordError};

use crate::domain::{Interaction, OperationTz, WallClock};
use crate::store::{IngestSink, InsertOutcome, StoreError};

/// Longest `conn_id` / `agent_id` / `cod_act` accepted, in bytes.
pub const MAX_ID_BYTES: usize = 255;
/// Longest record accepted, in bytes: all fields together, and also one NDJSON line, one CSV
/// record or one JSON array element as read. Readers keep at most this much of a record, so
/// an input without line ends is read in bounded memory (docs/api.md, `POST /api/v2/interactions`).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// The refusal of a record over [`MAX_RECORD_BYTES`].
const TOO_LARGE: &str = "record larger than 16 MiB";
/// Earliest and latest operation-local wall clock accepted as a `date`: years 1000–9999, the
/// four-digit years of `YYYY-mm-dd HH:ii:ss` and of `YYYYmmddHHiiss` report windows.
const EARLIEST_DATE: i64 = 10000101000000; // 1000-01-01 00:00:00
const LATEST_DATE: i64 = 99991231235959; // 9999-12-31 23:59:59
/// The UTF-8 byte-order mark some editors write at the start of a file; skipped in every format.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The formats records can arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    JsonArray,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ndjson" | "jsonl" => Ok(Self::Ndjson),
            "json" => Ok(Self::JsonArray),
            "csv" => Ok(Self::Csv),
            _ => Err(format!("unknown format {s:?} (use ndjson, json or csv)")),
        }
    }

    /// Decides from content: first non-blank byte `[` → JSON array, `{` → NDJSON, else CSV.
    pub fn sniff(head: &[u8]) -> Self {
        let first = head
            .iter()
            .copied()
            .find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
        match first {
            Some(b'[') => Self::JsonArray,
            // Empty input holds no records in any format; NDJSON says so without complaint.
            Some(b'{') | None => Self::Ndjson,
            _ => Self::Csv,
        }
    }
}

/// One field value as sent. Numbers are accepted for ids and kept as their text.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field {
    #[default]
    Absent,
    Text(String),
    /// Present but of a type that cannot be a string (bool, object, array).
    WrongType(&'static str),
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Field, E> {
                Ok(Field::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Field, E> {
                Ok(Field::Text(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Field, E> {
                Ok(Field::Text(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Field, E> {
                Ok(Field::Text(v.to_string()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Field, E> {
                Ok(Field::WrongType("a decimal number"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Field, E> {
                Ok(Field::WrongType("a boolean"))
            }
            fn visit_unit<E>(self) -> Result<Field, E> {
                Ok(Field::Absent)
            }
            fn visit_none<E>(self) -> Result<Field, E> {
                Ok(Field::Absent)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Field, A::Error> {
                while s.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Field::WrongType("an array"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Field, A::Error> {
                while m.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Field::WrongType("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A record as sent, before validation. Unknown keys are ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct RawRecord {
    pub conn_id: Field,
    pub agent_id: Field,
    pub agent_name: Field,
    pub channel: Field,
    pub from: Field,
    pub to: Field,
    pub subject: Field,
    pub body: Field,
    pub date: Field,
    pub cod_act: Field,
    pub description_cod_act: Field,
}

fn err(index: u64, field: &str, reason: impl Into<String>) -> RecordError {
    RecordError {
        index,
        field: field.to_owned(),
        reason: reason.into(),
    }
}

mod read;
pub use read::{RecordIter, read_csv, read_json_array, read_ndjson};

const REQUIRED: [&str; 5] = ["conn_id", "agent_id", "from", "to", "date"];

/// Validates one record and serialises its `chat_12` object. Every problem is reported.
pub fn validate(
    raw: RawRecord,
    index: u64,
    tz: OperationTz,
) -> Result<Interaction, Vec<RecordError>> {
    let mut errors = Vec::new();
    let mut text = |name: &'static str, f: Field, required: bool, max: usize| -> String {
        match f {
            Field::Text(s) if s.is_empty() && required => {
                errors.push(err(index, name, "is required and must not be empty"));
                String::new()
            }
            Field::Text(s) if s.len() > max => {
                errors.push(err(index, name, format!("longer than {max} bytes")));
                String::new()
            }
            Field::Text(s) => s,
            Field::Absent if required => {
                errors.push(err(index, name, "is required"));
                String::new()
            }
            Field::Absent => String::new(),
            Field::WrongType(t) => {
                errors.push(err(index, name, format!("must be a string, not {t}")));
                String::new()
            }
        }
    };
    let conn_id = text("conn_id", raw.conn_id, true, MAX_ID_BYTES);
    let agent_id = text("agent_id", raw.agent_id, true, MAX_ID_BYTES);
    let agent_name = text("agent_name", raw.agent_name, false, 1024);
    let channel = text("channel", raw.channel, false, 64);
    let from = text("from", raw.from, true, 1024);
    let to = text("to", raw.to, true, 64 * 1024);
    let subject = text("subject", raw.subject, false, 64 * 1024);
    let body = text("body", raw.body, false, MAX_RECORD_BYTES);
    let date_text = text("date", raw.date, true, 64);
    let cod_act = text("cod_act", raw.cod_act, false, MAX_ID_BYTES);
    let description_cod_act = text("description_cod_act", raw.description_cod_act, false, 1024);

    for (name, v) in [
        ("conn_id", &conn_id),
        ("agent_id", &agent_id),
        ("cod_act", &cod_act),
    ] {
        if v.chars().any(char::is_control) {
            errors.push(err(index, name, "must not contain control characters"));
        }
    }
    if !channel.is_empty() && channel != "email" {
        errors.push(err(index, "channel", "must be \"email\""));
    }
    if !from.is_empty() && !is_address(&from) {
        errors.push(err(index, "from", "is not an email address"));
    }
    if !to.is_empty() {
        let parts: Vec<&str> = to
            .split([',', ';'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() || !parts.iter().all(|p| is_address(p)) {
            errors.push(err(
                index,
                "to",
                "must be one or more email addresses separated by ',' or ';'",
            ));
        }
    }
    let date = if date_text.is_empty() {
        None
    } else {
        match parse_date(&date_text, tz) {
            Some(d) if (EARLIEST_DATE..=LATEST_DATE).contains(&d.as_i64()) => Some(d),
            Some(_) => {
                errors.push(err(
                    index,
                    "date",
                    "must fall between 1000-01-01 00:00:00 and 9999-12-31 23:59:59 in the operation's time zone",
                ));
                None
            }
            None => {
                errors.push(err(
                    index,
                    "date",
                    "use YYYY-mm-dd HH:ii:ss (operation local time) or RFC 3339 with an offset",
                ));
                None
            }
        }
    };
    let total = conn_id.len()
        + agent_id.len()
        + agent_name.len()
        + from.len()
        + to.len()
        + subject.len()
        + body.len()
        + cod_act.len()
        + description_cod_act.len();
    if total > MAX_RECORD_BYTES {
        errors.push(err(index, "", "record larger than 16 MiB"));
    }
    let Some(date) = date.filter(|_| errors.is_empty()) else {
        return Err(errors);
    };
    let date_str = date.to_string();
    let mut json = Vec::with_capacity(total + 256);
    Chat12RowRef {
        conn_id: &conn_id,
        agent_id: &agent_id,
        agent_name: &agent_name,
        channel: "email",
        from: &from,
        to: &to,
        subject: &subject,
        body: &body,
        date: &date_str,
        cod_act: &cod_act,
        description_cod_act: &description_cod_act,
    }
    .write_json(&mut json);
    Ok(Interaction {
        conn_id,
        date,
        json,
    })
}

/// A plain address (`a@b.co`) or a named one (`Ana <a@b.co>`), without control characters.
fn is_address(s: &str) -> bool {
    let s = s.trim();
    let addr = match (s.rfind('<'), s.ends_with('>')) {
        (Some(open), true) => &s[open + 1..s.len() - 1],
        _ => s,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !s.chars().any(char::is_control)
        && !addr.chars().any(char::is_whitespace)
}

/// `YYYY-mm-dd HH:ii:ss` is already the operation's wall clock (stored as given, even inside a
/// DST gap); an RFC 3339 instant is converted to the operation's wall clock.
pub fn parse_date(s: &str, tz: OperationTz) -> Option<WallClock> {
    if let Ok(wc) = WallClock::parse_display(s) {
        return Some(wc);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| tz.wall_clock_of(t))
}

/// Why a batch was refused. Nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{total} invalid records")]
    Invalid {
        /// Invalid records, all counted.
        total: u64,
        /// Their problems (several per record), for every record or for the first ones only
        /// (see [`ingest_listing`]).
        listed: Vec<RecordError>,
    },
    #[error("{} conn_id already stored with different content", .0.len())]
    Conflicts(Vec<String>),
    #[error("more than {0} records")]
    TooManyRecords(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Progress of a long ingestion, reported every so many records.
pub trait Progress {
    fn records_read(&mut self, _count: u64) {}
}

impl Progress for () {}

/// Valid records offered to the store at a time (one statement on PostgreSQL).
const INSERT_BATCH: usize = 500;

/// Offers the pending records to the sink, in order, and tallies their outcomes.
fn offer(
    sink: &mut dyn IngestSink,
    pending: &mut Vec<Interaction>,
    summary: &mut IngestSummary,
    conflicts: &mut Vec<String>,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    let outcomes = sink.insert_batch(pending)?;
    for (rec, outcome) in pending.drain(..).zip(outcomes) {
        match outcome {
            InsertOutcome::Inserted => summary.inserted += 1,
            InsertOutcome::Duplicate => summary.duplicates += 1,
            InsertOutcome::Conflict => conflicts.push(rec.conn_id),
        }
    }
    Ok(())
}

/// Validates and stores every record of `records` into `sink` as one all-or-nothing batch.
///
/// Records are validated and offered to the open transaction as they are read, a few hundred
/// at a time, so memory does not grow with the input. Once a record is invalid, nothing more is written but reading goes
/// on, to list every invalid record; then everything is rolled back. Every conflict is listed
/// likewise.
pub fn ingest(
    records: RecordIter<'_>,
    tz: OperationTz,
    max_records: Option<usize>,
    sink: Box<dyn IngestSink + '_>,
    progress: &mut dyn Progress,
) -> Result<IngestSummary, IngestError> {
    ingest_listing(records, tz, max_records, sink, progress, usize::MAX)
}

/// [`ingest`], keeping the problems of at most `list_at_most` invalid records in
/// [`IngestError::Invalid`]'s `listed` (its `total` still counts them all), so memory does not
/// grow with the number of invalid records of an unbounded input.
pub fn ingest_listing(
    records: RecordIter<'_>,
    tz: OperationTz,
    max_records: Option<usize>,
    mut sink: Box<dyn IngestSink + '_>,
    progress: &mut dyn Progress,
    list_at_most: usize,
) -> Result<IngestSummary, IngestError> {
    let mut summary = IngestSummary {
        inserted: 0,
        duplicates: 0,
    };
    let mut invalid_total = 0u64;
    let mut listed = Vec::new();
    let mut conflicts = Vec::new();
    let mut count = 0u64;
    let mut pending: Vec<Interaction> = Vec::with_capacity(INSERT_BATCH);
    for (i, item) in records.enumerate() {
        count += 1;
        if let Some(max) = max_records
            && i >= max
        {
            return Err(IngestError::TooManyRecords(max));
        }
        if count.is_multiple_of(10_000) {
            progress.records_read(count);
        }
        // Records are numbered by their position in the whole input, whatever the reader said.
        let parsed = item
            .map_err(|mut e| {
                e.index = i as u64;
                vec![e]
            })
            .and_then(|raw| validate(raw, i as u64, tz));
        match parsed {
            Err(errs) => {
                invalid_total += 1;
                if invalid_total <= list_at_most as u64 {
                    listed.extend(errs);
                }
            }
            // After a conflict, records are still offered (and rolled back at the end) so
            // that every conflicting conn_id is named, not only the first.
            Ok(rec) if invalid_total == 0 => {
                pending.push(rec);
                if pending.len() >= INSERT_BATCH {
                    offer(&mut *sink, &mut pending, &mut summary, &mut conflicts)?;
                }
            }
            Ok(_) => pending.clear(), // nothing more is written once a record is invalid
        }
    }
    progress.records_read(count);
    if invalid_total == 0 {
        offer(&mut *sink, &mut pending, &mut summary, &mut conflicts)?;
    }
    if invalid_total > 0 {
        return Err(IngestError::Invalid {
            total: invalid_total,
            listed,
        });
    }
    if !conflicts.is_empty() {
        return Err(IngestError::Conflicts(conflicts));
    }
    sink.commit()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz() -> OperationTz {
        OperationTz::parse("America/Bogota").unwrap()
    }

    fn line(extra: &str) -> String {
        format!(
            r#"{{"conn_id":"c1","agent_id":"7","from":"a@x.co","to":"b@y.co; c@z.co","date":"2026-10-01 08:15:00"{extra}}}"#
        )
    }

    #[test]
    fn a_valid_record_serialises_in_wire_order_with_email_channel() {
        let raw: RawRecord = serde_json::from_str(&line(r#","subject":"Ñandú \n""#)).unwrap();
        let rec = validate(raw, 0, tz()).unwrap();
        assert_eq!(
            String::from_utf8(rec.json).unwrap(),
            r#"{"conn_id":"c1","agent_id":"7","agent_name":"","channel":"email","from":"a@x.co","to":"b@y.co; c@z.co","subject":"Ñandú \n","body":"","date":"2026-10-01 08:15:00","cod_act":"","description_cod_act":""}"#
        );
    }

    #[test]
    fn rfc3339_is_converted_to_the_operation_wall_clock() {
        let raw: RawRecord =
            serde_json::from_str(&line("").replace("2026-10-01 08:15:00", "2026-10-01T13:15:00Z"))
                .unwrap();
        assert_eq!(
            validate(raw, 0, tz()).unwrap().date.to_string(),
            "2026-10-01 08:15:00"
        );
    }

    #[test]
    fn every_problem_of_a_record_is_listed() {
        let raw: RawRecord = serde_json::from_str(
            r#"{"conn_id":"","agent_id":true,"from":"nobody","to":"x@y.co,","channel":"sms","date":"2026-02-30 00:00:00"}"#,
        )
        .unwrap();
        let errs = validate(raw, 3, tz()).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["conn_id", "agent_id", "channel", "from", "date"]);
        assert!(errs.iter().all(|e| e.index == 3));
    }

    #[test]
    fn ndjson_counts_records_not_blank_lines() {
        let input = format!("\n{}\n   \nnot json\n[1]\n", line(""));
        let items: Vec<_> = read_ndjson(input.as_bytes()).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().index, 1);
        assert_eq!(items[2].as_ref().unwrap_err().reason, "not a JSON object");
    }

    #[test]
    fn json_arrays_report_bad_elements_individually() {
        let input = format!("[{}, 5, {}]", line(""), line(""));
        let items: Vec<_> = read_json_array(input.as_bytes()).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].as_ref().unwrap_err().index, 1);
        let broken: Vec<_> = read_json_array(&b"[{\"a\":"[..]).collect();
        assert!(
            broken[0]
                .as_ref()
                .unwrap_err()
                .reason
                .starts_with("invalid JSON array")
        );
    }

    #[test]
    fn csv_requires_its_columns_and_reads_quoted_text() {
        let ok = "conn_id,agent_id,from,to,date,body\nc1,7,a@x.co,b@y.co,2026-10-01 08:15:00,\"hola,\n\"\"mundo\"\"\"\n";
        let items: Vec<_> = read_csv(ok.as_bytes()).collect();
        let raw = items[0].clone().unwrap();
        assert_eq!(raw.body, Field::Text("hola,\n\"mundo\"".into()));
        let missing: Vec<_> = read_csv("conn_id,from\n1,a@b.c\n".as_bytes()).collect();
        assert_eq!(missing.len(), 1);
        let e = missing[0].as_ref().unwrap_err();
        assert_eq!(e.field, "header");
        assert!(e.reason.ends_with("agent_id, to, date"), "{}", e.reason);
        let ragged: Vec<_> =
            read_csv("conn_id,agent_id,from,to,date\n1,2,3\n".as_bytes()).collect();
        assert!(
            ragged[0]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("invalid CSV record")
        );
    }

    #[test]
    fn sniffing_follows_the_first_non_blank_byte() {
        assert_eq!(Format::sniff(b"  \n["), Format::JsonArray);
        assert_eq!(Format::sniff(b"\xEF\xBB\xBF{"), Format::Ndjson);
        assert_eq!(Format::sniff(b"conn_id,"), Format::Csv);
        assert_eq!(Format::sniff(b""), Format::Ndjson);
        assert_eq!(Format::sniff(b" \n "), Format::Ndjson);
    }

    #[test]
    fn dates_outside_years_1000_to_9999_are_refused() {
        for bad in [
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-12:00",
            "0999-12-31 23:59:59",
            "1000-01-01T04:00:00Z", // 999-12-31 in Bogota
        ] {
            let raw: RawRecord =
                serde_json::from_str(&line("").replace("2026-10-01 08:15:00", bad)).unwrap();
            let errs = validate(raw, 0, tz()).unwrap_err();
            assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
            assert_eq!(errs[0].field, "date");
            assert!(errs[0].reason.contains("between 1000-01-01"), "{bad}");
        }
        for good in [
            "1000-01-01 00:00:00",
            "9999-12-31 23:59:59",
            "9999-12-31T23:59:59-05:00",
        ] {
            let raw: RawRecord =
                serde_json::from_str(&line("").replace("2026-10-01 08:15:00", good)).unwrap();
            assert!(validate(raw, 0, tz()).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped_in_every_format() {
        let nd = format!("\u{feff}{}\n{}\n", line(""), line(""));
        assert!(read_ndjson(nd.as_bytes()).all(|r| r.is_ok()));
        let arr = format!("\u{feff} [{}]", line(""));
        let items: Vec<_> = read_json_array(arr.as_bytes()).collect();
        assert!(items.len() == 1 && items[0].is_ok(), "{items:?}");
        let csv = "\u{feff}conn_id,agent_id,from,to,date\nc1,7,a@x.co,b@y.co,2026-10-01 08:15:00\n";
        assert!(read_csv(csv.as_bytes()).all(|r| r.is_ok()));
        // Only at the very start: a BOM on a later line is not skipped.
        let later = format!("{}\n\u{feff}{}\n", line(""), line(""));
        let items: Vec<_> = read_ndjson(later.as_bytes()).collect();
        assert!(items[1].is_err());
    }

    #[test]
    fn json_arrays_are_split_at_top_level_commas_only() {
        let tricky = r#"{"conn_id":"a,]}[\"","agent_id":"7","from":"a@x.co","to":"b@y.co","date":"2026-10-01 08:15:00","x":[1,{"y":[]}]}"#;
        let input = format!(" [ {tricky} ,\n{}\t] \n", line(""));
        let items: Vec<_> = read_json_array(input.as_bytes()).collect();
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(
            items[0].as_ref().unwrap().conn_id,
            Field::Text("a,]}[\"".into())
        );
        assert!(items[1].is_ok());
        assert_eq!(read_json_array(&b" [ ] "[..]).count(), 0);
        let after: Vec<_> = read_json_array(&b"[] x"[..]).collect();
        assert!(
            after[0]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("after the closing")
        );
        let not_array: Vec<_> = read_json_array(&b"{\"a\":1}"[..]).collect();
        assert_eq!(
            not_array[0].as_ref().unwrap_err().reason,
            "expected a JSON array of objects"
        );
        let empty: Vec<_> = read_json_array(&b""[..]).collect();
        assert_eq!(empty.len(), 1);
        let trailing: Vec<_> = read_json_array(&b"[{}, ]"[..]).collect();
        assert!(trailing[0].is_ok() && trailing[1].is_err());
    }

    #[test]
    fn oversized_records_are_refused_without_being_kept() {
        let huge = "x".repeat(MAX_RECORD_BYTES + 10);
        // NDJSON: the long line is refused by its line number; the next line is still read.
        let nd = format!("\n{{\"body\":\"{huge}\"}}\n{}\n", line(""));
        let items: Vec<_> = read_ndjson(nd.as_bytes()).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].as_ref().unwrap_err().reason,
            "line 2: record larger than 16 MiB"
        );
        assert!(items[1].is_ok());
        // A line with no end at all.
        let items: Vec<_> = read_ndjson(huge.as_bytes()).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].as_ref().unwrap_err().reason.contains("16 MiB"));
        // JSON array: the element is refused, its neighbours read.
        let arr = format!("[{}, {{\"body\":\"{huge}\"}}, {}]", line(""), line(""));
        let items: Vec<_> = read_json_array(arr.as_bytes()).collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[2].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().reason, TOO_LARGE);
        // CSV: an unclosed quote would read to the end of input; it stops at the bound.
        let csv = format!(
            "conn_id,agent_id,from,to,date,body\nc1,7,a@x.co,b@y.co,2026-10-01 08:15:00,ok\nc2,7,a@x.co,b@y.co,2026-10-01 08:15:00,\"{huge}{huge}"
        );
        let items: Vec<_> = read_csv(csv.as_bytes()).collect();
        assert_eq!(
            items.len(),
            2,
            "{:?}",
            items.iter().map(|r| r.as_ref().err()).collect::<Vec<_>>()
        );
        assert!(items[0].is_ok());
        assert_eq!(
            items[1].as_ref().unwrap_err().reason,
            "line 3: record larger than 16 MiB"
        );
    }

    /// A sink that stores nothing (every record is invalid in these tests).
    struct NoSink;
    impl IngestSink for NoSink {
        fn insert(&mut self, _: &Interaction) -> Result<InsertOutcome, StoreError> {
            Ok(InsertOutcome::Inserted)
        }
        fn commit(self: Box<Self>) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[test]
    fn the_listing_can_be_capped_while_every_invalid_record_is_counted() {
        let input = "not json\n".repeat(1000);
        let result = ingest_listing(
            read_ndjson(input.as_bytes()),
            tz(),
            None,
            Box::new(NoSink),
            &mut (),
            100,
        );
        let Err(IngestError::Invalid { total, listed }) = result else {
            panic!("{result:?}");
        };
        assert_eq!(total, 1000);
        assert_eq!(listed.len(), 100);
        assert_eq!(listed.last().unwrap().index, 99);
    }
}
