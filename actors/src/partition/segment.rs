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
//! - index entries point at batches inside `[0, size)`; they are hints (an
//!   index has no checksum): a lookup checks the batch at an entry and drops
//!   an entry that disagrees with the log;
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
//! past every offset its bytes may hold. Every read checks each batch it
//! serves (CRC and base offset) and records a damaged span it meets.
//!
//! Recovery on open is in `segment_recovery.rs`, the read path (lookups,
//! checked reads, search by time, scrub) in `segment_read.rs`. Only the log
//! (`log.rs`) uses this module. Nothing here fsyncs on the append path; the
//! log hands files to a separate fsync thread.
//!
//! Descriptors: a segment keeps no file open of its own for long. Its
//! indexes answer from memory (written out at seal and at shutdown, see
//! `index.rs`), and its `.log` is taken from the broker's [`FileCache`] for
//! each append or read, which opens it when needed and closes it when
//! evicted or idle. The one exception: from the append that makes the active
//! `.log` dirty until the log hands it to the fsync writer
//! ([`Segment::take_dirty`]), the segment holds that handle and the cache
//! keeps it pinned, so a descriptor that wrote is closed only after an fsync
//! through it (the writer holds it until then).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, warn};

use super::damage::Damage;
use super::file_cache::FileCache;
use super::index::{IndexFile, OffsetEntry, TimeEntry};
use super::log::LogError;
use crate::batch::{BatchError, BatchHeader, MAX_HEADER_BYTES, MIN_HEADER_BYTES};
use crate::fs::{FileRef, OpenMode};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Added to the name of a file that retention removed; deleted by the caller,
/// or by the next open.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

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

/// One segment and what is known of its contents.
pub(crate) struct Segment {
    base_offset: i64,
    log_path: Arc<Path>,
    /// The `.log` file opened for appending, held from the append that made
    /// it dirty until it is handed to the fsync writer (see the module doc).
    dirty: Option<FileRef>,
    /// Whether the segment takes no more appends: reads open its `.log`
    /// for reading only.
    sealed: bool,
    /// Where the `.log` file is opened and kept open.
    files: FileCache,
    /// Whether the `.log` file was written since the last [`Segment::sync_all`].
    log_unsynced: bool,
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
    /// A failed append could not be undone (the `.log` or an index may hold
    /// bytes of it): the segment refuses appends until the log is reopened.
    unwritable: bool,
    /// The `.log` file holds bytes past `size` from a refused append that
    /// could not be truncated; [`Segment::discard_refused`] cuts them before
    /// the log is reopened, so that recovery cannot serve them.
    refused_tail: bool,
    /// Rewritten by the log cleaner: offsets may have gaps between batches
    /// and at the end (see `Recovery::gaps`).
    gaps: bool,
}

impl Segment {
    fn new(
        base_offset: i64,
        log_path: Arc<Path>,
        offset_index: IndexFile<OffsetEntry>,
        time_index: IndexFile<TimeEntry>,
        files: &FileCache,
    ) -> Self {
        Segment {
            base_offset,
            log_path,
            dirty: None,
            sealed: false,
            files: files.clone(),
            log_unsynced: false,
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
            refused_tail: false,
            gaps: false,
        }
    }

    /// Creates the `.log` file of a new, empty segment (its index files are
    /// written at seal or shutdown) and leaves it open in the cache.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be created, including when it
    /// already exists.
    pub fn create(dir: &Path, base_offset: i64, files: &FileCache) -> Result<Self, LogError> {
        let log_path: Arc<Path> = dir.join(file_name(base_offset, LOG_SUFFIX)).into();
        let fs = files.fs();
        let log = fs.open(&log_path, OpenMode::CreateNew).map_err(LogError::io(&log_path))?;
        files.put_writable(Arc::clone(&log_path), log);
        let offset_index = IndexFile::create(fs, dir.join(file_name(base_offset, INDEX_SUFFIX)));
        let time_index = IndexFile::create(fs, dir.join(file_name(base_offset, TIME_INDEX_SUFFIX)));
        Ok(Segment::new(base_offset, log_path, offset_index, time_index, files))
    }

