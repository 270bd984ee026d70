//! One segment of a partition log: a `.log` file of whole record batches, stored
//! exactly as appended, and its two sparse indexes (`index.rs`).
//!
//! Files are named by the segment's base offset, 20 digits zero-padded:
//! `00000000000000000042.log`, `.index`, `.timeindex`.
//!
//! Invariants, established by [`Segment::open`] and kept by every method:
//!
//! - bytes `[0, size)` of the `.log` file are valid batches and damaged spans
//!   (`damage.rs`); the batches' base offsets run on from the segment's base
//!   offset to `next_offset`, each damaged span standing for the offsets
//!   between the valid batches around it; nothing after `size` is served;
//! - every index entry points at a valid batch inside `[0, size)` (or at one
//!   found damaged since: walks check for that);
//! - an index entry is made for a batch when at least `index_interval_bytes` were
//!   written since the previous entry (counting the previously indexed batch), so
//!   a lookup scans at most that many bytes past the entry it lands on.
//!
//! Recovery scans either the whole file (`full_check`, or an index that failed
//! its sanity check) or only the tail after the last `.index` entry, validating
//! every batch it meets (`scan.rs`). Bytes that are not the next valid batch are
//! a damaged span when valid batches follow them. When none follows, they are
//! the segment's tail: truncated only if the caller allows it (the active
//! segment after an unclean shutdown: a torn write), otherwise kept as a span
//! that runs to the next segment's base offset, or for the active segment
//! past every offset its bytes may hold. Every read validates each batch it
//! serves (CRC, records, base offset) and records a damaged span it meets.
//!
//! Only the log (`log.rs`) uses this module. Nothing here fsyncs on the append
//! path; the log hands files to a separate fsync thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use tracing::{error, info, warn};

use super::damage::{self, Damage};
use super::index::{IndexFile, OffsetEntry, TimeEntry};
use super::log::LogError;
use super::scan::{self, Expect, Scanner, Step, SCAN_CHUNK_BYTES};
use crate::batch::{self, BatchError, BatchHeader, HEADER_BYTES};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Added to the name of a file that retention removed; deleted by the caller,
/// or by the next open.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

/// Bytes read at once when a lookup walks batch headers from an index entry.
const LOOKUP_CHUNK_BYTES: usize = 16 * 1024;

/// The name of a segment file: base offset, 20 digits, and a suffix.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// The base offset and suffix of a segment file name, or `None` for any other name.
pub(crate) fn parse_file_name(name: &str) -> Option<(i64, &str)> {
    let (digits, suffix) = name.split_once('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if ![LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX].contains(&suffix) {
        return None;
    }
    Some((digits.parse().ok()?, suffix))
}

/// Removes a segment's files from `dir`, if present.
///
/// # Errors
///
/// [`LogError::Io`] for any failure other than a missing file.
pub(crate) fn remove_files(dir: &Path, base_offset: i64) -> Result<(), LogError> {
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
        let path = dir.join(file_name(base_offset, suffix));
        match fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(LogError::io(&path)(err)),
            _ => {}
        }
    }
    Ok(())
}

/// How [`Segment::open`] may treat a tail that no valid batch follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recovery {
    /// The next segment's base offset; `None` for the active segment.
    pub next_base: Option<i64>,
    /// The tail may be a torn write (the active segment after an unclean
    /// shutdown): truncate it.
    pub truncate_torn_tail: bool,
}

/// Where the batch holding an offset is.
enum Located {
    /// The valid batch at this position, with this base offset, holds it.
    Batch(u64, i64),
    /// A damaged span stands for it.
    Damaged(Damage),
    /// The segment ends at or before it.
    After,
}

