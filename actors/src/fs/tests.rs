//! `FsFile::read_exact_append_at`: the real file's read into spare capacity
//! and the zero-then-read default that `FaultFs` keeps.

use std::io;
use std::path::Path;

use bytes::BytesMut;

use super::fault::FaultFs;
use super::{FileSystem, OpenMode, StdFs};

const CONTENT: &[u8] = b"0123456789";

/// `CONTENT` in a file named `log` under `dir`, through `fs`.
fn written(fs: &dyn FileSystem, dir: &Path) -> super::FileRef {
    fs.create_dir_all(dir).unwrap();
    let file = fs.open(&dir.join("log"), OpenMode::CreateNew).unwrap();
    file.append(CONTENT).unwrap();
    file
}

#[test]
fn the_real_file_appends_exactly_what_it_read_after_what_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let file = written(&StdFs, dir.path());
    let mut out = BytesMut::from(&b"ab"[..]);
    file.read_exact_append_at(&mut out, 4, 3).unwrap();
    assert_eq!(&out[..], b"ab3456");
    file.read_exact_append_at(&mut out, 0, 10).unwrap();
    assert_eq!(&out[..], b"ab3456");
}

#[test]
fn a_short_read_of_the_real_file_leaves_the_buffer_at_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = written(&StdFs, dir.path());
    let mut out = BytesMut::from(&b"ab"[..]);
    let err = file.read_exact_append_at(&mut out, 20, 6).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(&out[..], b"ab6789");
    let err = file.read_exact_append_at(&mut out, 1, 10).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(&out[..], b"ab6789");
}

#[test]
fn the_real_file_reads_into_spare_capacity_left_by_earlier_contents() {
    // A buffer that held other bytes and was cleared, as the partition's
    // reused read buffers are: only what was read becomes visible.
    let dir = tempfile::tempdir().unwrap();
    let file = written(&StdFs, dir.path());
    let mut out = BytesMut::from(&[0xffu8; 64][..]);
    out.clear();
    let err = file.read_exact_append_at(&mut out, 64, 8).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(&out[..], b"89");
}

#[test]
fn the_default_read_appends_on_success_and_leaves_the_buffer_as_it_was_on_failure() {
    let fs = FaultFs::new();
    let file = written(&fs, Path::new("/data"));
    let mut out = BytesMut::from(&b"ab"[..]);
    file.read_exact_append_at(&mut out, 4, 3).unwrap();
    assert_eq!(&out[..], b"ab3456");
    let err = file.read_exact_append_at(&mut out, 20, 6).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(&out[..], b"ab3456");
}