    /// The `.log` file: the handle the segment holds while dirty, else from
    /// the cache (for appending while active, so that the cached handle
    /// serves the next append too).
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be opened.
    pub(crate) fn file(&self) -> Result<FileRef, LogError> {
        let file = match &self.dirty {
            Some(log) => return Ok(Arc::clone(log)),
            None if self.sealed => self.files.get(&self.log_path),
            None => self.files.get_writable(&self.log_path, false),
        };
        file.map_err(LogError::io(&self.log_path))
    }

    /// Seals the segment: it takes no more appends; its indexes' files are
    /// written out. Returns the files to fsync for it to be durable: its
    /// `.log` if dirty, and the index files written. `keep_cached`: leave the
    /// `.log` file open in the cache (a segment just rolled, likely to be
    /// read soon) rather than close it.
    ///
    /// An index file that cannot be written is logged and both are removed
    /// (best effort), for the next open to rebuild from the `.log`: the
    /// indexes in memory serve meanwhile.
    pub fn seal(&mut self, keep_cached: bool) -> Vec<FileRef> {
        let mut files: Vec<FileRef> = self.take_dirty().into_iter().collect();
        self.sealed = true;
        if !keep_cached {
            self.files.forget(&self.log_path);
        }
        let written = self.offset_index.write_pending().and_then(|offsets| {
            files.extend(offsets);
            self.time_index.write_pending()
        });
        match written {
            Ok(times) => files.extend(times),
            Err(err) => {
                error!(%err, "cannot write a sealed segment's index; removed, the next open rebuilds it");
                self.offset_index.remove_file();
                self.time_index.remove_file();
            }
        }
        files
    }

    /// The `.log` file if it was appended to since it was last handed out,
    /// for the fsync writer, which holds it until it is synced; the cache may
    /// close its own handle from now on.
    pub fn take_dirty(&mut self) -> Option<FileRef> {
        let file = self.dirty.take()?;
        self.files.unpin(&self.log_path);
        Some(file)
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
    /// `write_all`, then any index entries it earns (in memory). Does not fsync.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be opened or the write fails. A
    /// refused append is undone whole: the `.log` is truncated back to its
    /// length before it (index entries are made only after the write
    /// succeeded), so that it is neither served nor stored, and the segment takes the
    /// next append at the same offset. If the undo fails the segment is marked
    /// unwritable: it refuses appends until the log is reopened, and serves
    /// nothing of the refused batch meanwhile (see [`Segment::discard_refused`]).
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader, interval: u32, now_ms: i64) -> Result<(), LogError> {
        self.check_writable()?;
        debug_assert_eq!(header.base_offset, self.next_offset, "appends follow the segment's end");
        if self.sealed {
            let err = io::Error::other("the segment is sealed");
            return Err(LogError::io(&self.log_path)(err));
        }
        let log = match &self.dirty {
            Some(log) => Arc::clone(log),
            None => self.files.get_writable(&self.log_path, true).map_err(LogError::io(&self.log_path))?,
        };
        // Held (and pinned) before the write: a failed write may have
        // written part of the batch.
        self.dirty = Some(Arc::clone(&log));
        let position = self.size;
        self.log_unsynced = true;
        if let Err(err) = log.append(batch) {
            self.undo_log_write(position);
            return Err(LogError::io(&self.log_path)(err));
        }
        let (offset_entry, time_entry) = self.track(position, header, interval, true);
        if position == 0 {
            self.first_append_ms = Some(now_ms);
        }
        offset_entry.into_iter().for_each(|e| self.offset_index.append(e));
        time_entry.into_iter().for_each(|e| self.time_index.append(e));
        Ok(())
    }

    /// Truncates the `.log` back to `position` after a refused append; if
    /// that fails, marks the segment unwritable with a refused tail.
    fn undo_log_write(&mut self, position: u64) {
        let truncated = self.dirty.as_deref().map_or(Ok(()), |log| log.set_len(position));
        if let Err(err) = truncated {
            error!(path = %self.log_path.display(), %err, position, "cannot truncate a refused append");
            self.unwritable = true;
            self.refused_tail = true;
        }
    }

