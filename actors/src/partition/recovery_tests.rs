//! Recovery of a log whose files were damaged while it was closed: nothing
//! intact is deleted and no offset is reused.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::log::tests::{batch_of, config, fill, offsets};
use super::log::{Damage, Log, LogConfig, LogError};
use super::segment::tests::bases;
use super::segment::{file_name, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};

fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(file_name(base, LOG_SUFFIX))
}

/// A log of 40 batches of 3 records (offsets 0..120) in segments of 2048 bytes.
fn filled(dir: &Path) -> LogConfig {
    let mut log = Log::open(dir, config(2048), true).unwrap();
    fill(&mut log, 40);
    log.flush_all().unwrap();
    config(2048)
}

/// Flips a bit of the byte at `position` of the file.
pub(super) fn flip(path: &Path, position: u64) {
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], position).unwrap();
}

#[test]
fn a_truncated_middle_segment_keeps_every_later_segment_and_offset() {
    for (clean, cut) in [(true, 3), (false, 3), (true, batch_of(3, 0, 100).len() as u64), (false, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let all = bases(dir.path());
        let file = OpenOptions::new().write(true).open(log_path(dir.path(), all[1])).unwrap();
        file.set_len(file.metadata().unwrap().len() - cut).unwrap();
        let mut log = Log::open(dir.path(), cfg, clean).unwrap();
        assert_eq!(bases(dir.path()), all, "clean {clean}, cut {cut}: no segment removed");
        assert_eq!(log.log_end_offset(), 120);
        assert_eq!(offsets(&log.read(all[2], usize::MAX, i64::MAX).unwrap().bytes), (all[2]..120).collect::<Vec<_>>());
        assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 120, "no offset is reused");
    }
}

#[test]
fn a_bad_batch_in_an_older_segment_keeps_the_batches_after_it() {
    for clean in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let all = bases(dir.path());
        let victim = all[all.len() - 2];
        // In the records of the segment's first batch.
        flip(&log_path(dir.path(), victim), 60);
        let mut log = Log::open(dir.path(), cfg, clean).unwrap();
        assert_eq!(bases(dir.path()), all, "clean {clean}");
        assert_eq!(log.log_end_offset(), 120);
        let after = offsets(&log.read(victim + 3, usize::MAX, i64::MAX).unwrap().bytes);
        assert_eq!(after, (victim + 3..120).collect::<Vec<_>>());
        assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 120);
    }
}

/// Bytes of one batch that `fill` appends.
fn batch_len() -> u64 {
    batch_of(3, 0, 100).len() as u64
}

/// The damaged range a read at `offset` names.
fn damaged_at(log: &mut Log, offset: i64) -> (i64, i64) {
    match log.read(offset, usize::MAX, i64::MAX) {
        Err(LogError::Damaged(Damage { first_offset, next_offset, .. })) => (first_offset, next_offset),
        other => panic!("expected a damaged range at {offset}, got {other:?}"),
    }
}

/// Reads the whole log as a consumer that skips damaged ranges deliberately:
/// the offsets read, and the ranges skipped.
fn consume(log: &mut Log) -> (Vec<i64>, Vec<(i64, i64)>) {
    let (mut read, mut skipped) = (Vec::new(), Vec::new());
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        match log.read(offset, 1000, i64::MAX) {
            Ok(result) => {
                let got: Vec<i64> = offsets(&result.bytes).into_iter().filter(|o| *o >= offset).collect();
                assert_eq!(got.first(), Some(&offset), "a read returns the offset asked for first");
                offset = got.last().unwrap() + 1;
                read.extend(got);
            }
            Err(LogError::Damaged(span)) => {
                assert!(span.contains(offset));
                skipped.push((span.first_offset, span.next_offset));
                offset = span.next_offset;
            }
            Err(err) => panic!("read at {offset}: {err}"),
        }
    }
    (read, skipped)
}

fn without(range: std::ops::Range<i64>) -> Vec<i64> {
    (0..120).filter(|o| !range.contains(o)).collect()
}

