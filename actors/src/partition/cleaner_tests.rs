//! Compaction of a log on a temporary directory and on `FaultFs`.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::batch::Compression;
use crate::fs::fault::FaultFs;
use crate::partition::file_cache::FileCache;
use crate::partition::log::tests::config;
use crate::partition::log::{Log, LogError};

/// (offset, key, value) as read back.
type Row = (i64, String, Option<String>);

fn keyed(pairs: &[(&str, Option<&str>)], codec: Compression) -> BytesMut {
    let records: Vec<Record> = pairs
        .iter()
        .map(|(k, v)| Record {
            key: Some(Bytes::from(k.to_string())),
            value: v.map(|v| Bytes::from(v.to_string())),
            timestamp: 1_000,
            ..Record::default()
        })
        .collect();
    batch::encode_with(&records, codec).unwrap()
}

fn put(log: &mut Log, pairs: &[(&str, Option<&str>)]) {
    log.append(keyed(pairs, Compression::None), 0).unwrap();
}

/// Every record from the log start on, going past gaps as a consumer does
/// (the next fetch at the last offset received + 1); fails on damage.
fn read_all(log: &mut Log) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 16, i64::MAX).unwrap();
        if read.bytes.is_empty() {
            break;
        }
        let from = offset;
        for r in batch::decode_all(&read.bytes).unwrap().into_iter().filter(|r| r.offset >= from) {
            let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
            rows.push((r.offset, text(r.key.unwrap()), r.value.map(text)));
            offset = r.offset + 1;
        }
    }
    rows
}

fn job(log: &Log, map_bytes: usize, now_ms: i64, delete_retention_ms: u64) -> CleanJob {
    log.clean_view(i64::MAX, now_ms, 0).job(log, map_bytes, now_ms, delete_retention_ms)
}

fn clean_log(log: &mut Log, map_bytes: usize, now_ms: i64, delete_retention_ms: u64) -> CleanOutcome {
    let outcome = clean(&job(log, map_bytes, now_ms, delete_retention_ms)).unwrap();
    log.install_cleaned(outcome.clone()).unwrap();
    outcome
}

/// Per key, the last row.
fn latest(rows: &[Row]) -> BTreeMap<String, Row> {
    rows.iter().map(|r| (r.1.clone(), r.clone())).collect()
}

/// 40 updates of 5 keys in small segments, the last 5 in the active one.
fn updates(log: &mut Log) -> Vec<Row> {
    for i in 0..40 {
        let (key, value) = (format!("k{}", i % 5), format!("v{i}"));
        put(log, &[(&key, Some(&value))]);
    }
    read_all(log)
}

#[test]
fn the_latest_record_per_key_stays_at_its_offset_and_the_active_segment_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p0");
    let mut log = Log::open(&path, config(1024), true).unwrap();
    let before = updates(&mut log);
    assert!(log.segment_count() > 3);
    let active_base = log.clean_view(i64::MAX, 10_000, 0).segments.last().unwrap().next_offset;
    let segments = log.segment_count();

    let outcome = clean_log(&mut log, 1 << 20, 10_000, 0);
    assert!(outcome.records_removed > 0);
    // Emptied segments are gone, but the first.
    assert!(log.segment_count() < segments, "{} of {segments}", log.segment_count());
    assert_eq!(outcome.state.cleaned_to, active_base);
    let after = read_all(&mut log);
    // Every record kept is as it was, at its offset.
    assert!(after.iter().all(|row| before.contains(row)), "{after:?}");
    // Below the active segment, only the latest per key; in it, everything.
    let sealed: Vec<&Row> = after.iter().filter(|r| r.0 < active_base).collect();
    let latest_sealed = latest(&before.iter().filter(|r| r.0 < active_base).cloned().collect::<Vec<_>>());
    assert_eq!(sealed.len(), latest_sealed.len());
    assert!(latest_sealed.values().all(|r| sealed.contains(&r)));
    let active: Vec<&Row> = before.iter().filter(|r| r.0 >= active_base).collect();
    assert!(active.iter().all(|r| after.contains(r)));
    assert_eq!(log.log_end_offset(), 40);

    // Reopened (as after a crash): the same records, no damage, and new
    // appends go on at the same end.
    drop(log);
    let mut log = Log::open(&path, config(1024), false).unwrap();
    assert_eq!(read_all(&mut log), after);
    assert!(log.damaged().is_empty(), "{:?}", log.damaged());
    assert!(log.is_compacted());
    // The offline check (`herald scrub`) knows about gaps too.
    log.flush_all().unwrap();
    let checked = crate::partition::scrub::check_log(&path).unwrap();
    assert!(checked.damage.is_empty(), "{:?}", checked.damage);
    put(&mut log, &[("k9", Some("new"))]);
    assert_eq!(read_all(&mut log).last().unwrap().0, 40);
    // A read at an offset inside a gap starts at the next batch.
    let gap = (0..active_base).find(|o| !after.iter().any(|r| r.0 == *o)).unwrap();
    let read = log.read(gap, 1 << 16, i64::MAX).unwrap();
    assert!(batch::decode_all(&read.bytes).unwrap()[0].offset > gap);
}

