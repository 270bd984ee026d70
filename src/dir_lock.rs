//! The exclusive lock of a data directory: one broker per directory.
//!
//! Two brokers on one directory would both append to the same segment files
//! and each trust only its own view of them: acknowledged records of one would
//! vanish at the next start. A broker therefore holds an advisory `flock` on
//! `<data_dir>/.lock` from before it reads anything until it has shut down, and
//! writes its pid into the file so that a refused start can say who holds it.
//! The operating system drops the lock with the process, whatever the way it
//! ends (exit, SIGKILL, a crash), so a stale lock file never blocks a start.
//!
//! `flock` locks belong to the open file, not the process: a second lock from
//! the same process (a second in-process broker) is refused too.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = ".lock";

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (or another broker in this one) holds the lock.
    #[error(
        "data directory {} is in use by another broker ({}); stop it or choose another data directory",
        dir.display(),
        holder.map_or_else(|| "pid unknown".to_string(), |pid| format!("pid {pid}"))
    )]
    Held {
        dir: PathBuf,
        /// The pid the holder wrote into the lock file, if it is readable.
        holder: Option<u32>,
    },
    /// The directory or its lock file could not be created, opened or locked.
    #[error("cannot lock data directory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A held lock on a data directory, released when dropped (or when the
/// process ends).
#[derive(Debug)]
pub struct DirLock {
    /// Kept open: closing it releases the lock.
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and takes its lock without waiting, then writes
    /// this process's pid into the lock file.
    ///
    /// # Errors
    ///
    /// [`LockError::Held`] if another holder has it; [`LockError::Io`] if the
    /// directory or lock file cannot be made or locked (e.g. a file system
    /// without `flock`).
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let io_at = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let path = dir.join(LOCK_FILE);
        // Not truncated on open: a refused start must still read the holder's pid.
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_at(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held { dir: dir.to_path_buf(), holder: read_pid(&mut file) });
            }
            Err(TryLockError::Error(err)) => return Err(io_at(&path)(err)),
        }
        // The pid is for people; the lock is what counts, so it need not be synced.
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(io_at(&path))?;
        Ok(DirLock { _file: file })
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let held = DirLock::acquire(&data).unwrap();
        let pid = std::fs::read_to_string(data.join(LOCK_FILE)).unwrap();
        assert_eq!(pid, format!("{}\n", std::process::id()));

        let refused = DirLock::acquire(&data).unwrap_err();
        assert!(matches!(&refused, LockError::Held { holder: Some(p), .. } if *p == std::process::id()), "{refused:?}");
        let message = refused.to_string();
        assert!(message.contains(&data.display().to_string()), "{message}");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert_eq!(std::fs::read_to_string(data.join(LOCK_FILE)).unwrap(), pid, "the holder's pid is kept");

        drop(held);
        let _again = DirLock::acquire(&data).unwrap();
    }

    #[test]
    fn a_lock_file_without_a_pid_is_reported_as_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(dir.path().join(LOCK_FILE)).unwrap();
        file.try_lock().unwrap();
        let refused = DirLock::acquire(dir.path()).unwrap_err();
        assert!(refused.to_string().contains("pid unknown"), "{refused}");
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("data");
        std::fs::write(&blocker, b"a file").unwrap();
        let err = DirLock::acquire(&blocker).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&blocker.display().to_string()), "{err}");
    }
}