    /// Cuts the bytes of a refused append that could not be truncated when
    /// it was refused, so that reopening the log cannot serve them.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the truncation fails again: the log must not be
    /// reopened yet.
    pub fn discard_refused(&mut self) -> Result<(), LogError> {
        if !self.refused_tail {
            return Ok(());
        }
        let log = self.file()?;
        log.set_len(self.size).map_err(LogError::io(&self.log_path))?;
        self.refused_tail = false;
        Ok(())
    }

    /// The header of the batch at `position`, which must end before `end`.
    fn header_at(&self, position: u64, end: u64) -> Result<BatchHeader, LogError> {
        let available = end.saturating_sub(position);
        if available < MIN_HEADER_BYTES as u64 {
            let available = available as usize;
            return Err(BatchError::Truncated { needed: MIN_HEADER_BYTES, available }.into());
        }
        let mut buf = [0u8; MAX_HEADER_BYTES];
        let buf = &mut buf[..MAX_HEADER_BYTES.min(available as usize)];
        self.file()?.read_exact_at(buf, position).map_err(LogError::io(&self.log_path))?;
        let header = BatchHeader::parse(buf)?;
        if header.total_bytes() as u64 > available {
            let available = usize::try_from(available).unwrap_or(usize::MAX);
            return Err(BatchError::Truncated { needed: header.total_bytes(), available }.into());
        }
        Ok(header)
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
            match self.files.fs().rename(path, &target) {
                Ok(()) => renamed.push(target),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(LogError::io(path)(err)),
            }
        }
        Ok(renamed)
    }

    /// Flushes the `.log` file to disk if it was written since the last
    /// call, then writes out both indexes' pending entries and flushes them
    /// (files are opened for it as needed). An index that cannot be written
    /// or flushed (a full disk) is logged and its file removed, so that the
    /// next open rebuilds it from the `.log`: it is a hint, and the data is
    /// durable all the same.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the `.log` file cannot be opened or its fsync fails.
    pub fn sync_all(&mut self) -> Result<(), LogError> {
        if self.log_unsynced {
            self.file()?.sync_all().map_err(LogError::io(&self.log_path))?;
            self.log_unsynced = false;
        }
        self.take_dirty();
        if let Err(err) = self.offset_index.sync().and_then(|()| self.time_index.sync()) {
            warn!(%err, "cannot write a segment's index; removed, the next open rebuilds it from the log");
            self.offset_index.remove_file();
            self.time_index.remove_file();
        }
        Ok(())
    }

    /// The `.log` file's path.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Makes the active segment of a compacted log end at `next_offset`, past
    /// its last batch: a follower's next batch starts there, after records
    /// its leader's cleaner removed. The segment may have gaps from now on.
    pub(crate) fn open_gap_to(&mut self, next_offset: i64) {
        if !self.sealed && next_offset > self.next_offset {
            self.gaps = true;
            self.next_offset = next_offset;
        }
    }

    /// Makes a sealed segment of a compacted log end at `next_offset`, past
    /// its last batch: the segment after it, emptied by the cleaner, was
    /// removed, and its offsets are a gap at this one's end (as recovery
    /// finds it at the next open). Only for a sealed segment of a log with
    /// a cleaner checkpoint: the segment now may have gaps.
    pub(crate) fn extend_gap_to(&mut self, next_offset: i64) {
        if self.sealed && next_offset > self.next_offset {
            self.gaps = true;
            self.next_offset = next_offset;
        }
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
        let modified = self.files.fs().modified(&self.log_path).ok();
        let since_epoch = modified.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        since_epoch.map_or(i64::MIN, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn first_append_ms(&self) -> Option<i64> {
        self.first_append_ms
    }

    /// The damaged spans known so far, by position.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }
}

impl Drop for Segment {
    /// Closes a cached file of a removed segment, so its space is freed.
    fn drop(&mut self) {
        self.files.forget(&self.log_path);
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

#[path = "segment_read.rs"]
mod read;
#[path = "segment_recovery.rs"]
mod recovery;
#[path = "segment_truncate.rs"]
mod truncate;

pub(crate) use recovery::Recovery;

#[cfg(test)]
#[path = "segment_tests.rs"]
pub(super) mod tests;
