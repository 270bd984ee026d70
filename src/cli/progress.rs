//! Progress of long commands on a terminal: a bar with live rates when the
//! total is known (the records of a benchmark, the bytes of a file given to
//! `produce` on standard input), a counter with a live rate otherwise.
//! Nothing is drawn when standard error is not a terminal, or with
//! `--no-progress`, so scripts and logs never see it.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const RECORDS_BAR: &str = "{prefix}: [{bar:30}] {pos}/{len} records ({percent} %), {per_sec}, {elapsed} (eta {eta})";
const RECORDS_COUNT: &str = "{prefix}: {spinner} {pos} records, {per_sec}, {elapsed}";
const BYTES_BAR: &str =
    "{prefix}: [{bar:30}] {bytes}/{total_bytes} ({percent} %), {binary_bytes_per_sec}, {msg}, {elapsed} (eta {eta})";

/// A progress display; a hidden one when disabled. Cheap to update per item.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Whether progress may be drawn: standard error is a terminal and the
    /// user did not turn it off.
    pub fn wanted(no_progress: bool) -> bool {
        !no_progress && std::io::stderr().is_terminal()
    }

    /// Records out of `total`, or counted without one.
    pub fn records(enabled: bool, label: &str, total: Option<u64>) -> Progress {
        Progress::start(enabled, label, total, if total.is_some() { RECORDS_BAR } else { RECORDS_COUNT })
    }

    /// Bytes out of `total` (of a file being read), with a message that
    /// counts records.
    pub fn bytes(enabled: bool, label: &str, total: u64) -> Progress {
        Progress::start(enabled, label, Some(total), BYTES_BAR)
    }

    fn start(enabled: bool, label: &str, total: Option<u64>, template: &str) -> Progress {
        let bar = match (enabled, total) {
            (false, _) => return Progress { bar: ProgressBar::hidden() },
            (true, Some(total)) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            (true, None) => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        // The templates are constants: one that does not parse is a bug
        // caught by the tests below, and costs only the style here.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar }
    }

    pub fn inc(&self, delta: u64) {
        self.bar.inc(delta);
    }

    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
    }

    /// Sets the count of records shown beside a byte bar.
    pub fn set_records(&self, records: u64) {
        self.bar.set_message(format!("{records} records"));
    }

    /// Prints a line on standard error without garbling the display.
    pub fn note(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Leaves the last figures on the terminal.
    pub fn finish(&self) {
        self.bar.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for template in [RECORDS_BAR, RECORDS_COUNT, BYTES_BAR] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn a_disabled_progress_is_hidden() {
        let progress = Progress::records(false, "produce", Some(10));
        progress.inc(5);
        assert!(progress.bar.is_hidden());
        progress.finish();
    }
}
