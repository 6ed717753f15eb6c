//! One record per line: the escaping that keeps every CSV value (and every key in a key log)
//! on one line, its inverse, and the scan that finds where the last complete record ends.
//!
//! Inside a value `\` is written `\\`, LF `\n` and CR `\r`; the usual CSV quoting (commas,
//! quotes) comes on top, so no record spans lines and reading reverses it exactly.

use std::borrow::Cow;

/// A CSV writer that ends records with `\n` (values are escaped first, so one line each).
pub(crate) fn csv_line_writer<W: std::io::Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(out)
}

/// Writes one CSV record whose values are escaped with [`escape_line`].
pub(crate) fn write_escaped<'a, W: std::io::Write>(
    w: &mut csv::Writer<W>,
    fields: impl IntoIterator<Item = &'a str>,
) -> csv::Result<()> {
    w.write_record(fields.into_iter().map(|f| escape_line(f).into_owned()))
}

/// A value on one line: `\` → `\\`, LF → `\n`, CR → `\r`. CSV quoting (commas, quotes)
/// comes on top, so a CSV record never spans lines.
pub fn escape_line(s: &str) -> Cow<'_, str> {
    if !s.contains(['\\', '\n', '\r']) {
        return s.into();
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o.into()
}

/// The inverse of [`escape_line`]. A backslash before any other character (never written)
/// is kept as it is.
pub fn unescape_line(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return s.into();
    }
    let mut o = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => o.push('\\'),
            Some('n') => o.push('\n'),
            Some('r') => o.push('\r'),
            Some(x) => {
                o.push('\\');
                o.push(x);
            }
            None => o.push('\\'),
        }
    }
    o.into()
}

/// Length of the data that ends with a complete record: up to the last newline, or (for the
/// first format's CSV, `quoted_newlines`) the last newline outside a quoted field.
pub(crate) fn complete_len(
    data: &mut impl std::io::Read,
    quoted_newlines: bool,
) -> std::io::Result<u64> {
    let mut in_quotes = false;
    let (mut end, mut at) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => return Ok(end),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for (i, &b) in buf[..n].iter().enumerate() {
            match b {
                b'"' if quoted_newlines => in_quotes = !in_quotes,
                b'\n' if !in_quotes => end = at + i as u64 + 1,
                _ => {}
            }
        }
        at += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_records_are_found() {
        let len = |d: &[u8], quoted| complete_len(&mut &d[..], quoted).unwrap();
        assert_eq!(len(b"{\"a\":1}\n{\"a\"", false), 8);
        assert_eq!(len(b"a,b\n1,\"x\\ny\"\n2,\"z", false), 13);
        assert_eq!(len(b"a,b\n1,\"x\ny\"\n2,\"z\n", true), 12);
        assert_eq!(len(b"", false), 0);
    }

    #[test]
    fn escaping_keeps_every_value_on_one_line_and_comes_back_exactly() {
        for v in [
            "",
            "plain",
            "a\nb",
            "a\r\nb",
            "\\",
            "C:\\new\\table",
            "literal \\n not a newline",
            "ends with \\",
            "\\\n\r\\r",
            "comma, \"quote\"",
            "línea 1\nlínea 2",
        ] {
            let e = escape_line(v);
            assert!(!e.contains(['\n', '\r']), "{v:?} → {e:?}");
            assert_eq!(unescape_line(&e), v, "{v:?} → {e:?}");
        }
        assert_eq!(escape_line("a\\b\nc\rd"), "a\\\\b\\nc\\rd");
        // Not written by us, read leniently.
        assert_eq!(unescape_line("a\\tb\\"), "a\\tb\\");
    }

    #[test]
    fn an_escaped_csv_record_is_one_line_and_reads_back() {
        let mut out = Vec::new();
        let mut w = csv_line_writer(&mut out);
        write_escaped(&mut w, ["a,b", "x\ny", "q\"", "\\"]).unwrap();
        w.flush().unwrap();
        drop(w);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&out[..]);
        let rec = r.records().next().unwrap().unwrap();
        let back: Vec<String> = rec.iter().map(|v| unescape_line(v).into_owned()).collect();
        assert_eq!(back, ["a,b", "x\ny", "q\"", "\\"]);
    }
}
