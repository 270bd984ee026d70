//! The sparse indexes of one segment: `.index` (offset → file position) and
//! `.timeindex` (timestamp → offset).
//!
//! Both are derived data: the `.log` file is the truth, and an index that fails
//! its sanity check on open is rebuilt from it by the segment. Each index lives
//! as a `Vec` that answers lookups without a read, and as a file of
//! fixed-size big-endian entries that the `Vec` is loaded from on open.
//!
//! Invariants, checked on load and kept on append:
//!
//! - the file holds a whole number of entries;
//! - `.index` entries are strictly increasing in both relative offset and
//!   position;
//! - `.timeindex` entries are strictly increasing in both timestamp and relative
//!   offset. An entry `(t, o)` means "the largest timestamp of the segment up to
//!   and including the batch at offset `o` is `t`, and it was first reached at
//!   `o`", so every batch before `o` has a max timestamp below `t`. That is what
//!   makes a floor lookup a safe place to start a timestamp search.
//!
//! No descriptor is held: the file is read once on open, and entries made
//! since are written out in one `write_all` when the segment is sealed and
//! when the log is flushed at shutdown ([`IndexFile::write_pending`]), the
//! file opened for that and closed after. So the file of an active segment
//! lags its entries in memory (it may be missing altogether); that is safe
//! because recovery never trusts an index past the log: after an unclean
//! shutdown the last two segments are checked whole and their indexes
//! rebuilt, and a missing or inconsistent index is rebuilt from the log.
//!
//! Only the segment (`segment.rs`) uses this module.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::log::LogError;
use crate::fs::{FileRef, FileSystem, OpenMode};

/// One fixed-size index entry.
pub(crate) trait Entry: Copy + Eq + std::fmt::Debug {
    /// Bytes of one entry on disk.
    const SIZE: usize;
    /// Writes the entry into `out`, which is exactly `SIZE` bytes.
    fn encode(&self, out: &mut [u8]);
    /// Reads an entry from `buf`, which is exactly `SIZE` bytes.
    fn decode(buf: &[u8]) -> Self;
    /// Whether `self` may follow `prev` in the file.
    fn follows(&self, prev: &Self) -> bool;
}

/// `.index` entry: where the batch starting at `base + relative_offset` begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Batch base offset minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the `.log` file.
    pub position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }

    fn decode(buf: &[u8]) -> Self {
        OffsetEntry { relative_offset: be_u32(&buf[0..4]), position: be_u32(&buf[4..8]) }
    }

    fn follows(&self, prev: &Self) -> bool {
        self.relative_offset > prev.relative_offset && self.position > prev.position
    }
}

