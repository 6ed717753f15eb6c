//! Reading mailboxes into [`RawMessage`]s: mbox files (with their `From ` separator lines and
//! `>From ` unescaping), single `.eml` files and maildir directories. What a message means is
//! decided in the parent module (`to_record`).

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

use chrono::{FixedOffset, NaiveDate, TimeZone as _};

use super::RawMessage;

/// The date of an mbox `From ` line: `From SENDER Www Mmm dd hh:mm[:ss] [±zzzz] yyyy` (asctime,
/// as written by mail tools; UTC unless a numeric offset is given). `None` when the line has no
/// such date.
pub fn envelope_date(line: &[u8]) -> Option<chrono::DateTime<FixedOffset>> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("From ")?;
    let toks: Vec<&str> = rest.split_ascii_whitespace().collect();
    // toks[0] is the sender; the date starts with a weekday name.
    let start = (1..toks.len())
        .find(|&i| is_weekday(toks[i]) && i + 1 < toks.len() && month(toks[i + 1]).is_some())?;
    let mon = month(toks[start + 1])?;
    let day: u32 = toks.get(start + 2)?.parse().ok()?;
    let mut hms = toks
        .get(start + 3)?
        .split(':')
        .map(|p| p.parse::<u32>().ok());
    let (h, mi) = (hms.next()??, hms.next()??);
    let s = match hms.next() {
        Some(s) => s?,
        None => 0,
    };
    let (mut year, mut offset) = (None, 0i32);
    for tok in toks.iter().skip(start + 4).take(3) {
        let b = tok.as_bytes();
        if b.len() == 4 && b.iter().all(u8::is_ascii_digit) && year.is_none() {
            year = tok.parse::<i32>().ok();
        } else if b.len() == 5
            && (b[0] == b'+' || b[0] == b'-')
            && b[1..].iter().all(u8::is_ascii_digit)
        {
            let n: i32 = tok[1..].parse().ok()?;
            offset = (n / 100 * 3600 + n % 100 * 60) * if b[0] == b'-' { -1 } else { 1 };
        } else if !matches!(*tok, "UTC" | "GMT" | "UT") {
            break;
        }
    }
    let naive = NaiveDate::from_ymd_opt(year?, mon, day)?.and_hms_opt(h, mi, s)?;
    FixedOffset::east_opt(offset)?
        .from_local_datetime(&naive)
        .single()
}

fn is_weekday(s: &str) -> bool {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .any(|d| d.eq_ignore_ascii_case(s))
}

fn month(s: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + 1)
}

/// Reads an mbox one message at a time (memory holds one message, never the whole file).
///
/// A line starting with `From ` opens a new message when it is the first line, follows a blank
/// line, or carries an envelope date (so a writer that forgot the blank line is still split
/// right). Inside a message, `>From `, `>>From `… lose one `>` (mboxrd; an mboxo file's
/// `>From ` becomes `From `, which is what its writer meant). The blank line that ends each
/// message belongs to the mbox, not to the message.
#[derive(Debug)]
pub struct MboxReader<R> {
    reader: R,
    line: Vec<u8>,
    next_envelope: Option<Vec<u8>>,
    started: bool,
    done: bool,
}

impl<R: BufRead> MboxReader<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: Vec::with_capacity(256),
            next_envelope: None,
            started: false,
            done: false,
        }
    }

    fn read_line(&mut self) -> io::Result<bool> {
        self.line.clear();
        Ok(self.reader.read_until(b'\n', &mut self.line)? > 0)
    }

    fn start(&mut self) -> io::Result<()> {
        self.started = true;
        while self.read_line()? {
            if self.line.trim_ascii().is_empty() {
                continue;
            }
            if !self.line.starts_with(b"From ") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not an mbox file (the first line does not start with \"From \")",
                ));
            }
            self.next_envelope = Some(std::mem::take(&mut self.line));
            break;
        }
        Ok(())
    }

    fn next_message(&mut self) -> io::Result<Option<RawMessage>> {
        if !self.started {
            self.start()?;
        }
        let Some(envelope) = self.next_envelope.take() else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(4096);
        let mut prev_blank = false;
        while self.read_line()? {
            let line = &self.line;
            if line.starts_with(b"From ") && (prev_blank || envelope_date(line).is_some()) {
                self.next_envelope = Some(std::mem::take(&mut self.line));
                break;
            }
            prev_blank = line == b"\n" || line == b"\r\n";
            let gt = line.iter().take_while(|&&b| b == b'>').count();
            if gt > 0 && line[gt..].starts_with(b"From ") {
                bytes.extend_from_slice(&line[1..]);
            } else {
                bytes.extend_from_slice(line);
            }
        }
        if bytes.ends_with(b"\r\n\r\n") {
            bytes.truncate(bytes.len() - 2);
        } else if bytes.ends_with(b"\n\n") {
            bytes.truncate(bytes.len() - 1);
        }
        Ok(Some(RawMessage {
            bytes,
            has_envelope: true,
            envelope_date: envelope_date(&envelope),
        }))
    }
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = io::Result<RawMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_message() {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads one `.eml` message whole.
pub fn read_eml<R: Read>(mut input: R) -> io::Result<RawMessage> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    Ok(RawMessage::from_bytes(bytes))
}

/// The message files of a maildir: the entries of `cur/` then `new/` (`tmp/` holds deliveries
/// in progress and is left alone), in name order, dot files excluded. At least one of `cur/`
/// and `new/` must exist.
pub fn maildir_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut found = false;
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        if !d.is_dir() {
            continue;
        }
        found = true;
        let mut names: Vec<PathBuf> = std::fs::read_dir(&d)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        names.retain(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        });
        names.sort();
        files.extend(names);
    }
    if !found {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is not a maildir (it has neither cur/ nor new/)",
                dir.display()
            ),
        ));
    }
    Ok(files)
}
