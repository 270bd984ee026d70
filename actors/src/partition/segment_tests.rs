//! Segment files on a temporary directory: reopening, torn tails, indexes.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

use super::*;
use crate::partition::log::tests::{batch_of, config, fill, offsets};
use crate::partition::log::{Log, LogConfig};

fn path(dir: &Path, base: i64, suffix: &str) -> PathBuf {
    dir.join(file_name(base, suffix))
}

/// Base offsets of the segment files in `dir`, ascending.
pub(in crate::partition) fn bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            parse_file_name(e.unwrap().file_name().to_str().unwrap()).filter(|(_, s)| *s == LOG_SUFFIX).map(|(b, _)| b)
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn everything(log: &mut Log) -> Vec<i64> {
    let start = log.log_start_offset();
    offsets(&log.read(start, usize::MAX, i64::MAX).unwrap().bytes)
}

/// A log of 40 batches of 3 records in segments of 2048 bytes.
fn filled(dir: &Path) -> LogConfig {
    let mut log = Log::open(dir, config(2048), true).unwrap();
    fill(&mut log, 40);
    log.flush_all().unwrap();
    config(2048)
}

#[test]
fn file_names_round_trip() {
    assert_eq!(file_name(42, LOG_SUFFIX), "00000000000000000042.log");
    assert_eq!(parse_file_name("00000000000000000042.timeindex"), Some((42, TIME_INDEX_SUFFIX)));
    for name in ["42.log", "00000000000000000042.log.deleted", "0000000000000000004x.log", "00000000000000000042.txt"] {
        assert_eq!(parse_file_name(name), None, "{name}");
    }
}

#[test]
fn a_reopen_finds_the_same_end_and_data() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let mut log = Log::open(dir.path(), cfg.clone(), clean).unwrap();
        assert_eq!((log.log_end_offset(), log.segment_count() > 3), (120, true));
        assert_eq!(everything(&mut log), (0..120).collect::<Vec<_>>());
        assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 120);
        drop(log);
        let mut log = Log::open(dir.path(), cfg, clean).unwrap();
        assert_eq!(everything(&mut log), (0..121).collect::<Vec<_>>());
    }
}

#[test]
fn a_torn_tail_is_truncated_after_an_unclean_shutdown_and_appends_continue() {
    for (cut, back) in [(7, 0), (1, 0), (0, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let active = path(dir.path(), *bases(dir.path()).last().unwrap(), LOG_SUFFIX);
        let len = fs::metadata(&active).unwrap().len();
        let file = OpenOptions::new().read(true).write(true).open(&active).unwrap();
        file.set_len(len - cut).unwrap();
        if back > 0 {
            // A flipped bit in the last batch looks the same as a torn write.
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, len - back).unwrap();
            file.write_all_at(&[byte[0] ^ 0x10], len - back).unwrap();
        }
        let mut log = Log::open(dir.path(), cfg, false).unwrap();
        assert_eq!(log.log_end_offset(), 117, "cut {cut}, back {back}");
        assert_eq!(fs::metadata(&active).unwrap().len(), len - batch_of(3, 0, 100).len() as u64);
        assert!(log.damaged().is_empty());
        assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 117);
        assert_eq!(everything(&mut log), (0..118).collect::<Vec<_>>());
    }
}

#[test]
fn garbage_after_the_last_batch_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filled(dir.path());
    let active = path(dir.path(), *bases(dir.path()).last().unwrap(), LOG_SUFFIX);
    let len = fs::metadata(&active).unwrap().len();
    OpenOptions::new().append(true).open(&active).unwrap().write_all(&[0xab; 100]).unwrap();
    let mut log = Log::open(dir.path(), cfg, false).unwrap();
    assert_eq!(fs::metadata(&active).unwrap().len(), len);
    assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 120);
    assert_eq!(everything(&mut log), (0..121).collect::<Vec<_>>());
}

#[test]
fn missing_or_corrupt_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filled(dir.path());
    let base = bases(dir.path())[1];
    let index = path(dir.path(), base, INDEX_SUFFIX);
    let time_index = path(dir.path(), base, TIME_INDEX_SUFFIX);
    let (good_index, good_time_index) = (fs::read(&index).unwrap(), fs::read(&time_index).unwrap());
    assert!(good_index.len() >= 8 && good_time_index.len() >= 12);

    let entry_past_the_end = [good_index.clone(), [0, 0, 0, 99, 0, 1, 0, 0].to_vec()].concat();
    let unordered = [good_index.clone(), good_index[..8].to_vec()].concat();
    // Increasing and inside the log, but not at a batch boundary.
    let off_boundary = [0, 0, 0, 1, 0, 0, 0, 5].to_vec();
    let damage: [(&Path, Option<Vec<u8>>); 6] = [
        (&index, None),
        (&time_index, None),
        (&index, Some(good_index[..5].to_vec())),
        (&index, Some(entry_past_the_end)),
        (&index, Some(unordered)),
        (&index, Some(off_boundary)),
    ];
    for (file, bytes) in damage {
        match &bytes {
            None => fs::remove_file(file).unwrap(),
            Some(bytes) => fs::write(file, bytes).unwrap(),
        }
        let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
        assert_eq!(fs::read(&index).unwrap(), good_index, "{file:?} {bytes:?}");
        assert_eq!(fs::read(&time_index).unwrap(), good_time_index);
        assert_eq!(log.log_end_offset(), 120);
        for offset in base..base + 10 {
            assert_eq!(offsets(&log.read(offset, 1, i64::MAX).unwrap().bytes)[0], offset / 3 * 3);
        }
    }
}

#[test]
fn leftovers_are_removed_and_other_files_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filled(dir.path());
    let leftovers = [
        "00000000000000000000.log.deleted",
        "00000000000000000000.index.deleted",
        "x.tmp",
        "00000000000000099999.index",
    ];
    for name in leftovers.iter().chain(&["notes.txt"]) {
        fs::write(dir.path().join(name), b"junk").unwrap();
    }
    let log = Log::open(dir.path(), cfg, false).unwrap();
    assert_eq!(log.log_end_offset(), 120);
    assert!(leftovers.iter().all(|name| !dir.path().join(name).exists()));
    assert!(dir.path().join("notes.txt").exists());
}
