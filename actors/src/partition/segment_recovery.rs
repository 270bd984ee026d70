//! Recovery of one segment on open (see `segment.rs` for the rules): which
//! part of the file to check, the check, and what becomes of bytes that fail.

use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::{file_name, report, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use crate::fs::OpenMode;
use crate::partition::damage::{self, Damage};
use crate::partition::file_cache::FileCache;
use crate::partition::index::{IndexFile, OffsetEntry};
use crate::partition::log::LogError;
use crate::partition::scan::{self, Expect, Scanner, Step};

/// How [`Segment::open`] may treat a tail that no valid batch follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recovery {
    /// The next segment's base offset; `None` for the active segment.
    pub next_base: Option<i64>,
    /// The tail may be a torn write (the active segment after an unclean
    /// shutdown): truncate it.
    pub truncate_torn_tail: bool,
    /// The segment may have offset gaps between batches and at its end (the
    /// log cleaner rewrote it, see `cleaner.rs`).
    pub gaps: bool,
}

impl Segment {
    /// Opens an existing segment and recovers it (see the module doc).
    /// `full_check` validates every batch instead of the tail after the last
    /// index entry.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a file cannot be opened, read, rewritten, or truncated.
    pub fn open(
        dir: &Path,
        base: i64,
        full_check: bool,
        interval: u32,
        recovery: Recovery,
        files: &FileCache,
    ) -> Result<Self, LogError> {
        let log_path: Arc<Path> = dir.join(file_name(base, LOG_SUFFIX)).into();
        let io = LogError::io;
        let fs = files.fs();
        let (offset_index, offset_problem) = IndexFile::open(fs, dir.join(file_name(base, INDEX_SUFFIX)))?;
        let (time_index, time_problem) = IndexFile::open(fs, dir.join(file_name(base, TIME_INDEX_SUFFIX)))?;
        // Opened anew, replacing whatever the cache holds under this name (a
        // log reopened in place, a directory renamed over another), and left
        // in the cache: the segment is the active one until sealed.
        let log = fs.open(&log_path, OpenMode::Append).map_err(io(&log_path))?;
        files.put_writable(Arc::clone(&log_path), Arc::clone(&log));
        let file_len = log.file_len().map_err(io(&log_path))?;
        let mut segment = Segment::new(base, log_path, offset_index, time_index, files);
        segment.gaps = recovery.gaps;

        let problem = offset_problem.or(time_problem).or_else(|| segment.index_problem(file_len));
        if let Some(problem) = problem {
            info!(path = %segment.log_path.display(), problem, "rebuilding the segment's indexes");
        }
        let mut from = if full_check || problem.is_some() { None } else { segment.offset_index.last() };
        if from.is_some_and(|entry| !segment.valid_batch_at(entry, file_len, recovery.next_base)) {
            // The index cannot be trusted up to its last entry: check it all.
            from = None;
        }
        let scanned = segment.scan(from, file_len, interval, recovery.next_base)?;
        for span in scanned.damage {
            damage::insert(&mut segment.damage, span);
        }
        segment.size = scanned.end_position;
        segment.next_offset = scanned.end_offset;
        match (scanned.tail, recovery.next_base) {
            (Some(reason), _) if recovery.truncate_torn_tail => {
                log.set_len(scanned.end_position).map_err(io(&segment.log_path))?;
                log.sync_all().map_err(io(&segment.log_path))?;
                let (dir, truncated_bytes) = (dir.display(), file_len - scanned.end_position);
                let (segment_base, reason) = (base, reason.to_string());
                warn!(%dir, segment_base, truncated_bytes, reason, "truncated the torn tail of the active segment");
            }
            (Some(reason), next_base) => {
                let next_offset = match next_base {
                    Some(next_base) => next_base,
                    None => scan::tail_end_offset(
                        &log,
                        &segment.log_path,
                        scanned.end_position,
                        file_len,
                        scanned.end_offset,
                    )?,
                };
                segment.add_span(scanned.end_position, file_len, scanned.end_offset, next_offset, reason.to_string());
            }
            (None, Some(next_base)) if scanned.end_offset < next_base && recovery.gaps => {
                // Compacted away: the last records of the segment were superseded.
                segment.next_offset = next_base;
            }
            (None, Some(next_base)) if scanned.end_offset < next_base => {
                let reason = "the segment ends before the next one begins".to_string();
                segment.add_span(file_len, file_len, scanned.end_offset, next_base, reason);
            }
            (None, _) => {}
        }
        for span in &segment.damage {
            report(&segment.log_path, span, "damaged range found on open; its offsets are skipped, never reused");
        }
        if segment.size > 0 {
            segment.first_append_ms = segment.header_at(0, segment.size).ok().map(|h| h.max_timestamp);
        }
        Ok(segment)
    }

