//! A partition's log: an ordered list of segments in one directory, of which the
//! last is the active one that takes appends.
//!
//! Invariants, established by [`Log::open`] and kept by every method:
//!
//! - there is always at least one segment; their base offsets increase, and each
//!   segment ends exactly where the next begins, so offsets run on without a gap
//!   from the first segment's base to `log_end_offset`, except in a compacted
//!   log (`cleaner.rs`, `log_clean.rs`): there a sealed segment's batches may
//!   have gaps between them and at its end (records compacted away), and a
//!   read at an offset in a gap starts at the next batch. `log_start_offset` is
//!   that base or, once `delete_records` moved it further, the checkpointed
//!   start (`log_start.rs`), never above `log_end_offset`.
//!   Some of those offsets may stand in damaged ranges (`damage.rs`): bytes
//!   that hold no valid batch, or are missing, which reads refuse with
//!   [`LogError::Damaged`] naming the range;
//! - only the active segment grows;
//! - batches are stored exactly as appended, after their base offset was set:
//!   a read returns those bytes unchanged, after checking each one (its CRC,
//!   and that its base offset follows the previous batch).
//!
//! Durability is the caller's: appends do not fsync. [`Log::take_unsynced`]
//! hands out the files to fsync, so that a separate thread can group-commit them
//! off the event loop; [`Log::flush_all`] fsyncs everything at shutdown.
//!
//! Recovery on open (segment by segment, see `segment.rs`) never deletes nor
//! overwrites data it has not proven unrecoverable, and never gives an offset
//! out twice. Leftover `.deleted` and `.tmp` files are removed and files that
//! are not segment files are left alone. Each segment's tail after its last
//! index entry is validated; after an unclean shutdown the last two segments
//! are validated whole (the previous one may have been rolled just before the
//! crash, before its fsync). Bytes that fail validation are:
//!
//! - at the end of the active segment after an unclean shutdown, with no valid
//!   batch after them: a torn write, truncated (the only truncation);
//! - anywhere else: a damaged range, kept and logged; the offsets after it keep
//!   their place. A sealed segment that ends short of the next one's base
//!   offset ends in a damaged range up to it; the active segment's damaged
//!   tail (after a clean shutdown) counts past every offset it may hold.
//!
//! Damage in parts that recovery trusted (the indexed part of each segment) is
//! found when a read meets it, or by [`Log::scrub`], which checks the sealed
//! segments a little at a time.
//!
//! Descriptors: no file stays open on the log's own account. Every
//! segment's `.log`, the active one's too, is opened through a [`FileCache`]
//! shared by every log of the process (see `file_cache.rs`); the active one
//! is pinned there from the append that makes it dirty until
//! [`Log::take_unsynced`] hands it to the fsync writer. Index files are
//! written at seal and by [`Log::flush_all`] (see `index.rs`), and the
//! directory is opened when it is fsynced.
//!
//! Every file operation goes through the [`FileSystem`] of the log's
//! [`FileCache`] (`crate::fs`; `std::fs` in production). No actor or async
//! runtime: the partition actor owns one `Log`.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info};

pub use super::damage::Damage;
use super::file_cache::FileCache;
use super::segment::{self, Recovery, Segment, DELETED_SUFFIX, LOG_SUFFIX};
use crate::batch::{self, BatchError, BatchHeader};
use crate::fs::{FileRef, FileSystem};

#[path = "log_clean.rs"]
mod log_clean;
#[path = "log_start.rs"]
mod log_start;
#[path = "producer_snapshot.rs"]
mod producer_snapshot;
use super::cleaner::{CleanerState, CLEANED_SUFFIX};
use super::producers::{ProducerStates, SequenceError, Verdict};
pub use log_clean::{CleanView, Installed};
pub use log_start::{load_checkpoint, StartCheckpoint, CHECKPOINT_FILE};
#[path = "log_truncate.rs"]
mod truncate;

/// Leftover temporary files with this suffix are removed on open.
const TEMP_SUFFIX: &str = ".tmp";
/// Index positions are `u32`, so a segment never grows past this many bytes
/// whatever `segment_max_bytes` says.
const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

