//! `voxtrail import`: files (or stdin) in NDJSON, JSON-array or CSV form, or mail (mbox, `.eml`,
//! maildir) turned into records by `voxtrail_server::mail`, through the same ingestion rules as
//! the HTTP endpoint, as one all-or-nothing batch.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use voxtrail_server::Store;
use voxtrail_server::ingest::{self, Format, IngestError, Progress, RecordIter};
use voxtrail_server::mail::{self, Agents, MailFormat, MboxReader, RawMessage};
use voxtrail_wire::RecordError;

use crate::progress::{Counting, Reporter, Unit};

#[derive(Debug, Args)]
#[command(after_help = MAIL_HELP)]
pub struct ImportArgs {
    #[arg(long)]
    operation: String,
    /// ndjson, json or csv (records), or mbox, eml or maildir (mail) [default: ndjson, json or
    /// csv, decided by the content of each file].
    #[arg(long)]
    format: Option<String>,
    /// Mail formats only, and required there: a CSV with the header `email,agent_id,agent_name`
    /// mapping sender addresses (case-insensitively) to agents.
    #[arg(long, value_name = "FILE")]
    agents: Option<PathBuf>,
    /// Mail formats only: any skipped message fails the whole import (nothing is stored).
    #[arg(long)]
    strict: bool,
    /// Files to import (a maildir directory for --format maildir); `-` is standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

const MAIL_HELP: &str = "\
Mail import (--format mbox|eml|maildir, --agents required):
  Each message becomes one interaction: conn_id = Message-ID (sha256:<hex> of the message when it
  has none), from = From, to = To + Cc, subject decoded, date = Date converted to the operation's
  time zone (in an mbox, the \"From \" line date when Date is missing), body = the text part (an
  HTML-only message as text); attachments are left out.
  A message whose sender is not in --agents, or that has no usable date (or no recipient, or
  cannot be parsed), is skipped and listed on stderr (\"skipped: WHERE: REASON\") while the rest
  is imported (exit code 0); with --strict any skipped message fails the whole import.
  --agents and --strict are refused with the record formats (ndjson, json, csv), which are
  always all-or-nothing.";

const READ_BUFFER: usize = 1024 * 1024;

/// Invalid records listed on stderr, one line per problem; the rest are only counted (one
/// closing line gives their number), so a huge bad input neither floods stderr nor fills memory.
const LISTED: usize = 100;

/// One opened input and the number of its first record in the whole import.
struct Input {
    name: String,
    reader: Box<dyn BufRead>,
    format: Format,
}

fn open_input(
    path: &PathBuf,
    format: Option<Format>,
    read: &Arc<AtomicU64>,
) -> anyhow::Result<Input> {
    let (name, raw): (String, Box<dyn Read>) = if path.as_os_str() == "-" {
        ("<stdin>".to_owned(), Box::new(std::io::stdin()))
    } else {
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        anyhow::ensure!(!f.metadata()?.is_dir(), "{} is a directory", path.display());
        (path.display().to_string(), Box::new(f))
    };
    let raw = Counting::new(raw, read.clone());
    let mut reader = BufReader::with_capacity(READ_BUFFER, raw);
    let format = match format {
        Some(f) => f,
        None => Format::sniff(
            reader
                .fill_buf()
                .with_context(|| format!("reading {name}"))?,
        ),
    };
    Ok(Input {
        name,
        reader: Box::new(reader),
        format,
    })
}

struct StderrProgress {
    start: Instant,
    last: Instant,
    /// `records` (ndjson, json, csv) or `messages` (mail).
    unit: &'static str,
    /// On a terminal, the bar; then `read` (bytes read of the inputs) is its position.
    bar: Reporter,
    read: Option<Arc<AtomicU64>>,
}

impl Progress for StderrProgress {
    fn records_read(&mut self, count: u64) {
        if self.bar.is_bar() {
            if let Some(read) = &self.read {
                self.bar.set_position(read.load(Ordering::Relaxed));
            }
            self.bar.set_message(format!("{count} {}", self.unit));
            return;
        }
        if self.last.elapsed().as_secs_f64() >= 1.0 {
            self.last = Instant::now();
            let secs = self.start.elapsed().as_secs_f64();
            let unit = self.unit;
            eprintln!(
                "read {count} {unit} ({:.0} {unit}/s)",
                count as f64 / secs.max(1e-9)
            );
        }
    }
}

/// Bytes of all inputs, when every one is a file (not stdin).
fn input_size(files: &[PathBuf]) -> Option<u64> {
    files
        .iter()
        .map(|p| {
            (p.as_os_str() != "-")
                .then(|| std::fs::metadata(p).ok().map(|m| m.len()))
                .flatten()
        })
        .sum()
}

pub fn run(database: &str, args: ImportArgs) -> anyhow::Result<()> {
    if let Some(mail_format) = args.format.as_deref().and_then(MailFormat::parse) {
        return run_mail(database, mail_format, args);
    }
    anyhow::ensure!(
        args.agents.is_none() && !args.strict,
        "--agents and --strict apply only to --format mbox, eml or maildir"
    );
    let format = args
        .format
        .as_deref()
        .map(|f| {
            Format::parse(f).map_err(|_| {
                anyhow::anyhow!(
                    "unknown format {f:?} (use ndjson, json, csv, mbox, eml or maildir)"
                )
            })
        })
        .transpose()?;
    let stdin_uses = args.files.iter().filter(|f| f.as_os_str() == "-").count();
    anyhow::ensure!(stdin_uses <= 1, "standard input (-) can be named only once");
    // Open every input before touching the database, so a missing file changes nothing.
    let read = Arc::new(AtomicU64::new(0));
    let inputs = args
        .files
        .iter()
        .map(|p| open_input(p, format, &read))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = Store::open(database).with_context(|| format!("opening database {database}"))?;
    let op = store.operation(&args.operation)?;
    refuse_mirror(&store, op.id)?;

    // Every format is read as a stream, one record at a time (at most
    // `ingest::MAX_RECORD_BYTES` of it kept), so memory does not grow with the input.
    let mut names = Vec::new();
    let mut parts: Vec<(usize, RecordIter<'_>)> = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        names.push(input.name.clone());
        let it = match input.format {
            Format::Csv => ingest::read_csv(input.reader),
            Format::JsonArray => ingest::read_json_array(input.reader),
            Format::Ndjson => ingest::read_ndjson(input.reader),
        };
        parts.push((i, it));
    }
    parts.sort_by_key(|(i, _)| *i);
    // Records are numbered across the whole import; remember where each file starts so a
    // rejected record can be named by file and position.
    let starts = Rc::new(RefCell::new(vec![0u64; names.len()]));
    let seen = Rc::new(Cell::new(0u64));
    let (starts_w, seen_w) = (starts.clone(), seen.clone());
    let chained: RecordIter<'_> = Box::new(parts.into_iter().flat_map(move |(file, it)| {
        starts_w.borrow_mut()[file] = seen_w.get();
        let seen_w = seen_w.clone();
        it.inspect(move |_| seen_w.set(seen_w.get() + 1))
    }));

    let start = Instant::now();
    let mut progress = StderrProgress {
        start,
        last: start,
        unit: "records",
        bar: Reporter::new(Unit::Bytes, input_size(&args.files)),
        read: Some(read),
    };
    let sink = store.begin_ingest(op.id)?;
    let result = ingest::ingest_listing(chained, op.tz, None, sink, &mut progress, LISTED);
    progress.bar.finish();
    let locate = |index: u64| -> String {
        let starts = starts.borrow();
        let file = starts.iter().rposition(|&s| s <= index).unwrap_or(0);
        format!("{} record {}", names[file], index - starts[file])
    };
    match result {
        Ok(summary) => {
            let secs = start.elapsed().as_secs_f64();
            let total = summary.inserted + summary.duplicates;
            eprintln!(
                "imported into {}: {} inserted, {} duplicates, {total} records in {secs:.1} s ({:.0} records/s)",
                op.name,
                summary.inserted,
                summary.duplicates,
                total as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        Err(IngestError::Invalid { total, listed }) => {
            for e in &listed {
                print_rejected(&locate(e.index), e);
            }
            if total > LISTED as u64 {
                eprintln!("… and {} more invalid records", total - LISTED as u64);
            }
            anyhow::bail!("{total} invalid records; nothing was imported")
        }
        Err(IngestError::Conflicts(ids)) => Err(conflicts(&ids, "records")),
        Err(e) => Err(anyhow::Error::new(e).context("nothing was imported")),
    }
}

/// One stderr line per rejected record: where it is, which field, why.
fn print_rejected(place: &str, e: &RecordError) {
    if e.field.is_empty() {
        eprintln!("rejected: {place}: {}", e.reason);
    } else {
        eprintln!("rejected: {place}: {}: {}", e.field, e.reason);
    }
}

/// One stderr line per conflicting `conn_id`, and the command's error.
fn conflicts(ids: &[String], unit: &str) -> anyhow::Error {
    for id in ids {
        eprintln!("conflict: conn_id {id:?} is already stored with different content");
    }
    anyhow::anyhow!("{} conflicting {unit}; nothing was imported", ids.len())
}

/// The `field` of the error that stands for a message skipped under `--strict` (already listed
/// on stderr as skipped, so not listed again as rejected).
const STRICT_SKIP: &str = "message";

/// One mail input, opened (or listed) before the database is touched.
enum MailInput {
    Mbox(Box<dyn BufRead>),
    /// `None` = standard input.
    Eml(Option<PathBuf>),
    Maildir(Rc<Vec<PathBuf>>),
}

/// How each input is named in messages to the operator.
enum InputName {
    Mbox(String),
    Eml(String),
    Maildir(Rc<Vec<PathBuf>>),
}

/// A message's place: its input, and its number in an mbox (from 1) or its file in a maildir.
#[derive(Debug, Clone, Copy)]
struct Loc {
    input: u32,
    n: u64,
}

fn show(names: &[InputName], loc: Loc) -> String {
    match &names[loc.input as usize] {
        InputName::Mbox(name) => format!("{name} message {}", loc.n),
        InputName::Eml(name) => name.clone(),
        InputName::Maildir(files) => files[loc.n as usize].display().to_string(),
    }
}

fn load_agents(path: Option<&PathBuf>, format: MailFormat) -> anyhow::Result<Agents> {
    let Some(path) = path else {
        anyhow::bail!(
            "--agents FILE is required with --format {} (a CSV with the header email,agent_id,agent_name)",
            format.name()
        );
    };
    let f = File::open(path)
        .with_context(|| format!("cannot open the agents file {}", path.display()))?;
    Agents::from_csv(BufReader::new(f)).map_err(|problems| {
        for p in &problems {
            eprintln!("{}: {p}", path.display());
        }
        anyhow::anyhow!("the agents file {} is not usable", path.display())
    })
}

fn open_mail_input(path: &PathBuf, format: MailFormat) -> anyhow::Result<(InputName, MailInput)> {
    let stdin = path.as_os_str() == "-";
    let name = if stdin {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    };
    Ok(match format {
        MailFormat::Maildir => {
            anyhow::ensure!(!stdin, "standard input (-) cannot be a maildir");
            let files = Rc::new(
                mail::maildir_files(path).with_context(|| format!("reading maildir {name}"))?,
            );
            (InputName::Maildir(files.clone()), MailInput::Maildir(files))
        }
        MailFormat::Mbox if stdin => (
            InputName::Mbox(name),
            MailInput::Mbox(Box::new(BufReader::with_capacity(
                READ_BUFFER,
                std::io::stdin(),
            ))),
        ),
        MailFormat::Eml if stdin => (InputName::Eml(name), MailInput::Eml(None)),
        _ => {
            let f = File::open(path).with_context(|| format!("cannot open {name}"))?;
            anyhow::ensure!(
                !f.metadata()?.is_dir(),
                "{name} is a directory (use --format maildir for a maildir)"
            );
            if format == MailFormat::Mbox {
                (
                    InputName::Mbox(name),
                    MailInput::Mbox(Box::new(BufReader::with_capacity(READ_BUFFER, f))),
                )
            } else {
                // Opened again when its turn comes, so many .eml files do not hold many descriptors.
                (InputName::Eml(name), MailInput::Eml(Some(path.clone())))
            }
        }
    })
}

type Messages = Box<dyn Iterator<Item = (Loc, std::io::Result<RawMessage>)>>;

fn messages(input: u32, source: MailInput) -> Messages {
    match source {
        MailInput::Mbox(reader) => {
            Box::new(MboxReader::new(reader).enumerate().map(move |(n, m)| {
                (
                    Loc {
                        input,
                        n: n as u64 + 1,
                    },
                    m,
                )
            }))
        }
        MailInput::Eml(path) => Box::new(std::iter::once_with(move || {
            let m = match path {
                Some(p) => File::open(&p).and_then(mail::read_eml),
                None => mail::read_eml(std::io::stdin().lock()),
            };
            (Loc { input, n: 1 }, m)
        })),
        MailInput::Maildir(files) => Box::new((0..files.len()).map(move |k| {
            let m = File::open(&files[k]).and_then(mail::read_eml);
            (Loc { input, n: k as u64 }, m)
        })),
    }
}

/// `voxtrail import --format mbox|eml|maildir`: every message through `mail::to_record`, then
/// the shared `ingest::ingest` as one all-or-nothing batch.
fn run_mail(database: &str, format: MailFormat, args: ImportArgs) -> anyhow::Result<()> {
    let stdin_uses = args.files.iter().filter(|f| f.as_os_str() == "-").count();
    anyhow::ensure!(stdin_uses <= 1, "standard input (-) can be named only once");
    let agents = load_agents(args.agents.as_ref(), format)?;
    // Open every input before touching the database, so a missing file changes nothing.
    let mut names = Vec::new();
    let mut sources = Vec::new();
    for path in &args.files {
        let (name, source) = open_mail_input(path, format)?;
        names.push(name);
        sources.push(source);
    }
    let names = Rc::new(names);
    let store = Store::open(database).with_context(|| format!("opening database {database}"))?;
    let op = store.operation(&args.operation)?;
    refuse_mirror(&store, op.id)?;
    let tz = op.tz;
    let strict = args.strict;

    let all: Messages = Box::new(
        sources
            .into_iter()
            .enumerate()
            .flat_map(|(i, source)| messages(i as u32, source)),
    );
    // The place of every record offered to ingest, by index, to name rejected ones.
    let locs: Rc<RefCell<Vec<Loc>>> = Rc::new(RefCell::new(Vec::new()));
    let skipped = Rc::new(Cell::new(0u64));
    let (locs_w, skipped_w, names_w) = (locs.clone(), skipped.clone(), names.clone());
    let agents_ref = &agents;
    let records: RecordIter<'_> = Box::new(all.filter_map(move |(loc, msg)| {
        let item = match msg {
            Err(e) => Err(RecordError {
                index: 0,
                field: String::new(),
                reason: format!("cannot read: {e}"),
            }),
            Ok(m) => match mail::to_record(&m, agents_ref, tz) {
                Ok(rec) => Ok(rec),
                Err(reason) => {
                    eprintln!("skipped: {}: {reason}", show(&names_w, loc));
                    skipped_w.set(skipped_w.get() + 1);
                    if !strict {
                        return None;
                    }
                    Err(RecordError {
                        index: 0,
                        field: STRICT_SKIP.to_owned(),
                        reason,
                    })
                }
            },
        };
        locs_w.borrow_mut().push(loc);
        Some(item)
    }));

    let start = Instant::now();
    let mut progress = StderrProgress {
        start,
        last: start,
        unit: "messages",
        // Mail is counted in messages: plain lines, no bar.
        bar: Reporter::none(),
        read: None,
    };
    let sink = store.begin_ingest(op.id)?;
    let result = ingest::ingest(records, tz, None, sink, &mut progress);
    let skipped = skipped.get();
    match result {
        Ok(summary) => {
            let secs = start.elapsed().as_secs_f64();
            let total = summary.inserted + summary.duplicates + skipped;
            eprintln!(
                "imported into {}: {} inserted, {} duplicates, {skipped} skipped, {total} messages in {secs:.1} s ({:.0} messages/s)",
                op.name,
                summary.inserted,
                summary.duplicates,
                total as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        Err(IngestError::Invalid { total, listed }) => {
            let locs = locs.borrow();
            for e in listed.iter().filter(|e| e.field != STRICT_SKIP) {
                let place = locs
                    .get(e.index as usize)
                    .map_or_else(|| format!("message {}", e.index), |l| show(&names, *l));
                print_rejected(&place, e);
            }
            let invalid = total - if strict { skipped } else { 0 };
            match (strict && skipped > 0, invalid) {
                (true, 0) => {
                    anyhow::bail!("{skipped} messages skipped under --strict; nothing was imported")
                }
                (true, n) => anyhow::bail!(
                    "{skipped} messages skipped under --strict and {n} invalid; nothing was imported"
                ),
                (false, n) => anyhow::bail!("{n} invalid messages; nothing was imported"),
            }
        }
        Err(IngestError::Conflicts(ids)) => Err(conflicts(&ids, "messages")),
        Err(e) => Err(anyhow::Error::new(e).context("nothing was imported")),
    }
}

/// A mirrored operation takes rows from its upstream only (docs/api.md, "Mirrors").
fn refuse_mirror(store: &Store, operation_id: i64) -> anyhow::Result<()> {
    if store.mirror(operation_id)?.is_some() {
        anyhow::bail!(voxtrail_server::http::error::MIRROR_WRITE_REFUSED);
    }
    Ok(())
}
