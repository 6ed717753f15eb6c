//! `voxtrail audit`: the consumer audit (docs/api.md, "Consumer audit"), oldest first, as a
//! table or as NDJSON, filtered by operation, token and start time.

use std::io::Write as _;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use voxtrail_server::store::Store;
use voxtrail_server::store::audit::{AuditFilter, AuditRecord, audit_time};
use voxtrail_wire::wall_clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Ndjson,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only requests of this operation.
    #[arg(long)]
    operation: Option<String>,
    /// Only requests made with this token ID (`voxtrail token list`).
    #[arg(long)]
    token: Option<i64>,
    /// Only requests at or after this UTC time, `YYYYmmddHHiiss`.
    #[arg(long)]
    since: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn run(database: &str, args: AuditArgs) -> anyhow::Result<()> {
    let since = match &args.since {
        None => None,
        Some(s) => {
            let wc = wall_clock::parse_compact(s)
                .with_context(|| format!("--since {s:?}: use YYYYmmddHHiiss (UTC)"))?;
            Some(audit_time(wc.and_utc()))
        }
    };
    let store = Store::open(database).with_context(|| format!("opening database {database}"))?;
    if let Some(op) = &args.operation {
        store.operation(op)?;
    }
    let records = store.list_audit(&AuditFilter {
        operation: args.operation.clone(),
        token_id: args.token,
        since,
    })?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Ndjson => {
            for r in &records {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Table => write_table(&mut out, &records)?,
    }
    out.flush()?;
    Ok(())
}

fn write_table(out: &mut impl std::io::Write, records: &[AuditRecord]) -> std::io::Result<()> {
    // Parameters are the client's text: control characters would drive the terminal.
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    };
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".into(), clean);
    let rows: Vec<[String; 11]> = records
        .iter()
        .map(|r| {
            [
                r.at.clone(),
                r.token_id.to_string(),
                r.operation.clone(),
                clean(&r.route),
                opt(&r.api),
                opt(&r.date_ini),
                opt(&r.date_end),
                r.status.to_string(),
                r.rows.to_string(),
                r.bytes.to_string(),
                r.duration_ms.to_string(),
            ]
        })
        .collect();
    let head = [
        "TIME",
        "TOKEN",
        "OPERATION",
        "ROUTE",
        "API",
        "DATE_INI",
        "DATE_END",
        "STATUS",
        "ROWS",
        "BYTES",
        "MS",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn std::io::Write, cells: &[&str]| -> std::io::Result<()> {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", text.join("  ").trim_end())
    };
    line(out, &head)?;
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(out, &cells)?;
    }
    Ok(())
}
