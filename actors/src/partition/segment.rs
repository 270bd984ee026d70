//! One segment of a partition log: a `.log` file of whole record batches, stored
//! exactly as appended, and its two sparse indexes (`index.rs`).
//!
//! Files are named by the segment's base offset, 20 digits zero-padded:
//! `00000000000000000042.log`, `.index`, `.timeindex`.
//!
//! Invariants, established by [`Segment::open`] and kept by [`Segment::append`]:
//!
//! - bytes `[0, size)` of the `.log` file are whole batches whose base offsets
//!   run on without a gap from the segment's base offset to `next_offset`;
//!   nothing after `size` is ever served;
//! - every index entry points at a batch inside `[0, size)`;
//! - an index entry is made for a batch when at least `index_interval_bytes` were
//!   written since the previous entry (counting the previously indexed batch), so
//!   a lookup scans at most that many bytes past the entry it lands on.
//!
//! Recovery scans either the whole file (`full_check`, or an index that failed
//! its sanity check) or only the tail after the last `.index` entry, validating
//! every batch it meets (header, CRC-32C, records, base offset); at the first
//! invalid or torn batch the file is truncated and synced.
//!
//! Only the log (`log.rs`) uses this module. Nothing here fsyncs on the append
//! path; the log hands files to a separate fsync thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use tracing::{info, warn};

use super::index::{IndexFile, OffsetEntry, TimeEntry};
use super::log::LogError;
use crate::batch::{self, BatchError, BatchHeader, HEADER_BYTES};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Added to the name of a file that retention removed; deleted by the caller,
/// or by the next open.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

/// Bytes read at once when recovery scans a file.
const RECOVERY_CHUNK_BYTES: usize = 256 * 1024;
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

