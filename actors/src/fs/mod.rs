//! The file-system seam under the log: every file operation of a partition's
//! log (segments, indexes, the file cache, the fsync writer) goes through a
//! [`FileSystem`] and the [`FsFile`] handles it opens, in the style of
//! raft-engine's `FileSystem`.
//!
//! Production uses [`StdFs`], which is `std::fs` with no behaviour of its own.
//! Tests use `FaultFs` (`fault.rs`, test builds only), which keeps files in
//! memory, remembers what was fsynced, and can fail a write or an fsync, fill
//! the disk, and lose power.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::BytesMut;

#[cfg(test)]
pub(crate) mod fault;
#[cfg(test)]
mod tests;

/// An open file (or directory, for [`FsFile::sync_all`] only), shared between
/// the log and the fsync writer.
pub trait FsFile: Debug + Send + Sync {
    /// Reads exactly `buf.len()` bytes at `position`.
    ///
    /// # Errors
    ///
    /// A read error, or `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()>;

    /// Appends to `out` exactly `len` bytes read at `position`. On an error
    /// (`UnexpectedEof` if the file ends first) `out` is longer only by bytes
    /// that were read before it, never by filler.
    ///
    /// This default zeroes the bytes, then reads them with
    /// [`FsFile::read_exact_at`], and on an error keeps `out` as it was. The
    /// real file reads straight into `out`'s spare capacity instead: the
    /// zeroing was a measurable share of a fetch (docs/benchmarks.md, "Fetch
    /// reads without zeroing; one-pass client check").
    ///
    /// # Errors
    ///
    /// As [`FsFile::read_exact_at`].
    fn read_exact_append_at(&self, out: &mut BytesMut, len: usize, position: u64) -> io::Result<()> {
        let start = out.len();
        out.resize(start + len, 0);
        let read = self.read_exact_at(&mut out[start..], position);
        if read.is_err() {
            out.truncate(start);
        }
        read
    }

    /// Writes all of `buf` at the end of the file (files are opened for appending).
    ///
    /// # Errors
    ///
    /// A write error; part of `buf` may have been written.
    fn append(&self, buf: &[u8]) -> io::Result<()>;

    /// Truncates or extends the file to `len` bytes.
    ///
    /// # Errors
    ///
    /// The file cannot be resized.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The file's length in bytes.
    ///
    /// # Errors
    ///
    /// The file's metadata cannot be read.
    fn file_len(&self) -> io::Result<u64>;

    /// Flushes the file's data and metadata to disk (`fsync`); for a
    /// directory, its entries.
    ///
    /// # Errors
    ///
    /// The fsync failed: what was written since the last one may be lost.
    fn sync_all(&self) -> io::Result<()>;

    /// Flushes the file's data to disk (`fdatasync`).
    ///
    /// # Errors
    ///
    /// As [`FsFile::sync_all`].
    fn sync_data(&self) -> io::Result<()>;

    /// Whether this is a directory (opened with [`FileSystem::open_dir`]);
    /// false when that cannot be told.
    fn is_dir(&self) -> bool;
}

/// A shared open file.
pub type FileRef = Arc<dyn FsFile>;

/// How [`FileSystem::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and append; the file must exist.
    Append,
    /// Read and append, creating the file if missing.
    AppendOrCreate,
    /// Read and append a new file; fails if the file exists.
    CreateNew,
}

/// The file operations the log uses.
pub trait FileSystem: Debug + Send + Sync {
    /// Opens the file at `path`.
    ///
    /// # Errors
    ///
    /// As `std::fs::OpenOptions::open`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef>;

    /// Opens the directory at `path`, to fsync its entries.
    ///
    /// # Errors
    ///
    /// The directory cannot be opened.
    fn open_dir(&self, path: &Path) -> io::Result<FileRef>;

    /// Whether `path` exists.
    ///
    /// # Errors
    ///
    /// Its existence cannot be checked.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// Creates the directory `path` and its missing parents.
    ///
    /// # Errors
    ///
    /// A directory cannot be created.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The names of the regular files in the directory `path` (names that are
    /// not UTF-8 are left out).
    ///
    /// # Errors
    ///
    /// The directory cannot be read.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Removes the file at `path`.
    ///
    /// # Errors
    ///
    /// As `std::fs::remove_file` (`NotFound` for a missing file).
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Renames `from` to `to`, replacing `to`.
    ///
    /// # Errors
    ///
    /// As `std::fs::rename` (`NotFound` for a missing file).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// The file's modification time.
    ///
    /// # Errors
    ///
    /// The file's metadata cannot be read.
    fn modified(&self, path: &Path) -> io::Result<SystemTime>;
}

/// The real file system: `std::fs`, nothing added.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl StdFs {
    /// The one shared [`StdFs`], as a [`FileSystem`].
    pub fn shared() -> Arc<dyn FileSystem> {
        static SHARED: OnceLock<Arc<dyn FileSystem>> = OnceLock::new();
        Arc::clone(SHARED.get_or_init(|| Arc::new(StdFs)))
    }
}

impl FileSystem for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::Append => {
                options.append(true);
            }
            OpenMode::AppendOrCreate => {
                options.append(true).create(true);
            }
            OpenMode::CreateNew => {
                options.append(true).create_new(true);
            }
        }
        Ok(Arc::new(options.open(path)?))
    }

    fn open_dir(&self, path: &Path) -> io::Result<FileRef> {
        Ok(Arc::new(File::open(path)?))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        fs::metadata(path)?.modified()
    }
}

impl FsFile for File {
    fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, position)
    }

    fn read_exact_append_at(&self, out: &mut BytesMut, len: usize, mut position: u64) -> io::Result<()> {
        out.reserve(len);
        let end = out.len() + len;
        while out.len() < end {
            let want = end - out.len();
            let spare = &mut out.spare_capacity_mut()[..want];
            let offset = libc::off_t::try_from(position).map_err(io::Error::other)?;
            // SAFETY: `spare` is `want` bytes of `out`'s allocation, valid for
            // writes; pread writes at most `want` bytes there and reads none.
            let n = unsafe { libc::pread(self.as_raw_fd(), spare.as_mut_ptr().cast(), want, offset) };
            let n = match usize::try_from(n) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file")),
                Ok(n) => n.min(want),
                Err(_) => {
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(err);
                }
            };
            // SAFETY: pread initialized the first `n` bytes of the spare
            // capacity, which follow `out`'s initialized bytes directly.
            unsafe { out.set_len(out.len() + n) };
            position += n as u64;
        }
        Ok(())
    }

    fn append(&self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn file_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn is_dir(&self) -> bool {
        self.metadata().is_ok_and(|m| m.is_dir())
    }
}
