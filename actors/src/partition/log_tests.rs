//! The log on a temporary directory: appends, reads, retention, rolls.

use std::fs;
use std::sync::Arc;

use super::*;
use crate::batch::Record;

/// A batch of `count` records with timestamps `ts, ts + 1, ...` and values of
/// `value_len` bytes.
pub(in crate::partition) fn batch_of(count: usize, ts: i64, value_len: usize) -> BytesMut {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            value: Some(Bytes::from(vec![b'v'; value_len])),
            timestamp: ts + i as i64,
            ..Record::default()
        })
        .collect();
    batch::encode(&records).unwrap()
}

pub(in crate::partition) fn config(segment_max_bytes: u64) -> LogConfig {
    LogConfig {
        segment_max_bytes,
        segment_ms: u64::MAX,
        index_interval_bytes: 256,
        retention_ms: -1,
        retention_bytes: -1,
    }
}

/// The offsets of every record in `bytes`, which must be whole valid batches.
pub(in crate::partition) fn offsets(bytes: &[u8]) -> Vec<i64> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let header = batch::validate(rest).unwrap();
        rest = &rest[header.total_bytes()..];
    }
    batch::decode_all(bytes).unwrap().iter().map(|r| r.offset).collect()
}

/// Appends `batches` batches of 3 records of 100 bytes, timestamps from 1000.
pub(in crate::partition) fn fill(log: &mut Log, batches: usize) {
    for i in 0..batches {
        log.append(batch_of(3, 1000 + 10 * i as i64, 100), 0).unwrap();
    }
}

#[test]
fn a_new_log_has_one_empty_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&dir.path().join("p0"), config(4096), true).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset(), log.segment_count(), log.size_bytes()), (0, 0, 1, 0));
    let path = |suffix: &str| dir.path().join("p0").join(format!("00000000000000000000.{suffix}"));
    assert!(path("log").exists());
    // The indexes live in memory until the segment is sealed or the log flushed.
    assert!(!path("index").exists() && !path("timeindex").exists());
    assert!(log.read(0, 1000, i64::MAX).unwrap().bytes.is_empty());
    log.flush_all().unwrap();
    assert!(path("index").exists() && path("timeindex").exists());
}

#[test]
fn appends_read_back_across_segments_with_continuous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(2048), true).unwrap();
    for i in 0..100 {
        let info = log.append(batch_of(3, 1000 + i, 100), 0).unwrap();
        assert_eq!((info.base_offset, info.last_offset, info.max_timestamp), (3 * i, 3 * i + 2, 1002 + i));
    }
    assert_eq!(log.log_end_offset(), 300);
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    let all = log.read(0, usize::MAX, i64::MAX).unwrap();
    assert_eq!(offsets(&all.bytes), (0..300).collect::<Vec<_>>());
    assert_eq!(all.bytes.len() as u64, log.size_bytes());
    for offset in 0..300 {
        let read = log.read(offset, 1, i64::MAX).unwrap();
        assert_eq!(offsets(&read.bytes)[0], offset / 3 * 3, "offset {offset}");
    }
}

#[test]
fn reads_respect_max_bytes_and_max_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
    fill(&mut log, 10);
    let batch_len = batch_of(3, 0, 100).len();
    let read = log.read(4, 2 * batch_len + batch_len / 2, i64::MAX).unwrap();
    assert_eq!(offsets(&read.bytes), (3..9).collect::<Vec<_>>());
    assert_eq!((read.log_start_offset, read.log_end_offset), (0, 30));
    assert_eq!(offsets(&log.read(4, 10, i64::MAX).unwrap().bytes), vec![3, 4, 5], "at least one batch");
    assert_eq!(offsets(&log.read(0, usize::MAX, 9).unwrap().bytes), (0..9).collect::<Vec<_>>());
    assert_eq!(offsets(&log.read(0, usize::MAX, 8).unwrap().bytes), (0..6).collect::<Vec<_>>());
    assert!(log.read(9, usize::MAX, 9).unwrap().bytes.is_empty());
    assert!(log.read(7, 10, 8).unwrap().bytes.is_empty(), "no batch below max_offset");
    assert!(log.read(30, usize::MAX, i64::MAX).unwrap().bytes.is_empty());
}

#[test]
fn offsets_outside_the_log_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
    fill(&mut log, 2);
    for offset in [-1, 7, i64::MAX] {
        assert!(matches!(
            log.read(offset, 100, i64::MAX),
            Err(LogError::OffsetOutOfRange { log_start_offset: 0, log_end_offset: 6, .. })
        ));
    }
}

#[test]
fn bad_and_oversized_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1024), true).unwrap();
    let mut bad = batch_of(1, 0, 10);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(log.append(bad, 0), Err(LogError::InvalidBatch(BatchError::Checksum { .. }))));
    let mut trailing = batch_of(1, 0, 10);
    trailing.extend_from_slice(b"xx");
    assert!(matches!(log.append(trailing, 0), Err(LogError::InvalidBatch(_))));
    assert!(matches!(log.append(batch_of(1, 0, 2000), 0), Err(LogError::BatchTooLarge { max: 1024, .. })));
    assert_eq!((log.log_end_offset(), log.size_bytes()), (0, 0));
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    // Batches of 500 bytes: every one, every other one, or none is indexed.
    for index_interval_bytes in [0, 600, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { index_interval_bytes, ..config(2100) };
        offset_for_timestamp_case(dir.path(), cfg);
    }
}

