//! `FaultFs`: a [`FileSystem`] in memory for tests, which can fail a write or
//! an fsync, fill the disk, and lose power.
//!
//! What it models:
//!
//! - files are inodes with two contents: what was written (the page cache)
//!   and what was last fsynced (the disk). Reads see what was written;
//! - directory entries (create, rename, remove) are durable once their
//!   directory is fsynced ([`FsFile::sync_all`] on a handle from
//!   [`FileSystem::open_dir`]); directories themselves are never lost;
//! - [`FaultFs::lose_power`]: every name reverts to the last fsync of its
//!   directory (a file created since is gone, a removed one is back) and
//!   every file to its last fsynced content. With a tear, the file written
//!   last keeps a prefix of what was appended to it since its last fsync (a
//!   torn write: the pages that reached the disk before the power went);
//! - [`FaultFs::fail_write`] / [`FaultFs::fail_sync`]: the n-th write
//!   (append) or fsync (of a file or directory) from now fails with EIO,
//!   once; a failed write writes nothing, a failed fsync syncs nothing;
//! - [`FaultFs::set_capacity`]: the files' total size may not pass a bound;
//!   an append that would is written up to it and fails with ENOSPC, as a
//!   real `write_all` on a full disk does.
//!
//! Not modelled: file times (every file reads as modified now), permissions,
//! descriptor limits, and several links to one inode.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::{FileRef, FileSystem, FsFile, OpenMode};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    /// Appends and fsyncs so far, to place injected failures.
    writes: u64,
    syncs: u64,
    fail_write_at: Option<u64>,
    fail_sync_at: Option<u64>,
    capacity: Option<u64>,
    /// The inode appended to last, while it holds unsynced bytes.
    last_written: Option<u64>,
}

impl State {
    fn used(&self) -> u64 {
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        live.iter().filter_map(|i| self.inodes.get(i)).map(|i| i.data.len() as u64).sum()
    }
}

/// The in-memory file system; cloning shares it.
#[derive(Clone, Default)]
pub(crate) struct FaultFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("FaultFs").field("files", &state.names.len()).field("writes", &state.writes).finish()
    }
}

impl FaultFs {
    pub(crate) fn new() -> FaultFs {
        FaultFs::default()
    }

