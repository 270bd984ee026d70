//! The broker's cache of open segment files: a bound on how many `.log`
//! files of segments, sealed or active, are open at once, across every
//! partition.
//!
//! No segment holds an open file of its own for long. A sealed segment's
//! indexes live in memory, and its `.log` is opened through this cache (for
//! reading) when a read, a search by time or the scrub needs it. An active
//! segment's indexes live in memory too (written out at seal and at
//! shutdown), and its `.log` is opened through this cache for appending.
//!
//! The cache keeps at most `capacity` files open, closing the least recently
//! used one when a new one would go over, and closes files unused for
//! [`IDLE`] (checked at most every [`SWEEP_EVERY`], on the next use of the
//! cache). A file is *pinned* from the append that makes it dirty until the
//! segment hands it to the fsync writer ([`FileCache::unpin`]): a pinned file
//! is never closed by the cache, because an fsync through another descriptor
//! does not reliably report a write-back error of a closed one. The writer
//! holds the handle until its fsync is done, so a descriptor that wrote is
//! closed only after that fsync. A file handed out stays open while the
//! caller holds it, even if evicted meanwhile, so the bound is exceeded only
//! by pinned files, files waiting for their fsync, and reads in progress.
//!
//! Why one cache shared by every partition actor, behind a mutex, rather
//! than state each actor owns: descriptors are a process-wide resource
//! (`RLIMIT_NOFILE`), so the bound must be too. [`FileCache::global`] is the
//! one the broker uses; its capacity is `storage.max_open_segment_files`. The
//! lock is held for map updates only, never for I/O: a file is opened
//! outside it.
//!
//! Used by `segment.rs`; a segment forgets its file when it is dropped
//! (retention, topic deletion), so that a removed file's space is freed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::fs::{FileRef, FileSystem, OpenMode, StdFs};

/// The capacity of [`FileCache::global`] until the broker sets it.
pub const DEFAULT_CAPACITY: usize = 1024;
/// A cached file unused this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// How often, at most, the cache looks for idle files.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// A bounded cache of open sealed-segment files. Cloning shares the cache.
///
/// The cache also carries the [`FileSystem`] that every log opened with it
/// works on (see `crate::fs`): [`StdFs`] unless made with [`FileCache::with_fs`].
#[derive(Clone)]
pub struct FileCache {
    inner: Arc<Mutex<Inner>>,
    fs: Arc<dyn FileSystem>,
}

impl fmt::Debug for FileCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCache").field("fs", &self.fs).field("len", &self.len()).finish()
    }
}

struct Inner {
    capacity: usize,
    /// Bumped on every use; orders the entries by last use.
    clock: u64,
    files: HashMap<Arc<Path>, Entry>,
    /// Clock of last use → path, oldest first.
    by_use: BTreeMap<u64, Arc<Path>>,
    last_sweep: Instant,
    /// Files opened by the cache since it was made (misses).
    opened: u64,
}

struct Entry {
    file: FileRef,
    /// Clock of last use; the key in `by_use` unless pinned.
    used: u64,
    used_at: Instant,
    /// Opened for appending (an active segment's file), not only reading.
    writable: bool,
    /// Holds writes not yet handed to the fsync writer: never closed by the
    /// cache, and not in `by_use`.
    pinned: bool,
}

impl FileCache {
    /// An empty cache that keeps at most `capacity` files open (at least one).
    pub fn new(capacity: usize) -> FileCache {
        FileCache::with_fs(capacity, StdFs::shared())
    }

    /// An empty cache like [`FileCache::new`], whose logs work on `fs`.
    pub fn with_fs(capacity: usize, fs: Arc<dyn FileSystem>) -> FileCache {
        let inner = Inner {
            capacity: capacity.max(1),
            clock: 0,
            files: HashMap::new(),
            by_use: BTreeMap::new(),
            last_sweep: Instant::now(),
            opened: 0,
        };
        FileCache { inner: Arc::new(Mutex::new(inner)), fs }
    }

