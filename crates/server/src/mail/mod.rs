//! Import from the mail system (`voxtrail import`, README.md): RFC 5322 messages from mbox files,
//! single `.eml` files and maildir directories become [`RawRecord`]s that go through the same
//! [`crate::ingest::ingest`] as every other input — validation, duplicates and conflicts,
//! all-or-nothing and durability are not repeated here.
//!
//! Parsing is done by the `mail-parser` crate (with its `full_encoding` feature, so any
//! charset `encoding_rs` knows is decoded). Its own HTML-to-text converter
//! (`mail_parser::decoders::html::html_to_text`, used by `Message::body_text`) turns an
//! HTML-only message into readable text, so no separate HTML crate is needed.
//!
//! A message becomes one record:
//! - `conn_id`: the `Message-ID` without angle brackets, or `sha256:<hex>` of the message bytes
//!   when it has none (so importing the same mailbox twice gives duplicates, not new rows);
//! - `from`: the first `From` address; `agent_id` / `agent_name`: that address looked up,
//!   case-insensitively, in the [`Agents`] mapping;
//! - `to`: every `To` and `Cc` address, joined with `", "`;
//! - `subject`: RFC 2047 encoded words decoded, folding removed;
//! - `date`: the `Date` header (any RFC 5322 form, obsolete zone names included) converted to
//!   the operation's wall clock; in an mbox, the date of the `From ` separator line when the
//!   message has no `Date` header (that date is UTC unless the line carries a numeric offset);
//! - `body`: the text parts decoded (quoted-printable, base64, any charset), or the HTML part
//!   as text when there is no text part; attachments are left out; CRLF becomes LF.
//!
//! A message is *skipped* — never guessed — with a reason when its sender is not mapped, it
//! has no usable date, no `From` address or no `To`/`Cc` recipient, or it cannot be parsed.
//!
//! Here: a message → a record. `mailbox.rs`: reading mbox, `.eml` and maildir into messages.

mod mailbox;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;

use chrono::{FixedOffset, NaiveDate, TimeZone as _};
use mail_parser::MessageParser;
use sha2::{Digest, Sha256};

use crate::domain::OperationTz;
use crate::ingest::{Field, RawRecord};

pub use mailbox::{MboxReader, envelope_date, maildir_files, read_eml};

/// The mail formats `voxtrail import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailFormat {
    Mbox,
    Eml,
    Maildir,
}

impl MailFormat {
    /// `mbox`, `eml` or `maildir`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mbox" => Some(Self::Mbox),
            "eml" => Some(Self::Eml),
            "maildir" => Some(Self::Maildir),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mbox => "mbox",
            Self::Eml => "eml",
            Self::Maildir => "maildir",
        }
    }
}

/// One agent of the mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub name: String,
}

/// Sender address → agent, read from a CSV with the header `email,agent_id,agent_name`
/// (`agent_name` may be left out; other columns are ignored). Addresses match
/// case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct Agents {
    by_email: HashMap<String, Agent>,
}

impl Agents {
    /// Reads the mapping; every problem is listed, one per entry.
    pub fn from_csv<R: Read>(input: R) -> Result<Self, Vec<String>> {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let header = rdr
            .headers()
            .map_err(|e| vec![format!("invalid CSV header: {e}")])?
            .clone();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
        };
        let (Some(email_col), Some(id_col)) = (col("email"), col("agent_id")) else {
            return Err(vec![
                "the header must name the columns email,agent_id,agent_name".to_owned(),
            ]);
        };
        let name_col = col("agent_name");
        let mut by_email: HashMap<String, Agent> = HashMap::new();
        let mut problems = Vec::new();
        for (i, row) in rdr.records().enumerate() {
            let line = i + 2;
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("line {line}: {e}"));
                    continue;
                }
            };
            let email = row.get(email_col).unwrap_or("");
            let id = row.get(id_col).unwrap_or("");
            let name = name_col.and_then(|c| row.get(c)).unwrap_or("");
            if email.is_empty() && id.is_empty() && name.is_empty() {
                continue;
            }
            if !email.contains('@') {
                problems.push(format!("line {line}: {email:?} is not an email address"));
                continue;
            }
            if id.is_empty() {
                problems.push(format!("line {line}: agent_id is empty"));
                continue;
            }
            let agent = Agent {
                id: id.to_owned(),
                name: name.to_owned(),
            };
            match by_email.get(&email.to_lowercase()) {
                Some(prev) if *prev != agent => problems.push(format!(
                    "line {line}: {email} is already mapped to agent {:?}",
                    prev.id
                )),
                Some(_) => {}
                None => {
                    by_email.insert(email.to_lowercase(), agent);
                }
            }
        }
        if problems.is_empty() && by_email.is_empty() {
            problems.push("it maps no sender address".to_owned());
        }
        if problems.is_empty() {
            Ok(Self { by_email })
        } else {
            Err(problems)
        }
    }

    /// The agent of a sender address, matched case-insensitively.
    pub fn get(&self, email: &str) -> Option<&Agent> {
        self.by_email.get(&email.trim().to_lowercase())
    }

    pub fn len(&self) -> usize {
        self.by_email.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_email.is_empty()
    }
}