    /// This file system as the log takes it.
    pub(crate) fn shared(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `n`-th append from now (1: the next) fails with EIO.
    pub(crate) fn fail_write(&self, n: u64) {
        let mut state = self.lock();
        state.fail_write_at = Some(state.writes + n);
    }

    /// The `n`-th fsync from now (1: the next) fails with EIO.
    pub(crate) fn fail_sync(&self, n: u64) {
        let mut state = self.lock();
        state.fail_sync_at = Some(state.syncs + n);
    }

    /// Bounds the files' total size (`None`: unbounded).
    pub(crate) fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// The files' total size now.
    pub(crate) fn used(&self) -> u64 {
        self.lock().used()
    }

    /// Loses power (see the module doc). `tear`: the file written last keeps
    /// this many of the bytes appended to it since its last fsync (at most
    /// all of them). Returns the bytes it kept that way.
    pub(crate) fn lose_power(&self, tear: Option<u64>) -> u64 {
        let mut state = self.lock();
        state.names = state.durable_names.clone();
        let torn = state.last_written.take();
        let mut kept = 0;
        for (id, inode) in &mut state.inodes {
            let appended_only = inode.data.starts_with(&inode.synced);
            let extra = match tear {
                Some(n) if torn == Some(*id) && appended_only => {
                    n.min((inode.data.len() - inode.synced.len()) as u64) as usize
                }
                _ => 0,
            };
            kept += extra as u64;
            inode.data.truncate(inode.synced.len() + extra);
            if !appended_only {
                inode.data.clone_from(&inode.synced);
            }
            inode.synced.clone_from(&inode.data);
        }
        kept
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

impl FileSystem for FaultFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut state = self.lock();
        let existing = state.names.get(path).copied();
        let inode = match (existing, mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())))
            }
            (Some(inode), _) => inode,
            (None, OpenMode::Read | OpenMode::Append) => return Err(not_found(path)),
            (None, OpenMode::AppendOrCreate | OpenMode::CreateNew) => {
                if !state.dirs.contains(parent(path)) {
                    return Err(not_found(parent(path)));
                }
                state.next_inode += 1;
                let inode = state.next_inode;
                state.inodes.insert(inode, Inode::default());
                state.names.insert(path.to_path_buf(), inode);
                inode
            }
        };
        let handle = FaultFile { fs: self.clone(), target: Target::File(inode), writable: mode != OpenMode::Read };
        Ok(Arc::new(handle))
    }

    fn open_dir(&self, path: &Path) -> io::Result<FileRef> {
        if !self.lock().dirs.contains(path) {
            return Err(not_found(path));
        }
        Ok(Arc::new(FaultFile { fs: self.clone(), target: Target::Dir(path.to_path_buf()), writable: false }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = self.lock();
        Ok(state.names.contains_key(path) || state.dirs.contains(path))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        for dir in path.ancestors() {
            state.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dirs.contains(path) {
            return Err(not_found(path));
        }
        let names = state.names.keys().filter(|p| parent(p) == path);
        Ok(names.filter_map(|p| p.file_name()?.to_str().map(str::to_owned)).collect())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.lock().names.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let inode = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        self.exists(path)?.then(SystemTime::now).ok_or_else(|| not_found(path))
    }
}

#[derive(Debug)]
enum Target {
    File(u64),
    Dir(PathBuf),
}

/// A handle on a [`FaultFs`] file or directory.
#[derive(Debug)]
struct FaultFile {
    fs: FaultFs,
    target: Target,
    writable: bool,
}

impl FaultFile {
    fn inode<'a>(&self, state: &'a mut State) -> io::Result<&'a mut Inode> {
        match self.target {
            Target::File(id) => state.inodes.get_mut(&id).ok_or_else(|| io::Error::other("no such inode")),
            Target::Dir(_) => Err(io::Error::other("is a directory")),
        }
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::other("not opened for writing"))
        }
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.syncs += 1;
        if state.fail_sync_at == Some(state.syncs) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        match &self.target {
            Target::File(id) => {
                let inode = self.inode(&mut state)?;
                inode.synced.clone_from(&inode.data);
                if state.last_written == Some(*id) {
                    state.last_written = None;
                }
            }
            Target::Dir(dir) => {
                let state = &mut *state;
                state.durable_names.retain(|p, _| parent(p) != dir);
                for (path, inode) in state.names.iter().filter(|(p, _)| parent(p) == dir) {
                    state.durable_names.insert(path.clone(), *inode);
                }
            }
        }
        Ok(())
    }
}

impl FsFile for FaultFile {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        let mut state = self.fs.lock();
        let data = &self.inode(&mut state)?.data;
        let start = usize::try_from(position).unwrap_or(usize::MAX);
        match start.checked_add(buf.len()).and_then(|end| data.get(start..end)) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file")),
        }
    }

    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.check_writable()?;
        let mut state = self.fs.lock();
        state.writes += 1;
        if state.fail_write_at == Some(state.writes) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let room = state.capacity.map_or(u64::MAX, |cap| cap.saturating_sub(state.used()));
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if let Target::File(id) = self.target {
            state.last_written = Some(id);
        }
        self.inode(&mut state)?.data.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut state = self.fs.lock();
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.inode(&mut state)?.data.resize(len, 0);
        Ok(())
    }

    fn file_len(&self) -> io::Result<u64> {
        let mut state = self.fs.lock();
        Ok(self.inode(&mut state)?.data.len() as u64)
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn is_dir(&self) -> bool {
        matches!(self.target, Target::Dir(_))
    }
}
