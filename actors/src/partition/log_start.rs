//! A log's start offset moved by `delete_records` (Kafka's DeleteRecords),
//! and the checkpoint file that keeps it.
//!
//! The log start offset is the larger of the first segment's base offset
//! (moved by retention) and the checkpointed start (moved by
//! [`Log::moved_start`]): it only moves forward. Nothing below it is
//! served: reads below it are out of range, the timestamp search starts at
//! it, and damaged ranges below it are reported neither by the log nor by
//! the offline scrub (`scrub.rs`). A segment that straddles it stays whole on
//! disk (a fetch at the start returns its batch whole, records below the
//! start included, which clients skip as for any fetch); whole segments
//! below it are deleted by [`Log::moved_start`], at open (after a crash
//! between the checkpoint and their removal), and by the retention pass.
//!
//! The checkpoint (`log-start-offset` in the partition's directory) is one
//! line, `log_start_offset <offset> crc <crc32c of the offset's digits, hex>`,
//! written through the log's [`FileSystem`] as a temporary file, fsynced,
//! renamed over the old one, and the directory fsynced: a reader sees the old
//! value or the new one, whole. At open:
//!
//! - a missing file means no start beyond the first segment's base;
//! - a file that does not read back (torn, or altered by hand) is reported at
//!   ERROR and ignored: the start falls back to the first segment's base, so
//!   records trimmed but still on disk may be served again (the other choice,
//!   refusing to open the partition, would lose all of it);
//! - a start beyond the log end offset (the log lost its tail in a crash
//!   under `flush = interval` or `never`, after records up to there were
//!   trimmed) is never clamped down, which would give the trimmed offsets out
//!   again: the log end moves up to it, an empty segment starting there, and
//!   the older segments, entirely below it, are deleted. Logged at WARN.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, warn};

use super::{sync_dir, Log, LogError};
use crate::fs::{FileSystem, OpenMode};
use crate::partition::segment::Segment;

/// The checkpoint's file name in a partition's directory.
pub const CHECKPOINT_FILE: &str = "log-start-offset";
/// The checkpoint being written; a leftover is removed at open (`.tmp`).
const CHECKPOINT_TEMP: &str = "log-start-offset.tmp";
/// The checkpoint's longest valid content, in bytes.
const CHECKPOINT_MAX_BYTES: u64 = 64;

fn checkpoint_text(offset: i64) -> String {
    let digits = offset.to_string();
    format!("log_start_offset {digits} crc {:08x}\n", crc32c::crc32c(digits.as_bytes()))
}

fn parse_checkpoint(text: &str) -> Option<i64> {
    let mut words = text.strip_suffix('\n')?.split(' ');
    let (Some("log_start_offset"), Some(digits), Some("crc"), Some(crc), None) =
        (words.next(), words.next(), words.next(), words.next(), words.next())
    else {
        return None;
    };
    let crc = u32::from_str_radix(crc, 16).ok()?;
    let offset: i64 = digits.parse().ok()?;
    (crc == crc32c::crc32c(digits.as_bytes()) && offset >= 0).then_some(offset)
}

/// Writes the checkpoint of `dir` atomically (see the module doc). Blocking.
///
/// # Errors
///
/// [`LogError::Io`] if a step fails; the previous checkpoint is then in place.
pub fn store_checkpoint(fs: &dyn FileSystem, dir: &Path, offset: i64) -> Result<(), LogError> {
    let temp = dir.join(CHECKPOINT_TEMP);
    match fs.remove_file(&temp) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(LogError::io(&temp)(err)),
        _ => {}
    }
    let file = fs.open(&temp, OpenMode::CreateNew).map_err(LogError::io(&temp))?;
    file.append(checkpoint_text(offset).as_bytes()).map_err(LogError::io(&temp))?;
    file.sync_all().map_err(LogError::io(&temp))?;
    let path = dir.join(CHECKPOINT_FILE);
    fs.rename(&temp, &path).map_err(LogError::io(&path))?;
    sync_dir(fs, dir)
}

