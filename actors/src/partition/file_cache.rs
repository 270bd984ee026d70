//! The broker's cache of open sealed-segment files: a bound on how many
//! `.log` files of sealed segments are open at once, across every partition.
//!
//! A sealed segment (every segment but a log's active one) holds no open
//! file: its indexes live in memory, and its `.log` is opened through this
//! cache when a read, a search by time or the scrub needs it. The cache keeps
//! at most `capacity` files open, closing the least recently used one when a
//! new one would go over, and closes files unused for [`IDLE`] (checked at
//! most every [`SWEEP_EVERY`], on the next use of the cache). A file handed
//! out stays open while the caller holds it, even if evicted meanwhile, so
//! the bound is exceeded only by reads in progress.
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
    used: u64,
    used_at: Instant,
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

    /// Caches `file`, already open, as the file at `path` (a segment just
    /// sealed, whose file is likely to be read soon).
    pub(crate) fn put(&self, path: Arc<Path>, file: FileRef) {
        let mut inner = self.lock();
        if inner.touch(&path).is_none() {
            inner.insert(path, file);
        }
    }

    /// Closes the file at `path` if it is cached (it is being removed).
    pub(crate) fn forget(&self, path: &Path) {
        let mut inner = self.lock();
        if let Some(entry) = inner.files.remove(path) {
            inner.by_use.remove(&entry.used);
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
        let key = self.by_use.remove(&entry.used)?;
        entry.used = clock;
        entry.used_at = now;
        self.by_use.insert(clock, key);
        Some(Arc::clone(&entry.file))
    }

    fn insert(&mut self, path: Arc<Path>, file: FileRef) {
        self.clock += 1;
        let used = self.clock;
        self.by_use.insert(used, Arc::clone(&path));
        self.files.insert(path, Entry { file, used, used_at: Instant::now() });
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