/// `.timeindex` entry: the segment's largest timestamp so far, and the base
/// offset of the batch that first reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Batch base offset minus the segment's base offset.
    pub relative_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }

    fn decode(buf: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&buf[0..8]);
        TimeEntry { timestamp: i64::from_be_bytes(ts), relative_offset: be_u32(&buf[8..12]) }
    }

    fn follows(&self, prev: &Self) -> bool {
        self.timestamp > prev.timestamp && self.relative_offset > prev.relative_offset
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// An index's entries in memory, and its file.
pub(crate) struct IndexFile<E> {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    entries: Vec<E>,
    /// How many of `entries` the file holds, exactly and nothing else;
    /// `None` when the file must be written whole: it is missing (a new
    /// segment), failed its sanity check, had an entry dropped, or a write
    /// to it failed.
    written: Option<usize>,
    /// Whether the file was written since the last [`IndexFile::sync`].
    unsynced: bool,
}

impl<E: Entry> IndexFile<E> {
    /// Loads the index at `path` (opening the file for the read only).
    ///
    /// Returns the index and, if the file was missing or failed the structural
    /// sanity check, why; such an index is loaded empty and must be rebuilt.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be opened or read.
    pub fn open(fs: &Arc<dyn FileSystem>, path: PathBuf) -> Result<(Self, Option<&'static str>), LogError> {
        let mut index = IndexFile::create(fs, path);
        let file = match fs.open(&index.path, OpenMode::Read) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((index, Some("index file is missing"))),
            Err(err) => return Err(LogError::io(&index.path)(err)),
        };
        let len = file.file_len().map_err(LogError::io(&index.path))?;
        if len % E::SIZE as u64 != 0 {
            return Ok((index, Some("index size is not a whole number of entries")));
        }
        let len = usize::try_from(len).map_err(|_| LogError::io(&index.path)(io::Error::other("index too large")))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, 0).map_err(LogError::io(&index.path))?;
        let entries: Vec<E> = buf.chunks_exact(E::SIZE).map(E::decode).collect();
        if entries.windows(2).any(|w| !w[1].follows(&w[0])) {
            return Ok((index, Some("index entries are not increasing")));
        }
        index.written = Some(entries.len());
        index.entries = entries;
        Ok((index, None))
    }

    /// An empty index whose file at `path` is written (created, or replaced)
    /// by the next [`IndexFile::write_pending`]. No file operation.
    pub fn create(fs: &Arc<dyn FileSystem>, path: PathBuf) -> Self {
        IndexFile { fs: Arc::clone(fs), path, entries: Vec::new(), written: None, unsynced: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn last(&self) -> Option<E> {
        self.entries.last().copied()
    }

    /// The last entry for which `at_or_before` holds, given that it holds for a
    /// prefix of the entries.
    pub fn floor(&self, at_or_before: impl Fn(&E) -> bool) -> Option<E> {
        let n = self.entries.partition_point(at_or_before);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// Appends `entry` in memory; [`IndexFile::write_pending`] writes it out.
    pub fn append(&mut self, entry: E) {
        debug_assert!(self.entries.last().is_none_or(|prev| entry.follows(prev)));
        self.entries.push(entry);
    }

    /// Drops `entry` from the entries in memory (it disagrees with the log);
    /// the file is rewritten at the next [`IndexFile::write_pending`].
    pub fn forget(&mut self, entry: E) {
        self.entries.retain(|e| *e != entry);
        self.written = None;
    }

    /// Makes `entries` the index; the file is rewritten at the next
    /// [`IndexFile::write_pending`] unless it already holds them.
    pub fn replace(&mut self, entries: Vec<E>) {
        if self.written == Some(self.entries.len()) && entries == self.entries {
            return;
        }
        self.entries = entries;
        self.written = None;
    }

    /// Writes the entries the file lacks: appends those made since the last
    /// write, or rewrites the file whole (creating it) when it must be.
    /// Opens the file for this and returns it, to be fsynced, unless there
    /// was nothing to write; the caller's handle is the only one.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be opened or written; it is then
    /// rewritten whole by the next call, and until then may hold part of the
    /// entries, which the next open detects or takes as a shorter index.
    pub fn write_pending(&mut self) -> Result<Option<FileRef>, LogError> {
        let from = match self.written {
            Some(n) if n == self.entries.len() => return Ok(None),
            written => written,
        };
        let io = LogError::io(&self.path);
        let file = self.fs.open(&self.path, OpenMode::AppendOrCreate).map_err(io)?;
        self.written = None;
        self.unsynced = true;
        if from.is_none() {
            file.set_len(0).map_err(LogError::io(&self.path))?;
        }
        let pending = &self.entries[from.unwrap_or(0)..];
        let mut buf = vec![0u8; pending.len() * E::SIZE];
        for (entry, out) in pending.iter().zip(buf.chunks_exact_mut(E::SIZE)) {
            entry.encode(out);
        }
        file.append(&buf).map_err(LogError::io(&self.path))?;
        self.written = Some(self.entries.len());
        Ok(Some(file))
    }

    /// Removes the file (best effort), to be written whole by the next
    /// [`IndexFile::write_pending`] or rebuilt by the next open.
    pub fn remove_file(&mut self) {
        let _ = self.fs.remove_file(&self.path);
        self.written = None;
        self.unsynced = false;
    }

    /// Writes the entries the file lacks ([`IndexFile::write_pending`]) and
    /// flushes the file to disk if it was written since the last call.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be opened or written, or fsync fails.
    pub fn sync(&mut self) -> Result<(), LogError> {
        let file = self.write_pending()?;
        if !self.unsynced {
            return Ok(());
        }
        match file {
            Some(file) => file.sync_all(),
            None => self.fs.open(&self.path, OpenMode::Read).and_then(|file| file.sync_all()),
        }
        .map_err(LogError::io(&self.path))?;
        self.unsynced = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;

    fn offset(relative_offset: u32, position: u32) -> OffsetEntry {
        OffsetEntry { relative_offset, position }
    }

    #[test]
    fn entries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = IndexFile::<OffsetEntry>::create(&StdFs::shared(), path.clone());
        index.append(offset(3, 100));
        assert!(!path.exists(), "no file until written out");
        index.write_pending().unwrap();
        index.append(offset(9, 4000));
        index.write_pending().unwrap();
        assert!(index.write_pending().unwrap().is_none(), "nothing left to write");
        drop(index);
        let (index, problem) = IndexFile::<OffsetEntry>::open(&StdFs::shared(), path).unwrap();
        assert_eq!(problem, None);
        assert_eq!(index.entries(), &[offset(3, 100), offset(9, 4000)]);
        assert_eq!(std::fs::metadata(index.path()).unwrap().len(), 16);
    }

    #[test]
    fn floor_finds_the_last_entry_at_or_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = IndexFile::<TimeEntry>::create(&StdFs::shared(), dir.path().join("0.timeindex"));
        for (ts, rel) in [(10, 0), (20, 5), (30, 9)] {
            index.append(TimeEntry { timestamp: ts, relative_offset: rel });
        }
        assert_eq!(index.floor(|e| e.timestamp <= 5), None);
        assert_eq!(index.floor(|e| e.timestamp <= 20).unwrap().relative_offset, 5);
        assert_eq!(index.floor(|e| e.timestamp <= 29).unwrap().relative_offset, 5);
        assert_eq!(index.floor(|e| e.timestamp <= 99).unwrap().relative_offset, 9);
    }

    #[test]
    fn a_missing_torn_or_unordered_index_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let (_, problem) = IndexFile::<OffsetEntry>::open(&StdFs::shared(), path.clone()).unwrap();
        assert!(problem.is_some(), "missing");
        assert!(!path.exists(), "loading creates nothing");

        std::fs::write(&path, [0u8; 12]).unwrap();
        let (index, problem) = IndexFile::<OffsetEntry>::open(&StdFs::shared(), path.clone()).unwrap();
        assert!(problem.is_some(), "torn");
        assert!(index.entries().is_empty());

        let mut bytes = Vec::new();
        for e in [offset(5, 50), offset(4, 60)] {
            let mut b = [0u8; 8];
            e.encode(&mut b);
            bytes.extend_from_slice(&b);
        }
        std::fs::write(&path, &bytes).unwrap();
        let (mut index, problem) = IndexFile::<OffsetEntry>::open(&StdFs::shared(), path.clone()).unwrap();
        assert!(problem.is_some(), "unordered");

        index.replace(vec![offset(1, 10)]);
        index.write_pending().unwrap();
        let (index, problem) = IndexFile::<OffsetEntry>::open(&StdFs::shared(), path).unwrap();
        assert_eq!(problem, None);
        assert_eq!(index.entries(), &[offset(1, 10)]);
    }
}