#[test]
fn a_bad_batch_is_a_damaged_range_that_reads_name_and_skip() {
    for clean in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let all = bases(dir.path());
        let victim = all[all.len() - 2];
        flip(&log_path(dir.path(), victim), 60);
        let mut log = Log::open(dir.path(), cfg, clean).unwrap();
        // Found on open only when the segment is checked whole.
        assert_eq!(log.damaged().len(), usize::from(!clean), "clean {clean}");
        assert_eq!(damaged_at(&mut log, victim + 1), (victim, victim + 3));
        assert_eq!(log.damaged().len(), 1, "a read records what it finds");
        assert_eq!(consume(&mut log), (without(victim..victim + 3), vec![(victim, victim + 3)]));
        let before = offsets(&log.read(victim - 3, usize::MAX, i64::MAX).unwrap().bytes);
        assert_eq!(before, [victim - 3, victim - 2, victim - 1], "a read stops before the damage");
    }
}

#[test]
fn a_cut_sealed_segment_ends_in_a_damaged_range() {
    for (cut, clean) in [(3, false), (3, true), (batch_len(), true)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let all = bases(dir.path());
        let file = OpenOptions::new().write(true).open(log_path(dir.path(), all[1])).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - cut).unwrap();
        let mut log = Log::open(dir.path(), cfg, clean).unwrap();
        let spans = log.damaged();
        assert_eq!(spans.len(), 1, "cut {cut}, clean {clean}");
        assert_eq!((spans[0].segment_base, spans[0].first_offset, spans[0].next_offset), (all[1], all[2] - 3, all[2]));
        assert_eq!(spans[0].bytes, batch_len() - cut, "the damaged bytes are kept");
        assert_eq!(fs::metadata(log_path(dir.path(), all[1])).unwrap().len(), len - cut);
        assert_eq!(consume(&mut log), (without(all[2] - 3..all[2]), vec![(all[2] - 3, all[2])]));
    }
}

#[test]
fn a_missing_middle_segment_is_a_damaged_range() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filled(dir.path());
    let all = bases(dir.path());
    fs::remove_file(log_path(dir.path(), all[2])).unwrap();
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!(log.log_end_offset(), 120);
    assert_eq!(consume(&mut log), (without(all[2]..all[3]), vec![(all[2], all[3])]));
    assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 120);
}

#[test]
fn after_a_clean_shutdown_a_bad_tail_is_kept_and_its_offsets_never_reused() {
    // Cut inside the last batch, and garbage after it: neither can be a torn
    // write once everything was synced.
    for (cut, garbage, end) in [(7, 0, 120), (0, 100, 120 + 100 / 28)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let active = log_path(dir.path(), *bases(dir.path()).last().unwrap());
        let file = OpenOptions::new().read(true).write(true).open(&active).unwrap();
        let len = file.metadata().unwrap().len() - cut;
        file.set_len(len).unwrap();
        file.write_all_at(&vec![0xab; garbage], len).unwrap();
        let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
        assert_eq!(fs::metadata(&active).unwrap().len(), len + garbage as u64, "nothing truncated");
        assert_eq!(log.log_end_offset(), end, "cut {cut}, garbage {garbage}");
        let first = if cut > 0 { 117 } else { 120 };
        assert_eq!(damaged_at(&mut log, first), (first, end));
        assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, end);
        let (read, skipped) = consume(&mut log);
        assert_eq!(read, (0..first).chain([end]).collect::<Vec<_>>());
        assert_eq!(skipped, [(first, end)]);
        log.flush_all().unwrap();
        drop(log);
        // Reopened after a crash, the damage is in the middle now: still kept.
        let mut log = Log::open(dir.path(), cfg, false).unwrap();
        assert_eq!((log.log_end_offset(), consume(&mut log).1), (end + 1, vec![(first, end)]));
    }
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_caught_before_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filled(dir.path());
    let all = bases(dir.path());
    // The second batch of the second segment: trusted by a clean open.
    flip(&log_path(dir.path(), all[1]), batch_len() + 70);
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    assert!(log.damaged().is_empty());
    let whole = offsets(&log.read(0, usize::MAX, i64::MAX).unwrap().bytes);
    assert_eq!(whole, (0..all[1] + 3).collect::<Vec<_>>(), "the read stops before the damaged batch");
    assert_eq!(damaged_at(&mut log, all[1] + 4), (all[1] + 3, all[1] + 6));
    assert_eq!(consume(&mut log).0, without(all[1] + 3..all[1] + 6));
    // A search by time passes over it.
    let ts_of = |o: i64| 1000 + 10 * (o / 3) + o % 3;
    assert_eq!(log.offset_for_timestamp(ts_of(all[1] + 4)).unwrap(), Some(all[1] + 6));
}