#[test]
fn a_tombstone_stays_for_delete_retention_ms_after_its_first_cleaning_then_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&dir.path().join("p0"), config(1024), true).unwrap();
    put(&mut log, &[("a", Some("1")), ("b", Some("1"))]);
    put(&mut log, &[("a", None)]);
    let more = |log: &mut Log, n: usize| {
        for i in 0..n {
            put(log, &[(&format!("x{i}"), Some(&"y".repeat(200)))]);
        }
    };
    more(&mut log, 12);
    clean_log(&mut log, 1 << 20, 10_000, 1_000);
    let rows = read_all(&mut log);
    assert!(rows.contains(&(2, "a".into(), None)), "the tombstone stays at first: {rows:?}");
    assert!(!rows.iter().any(|r| r.0 == 0), "the record it deletes goes");

    more(&mut log, 12);
    clean_log(&mut log, 1 << 20, 10_900, 1_000);
    assert!(read_all(&mut log).contains(&(2, "a".into(), None)), "900 ms after: still there");
    more(&mut log, 12);
    clean_log(&mut log, 1 << 20, 11_000, 1_000);
    let rows = read_all(&mut log);
    assert!(!rows.iter().any(|r| r.1 == "a"), "{rows:?}");
    assert!(rows.contains(&(1, "b".into(), Some("1".into()))));
}

#[test]
fn compressed_batches_are_rewritten_with_their_codec() {
    for codec in [Compression::Lz4, Compression::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(&dir.path().join("p0"), config(1024), true).unwrap();
        for round in 0..30 {
            let values: Vec<String> = (0..4).map(|i| format!("r{round}-{i}")).collect();
            let pairs: Vec<(&str, Option<&str>)> = vec![
                ("a", Some(&values[0])),
                ("b", Some(&values[1])),
                ("a", Some(&values[2])),
                ("c", Some(&values[3])),
            ];
            log.append(keyed(&pairs, codec), 0).unwrap();
        }
        let before = read_all(&mut log);
        let active_base = log.clean_view(i64::MAX, 10_000, 0).segments.last().unwrap().next_offset;
        clean_log(&mut log, 1 << 20, 10_000, 0);
        let after = read_all(&mut log);
        assert!(after.iter().all(|row| before.contains(row)));
        let sealed = after.iter().filter(|r| r.0 < active_base).count();
        assert_eq!(sealed, 3, "{codec:?}: {after:?}");
        let read = log.read(0, 1 << 20, i64::MAX).unwrap();
        let header = BatchHeader::parse(&read.bytes).unwrap();
        assert_eq!(header.compression().unwrap(), codec);
    }
}

#[test]
fn a_full_map_cleans_up_to_where_it_reached_and_the_next_cleanings_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&dir.path().join("p0"), config(1024), true).unwrap();
    for round in 0..3 {
        for k in 0..8 {
            put(&mut log, &[(&format!("k{k}"), Some(&format!("v{round}")))]);
        }
    }
    put(&mut log, &[("end", Some("x"))]);
    let before = read_all(&mut log);
    let end = log.clean_view(i64::MAX, 10_000, 0).segments.last().unwrap().next_offset;
    // Room for 3 keys.
    let first = clean_log(&mut log, 3 * MAP_ENTRY_BYTES, 10_000, 0);
    assert!(first.state.cleaned_to == 3, "{:?}", first.state);
    let mut rounds = 1;
    while log.clean_view(i64::MAX, 10_000, 0).dirty_bytes > 0 && rounds < 50 {
        let outcome = clean_log(&mut log, 3 * MAP_ENTRY_BYTES, 10_000, 0);
        assert!(outcome.state.cleaned_to > 3);
        rounds += 1;
    }
    assert!(rounds > 2 && rounds < 50, "{rounds}");
    assert_eq!(log.clean_view(i64::MAX, 10_000, 0).state.cleaned_to, end);
    let after = read_all(&mut log);
    assert!(after.iter().all(|row| before.contains(row)));
    let sealed: Vec<Row> = after.iter().filter(|r| r.0 < end).cloned().collect();
    assert_eq!(latest(&sealed), latest(&before.iter().filter(|r| r.0 < end).cloned().collect::<Vec<_>>()));
    assert_eq!(sealed.len(), latest(&sealed).len(), "{sealed:?}");
}

