//! Reading records from the three input formats (NDJSON, JSON arrays, CSV), one record at a
//! time and in bounded memory: a leading byte-order mark is skipped, and no reader keeps more
//! than [`MAX_RECORD_BYTES`] of a record. Validation is the parent module's.

use std::io::BufRead;

use voxtrail_wire::RecordError;

use super::{BOM, Field, MAX_RECORD_BYTES, REQUIRED, RawRecord, TOO_LARGE, err};

/// Reads records one by one. Each item is a record or the reason it could not be read.
pub type RecordIter<'a> = Box<dyn Iterator<Item = Result<RawRecord, RecordError>> + 'a>;

/// Reads NDJSON: one JSON object per line; blank lines are not records. A leading byte-order
/// mark is skipped. A line longer than [`MAX_RECORD_BYTES`] is refused (naming its line) and
/// read to its end without being kept.
pub fn read_ndjson<'a, R: BufRead + 'a>(mut input: R) -> RecordIter<'a> {
    let mut index = 0u64;
    let mut line_no = 0u64;
    let mut line = Vec::new();
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        loop {
            if done {
                return None;
            }
            line.clear();
            match read_line_bounded(&mut input, &mut line, MAX_RECORD_BYTES) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    done = true;
                    return Some(Err(err(index, "", format!("cannot read input: {e}"))));
                }
            }
            line_no += 1;
            let text = match line_no {
                1 => line.strip_prefix(BOM).unwrap_or(&line),
                _ => &line[..],
            };
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let i = index;
            index += 1;
            if text.len() > MAX_RECORD_BYTES {
                return Some(Err(err(i, "", format!("line {line_no}: {TOO_LARGE}"))));
            }
            return Some(parse_object(text, i));
        }
    }))
}

/// Reads one line (through its `\n`, or to the end of input) into `line`, keeping at most
/// `max + 1` bytes of it: the rest of a longer line is consumed without being kept. Returns
/// the length of the whole line (0 at the end of input).
fn read_line_bounded<R: BufRead>(
    input: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(total);
        }
        let (chunk, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(p) => (&buf[..=p], true),
            None => (buf, false),
        };
        let keep = (max + 1).saturating_sub(line.len()).min(chunk.len());
        line.extend_from_slice(&chunk[..keep]);
        let n = chunk.len();
        total += n;
        input.consume(n);
        if ends {
            return Ok(total);
        }
    }
}

fn parse_object(bytes: &[u8], index: u64) -> Result<RawRecord, RecordError> {
    let trimmed = bytes.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return Err(err(index, "", "not a JSON object"));
    }
    serde_json::from_slice::<RawRecord>(trimmed)
        .map_err(|e| err(index, "", format!("invalid JSON: {e}")))
}