/// One message as read from a mailbox, before parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawMessage {
    /// The RFC 5322 message (for mbox: without its `From ` line, `>From ` unescaped).
    pub bytes: Vec<u8>,
    /// Whether the message came with an mbox `From ` line.
    pub has_envelope: bool,
    /// The date of that line, when it has one that can be read.
    pub envelope_date: Option<chrono::DateTime<FixedOffset>>,
}

impl RawMessage {
    /// A message read whole (`.eml`, maildir file). A leading mbox-style `From ` line, as some
    /// exporters write, is taken as the envelope.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Self {
        if bytes.starts_with(b"From ") {
            let end = bytes
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| p + 1);
            let envelope_date = envelope_date(&bytes[..end]);
            bytes.drain(..end);
            return Self {
                bytes,
                has_envelope: true,
                envelope_date,
            };
        }
        Self {
            bytes,
            has_envelope: false,
            envelope_date: None,
        }
    }
}

/// Turns one message into a record, or says why it is skipped.
pub fn to_record(msg: &RawMessage, agents: &Agents, tz: OperationTz) -> Result<RawRecord, String> {
    let parsed = MessageParser::default()
        .parse(&msg.bytes)
        .filter(|m| !m.headers().is_empty())
        .ok_or_else(|| "not an email message (no headers could be read)".to_owned())?;

    let from = parsed
        .from()
        .and_then(|a| a.iter().find_map(|a| a.address()))
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| "no From address".to_owned())?;
    let agent = agents
        .get(from)
        .ok_or_else(|| format!("sender {from} is not in the agents file"))?;

    let instant = match parsed.header_raw("Date") {
        Some(raw) => parse_date_header(raw, parsed.date())
            .ok_or_else(|| format!("unusable Date header {:?}", raw.trim()))?,
        None => match (msg.envelope_date, msg.has_envelope) {
            (Some(d), _) => d,
            (None, true) => {
                return Err("no Date header and no date on the mbox \"From \" line".to_owned());
            }
            (None, false) => return Err("no Date header".to_owned()),
        },
    };
    let date = tz.wall_clock_of(instant).to_string();

    let mut to = String::new();
    for addr in parsed
        .all_to()
        .chain(parsed.all_cc())
        .flat_map(|a| a.iter())
    {
        if let Some(a) = addr.address().map(str::trim).filter(|a| !a.is_empty()) {
            if !to.is_empty() {
                to.push_str(", ");
            }
            to.push_str(a);
        }
    }
    if to.is_empty() {
        return Err("no To or Cc recipient".to_owned());
    }

    let conn_id = match parsed
        .message_id()
        .map(str::trim)
        .filter(|id| !id.is_empty())
    {
        Some(id) => id.to_owned(),
        None => content_hash(&msg.bytes),
    };

    let mut body = String::new();
    for i in 0..parsed.text_body_count() {
        if let Some(text) = parsed.body_text(i) {
            if !body.is_empty() && !body.ends_with('\n') {
                body.push('\n');
            }
            body.push_str(&text);
        }
    }
    if body.contains('\r') {
        body = body.replace("\r\n", "\n");
    }

    Ok(RawRecord {
        conn_id: Field::Text(conn_id),
        agent_id: Field::Text(agent.id.clone()),
        agent_name: Field::Text(agent.name.clone()),
        channel: Field::Text("email".to_owned()),
        from: Field::Text(from.to_owned()),
        to: Field::Text(to),
        subject: Field::Text(parsed.subject().unwrap_or("").to_owned()),
        body: Field::Text(body),
        date: Field::Text(date),
        cod_act: Field::Absent,
        description_cod_act: Field::Absent,
    })
}