/// Roll and retention settings of one partition's log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll when the active segment would exceed this many bytes (capped at
    /// `u32::MAX`); a single larger batch is refused.
    pub segment_max_bytes: u64,
    /// Roll when the active segment's first batch was appended this many
    /// milliseconds ago.
    pub segment_ms: u64,
    /// Bytes of log between sparse index entries.
    pub index_interval_bytes: u32,
    /// Delete a non-active segment whose newest timestamp is older than this
    /// many milliseconds; -1 keeps segments forever.
    pub retention_ms: i64,
    /// Delete the oldest non-active segment while the log would still hold at
    /// least this many bytes without it; -1 for no size limit.
    pub retention_bytes: i64,
}

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed; the log may need reopening (see [`Log::append`]).
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A read asked for an offset outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange { offset: i64, log_start_offset: i64, log_end_offset: i64 },
    /// A batch to append failed validation, or stored bytes did not parse.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A batch to append is larger than a segment may be.
    #[error("batch of {size} bytes exceeds segment_max_bytes {max}")]
    BatchTooLarge { size: usize, max: u64 },
    /// An idempotent producer's batch breaks its sequence (`producers.rs`).
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// A read asked for an offset in a damaged range: the stored bytes that
    /// hold it failed their checks or are missing. Reading from the range's
    /// `next_offset` goes past it.
    #[error(
        "offsets {} to {} are damaged on disk (segment {}, {} bytes at {}: {}); the next readable offset is {}",
        .0.first_offset, .0.next_offset - 1, .0.segment_base, .0.bytes, .0.position, .0.reason, .0.next_offset
    )]
    Damaged(Damage),
}

impl LogError {
    /// Wraps an i/o error with the path it happened on: `.map_err(LogError::io(&path))`.
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
        move |source| LogError::Io { path: path.to_path_buf(), source }
    }
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
    /// The batch's `max_timestamp` header field.
    pub max_timestamp: i64,
    /// The batch is an idempotent producer's retry of one appended before,
    /// at these offsets: nothing was appended.
    pub duplicate: bool,
}

/// What a read returned.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole stored batches, concatenated, exactly as stored.
    pub bytes: Bytes,
    /// The log start offset when the read was made.
    pub log_start_offset: i64,
    /// The log end offset when the read was made.
    pub log_end_offset: i64,
}

/// A partition's log. See the module doc for its invariants.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Where sealed segments' files are opened.
    files: FileCache,
    /// Ascending base offsets; never empty; the last is active.
    segments: Vec<Segment>,
    /// Files of rolled segments written since the last [`Log::take_unsynced`].
    unsynced: Vec<FileRef>,
    /// The directory, when a roll added an entry to it since the last
    /// [`Log::take_unsynced`].
    unsynced_dir: Option<FileRef>,
    /// Where [`Log::scrub`] goes on: a segment's base offset, a position in it,
    /// and the base offset of the batch there.
    scrub_cursor: (i64, u64, i64),
    /// The start moved by `delete_records` (`log_start.rs`); 0 when never moved.
    start_offset: i64,
    /// The idempotent producers' state (`producers.rs`), kept with the log
    /// (`producer_snapshot.rs`).
    producers: ProducerStates,
    /// The cleaner's checkpoint (`cleaner.rs`); `None` while never compacted.
    cleaner: Option<CleanerState>,
}

impl Log {
    /// Opens the log in `dir` (creating the directory if missing) and recovers
    /// it. `clean_shutdown`: the broker shut down cleanly last time, so indexes
    /// were flushed and only segment tails need checking.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the directory or a file cannot be read, written,
    /// truncated, or synced.
    pub fn open(dir: &Path, config: LogConfig, clean_shutdown: bool) -> Result<Log, LogError> {
        Log::open_in(dir, config, clean_shutdown, FileCache::global())
    }

