//! [`Log::truncate_to`]: removing every record at or above an offset, for a
//! follower whose log diverged from its leader's (KIP-101/279). Part of the
//! log module.
//!
//! Steps, each durable before the next, so that a crash at any point leaves
//! a log that recovery opens to a prefix of the old one: everything is
//! fsynced; the segments wholly at or above the offset are renamed to
//! `.deleted` from the last one back (a crash leaves the lower ones whole);
//! the segment holding the offset before it is cut at the batch boundary and
//! fsynced, and its indexes removed; the directory is fsynced; the log is
//! opened again (recovery rebuilds the removed indexes), and the renamed
//! files are handed back to delete.

use std::path::PathBuf;

use super::{sync_dir, Log, LogError};
use crate::fs::FileSystem;
use std::sync::Arc;

impl Log {
    /// Removes every record at or above `offset`; the segment holding
    /// `offset - 1` becomes the active one. A batch that straddles `offset`
    /// goes whole, so the log end may come out below `offset`. An offset at
    /// or past the log end changes nothing. Blocking (fsyncs). Returns the
    /// renamed files of removed segments, for the caller to delete.
    ///
    /// # Errors
    ///
    /// [`LogError::OffsetOutOfRange`] below the log start offset;
    /// [`LogError::InvalidBatch`] if a damaged span stands before the cut in
    /// its segment; [`LogError::Io`] if a step fails. After a failure past
    /// the first fsync the log must be opened again from disk (the caller
    /// drops it): what is on disk is then a prefix of the old log at least
    /// `offset` long, or the truncated log.
    pub fn truncate_to(&mut self, offset: i64) -> Result<Vec<PathBuf>, LogError> {
        let (log_start_offset, log_end_offset) = (self.log_start_offset(), self.log_end_offset());
        if offset >= log_end_offset {
            return Ok(Vec::new());
        }
        if offset < log_start_offset {
            return Err(LogError::OffsetOutOfRange { offset, log_start_offset, log_end_offset });
        }
        // The segment that holds `offset - 1`, or the first one.
        let keep = self.segments.partition_point(|s| s.base_offset() < offset).saturating_sub(1);
        let position = self.segments[keep].cut_position(offset)?;
        self.flush_all()?;
        let mut removed = Vec::new();
        for segment in self.segments[keep + 1..].iter().rev() {
            removed.extend(segment.rename_to_deleted()?);
        }
        self.segments[keep].cut_at(position)?;
        sync_dir(&**self.files.fs(), &self.dir)?;
        self.segments.truncate(keep + 1);
        let log = Log::open_in(&self.dir, self.config.clone(), false, &self.files)?;
        *self = log;
        Ok(removed)
    }

    /// The file system the log works on.
    pub fn file_system(&self) -> Arc<dyn FileSystem> {
        Arc::clone(self.files.fs())
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}