fn open_fault(fs: &FaultFs, path: &Path, clean: bool) -> Result<Log, LogError> {
    Log::open_in(path, config(1024), clean, &FileCache::with_fs(64, fs.shared()))
}

/// Fails the n-th fsync, or the n-th write, of a cleaning and its install,
/// then loses power: the reopened log serves either segment's old or new
/// contents, never a mix: every record at its offset as appended, the
/// latest of every key there, no damage.
#[test]
fn a_crash_at_each_step_of_a_cleaning_loses_nothing_and_duplicates_nothing() {
    let mut outcomes = [0usize; 2];
    for (fail_sync, n) in (0..24).map(|n| (true, n)).chain((0..24).map(|n| (false, n))) {
        let fs = FaultFs::new();
        let path = Path::new("/data/p0");
        let mut log = open_fault(&fs, path, true).unwrap();
        let before = updates(&mut log);
        log.flush_all().unwrap();
        if fail_sync {
            fs.fail_sync(n);
        } else {
            fs.fail_write(n);
        }
        let result = clean(&job(&log, 1 << 20, 10_000, 0)).and_then(|o| log.install_cleaned(o));
        outcomes[usize::from(result.is_ok())] += 1;
        drop(log);
        fs.lose_power(None);
        // The failure was placed past the cleaning's last step, if it was.
        fs.fail_sync(1 << 40);
        fs.fail_write(1 << 40);
        let mut log = open_fault(&fs, path, false).unwrap();
        let after = read_all(&mut log);
        assert!(log.damaged().is_empty(), "step {n} (sync {fail_sync}): {:?}", log.damaged());
        assert!(after.iter().all(|row| before.contains(row)), "step {n}: {after:?}");
        assert_eq!(latest(&after), latest(&before), "step {n} (sync {fail_sync})");
        let mut offsets: Vec<i64> = after.iter().map(|r| r.0).collect();
        offsets.dedup();
        assert_eq!(offsets.len(), after.len());
        assert_eq!(log.log_end_offset(), 40);
        // What a failed cleaning left is cleaned again.
        let outcome = clean(&job(&log, 1 << 20, 10_000, 0)).unwrap();
        log.install_cleaned(outcome).unwrap();
        assert_eq!(latest(&read_all(&mut log)), latest(&before));
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn the_checkpoint_reads_back_and_a_damaged_one_starts_over() {
    let fs = FaultFs::new();
    let dir = Path::new("/d");
    fs.shared().create_dir_all(dir).unwrap();
    assert_eq!(CleanerState::load(&*fs.shared(), dir).unwrap(), None);
    let state = CleanerState { cleaned_to: 42, first_cleaned: BTreeMap::from([(0, 5), (20, 7)]) };
    state.store(&*fs.shared(), dir).unwrap();
    assert_eq!(CleanerState::load(&*fs.shared(), dir).unwrap(), Some(state.clone()));
    let text = state.text().replace("42", "43");
    assert_eq!(CleanerState::parse(&text), None);
}

/// The cleaner's rewrite rate on the real file system, for
/// docs/benchmarks.md ("Log cleaner"): `cargo test --release -p
/// herald-actors --lib cleaner_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run by hand in a release build"]
fn cleaner_throughput() {
    for codec in [Compression::None, Compression::Lz4] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(1 << 20);
        let mut log = Log::open(&dir.path().join("p0"), cfg, true).unwrap();
        let value = "v".repeat(200);
        // 400,000 records of 10,000 keys (each updated 40 times), 100 per batch.
        for b in 0..4_000 {
            let records: Vec<Record> = (0..100)
                .map(|i| Record {
                    key: Some(Bytes::from(format!("key-{:05}", (b * 100 + i) % 10_000))),
                    value: Some(Bytes::from(format!("{value}{b}"))),
                    timestamp: 1_000,
                    ..Record::default()
                })
                .collect();
            log.append(batch::encode_with(&records, codec).unwrap(), 0).unwrap();
        }
        log.flush_all().unwrap();
        let started = std::time::Instant::now();
        let outcome = clean(&job(&log, 32 << 20, 10_000, 0)).unwrap();
        let cleaned_in = started.elapsed();
        let installed = log.install_cleaned(outcome.clone()).unwrap();
        let total = started.elapsed();
        let mb = outcome.bytes_read as f64 / 1e6;
        println!(
            "{codec:?}: read {mb:.1} MB ({} records removed) in {:.2} s = {:.0} MB/s; with the swap {:.2} s = {:.0} MB/s; {} -> {} bytes",
            outcome.records_removed,
            cleaned_in.as_secs_f64(),
            mb / cleaned_in.as_secs_f64(),
            total.as_secs_f64(),
            mb / total.as_secs_f64(),
            installed.bytes_before,
            installed.bytes_after
        );
    }
}

#[test]
fn a_log_append_time_batch_keeps_its_timestamp_type_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&dir.path().join("p0"), config(1024), true).unwrap();
    for i in 0..30 {
        let mut b = keyed(&[("a", Some("1")), (&format!("k{}", i % 3), Some("2"))], Compression::None);
        batch::set_log_append_time(&mut b, 5_000 + i);
        log.append(b, 0).unwrap();
    }
    let before = log.read(0, 1 << 20, i64::MAX).unwrap();
    clean_log(&mut log, 1 << 20, 10_000, 0);
    let after = log.read(0, 1 << 20, i64::MAX).unwrap();
    let header = BatchHeader::parse(&after.bytes).unwrap();
    assert!(header.log_append_time());
    assert!(header.base_offset > 0, "the first records were superseded");
    let original = batch::decode_all(&before.bytes).unwrap();
    let kept = &batch::decode_all(&after.bytes).unwrap()[0];
    let same = original.iter().find(|r| r.offset == kept.offset).unwrap();
    assert_eq!((kept.timestamp, &kept.key, &kept.value), (same.timestamp, &same.key, &same.value));
}

