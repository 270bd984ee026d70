//! The sparse indexes of one segment: `.index` (offset → file position) and
//! `.timeindex` (timestamp → offset).
//!
//! Both are derived data: the `.log` file is the truth, and an index that fails
//! its sanity check on open is rebuilt from it by the segment. Each index lives
//! twice, as a file of fixed-size big-endian entries appended with one
//! `write_all` per entry, and as a `Vec` that answers lookups without a read.
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
//! The file stays open while its segment is active (entries are appended);
//! a sealed segment's index is closed ([`IndexFile::close`]) and answers from
//! memory, holding no file descriptor.
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

/// An index file and its entries in memory.
pub(crate) struct IndexFile<E> {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    /// Opened for reading and appending, shared with the fsync thread; `None`
    /// once closed (the segment is sealed).
    file: Option<FileRef>,
    entries: Vec<E>,
    /// Whether the file holds exactly `entries`. False after a load that failed
    /// the sanity check, until [`IndexFile::replace`] rewrites it.
    file_matches: bool,
    /// Whether the file was written since the last [`IndexFile::sync`].
    unsynced: bool,
}

impl<E: Entry> IndexFile<E> {
    /// Opens the index at `path`, creating it if missing, and loads it.
    ///
    /// Returns the index and, if the file was missing or failed the structural
    /// sanity check, why; such an index is loaded empty and must be rebuilt.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be opened or read.
    pub fn open(fs: &Arc<dyn FileSystem>, path: PathBuf) -> Result<(Self, Option<&'static str>), LogError> {
        let (file, existed) = match fs.open(&path, OpenMode::Append) {
            Ok(file) => (file, true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                (fs.open(&path, OpenMode::AppendOrCreate).map_err(LogError::io(&path))?, false)
            }
            Err(err) => return Err(LogError::io(&path)(err)),
        };
        let mut index = IndexFile {
            fs: Arc::clone(fs),
            path,
            file: Some(Arc::clone(&file)),
            entries: Vec::new(),
            file_matches: false,
            unsynced: false,
        };
        if !existed {
            return Ok((index, Some("index file is missing")));
        }
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
        index.entries = entries;
        index.file_matches = true;
        Ok((index, None))
    }

    /// Creates an empty index at `path`, replacing any file there.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be created.
    pub fn create(fs: &Arc<dyn FileSystem>, path: PathBuf) -> Result<Self, LogError> {
        let file = fs.open(&path, OpenMode::AppendOrCreate).map_err(LogError::io(&path))?;
        file.set_len(0).map_err(LogError::io(&path))?;
        let file = Some(file);
        Ok(IndexFile { fs: Arc::clone(fs), path, file, entries: Vec::new(), file_matches: true, unsynced: true })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, unless closed.
    pub fn file(&self) -> Option<&FileRef> {
        self.file.as_ref()
    }

    /// Closes the file; lookups go on from memory. Appends, rewrites and
    /// syncs are for an active segment's index only.
    pub fn close(&mut self) {
        self.file = None;
    }

    fn open_file(&self) -> Result<&FileRef, LogError> {
        self.file.as_ref().ok_or_else(|| LogError::io(&self.path)(io::Error::other("the index file is closed")))
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

    /// Appends `entry` to the file (one `write_all`) and to memory.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the write fails; the file may then hold part of the
    /// entry, which the next open detects.
    pub fn append(&mut self, entry: E) -> Result<(), LogError> {
        debug_assert!(self.entries.last().is_none_or(|prev| entry.follows(prev)));
        let mut buf = [0u8; 16];
        entry.encode(&mut buf[..E::SIZE]);
        self.unsynced = true;
        self.open_file()?.append(&buf[..E::SIZE]).map_err(LogError::io(&self.path))?;
        self.entries.push(entry);
        Ok(())
    }

    /// Where the index stands now, for [`IndexFile::restore`]: its number of
    /// entries and its file's length.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file is closed or its length cannot be read.
    pub fn mark(&self) -> Result<(usize, u64), LogError> {
        let len = self.open_file()?.file_len().map_err(LogError::io(&self.path))?;
        Ok((self.entries.len(), len))
    }

    /// Goes back to `mark`: drops the entries appended since, in memory and
    /// in the file (with any part of an entry a failed write left).
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be truncated; the entries in
    /// memory are dropped all the same.
    pub fn restore(&mut self, (entries, len): (usize, u64)) -> Result<(), LogError> {
        self.entries.truncate(entries);
        self.unsynced = true;
        self.open_file()?.set_len(len).map_err(LogError::io(&self.path))
    }

    /// Drops `entry` from the entries in memory (it disagrees with the log);
    /// the file keeps it.
    pub fn forget(&mut self, entry: E) {
        self.entries.retain(|e| *e != entry);
        self.file_matches = false;
    }

    /// Makes `entries` the index, rewriting the file unless it already holds them.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be rewritten.
    pub fn replace(&mut self, entries: Vec<E>) -> Result<(), LogError> {
        if self.file_matches && entries == self.entries {
            return Ok(());
        }
        let mut buf = vec![0u8; entries.len() * E::SIZE];
        for (entry, out) in entries.iter().zip(buf.chunks_exact_mut(E::SIZE)) {
            entry.encode(out);
        }
        let file = Arc::clone(self.open_file()?);
        self.file_matches = false;
        self.unsynced = true;
        file.set_len(0).map_err(LogError::io(&self.path))?;
        file.append(&buf).map_err(LogError::io(&self.path))?;
        self.entries = entries;
        self.file_matches = true;
        Ok(())
    }

    /// Flushes the file to disk if it was written since the last call,
    /// opening it again if it was closed.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be opened or fsync fails.
    pub fn sync(&mut self) -> Result<(), LogError> {
        if !self.unsynced {
            return Ok(());
        }
        match &self.file {
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
        let mut index = IndexFile::<OffsetEntry>::create(&StdFs::shared(), path.clone()).unwrap();
        index.append(offset(3, 100)).unwrap();
        index.append(offset(9, 4000)).unwrap();
        drop(index);
        let (index, problem) = IndexFile::<OffsetEntry>::open(&StdFs::shared(), path).unwrap();
        assert_eq!(problem, None);
        assert_eq!(index.entries(), &[offset(3, 100), offset(9, 4000)]);
        assert_eq!(std::fs::metadata(index.path()).unwrap().len(), 16);
    }

    #[test]
    fn floor_finds_the_last_entry_at_or_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = IndexFile::<TimeEntry>::create(&StdFs::shared(), dir.path().join("0.timeindex")).unwrap();
        for (ts, rel) in [(10, 0), (20, 5), (30, 9)] {
            index.append(TimeEntry { timestamp: ts, relative_offset: rel }).unwrap();
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
        assert!(path.exists(), "created empty");

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

        index.replace(vec![offset(1, 10)]).unwrap();
        let (index, problem) = IndexFile::<OffsetEntry>::open(&StdFs::shared(), path).unwrap();
        assert_eq!(problem, None);
        assert_eq!(index.entries(), &[offset(1, 10)]);
    }
}