fn offset_for_timestamp_case(dir: &Path, cfg: LogConfig) {
    let mut log = Log::open(dir, cfg.clone(), true).unwrap();
    // Timestamps go back and forth, so the largest so far is what the time
    // index must hold for a lookup to be right.
    for ts in [100, 500, 200, 300, 900, 400, 1000, 950, 50, 1200, 1100, 150] {
        assert_eq!(batch_of(2, ts, 200).len(), 500);
        log.append(batch_of(2, ts, 200), 0).unwrap();
    }
    assert!(log.segment_count() > 2);
    let records = batch::decode_all(&log.read(0, usize::MAX, i64::MAX).unwrap().bytes).unwrap();
    let expected = |ts: i64| records.iter().find(|r| r.timestamp >= ts).map(|r| r.offset);
    let check = |log: &mut Log| {
        for ts in (0..1300).step_by(25).chain([501, 502, 1201, 1202]) {
            assert_eq!(log.offset_for_timestamp(ts).unwrap(), expected(ts), "ts {ts}");
        }
    };
    check(&mut log);
    assert_eq!(log.offset_for_timestamp(300).unwrap(), Some(2));
    assert_eq!(log.offset_for_timestamp(2000).unwrap(), None);
    drop(log);
    check(&mut Log::open(dir, cfg.clone(), true).unwrap());
    check(&mut Log::open(dir, cfg, false).unwrap());
}

#[test]
fn retention_by_size_keeps_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(2048), true).unwrap();
    fill(&mut log, 40);
    let (segments, size) = (log.segment_count(), log.size_bytes());
    let mut cfg = config(2048);
    cfg.retention_bytes = (size / 2) as i64;
    log.set_config(cfg.clone());
    let removed = log.apply_retention(0).unwrap();
    assert!(!removed.is_empty() && removed.iter().all(|p| p.exists() && p.to_str().unwrap().ends_with(".deleted")));
    assert!(log.size_bytes() >= size / 2 && log.segment_count() < segments);
    assert!(log.log_start_offset() > 0);
    let first = log.read(log.log_start_offset(), 1, i64::MAX).unwrap();
    assert_eq!(offsets(&first.bytes)[0], log.log_start_offset());
    assert!(matches!(log.read(0, 1, i64::MAX), Err(LogError::OffsetOutOfRange { .. })));

    cfg.retention_bytes = 0;
    log.set_config(cfg.clone());
    log.apply_retention(0).unwrap();
    assert_eq!((log.segment_count(), log.log_end_offset()), (1, 120));
    assert_eq!(log.log_start_offset(), offsets(&log.read(log.log_start_offset(), 1, i64::MAX).unwrap().bytes)[0]);
    let start = log.log_start_offset();
    drop(log);
    let log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, 120));
    assert!(fs::read_dir(dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_str().unwrap().ends_with(".deleted")));
}

#[test]
fn retention_by_age_removes_only_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(2048);
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for ts in [100, 100, 100, 100, 100, 100, 5000, 5000, 5000, 5000, 5000, 5000] {
        log.append(batch_of(3, ts, 100), 0).unwrap();
    }
    let segments = log.segment_count();
    cfg.retention_ms = 1000;
    log.set_config(cfg);
    assert!(log.apply_retention(1000).unwrap().is_empty(), "nothing older than 0");
    assert!(!log.apply_retention(3000).unwrap().is_empty());
    assert!(log.segment_count() < segments && log.segment_count() > 1);
    // Offsets 0..18 have timestamps 100..=102, 18..36 have 5000..=5002:
    // only segments wholly below 18 may go, and at least one did.
    let start = log.log_start_offset();
    assert!(start > 0 && start <= 18, "log start {start}");
    let kept = log.read(start, usize::MAX, i64::MAX).unwrap();
    assert_eq!(offsets(&kept.bytes), (start..36).collect::<Vec<_>>());
    log.apply_retention(i64::MAX).unwrap();
    assert_eq!(log.segment_count(), 1, "the active segment stays");
    assert!(log.log_start_offset() < log.log_end_offset());
}

#[test]
fn the_active_segment_rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20);
    cfg.segment_ms = 1000;
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    log.append(batch_of(1, 0, 10), 5000).unwrap();
    log.append(batch_of(1, 0, 10), 5999).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(batch_of(1, 0, 10), 6000).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert!(dir.path().join("00000000000000000002.log").exists());
    log.append(batch_of(1, 0, 10), 6999).unwrap();
    assert_eq!(log.segment_count(), 2, "age counts from the first append to the new segment");
}

