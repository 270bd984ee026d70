//! The leader epoch cache of a partition: which leader epoch began at which
//! offset, as Kafka's `LeaderEpochFileCache` keeps it (KIP-101, KIP-279).
//!
//! Entries `(epoch, start_offset)` are ordered by both fields: epochs and
//! start offsets increase together. An epoch's records run from its start
//! offset to the next entry's start offset (the log end for the latest).
//! The partition actor owns the cache; `replica.rs` adds an entry when it
//! becomes leader (its epoch at its log end) and when a follower appends
//! batches of a newer epoch, and removes entries at or above an offset the
//! log is truncated to.
//!
//! Stored in the file `leader-epoch-checkpoint` in the partition directory:
//! text, one `epoch start_offset` per line, written to a temporary file,
//! fsynced, renamed over the old one and the directory fsynced, so the file
//! is always one whole version. It is loaded at open. A file that does not
//! parse (damaged) is logged and rebuilt as empty. What that costs: the
//! cache only serves to find where a follower's log diverges from its
//! leader's, and without entries that answer is "unknown" both ways: as a
//! follower the replica has no latest epoch to ask about, and as a leader
//! it answers `(-1, -1)` to [`LeaderEpochEndOffset`]. The follower then
//! falls back to truncating to its high watermark (Kafka's rule before
//! KIP-101): more conservative, since it fetches again what it may already
//! have held, and it never keeps a divergent tail above its high watermark.
//! New entries are added from then on as usual. Entries that start past
//! the log end at open (the log lost a tail) are dropped.
//!
//! [`LeaderEpochEndOffset`]: super::LeaderEpochEndOffset

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{FileSystem, OpenMode};
use crate::partition::log::LogError;

/// The cache's file in the partition directory.
pub const EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// Written first, then renamed to [`EPOCH_FILE`].
const EPOCH_TEMP: &str = "leader-epoch-checkpoint.tmp";
/// A larger file is damaged: a partition has few leader changes.
const EPOCH_MAX_BYTES: u64 = 16 << 20;

/// The unknown epoch and offset of Kafka's OffsetsForLeaderEpoch.
pub const UNDEFINED: (i32, i64) = (-1, -1);

/// A partition's leader epoch cache. See the module doc.
pub struct EpochCache {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    /// Loads the cache of `dir`, dropping entries that start past
    /// `log_end_offset`. Blocking.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file exists but cannot be read.
    pub fn load(fs: Arc<dyn FileSystem>, dir: &Path, log_end_offset: i64) -> Result<EpochCache, LogError> {
        let path = dir.join(EPOCH_FILE);
        let mut entries = Vec::new();
        if fs.exists(&path).map_err(LogError::io(&path))? {
            let file = fs.open(&path, OpenMode::Read).map_err(LogError::io(&path))?;
            let len = file.file_len().map_err(LogError::io(&path))?;
            let mut bytes = vec![0; len.min(EPOCH_MAX_BYTES) as usize];
            file.read_exact_at(&mut bytes, 0).map_err(LogError::io(&path))?;
            let parsed = (len <= EPOCH_MAX_BYTES).then(|| std::str::from_utf8(&bytes).ok().and_then(parse)).flatten();
            match parsed {
                Some(parsed) => entries = parsed,
                None => {
                    tracing::warn!(
                        path = %path.display(),
                        "the leader epoch cache does not read back; rebuilt as empty: as a follower this replica \
                         truncates to its high watermark, not to where its log diverged"
                    );
                    let empty = EpochCache { fs, dir: dir.to_path_buf(), entries };
                    empty.store()?;
                    return Ok(empty);
                }
            }
        }
        entries.retain(|&(_, start)| start <= log_end_offset);
        Ok(EpochCache { fs, dir: dir.to_path_buf(), entries })
    }

    /// A cache with no entries for `dir` (its file unread).
    pub fn empty(fs: Arc<dyn FileSystem>, dir: &Path) -> EpochCache {
        EpochCache { fs, dir: dir.to_path_buf(), entries: Vec::new() }
    }

    /// The entries, oldest first.
    #[cfg(test)]
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// The latest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }

    /// Records that `epoch` starts at `start_offset` and stores the cache
    /// when that changed it. Kafka's `assign`: an entry already there changes
    /// nothing; an epoch not above the latest one's is ignored; entries it
    /// conflicts with (starting at or after `start_offset`) are replaced.
    /// Blocking (an fsync), and rare: once per leader change.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file cannot be written; the cache in memory
    /// keeps the entry (it is then only lost at a restart, which makes
    /// truncation more conservative, see the module doc).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<(), LogError> {
        if self.entries.contains(&(epoch, start_offset)) {
            return Ok(());
        }
        if self.latest_epoch().is_some_and(|latest| epoch < latest) {
            tracing::warn!(epoch, start_offset, latest = ?self.entries.last(), "ignored an older leader epoch");
            return Ok(());
        }
        self.entries.retain(|&(e, start)| e < epoch && start < start_offset);
        self.entries.push((epoch, start_offset));
        self.store()
    }

    /// Removes every entry starting at or after `offset` (the log was
    /// truncated there) and stores the cache if that changed it.
    ///
    /// # Errors
    ///
    /// As [`EpochCache::assign`].
    pub fn truncate_from(&mut self, offset: i64) -> Result<(), LogError> {
        let before = self.entries.len();
        self.entries.retain(|&(_, start)| start < offset);
        if self.entries.len() == before {
            return Ok(());
        }
        self.store()
    }

    /// Kafka's OffsetsForLeaderEpoch for `epoch`: the largest known epoch at
    /// or below it and the offset where it ended (the start of the next
    /// epoch, or `log_end_offset` for the latest); [`UNDEFINED`] when the
    /// cache is empty or `epoch` is above every known epoch but the latest.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> (i32, i64) {
        let Some(&(latest, _)) = self.entries.last() else { return UNDEFINED };
        if epoch < 0 {
            return UNDEFINED;
        }
        if epoch == latest {
            return (latest, log_end_offset);
        }
        let Some(&(_, next_start)) = self.entries.iter().find(|&&(e, _)| e > epoch) else {
            return UNDEFINED;
        };
        match self.entries.iter().rev().find(|&&(e, _)| e <= epoch) {
            Some(&(floor, _)) => (floor, next_start),
            None => (epoch, next_start),
        }
    }

    /// The entries a read of `[from, to)` spans: the one in force at `from`
    /// and every one starting before `to`.
    pub fn covering(&self, from: i64, to: i64) -> Vec<(i32, i64)> {
        let first = self.entries.partition_point(|&(_, start)| start <= from).saturating_sub(1);
        self.entries[first..].iter().copied().filter(|&(_, start)| start < to.max(from + 1)).collect()
    }

    /// Writes the cache atomically (see the module doc). Blocking.
    fn store(&self) -> Result<(), LogError> {
        let temp = self.dir.join(EPOCH_TEMP);
        match self.fs.remove_file(&temp) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(LogError::io(&temp)(err)),
            _ => {}
        }
        let text: String = self.entries.iter().map(|(epoch, start)| format!("{epoch} {start}\n")).collect();
        let file = self.fs.open(&temp, OpenMode::CreateNew).map_err(LogError::io(&temp))?;
        file.append(text.as_bytes()).map_err(LogError::io(&temp))?;
        file.sync_all().map_err(LogError::io(&temp))?;
        let path = self.dir.join(EPOCH_FILE);
        self.fs.rename(&temp, &path).map_err(LogError::io(&path))?;
        self.fs.open_dir(&self.dir).and_then(|d| d.sync_all()).map_err(LogError::io(&self.dir))
    }
}

/// The entries of a cache file, or `None` if it is damaged: a line that is
/// not two numbers, a negative value, or entries out of order.
fn parse(text: &str) -> Option<Vec<(i32, i64)>> {
    let mut entries: Vec<(i32, i64)> = Vec::new();
    for line in text.lines() {
        let (epoch, start) = line.split_once(' ')?;
        let entry: (i32, i64) = (epoch.parse().ok()?, start.parse().ok()?);
        let ordered = entries.last().is_none_or(|&(e, s)| entry.0 > e && entry.1 >= s);
        if entry.0 < 0 || entry.1 < 0 || !ordered {
            return None;
        }
        entries.push(entry);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return None;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> EpochCache {
        EpochCache::load(crate::fs::StdFs::shared(), dir, 100).unwrap()
    }

    #[test]
    fn entries_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut epochs = cache(dir.path());
        epochs.assign(1, 0).unwrap();
        epochs.assign(3, 10).unwrap();
        epochs.assign(2, 5).unwrap();
        assert_eq!(epochs.entries(), [(1, 0), (3, 10)], "an older epoch is ignored");
        assert_eq!(std::fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap(), "1 0\n3 10\n");
        assert_eq!(cache(dir.path()).entries(), [(1, 0), (3, 10)]);
    }

    #[test]
    fn a_damaged_file_is_taken_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        for damaged in ["1 0\n3 1", "1 0\nx y\n", "3 10\n1 0\n", "1 -4\n"] {
            std::fs::write(dir.path().join(EPOCH_FILE), damaged).unwrap();
            let epochs = cache(dir.path());
            assert!(epochs.entries().is_empty(), "{damaged:?}");
            assert_eq!(epochs.end_offset_for(1, 50), UNDEFINED);
            assert_eq!(std::fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap(), "", "rebuilt as empty");
        }
    }

    #[test]
    fn entries_past_the_log_end_are_dropped_at_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(EPOCH_FILE), "1 0\n2 100\n3 150\n").unwrap();
        assert_eq!(cache(dir.path()).entries(), [(1, 0), (2, 100)]);
    }

    #[test]
    fn end_offsets_follow_kafkas_rule() {
        let dir = tempfile::tempdir().unwrap();
        let mut epochs = cache(dir.path());
        assert_eq!(epochs.end_offset_for(0, 7), UNDEFINED, "empty");
        epochs.assign(1, 0).unwrap();
        epochs.assign(2, 6).unwrap();
        epochs.assign(5, 9).unwrap();
        assert_eq!(epochs.end_offset_for(1, 12), (1, 6));
        assert_eq!(epochs.end_offset_for(2, 12), (2, 9));
        assert_eq!(epochs.end_offset_for(3, 12), (2, 9), "an unknown epoch between two known ones");
        assert_eq!(epochs.end_offset_for(5, 12), (5, 12), "the latest ends at the log end");
        assert_eq!(epochs.end_offset_for(6, 12), UNDEFINED, "newer than any");
        assert_eq!(epochs.end_offset_for(0, 12), (0, 0), "older than any");
        assert_eq!(epochs.covering(7, 9), [(2, 6)]);
        assert_eq!(epochs.covering(0, 12), [(1, 0), (2, 6), (5, 9)]);
        epochs.truncate_from(6).unwrap();
        assert_eq!(cache(dir.path()).entries(), [(1, 0)]);
    }
}
