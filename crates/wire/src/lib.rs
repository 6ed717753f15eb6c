//! The JSON shapes of the Wolkvox Reports Manager API as voxtrail speaks them.
//!
//! This crate owns the wire format only: the envelope `{"code","error","msg","data"}`, the
//! `chat_12` row with its exact key order, the `token_info` row and the ingestion summary.
//! It knows nothing of HTTP, storage or the domain; both the server and the client SDK depend
//! on it and convert to their own types at the edge. [`wall_clock`] is the one parser and
//! formatter of the `YYYYmmddHHiiss` times both of them send and check.

use serde::{Deserialize, Serialize};

pub mod feed;
pub mod hours;
pub mod wall_clock;

/// The name of the only report voxtrail serves.
pub const CHAT_12: &str = "chat_12";

/// The eleven fields of a `chat_12` row, in wire order.
pub const CHAT_12_FIELDS: [&str; 11] = [
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
];

/// One row of report `chat_12`. Field order is the wire order; every value is a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Chat12Row {
    pub conn_id: String,
    pub agent_id: String,
    pub agent_name: String,
    pub channel: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub date: String,
    #[serde(default)]
    pub cod_act: String,
    #[serde(default)]
    pub description_cod_act: String,
}

/// Borrowed view of a `chat_12` row, used to serialise without cloning.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Chat12RowRef<'a> {
    pub conn_id: &'a str,
    pub agent_id: &'a str,
    pub agent_name: &'a str,
    pub channel: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub date: &'a str,
    pub cod_act: &'a str,
    pub description_cod_act: &'a str,
}

impl Chat12RowRef<'_> {
    /// Appends the row's JSON object (`{"conn_id":…}`) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serialising plain strings into a Vec cannot fail.
        serde_json::to_writer(out, self).expect("serialising strings into a Vec");
    }
}

/// The `token_info` row of `information.php?api=token_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfoRow {
    pub description: String,
    pub token_limit: String,
    pub token_use_today: String,
    pub all_token_today: String,
    pub available_consumption_options: String,
}

/// The generic envelope. `data` is whatever the endpoint returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub code: String,
    pub error: Option<String>,
    pub msg: String,
    pub data: T,
}

/// One invalid record of an ingestion batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    pub index: u64,
    pub field: String,
    pub reason: String,
}

/// `data` of a successful ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestSummary {
    pub inserted: u64,
    pub duplicates: u64,
}

/// The opening bytes of a successful report answer holding `count` rows.
pub fn report_head(count: u64) -> String {
    format!(r#"{{"code":"200","error":null,"msg":"{count} records were found","data":["#)
}

/// The closing bytes of a successful report answer.
pub const REPORT_TAIL: &[u8] = b"]}";

/// An error body: `{"code":"<status>","error":"<type>","msg":"<message>","data":[]}`.
pub fn error_body(status: u16, error: &str, msg: &str) -> Vec<u8> {
    error_body_with(status, error, msg, &serde_json::Value::Array(Vec::new()))
}

/// An error body whose `data` carries details (ingestion errors).
pub fn error_body_with<T: Serialize>(status: u16, error: &str, msg: &str, data: &T) -> Vec<u8> {
    let env = Envelope {
        code: status.to_string(),
        error: Some(error.to_owned()),
        msg: msg.to_owned(),
        data,
    };
    serde_json::to_vec(&env).expect("serialising an error envelope")
}

/// A successful envelope around `data`.
pub fn ok_body<T: Serialize>(msg: &str, data: &T) -> Vec<u8> {
    let env = Envelope {
        code: "200".to_owned(),
        error: None,
        msg: msg.to_owned(),
        data,
    };
    serde_json::to_vec(&env).expect("serialising an envelope")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_come_out_in_wire_order() {
        let row = Chat12RowRef {
            conn_id: "1",
            agent_id: "2",
            agent_name: "Ana",
            channel: "email",
            from: "a@x.co",
            to: "b@y.co",
            subject: "Hola",
            body: "línea\n\"dos\"",
            date: "2026-10-01 08:15:00",
            cod_act: "7",
            description_cod_act: "Venta",
        };
        let mut out = Vec::new();
        row.write_json(&mut out);
        let text = String::from_utf8(out).unwrap();
        let mut last = 0;
        for f in CHAT_12_FIELDS {
            let at = text.find(&format!("\"{f}\":")).unwrap();
            assert!(at >= last, "{f} out of order in {text}");
            last = at;
        }
        assert!(text.contains("línea\\n\\\"dos\\\""));
    }

    #[test]
    fn head_and_tail_make_valid_json() {
        let body = [report_head(0).as_bytes(), REPORT_TAIL].concat();
        let v: Envelope<Vec<Chat12Row>> = serde_json::from_slice(&body).unwrap();
        assert_eq!(v.msg, "0 records were found");
        assert_eq!(v.error, None);
    }

    #[test]
    fn error_body_has_the_hosted_shape() {
        let b = error_body(401, "UNAUTHORIZED", "PLEASE ENTER THE WOLKVOX-TOKEN");
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"code":"401","error":"UNAUTHORIZED","msg":"PLEASE ENTER THE WOLKVOX-TOKEN","data":[]}"#
        );
    }
}
