//! Tolerant reading of report answers: the envelope as the hosted API really sends it.
//!
//! Owns [`Row`] (a flat report row, keys in the order the server sent them) and
//! [`parse_answer`]. Accepted quirks: `code` as the string `"200"`, the number `200` or `"0"`;
//! `error` as `null`, `"null"` or `""`; `msg` with odd spacing; `data` as an array, as an object
//! of rows (a PHP associative array), as one row object, or absent; values that are numbers or
//! `null` (read as text, `null` as `""`). Knows nothing of HTTP retries or windows.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use voxtrail_wire::{Chat12Row, TokenInfoRow};

/// One report row: field names and values as text, in the order the server sent them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row {
    /// A field name the answers of the known reports use is not allocated for every row
    /// ([`KNOWN_NAMES`]); others are owned.
    fields: Vec<(Cow<'static, str>, String)>,
}

/// Field names of the reports voxtrail knows (`chat_12`, `token_info`, the hours endpoint):
/// a row parsed from an answer refers to these instead of allocating its names again.
const KNOWN_NAMES: [&str; 19] = [
    "conn_id",
    "agent_id",
    "agent_name",
    "channel",
    "from",
    "to",
    "subject",
    "body",
    "date",
    "cod_act",
    "description_cod_act",
    "description",
    "token_limit",
    "token_use_today",
    "all_token_today",
    "available_consumption_options",
    "hour",
    "records",
    "digest",
];

fn field_name(name: &str) -> Cow<'static, str> {
    match KNOWN_NAMES.iter().find(|k| **k == name) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(name.to_owned()),
    }
}

impl Row {
    /// A row from `(name, value)` pairs, kept in that order.
    ///
    /// ```
    /// let row = voxtrail_client::Row::from_pairs([("conn_id", "7"), ("date", "2026-10-01 08:00:00")]);
    /// assert_eq!(row.get("conn_id"), Some("7"));
    /// assert_eq!(row.to_json(), r#"{"conn_id":"7","date":"2026-10-01 08:00:00"}"#);
    /// ```
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            fields: pairs
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into()), v.into()))
                .collect(),
        }
    }

    /// The value of a field, if the row has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_str())
    }

    /// Fields in the order the server sent them.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// The row as a map of field name to value (the last value wins on a repeated name).
    ///
    /// ```
    /// let row = voxtrail_client::Row::from_pairs([("b", "2"), ("a", "1")]);
    /// assert_eq!(row.to_map()["a"], "1");
    /// ```
    pub fn to_map(&self) -> std::collections::BTreeMap<String, String> {
        self.fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the row has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The row as one flat JSON object, keys in the server's order.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Serialising a string cannot fail.
            out.push_str(&serde_json::to_string(k.as_ref()).expect("string"));
            out.push(':');
            out.push_str(&serde_json::to_string(v).expect("string"));
        }
        out.push('}');
        out
    }

    /// The row as a `chat_12` row; a missing field (e.g. `cod_act`) becomes `""`.
    pub fn to_chat12(&self) -> Chat12Row {
        let f = |n: &str| self.get(n).unwrap_or_default().to_owned();
        Chat12Row {
            conn_id: f("conn_id"),
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
        }
    }

    /// The row as a `token_info` row; a missing field becomes `""`.
    pub fn to_token_info(&self) -> TokenInfoRow {
        let f = |n: &str| self.get(n).unwrap_or_default().to_owned();
        TokenInfoRow {
            description: f("description"),
            token_limit: f("token_limit"),
            token_use_today: f("token_use_today"),
            all_token_today: f("all_token_today"),
            available_consumption_options: f("available_consumption_options"),
        }
    }
}

/// A decoded answer envelope, before the client decides what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `code` as text (`"200"` whether it came as a string or a number); empty when absent.
    pub code: String,
    /// `error`, with `null`, `"null"` and `""` read as `None`.
    pub error: Option<String>,
    /// `msg` as sent.
    pub msg: String,
    /// `data` read as rows.
    pub rows: Vec<Row>,
    /// `cursor` (the change feed's answers only; a number is read as its text).
    pub cursor: Option<String>,
    /// A feed page the server ended at its byte budget (the `X-Voxtrail-Feed-More: true`
    /// header, set by the client from the answer's headers): more rows may follow at once.
    pub more: bool,
}

impl Answer {
    /// `msg` upper-cased with runs of white space collapsed, for matching known texts.
    pub fn msg_normalized(&self) -> String {
        normalize(&self.msg)
    }
}

