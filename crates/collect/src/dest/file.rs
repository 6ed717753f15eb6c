//! `ndjson:PATH` / `csv:PATH`: exactly one row per line, appended to PATH. NDJSON lines are
//! the report's flat objects. CSV starts with a header of the report's field names; values
//! are escaped (`escape.rs`) so no record spans lines. Beside PATH:
//! - `PATH.keys`, the index of written keys: line *i* is the key of row *i* (escaped the
//!   same way), append-only;
//! - `PATH.state.json`, a few hundred bytes: source, report, checkpoint, feed cursor, the
//!   data file's length and row count; replaced atomically (temp file, fsync, rename).
//!
//! Each window (or feed page) appends its new rows to PATH (fsync), then their keys to `PATH.keys` (fsync),
//! then replaces the state (with the window's checkpoint or the page's feed cursor), so the
//! bytes written per window depend on that window's rows,
//! not on the size of the copy. Every key is computed again, the same, from the row as the
//! file holds it: with `KeyRule::Hash` a CSV row is hashed as the file holds it (the
//! header's fields in the header's order, a missing one empty, others left out), never as
//! the server sent it. At open the data file is the truth: it is re-read, a torn last record
//! is cut off, the key log is cut to whole lines and extended with the keys of rows it lacks
//! (a crash between the appends) or rebuilt when it does not match, and if the data file
//! holds fewer rows than the state says the copy is re-read from `since` (checkpoint and feed
//! cursor dropped; rows already there are skipped) — a crash anywhere neither loses nor duplicates a row. First-format files
//! are migrated on open (`migrate.rs`). All of it runs on blocking threads.

use std::collections::HashSet;
use std::io::{BufRead as _, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, anyhow, bail};
use chrono::NaiveDateTime;
use voxtrail_client::{Row, format_wall_clock, parse_wall_clock};

use super::{
    BoxFuture, Checkpoint, CommitOutcome, Destination, KeyedRow, Mark, PageDone, WindowDone,
    blocking,
};
use crate::escape::{complete_len, csv_line_writer, escape_line, unescape_line, write_escaped};
use crate::migrate::{convert_first_format_csv, v1_keys_comparable};
use crate::{Event, KeyRule, Progress, Target};

/// The data file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

/// The state format written now: a small state, the key log beside it, CSV records on one
/// line each. The first format (no `version`) kept every key in the state file and wrote
/// RFC 4180 CSV records that could span lines; it is migrated once, on open.
pub(crate) const STATE_VERSION: u32 = 2;

/// The state file beside a data file: a few hundred bytes whatever the size of the copy.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileState {
    /// [`STATE_VERSION`]; absent (0) in the first format.
    #[serde(default)]
    pub(crate) version: u32,
    pub(crate) source: String,
    pub(crate) report: String,
    pub(crate) checkpoint: Option<String>,
    /// The change feed's cursor the copy is complete up to (feed pulls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) feed_cursor: Option<String>,
    /// Length of the data file when this state was written.
    pub(crate) data_len: u64,
    /// Rows in the data file (= lines of the key log) when this state was written.
    #[serde(default)]
    pub(crate) rows: u64,
    /// First format only: every key written. Read to migrate, never written again.
    #[serde(default, skip_serializing)]
    pub(crate) keys: Option<Vec<String>>,
}

struct Inner {
    path: PathBuf,
    state_path: PathBuf,
    keys_path: PathBuf,
    format: Format,
    file: std::fs::File,
    key_log: std::fs::File,
    len: u64,
    rows: u64,
    header: Option<Vec<String>>,
    rule: KeyRule,
    keys: HashSet<String>,
    source: String,
    report: String,
    checkpoint: Option<NaiveDateTime>,
    cursor: Option<String>,
}

