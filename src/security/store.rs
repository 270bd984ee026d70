//! The security files of a data directory (`<data_dir>/security/`): each a
//! whole JSON document, replaced durably on every change so that a crash
//! leaves the old version or the new one, never a mix.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The directory of the security files under a data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("security")
}

/// Replaces `path` with `bytes`: written to a temporary file beside it,
/// fsynced, renamed over it, and the directory fsynced, so the change
/// survives a power cut once this returns.
///
/// # Errors
///
/// The directory cannot be created or written, or a sync fails.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent =
        path.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a file needs a directory"))?;
    std::fs::create_dir_all(parent)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(parent)?.sync_all()
}

/// The contents of `path`, or `None` when there is no such file.
///
/// # Errors
///
/// The file exists and cannot be read.
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_reads_back_and_leaves_no_temporary_file() {
        let data = tempfile::tempdir().unwrap();
        let path = dir(data.path()).join("acls.json");
        assert_eq!(read(&path).unwrap(), None);
        replace(&path, b"[1]").unwrap();
        replace(&path, b"[2]").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some(&b"[2]"[..]));
        let names: Vec<_> = std::fs::read_dir(dir(data.path())).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["acls.json"]);
    }
}
