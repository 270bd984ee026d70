//! Cutting a segment's tail, for `Log::truncate_to` (a follower dropping
//! records its leader does not have). Part of the segment module.

use super::{LogError, Segment};
use crate::fs::OpenMode;

impl Segment {
    /// The position of the first batch that holds `offset` or a later
    /// offset (the segment's size when there is none), found by walking the
    /// batch headers from the start. A batch that straddles `offset` is
    /// cut whole, so the log may end below `offset` (as Kafka's).
    ///
    /// # Errors
    ///
    /// [`LogError::InvalidBatch`] if a damaged span comes before that
    /// batch (the walk cannot cross it); [`LogError::Io`] on a failed read.
    pub(crate) fn cut_position(&self, offset: i64) -> Result<u64, LogError> {
        let mut position = 0;
        while position < self.size && offset > self.base_offset {
            let header = self.header_at(position, self.size)?;
            if header.last_offset() >= offset {
                return Ok(position);
            }
            position += header.total_bytes() as u64;
        }
        Ok(position.min(self.size))
    }

    /// Cuts the `.log` file at `position` and fsyncs it, and removes the
    /// index files (the next open rebuilds them). The segment must be
    /// dropped after this and the log opened again. Blocking.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be opened, cut or synced.
    pub(crate) fn cut_at(&mut self, position: u64) -> Result<(), LogError> {
        self.take_dirty();
        let file = self.files.fs().open(&self.log_path, OpenMode::Append).map_err(LogError::io(&self.log_path))?;
        file.set_len(position).map_err(LogError::io(&self.log_path))?;
        file.sync_all().map_err(LogError::io(&self.log_path))?;
        self.files.forget(&self.log_path);
        self.offset_index.remove_file();
        self.time_index.remove_file();
        Ok(())
    }
}