/// `PATH` + `suffix` (`copy.csv` → `copy.csv.keys`).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Fsyncs the directory holding `path`, so a rename or a new file in it is durable.
pub(crate) fn sync_dir(path: &Path) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn read_state(path: &Path) -> anyhow::Result<Option<FileState>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
            format!("reading state file {}", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = beside(path, ".tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    sync_dir(path);
    Ok(())
}

impl Inner {
    /// Opens a file destination and reconciles its three files. The data file is the truth
    /// about which rows exist: a torn last record is cut, the key log is cut to whole lines,
    /// extended with the keys of rows written after it (a crash between the two appends) or
    /// rebuilt when it does not describe the data file, and the checkpoint is dropped (the
    /// copy is re-read from `--since`, nothing written twice) when the data file holds fewer
    /// rows than the state says.
    fn open(
        path: &Path,
        format: Format,
        target: &Target,
        progress: &dyn Progress,
    ) -> anyhow::Result<Self> {
        let state_path = beside(path, ".state.json");
        let keys_path = beside(path, ".keys");
        let mut state = read_state(&state_path)?;
        if let Some(s) = &state
            && (s.source != target.source || s.report != target.report)
        {
            bail!(
                "{} holds a copy of {} from {}, not of {} from {}",
                path.display(),
                s.report,
                s.source,
                target.report,
                target.source
            );
        }
        let backup = beside(path, ".v1");
        let marker = beside(path, ".converting");
        let first_format = state.as_ref().is_some_and(|s| s.version < STATE_VERSION);
        // PATH.v1 is voxtrail's only while PATH.converting says so: anyone else's is left alone.
        let ours = marker.exists();
        if format == Format::Csv && first_format && keys_path.exists() {
            bail!(
                "{} is in the first format (every key inside) but {} exists: an earlier voxtrail has written to a copy in the current format, and its CSV records may now span lines; converting again would escape values twice. Check {} by hand, or pull into a new file",
                state_path.display(),
                keys_path.display(),
                path.display()
            );
        }
        if format == Format::Csv && first_format && backup.exists() && !ours {
            bail!(
                "{} is in the way: an earlier voxtrail's CSV file is converted by way of that name, and this file was not left by a conversion; move it away and run again",
                backup.display()
            );
        }
        if format == Format::Csv && ((ours && backup.exists()) || (first_format && path.exists())) {
            state = convert_first_format_csv(
                path,
                &backup,
                &marker,
                &state_path,
                state,
                &target.key,
                progress,
            )
            .with_context(|| format!("converting {} to one record per line", path.display()))?;
        } else if ours {
            // A conversion done but for the removal of its marker.
            std::fs::remove_file(&marker)
                .with_context(|| format!("removing {}", marker.display()))?;
            sync_dir(path);
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Cut a torn last record (a crash in the middle of a write). The file is streamed,
        // never held in memory.
        let total = file.metadata()?.len();
        let complete = complete_len(&mut file, false)
            .with_context(|| format!("reading {}", path.display()))?;
        if complete < total {
            notice(
                progress,
                format!(
                    "{}: cutting a torn last record ({} bytes) left by an interrupted run",
                    path.display(),
                    total - complete
                ),
            );
            file.set_len(complete)?;
            file.sync_all()?;
        }
        file.seek(std::io::SeekFrom::Start(0))?;
        let mut data_keys = Vec::new();
        let header = for_each_row(
            std::io::BufReader::new((&file).take(complete)),
            format,
            |r| {
                data_keys.push(target.key.key(&r)?);
                Ok(())
            },
        )
        .with_context(|| format!("reading the rows of {}", path.display()))?;
        let rows = data_keys.len() as u64;

        // The key log: line i is the key of row i. A key computed again from a row read back
        // is the key it was written under (a hash key of a CSV row is the hash of the row as
        // the file holds it), so the data file alone says which keys are written.
        let (mut key_log, logged) = open_key_log(&keys_path)?;
        let prefix = logged.len() <= data_keys.len() && logged[..] == data_keys[..logged.len()];
        let keys: HashSet<String> = data_keys.iter().cloned().collect();
        if prefix {
            if logged.len() < data_keys.len() {
                append_keys(&mut key_log, &data_keys[logged.len()..])
                    .with_context(|| format!("appending to {}", keys_path.display()))?;
            }
        } else {
            if !logged.is_empty() {
                notice(
                    progress,
                    format!(
                        "{}: the key log does not describe {} ({} keys for {rows} rows); rebuilt from the data file",
                        keys_path.display(),
                        path.display(),
                        logged.len()
                    ),
                );
            }
            let mut text = Vec::new();
            for k in &data_keys {
                text.extend_from_slice(escape_line(k).as_bytes());
                text.push(b'\n');
            }
            replace_file(&keys_path, &text)?;
            key_log = open_key_log(&keys_path)?.0;
        }
        drop(data_keys);

        // The state describes a prefix of the data file; if the file holds less (it was
        // replaced or cut), start over from --since so nothing is lost.
        let mut checkpoint = None;
        let mut cursor = None;
        let mut migrated = false;
        if let Some(s) = state {
            let (lost, known) = match &s.keys {
                Some(v1) => {
                    migrated = true;
                    let lost = if v1_keys_comparable(format, &target.key) {
                        v1.iter().any(|k| !keys.contains(k))
                    } else {
                        rows < v1.len() as u64
                    };
                    (lost, v1.len() as u64)
                }
                None => (complete < s.data_len || rows < s.rows, s.rows),
            };
            if lost {
                notice(
                    progress,
                    format!(
                        "{}: the data file holds less than the state file says ({rows} rows, {complete} bytes; state: {known} rows, {} bytes); re-reading from --since",
                        path.display(),
                        s.data_len
                    ),
                );
            } else {
                checkpoint = s
                    .checkpoint
                    .map(|c| parse_wall_clock(&c).map_err(|e| anyhow!("state checkpoint: {e}")))
                    .transpose()?;
                cursor = s.feed_cursor;
                if rows > known {
                    notice(
                        progress,
                        format!(
                            "{}: {} rows written after the last saved state were found and kept",
                            path.display(),
                            rows - known
                        ),
                    );
                }
            }
        }
        let dest = Self {
            path: path.to_owned(),
            state_path,
            keys_path,
            format,
            len: complete,
            rows,
            file,
            key_log,
            header,
            rule: target.key.clone(),
            keys,
            source: target.source.clone(),
            report: target.report.clone(),
            checkpoint,
            cursor,
        };
        if migrated {
            // The first format's state, with every key, is replaced by the small one.
            dest.save_state()?;
        }
        Ok(dest)
    }

    /// Appends the rows not written yet (data, fsync), then their keys (key log, fsync), then
    /// replaces the small state file (with `mark`, the checkpoint or the feed cursor): a crash
    /// between any two steps is repaired on open.
    fn commit(&mut self, rows: &[KeyedRow], mark: &Mark) -> anyhow::Result<u64> {
        // A CSV file starts with the header: the report's fields for chat_12, else those of
        // the first row written.
        let new_header = match (self.format, &self.header, rows.first()) {
            (Format::Csv, None, Some(KeyedRow { row: first, .. })) => {
                Some(if self.report == voxtrail_wire::CHAT_12 {
                    voxtrail_wire::CHAT_12_FIELDS.map(String::from).to_vec()
                } else {
                    first.fields().map(|(k, _)| k.to_owned()).collect()
                })
            }
            _ => None,
        };
        let header = new_header.as_ref().or(self.header.as_ref());
        // A hash key of a CSV row is the hash of the row as the file holds it (the header's
        // fields in its order), so that it is computed again, the same, from the file.
        let rows: Vec<(String, &Row)> = match (header, &self.rule) {
            (Some(h), KeyRule::Hash) => rows
                .iter()
                .map(|r| Ok((KeyRule::Hash.key(&as_csv_row(h, &r.row))?, &r.row)))
                .collect::<anyhow::Result<_>>()?,
            _ => rows.iter().map(|r| (r.key.clone(), &r.row)).collect(),
        };
        let mut batch = HashSet::new();
        let fresh: Vec<&(String, &Row)> = rows
            .iter()
            .filter(|(k, _)| !self.keys.contains(k) && batch.insert(k.as_str()))
            .collect();
        let mut out = Vec::new();
        match self.format {
            Format::Ndjson => {
                for (_, row) in &fresh {
                    out.extend_from_slice(row.to_json().as_bytes());
                    out.push(b'\n');
                }
            }
            Format::Csv if !fresh.is_empty() => {
                let mut w = csv_line_writer(&mut out);
                let header = match new_header {
                    Some(h) => {
                        write_escaped(&mut w, h.iter().map(String::as_str))?;
                        h
                    }
                    None => self.header.clone().expect("a header before any row"),
                };
                for (_, row) in &fresh {
                    write_escaped(
                        &mut w,
                        header.iter().map(|f| row.get(f).unwrap_or_default()),
                    )?;
                }
                w.flush()?;
                drop(w);
                self.header = Some(header);
            }
            Format::Csv => {}
        }
        if !fresh.is_empty() {
            self.file
                .write_all(&out)
                .and_then(|()| self.file.sync_data())
                .with_context(|| format!("appending to {}", self.path.display()))?;
            self.len += out.len() as u64;
            let keys: Vec<String> = fresh.iter().map(|(k, _)| k.clone()).collect();
            append_keys(&mut self.key_log, &keys)
                .with_context(|| format!("appending to {}", self.keys_path.display()))?;
            self.rows += keys.len() as u64;
            self.keys.extend(keys);
        }
        match mark {
            Mark::Checkpoint(cp) => self.checkpoint = Some(*cp),
            Mark::Cursor(c) => self.cursor = Some(c.clone()),
        }
        self.save_state()?;
        Ok(fresh.len() as u64)
    }

    /// Replaces the small state file atomically.
    fn save_state(&self) -> anyhow::Result<()> {
        let state = FileState {
            version: STATE_VERSION,
            source: self.source.clone(),
            report: self.report.clone(),
            checkpoint: self.checkpoint.map(format_wall_clock),
            feed_cursor: self.cursor.clone(),
            data_len: self.len,
            rows: self.rows,
            keys: None,
        };
        replace_file(&self.state_path, &serde_json::to_vec(&state)?)
    }
}

/// `row` as a CSV file holds it: the header's fields in the header's order, a missing one
/// empty, fields outside the header left out. Read back from the file it is exactly this.
fn as_csv_row(header: &[String], row: &Row) -> Row {
    Row::from_pairs(
        header
            .iter()
            .map(|f| (f.as_str(), row.get(f).unwrap_or_default())),
    )
}

/// Opens the key log for appending, cutting a torn last line; returns it and its keys.
fn open_key_log(path: &Path) -> anyhow::Result<(std::fs::File, Vec<String>)> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let total = f.metadata()?.len();
    let complete =
        complete_len(&mut f, false).with_context(|| format!("reading {}", path.display()))?;
    if complete < total {
        f.set_len(complete)?;
        f.sync_all()?;
    }
    f.seek(std::io::SeekFrom::Start(0))?;
    let mut keys = Vec::new();
    for line in std::io::BufReader::new((&f).take(complete)).split(b'\n') {
        // A line that is not UTF-8 matches no key, so the log is rebuilt.
        keys.push(unescape_line(&String::from_utf8_lossy(&line?)).into_owned());
    }
    Ok((f, keys))
}

/// Appends one escaped key per line and fsyncs.
fn append_keys(log: &mut std::fs::File, keys: &[String]) -> std::io::Result<()> {
    let mut text = Vec::new();
    for k in keys {
        text.extend_from_slice(escape_line(k).as_bytes());
        text.push(b'\n');
    }
    log.write_all(&text)?;
    log.sync_data()
}

/// Calls `f` with every row already in a data file, streaming; returns the CSV header.
fn for_each_row(
    data: impl std::io::BufRead,
    format: Format,
    mut f: impl FnMut(Row) -> anyhow::Result<()>,
) -> anyhow::Result<Option<Vec<String>>> {
    match format {
        Format::Ndjson => {
            for (i, line) in data.split(b'\n').enumerate() {
                let line = line?;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let row: Row = serde_json::from_slice(&line)
                    .with_context(|| format!("line {} is not a JSON object", i + 1))?;
                f(row)?;
            }
            Ok(None)
        }
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(data);
            let header: Vec<String> = r
                .headers()?
                .iter()
                .map(|h| unescape_line(h).into_owned())
                .collect();
            if header.is_empty() || header.iter().all(String::is_empty) {
                return Ok(None);
            }
            for rec in r.records() {
                let rec = rec?;
                f(Row::from_pairs(
                    header
                        .iter()
                        .map(String::as_str)
                        .zip(rec.iter().map(unescape_line)),
                ))?;
            }
            Ok(Some(header))
        }
    }
}

