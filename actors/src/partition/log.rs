//! A partition's log: an ordered list of segments in one directory, of which the
//! last is the active one that takes appends.
//!
//! Invariants, established by [`Log::open`] and kept by every method:
//!
//! - there is always at least one segment; their base offsets increase, and each
//!   segment ends exactly where the next begins, so offsets run on without a gap
//!   from `log_start_offset` (the first segment's base) to `log_end_offset`;
//! - only the active segment grows; a non-active segment is never empty;
//! - batches are stored exactly as appended, after their base offset was set:
//!   a read returns those bytes unchanged. Appends and recovery check every
//!   checksum; reads check headers only and leave checksums to the consumer.
//!
//! Durability is the caller's: appends do not fsync. [`Log::take_unsynced`]
//! hands out the files to fsync, so that a separate thread can group-commit them
//! off the event loop; [`Log::flush_all`] fsyncs everything at shutdown.
//!
//! Recovery on open (segment by segment, see `segment.rs`): leftover `.deleted`
//! and `.tmp` files are removed and files that are not segment files are left
//! alone. Each segment's tail after its last index entry is validated; after an
//! unclean shutdown the last two segments are validated whole (the previous one
//! may have been rolled just before the crash, before its fsync). A torn or
//! corrupt tail is truncated. A segment that does not end where the next one
//! begins ends the log: the later segments are removed, since a log with a gap
//! or an overlap would serve wrong offsets.
//!
//! Pure `std::fs`, no actor or async runtime: the partition actor owns one `Log`.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};