/// Reads a JSON array of objects, one element at a time: the array is split at its top-level
/// commas (strings and nesting are followed) and each element is parsed on its own, so one
/// bad element does not hide the others and memory holds one element, not the array. A
/// leading byte-order mark is skipped; an element longer than [`MAX_RECORD_BYTES`] is refused
/// and skipped without being kept.
pub fn read_json_array<'a, R: BufRead + 'a>(input: R) -> RecordIter<'a> {
    let mut arr = JsonArraySplitter {
        input,
        element: Vec::new(),
        state: ArrayState::Start,
    };
    let mut index = 0u64;
    Box::new(std::iter::from_fn(move || {
        let item = match arr.next_element() {
            Ok(None) => return None,
            Ok(Some(true)) => parse_object(&arr.element, index),
            Ok(Some(false)) => Err(err(index, "", TOO_LARGE)),
            Err(reason) => {
                arr.state = ArrayState::Done;
                Err(err(index, "", reason))
            }
        };
        index += 1;
        Some(item)
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    /// Before the opening `[`.
    Start,
    /// Inside the array, before an element.
    Elements,
    /// After the closing `]` (or a fatal error).
    Done,
}

struct JsonArraySplitter<R> {
    input: R,
    /// The current element's bytes, at most `MAX_RECORD_BYTES + 1` of them.
    element: Vec<u8>,
    state: ArrayState,
}

impl<R: BufRead> JsonArraySplitter<R> {
    /// The next byte, or `None` at the end of input.
    fn byte(&mut self) -> Result<Option<u8>, String> {
        loop {
            match self.input.fill_buf() {
                Ok([]) => return Ok(None),
                Ok(buf) => {
                    let b = buf[0];
                    self.input.consume(1);
                    return Ok(Some(b));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read input: {e}")),
            }
        }
    }

    /// The next byte that is not JSON whitespace.
    fn non_blank(&mut self) -> Result<Option<u8>, String> {
        loop {
            match self.byte()? {
                Some(b) if b.is_ascii_whitespace() => {}
                other => return Ok(other),
            }
        }
    }

    /// Reads the next element into `self.element`: `Some(true)` when it was kept whole,
    /// `Some(false)` when it was too large (skipped), `None` after the closing `]`.
    fn next_element(&mut self) -> Result<Option<bool>, String> {
        const UNEXPECTED_END: &str = "invalid JSON array: unexpected end of input";
        if self.state == ArrayState::Start {
            let mut first = self.non_blank()?;
            if first == Some(BOM[0]) {
                for &b in &BOM[1..] {
                    if self.byte()? != Some(b) {
                        return Err("expected a JSON array of objects".to_owned());
                    }
                }
                first = self.non_blank()?;
            }
            if first != Some(b'[') {
                return Err("expected a JSON array of objects".to_owned());
            }
            self.state = ArrayState::Elements;
            match self.non_blank()? {
                None => return Err(UNEXPECTED_END.to_owned()),
                Some(b']') => return self.finish().map(|()| None),
                Some(b) => self.element = vec![b],
            }
        } else if self.state == ArrayState::Done {
            return Ok(None);
        } else {
            self.element.clear();
        }
        // Depth of nesting inside the element, and whether we are inside a string.
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        let mut pending = self.element.pop();
        loop {
            let b = match pending.take() {
                Some(b) => b,
                None => match self.byte()? {
                    Some(b) => b,
                    None => return Err(UNEXPECTED_END.to_owned()),
                },
            };
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' if depth == 0 => return Ok(Some(self.kept())),
                    b']' => {
                        let kept = self.kept();
                        self.finish()?;
                        return Ok(Some(kept));
                    }
                    _ => {}
                }
            }
            if self.element.len() <= MAX_RECORD_BYTES {
                self.element.push(b);
            }
        }
    }

    fn kept(&self) -> bool {
        self.element.len() <= MAX_RECORD_BYTES
    }

    /// After the closing `]`: only whitespace may follow.
    fn finish(&mut self) -> Result<(), String> {
        self.state = ArrayState::Done;
        match self.non_blank()? {
            None => Ok(()),
            Some(_) => Err("invalid JSON array: characters after the closing ]".to_owned()),
        }
    }
}

/// Reads CSV whose header names §1 fields. Required columns must be present; unknown columns
/// are ignored.
pub fn read_csv<'a, R: std::io::Read + 'a>(input: R) -> RecordIter<'a> {
    let bound = CsvBound::default();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(BoundedRead {
            inner: input,
            bound: bound.clone(),
        });
    let header = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            let reason = match bound.tripped.get() {
                true => format!("line 1: {TOO_LARGE}"),
                false => format!("invalid CSV header: {e}"),
            };
            return Box::new(std::iter::once(Err(err(0, "", reason))));
        }
    };
    let names = voxtrail_wire::CHAT_12_FIELDS;
    let mut pos: [Option<usize>; 11] = [None; 11];
    for (i, h) in header.iter().enumerate() {
        let h = h.trim_start_matches('\u{feff}').trim();
        if let Some(k) = names.iter().position(|n| *n == h) {
            pos[k] = Some(i);
        }
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|f| pos[names.iter().position(|n| n == f).expect("required field")].is_none())
        .collect();
    if !missing.is_empty() {
        let reason = format!(
            "the CSV header lacks the required columns: {}",
            missing.join(", ")
        );
        return Box::new(std::iter::once(Err(err(0, "header", reason))));
    }
    let mut index = 0u64;
    let mut rec = csv::ByteRecord::new();
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let i = index;
        let line = rdr.position().line();
        let result = rdr.read_byte_record(&mut rec);
        bound.record_start.set(rdr.position().byte());
        match result {
            Ok(false) => None,
            Ok(true) => {
                index += 1;
                let get = |k: usize| -> Result<Field, RecordError> {
                    match pos[k].and_then(|p| rec.get(p)) {
                        None => Ok(Field::Absent),
                        Some(b) => std::str::from_utf8(b)
                            .map(|s| Field::Text(s.to_owned()))
                            .map_err(|_| err(i, names[k], "not valid UTF-8")),
                    }
                };
                Some((|| {
                    Ok(RawRecord {
                        conn_id: get(0)?,
                        agent_id: get(1)?,
                        agent_name: get(2)?,
                        channel: get(3)?,
                        from: get(4)?,
                        to: get(5)?,
                        subject: get(6)?,
                        body: get(7)?,
                        date: get(8)?,
                        cod_act: get(9)?,
                        description_cod_act: get(10)?,
                    })
                })())
            }
            Err(e) => {
                index += 1;
                // A ragged row is one bad record; any other error (I/O, bad UTF-8 framing)
                // ends the input, reported once.
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                    done = true;
                }
                if bound.tripped.get() {
                    return Some(Err(err(i, "", format!("line {line}: {TOO_LARGE}"))));
                }
                Some(Err(err(i, "", format!("invalid CSV record: {e}"))))
            }
        }
    }))
}

/// Where the CSV reader's current record started, and whether the bound was hit.
#[derive(Debug, Clone, Default)]
struct CsvBound {
    /// Bytes handed to the CSV reader so far.
    delivered: std::rc::Rc<std::cell::Cell<u64>>,
    /// Input offset where the record being read starts.
    record_start: std::rc::Rc<std::cell::Cell<u64>>,
    tripped: std::rc::Rc<std::cell::Cell<bool>>,
}

/// The CSV reader's input, refusing to hand over more than [`MAX_RECORD_BYTES`] (plus the
/// reader's own small buffer) past the start of the record being read: the `csv` crate grows
/// a record without limit (an unclosed quote reads to the end of input), so the bound is here.
struct BoundedRead<R> {
    inner: R,
    bound: CsvBound,
}

/// Read-ahead the CSV reader may hold beyond the current record (its buffer is 8 KiB).
const CSV_SLACK: u64 = 64 * 1024;

impl<R: std::io::Read> std::io::Read for BoundedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let b = &self.bound;
        let used = b.delivered.get() - b.record_start.get();
        if used > MAX_RECORD_BYTES as u64 + CSV_SLACK {
            b.tripped.set(true);
            return Err(std::io::Error::other(TOO_LARGE));
        }
        let n = self.inner.read(buf)?;
        b.delivered.set(b.delivered.get() + n as u64);
        Ok(n)
    }
}
