//! Failed writes, failed fsyncs and a full disk under the log, on `FaultFs`
//! (see `crate::fs::fault`). Each test is seeded (`HERALD_FAULT_SEED`) and
//! prints one line of figures.
//!
//! Fail-stop after a failed fsync is the fsync writer's (`writer.rs`): it
//! fails that request and every later one, whatever the flush policy, and the
//! partition refuses appends once it has (`failures.rs`). A failed write is
//! the log's: the append fails with the OS error, the write is undone, and
//! the next append lands at the same offset. Index entries are written only
//! at seal and at shutdown: a failed index write refuses nothing and loses
//! nothing, the next open rebuilds the index from the `.log`.

use std::collections::BTreeMap;
use std::path::Path;

use futures::executor::block_on;

use bytes::{Bytes, BytesMut};

use super::file_cache::FileCache;
use super::log::tests::config;
use super::log::{Log, LogConfig, LogError};
use super::power_loss_tests::{batch_of_values, next, open, read_all, seed};
use crate::batch::{self, Record};
use crate::error::ErrorCode;
use crate::fs::fault::FaultFs;
use crate::fs::{FileSystem, OpenMode};
use crate::writer::SyncWriter;

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

fn values(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} {i}")).collect()
}

fn os_error(err: &LogError) -> Option<i32> {
    match err {
        LogError::Io { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

#[test]
fn a_failed_write_is_refused_undone_and_the_next_append_takes_its_offset() {
    let (seed, fs, dir) = (seed(), FaultFs::new(), Path::new("/data/w-0"));
    let mut state = seed.max(1);
    let mut log = open(&fs, dir, false);
    let mut acked = BTreeMap::new();
    let mut failures = 0;
    for round in 0..200 {
        if next(&mut state).is_multiple_of(4) {
            fs.fail_write(1);
            let (end, segments) = (log.log_end_offset(), log.segment_count());
            match log.append(batch_of_values(&values("refused", 2)), 0) {
                Err(err) => {
                    assert_eq!(os_error(&err), Some(EIO), "seed {seed} round {round}: {err}");
                    assert_eq!(log.log_end_offset(), end, "seed {seed} round {round}");
                    failures += 1;
                }
                // The append rolled first, and the failed write was the
                // sealed segment's index: a hint the next open rebuilds,
                // so the append goes on.
                Ok(info) => {
                    assert_eq!(log.segment_count(), segments + 1, "seed {seed} round {round}: the batch write failed");
                    assert!(log.take_unsynced().iter().all(|f| f.sync_data().is_ok()));
                    acked.extend(
                        values("refused", 2).into_iter().enumerate().map(|(i, v)| (info.base_offset + i as i64, v)),
                    );
                }
            }
        }
        let batch = values(&format!("round {round}"), 2);
        let info = log.append(batch_of_values(&batch), 0).unwrap();
        assert!(log.take_unsynced().iter().all(|f| f.sync_data().is_ok()));
        for (i, v) in batch.into_iter().enumerate() {
            acked.insert(info.base_offset + i as i64, v);
        }
    }
    let (records, damaged) = read_all(&mut log);
    assert_eq!(records, acked, "seed {seed}: exactly what was acknowledged, without gaps");
    assert!(damaged.is_empty());
    fs.lose_power(None);
    let mut log = open(&fs, dir, false);
    assert_eq!(read_all(&mut log).0, acked, "seed {seed}: and all of it was durable");
    eprintln!("write failures: seed {seed}, {failures} failed writes refused with EIO, {} records acknowledged, 0 lost, 0 gaps", acked.len());
}

#[test]
fn after_a_failed_fsync_nothing_more_is_acknowledged_and_nothing_acknowledged_is_lost() {
    let (seed, fs, dir) = (seed(), FaultFs::new(), Path::new("/data/s-0"));
    let mut state = seed.max(1);
    let writer = SyncWriter::start("fault-test").unwrap();
    let mut log = open(&fs, dir, false);
    let mut acked = BTreeMap::new();
    let good = 1 + next(&mut state) % 30;
    for round in 0..good {
        let batch = values(&format!("round {round}"), 3);
        let info = log.append(batch_of_values(&batch), 0).unwrap();
        block_on(writer.sync(log.take_unsynced())).unwrap();
        acked.extend(batch.into_iter().enumerate().map(|(i, v)| (info.base_offset + i as i64, v)));
    }
    fs.fail_sync(1);
    log.append(batch_of_values(&values("unacknowledged", 3)), 0).unwrap();
    let err = block_on(writer.sync(log.take_unsynced())).unwrap_err();
    assert_eq!(err.code, ErrorCode::KAFKA_STORAGE_ERROR, "seed {seed}");
    assert!(
        writer.failure().is_some_and(|reason| reason.contains("os error 5")),
        "seed {seed}: {:?}",
        writer.failure()
    );
    // Fail-stop: the fsync works again, but nothing more is acknowledged.
    let mut refused = 0;
    for _ in 0..5 {
        log.append(batch_of_values(&values("after", 1)), 0).unwrap();
        let later = block_on(writer.sync(log.take_unsynced())).unwrap_err();
        assert_eq!(later.code, ErrorCode::KAFKA_STORAGE_ERROR, "seed {seed}");
        refused += 1;
    }
    drop(log);
    fs.lose_power(next(&mut state).is_multiple_of(2).then(|| next(&mut state) % 512));
    let mut log = open(&fs, dir, false);
    let (records, _) = read_all(&mut log);
    for (offset, value) in &acked {
        assert_eq!(records.get(offset), Some(value), "seed {seed}: acknowledged offset {offset} was lost");
    }
    assert!(log.log_end_offset() > *acked.keys().last().unwrap(), "seed {seed}: no acknowledged offset is reused");
    eprintln!(
        "fsync failure: seed {seed}, {} records acknowledged before the failed fsync, 0 lost after power loss; \
         the failed sync and {refused} later ones answered KAFKA_STORAGE_ERROR",
        acked.len()
    );
}

#[test]
fn a_full_disk_refuses_appends_keeps_reads_and_resumes_at_the_right_offset() {
    let (seed, fs, dir) = (seed(), FaultFs::new(), Path::new("/data/d-0"));
    let mut state = seed.max(1);
    let mut log = open(&fs, dir, false);
    let mut acked = BTreeMap::new();
    let (mut refused, mut reopened) = (0, 0);
    for round in 0..40 {
        // Room for a few more bytes, anywhere from none to a batch or two.
        fs.set_capacity(Some(fs.used() + next(&mut state) % 600));
        loop {
            let batch = values(&format!("round {round} {}", acked.len()), 2);
            let (end, size) = (log.log_end_offset(), log.size_bytes());
            match log.append(batch_of_values(&batch), 0) {
                Ok(info) => {
                    if !log.take_unsynced().iter().all(|f| f.sync_data().is_ok()) {
                        panic!("seed {seed}: a sync failed");
                    }
                    acked.extend(batch.into_iter().enumerate().map(|(i, v)| (info.base_offset + i as i64, v)));
                }
                Err(err) => {
                    assert_eq!(os_error(&err), Some(ENOSPC), "seed {seed} round {round}: {err}");
                    refused += 1;
                    // Refused, whichever write failed: nothing of it is
                    // served or stored.
                    assert_eq!(log.log_end_offset(), end, "seed {seed} round {round}: a refused batch is stored");
                    assert_eq!(log.size_bytes(), size, "seed {seed} round {round}");
                    break;
                }
            }
        }
        assert_eq!(read_all(&mut log).0, acked, "seed {seed} round {round}: reads go on while the disk is full");
        fs.set_capacity(None);
        if !log.is_writable() {
            // A refused write could not be undone: the partition reopens the log in place.
            log.reopen().unwrap();
            reopened += 1;
        }
        let end = acked.keys().last().map_or(0, |o| o + 1);
        assert_eq!(log.log_end_offset(), end, "seed {seed} round {round}: the next append's offset");
    }
    let batch = values("space is back", 1);
    let info = log.append(batch_of_values(&batch), 0).unwrap();
    assert_eq!(info.base_offset, acked.keys().last().map_or(0, |o| o + 1), "seed {seed}");
    acked.extend(batch.into_iter().map(|v| (info.base_offset, v)));
    drop(log);
    let mut log = open(&fs, dir, false);
    assert_eq!(read_all(&mut log), (acked.clone(), Vec::new()), "seed {seed}: a reopen serves no refused batch");
    eprintln!(
        "disk full: seed {seed}, 40 fills, {refused} appends refused with ENOSPC (0 stored though refused, \
         {reopened} reopens), {} records held, 0 lost, reads served throughout",
        acked.len()
    );
    assert_eq!(reopened, 0, "seed {seed}: every refused append was undone in place");
}

/// A batch of `values` whose records all have the timestamp `ts`.
fn batch_at(ts: i64, values: &[String]) -> BytesMut {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record { value: Some(Bytes::from(v.clone().into_bytes())), timestamp: ts, ..Record::default() })
        .collect();
    batch::encode(&records).unwrap()
}

/// Total length of the files in `dir` whose name ends with `suffix`.
fn files_len(fs: &FaultFs, dir: &Path, suffix: &str) -> u64 {
    let names = fs.read_dir(dir).unwrap();
    let lens = names.iter().filter(|n| n.ends_with(suffix)).map(|n| fs.open(&dir.join(n), OpenMode::Read).unwrap());
    lens.map(|f| f.file_len().unwrap()).sum()
}

#[test]
fn a_failed_index_write_at_seal_refuses_nothing_and_the_index_is_rebuilt() {
    let (seed, fs, dir) = (seed(), FaultFs::new(), Path::new("/data/i-0"));
    let mut state = seed.max(1);
    // Every batch earns a `.index` and a `.timeindex` entry (timestamps
    // grow), and segments roll every few batches.
    let config = LogConfig { index_interval_bytes: 0, ..config(1024) };
    let files = FileCache::with_fs(16, fs.shared());
    let mut log = Log::open_in(dir, config.clone(), false, &files).unwrap();
    let (mut acked, mut first_offsets) = (BTreeMap::new(), Vec::new());
    let (mut index_failures, mut refused) = (0, 0);
    for round in 0..200 {
        let ts = 1_000 + round;
        let which = next(&mut state) % 3;
        let batch = values(&format!("round {round}"), 2);
        let (end, size, segments) = (log.log_end_offset(), log.size_bytes(), log.segment_count());
        if which > 0 {
            // A roll writes the sealed segment's `.index`, then its
            // `.timeindex`, then the batch; without a roll the batch is
            // the first write.
            fs.fail_write(which);
        }
        let context = format!("seed {seed} round {round}");
        match log.append(batch_at(ts, &batch), 0) {
            Ok(info) => {
                if which > 0 && log.segment_count() > segments {
                    index_failures += 1;
                }
                assert!(log.take_unsynced().iter().all(|f| f.sync_data().is_ok()), "{context}");
                acked.extend(batch.into_iter().enumerate().map(|(i, v)| (info.base_offset + i as i64, v)));
                first_offsets.push((ts, info.base_offset));
            }
            Err(err) => {
                assert_eq!(os_error(&err), Some(EIO), "{context}: {err}");
                let now = (log.log_end_offset(), log.size_bytes());
                assert_eq!(now, (end, size), "{context}: the refused batch is stored");
                refused += 1;
            }
        }
        // Disarm a failure the append did not reach.
        fs.fail_write(1 << 40);
        for &(ts, offset) in &first_offsets {
            assert_eq!(log.offset_for_timestamp(ts).unwrap(), Some(offset), "{context}: timestamp {ts} in memory");
        }
    }
    assert!(index_failures > 0, "seed {seed}: no index write failed");
    // A clean shutdown writes out every index whole, those that failed too.
    log.flush_all().unwrap();
    let batches = first_offsets.len() as u64;
    assert_eq!(files_len(&fs, dir, ".index"), 8 * batches, "seed {seed}: one `.index` entry per stored batch");
    assert_eq!(files_len(&fs, dir, ".timeindex"), 12 * batches, "seed {seed}: one `.timeindex` entry per stored batch");
    assert_eq!(files_len(&fs, dir, ".log"), log.size_bytes(), "seed {seed}: no refused bytes in the `.log` files");
    drop(log);
    // Reopened clean (the indexes are trusted), then after a power loss.
    for clean in [true, false] {
        if !clean {
            fs.lose_power(None);
        }
        let mut log = Log::open_in(dir, config.clone(), clean, &files).unwrap();
        assert_eq!(read_all(&mut log), (acked.clone(), Vec::new()), "seed {seed} clean {clean}");
        for &(ts, offset) in &first_offsets {
            assert_eq!(
                log.offset_for_timestamp(ts).unwrap(),
                Some(offset),
                "seed {seed} clean {clean}: timestamp {ts}"
            );
        }
    }
    eprintln!(
        "index write failures: seed {seed}, {index_failures} index writes at seal failed with EIO (appends kept, \
         indexes rebuilt), {refused} batch writes refused, {} records acknowledged, 0 refused stored, 0 lost",
        acked.len()
    );
}
