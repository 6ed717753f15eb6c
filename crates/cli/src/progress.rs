//! Progress of the long commands (`pull`, `import`, `seed`) on stderr. On a terminal a bar
//! is drawn (indicatif: done vs total, rate, ETA) and other lines are printed above it; when
//! stderr is not a terminal nothing is drawn and the commands print their plain lines, as
//! scripts and logs have always read them.

use std::io::{IsTerminal as _, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar of one command, or nothing when stderr is not a terminal. Cheap to clone; every
/// clone draws the same bar.
#[derive(Clone)]
pub struct Reporter {
    bar: Option<ProgressBar>,
}

/// What a bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Bytes of input read (`import`).
    Bytes,
    /// Rows stored (`seed`).
    Rows,
    /// Seconds of wall-clock time copied (`pull`); the message carries the rows.
    Span,
}

impl Reporter {
    /// A bar of `len` units (`None`: unknown, a spinner) when stderr is a terminal.
    pub fn new(unit: Unit, len: Option<u64>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let template = match (unit, len.is_some()) {
            (Unit::Bytes, true) => {
                "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}"
            }
            (Unit::Bytes, false) => "{spinner} {elapsed_precise} {bytes} ({bytes_per_sec}) {msg}",
            (Unit::Rows, true) => {
                "{spinner} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} rows ({per_sec}, ETA {eta}) {msg}"
            }
            (Unit::Rows, false) => "{spinner} {elapsed_precise} {human_pos} rows ({per_sec}) {msg}",
            (Unit::Span, _) => {
                "{spinner} {elapsed_precise} [{wide_bar}] {percent}% of the span, ETA {eta} {msg}"
            }
        };
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar: Some(bar) }
    }

    /// No bar, whatever stderr is.
    pub fn none() -> Self {
        Self { bar: None }
    }

    /// Whether a bar is drawn (stderr is a terminal).
    pub fn is_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// Prints a line on stderr (above the bar, if one is drawn).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    pub fn set_position(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }

    /// Restarts the bar's clock (rate and ETA) at `pos`, e.g. for a new pull cycle.
    pub fn restart(&self, len: u64, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_length(len);
            b.set_position(pos);
            b.reset_eta();
        }
    }

    pub fn set_message(&self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }

    /// Stops drawing and erases the bar (a run that failed before it started).
    pub fn clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// Stops drawing and leaves the last state of the bar on screen; the summary line goes
    /// below it.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
            if !b.is_hidden() {
                // The bar's last line is left open; the summary goes on the next one.
                eprintln!();
            }
        }
    }
}

/// A reader that adds the bytes it reads to a shared counter (for a bar of bytes read).
pub struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R> Counting<R> {
    pub fn new(inner: R, read: Arc<AtomicU64>) -> Self {
        Self { inner, read }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_reader_counts_every_byte() {
        let read = Arc::new(AtomicU64::new(0));
        let mut r = Counting::new(&b"hello world"[..], read.clone());
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
        assert_eq!(read.load(Ordering::Relaxed), 11);
    }

    #[test]
    fn without_a_terminal_nothing_is_drawn() {
        // The test harness captures stderr into a pipe or a file.
        if std::io::stderr().is_terminal() {
            return;
        }
        let r = Reporter::new(Unit::Rows, Some(10));
        assert!(!r.is_bar());
        r.set_position(5);
        r.finish();
    }
}