/// One segment and what is known of its contents.
pub(crate) struct Segment {
    base_offset: i64,
    log_path: Arc<Path>,
    /// Opened for reading and appending; shared with the fsync thread.
    log: Arc<File>,
    offset_index: IndexFile<OffsetEntry>,
    time_index: IndexFile<TimeEntry>,
    /// Bytes of valid batches and damaged spans; the file's length except while
    /// a write is failing.
    size: u64,
    /// Offset after the last batch or damaged span; `base_offset` when empty.
    next_offset: i64,
    /// Damaged spans known so far, by position; never overlapping.
    damage: Vec<Damage>,
    /// Largest batch `max_timestamp`; `i64::MIN` when empty.
    max_timestamp: i64,
    /// Base offset of the first batch that reached `max_timestamp`.
    offset_of_max_timestamp: i64,
    /// Timestamp of the newest `.timeindex` entry; `i64::MIN` when none.
    last_indexed_timestamp: i64,
    /// Bytes since the last `.index` entry, including the indexed batch.
    bytes_since_index_entry: u64,
    /// When the first batch was appended, for roll by age. After a reopen, the
    /// first batch's max timestamp (as Kafka does): the append time is not stored.
    first_append_ms: Option<i64>,
    /// A failed write could not be undone (the file may hold a torn batch), or an
    /// index write failed: the segment refuses appends until the log is reopened.
    unwritable: bool,
}

impl Segment {
    fn new(
        base_offset: i64,
        log_path: PathBuf,
        log: File,
        offset_index: IndexFile<OffsetEntry>,
        time_index: IndexFile<TimeEntry>,
    ) -> Self {
        Segment {
            base_offset,
            log_path: log_path.into(),
            log: Arc::new(log),
            offset_index,
            time_index,
            size: 0,
            next_offset: base_offset,
            damage: Vec::new(),
            max_timestamp: i64::MIN,
            offset_of_max_timestamp: base_offset,
            last_indexed_timestamp: i64::MIN,
            bytes_since_index_entry: 0,
            first_append_ms: None,
            unwritable: false,
        }
    }

