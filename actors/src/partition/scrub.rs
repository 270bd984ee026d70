//! Finding damage before a reader does: the broker-wide allowance of the
//! background scrub ([`ScrubBudget`]) and the offline check of a data
//! directory ([`check_data_dir`], behind `herald scrub`).
//!
//! The background scrub is run by each partition actor on a timer
//! ([`Log::scrub`](super::log::Log::scrub) checks its sealed segments a little
//! at a time); all of them draw on one [`ScrubBudget`], so the broker reads at
//! most `storage.scrub_bytes_per_second` for it however many partitions there
//! are. The offline check only reads: it neither truncates nor rebuilds
//! anything, so it is safe on the data directory of a running broker (its
//! active segments may then show a tail being written).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::damage::Damage;
use super::log::{load_checkpoint, LogError};
use super::scan::{self, Expect};
use super::segment::{file_name, parse_file_name, LOG_SUFFIX};

/// How many bytes the background scrub of every partition together may read
/// per second. Clones share the allowance. Lock-free: a partition takes its
/// share with one compare-and-swap.
#[derive(Clone, Debug)]
pub struct ScrubBudget {
    /// `None` when the scrub is off.
    allowance: Option<Arc<Allowance>>,
}

#[derive(Debug)]
struct Allowance {
    bytes_per_second: u64,
    start: Instant,
    /// Bytes handed out since `start`, including any allowance that lapsed
    /// unused beyond one second's worth.
    spent: AtomicU64,
}

impl ScrubBudget {
    /// An allowance of `bytes_per_second`; 0 turns the scrub off.
    pub fn new(bytes_per_second: u64) -> Self {
        let allowance = (bytes_per_second > 0)
            .then(|| Arc::new(Allowance { bytes_per_second, start: Instant::now(), spent: AtomicU64::new(0) }));
        ScrubBudget { allowance }
    }

    /// Whether the scrub runs at all.
    pub fn is_on(&self) -> bool {
        self.allowance.is_some()
    }

    /// Takes up to `want` bytes of what accrued and was not taken yet (at most
    /// one second's worth is saved up); 0 when nothing is left now.
    pub fn take(&self, want: u64) -> u64 {
        let Some(allowance) = &self.allowance else { return 0 };
        let rate = allowance.bytes_per_second;
        let elapsed_ms = allowance.start.elapsed().as_millis();
        let accrued = u64::try_from(elapsed_ms.saturating_mul(u128::from(rate)) / 1000).unwrap_or(u64::MAX);
        let mut spent = allowance.spent.load(Ordering::Relaxed);
        loop {
            let from = spent.max(accrued.saturating_sub(rate));
            let granted = want.min(accrued.saturating_sub(from));
            if granted == 0 {
                return 0;
            }
            match allowance.spent.compare_exchange_weak(spent, from + granted, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return granted,
                Err(now) => spent = now,
            }
        }
    }
}

/// What the offline check found in one log directory.
#[derive(Debug, Clone)]
pub struct LogCheck {
    /// The log's directory.
    pub dir: PathBuf,
    pub segments: usize,
    /// Bytes of `.log` files read.
    pub bytes: u64,
    /// Damaged ranges, in offset order, from the log start offset on (a
    /// start moved by `delete_records` cuts the first one; records below it
    /// are never served). A range at the end of the last
    /// segment is one that the next start truncates if the broker did not
    /// shut down cleanly (a torn write), and keeps otherwise.
    pub damage: Vec<Damage>,
}