/// One segment and what is known of its contents.
pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    /// Opened for reading and appending; shared with the fsync thread.
    log: Arc<File>,
    offset_index: IndexFile<OffsetEntry>,
    time_index: IndexFile<TimeEntry>,
    /// Bytes of valid batches; the file's length except while a write is failing.
    size: u64,
    /// Offset after the last batch; `base_offset` when empty.
    next_offset: i64,
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
    damaged: bool,
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
            log_path,
            log: Arc::new(log),
            offset_index,
            time_index,
            size: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            offset_of_max_timestamp: base_offset,
            last_indexed_timestamp: i64::MIN,
            bytes_since_index_entry: 0,
            first_append_ms: None,
            damaged: false,
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
    pub fn open(dir: &Path, base: i64, full_check: bool, interval: u32) -> Result<Self, LogError> {
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
        // A scan from the start always ends; a tail scan whose first batch does
        // not match its index entry falls back to one.
        let (valid_end, reason) = loop {
            match segment.scan(from, file_len, interval)? {
                Some(end) => break end,
                None => from = None,
            }
        };
        if valid_end < file_len {
            segment.log.set_len(valid_end).map_err(io(&segment.log_path))?;
            segment.log.sync_all().map_err(io(&segment.log_path))?;
            let (dir, truncated_bytes) = (dir.display(), file_len - valid_end);
            let reason = reason.map(|e| e.to_string()).unwrap_or_default();
            let segment_base = base;
            warn!(%dir, segment_base, truncated_bytes, reason, "truncated a torn or invalid tail");
        }
        if segment.size > 0 {
            segment.first_append_ms = segment.header_at(0, segment.size).ok().map(|h| h.max_timestamp);
        }
        Ok(segment)
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

    /// Scans batches from the index entry `from` (trusting the indexes before it),
    /// or from the start, rebuilding both indexes, when `from` is `None`. Sets
    /// every tracked field and returns where the valid batches end and why they
    /// end there, or `None` when the batch at `from` does not match the entry.
    fn scan(
        &mut self,
        from: Option<OffsetEntry>,
        file_len: u64,
        interval: u32,
    ) -> Result<Option<(u64, Option<BatchError>)>, LogError> {
        let base = self.base_offset;
        let (start, mut expected) = match from {
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

        let (log, path) = (Arc::clone(&self.log), self.log_path.clone());
        let mut scanner = Scanner::new(&log, &path, start, file_len, RECOVERY_CHUNK_BYTES);
        let (mut offsets, mut times) = (Vec::new(), Vec::new());
        let reason = loop {
            let (position, header) = match scanner.next(true)? {
                Step::End => break None,
                Step::Bad(err) => break Some(err),
                Step::Batch(position, header) => (position, header),
            };
            if header.base_offset != expected {
                break Some(BatchError::Malformed("base offset does not follow the previous batch"));
            }
            // The batch at `from` already has its entry.
            let may_index = from.is_none() || position != start;
            let (offset_entry, time_entry) = self.track(position, &header, interval, may_index);
            offsets.extend(offset_entry);
            times.extend(time_entry);
            expected = header.next_offset();
        };
        if from.is_some() && self.size == start {
            return Ok(None);
        }
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
        Ok(Some((self.size, reason)))
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
    /// [`LogError::Io`] when the segment is damaged.
    pub fn check_writable(&self) -> Result<(), LogError> {
        if self.damaged {
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
    /// then stored), the segment is marked damaged and refuses further appends.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader, interval: u32, now_ms: i64) -> Result<(), LogError> {
        self.check_writable()?;
        debug_assert_eq!(header.base_offset, self.next_offset);
        let position = self.size;
        if let Err(err) = (&*self.log).write_all(batch) {
            if self.log.set_len(position).is_err() {
                self.damaged = true;
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
            self.damaged = true;
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

    /// Position of the batch holding `offset`, or of the first batch after it;
    /// `None` when the segment ends at or before `offset`.
    fn position_of(&self, offset: i64) -> Result<Option<u64>, LogError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let relative = offset - self.base_offset;
        let start =
            self.offset_index.floor(|e| i64::from(e.relative_offset) <= relative).map_or(0, |e| u64::from(e.position));
        let mut scanner = Scanner::new(&self.log, &self.log_path, start, self.size, LOOKUP_CHUNK_BYTES);
        loop {
            match scanner.next(false)? {
                Step::Batch(position, header) if header.last_offset() >= offset => return Ok(Some(position)),
                Step::Batch(..) => {}
                Step::End => return Ok(None),
                Step::Bad(err) => return Err(err.into()),
            }
        }
    }

    /// Appends to `out` whole batches as stored, from the one holding `offset`,
    /// while `out` stays within `max_bytes` (but at least one batch if `out` is
    /// empty) and each batch lies entirely below `max_offset`. Returns whether
    /// the read may go on into the next segment.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] on a failed read; [`LogError::InvalidBatch`] if the
    /// stored bytes do not parse and nothing was read yet.
    pub fn read_into(
        &self,
        offset: i64,
        out: &mut BytesMut,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<bool, LogError> {
        let Some(position) = self.position_of(offset)? else {
            return Ok(true);
        };
        let available = self.size - position;
        let budget = max_bytes.saturating_sub(out.len());
        let want = usize::try_from(available).map_or(budget, |a| a.min(budget));
        let start = out.len();
        out.resize(start + want, 0);
        if let Err(err) = self.log.read_exact_at(&mut out[start..], position) {
            out.truncate(start);
            return Err(LogError::io(&self.log_path)(err));
        }
        let mut taken = 0;
        let mut stop = None;
        while want - taken >= HEADER_BYTES {
            let header = match BatchHeader::parse(&out[start + taken..]) {
                Ok(header) => header,
                Err(err) => {
                    stop = Some(Some(err));
                    break;
                }
            };
            if header.last_offset() >= max_offset {
                stop = Some(None);
                break;
            }
            if header.total_bytes() > want - taken {
                break;
            }
            taken += header.total_bytes();
        }
        out.truncate(start + taken);
        match stop {
            Some(Some(err)) if out.is_empty() => return Err(err.into()),
            Some(_) => return Ok(false),
            None => {}
        }
        if out.is_empty() && available > 0 {
            // The first batch alone is over max_bytes: return it anyway.
            let header = self.header_at(position, self.size)?;
            if header.last_offset() < max_offset {
                out.resize(header.total_bytes(), 0);
                if let Err(err) = self.log.read_exact_at(out, position) {
                    out.clear();
                    return Err(LogError::io(&self.log_path)(err));
                }
            }
            return Ok(false);
        }
        Ok(position + taken as u64 == self.size)
    }

    /// The offset of the first record whose timestamp is at least `ts`, if any.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] on a failed read; [`LogError::InvalidBatch`] if a stored
    /// batch does not parse.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<i64>, LogError> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        // Every batch before a time index entry's offset has a max timestamp below
        // the entry's, so the search may start at the last entry not above `ts`.
        let from = self.time_index.floor(|e| e.timestamp <= ts).map_or(0, |e| i64::from(e.relative_offset));
        let start =
            self.offset_index.floor(|e| i64::from(e.relative_offset) <= from).map_or(0, |e| u64::from(e.position));
        let mut scanner = Scanner::new(&self.log, &self.log_path, start, self.size, LOOKUP_CHUNK_BYTES);
        loop {
            match scanner.next(false)? {
                Step::Batch(position, header) if header.max_timestamp >= ts => {
                    let records = batch::decode_all(scanner.bytes(position, header.total_bytes())?)?;
                    if let Some(record) = records.iter().find(|r| r.timestamp >= ts) {
                        return Ok(Some(record.offset));
                    }
                }
                Step::Batch(..) => {}
                Step::End => return Ok(None),
                Step::Bad(err) => return Err(err.into()),
            }
        }
    }

    /// Renames the segment's files to `<name>.deleted` (the `.log` last, so that
    /// a failure leaves a segment that is still whole) and returns the new paths.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a rename fails for a reason other than a missing file.
    pub fn rename_to_deleted(&self) -> Result<Vec<PathBuf>, LogError> {
        let mut renamed = Vec::with_capacity(3);
        for path in [self.offset_index.path(), self.time_index.path(), self.log_path.as_path()] {
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

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
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
}

/// What a [`Scanner`] found at its position.
enum Step {
    /// A batch at this position; the scanner moved past it.
    Batch(u64, BatchHeader),
    /// The bytes at the position are not a whole valid batch.
    Bad(BatchError),
    /// The position is the end.
    End,
}

/// Walks the batches of a `.log` file forward, reading it in chunks.
struct Scanner<'a> {
    file: &'a File,
    path: &'a Path,
    /// Position of the next batch.
    position: u64,
    /// Where the batches end (the segment's size, or the file's length).
    end: u64,
    /// Least bytes to read at once.
    chunk: usize,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
}

impl<'a> Scanner<'a> {
    fn new(file: &'a File, path: &'a Path, position: u64, end: u64, chunk: usize) -> Self {
        Scanner { file, path, position, end, chunk, buf: Vec::new(), buf_start: 0 }
    }

    /// The file's bytes `[position, position + len)`, which lie before `end`.
    fn bytes(&mut self, position: u64, len: usize) -> Result<&[u8], LogError> {
        let buffered_end = self.buf_start + self.buf.len() as u64;
        if position < self.buf_start || position + len as u64 > buffered_end {
            let want = (len.max(self.chunk) as u64).min(self.end - position) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, position).map_err(LogError::io(self.path))?;
            self.buf_start = position;
        }
        let from = (position - self.buf_start) as usize;
        Ok(&self.buf[from..from + len])
    }

    /// The batch at the position; `verify` checks it whole (CRC and records),
    /// otherwise only its header and that it fits before `end`.
    fn next(&mut self, verify: bool) -> Result<Step, LogError> {
        let position = self.position;
        let remaining = usize::try_from(self.end.saturating_sub(position)).unwrap_or(usize::MAX);
        if remaining == 0 {
            return Ok(Step::End);
        }
        if remaining < HEADER_BYTES {
            return Ok(Step::Bad(BatchError::Truncated { needed: HEADER_BYTES, available: remaining }));
        }
        let header = match BatchHeader::parse(self.bytes(position, HEADER_BYTES)?) {
            Ok(header) => header,
            Err(err) => return Ok(Step::Bad(err)),
        };
        let total = header.total_bytes();
        if total > remaining {
            return Ok(Step::Bad(BatchError::Truncated { needed: total, available: remaining }));
        }
        if verify {
            if let Err(err) = batch::validate(self.bytes(position, total)?) {
                return Ok(Step::Bad(err));
            }
        }
        self.position += total as u64;
        Ok(Step::Batch(position, header))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;
    use crate::partition::log::tests::{batch_of, config, fill, offsets};
    use crate::partition::log::{Log, LogConfig};

    fn path(dir: &Path, base: i64, suffix: &str) -> PathBuf {
        dir.join(file_name(base, suffix))
    }

    /// Base offsets of the segment files in `dir`, ascending.
    fn bases(dir: &Path) -> Vec<i64> {
        let mut bases: Vec<i64> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                parse_file_name(e.unwrap().file_name().to_str().unwrap())
                    .filter(|(_, s)| *s == LOG_SUFFIX)
                    .map(|(b, _)| b)
            })
            .collect();
        bases.sort_unstable();
        bases
    }

    fn everything(log: &Log) -> Vec<i64> {
        offsets(&log.read(log.log_start_offset(), usize::MAX, i64::MAX).unwrap().bytes)
    }

    /// A log of 40 batches of 3 records in segments of 2048 bytes.
    fn filled(dir: &Path) -> LogConfig {
        let mut log = Log::open(dir, config(2048), true).unwrap();
        fill(&mut log, 40);
        log.flush_all().unwrap();
        config(2048)
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(file_name(42, LOG_SUFFIX), "00000000000000000042.log");
        assert_eq!(parse_file_name("00000000000000000042.timeindex"), Some((42, TIME_INDEX_SUFFIX)));
        for name in
            ["42.log", "00000000000000000042.log.deleted", "0000000000000000004x.log", "00000000000000000042.txt"]
        {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn a_reopen_finds_the_same_end_and_data() {
        for clean in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = filled(dir.path());
            let mut log = Log::open(dir.path(), cfg.clone(), clean).unwrap();
            assert_eq!((log.log_end_offset(), log.segment_count() > 3), (120, true));
            assert_eq!(everything(&log), (0..120).collect::<Vec<_>>());
            assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 120);
            drop(log);
            let log = Log::open(dir.path(), cfg, clean).unwrap();
            assert_eq!(everything(&log), (0..121).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_torn_tail_is_truncated_and_appends_continue() {
        for clean in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = filled(dir.path());
            let active = path(dir.path(), *bases(dir.path()).last().unwrap(), LOG_SUFFIX);
            let len = fs::metadata(&active).unwrap().len();
            let file = OpenOptions::new().write(true).open(&active).unwrap();
            file.set_len(len - 7).unwrap();
            let mut log = Log::open(dir.path(), cfg, clean).unwrap();
            assert_eq!(log.log_end_offset(), 117, "clean: {clean}");
            assert_eq!(fs::metadata(&active).unwrap().len(), len - batch_of(3, 0, 100).len() as u64);
            assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 117);
            assert_eq!(everything(&log), (0..118).collect::<Vec<_>>());
        }
    }

    #[test]
    fn garbage_after_the_last_batch_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let active = path(dir.path(), *bases(dir.path()).last().unwrap(), LOG_SUFFIX);
        let len = fs::metadata(&active).unwrap().len();
        OpenOptions::new().append(true).open(&active).unwrap().write_all(&[0xab; 100]).unwrap();
        let mut log = Log::open(dir.path(), cfg, false).unwrap();
        assert_eq!(fs::metadata(&active).unwrap().len(), len);
        assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 120);
        assert_eq!(everything(&log), (0..121).collect::<Vec<_>>());
    }

    #[test]
    fn a_flipped_bit_truncates_from_its_batch() {
        let batch_len = batch_of(3, 0, 100).len() as u64;
        // In the last byte of the log, and in the first batch of the active segment.
        for back in [1, 0] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = filled(dir.path());
            let base = *bases(dir.path()).last().unwrap();
            let active = path(dir.path(), base, LOG_SUFFIX);
            let len = fs::metadata(&active).unwrap().len();
            let position = if back == 1 { len - 1 } else { batch_len / 2 };
            let file = OpenOptions::new().read(true).write(true).open(&active).unwrap();
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, position).unwrap();
            file.write_all_at(&[byte[0] ^ 0x10], position).unwrap();
            let log = Log::open(dir.path(), cfg, false).unwrap();
            let expected_end = if back == 1 { 117 } else { base };
            assert_eq!(log.log_end_offset(), expected_end);
            assert_eq!(everything(&log), (0..expected_end).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_torn_segment_before_the_last_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let all = bases(dir.path());
        // The second to last is checked whole after an unclean shutdown; an
        // older one by its tail.
        for (victim, clean) in [(all.len() - 2, false), (1, true)] {
            let base = all[victim];
            let file = OpenOptions::new().write(true).open(path(dir.path(), base, LOG_SUFFIX)).unwrap();
            let len = file.metadata().unwrap().len();
            file.set_len(len - 3).unwrap();
            let mut log = Log::open(dir.path(), cfg.clone(), clean).unwrap();
            let end = all[victim + 1] - 3;
            assert_eq!((log.log_end_offset(), log.segment_count()), (end, victim + 1));
            assert_eq!(bases(dir.path()), all[..=victim]);
            assert!(!path(dir.path(), all[victim + 1], INDEX_SUFFIX).exists());
            assert_eq!(everything(&log), (0..end).collect::<Vec<_>>());
            assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, end);
            log.flush_all().unwrap();
        }
    }

    #[test]
    fn missing_or_corrupt_indexes_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let base = bases(dir.path())[1];
        let index = path(dir.path(), base, INDEX_SUFFIX);
        let time_index = path(dir.path(), base, TIME_INDEX_SUFFIX);
        let (good_index, good_time_index) = (fs::read(&index).unwrap(), fs::read(&time_index).unwrap());
        assert!(good_index.len() >= 8 && good_time_index.len() >= 12);

        let entry_past_the_end = [good_index.clone(), [0, 0, 0, 99, 0, 1, 0, 0].to_vec()].concat();
        let unordered = [good_index.clone(), good_index[..8].to_vec()].concat();
        // Increasing and inside the log, but not at a batch boundary.
        let off_boundary = [0, 0, 0, 1, 0, 0, 0, 5].to_vec();
        let damage: [(&Path, Option<Vec<u8>>); 6] = [
            (&index, None),
            (&time_index, None),
            (&index, Some(good_index[..5].to_vec())),
            (&index, Some(entry_past_the_end)),
            (&index, Some(unordered)),
            (&index, Some(off_boundary)),
        ];
        for (file, bytes) in damage {
            match &bytes {
                None => fs::remove_file(file).unwrap(),
                Some(bytes) => fs::write(file, bytes).unwrap(),
            }
            let log = Log::open(dir.path(), cfg.clone(), true).unwrap();
            assert_eq!(fs::read(&index).unwrap(), good_index, "{file:?} {bytes:?}");
            assert_eq!(fs::read(&time_index).unwrap(), good_time_index);
            assert_eq!(log.log_end_offset(), 120);
            for offset in base..base + 10 {
                assert_eq!(offsets(&log.read(offset, 1, i64::MAX).unwrap().bytes)[0], offset / 3 * 3);
            }
        }
    }

    #[test]
    fn leftovers_are_removed_and_other_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let leftovers = [
            "00000000000000000000.log.deleted",
            "00000000000000000000.index.deleted",
            "x.tmp",
            "00000000000000099999.index",
        ];
        for name in leftovers.iter().chain(&["notes.txt"]) {
            fs::write(dir.path().join(name), b"junk").unwrap();
        }
        let log = Log::open(dir.path(), cfg, false).unwrap();
        assert_eq!(log.log_end_offset(), 120);
        assert!(leftovers.iter().all(|name| !dir.path().join(name).exists()));
        assert!(dir.path().join("notes.txt").exists());
    }
}