    /// Creates the files of a new, empty segment.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a file cannot be created, including when the `.log`
    /// file already exists.
    pub fn create(dir: &Path, base_offset: i64) -> Result<Self, LogError> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&log_path)
            .map_err(LogError::io(&log_path))?;
        let indexes = IndexFile::create(dir.join(file_name(base_offset, INDEX_SUFFIX)))
            .and_then(|offsets| Ok((offsets, IndexFile::create(dir.join(file_name(base_offset, TIME_INDEX_SUFFIX)))?)));
        match indexes {
            Ok((offset_index, time_index)) => Ok(Segment::new(base_offset, log_path, log, offset_index, time_index)),
            Err(err) => {
                let _ = remove_files(dir, base_offset);
                Err(err)
            }
        }
    }

    /// Opens an existing segment and recovers it (see the module doc).
    /// `full_check` validates every batch instead of the tail after the last
    /// index entry.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a file cannot be opened, read, rewritten, or truncated.
    pub fn open(dir: &Path, base: i64, full_check: bool, interval: u32, recovery: Recovery) -> Result<Self, LogError> {
        let log_path = dir.join(file_name(base, LOG_SUFFIX));
        let io = LogError::io;
        let log = OpenOptions::new().read(true).append(true).open(&log_path).map_err(io(&log_path))?;
        let file_len = log.metadata().map_err(io(&log_path))?.len();
        let (offset_index, offset_problem) = IndexFile::open(dir.join(file_name(base, INDEX_SUFFIX)))?;
        let (time_index, time_problem) = IndexFile::open(dir.join(file_name(base, TIME_INDEX_SUFFIX)))?;
        let mut segment = Segment::new(base, log_path, log, offset_index, time_index);

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
                segment.log.set_len(scanned.end_position).map_err(io(&segment.log_path))?;
                segment.log.sync_all().map_err(io(&segment.log_path))?;
                let (dir, truncated_bytes) = (dir.display(), file_len - scanned.end_position);
                let (segment_base, reason) = (base, reason.to_string());
                warn!(%dir, segment_base, truncated_bytes, reason, "truncated the torn tail of the active segment");
            }
            (Some(reason), next_base) => {
                let next_offset = match next_base {
                    Some(next_base) => next_base,
                    None => scan::tail_end_offset(
                        &segment.log,
                        &segment.log_path,
                        scanned.end_position,
                        file_len,
                        scanned.end_offset,
                    )?,
                };
                segment.add_span(scanned.end_position, file_len, scanned.end_offset, next_offset, reason.to_string());
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
        if first.is_some_and(|h| h.map_or(true, |h| h.base_offset != self.base_offset)) {
            return Some("the first batch does not start at the segment's base offset");
        }
        None
    }

    /// Whether the batch at the index entry `entry` is valid and has the
    /// entry's offset.
    fn valid_batch_at(&self, entry: OffsetEntry, file_len: u64, next_base: Option<i64>) -> bool {
        let offset = self.base_offset + i64::from(entry.relative_offset);
        let expect = Expect { segment_base: self.base_offset, offset, below: next_base };
        let position = u64::from(entry.position);
        let mut scanner = Scanner::new(Arc::clone(&self.log), Arc::clone(&self.log_path), position, file_len, 0);
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

        let (log, path) = (Arc::clone(&self.log), Arc::clone(&self.log_path));
        let expect = Expect { segment_base: base, offset: expected, below: next_base };
        let (mut offsets, mut times) = (Vec::new(), Vec::new());
        let scanned = scan::scan_file(&log, &path, start, file_len, expect, |position, header| {
            // The batch at `from` already has its entry.
            let may_index = from.is_none() || position != start;
            let (offset_entry, time_entry) = self.track(position, header, interval, may_index);
            offsets.extend(offset_entry);
            times.extend(time_entry);
        })?;
        if from.is_none() {
            self.offset_index.replace(offsets)?;
            self.time_index.replace(times)?;
        } else {
            for entry in offsets {
                self.offset_index.append(entry)?;
            }
            for entry in times {
                self.time_index.append(entry)?;
            }
        }
        Ok(scanned)
    }

    /// Accounts for the batch at `position` and returns the index entries it earns.
    fn track(
        &mut self,
        position: u64,
        header: &BatchHeader,
        interval: u32,
        may_index: bool,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        let total = header.total_bytes() as u64;
        self.size = position + total;
        self.next_offset = header.next_offset();
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        let mut entries = (None, None);
        // Positions fit unless a segment written elsewhere is over the u32::MAX
        // bytes this log caps segments at. Relative offsets fit: every record
        // takes at least 28 bytes.
        let due = may_index && self.bytes_since_index_entry >= u64::from(interval);
        if let (true, Ok(position)) = (due, u32::try_from(position)) {
            entries.0 = Some(OffsetEntry { relative_offset: self.relative(header.base_offset), position });
            if self.max_timestamp > self.last_indexed_timestamp {
                let relative_offset = self.relative(self.offset_of_max_timestamp);
                entries.1 = Some(TimeEntry { timestamp: self.max_timestamp, relative_offset });
                self.last_indexed_timestamp = self.max_timestamp;
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += total;
        entries
    }

    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset) as u32
    }

    /// Fails if the segment refuses appends after a failed write.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] when the segment is unwritable.
    pub fn check_writable(&self) -> Result<(), LogError> {
        if self.unwritable {
            let err = io::Error::other("an earlier write failed and could not be undone; reopen the log");
            return Err(LogError::io(&self.log_path)(err));
        }
        Ok(())
    }

    /// Appends a validated batch whose base offset is `next_offset`, with one
    /// `write_all`, then any index entries it earns. Does not fsync.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a write fails. A failed `.log` write is undone by
    /// truncating back; if that fails too, or an index write fails (the batch is
    /// then stored), the segment is marked unwritable and refuses further appends.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader, interval: u32, now_ms: i64) -> Result<(), LogError> {
        self.check_writable()?;
        debug_assert_eq!(header.base_offset, self.next_offset);
        let position = self.size;
        if let Err(err) = (&*self.log).write_all(batch) {
            if self.log.set_len(position).is_err() {
                self.unwritable = true;
            }
            return Err(LogError::io(&self.log_path)(err));
        }
        if position == 0 {
            self.first_append_ms = Some(now_ms);
        }
        let (offset_entry, time_entry) = self.track(position, header, interval, true);
        let indexed = offset_entry
            .map_or(Ok(()), |e| self.offset_index.append(e))
            .and_then(|()| time_entry.map_or(Ok(()), |e| self.time_index.append(e)));
        if let Err(err) = indexed {
            // An index file may now end in part of an entry: remove both so that
            // the next open rebuilds them. Lookups keep using the entries in memory.
            self.unwritable = true;
            let _ = fs::remove_file(self.offset_index.path());
            let _ = fs::remove_file(self.time_index.path());
            return Err(err);
        }
        Ok(())
    }

    /// The header of the batch at `position`, which must end before `end`.
    fn header_at(&self, position: u64, end: u64) -> Result<BatchHeader, LogError> {
        let available = end.saturating_sub(position);
        if available < HEADER_BYTES as u64 {
            let available = available as usize;
            return Err(BatchError::Truncated { needed: HEADER_BYTES, available }.into());
        }
        let mut buf = [0u8; HEADER_BYTES];
        self.log.read_exact_at(&mut buf, position).map_err(LogError::io(&self.log_path))?;
        let header = BatchHeader::parse(&buf)?;
        if header.total_bytes() as u64 > available {
            let available = usize::try_from(available).unwrap_or(usize::MAX);
            return Err(BatchError::Truncated { needed: header.total_bytes(), available }.into());
        }
        Ok(header)
    }

    /// Where batches that start at `position` must end: the next damaged span
    /// after it, or the segment's size.
    fn limit_after(&self, position: u64) -> u64 {
        self.damage.iter().map(|d| d.position).find(|&p| p > position).unwrap_or(self.size).min(self.size)
    }

    /// Records the damaged span that starts at `position`, where a batch with
    /// base offset `expected` should have been and `reason` says why it is
    /// not, and returns it (merged with known spans it touches).
    fn found_damage(&mut self, position: u64, expected: i64, reason: &BatchError) -> Result<Damage, LogError> {
        let limit = self.limit_after(position);
        let below = self.damage.iter().find(|d| d.position == limit).map_or(self.next_offset, |d| d.first_offset);
        let expect = Expect { segment_base: self.base_offset, offset: expected, below: Some(below) };
        let next = scan::resync(&self.log, &self.log_path, position, limit, &expect)?;
        let (end, next_offset) = next.map_or((limit, below), |(at, header)| (at, header.base_offset));
        let span = Damage {
            segment_base: self.base_offset,
            position,
            bytes: end - position,
            first_offset: expected,
            next_offset,
            reason: reason.to_string(),
        };
        report(&self.log_path, &span, "damaged range found; its offsets are skipped, never reused");
        Ok(damage::insert(&mut self.damage, span))
    }

    /// Walks the valid batches from `position`, where one with base offset
    /// `expected` starts, and calls `visit` with each (its position, header,
    /// and with `verify` its bytes, checked whole) until `visit` returns a
    /// value. Damaged spans are stepped over; the ones met for the first time
    /// are recorded. `None` at the segment's end.
    fn walk<T>(
        &mut self,
        mut position: u64,
        mut expected: i64,
        verify: bool,
        mut visit: impl FnMut(u64, &BatchHeader, &[u8]) -> Option<T>,
    ) -> Result<Option<T>, LogError> {
        let chunk = if verify { SCAN_CHUNK_BYTES } else { LOOKUP_CHUNK_BYTES };
        let mut scanner = Scanner::new(Arc::clone(&self.log), Arc::clone(&self.log_path), position, self.size, chunk);
        loop {
            if let Some(span) = self.damage.iter().find(|d| d.covers(position)) {
                (position, expected) = (span.end(), span.next_offset);
                continue;
            }
            if position >= self.size {
                return Ok(None);
            }
            scanner.seek(position, self.limit_after(position));
            let expect = Expect { segment_base: self.base_offset, offset: expected, below: Some(self.next_offset) };
            let reason = match scanner.next(verify)? {
                Step::Batch(at, header) if expect.follows(&header) => {
                    let bytes = if verify { scanner.bytes(at, header.total_bytes())? } else { &[] };
                    if let Some(found) = visit(at, &header, bytes) {
                        return Ok(Some(found));
                    }
                    (position, expected) = (scanner.position(), header.next_offset());
                    continue;
                }
                Step::Batch(_, header) => scan::out_of_place(&header, &expect),
                Step::Bad(err) => err,
                // Only an empty span can end the batches here.
                Step::End => return Ok(None),
            };
            self.found_damage(position, expected, &reason)?;
        }
    }

    /// Where the batch holding `offset` is, by the offset index and a walk of
    /// batch headers from its entry.
    fn locate(&mut self, offset: i64) -> Result<Located, LogError> {
        if offset >= self.next_offset {
            return Ok(Located::After);
        }
        let relative = offset - self.base_offset;
        let (position, expected) =
            self.offset_index.floor(|e| i64::from(e.relative_offset) <= relative).map_or((0, self.base_offset), |e| {
                (u64::from(e.position), self.base_offset + i64::from(e.relative_offset))
            });
        let found = match self.damage.iter().find(|d| d.contains(offset)) {
            Some(span) => return Ok(Located::Damaged(span.clone())),
            None => self.walk(position, expected, false, |at, header, _| {
                (header.last_offset() >= offset).then_some((at, header.base_offset))
            })?,
        };
        // The walk may have found the span that holds `offset`.
        if let Some(span) = self.damage.iter().find(|d| d.contains(offset)) {
            return Ok(Located::Damaged(span.clone()));
        }
        Ok(found.map_or(Located::After, |(at, base)| Located::Batch(at, base)))
    }

    /// Appends to `out` whole batches as stored, from the one holding `offset`,
    /// while `out` stays within `max_bytes` (but at least one batch if `out` is
    /// empty) and each batch lies entirely below `max_offset`. Every batch is
    /// checked (CRC, records, base offset) before it is served; the read stops
    /// at the first damaged span. Returns whether the read may go on into the
    /// next segment.
    ///
    /// # Errors
    ///
    /// [`LogError::Damaged`] when a damaged span stands for `offset`;
    /// [`LogError::Io`] on a failed read.
    pub fn read_into(
        &mut self,
        offset: i64,
        out: &mut BytesMut,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<bool, LogError> {
        // Each round that finds no batch for `offset` recorded a new damaged
        // span, which the next round's lookup sees.
        loop {
            if let Some(more) = self.try_read_into(offset, out, max_bytes, max_offset)? {
                return Ok(more);
            }
        }
    }

    fn try_read_into(
        &mut self,
        offset: i64,
        out: &mut BytesMut,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<Option<bool>, LogError> {
        let (position, mut expected) = match self.locate(offset)? {
            Located::After => return Ok(Some(true)),
            Located::Damaged(span) => return Err(LogError::Damaged(span)),
            Located::Batch(position, base) => (position, base),
        };
        let limit = self.limit_after(position);
        let available = limit - position;
        let mut want = available.min(max_bytes.saturating_sub(out.len()) as u64);
        if out.is_empty() {
            // At least one batch, even one over max_bytes.
            let first = self.header_at(position, limit).map_or(HEADER_BYTES, |h| h.total_bytes());
            want = want.max(first as u64).min(available);
        }
        let start = out.len();
        out.resize(start + want as usize, 0);
        if let Err(err) = self.log.read_exact_at(&mut out[start..], position) {
            out.truncate(start);
            return Err(LogError::io(&self.log_path)(err));
        }
        let mut taken = 0;
        let mut problem = None;
        while want as usize - taken >= HEADER_BYTES {
            let rest = &out[start + taken..];
            let header = match BatchHeader::parse(rest) {
                Ok(header) => header,
                Err(err) => {
                    problem = Some(err);
                    break;
                }
            };
            let expect = Expect { segment_base: self.base_offset, offset: expected, below: Some(self.next_offset) };
            if !expect.follows(&header) {
                problem = Some(scan::out_of_place(&header, &expect));
                break;
            }
            if header.last_offset() >= max_offset {
                out.truncate(start + taken);
                return Ok(Some(false));
            }
            if header.total_bytes() > rest.len() {
                break;
            }
            if let Err(err) = batch::validate(&rest[..header.total_bytes()]) {
                problem = Some(err);
                break;
            }
            taken += header.total_bytes();
            expected = header.next_offset();
        }
        out.truncate(start + taken);
        if let Some(reason) = problem {
            let span = self.found_damage(position + taken as u64, expected, &reason)?;
            return match (taken, span.contains(offset)) {
                (0, true) => Err(LogError::Damaged(span)),
                (0, false) => Ok(None),
                _ => Ok(Some(false)),
            };
        }
        // An empty span at the end (a sealed segment cut at a batch boundary)
        // also stops the read: the next one gets its error.
        Ok(Some(position + taken as u64 == self.size && expected == self.next_offset))
    }

    /// The offset of the first record whose timestamp is at least `ts`, if any.
    /// Batches in damaged spans are not looked at.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] on a failed read.
    pub fn offset_for_timestamp(&mut self, ts: i64) -> Result<Option<i64>, LogError> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        // Every batch before a time index entry's offset has a max timestamp below
        // the entry's, so the search may start at the last entry not above `ts`.
        let from = self.time_index.floor(|e| e.timestamp <= ts).map_or(0, |e| i64::from(e.relative_offset));
        let (position, expected) =
            self.offset_index.floor(|e| i64::from(e.relative_offset) <= from).map_or((0, self.base_offset), |e| {
                (u64::from(e.position), self.base_offset + i64::from(e.relative_offset))
            });
        self.walk(position, expected, true, |_, header, bytes| {
            if header.max_timestamp < ts {
                return None;
            }
            let records = batch::decode_all(bytes).ok()?;
            records.iter().find(|r| r.timestamp >= ts).map(|r| r.offset)
        })
    }

    /// Checks the batches from `position` (where one with base offset
    /// `expected` starts) until at least `max_bytes` were read, recording
    /// damaged spans. Returns where to go on, or `None` at the segment's end.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] on a failed read.
    pub fn scrub(&mut self, position: u64, expected: i64, max_bytes: u64) -> Result<Option<(u64, i64)>, LogError> {
        let mut read = 0;
        self.walk(position, expected, true, |at, header, _| {
            read += header.total_bytes() as u64;
            (read >= max_bytes).then(|| (at + header.total_bytes() as u64, header.next_offset()))
        })
    }

    /// Renames the segment's files to `<name>.deleted` (the `.log` last, so that
    /// a failure leaves a segment that is still whole) and returns the new paths.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a rename fails for a reason other than a missing file.
    pub fn rename_to_deleted(&self) -> Result<Vec<PathBuf>, LogError> {
        let mut renamed = Vec::with_capacity(3);
        for path in [self.offset_index.path(), self.time_index.path(), &self.log_path] {
            let mut target = path.as_os_str().to_owned();
            target.push(DELETED_SUFFIX);
            let target = PathBuf::from(target);
            match fs::rename(path, &target) {
                Ok(()) => renamed.push(target),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(LogError::io(path)(err)),
            }
        }
        Ok(renamed)
    }

    /// Flushes the `.log` file and both indexes to disk.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if fsync fails.
    pub fn sync_all(&self) -> Result<(), LogError> {
        self.log.sync_all().map_err(LogError::io(&self.log_path))?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The time retention by age goes by: the largest batch timestamp, or
    /// for a segment without a readable batch the `.log` file's modification
    /// time (as Kafka does), so that damage does not make a segment expire.
    pub fn retention_timestamp(&self) -> i64 {
        if self.max_timestamp != i64::MIN {
            return self.max_timestamp;
        }
        let modified = self.log.metadata().and_then(|m| m.modified()).ok();
        let since_epoch = modified.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        since_epoch.map_or(i64::MIN, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn first_append_ms(&self) -> Option<i64> {
        self.first_append_ms
    }

    pub fn log_file(&self) -> &Arc<File> {
        &self.log
    }

    pub fn index_files(&self) -> [&Arc<File>; 2] {
        [self.offset_index.file(), self.time_index.file()]
    }

    /// The damaged spans known so far, by position.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }
}

/// Logs a damaged span of the segment at `path`.
fn report(path: &Path, span: &Damage, what: &str) {
    error!(
        path = %path.display(),
        first_offset = span.first_offset,
        next_offset = span.next_offset,
        position = span.position,
        bytes = span.bytes,
        reason = %span.reason,
        "{what}"
    );
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
