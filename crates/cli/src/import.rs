//! `voxtrail import`: files (or stdin) in NDJSON, JSON-array or CSV form, through the same
//! ingestion rules as the HTTP endpoint, as one all-or-nothing batch.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use voxtrail_server::Store;
use voxtrail_server::ingest::{self, Format, IngestError, Progress, RecordIter};

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[arg(long)]
    operation: String,
    /// ndjson, json or csv [default: decided by the content of each file].
    #[arg(long)]
    format: Option<String>,
    /// Files to import; `-` is standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

const READ_BUFFER: usize = 1024 * 1024;

/// One opened input and the number of its first record in the whole import.
struct Input {
    name: String,
    reader: Box<dyn BufRead>,
    format: Format,
}

fn open_input(path: &PathBuf, format: Option<Format>) -> anyhow::Result<Input> {
    let (name, raw): (String, Box<dyn Read>) = if path.as_os_str() == "-" {
        ("<stdin>".to_owned(), Box::new(std::io::stdin()))
    } else {
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        anyhow::ensure!(!f.metadata()?.is_dir(), "{} is a directory", path.display());
        (path.display().to_string(), Box::new(f))
    };
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
}

impl Progress for StderrProgress {
    fn records_read(&mut self, count: u64) {
        if self.last.elapsed().as_secs_f64() >= 1.0 {
            self.last = Instant::now();
            let secs = self.start.elapsed().as_secs_f64();
            eprintln!(
                "read {count} records ({:.0} records/s)",
                count as f64 / secs.max(1e-9)
            );
        }
    }
}

pub fn run(database: &str, args: ImportArgs) -> anyhow::Result<()> {
    let format = args
        .format
        .as_deref()
        .map(Format::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let stdin_uses = args.files.iter().filter(|f| f.as_os_str() == "-").count();
    anyhow::ensure!(stdin_uses <= 1, "standard input (-) can be named only once");
    // Open every input before touching the database, so a missing file changes nothing.
    let inputs = args
        .files
        .iter()
        .map(|p| open_input(p, format))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = Store::open(database).with_context(|| format!("opening database {database}"))?;
    let op = store.operation(&args.operation)?;

    // JSON arrays are parsed whole; keep their bytes alive for the borrowed iterator.
    let mut names = Vec::new();
    let mut arrays: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut streams: Vec<(usize, Input)> = Vec::new();
    for (i, mut input) in inputs.into_iter().enumerate() {
        names.push(input.name.clone());
        if input.format == Format::JsonArray {
            let mut buf = Vec::new();
            input
                .reader
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {}", input.name))?;
            arrays.push((i, buf));
        } else {
            streams.push((i, input));
        }
    }
    let mut parts: Vec<(usize, RecordIter<'_>)> = Vec::new();
    for (i, buf) in &arrays {
        parts.push((*i, ingest::read_json_array(buf)));
    }
    for (i, input) in streams {
        let it = match input.format {
            Format::Csv => ingest::read_csv(input.reader),
            _ => ingest::read_ndjson(input.reader),
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
    let mut progress = StderrProgress { start, last: start };
    let sink = store.begin_ingest(op.id)?;
    let result = ingest::ingest(chained, op.tz, None, usize::MAX, sink, &mut progress);
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
                let field = if e.field.is_empty() {
                    String::new()
                } else {
                    format!(" {}:", e.field)
                };
                eprintln!("rejected: {}:{field} {}", locate(e.index), e.reason);
            }
            anyhow::bail!("{total} invalid records; nothing was imported")
        }
        Err(IngestError::Conflicts(ids)) => {
            for id in &ids {
                eprintln!("conflict: conn_id {id:?} is already stored with different content");
            }
            anyhow::bail!("{} conflicting records; nothing was imported", ids.len())
        }
        Err(e) => Err(anyhow::Error::new(e).context("nothing was imported")),
    }
}