/// The checkpointed start of `dir`: `None` when there is none, or when the
/// file does not read back (logged, see the module doc).
///
/// # Errors
///
/// [`LogError::Io`] if the file exists but cannot be read.
pub fn load_checkpoint(fs: &dyn FileSystem, dir: &Path) -> Result<Option<i64>, LogError> {
    let path = dir.join(CHECKPOINT_FILE);
    if !fs.exists(&path).map_err(LogError::io(&path))? {
        return Ok(None);
    }
    let file = fs.open(&path, OpenMode::Read).map_err(LogError::io(&path))?;
    let len = file.file_len().map_err(LogError::io(&path))?;
    let mut bytes = vec![0; len.min(CHECKPOINT_MAX_BYTES) as usize];
    file.read_exact_at(&mut bytes, 0).map_err(LogError::io(&path))?;
    let parsed = (len <= CHECKPOINT_MAX_BYTES).then(|| std::str::from_utf8(&bytes).ok().and_then(parse_checkpoint));
    match parsed.flatten() {
        Some(offset) => Ok(Some(offset)),
        None => {
            error!(
                path = %path.display(),
                "the log start offset checkpoint does not read back; ignored: records deleted by \
                 delete_records but still on disk may be served again"
            );
            Ok(None)
        }
    }
}

/// A log's checkpoint file, to write off the event loop.
#[derive(Debug, Clone)]
pub struct StartCheckpoint {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
}

impl StartCheckpoint {
    /// Writes `offset` as the log's start (see [`store_checkpoint`]). Blocking.
    ///
    /// # Errors
    ///
    /// As [`store_checkpoint`].
    pub fn store(&self, offset: i64) -> Result<(), LogError> {
        store_checkpoint(&*self.fs, &self.dir, offset)
    }
}

impl Log {
    /// Applies the checkpointed start at open (see the module doc): moves
    /// the log end up to it if the log ends below it, and deletes the whole
    /// segments below it (left by a crash after the checkpoint was stored).
    pub(super) fn open_start(&mut self) -> Result<(), LogError> {
        let fs = Arc::clone(self.files.fs());
        let Some(start) = load_checkpoint(&*fs, &self.dir)? else { return Ok(()) };
        let log_end_offset = self.log_end_offset();
        if start > log_end_offset {
            warn!(
                dir = %self.dir.display(),
                log_start_offset = start,
                log_end_offset,
                "the log ends below its checkpointed start offset (its tail was lost); \
                 the log end moves up to the start, so that no offset is given out twice"
            );
            let segment = Segment::create(&self.dir, start, &self.files)?;
            sync_dir(&*fs, &self.dir)?;
            // The new active segment; every older one is below the start.
            self.segments.push(segment);
        }
        self.start_offset = start;
        for path in self.remove_below_start()? {
            fs.remove_file(&path).map_err(LogError::io(&path))?;
        }
        Ok(())
    }

    /// Where this log's checkpoint is written, for a blocking thread to
    /// write it with [`StartCheckpoint::store`] before [`Log::moved_start`].
    pub fn start_checkpoint(&self) -> StartCheckpoint {
        StartCheckpoint { fs: Arc::clone(self.files.fs()), dir: self.dir.clone() }
    }

    /// Moves the log start offset up to `offset`, whose checkpoint the caller
    /// stored (the caller checked it is at most the high watermark), and
    /// removes whole segments below the new start, renaming their files to
    /// `<name>.deleted` and returning those paths for the caller to delete
    /// off the event loop. An `offset` at or below the start changes nothing.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a rename fails: the new start holds all the same,
    /// and the retention pass removes the segment later.
    pub fn moved_start(&mut self, offset: i64) -> Result<Vec<PathBuf>, LogError> {
        self.start_offset = self.start_offset.max(offset);
        self.remove_below_start()
    }

    /// Empties the log and has it start over at `offset`, past its end (a
    /// follower whose leader's log starts beyond its own end: Kafka's
    /// truncateFullyAndStartAt): everything is fsynced, the checkpoint is
    /// stored at `offset`, and the log is opened again, which moves the log
    /// end up to it in a new empty segment and deletes every older one (as
    /// after a crash that lost the tail, see the module doc). Blocking
    /// (fsyncs). An `offset` at or below the log end changes nothing.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a step fails; after a failure past the checkpoint
    /// the log must be opened again from disk (the caller drops it).
    pub fn start_over_at(&mut self, offset: i64) -> Result<(), LogError> {
        if offset <= self.log_end_offset() {
            return Ok(());
        }
        self.flush_all()?;
        store_checkpoint(&**self.files.fs(), &self.dir, offset)?;
        let log = Log::open_in(&self.dir, self.config.clone(), false, &self.files)?;
        *self = log;
        Ok(())
    }