#[test]
fn a_flipped_base_offset_is_caught_instead_of_skipping_records() {
    // The base offset is outside the checksum; flipping a bit of it makes the
    // batch claim offsets 16 later.
    for victim_batch in [0, 1] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = filled(dir.path());
        let all = bases(dir.path());
        flip(&log_path(dir.path(), all[2]), victim_batch * batch_len() + 7);
        let mut log = Log::open(dir.path(), cfg, true).unwrap();
        let first = all[2] + 3 * victim_batch as i64;
        assert_eq!(consume(&mut log), (without(first..first + 3), vec![(first, first + 3)]));
    }
}

#[test]
fn a_damaged_batch_length_is_passed_over_to_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filled(dir.path());
    let all = bases(dir.path());
    let active = *all.last().unwrap();
    flip(&log_path(dir.path(), active), batch_len() + 10);
    let mut log = Log::open(dir.path(), cfg, false).unwrap();
    assert_eq!(log.log_end_offset(), 120);
    assert_eq!(consume(&mut log).1, [(active + 3, active + 6)]);
    assert_eq!(log.append(batch_of(1, 0, 10), 0).unwrap().base_offset, 120);
}

#[test]
fn the_scrub_checks_sealed_segments_a_little_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filled(dir.path());
    let all = bases(dir.path());
    flip(&log_path(dir.path(), all[0]), 60);
    flip(&log_path(dir.path(), all[2]), batch_len() * 2 + 60);
    // The active segment is not the scrub's: appends may be under way there.
    flip(&log_path(dir.path(), *all.last().unwrap()), 60);
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    assert!(log.damaged().is_empty());
    let mut calls = 1;
    while !log.scrub(1000).unwrap() {
        calls += 1;
        assert!(calls < 1000, "a pass ends");
    }
    let sealed: u64 = all[..all.len() - 1].iter().map(|b| fs::metadata(log_path(dir.path(), *b)).unwrap().len()).sum();
    assert!(calls as u64 >= sealed / (1000 + batch_len()), "{calls} calls for {sealed} bytes");
    let found: Vec<(i64, i64)> = log.damaged().iter().map(|d| (d.first_offset, d.next_offset)).collect();
    assert_eq!(found, [(all[0], all[0] + 3), (all[2] + 6, all[2] + 9)]);
    assert!(!log.scrub(1000).unwrap(), "the next pass starts over");
}

#[test]
fn retention_by_age_goes_by_the_file_time_of_a_segment_without_a_readable_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = filled(dir.path());
    let all = bases(dir.path());
    // Every batch of the first segment unreadable: no timestamp to go by.
    let len = fs::metadata(log_path(dir.path(), all[0])).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(log_path(dir.path(), all[0]))
        .unwrap()
        .write_all_at(&vec![0; len as usize], 0)
        .unwrap();
    cfg.retention_ms = 3_600_000;
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!(log.damaged().len(), 1);
    let now = crate::now_ms();
    assert!(log.apply_retention(now).unwrap().is_empty(), "written just now: kept");
    assert!(!log.apply_retention(now + 3_600_001).unwrap().is_empty(), "an hour later it goes");
    assert!(log.log_start_offset() >= all[1]);
}

/// Adds 1 to the relative offset of entry `n` of an index file whose entries
/// are `size` bytes and end with the relative offset.
fn shift_index_entry(path: &Path, size: usize, n: usize) {
    let mut bytes = fs::read(path).unwrap();
    let at = (n + 1) * size - 4;
    let relative = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) + 1;
    bytes[at..at + 4].copy_from_slice(&relative.to_be_bytes());
    fs::write(path, bytes).unwrap();
}

#[test]
fn an_index_entry_that_disagrees_with_the_log_is_dropped_not_taken_for_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = filled(dir.path());
    let base = bases(dir.path())[1];
    // Still increasing, so the files pass their checks on open; but the
    // entries now name offsets in the middle of a batch.
    shift_index_entry(&dir.path().join(file_name(base, INDEX_SUFFIX)), 8, 1);
    shift_index_entry(&dir.path().join(file_name(base, TIME_INDEX_SUFFIX)), 12, 1);
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!(consume(&mut log), ((0..120).collect(), vec![]));
    let ts_of = |o: i64| 1000 + 10 * (o / 3) + o % 3;
    for offset in 0..120 {
        assert_eq!(log.offset_for_timestamp(ts_of(offset)).unwrap(), Some(offset));
    }
    assert!(log.damaged().is_empty());
}