/// Hands an operator's notice to `progress`.
fn notice(progress: &dyn Progress, text: String) {
    progress.event(&Event::Notice(&text));
}

/// The file destination: the state above, on blocking threads.
pub(crate) struct FileDestination {
    inner: Arc<Mutex<Inner>>,
    checkpoint: Option<NaiveDateTime>,
    cursor: Option<String>,
}

impl FileDestination {
    pub(crate) async fn open(
        path: &Path,
        format: Format,
        target: &Target,
        progress: Arc<dyn Progress>,
    ) -> anyhow::Result<Self> {
        let (path, target) = (path.to_owned(), target.clone());
        let inner =
            blocking(move || Inner::open(&path, format, &target, progress.as_ref())).await?;
        Ok(Self {
            checkpoint: inner.checkpoint,
            cursor: inner.cursor.clone(),
            inner: Arc::new(Mutex::new(inner)),
        })
    }
}

impl Destination for FileDestination {
    fn checkpoint(&self) -> BoxFuture<'_, anyhow::Result<Option<Checkpoint>>> {
        let cp = self.checkpoint.map(Checkpoint);
        Box::pin(async move { Ok(cp) })
    }

    fn commit<'a>(
        &'a mut self,
        window: &'a WindowDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        Box::pin(async move {
            let inner = self.inner.clone();
            let cp = window.checkpoint.0;
            let out = blocking(move || commit(&inner, &rows, &Mark::Checkpoint(cp))).await?;
            self.checkpoint = Some(cp);
            Ok(out)
        })
    }

    fn follows_feed(&self) -> bool {
        true
    }

    fn feed_cursor(&self) -> BoxFuture<'_, anyhow::Result<Option<String>>> {
        let c = self.cursor.clone();
        Box::pin(async move { Ok(c) })
    }

    /// Files never replace a row: a row that changed upstream keeps its first version (counted
    /// unchanged), as with windows.
    fn commit_page<'a>(
        &'a mut self,
        page: &'a PageDone,
        rows: Vec<KeyedRow>,
    ) -> BoxFuture<'a, anyhow::Result<CommitOutcome>> {
        Box::pin(async move {
            let inner = self.inner.clone();
            let mark = Mark::Cursor(page.cursor.clone());
            let out = blocking(move || commit(&inner, &rows, &mark)).await?;
            self.cursor = Some(page.cursor.clone());
            Ok(out)
        })
    }
}

/// One commit on a blocking thread: new rows are inserted, the others left as they are.
fn commit(inner: &Mutex<Inner>, rows: &[KeyedRow], mark: &Mark) -> anyhow::Result<CommitOutcome> {
    let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
    let total = rows.len() as u64;
    let inserted = inner.commit(rows, mark)?;
    Ok(CommitOutcome {
        inserted,
        updated: 0,
        unchanged: total - inserted,
    })
}