/// Checks every batch of every segment of the log in `dir`, as recovery does
/// but without changing anything.
///
/// # Errors
///
/// [`LogError::Io`] if the directory or a segment cannot be read.
pub fn check_log(dir: &Path) -> Result<LogCheck, LogError> {
    let mut bases: Vec<i64> = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io(dir))? {
        let entry = entry.map_err(LogError::io(dir))?;
        if let Some((base, LOG_SUFFIX)) = entry.file_name().to_str().and_then(parse_file_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let compacted = dir.join(crate::partition::cleaner::CLEANER_CHECKPOINT).exists();
    let mut check = LogCheck { dir: dir.to_path_buf(), segments: bases.len(), bytes: 0, damage: Vec::new() };
    for (i, &base) in bases.iter().enumerate() {
        let path: Arc<Path> = dir.join(file_name(base, LOG_SUFFIX)).into();
        let file: crate::fs::FileRef = Arc::new(File::open(&path).map_err(LogError::io(&path))?);
        let len = file.file_len().map_err(LogError::io(&path))?;
        check.bytes += len;
        let next_base = bases.get(i + 1).copied();
        let expect =
            Expect { segment_base: base, offset: base, below: next_base, gaps: compacted && next_base.is_some() };
        let scanned = scan::scan_file(&file, &path, 0, len, expect, |_, _| {})?;
        check.damage.extend(scanned.damage);
        let tail_end = match (&scanned.tail, next_base) {
            (Some(_), Some(next_base)) => Some(next_base),
            (Some(_), None) => {
                Some(scan::tail_end_offset(&file, &path, scanned.end_position, len, scanned.end_offset)?)
            }
            (None, Some(next_base)) if scanned.end_offset < next_base && !compacted => Some(next_base),
            (None, _) => None,
        };
        if let Some(next_offset) = tail_end {
            let reason = match scanned.tail {
                Some(reason) => reason.to_string(),
                None => "the segment ends before the next one begins".to_string(),
            };
            check.damage.push(Damage {
                segment_base: base,
                position: scanned.end_position,
                bytes: len - scanned.end_position,
                first_offset: scanned.end_offset,
                next_offset,
                reason,
            });
        }
    }
    if let Some(start) = load_checkpoint(&crate::fs::StdFs, dir)? {
        check.damage.retain(|d| d.next_offset > start);
        for range in &mut check.damage {
            range.first_offset = range.first_offset.max(start);
        }
    }
    Ok(check)
}

/// Checks every log under `data_dir` (every directory that holds segment
/// files, topics' partitions and groups' logs alike), in path order. Topics
/// being deleted (under `deleted/`) are left out.
///
/// # Errors
///
/// [`LogError::Io`] if a directory or a segment cannot be read.
pub fn check_data_dir(data_dir: &Path) -> Result<Vec<LogCheck>, LogError> {
    let mut checks = Vec::new();
    let mut pending = vec![data_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut has_segments = false;
        for entry in fs::read_dir(&dir).map_err(LogError::io(&dir))? {
            let entry = entry.map_err(LogError::io(&dir))?;
            let path = entry.path();
            if entry.file_type().map_err(LogError::io(&path))?.is_dir() {
                if path != data_dir.join("deleted") {
                    pending.push(path);
                }
            } else if entry.file_name().to_str().and_then(parse_file_name).is_some_and(|(_, s)| s == LOG_SUFFIX) {
                has_segments = true;
            }
        }
        if has_segments {
            checks.push(check_log(&dir)?);
        }
    }
    checks.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::partition::log::tests::{config, fill};
    use crate::partition::log::Log;

    #[test]
    fn the_budget_hands_out_what_accrued_once() {
        assert_eq!(ScrubBudget::new(0).take(100), 0);
        let budget = ScrubBudget::new(1_000_000);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let shared = budget.clone();
        let first = budget.take(u64::MAX);
        assert!((10_000..=1_000_000).contains(&first), "{first}");
        // What was just taken is gone for every clone.
        assert!(shared.take(u64::MAX) < 10_000);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(budget.take(100), 100);
    }

    #[test]
    fn the_offline_check_finds_damage_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let logs = [dir.path().join("topics/t/0"), dir.path().join("groups/67")];
        for path in &logs {
            let mut log = Log::open(path, config(2048), true).unwrap();
            fill(&mut log, 20);
            log.flush_all().unwrap();
        }
        let clean = check_data_dir(dir.path()).unwrap();
        assert_eq!(clean.iter().map(|c| c.dir.clone()).collect::<Vec<_>>(), [logs[1].clone(), logs[0].clone()]);
        assert!(clean.iter().all(|c| c.damage.is_empty() && c.segments > 2));

        let segment = logs[0].join(file_name(0, LOG_SUFFIX));
        let file = fs::OpenOptions::new().read(true).write(true).open(&segment).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, 60).unwrap();
        file.write_all_at(&[byte[0] ^ 1], 60).unwrap();
        let before = fs::read(&segment).unwrap();
        let found = check_log(&logs[0]).unwrap();
        assert_eq!(found.damage.iter().map(|d| (d.first_offset, d.next_offset)).collect::<Vec<_>>(), [(0, 3)]);
        assert!(found.damage[0].reason.contains("checksum"), "{}", found.damage[0].reason);
        assert_eq!(fs::read(&segment).unwrap(), before);

        // Below a start moved by delete_records: never served, not reported.
        let log = Log::open(&logs[0], config(2048), true).unwrap();
        let ranges = |check: LogCheck| check.damage.iter().map(|d| (d.first_offset, d.next_offset)).collect::<Vec<_>>();
        log.start_checkpoint().store(2).unwrap();
        assert_eq!(ranges(check_log(&logs[0]).unwrap()), [(2, 3)]);
        log.start_checkpoint().store(3).unwrap();
        assert_eq!(ranges(check_log(&logs[0]).unwrap()), []);
    }
}