    /// Removes the non-active segments that end at or below the start offset.
    pub(super) fn remove_below_start(&mut self) -> Result<Vec<PathBuf>, LogError> {
        let mut removed = Vec::new();
        while self.segments.len() > 1 && self.segments[1].base_offset() <= self.start_offset {
            removed.extend(self.segments[0].rename_to_deleted()?);
            self.segments.remove(0);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{batch_of, config, fill, offsets};
    use super::*;

    #[test]
    fn checkpoints_read_back_only_whole() {
        for offset in [0, 7, 1234567, i64::MAX] {
            assert_eq!(parse_checkpoint(&checkpoint_text(offset)), Some(offset));
        }
        let text = checkpoint_text(1234567);
        for cut in 0..text.len() {
            assert_eq!(parse_checkpoint(&text[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse_checkpoint(&text.replace("1234567", "1234568")), None);
        assert_eq!(parse_checkpoint("log_start_offset -1 crc 00000000\n"), None);
    }

    /// Flips one byte of a file.
    fn flip(path: &Path, position: u64) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[position as usize] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn damaged_ranges_and_timestamps_below_the_start_are_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let batch_len = batch_of(3, 0, 100).len() as u64;
        // Two batches (six offsets) a segment.
        let cfg = config(2 * batch_len);
        let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
        fill(&mut log, 8);
        log.flush_all().unwrap();
        drop(log);
        flip(&dir.path().join("00000000000000000000.log"), batch_len + 60);
        let mut log = Log::open(dir.path(), cfg, true).unwrap();
        while !log.scrub(u64::MAX).unwrap() {}
        let found = |log: &Log| log.damaged().iter().map(|d| (d.first_offset, d.next_offset)).collect::<Vec<_>>();
        assert_eq!(found(&log), [(3, 6)]);

        log.start_checkpoint().store(4).unwrap();
        assert!(log.moved_start(4).unwrap().is_empty(), "the segment holding the start stays");
        assert_eq!(log.log_start_offset(), 4);
        assert_eq!(found(&log), [(4, 6)], "cut at the start");
        match log.read(4, 1 << 20, i64::MAX) {
            Err(LogError::Damaged(range)) => assert_eq!((range.first_offset, range.next_offset), (4, 6)),
            other => panic!("expected the damaged range, got {other:?}"),
        }
        assert!(matches!(log.read(3, 1 << 20, i64::MAX), Err(LogError::OffsetOutOfRange { .. })));
        // Timestamps of offsets 0..2 are 1000..1002 (`fill`): not served any more.
        assert_eq!(log.offset_for_timestamp(1000).unwrap(), Some(6));

        log.start_checkpoint().store(7).unwrap();
        let removed = log.moved_start(7).unwrap();
        assert_eq!(removed.len(), 3, "the first segment's three files: {removed:?}");
        assert!(found(&log).is_empty());
        assert_eq!(offsets(&log.read(7, 1 << 20, i64::MAX).unwrap().bytes)[0], 6, "the batch holding 7, whole");
        assert_eq!(log.log_start_offset(), 7);
        // The retention pass never moves it back, nor keeps segments below it.
        assert!(log.apply_retention(0).unwrap().is_empty());
        assert_eq!(log.log_start_offset(), 7);
    }

    #[test]
    fn a_log_starts_over_past_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(2 * batch_of(3, 0, 100).len() as u64);
        let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
        fill(&mut log, 8);
        log.start_over_at(30).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset(), log.segment_count()), (30, 30, 1));
        assert!(matches!(log.read(29, 1 << 20, i64::MAX), Err(LogError::OffsetOutOfRange { .. })));
        log.append(batch_of(3, 0, 100), 1000).unwrap();
        assert_eq!(offsets(&log.read(30, 1 << 20, i64::MAX).unwrap().bytes), [30, 31, 32]);
        log.flush_all().unwrap();
        drop(log);
        let log = Log::open(dir.path(), cfg, true).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (30, 33));
    }

    #[test]
    fn whole_segments_below_a_checkpointed_start_are_deleted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(2 * batch_of(3, 0, 100).len() as u64);
        let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
        fill(&mut log, 8);
        log.flush_all().unwrap();
        // As a crash after the checkpoint was stored and before the segments went.
        log.start_checkpoint().store(13).unwrap();
        drop(log);
        let log = Log::open(dir.path(), cfg, false).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset(), log.segment_count()), (13, 24, 2));
        let logs = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_str().is_some_and(|n| n.ends_with(".log")));
        assert_eq!(logs.count(), 2);
    }
}