#[test]
fn take_unsynced_names_the_files_to_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1024), true).unwrap();
    assert!(log.take_unsynced().is_empty());
    log.append(batch_of(1, 0, 400), 0).unwrap();
    let files = log.take_unsynced();
    assert_eq!(files.len(), 1);
    assert!(Arc::ptr_eq(&files[0], &log.active().file().unwrap()), "the active .log, as cached");
    assert!(log.take_unsynced().is_empty());

    // The rolled segment's `.log` was handed out already: not again.
    let before = log.active().file().unwrap();
    log.append(batch_of(1, 0, 800), 0).unwrap();
    assert_eq!(log.segment_count(), 2);
    let files = log.take_unsynced();
    assert!(!files.iter().any(|f| Arc::ptr_eq(f, &before)), "the previous .log, handed out before");
    assert_eq!(
        files.len(),
        5,
        "its two indexes, written at seal, the producer snapshot, the new active .log and the directory"
    );
    for file in files {
        file.sync_data().unwrap();
    }
    // Written since it was handed out: handed out at the roll.
    log.append(batch_of(1, 0, 900), 0).unwrap();
    let before = log.active().file().unwrap();
    log.append(batch_of(1, 0, 900), 0).unwrap();
    assert_eq!(log.segment_count(), 4);
    let files = log.take_unsynced();
    assert!(files.iter().any(|f| Arc::ptr_eq(f, &before)), "the previous .log");
    // Only a directory answers a read with EISDIR.
    let is_dir = |f: &FileRef| f.read_exact_at(&mut [0u8; 1], 0).is_err_and(|e| e.raw_os_error() == Some(21));
    assert!(files.iter().any(is_dir), "the directory");
    assert!(files.iter().any(|f| Arc::ptr_eq(f, &log.active().file().unwrap())), "the new active .log");
    for file in files {
        file.sync_data().unwrap();
    }
    log.flush_all().unwrap();
    assert!(log.take_unsynced().is_empty());
}

/// Descriptors the process has open now.
fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

/// `partitions` logs of 4 segments each (3 sealed) in one directory, opened
/// through one cache of `capacity` files: returns the most descriptors they
/// held (above what was open before) while written, reopened, and read
/// whole. Every record is read back.
pub(in crate::partition) fn descriptors_of_many_logs(partitions: usize, capacity: usize) -> usize {
    // On tmpfs where there is one: the thousands of directory fsyncs of
    // creating the logs are what this takes time for, and they are not tested.
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    let files = FileCache::new(capacity);
    let before = open_fds();
    let mut most = 0;
    let dirs: Vec<PathBuf> = (0..partitions).map(|p| root.path().join(format!("t-{p}"))).collect();
    let mut logs: Vec<Log> = dirs.iter().map(|dir| Log::open_in(dir, config(1024), true, &files).unwrap()).collect();
    for log in &mut logs {
        for _ in 0..8 {
            log.append(batch_of(1, 0, 400), 0).unwrap();
            drop(log.take_unsynced());
        }
        assert_eq!(log.segment_count(), 4);
    }
    most = most.max(open_fds().saturating_sub(before));
    drop(logs);

    let mut logs: Vec<Log> = dirs.iter().map(|dir| Log::open_in(dir, config(1024), true, &files).unwrap()).collect();
    most = most.max(open_fds().saturating_sub(before));
    for log in &mut logs {
        let mut offset = 0;
        while offset < 8 {
            let read = log.read(offset, 1 << 20, 8).unwrap();
            let got = offsets(&read.bytes);
            assert_eq!(got.first(), Some(&offset));
            offset = got.last().unwrap() + 1;
        }
        assert!(files.len() <= capacity);
    }
    most.max(open_fds().saturating_sub(before))
}

#[test]
fn an_active_file_with_writes_not_handed_to_fsync_stays_open_over_the_bound() {
    let root = tempfile::tempdir().unwrap();
    let files = FileCache::new(1);
    let mut logs: Vec<Log> = (0..3)
        .map(|p| Log::open_in(&root.path().join(format!("p{p}")), config(1 << 20), true, &files).unwrap())
        .collect();
    let mut dirty = Vec::new();
    for log in &mut logs {
        log.append(batch_of(1, 0, 10), 0).unwrap();
        dirty.push(log.active().file().unwrap());
    }
    assert_eq!((files.len(), files.pinned()), (3, 3), "three written files, none closed for a bound of one");
    for (log, file) in logs.iter_mut().zip(&dirty) {
        log.append(batch_of(1, 0, 10), 0).unwrap();
        assert!(Arc::ptr_eq(&log.active().file().unwrap(), file), "the same descriptor wrote again");
    }
    for log in &mut logs {
        let handed = log.take_unsynced();
        assert_eq!(handed.len(), 1);
    }
    assert_eq!((files.len(), files.pinned()), (1, 0), "handed to fsync, the bound holds again");
}

#[test]
fn segments_hold_descriptors_only_in_the_bounded_cache() {
    // The 2,000 active and 6,000 sealed segments share 64 descriptors (each
    // active file is handed to the fsync writer after its writes, so the
    // cache may close it). All files held open would take 2,000 × 13, the
    // active segments' three files alone 6,000.
    let held = descriptors_of_many_logs(2000, 64);
    assert!(held <= 64 + 16, "{held} descriptors held");
}