/// Upper-case and collapse white space.
pub(crate) fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// Reads an answer body tolerantly. Fails only when the body is not one complete JSON object
/// (e.g. a truncated answer).
///
/// ```
/// use voxtrail_client::parse_answer;
/// // The hosted API's quirks: numeric code, "null" error, data as an object, no cod_act.
/// let body = br#"{"code":200,"error":"null","msg":" 1  records were found","data":{"0":{"conn_id":"9","date":"2026-10-01 08:00:00"}}}"#;
/// let a = parse_answer(body).unwrap();
/// assert_eq!(a.code, "200");
/// assert_eq!(a.error, None);
/// assert_eq!(a.rows.len(), 1);
/// assert_eq!(a.rows[0].to_chat12().cod_act, "");
/// assert!(parse_answer(br#"{"code":"200","error":null,"msg":"1 records were found","data":[{"con"#).is_err());
/// ```
pub fn parse_answer(body: &[u8]) -> Result<Answer, serde_json::Error> {
    let raw: RawEnvelope = serde_json::from_slice(body)?;
    let code = match raw.code {
        Some(serde_json::Value::String(s)) => s.trim().to_owned(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let error = match raw.error {
        Some(serde_json::Value::String(s)) => {
            let t = s.trim();
            (!t.is_empty() && !t.eq_ignore_ascii_case("null")).then(|| t.to_owned())
        }
        Some(serde_json::Value::Null) | None => None,
        Some(serde_json::Value::Bool(false)) => None,
        Some(other) => Some(other.to_string()),
    };
    let msg = match raw.msg {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let cursor = match raw.cursor {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    Ok(Answer {
        code,
        error,
        msg,
        rows: raw.data.map(|d| d.0).unwrap_or_default(),
        cursor,
        more: false,
    })
}

/// One page of the change feed: its rows in the order the changes became visible, and the
/// cursor to ask for the next page with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    pub rows: Vec<Row>,
    pub cursor: String,
    /// The page is short because the server ended it at its byte budget, not because the
    /// feed is caught up: ask for the next page at once.
    pub more: bool,
}

impl FeedPage {
    /// A page from a `200` answer of the feed, checked whole: a non-empty `cursor`, every element of
    /// `data` a row object (a scalar in it would be a row silently lost, since the cursor
    /// moves past it), as many rows as `msg` says, and no more than `limit`. The error says
    /// what is wrong.
    ///
    /// ```
    /// use voxtrail_client::{FeedPage, parse_answer};
    /// let a = parse_answer(br#"{"code":"200","error":null,"msg":"1 records were found","data":[{"conn_id":"9"}],"cursor":"3.17"}"#).unwrap();
    /// let page = FeedPage::from_answer(a, 1000).unwrap();
    /// assert_eq!((page.rows.len(), page.cursor.as_str()), (1, "3.17"));
    /// let no_cursor = parse_answer(br#"{"code":"200","error":null,"msg":"0 records were found","data":[]}"#).unwrap();
    /// assert!(FeedPage::from_answer(no_cursor, 1000).is_err());
    /// ```
    pub fn from_answer(a: Answer, limit: u32) -> Result<FeedPage, String> {
        let cursor = match a.cursor {
            Some(c) if !c.trim().is_empty() => c,
            _ => return Err("without a cursor: not a change feed".into()),
        };
        let said = normalize(&a.msg)
            .strip_suffix(" RECORDS WERE FOUND")
            .and_then(|n| n.parse::<usize>().ok());
        match said {
            Some(n) if n == a.rows.len() => {}
            Some(n) => {
                return Err(format!(
                    "with {} rows where its msg says {n} (a value in data that is not a row?)",
                    a.rows.len()
                ));
            }
            None => return Err(format!("with an unexpected msg {:?}", a.msg)),
        }
        if a.rows.len() > limit as usize {
            return Err(format!(
                "with {} rows, more than the {limit} asked for",
                a.rows.len()
            ));
        }
        Ok(FeedPage {
            rows: a.rows,
            cursor,
            more: a.more,
        })
    }
}

#[derive(Deserialize)]
struct RawEnvelope {
    code: Option<serde_json::Value>,
    error: Option<serde_json::Value>,
    msg: Option<serde_json::Value>,
    data: Option<Data>,
    cursor: Option<serde_json::Value>,
}

/// A value read as text: strings as they are, `null` as `""`, anything else as its JSON.
fn cell(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = Row;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(11));
        while let Some((FieldName(k), v)) = map.next_entry::<FieldName, serde_json::Value>()? {
            fields.push((k, cell(v)));
        }
        Ok(Row { fields })
    }
}

/// A row's field name, read without allocating when it is a known one.
struct FieldName(Cow<'static, str>);

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldName, E> {
                Ok(FieldName(field_name(v)))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<FieldName, E> {
                Ok(FieldName(match KNOWN_NAMES.iter().find(|k| **k == v) {
                    Some(k) => Cow::Borrowed(k),
                    None => Cow::Owned(v),
                }))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RowVisitor)
    }
}

/// An element of `data` when `data` is an object: a row, or a scalar of a single-row object.
enum Element {
    Row(Row),
    Scalar(serde_json::Value),
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Element;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a row or a value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Element, A::Error> {
                RowVisitor.visit_map(map).map(Element::Row)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Element, A::Error> {
                let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Element::Scalar(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Element, E> {
                Ok(Element::Scalar(serde_json::Value::String(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Element, E> {
                Ok(Element::Scalar(serde_json::Value::String(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Element, E> {
                Ok(Element::Scalar(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Element, E> {
                Ok(Element::Scalar(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Element, E> {
                Ok(Element::Scalar(v.into()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Element, E> {
                Ok(Element::Scalar(v.into()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Element, E> {
                Ok(Element::Scalar(serde_json::Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

/// `data`: an array of rows, an object of rows, one row object, or nothing.
struct Data(Vec<Row>);

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Data;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("report data")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
                let mut rows = Vec::new();
                while let Some(e) = seq.next_element::<Element>()? {
                    if let Element::Row(r) = e {
                        rows.push(r);
                    }
                }
                Ok(Data(rows))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
                let mut rows = Vec::new();
                let mut scalars = Vec::new();
                while let Some((k, e)) = map.next_entry::<String, Element>()? {
                    match e {
                        Element::Row(r) => rows.push(r),
                        Element::Scalar(v) => scalars.push((field_name(&k), cell(v))),
                    }
                }
                if rows.is_empty() && !scalars.is_empty() {
                    rows.push(Row { fields: scalars });
                }
                Ok(Data(rows))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Data, E> {
                Ok(Data(Vec::new()))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Data, E> {
                Ok(Data(Vec::new()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Data, E> {
                Ok(Data(Vec::new()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Data, E> {
                Ok(Data(Vec::new()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Data, E> {
                Ok(Data(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voxtrail_answer_reads_as_is() {
        let body = br#"{"code":"200","error":null,"msg":"2 records were found","data":[{"conn_id":"1","body":"a\nb","date":"2026-10-01 08:15:00"},{"conn_id":"2","date":"x"}]}"#;
        let a = parse_answer(body).unwrap();
        assert_eq!(a.code, "200");
        assert_eq!(a.error, None);
        assert_eq!(a.rows.len(), 2);
        assert_eq!(a.rows[0].get("body"), Some("a\nb"));
        assert_eq!(
            a.rows[0].to_json(),
            r#"{"conn_id":"1","body":"a\nb","date":"2026-10-01 08:15:00"}"#
        );
    }

    #[test]
    fn quirks_of_the_hosted_api() {
        let a = parse_answer(
            br#"{"code":"0","error":"","msg":"ok","data":{"conn_id":"5","n":3,"x":null}}"#,
        )
        .unwrap();
        assert_eq!(a.code, "0");
        assert_eq!(a.rows.len(), 1);
        assert_eq!(a.rows[0].get("n"), Some("3"));
        assert_eq!(a.rows[0].get("x"), Some(""));
        let a = parse_answer(
            br#"{"code":404,"error":"null","msg":"Validate  dates entered","data":{}}"#,
        )
        .unwrap();
        assert_eq!(a.code, "404");
        assert!(a.rows.is_empty());
        assert_eq!(a.msg_normalized(), "VALIDATE DATES ENTERED");
        let a = parse_answer(br#"{"code":"200","msg":"x"}"#).unwrap();
        assert!(a.rows.is_empty());
        assert_eq!(a.cursor, None);
    }

    #[test]
    fn feed_pages_are_taken_only_whole() {
        let page = |body: &str| FeedPage::from_answer(parse_answer(body.as_bytes()).unwrap(), 2);
        let ok = page(
            r#"{"code":"200","error":null,"msg":"2 records were found","data":[{"conn_id":"1"},{"conn_id":"2"}],"cursor":"4.9"}"#,
        )
        .unwrap();
        assert_eq!(ok.rows.len(), 2);
        assert_eq!(ok.cursor, "4.9");
        let end = page(
            r#"{"code":"200","error":null,"msg":"0 records were found","data":[],"cursor":"4.9"}"#,
        )
        .unwrap();
        assert!(end.rows.is_empty());
        // A number is read as its text.
        assert_eq!(
            page(r#"{"code":"200","msg":"0 records were found","data":[],"cursor":12}"#)
                .unwrap()
                .cursor,
            "12"
        );
        for bad in [
            // no cursor, an empty one
            r#"{"code":"200","error":null,"msg":"0 records were found","data":[]}"#,
            r#"{"code":"200","error":null,"msg":"0 records were found","data":[],"cursor":" "}"#,
            r#"{"code":"200","error":null,"msg":"0 records were found","data":[],"cursor":null}"#,
            // a scalar where a row should be: fewer rows than msg says
            r#"{"code":"200","error":null,"msg":"2 records were found","data":[{"conn_id":"1"},7],"cursor":"1.2"}"#,
            // msg unreadable
            r#"{"code":"200","error":null,"msg":"ok","data":[],"cursor":"1.2"}"#,
            // more rows than asked for
            r#"{"code":"200","error":null,"msg":"3 records were found","data":[{"a":"1"},{"a":"2"},{"a":"3"}],"cursor":"1.2"}"#,
        ] {
            assert!(page(bad).is_err(), "{bad}");
        }
    }
}