    /// The process's cache, which every log opened with `Log::open` uses.
    pub fn global() -> &'static FileCache {
        static GLOBAL: OnceLock<FileCache> = OnceLock::new();
        GLOBAL.get_or_init(|| FileCache::new(DEFAULT_CAPACITY))
    }

    /// The file system the logs using this cache work on.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// Changes the bound, closing files over it at once.
    pub fn set_capacity(&self, capacity: usize) {
        let mut inner = self.lock();
        inner.capacity = capacity.max(1);
        inner.evict_over_capacity();
    }

    /// Files open in the cache now.
    pub fn len(&self) -> usize {
        self.lock().files.len()
    }

    /// Whether no file is open in the cache.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Files the cache opened since it was made.
    pub fn opened(&self) -> u64 {
        self.lock().opened
    }

    /// Files open in the cache now that are pinned (written, not yet handed
    /// to the fsync writer).
    pub fn pinned(&self) -> usize {
        self.lock().files.values().filter(|e| e.pinned).count()
    }

    /// The file at `path`, opened for reading if it is not open yet.
    ///
    /// # Errors
    ///
    /// The file cannot be opened.
    pub(crate) fn get(&self, path: &Arc<Path>) -> io::Result<FileRef> {
        if let Some(file) = self.lock().touch(path) {
            return Ok(file);
        }
        let file = self.fs.open(path, OpenMode::Read)?;
        let mut inner = self.lock();
        inner.opened += 1;
        // Another thread may have opened it meanwhile: keep one.
        if let Some(file) = inner.touch(path) {
            return Ok(file);
        }
        inner.insert(Arc::clone(path), Arc::clone(&file));
        Ok(file)
    }

    /// The file at `path` opened for appending (an active segment's), opened
    /// if it is not open yet or open only for reading; pinned if `pin` (see
    /// the module doc), until [`FileCache::unpin`].
    ///
    /// # Errors
    ///
    /// The file cannot be opened.
    pub(crate) fn get_writable(&self, path: &Arc<Path>, pin: bool) -> io::Result<FileRef> {
        if let Some(file) = self.lock().touch_writable(path, pin) {
            return Ok(file);
        }
        let file = self.fs.open(path, OpenMode::Append)?;
        let mut inner = self.lock();
        inner.opened += 1;
        if let Some(file) = inner.touch_writable(path, pin) {
            return Ok(file);
        }
        inner.replace(Arc::clone(path), Arc::clone(&file), pin);
        Ok(file)
    }

    /// Caches `file`, just created for appending, as the file at `path`,
    /// replacing any file cached there.
    pub(crate) fn put_writable(&self, path: Arc<Path>, file: FileRef) {
        self.lock().replace(path, file, false);
    }

    /// Unpins the file at `path`: its writes were handed to the fsync writer
    /// (or synced), so the cache may close it.
    pub(crate) fn unpin(&self, path: &Path) {
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let Some((key, entry)) = inner.files.get_key_value(path) else { return };
        if !entry.pinned {
            return;
        }
        let key = Arc::clone(key);
        if let Some(entry) = inner.files.get_mut(path) {
            entry.pinned = false;
            entry.used = clock;
            entry.used_at = Instant::now();
        }
        inner.by_use.insert(clock, key);
        inner.evict_over_capacity();
    }

    /// Closes the file at `path` if it is cached (it is being removed, or
    /// its segment was sealed on open). A pinned file's segment holds its
    /// own handle until the handle reaches the fsync writer, so that one
    /// stays open until its fsync.
    pub(crate) fn forget(&self, path: &Path) {
        let mut inner = self.lock();
        if let Some(entry) = inner.files.remove(path) {
            if !entry.pinned {
                inner.by_use.remove(&entry.used);
            }
        }
    }

    /// A poisoned lock only means a panic elsewhere mid-update of plain maps;
    /// they are still consistent enough to serve (at worst a stale entry).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// The cached file at `path`, marked as just used.
    fn touch(&mut self, path: &Path) -> Option<FileRef> {
        self.sweep_idle();
        self.clock += 1;
        let (clock, now) = (self.clock, Instant::now());
        let entry = self.files.get_mut(path)?;
        let pinned = entry.pinned;
        let old = std::mem::replace(&mut entry.used, clock);
        entry.used_at = now;
        let file = Arc::clone(&entry.file);
        if !pinned {
            if let Some(key) = self.by_use.remove(&old) {
                self.by_use.insert(clock, key);
            }
        }
        Some(file)
    }

    /// The cached file at `path` if it is open for appending, marked as just
    /// used and pinned if `pin`.
    fn touch_writable(&mut self, path: &Path, pin: bool) -> Option<FileRef> {
        if !self.files.get(path).is_some_and(|e| e.writable) {
            return None;
        }
        let file = self.touch(path)?;
        if let Some(entry) = self.files.get_mut(path).filter(|e| pin && !e.pinned) {
            entry.pinned = true;
            let used = entry.used;
            self.by_use.remove(&used);
        }
        Some(file)
    }

    fn insert(&mut self, path: Arc<Path>, file: FileRef) {
        self.clock += 1;
        let used = self.clock;
        self.by_use.insert(used, Arc::clone(&path));
        let entry = Entry { file, used, used_at: Instant::now(), writable: false, pinned: false };
        self.files.insert(path, entry);
        self.evict_over_capacity();
    }

    /// Caches a file open for appending at `path`, replacing any entry there.
    fn replace(&mut self, path: Arc<Path>, file: FileRef, pin: bool) {
        if let Some(old) = self.files.remove(&path) {
            if !old.pinned {
                self.by_use.remove(&old.used);
            }
        }
        self.clock += 1;
        let used = self.clock;
        if !pin {
            self.by_use.insert(used, Arc::clone(&path));
        }
        let entry = Entry { file, used, used_at: Instant::now(), writable: true, pinned: pin };
        self.files.insert(path, entry);
        self.evict_over_capacity();
    }

    fn evict_over_capacity(&mut self) {
        while self.files.len() > self.capacity {
            let Some((_, path)) = self.by_use.pop_first() else { break };
            self.files.remove(&path);
        }
    }

    /// Closes files unused for [`IDLE`], at most once per [`SWEEP_EVERY`].
    fn sweep_idle(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        while let Some((&used, path)) = self.by_use.first_key_value() {
            let idle = self.files.get(path).is_none_or(|e| now.duration_since(e.used_at) >= IDLE);
            if !idle {
                break;
            }
            if let Some(path) = self.by_use.remove(&used) {
                self.files.remove(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path, n: usize) -> Vec<Arc<Path>> {
        (0..n)
            .map(|i| {
                let path = dir.join(format!("{i}.log"));
                std::fs::write(&path, [i as u8]).unwrap();
                Arc::from(path.as_path())
            })
            .collect()
    }

    #[test]
    fn the_least_recently_used_file_is_closed_first() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path(), 4);
        let cache = FileCache::new(3);
        for path in &paths[..3] {
            cache.get(path).unwrap();
        }
        cache.get(&paths[0]).unwrap(); // 1 is now the least recently used
        cache.get(&paths[3]).unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.opened(), 4);
        cache.get(&paths[0]).unwrap();
        cache.get(&paths[2]).unwrap();
        assert_eq!(cache.opened(), 4, "0 and 2 stayed open");
        cache.get(&paths[1]).unwrap();
        assert_eq!(cache.opened(), 5, "1 was closed and opened again");
    }

    #[test]
    fn forgotten_and_idle_files_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path(), 2);
        let cache = FileCache::new(10);
        cache.get(&paths[0]).unwrap();
        cache.get(&paths[1]).unwrap();
        cache.forget(&paths[0]);
        assert_eq!(cache.len(), 1);
        {
            let mut inner = cache.lock();
            let past = Instant::now() - IDLE - SWEEP_EVERY;
            inner.last_sweep = past;
            inner.files.values_mut().for_each(|e| e.used_at = past);
        }
        cache.get(&paths[0]).unwrap();
        assert_eq!(cache.len(), 1, "the idle file was closed, the one asked for opened");
    }

    #[test]
    fn a_pinned_file_is_never_closed_and_the_least_recently_used_clean_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path(), 4);
        let cache = FileCache::new(2);
        let dirty = cache.get_writable(&paths[0], true).unwrap();
        cache.get_writable(&paths[1], false).unwrap();
        cache.get(&paths[2]).unwrap();
        cache.get(&paths[3]).unwrap();
        assert_eq!((cache.len(), cache.pinned()), (2, 1), "the pinned file and the newest clean one");
        assert!(Arc::ptr_eq(&cache.get_writable(&paths[0], true).unwrap(), &dirty), "still open, not reopened");
        cache.set_capacity(1);
        assert_eq!(cache.len(), 1, "over the bound, only the pinned file is left");
        cache.unpin(&paths[0]);
        assert_eq!(cache.pinned(), 0);
        cache.get(&paths[3]).unwrap();
        assert_eq!(cache.len(), 1, "unpinned, it is closed like any other");
        let opened = cache.opened();
        cache.get_writable(&paths[0], false).unwrap();
        assert_eq!(cache.opened(), opened + 1, "and opened again when needed");
    }

    #[test]
    fn a_file_open_for_reading_is_reopened_for_appending() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path(), 1);
        let cache = FileCache::new(4);
        cache.get(&paths[0]).unwrap();
        cache.get_writable(&paths[0], false).unwrap().append(b"x").unwrap();
        assert_eq!((cache.len(), cache.opened()), (1, 2));
        assert!(Arc::ptr_eq(&cache.get(&paths[0]).unwrap(), &cache.get_writable(&paths[0], false).unwrap()));
    }

    #[test]
    fn a_smaller_capacity_closes_files_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(10);
        for path in paths(dir.path(), 5) {
            cache.get(&path).unwrap();
        }
        cache.set_capacity(2);
        assert_eq!(cache.len(), 2);
    }
}