    /// Records a damaged span from `position` to `end` found by recovery; the
    /// segment then ends after it.
    fn add_span(&mut self, position: u64, end: u64, first_offset: i64, next_offset: i64, reason: String) {
        let span = Damage {
            segment_base: self.base_offset,
            position,
            bytes: end - position,
            first_offset,
            next_offset,
            reason,
        };
        damage::insert(&mut self.damage, span);
        self.size = end;
        self.next_offset = next_offset;
    }

    /// Why the loaded indexes cannot be trusted for a tail scan, if they cannot.
    fn index_problem(&self, file_len: u64) -> Option<&'static str> {
        let (last_offset, last_time) = (self.offset_index.last(), self.time_index.last());
        if last_offset.is_some_and(|e| u64::from(e.position) >= file_len) {
            return Some("an index entry points past the end of the log");
        }
        // Time entries are made only with offset entries, for an offset at or
        // before theirs, and the first offset entry always comes with one.
        if self.time_index.entries().len() > self.offset_index.entries().len()
            || (last_time.is_none() && last_offset.is_some())
            || last_time.map(|e| e.relative_offset) > last_offset.map(|e| e.relative_offset)
        {
            return Some("the time index does not agree with the offset index");
        }
        let first = (file_len > 0).then(|| self.header_at(0, file_len));
        let misplaced = |first: i64| first < self.base_offset || (first != self.base_offset && !self.gaps);
        if first.is_some_and(|h| h.map_or(true, |h| misplaced(h.base_offset))) {
            return Some("the first batch does not start at the segment's base offset");
        }
        None
    }

    /// Whether the batch at the index entry `entry` is valid and has the
    /// entry's offset.
    fn valid_batch_at(&self, entry: OffsetEntry, file_len: u64, next_base: Option<i64>) -> bool {
        let offset = self.base_offset + i64::from(entry.relative_offset);
        let expect = Expect { segment_base: self.base_offset, offset, below: next_base, gaps: self.gaps };
        let position = u64::from(entry.position);
        let Ok(log) = self.file() else { return false };
        let mut scanner = Scanner::new(log, Arc::clone(&self.log_path), position, file_len, 0);
        matches!(scanner.next(true), Ok(Step::Batch(_, header)) if expect.follows(&header))
    }

    /// Scans batches from the index entry `from` (trusting the indexes before
    /// it), or from the start, rebuilding both indexes, when `from` is `None`.
    /// Sets the tracked fields of every valid batch and returns what it found.
    fn scan(
        &mut self,
        from: Option<OffsetEntry>,
        file_len: u64,
        interval: u32,
        next_base: Option<i64>,
    ) -> Result<scan::Scanned, LogError> {
        let base = self.base_offset;
        let (start, expected) = match from {
            Some(e) => (u64::from(e.position), base + i64::from(e.relative_offset)),
            None => (0, base),
        };
        let last_time = from.and_then(|_| self.time_index.last());
        self.size = start;
        self.next_offset = expected;
        self.max_timestamp = last_time.map_or(i64::MIN, |e| e.timestamp);
        self.offset_of_max_timestamp = last_time.map_or(base, |e| base + i64::from(e.relative_offset));
        self.last_indexed_timestamp = self.max_timestamp;
        self.bytes_since_index_entry = 0;

        let (log, path) = (self.file()?, Arc::clone(&self.log_path));
        let expect = Expect { segment_base: base, offset: expected, below: next_base, gaps: self.gaps };
        let (mut offsets, mut times) = (Vec::new(), Vec::new());
        let scanned = scan::scan_file(&log, &path, start, file_len, expect, |position, header| {
            // The batch at `from` already has its entry.
            let may_index = from.is_none() || position != start;
            let (offset_entry, time_entry) = self.track(position, header, interval, may_index);
            offsets.extend(offset_entry);
            times.extend(time_entry);
        })?;
        if from.is_none() {
            self.offset_index.replace(offsets);
            self.time_index.replace(times);
        } else {
            offsets.into_iter().for_each(|entry| self.offset_index.append(entry));
            times.into_iter().for_each(|entry| self.time_index.append(entry));
        }
        Ok(scanned)
    }
}