/// `sha256:<hex>` of the message bytes: the `conn_id` of a message without `Message-ID`.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A `Date` header: RFC 5322 with its obsolete forms (chrono's RFC 2822 parser: optional
/// weekday and seconds, two-digit years, named zones, comments, folding); failing that,
/// mail-parser's more lenient reading (e.g. a wrong weekday). A date without a zone is refused.
fn parse_date_header(
    raw: &str,
    lenient: Option<&mail_parser::DateTime>,
) -> Option<chrono::DateTime<FixedOffset>> {
    chrono::DateTime::parse_from_rfc2822(raw.trim())
        .ok()
        .or_else(|| lenient.and_then(to_chrono))
}

fn to_chrono(d: &mail_parser::DateTime) -> Option<chrono::DateTime<FixedOffset>> {
    if !d.is_valid() {
        return None;
    }
    let secs = (i32::from(d.tz_hour) * 3600 + i32::from(d.tz_minute) * 60)
        * if d.tz_before_gmt { -1 } else { 1 };
    let naive = NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))?
        .and_hms_opt(u32::from(d.hour), u32::from(d.minute), u32::from(d.second))?;
    FixedOffset::east_opt(secs)?
        .from_local_datetime(&naive)
        .single()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz() -> OperationTz {
        OperationTz::parse("America/Bogota").unwrap()
    }

    fn agents() -> Agents {
        Agents::from_csv(
            "email,agent_id,agent_name\nAna@CC.co,7,Ana Pérez\nluis@cc.co,8,\n".as_bytes(),
        )
        .unwrap()
    }

    fn text(f: &Field) -> &str {
        match f {
            Field::Text(s) => s,
            other => panic!("not text: {other:?}"),
        }
    }

    fn convert(raw: &str) -> Result<RawRecord, String> {
        to_record(
            &RawMessage::from_bytes(raw.as_bytes().to_vec()),
            &agents(),
            tz(),
        )
    }

    #[test]
    fn a_multipart_alternative_message_with_an_attachment() {
        let raw = "Message-ID: <abc.123@cc.co>\r\n\
From: \"Ana\" <ana@cc.co>\r\n\
To: Cliente <cliente@x.co>,\r\n otro@y.co\r\n\
Cc: jefe@cc.co\r\n\
Subject: =?ISO-8859-1?Q?Cotizaci=F3n_de_se?=\r\n =?ISO-8859-1?Q?rvicios?=\r\n\
Date: Thu, 1 Oct 2026 08:15:00 -0500\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=\"iso-8859-1\"\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Buenos d=EDas,\r\nadjunto la cotizaci=F3n.\r\n\
--alt\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Buenos d&iacute;as</p>\r\n\
--alt--\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"c.pdf\"\r\n\
Content-Disposition: attachment; filename=\"c.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQKU0VDUkVU\r\n\
--outer--\r\n";
        let r = convert(raw).unwrap();
        assert_eq!(text(&r.conn_id), "abc.123@cc.co");
        assert_eq!(text(&r.agent_id), "7");
        assert_eq!(text(&r.agent_name), "Ana Pérez");
        assert_eq!(text(&r.channel), "email");
        assert_eq!(text(&r.from), "ana@cc.co");
        assert_eq!(text(&r.to), "cliente@x.co, otro@y.co, jefe@cc.co");
        assert_eq!(text(&r.subject), "Cotización de servicios");
        assert_eq!(text(&r.date), "2026-10-01 08:15:00");
        assert_eq!(text(&r.body), "Buenos días,\nadjunto la cotización.");
        let ok = crate::ingest::validate(r, 0, tz()).unwrap();
        assert_eq!(ok.conn_id, "abc.123@cc.co");
    }

    #[test]
    fn base64_utf8_body_and_utf8_subject_and_other_zones() {
        let raw = "From: luis@CC.CO\n\
To: a@b.co\n\
Subject: =?UTF-8?B?w5FhbmTDuiDwn5iA?=\n\
Date: 1 Oct 26 13:15 GMT\n\
Content-Type: text/plain; charset=utf-8\n\
Content-Transfer-Encoding: base64\n\
\n\
w5FhbmTDuiBlbiBjYXN0ZWxsYW5v\n";
        let r = convert(raw).unwrap();
        assert_eq!(text(&r.subject), "Ñandú 😀");
        assert_eq!(text(&r.body), "Ñandú en castellano");
        assert_eq!(text(&r.date), "2026-10-01 08:15:00");
        assert_eq!(text(&r.agent_id), "8");
        assert!(text(&r.conn_id).starts_with("sha256:"));
        assert_eq!(text(&r.conn_id).len(), 7 + 64);
        // Obsolete zone names count.
        let est = raw.replace("1 Oct 26 13:15 GMT", "Thu, 01 Oct 2026 09:15:00 EDT");
        assert_eq!(text(&convert(&est).unwrap().date), "2026-10-01 08:15:00");
    }

    #[test]
    fn html_only_becomes_text() {
        let raw = "From: ana@cc.co\nTo: a@b.co\nDate: Thu, 1 Oct 2026 08:15:00 -0500\n\
Content-Type: text/html; charset=utf-8\n\n<html><head><style>p{}</style></head><body><p>Hola &amp; adi&oacute;s</p><p>Segunda<br>l&iacute;nea</p></body></html>\n";
        let body = text(&convert(raw).unwrap().body).to_owned();
        assert!(body.contains("Hola & adiós"), "{body:?}");
        assert!(body.contains("Segunda\nlínea"), "{body:?}");
        assert!(!body.contains('<') && !body.contains("p{}"), "{body:?}");
    }

    #[test]
    fn skips_are_reasoned_never_guessed() {
        let base = "From: ana@cc.co\nTo: a@b.co\nDate: Thu, 1 Oct 2026 08:15:00 -0500\n\nx\n";
        assert_eq!(
            convert(&base.replace("ana@cc.co", "nadie@cc.co")).unwrap_err(),
            "sender nadie@cc.co is not in the agents file"
        );
        assert_eq!(
            convert(&base.replace("Date: Thu, 1 Oct 2026 08:15:00 -0500\n", "")).unwrap_err(),
            "no Date header"
        );
        assert!(
            convert(&base.replace("Thu, 1 Oct 2026 08:15:00 -0500", "someday"))
                .unwrap_err()
                .starts_with("unusable Date")
        );
        assert!(
            convert(&base.replace(
                "Thu, 1 Oct 2026 08:15:00 -0500",
                "Thu, 31 Feb 2026 08:15:00 -0500"
            ))
            .is_err()
        );
        assert_eq!(
            convert(&base.replace("To: a@b.co\n", "")).unwrap_err(),
            "no To or Cc recipient"
        );
        assert_eq!(
            convert(&base.replace("From: ana@cc.co\n", "")).unwrap_err(),
            "no From address"
        );
    }

    #[test]
    fn the_hash_is_stable_and_depends_on_content() {
        let base = "From: ana@cc.co\nTo: a@b.co\nDate: Thu, 1 Oct 2026 08:15:00 -0500\n\nx\n";
        let a = convert(base).unwrap().conn_id;
        assert_eq!(a, convert(base).unwrap().conn_id);
        assert_ne!(a, convert(&base.replace("\nx\n", "\ny\n")).unwrap().conn_id);
    }

    #[test]
    fn envelope_dates() {
        let d = envelope_date(b"From ana@cc.co Thu Oct  1 13:15:00 2026\n").unwrap();
        assert_eq!(tz().wall_clock_of(d).to_string(), "2026-10-01 08:15:00");
        let d = envelope_date(b"From - Thu Oct 01 08:15:00 -0500 2026\r\n").unwrap();
        assert_eq!(tz().wall_clock_of(d).to_string(), "2026-10-01 08:15:00");
        assert!(envelope_date(b"From MAILER-DAEMON Thu Oct  1 13:15 2026\n").is_some());
        assert!(envelope_date(b"From ana@cc.co\n").is_none());
        assert!(envelope_date(b"From Monday to Friday we are open\n").is_none());
        assert!(envelope_date(b"From x Thu Feb 30 13:15:00 2026\n").is_none());
    }

    #[test]
    fn mbox_splits_unescapes_and_streams() {
        let mbox = "From ana@cc.co Thu Oct  1 13:15:00 2026\n\
From: ana@cc.co\nTo: a@b.co\nSubject: one\n\n\
>From the start\n>>From quoted\nFrom the body after text, unescaped\n\n\
From luis@cc.co Thu Oct  1 14:00:00 2026\n\
From: luis@cc.co\nTo: a@b.co\nSubject: two\n\nsecond\n\
From x Fri Oct  2 10:00:00 2026\n\
From: luis@cc.co\nTo: a@b.co\n\nthird, after a writer that forgot the blank line\n\n\
From nodate\n\
From: ana@cc.co\nTo: a@b.co\n\nfourth\n\n";
        let msgs: Vec<RawMessage> = MboxReader::new(mbox.as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(msgs.len(), 4);
        assert_eq!(
            String::from_utf8_lossy(&msgs[0].bytes),
            "From: ana@cc.co\nTo: a@b.co\nSubject: one\n\nFrom the start\n>From quoted\nFrom the body after text, unescaped\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&msgs[1].bytes),
            "From: luis@cc.co\nTo: a@b.co\nSubject: two\n\nsecond\n"
        );
        assert!(msgs[2].bytes.ends_with(b"blank line\n"));
        assert!(msgs[3].has_envelope && msgs[3].envelope_date.is_none());
        // Without Date, the envelope date is used; without either, the message is skipped.
        let r = to_record(&msgs[0], &agents(), tz()).unwrap();
        assert_eq!(text(&r.date), "2026-10-01 08:15:00");
        assert_eq!(
            to_record(&msgs[3], &agents(), tz()).unwrap_err(),
            "no Date header and no date on the mbox \"From \" line"
        );
        let not_mbox: Vec<_> = MboxReader::new("Subject: x\n".as_bytes()).collect();
        assert_eq!(not_mbox.len(), 1);
        assert!(not_mbox[0].is_err());
        assert_eq!(MboxReader::new("\n".as_bytes()).count(), 0);
    }

    #[test]
    fn eml_with_a_leading_from_line() {
        let m = RawMessage::from_bytes(
            b"From ana@cc.co Thu Oct  1 13:15:00 2026\nFrom: ana@cc.co\n\nx\n".to_vec(),
        );
        assert!(m.has_envelope && m.envelope_date.is_some());
        assert!(m.bytes.starts_with(b"From: "));
    }

    #[test]
    fn agents_csv_problems_are_listed() {
        assert_eq!(agents().get(" ANA@cc.CO").unwrap().id, "7");
        assert_eq!(agents().len(), 2);
        let e = Agents::from_csv("mail,id\na@b.co,1\n".as_bytes()).unwrap_err();
        assert_eq!(e.len(), 1);
        let e = Agents::from_csv(
            "email,agent_id,agent_name\nnomail,1,x\na@b.co,,x\nc@d.co,1,x\nC@D.co,2,y\n".as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[2].contains("already mapped"));
        assert!(Agents::from_csv("email,agent_id\n".as_bytes()).is_err());
    }

    #[test]
    fn maildir_lists_cur_then_new() {
        let dir = tempfile::tempdir().unwrap();
        assert!(maildir_files(dir.path()).is_err());
        for (sub, name) in [
            ("new", "2"),
            ("cur", "1:2,S"),
            ("tmp", "3"),
            ("cur", ".hidden"),
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            std::fs::write(dir.path().join(sub).join(name), "x").unwrap();
        }
        let files = maildir_files(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["1:2,S", "2"]);
    }
}