use super::segment::{self, Segment, DELETED_SUFFIX, LOG_SUFFIX};
use crate::batch::{self, BatchError, BatchHeader};

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
    /// The directory itself, to fsync new and removed directory entries.
    dir_file: Arc<File>,
    config: LogConfig,
    /// Ascending base offsets; never empty; the last is active.
    segments: Vec<Segment>,
    /// Files of rolled segments, and the directory, written since the last
    /// [`Log::take_unsynced`].
    unsynced: Vec<Arc<File>>,
    /// Whether the active `.log` file was written since the last `take_unsynced`.
    active_unsynced: bool,
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
        let existed = dir.try_exists().map_err(LogError::io(dir))?;
        fs::create_dir_all(dir).map_err(LogError::io(dir))?;
        if !existed {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent).and_then(|f| f.sync_all()).map_err(LogError::io(parent))?;
            }
        }
        let dir_file = Arc::new(File::open(dir).map_err(LogError::io(dir))?);
        let bases = clean_directory(dir)?;

        let mut segments = Vec::with_capacity(bases.len().max(1));
        let mut dir_changed = false;
        for (i, &base) in bases.iter().enumerate() {
            let full_check = !clean_shutdown && i + 2 >= bases.len();
            let segment = Segment::open(dir, base, full_check, config.index_interval_bytes)?;
            let end = segment.next_offset();
            segments.push(segment);
            let later = &bases[i + 1..];
            if later.first().is_some_and(|&next| next != end) {
                warn!(
                    dir = %dir.display(),
                    segment = base,
                    end_offset = end,
                    next_base_offset = later[0],
                    removed_segments = later.len(),
                    "segment does not end where the next begins; removing the later segments"
                );
                for &base in later {
                    segment::remove_files(dir, base)?;
                }
                dir_changed = true;
                break;
            }
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0)?);
            dir_changed = true;
        }
        if dir_changed {
            dir_file.sync_all().map_err(LogError::io(dir))?;
        }
        let log =
            Log { dir: dir.to_path_buf(), dir_file, config, segments, unsynced: Vec::new(), active_unsynced: false };
        debug!(
            dir = %dir.display(),
            log_start_offset = log.log_start_offset(),
            log_end_offset = log.log_end_offset(),
            segments = log.segments.len(),
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
    /// [`LogError::Io`] if a file cannot be created or written. After a failed
    /// write that could not be undone, every append fails until the log is reopened.
    pub fn append(&mut self, mut batch: BytesMut, now_ms: i64) -> Result<AppendInfo, LogError> {
        let header = batch::validate(&batch)?;
        if header.total_bytes() != batch.len() {
            return Err(BatchError::Malformed("bytes after the end of the batch").into());
        }
        let limit = self.segment_limit();
        if batch.len() as u64 > limit {
            return Err(LogError::BatchTooLarge { size: batch.len(), max: limit });
        }
        self.active().check_writable()?;
        if self.should_roll(batch.len(), now_ms) {
            self.roll()?;
        }
        let base_offset = self.log_end_offset();
        batch::set_base_offset(&mut batch, base_offset);
        let header = BatchHeader { base_offset, ..header };
        let interval = self.config.index_interval_bytes;
        self.active_unsynced = true;
        self.active_mut().append(&batch, &header, interval, now_ms)?;
        Ok(AppendInfo { base_offset, last_offset: header.last_offset(), max_timestamp: header.max_timestamp })
    }

    /// Whether appends are accepted: false after a failed write that could
    /// not be undone, until the log is reopened.
    pub fn is_writable(&self) -> bool {
        self.active().check_writable().is_ok()
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
        let segment = Segment::create(&self.dir, self.log_end_offset())?;
        let previous = &self.segments[self.segments.len() - 1];
        self.unsynced.push(Arc::clone(previous.log_file()));
        self.unsynced.extend(previous.index_files().map(Arc::clone));
        self.unsynced.push(Arc::clone(&self.dir_file));
        self.active_unsynced = false;
        let base_offset = segment.base_offset();
        debug!(dir = %self.dir.display(), base_offset, "rolled a new segment");
        self.segments.push(segment);
        Ok(())
    }

    /// Whole batches, as stored, from the one holding `offset`: it stops before
    /// the total would exceed `max_bytes` (but returns at least one batch if any
    /// is available) and before any batch not entirely below `max_offset` (the
    /// caller's high watermark). Empty at the log end offset.
    ///
    /// # Errors
    ///
    /// [`LogError::OffsetOutOfRange`] for an offset outside
    /// `[log_start_offset, log_end_offset]`; [`LogError::Io`] on a failed read;
    /// [`LogError::InvalidBatch`] if the stored bytes at `offset` do not parse.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult, LogError> {
        let (log_start_offset, log_end_offset) = (self.log_start_offset(), self.log_end_offset());
        if offset < log_start_offset || offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange { offset, log_start_offset, log_end_offset });
        }
        let mut out = BytesMut::new();
        let first = self.segments.partition_point(|s| s.base_offset() <= offset).saturating_sub(1);
        let mut from = offset;
        for segment in &self.segments[first..] {
            if !segment.read_into(from, &mut out, max_bytes, max_offset)? {
                break;
            }
            from = segment.next_offset();
        }
        Ok(ReadResult { bytes: out.freeze(), log_start_offset, log_end_offset })
    }

    /// Kafka's ListOffsets by timestamp: the offset of the first record whose
    /// timestamp is at least `ts`, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] on a failed read; [`LogError::InvalidBatch`] if a stored
    /// batch does not parse.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<i64>, LogError> {
        for segment in &self.segments {
            if let Some(offset) = segment.offset_for_timestamp(ts)? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    /// The first offset still in the log: the first segment's base offset.
    pub fn log_start_offset(&self) -> i64 {
        self.segments[0].base_offset()
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
    /// a roll the previous segment's `.log` and indexes and the directory (a new
    /// entry). Shared handles, so that an fsync thread can sync them off the
    /// event loop; the caller acknowledges appends only after they are synced.
    pub fn take_unsynced(&mut self) -> Vec<Arc<File>> {
        let mut files = std::mem::take(&mut self.unsynced);
        if std::mem::take(&mut self.active_unsynced) {
            files.push(Arc::clone(self.active().log_file()));
        }
        files
    }

    /// Fsyncs every segment's files and the directory. Blocking; for shutdown.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if an fsync fails; the caller must then treat what was
    /// appended since the last successful sync as lost.
    pub fn flush_all(&mut self) -> Result<(), LogError> {
        for segment in &self.segments {
            segment.sync_all()?;
        }
        self.dir_file.sync_all().map_err(LogError::io(&self.dir))?;
        self.unsynced.clear();
        self.active_unsynced = false;
        Ok(())
    }

    /// Removes whole non-active segments from the oldest on while one is expired
    /// by age (its newest timestamp is before `now_ms - retention_ms`) or by size
    /// (the log would still hold at least `retention_bytes` without it). Renames
    /// their files to `<name>.deleted` and returns those paths for the caller to
    /// delete off the event loop. The log start offset moves to the next
    /// segment's base offset.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a rename fails; segments removed before it stay removed.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<Vec<PathBuf>, LogError> {
        let mut removed = Vec::new();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let by_age = self.config.retention_ms >= 0
                && oldest.max_timestamp() < now_ms.saturating_sub(self.config.retention_ms);
            let by_size = u64::try_from(self.config.retention_bytes)
                .is_ok_and(|limit| self.size_bytes() - oldest.size() >= limit);
            if !by_age && !by_size {
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

/// Removes leftover `.deleted` and `.tmp` files and index files without a
/// `.log`, and returns the base offsets of the segments, ascending. Other files
/// are left alone.
fn clean_directory(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut logs = BTreeSet::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io(dir))? {
        let entry = entry.map_err(LogError::io(dir))?;
        let path = entry.path();
        if !entry.file_type().map_err(LogError::io(&path))?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.ends_with(DELETED_SUFFIX) || name.ends_with(TEMP_SUFFIX) {
            fs::remove_file(&path).map_err(LogError::io(&path))?;
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
            fs::remove_file(&path).map_err(LogError::io(&path))?;
        }
    }
    Ok(logs.into_iter().collect())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::batch::Record;

    /// A batch of `count` records with timestamps `ts, ts + 1, ...` and values of
    /// `value_len` bytes.
    pub(in crate::partition) fn batch_of(count: usize, ts: i64, value_len: usize) -> BytesMut {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                value: Some(Bytes::from(vec![b'v'; value_len])),
                timestamp: ts + i as i64,
                ..Record::default()
            })
            .collect();
        batch::encode(&records).unwrap()
    }

    pub(in crate::partition) fn config(segment_max_bytes: u64) -> LogConfig {
        LogConfig {
            segment_max_bytes,
            segment_ms: u64::MAX,
            index_interval_bytes: 256,
            retention_ms: -1,
            retention_bytes: -1,
        }
    }

    /// The offsets of every record in `bytes`, which must be whole valid batches.
    pub(in crate::partition) fn offsets(bytes: &[u8]) -> Vec<i64> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let header = batch::validate(rest).unwrap();
            rest = &rest[header.total_bytes()..];
        }
        batch::decode_all(bytes).unwrap().iter().map(|r| r.offset).collect()
    }

    /// Appends `batches` batches of 3 records of 100 bytes, timestamps from 1000.
    pub(in crate::partition) fn fill(log: &mut Log, batches: usize) {
        for i in 0..batches {
            log.append(batch_of(3, 1000 + 10 * i as i64, 100), 0).unwrap();
        }
    }

    #[test]
    fn a_new_log_has_one_empty_segment() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&dir.path().join("p0"), config(4096), true).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset(), log.segment_count(), log.size_bytes()), (0, 0, 1, 0));
        for suffix in ["log", "index", "timeindex"] {
            assert!(dir.path().join("p0").join(format!("00000000000000000000.{suffix}")).exists());
        }
        assert!(log.read(0, 1000, i64::MAX).unwrap().bytes.is_empty());
    }

    #[test]
    fn appends_read_back_across_segments_with_continuous_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(2048), true).unwrap();
        for i in 0..100 {
            let info = log.append(batch_of(3, 1000 + i, 100), 0).unwrap();
            assert_eq!((info.base_offset, info.last_offset, info.max_timestamp), (3 * i, 3 * i + 2, 1002 + i));
        }
        assert_eq!(log.log_end_offset(), 300);
        assert!(log.segment_count() > 5, "{} segments", log.segment_count());
        let all = log.read(0, usize::MAX, i64::MAX).unwrap();
        assert_eq!(offsets(&all.bytes), (0..300).collect::<Vec<_>>());
        assert_eq!(all.bytes.len() as u64, log.size_bytes());
        for offset in 0..300 {
            let read = log.read(offset, 1, i64::MAX).unwrap();
            assert_eq!(offsets(&read.bytes)[0], offset / 3 * 3, "offset {offset}");
        }
    }

    #[test]
    fn reads_respect_max_bytes_and_max_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
        fill(&mut log, 10);
        let batch_len = batch_of(3, 0, 100).len();
        let read = log.read(4, 2 * batch_len + batch_len / 2, i64::MAX).unwrap();
        assert_eq!(offsets(&read.bytes), (3..9).collect::<Vec<_>>());
        assert_eq!((read.log_start_offset, read.log_end_offset), (0, 30));
        assert_eq!(offsets(&log.read(4, 10, i64::MAX).unwrap().bytes), vec![3, 4, 5], "at least one batch");
        assert_eq!(offsets(&log.read(0, usize::MAX, 9).unwrap().bytes), (0..9).collect::<Vec<_>>());
        assert_eq!(offsets(&log.read(0, usize::MAX, 8).unwrap().bytes), (0..6).collect::<Vec<_>>());
        assert!(log.read(9, usize::MAX, 9).unwrap().bytes.is_empty());
        assert!(log.read(7, 10, 8).unwrap().bytes.is_empty(), "no batch below max_offset");
        assert!(log.read(30, usize::MAX, i64::MAX).unwrap().bytes.is_empty());
    }

    #[test]
    fn offsets_outside_the_log_are_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
        fill(&mut log, 2);
        for offset in [-1, 7, i64::MAX] {
            assert!(matches!(
                log.read(offset, 100, i64::MAX),
                Err(LogError::OffsetOutOfRange { log_start_offset: 0, log_end_offset: 6, .. })
            ));
        }
    }

    #[test]
    fn bad_and_oversized_batches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(1024), true).unwrap();
        let mut bad = batch_of(1, 0, 10);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(log.append(bad, 0), Err(LogError::InvalidBatch(BatchError::Checksum { .. }))));
        let mut trailing = batch_of(1, 0, 10);
        trailing.extend_from_slice(b"xx");
        assert!(matches!(log.append(trailing, 0), Err(LogError::InvalidBatch(_))));
        assert!(matches!(log.append(batch_of(1, 0, 2000), 0), Err(LogError::BatchTooLarge { max: 1024, .. })));
        assert_eq!((log.log_end_offset(), log.size_bytes()), (0, 0));
    }

    #[test]
    fn offset_for_timestamp_finds_the_first_record_at_or_after() {
        // Batches of 500 bytes: every one, every other one, or none is indexed.
        for index_interval_bytes in [0, 600, 1 << 20] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = LogConfig { index_interval_bytes, ..config(2100) };
            offset_for_timestamp_case(dir.path(), cfg);
        }
    }

    fn offset_for_timestamp_case(dir: &Path, cfg: LogConfig) {
        let mut log = Log::open(dir, cfg.clone(), true).unwrap();
        // Timestamps go back and forth, so the largest so far is what the time
        // index must hold for a lookup to be right.
        for ts in [100, 500, 200, 300, 900, 400, 1000, 950, 50, 1200, 1100, 150] {
            assert_eq!(batch_of(2, ts, 200).len(), 500);
            log.append(batch_of(2, ts, 200), 0).unwrap();
        }
        assert!(log.segment_count() > 2);
        let records = batch::decode_all(&log.read(0, usize::MAX, i64::MAX).unwrap().bytes).unwrap();
        let expected = |ts: i64| records.iter().find(|r| r.timestamp >= ts).map(|r| r.offset);
        let check = |log: &Log| {
            for ts in (0..1300).step_by(25).chain([501, 502, 1201, 1202]) {
                assert_eq!(log.offset_for_timestamp(ts).unwrap(), expected(ts), "ts {ts}");
            }
        };
        check(&log);
        assert_eq!(log.offset_for_timestamp(300).unwrap(), Some(2));
        assert_eq!(log.offset_for_timestamp(2000).unwrap(), None);
        drop(log);
        check(&Log::open(dir, cfg.clone(), true).unwrap());
        check(&Log::open(dir, cfg, false).unwrap());
    }

    #[test]
    fn retention_by_size_keeps_the_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(2048), true).unwrap();
        fill(&mut log, 40);
        let (segments, size) = (log.segment_count(), log.size_bytes());
        let mut cfg = config(2048);
        cfg.retention_bytes = (size / 2) as i64;
        log.set_config(cfg.clone());
        let removed = log.apply_retention(0).unwrap();
        assert!(!removed.is_empty() && removed.iter().all(|p| p.exists() && p.to_str().unwrap().ends_with(".deleted")));
        assert!(log.size_bytes() >= size / 2 && log.segment_count() < segments);
        assert!(log.log_start_offset() > 0);
        let first = log.read(log.log_start_offset(), 1, i64::MAX).unwrap();
        assert_eq!(offsets(&first.bytes)[0], log.log_start_offset());
        assert!(matches!(log.read(0, 1, i64::MAX), Err(LogError::OffsetOutOfRange { .. })));

        cfg.retention_bytes = 0;
        log.set_config(cfg.clone());
        log.apply_retention(0).unwrap();
        assert_eq!((log.segment_count(), log.log_end_offset()), (1, 120));
        assert_eq!(log.log_start_offset(), offsets(&log.read(log.log_start_offset(), 1, i64::MAX).unwrap().bytes)[0]);
        let start = log.log_start_offset();
        drop(log);
        let log = Log::open(dir.path(), cfg, true).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, 120));
        assert!(fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .ends_with(".deleted")));
    }

    #[test]
    fn retention_by_age_removes_only_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(2048);
        let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
        for ts in [100, 100, 100, 100, 100, 100, 5000, 5000, 5000, 5000, 5000, 5000] {
            log.append(batch_of(3, ts, 100), 0).unwrap();
        }
        let segments = log.segment_count();
        cfg.retention_ms = 1000;
        log.set_config(cfg);
        assert!(log.apply_retention(1000).unwrap().is_empty(), "nothing older than 0");
        assert!(!log.apply_retention(3000).unwrap().is_empty());
        assert!(log.segment_count() < segments && log.segment_count() > 1);
        // Offsets 0..18 have timestamps 100..=102, 18..36 have 5000..=5002:
        // only segments wholly below 18 may go, and at least one did.
        let start = log.log_start_offset();
        assert!(start > 0 && start <= 18, "log start {start}");
        let kept = log.read(start, usize::MAX, i64::MAX).unwrap();
        assert_eq!(offsets(&kept.bytes), (start..36).collect::<Vec<_>>());
        log.apply_retention(i64::MAX).unwrap();
        assert_eq!(log.segment_count(), 1, "the active segment stays");
        assert!(log.log_start_offset() < log.log_end_offset());
    }

    #[test]
    fn the_active_segment_rolls_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(1 << 20);
        cfg.segment_ms = 1000;
        let mut log = Log::open(dir.path(), cfg, true).unwrap();
        log.append(batch_of(1, 0, 10), 5000).unwrap();
        log.append(batch_of(1, 0, 10), 5999).unwrap();
        assert_eq!(log.segment_count(), 1);
        log.append(batch_of(1, 0, 10), 6000).unwrap();
        assert_eq!(log.segment_count(), 2);
        assert!(dir.path().join("00000000000000000002.log").exists());
        log.append(batch_of(1, 0, 10), 6999).unwrap();
        assert_eq!(log.segment_count(), 2, "age counts from the first append to the new segment");
    }

    #[test]
    fn take_unsynced_names_the_files_to_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(1024), true).unwrap();
        assert!(log.take_unsynced().is_empty());
        log.append(batch_of(1, 0, 400), 0).unwrap();
        let files = log.take_unsynced();
        assert_eq!(files.len(), 1);
        assert!(Arc::ptr_eq(&files[0], log.active().log_file()));
        assert!(log.take_unsynced().is_empty());

        let before = Arc::clone(log.active().log_file());
        log.append(batch_of(1, 0, 800), 0).unwrap();
        assert_eq!(log.segment_count(), 2);
        let files = log.take_unsynced();
        assert!(files.iter().any(|f| Arc::ptr_eq(f, &before)), "the previous .log");
        assert!(files.iter().any(|f| Arc::ptr_eq(f, &log.dir_file)), "the directory");
        assert!(files.iter().any(|f| Arc::ptr_eq(f, log.active().log_file())), "the new active .log");
        for file in files {
            file.sync_data().unwrap();
        }
        log.flush_all().unwrap();
        assert!(log.take_unsynced().is_empty());
    }
}