/// A batch of an idempotent producer: `keys` at sequences from `sequence`.
fn produced(keys: &[&str], producer_id: i64, sequence: i32) -> BytesMut {
    let records: Vec<Record> = keys
        .iter()
        .map(|k| Record {
            key: Some(Bytes::from(k.to_string())),
            value: Some(Bytes::from_static(b"v")),
            timestamp: 1_000,
            ..Record::default()
        })
        .collect();
    let producer = BatchProducer { producer_id, producer_epoch: 0, base_sequence: sequence };
    let plan = BatchPlan::of(records.iter().map(RecordParts::from)).unwrap().with_producer(Some(producer)).unwrap();
    let mut buf = BytesMut::new();
    plan.encode_into(&mut buf, records.iter().map(RecordParts::from));
    buf
}

/// The header of the stored batch that holds `offset`, if any does.
fn batch_holding(log: &mut Log, offset: i64) -> Option<crate::batch::BatchHeader> {
    let read = log.read(offset, 1 << 16, i64::MAX).ok()?;
    let header = batch::validate(&read.bytes).ok()?;
    (header.base_offset <= offset && offset <= header.base_offset + i64::from(header.last_offset_delta))
        .then_some(header)
}

/// Kafka's rule for idempotent producers: a producer's last batch is kept
/// whole, even where later records of its keys supersede it, and a batch
/// of a producer the cleaner rebuilds keeps the producer's id and epoch and
/// each kept record's sequence.
#[test]
fn a_producers_last_batch_stays_whole_and_rebuilt_batches_keep_their_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(&dir.path().join("p0"), config(1024), true).unwrap();
    // Appended now: a producer idle for a day is forgotten.
    let now = crate::now_ms();
    log.append(produced(&["a", "b", "c"], 7, 0), now).unwrap(); // offsets 0-2, sequences 0-2
    log.append(produced(&["a"], 7, 3), now).unwrap(); // offset 3: producer 7's last batch
    put(&mut log, &[("a", Some("later")), ("b", Some("later"))]); // offsets 4-5
    for i in 0..40 {
        put(&mut log, &[(&format!("pad{}", i % 3), Some("x"))]);
    }
    clean_log(&mut log, 1 << 20, 10_000, 0);
    let rows = read_all(&mut log);
    let offsets: Vec<i64> = rows.iter().map(|r| r.0).filter(|o| *o < 6).collect();
    // 0 and 1 are superseded; 3 is superseded too, but it is the last batch.
    assert_eq!(offsets, vec![2, 3, 4, 5], "{rows:?}");
    let rebuilt = batch_holding(&mut log, 2).unwrap();
    assert_eq!((rebuilt.base_offset, rebuilt.producer_id, rebuilt.base_sequence), (2, 7, 2));
    let last = batch_holding(&mut log, 3).unwrap();
    assert_eq!((last.base_offset, last.producer_id, last.base_sequence), (3, 7, 3));
}
