//! First-format file copies, migrated once on open. The first format kept every key inside
//! the state file (rewritten each window) and wrote RFC 4180 CSV records that could span
//! lines. A CSV file of that format is rewritten one record per line by way of `PATH.v1`, so
//! that an interrupted conversion starts over; `PATH.converting` marks a `PATH.v1` as
//! voxtrail's (anyone else's is never touched). A first-format state beside a key log (an
//! earlier voxtrail run on a converted copy) is refused rather than converted twice (the
//! refusal is made in `dest/file.rs`, which opens the copy).

use std::collections::HashSet;
use std::io::{Read as _, Seek as _};
use std::path::Path;

use anyhow::Context as _;
use voxtrail_client::Row;

use crate::dest::Format;
use crate::dest::file::{FileState, STATE_VERSION, replace_file, sync_dir};
use crate::escape::{complete_len, csv_line_writer, write_escaped};
use crate::{Event, KeyRule, Progress};

/// Rewrites a CSV file of the first format (RFC 4180 records, which span lines when a value
/// holds a newline) as one line per record, and returns the state that now describes it.
/// Crash-safe: the marker `PATH.converting` is created (so `PATH.v1` is known to be
/// voxtrail's), the old file renamed to `PATH.v1`, the new one written and fsynced, the
/// state replaced (version 2), and only then `PATH.v1` and the marker removed; a run that
/// finds the marker and `PATH.v1` with a first-format state converts again from it.
pub(crate) fn convert_first_format_csv(
    path: &Path,
    backup: &Path,
    marker: &Path,
    state_path: &Path,
    state: Option<FileState>,
    key: &KeyRule,
    progress: &dyn Progress,
) -> anyhow::Result<Option<FileState>> {
    let done = |backup: &Path| -> anyhow::Result<()> {
        std::fs::remove_file(backup).with_context(|| format!("removing {}", backup.display()))?;
        std::fs::remove_file(marker).with_context(|| format!("removing {}", marker.display()))?;
        sync_dir(path);
        Ok(())
    };
    if state.as_ref().is_some_and(|s| s.version >= STATE_VERSION) {
        // Converted and recorded; only the removal of the old file was cut short.
        done(backup)?;
        return Ok(state);
    }
    if !backup.exists() {
        std::fs::File::create(marker)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("creating {}", marker.display()))?;
        std::fs::rename(path, backup)
            .with_context(|| format!("renaming {} to {}", path.display(), backup.display()))?;
        sync_dir(path);
    }
    let text = format!(
        "{}: converting a CSV file of an earlier voxtrail (records spanning lines) to one record per line; the original is kept as {} until done",
        path.display(),
        backup.display()
    );
    progress.event(&Event::Notice(&text));
    let mut src =
        std::fs::File::open(backup).with_context(|| format!("opening {}", backup.display()))?;
    let complete = complete_len(&mut src, true)?;
    src.seek(std::io::SeekFrom::Start(0))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(std::io::BufReader::new(src.take(complete)));
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut header: Option<Vec<String>> = None;
    let mut keys = HashSet::new();
    let mut rows = 0u64;
    for rec in reader.records() {
        let rec = rec?;
        let mut w = csv_line_writer(&mut out);
        write_escaped(&mut w, rec.iter())?;
        w.flush()?;
        drop(w);
        match &header {
            None => header = Some(rec.iter().map(str::to_owned).collect()),
            Some(h) => {
                let row = Row::from_pairs(h.iter().map(String::as_str).zip(rec.iter()));
                keys.insert(key.key(&row)?);
                rows += 1;
            }
        }
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    sync_dir(path);
    let state = state.map(|s| {
        // The first format's check (the state names only rows the file holds) is made, and
        // reported, by the caller, with the old keys still in memory; the state saved here
        // keeps its verdict should the run stop before that.
        let v1 = s.keys.unwrap_or_default();
        let lost = if v1_keys_comparable(Format::Csv, key) {
            v1.iter().any(|k| !keys.contains(k))
        } else {
            rows < v1.len() as u64
        };
        FileState {
            version: STATE_VERSION,
            checkpoint: if lost { None } else { s.checkpoint },
            // Bytes of the converted prefix are unknown; the row count is the check.
            data_len: 0,
            rows: v1.len() as u64,
            keys: Some(v1),
            ..s
        }
    });
    if let Some(s) = &state {
        // `keys` is never serialised: the saved state is the small one.
        replace_file(state_path, &serde_json::to_vec(s)?)?;
    }
    done(backup)?;
    Ok(state)
}

/// Whether the keys a first-format state holds can be compared with keys computed from the
/// data file. Not for hash keys of a CSV copy: the first format hashed rows as the server
/// sent them, the file holds them in the header's order (missing fields empty, extra fields
/// left out); there only the row count is compared.
pub(crate) fn v1_keys_comparable(format: Format, rule: &KeyRule) -> bool {
    !(format == Format::Csv && matches!(rule, KeyRule::Hash))
}