    /// [`Log::open`], opening sealed segments' files through `files` instead
    /// of the process's cache.
    ///
    /// # Errors
    ///
    /// As [`Log::open`].
    pub fn open_in(dir: &Path, config: LogConfig, clean_shutdown: bool, files: &FileCache) -> Result<Log, LogError> {
        let fs = &**files.fs();
        let existed = fs.exists(dir).map_err(LogError::io(dir))?;
        fs.create_dir_all(dir).map_err(LogError::io(dir))?;
        if !existed {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(fs, parent)?;
            }
        }
        let bases = clean_directory(fs, dir)?;
        let cleaner = CleanerState::load(fs, dir)?;

        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let full_check = !clean_shutdown && i + 2 >= bases.len();
            let recovery = Recovery {
                next_base,
                truncate_torn_tail: next_base.is_none() && !clean_shutdown,
                gaps: cleaner.is_some(),
            };
            let mut segment = Segment::open(dir, base, full_check, config.index_interval_bytes, recovery, files)?;
            if next_base.is_some() {
                // Writes out a rebuilt index (a hint: not fsynced, as before
                // this log's first sync round).
                drop(segment.seal(false));
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0, files)?);
            sync_dir(fs, dir)?;
        }
        let scrub_cursor = (segments[0].base_offset(), 0, segments[0].base_offset());
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            files: files.clone(),
            segments,
            unsynced: Vec::new(),
            unsynced_dir: None,
            scrub_cursor,
            start_offset: 0,
            producers: ProducerStates::default(),
            cleaner,
        };
        log.open_start()?;
        log.recover_producers(crate::now_ms())?;
        debug!(
            dir = %dir.display(),
            log_start_offset = log.log_start_offset(),
            log_end_offset = log.log_end_offset(),
            segments = log.segments.len(),
            damaged_ranges = log.damaged().len(),
            "opened log"
        );
        Ok(log)
    }

    /// Validates `batch` (CRC and structure), sets its base offset to the log end
    /// offset, rolls first if the active segment is full or old, and writes it
    /// with one `write_all`. Does not fsync: see [`Log::take_unsynced`].
    ///
    /// # Errors
    ///
    /// [`LogError::InvalidBatch`] for a batch that fails validation or has bytes
    /// after its end; [`LogError::BatchTooLarge`] for one over `segment_max_bytes`;
    /// [`LogError::Io`] if a file cannot be created or written;
    /// [`LogError::Sequence`] for an idempotent producer's batch out of its
    /// sequence (a retried one is no error: [`AppendInfo::duplicate`]). A refused
    /// append is undone: the log is back at its length before it, and the
    /// next append takes the same offset. After a failed write that could not
    /// be undone, every append fails until [`Log::reopen`].
    pub fn append(&mut self, batch: BytesMut, now_ms: i64) -> Result<AppendInfo, LogError> {
        batch::validate(&batch)?;
        self.append_checked(batch, now_ms)
    }

    /// As [`Log::append`], for a batch its caller has validated whole: only
    /// its header is read again (its length must still be that of `batch`).
    ///
    /// # Errors
    ///
    /// As [`Log::append`].
    pub fn append_checked(&mut self, batch: BytesMut, now_ms: i64) -> Result<AppendInfo, LogError> {
        self.append_with(batch, now_ms, true)
    }

    /// As [`Log::append_checked`], for a leader's batch on a follower: the
    /// idempotent producers' sequences are recorded but not checked (the
    /// leader checked them; a follower whose producer state differs, after
    /// an expiry at another moment, must still store the leader's log as it
    /// is, as Kafka's replication does). The batch keeps the base offset the
    /// leader gave it: the log end, or, with `gaps` (a compacted topic, whose
    /// leader's cleaner removed the records between), past it. A log that
    /// takes a gap keeps a cleaner checkpoint from then on, which tells
    /// recovery that its segments may have gaps (`cleaner.rs`).
    ///
    /// # Errors
    ///
    /// As [`Log::append`], except [`LogError::Sequence`];
    /// [`LogError::OffsetOutOfRange`] for a batch that does not start at the
    /// log end (or past it, with `gaps`).
    pub fn append_replicated(&mut self, batch: BytesMut, now_ms: i64, gaps: bool) -> Result<AppendInfo, LogError> {
        let header = BatchHeader::parse(&batch)?;
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        let base = header.base_offset;
        if base < end || (base > end && !gaps) {
            return Err(LogError::OffsetOutOfRange { offset: base, log_start_offset: start, log_end_offset: end });
        }
        if base > end {
            self.open_gap(base)?;
        }
        self.append_with(batch, now_ms, false)
    }

    /// Makes the log end `base`, past the last batch: the offsets between are
    /// a gap in the active segment (or, when they would not fit its relative
    /// offsets, at the end of a segment sealed here, the next starting at
    /// `base`).
    fn open_gap(&mut self, base: i64) -> Result<(), LogError> {
        if self.cleaner.is_none() {
            let state = CleanerState::default();
            state.store(self.files.fs().as_ref(), &self.dir)?;
            self.cleaner = Some(state);
        }
        let active_base = self.active().base_offset();
        if base - active_base <= i64::from(u32::MAX / 2) {
            self.active_mut().open_gap_to(base);
            return Ok(());
        }
        let dir = self.files.fs().open_dir(&self.dir).map_err(LogError::io(&self.dir))?;
        let segment = Segment::create(&self.dir, base, &self.files)?;
        let files = self.active_mut().seal(true);
        self.active_mut().extend_gap_to(base);
        self.unsynced.extend(files);
        self.unsynced_dir = Some(dir);
        self.segments.push(segment);
        Ok(())
    }

    fn append_with(&mut self, mut batch: BytesMut, now_ms: i64, check_producers: bool) -> Result<AppendInfo, LogError> {
        let header = BatchHeader::parse(&batch)?;
        if header.total_bytes() != batch.len() {
            return Err(BatchError::Malformed("bytes after the end of the batch").into());
        }
        let limit = self.segment_limit();
        if batch.len() as u64 > limit {
            return Err(LogError::BatchTooLarge { size: batch.len(), max: limit });
        }
        let verdict = match header.producer() {
            Some(_) if check_producers => self.producers.check(&header)?,
            _ => Verdict::Append,
        };
        if let Verdict::Duplicate(kept) = verdict {
            let (base_offset, last_offset) = (kept.first_offset, kept.last_offset);
            return Ok(AppendInfo { base_offset, last_offset, max_timestamp: header.max_timestamp, duplicate: true });
        }
        self.active().check_writable()?;
        if self.should_roll(batch.len(), now_ms) {
            self.roll()?;
        }
        let base_offset = self.log_end_offset();
        batch::set_base_offset(&mut batch, base_offset);
        let header = BatchHeader { base_offset, ..header };
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(&batch, &header, interval, now_ms)?;
        if header.producer().is_some() {
            self.producers.record(&header, now_ms);
        }
        let last_offset = header.last_offset();
        Ok(AppendInfo { base_offset, last_offset, max_timestamp: header.max_timestamp, duplicate: false })
    }

    /// Whether appends are accepted: false after a failed write that could
    /// not be undone, until the log is reopened.
    pub fn is_writable(&self) -> bool {
        self.active().check_writable().is_ok()
    }

    /// Reopens the log in place after a failed append it could not undo:
    /// first cuts what the refused append left in the `.log` (so that
    /// recovery cannot serve it), then opens the directory again, recovering
    /// as after a clean stop (the page cache holds everything written).
    /// Returns the old log's unsynced files, which the caller still syncs.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the cut or the open fails; the log is then left
    /// as it was, serving reads and refusing appends.
    pub fn reopen(&mut self) -> Result<Vec<FileRef>, LogError> {
        self.active_mut().discard_refused()?;
        let log = Log::open_in(&self.dir, self.config.clone(), true, &self.files)?;
        let mut old = std::mem::replace(self, log);
        Ok(old.take_unsynced())
    }

    fn segment_limit(&self) -> u64 {
        self.config.segment_max_bytes.min(MAX_SEGMENT_BYTES)
    }

    fn should_roll(&self, batch_len: usize, now_ms: i64) -> bool {
        let active = self.active();
        if active.size() == 0 {
            return false;
        }
        let segment_ms = i64::try_from(self.config.segment_ms).unwrap_or(i64::MAX);
        active.size() + batch_len as u64 > self.segment_limit()
            || active.first_append_ms().is_some_and(|first| now_ms.saturating_sub(first) >= segment_ms)
    }

    /// Starts a new active segment at the log end offset.
    fn roll(&mut self) -> Result<(), LogError> {
        let dir = self.files.fs().open_dir(&self.dir).map_err(LogError::io(&self.dir))?;
        let segment = Segment::create(&self.dir, self.log_end_offset(), &self.files)?;
        let files = self.active_mut().seal(true);
        self.unsynced.extend(files);
        self.unsynced_dir = Some(dir);
        let base_offset = segment.base_offset();
        debug!(dir = %self.dir.display(), base_offset, "rolled a new segment");
        self.segments.push(segment);
        self.snapshot_producers(crate::now_ms(), false);
        Ok(())
    }

    /// Whole batches, as stored, from the one holding `offset`: it stops before
    /// the total would exceed `max_bytes` (but returns at least one batch if any
    /// is available), before any batch not entirely below `max_offset` (the
    /// caller's high watermark), and before a damaged range. Empty at the log
    /// end offset. Every batch is checked before it is returned; a damaged
    /// range met for the first time is recorded and logged.
    ///
    /// # Errors
    ///
    /// [`LogError::OffsetOutOfRange`] for an offset outside
    /// `[log_start_offset, log_end_offset]`; [`LogError::Damaged`] for an offset
    /// in a damaged range below `max_offset`; [`LogError::Io`] on a failed read.
    pub fn read(&mut self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult, LogError> {
        let (log_start_offset, log_end_offset) = (self.log_start_offset(), self.log_end_offset());
        if offset < log_start_offset || offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange { offset, log_start_offset, log_end_offset });
        }
        let mut out = crate::buffers::take(max_bytes);
        let first = self.segments.partition_point(|s| s.base_offset() <= offset).saturating_sub(1);
        let mut from = offset;
        for segment in &mut self.segments[first..] {
            match segment.read_into(from, &mut out, max_bytes, max_offset) {
                Ok(true) => from = segment.next_offset(),
                Ok(false) => break,
                // What was read before the range is served; the next read
                // starts in it and gets the error.
                Err(LogError::Damaged(_)) if !out.is_empty() => break,
                Err(LogError::Damaged(span)) if span.first_offset >= max_offset => break,
                Err(LogError::Damaged(mut span)) => {
                    span.first_offset = span.first_offset.max(log_start_offset);
                    return Err(LogError::Damaged(span));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(ReadResult { bytes: out.freeze(), log_start_offset, log_end_offset })
    }

    /// Kafka's ListOffsets by timestamp: the offset of the first record whose
    /// timestamp is at least `ts` among those from the log start offset on,
    /// or `None` if there is none. Records in damaged ranges are not looked at.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] on a failed read.
    pub fn offset_for_timestamp(&mut self, ts: i64) -> Result<Option<i64>, LogError> {
        let start = self.log_start_offset();
        for segment in self.segments.iter_mut().filter(|s| s.next_offset() > start) {
            if let Some(offset) = segment.offset_for_timestamp(ts, start)? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    /// Every damaged range known so far (found on open, by reads, or by the
    /// scrub), in offset order: from the log start offset on, the first
    /// one cut at it.
    pub fn damaged(&self) -> Vec<Damage> {
        let start = self.log_start_offset();
        self.segments
            .iter()
            .flat_map(|s| s.damage().iter())
            .filter(|d| d.next_offset > start)
            .map(|d| Damage { first_offset: d.first_offset.max(start), ..d.clone() })
            .collect()
    }

    /// Checks about `max_bytes` more of the sealed segments (every segment but
    /// the active one), going on where the last call stopped and starting over
    /// after the last sealed segment, and records the damaged ranges it finds.
    /// Returns whether it finished a pass over every sealed segment.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] on a failed read.
    pub fn scrub(&mut self, max_bytes: u64) -> Result<bool, LogError> {
        let sealed = self.segments.len() - 1;
        let (base, position, expected) = self.scrub_cursor;
        // The segment the cursor is in, or the next one if retention removed it.
        let at = self.segments[..sealed].partition_point(|s| s.base_offset() < base);
        let Some(segment) = self.segments[..sealed].get_mut(at) else {
            self.scrub_cursor = (self.segments[0].base_offset(), 0, self.segments[0].base_offset());
            return Ok(true);
        };
        let start = if segment.base_offset() == base { (position, expected) } else { (0, segment.base_offset()) };
        match segment.scrub(start.0, start.1, max_bytes)? {
            Some((position, expected)) => self.scrub_cursor = (segment.base_offset(), position, expected),
            None if at + 1 < sealed => {
                let next = self.segments[at + 1].base_offset();
                self.scrub_cursor = (next, 0, next);
            }
            None => {
                self.scrub_cursor = (self.segments[0].base_offset(), 0, self.segments[0].base_offset());
                info!(dir = %self.dir.display(), damaged_ranges = self.damaged().len(), "scrub finished a pass");
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The first offset still in the log: the first segment's base offset,
    /// or the start `delete_records` moved it to if that is further.
    pub fn log_start_offset(&self) -> i64 {
        self.segments[0].base_offset().max(self.start_offset)
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Sum of the `.log` files' sizes.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The files written since the last call that must be fsynced for what was
    /// appended to be durable: the active `.log` if it was appended to, and after
    /// a roll the rolled segments' `.log` (if written since last handed out),
    /// the indexes written at seal, and the directory (new entries). Handing
    /// the active `.log` out unpins it in the cache, which may close its own
    /// handle from then on: the caller fsyncs the handles it gets. The directory comes last, once, to be synced after every
    /// file's data: a sync cut short then never leaves a later segment's entry
    /// durable before an earlier segment's data (which recovery would report
    /// as a damaged range). Shared handles, so that an fsync thread can sync
    /// them off the event loop, in order; the caller acknowledges appends only
    /// after all of them are synced.
    pub fn take_unsynced(&mut self) -> Vec<FileRef> {
        let mut files = std::mem::take(&mut self.unsynced);
        files.extend(self.active_mut().take_dirty());
        files.extend(self.unsynced_dir.take());
        files
    }

    /// Fsyncs every segment's files and the directory. Blocking; for shutdown.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if an fsync fails; the caller must then treat what was
    /// appended since the last successful sync as lost.
    pub fn flush_all(&mut self) -> Result<(), LogError> {
        for segment in &mut self.segments {
            segment.sync_all()?;
        }
        self.snapshot_producers(crate::now_ms(), true);
        sync_dir(&**self.files.fs(), &self.dir)?;
        self.unsynced.clear();
        self.unsynced_dir = None;
        Ok(())
    }

    /// Removes whole non-active segments from the oldest on while one is expired
    /// by age (its newest timestamp, or its file time when no batch is
    /// readable, is before `now_ms - retention_ms`) or by size (the log would
    /// still hold at least `retention_bytes` without it) or is entirely
    /// below the log start offset (moved there by `delete_records`). Renames
    /// their files to `<name>.deleted` and returns those paths for the caller to
    /// delete off the event loop. The log start offset moves to the next
    /// segment's base offset.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a rename fails; segments removed before it stay removed.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<Vec<PathBuf>, LogError> {
        self.producers.expire(now_ms);
        let mut removed = Vec::new();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let by_age = self.config.retention_ms >= 0
                && oldest.retention_timestamp() < now_ms.saturating_sub(self.config.retention_ms);
            let by_size = u64::try_from(self.config.retention_bytes)
                .is_ok_and(|limit| self.size_bytes() - oldest.size() >= limit);
            let below_start = self.segments[1].base_offset() <= self.start_offset;
            if !by_age && !by_size && !below_start {
                break;
            }
            removed.extend(oldest.rename_to_deleted()?);
            let oldest = self.segments.remove(0);
            info!(
                dir = %self.dir.display(),
                base_offset = oldest.base_offset(),
                bytes = oldest.size(),
                by_age,
                by_size,
                below_start,
                log_start_offset = self.log_start_offset(),
                "retention removed a segment"
            );
        }
        Ok(removed)
    }

    /// Changes the roll, index, and retention settings from now on.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }
}

/// Fsyncs the directory `dir` (its entries: files created, renamed, removed).
fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<(), LogError> {
    fs.open_dir(dir).and_then(|d| d.sync_all()).map_err(LogError::io(dir))
}

/// Removes leftover `.deleted`, `.tmp` and `.cleaned` files and index files without a
/// `.log`, and returns the base offsets of the segments, ascending. Other files
/// are left alone.
fn clean_directory(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut logs = BTreeSet::new();
    let mut indexes = Vec::new();
    for name in fs.read_dir(dir).map_err(LogError::io(dir))? {
        let path = dir.join(&name);
        if name.ends_with(DELETED_SUFFIX) || name.ends_with(TEMP_SUFFIX) || name.ends_with(CLEANED_SUFFIX) {
            fs.remove_file(&path).map_err(LogError::io(&path))?;
            continue;
        }
        match segment::parse_file_name(&name) {
            Some((base, LOG_SUFFIX)) => {
                logs.insert(base);
            }
            Some((base, _)) => indexes.push((base, path)),
            None => {}
        }
    }
    for (base, path) in indexes {
        if !logs.contains(&base) {
            info!(path = %path.display(), "removing an index file without its log");
            fs.remove_file(&path).map_err(LogError::io(&path))?;
        }
    }
    Ok(logs.into_iter().collect())
}

#[cfg(test)]
#[path = "log_tests.rs"]
pub(super) mod tests;
