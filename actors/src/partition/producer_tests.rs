//! The idempotent producers' checks on append, and their state rebuilt with
//! the log (`producers.rs`, `producer_snapshot.rs`).

use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::log::tests::{config, offsets};
use super::log::{Log, LogError};
use super::producers::SequenceError;
use crate::batch::{BatchPlan, BatchProducer, Record, RecordParts};

/// A batch of `count` records of producer 7 at `epoch`, from `sequence`.
fn produced(epoch: i16, sequence: i32, count: usize) -> BytesMut {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            value: Some(Bytes::from(vec![b'p'; 100])),
            timestamp: 1_000 + i as i64,
            ..Default::default()
        })
        .collect();
    let producer = BatchProducer { producer_id: 7, producer_epoch: epoch, base_sequence: sequence };
    let plan = BatchPlan::of(records.iter().map(RecordParts::from)).unwrap().with_producer(Some(producer)).unwrap();
    let mut buf = BytesMut::new();
    plan.encode_into(&mut buf, records.iter().map(RecordParts::from));
    buf
}

fn all_offsets(log: &mut Log) -> Vec<i64> {
    offsets(&log.read(0, usize::MAX >> 1, i64::MAX).unwrap().bytes)
}

fn snapshots(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".producers"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_duplicate_is_stored_once_and_answered_with_the_first_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
    let first = log.append(produced(0, 0, 3), crate::now_ms()).unwrap();
    let second = log.append(produced(0, 3, 2), crate::now_ms()).unwrap();
    let again = log.append(produced(0, 0, 3), crate::now_ms()).unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!((again.base_offset, again.last_offset), (first.base_offset, first.last_offset));
    let again = log.append(produced(0, 3, 2), crate::now_ms()).unwrap();
    assert_eq!((again.base_offset, again.last_offset, again.duplicate), (3, 4, true));
    assert_eq!(second.base_offset, 3);
    assert_eq!(all_offsets(&mut log), [0, 1, 2, 3, 4]);
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn gaps_old_epochs_and_a_new_epoch_not_at_0_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
    // An unknown producer is taken at any sequence (Kafka since KIP-360).
    log.append(produced(1, 10, 2), crate::now_ms()).unwrap();
    let gap = log.append(produced(1, 13, 1), crate::now_ms()).unwrap_err();
    assert!(matches!(gap, LogError::Sequence(SequenceError::OutOfOrder { expected: 12, sequence: 13, .. })), "{gap}");
    let old = log.append(produced(0, 12, 1), crate::now_ms()).unwrap_err();
    assert!(matches!(old, LogError::Sequence(SequenceError::OldEpoch { epoch: 0, current: 1, .. })), "{old}");
    let new_not_0 = log.append(produced(2, 12, 1), crate::now_ms()).unwrap_err();
    assert!(matches!(new_not_0, LogError::Sequence(SequenceError::OutOfOrder { expected: 0, .. })));
    // A batch overlapping a kept one without matching it is out of order.
    let overlap = log.append(produced(1, 11, 1), crate::now_ms()).unwrap_err();
    assert!(matches!(overlap, LogError::Sequence(SequenceError::OutOfOrder { .. })));
    log.append(produced(1, 12, 1), crate::now_ms()).unwrap();
    log.append(produced(2, 0, 1), crate::now_ms()).unwrap();
    // The old epoch's batches are forgotten with it.
    assert!(log.append(produced(1, 12, 1), crate::now_ms()).is_err());
    assert_eq!(log.log_end_offset(), 4);
    // Only the last 5 batches are kept: the 6th oldest is not a duplicate.
    for sequence in 1..=5 {
        log.append(produced(2, sequence, 1), crate::now_ms()).unwrap();
    }
    assert!(log.append(produced(2, 5, 1), crate::now_ms()).unwrap().duplicate);
    assert!(log.append(produced(2, 1, 1), crate::now_ms()).unwrap().duplicate);
    assert!(matches!(log.append(produced(2, 0, 1), crate::now_ms()), Err(LogError::Sequence(_))));
}

#[test]
fn sequences_wrap_from_the_largest_to_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
    log.append(produced(0, i32::MAX - 1, 2), crate::now_ms()).unwrap();
    log.append(produced(0, 0, 1), crate::now_ms()).unwrap();
    assert!(log.append(produced(0, i32::MAX - 1, 2), crate::now_ms()).unwrap().duplicate);
}

/// Appends batches of producer 7 from sequence 0, rolling every few, and
/// checks that the reopened log still knows them.
fn reopened_knows_the_producer(damage_snapshots: bool, clean: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1_500), true).unwrap();
    for i in 0..12 {
        log.append(produced(0, i * 3, 3), crate::now_ms()).unwrap();
    }
    if clean {
        log.flush_all().unwrap();
    }
    assert!(log.segment_count() > 3);
    let end = log.log_end_offset();
    drop(log);
    let kept = snapshots(dir.path());
    assert!(!kept.is_empty() && kept.len() <= 2, "{kept:?}");
    if damage_snapshots {
        for name in &kept {
            let path = dir.path().join(name);
            let mut bytes = fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            fs::write(&path, bytes).unwrap();
        }
    }
    let mut log = Log::open(dir.path(), config(1_500), clean).unwrap();
    for retry in [9, 10, 11] {
        let again = log.append(produced(0, retry * 3, 3), crate::now_ms()).unwrap();
        assert!(again.duplicate, "batch {retry} appended again");
        assert_eq!(again.base_offset, i64::from(retry) * 3);
    }
    assert!(matches!(log.append(produced(0, 40, 1), crate::now_ms()), Err(LogError::Sequence(_))));
    let next = log.append(produced(0, 36, 1), crate::now_ms()).unwrap();
    assert_eq!((next.base_offset, next.duplicate), (end, false));
}

#[test]
fn the_state_is_rebuilt_from_a_snapshot_and_the_batches_after_it() {
    reopened_knows_the_producer(false, false);
}

#[test]
fn the_state_is_rebuilt_after_a_clean_shutdown_from_its_snapshot() {
    reopened_knows_the_producer(false, true);
}

#[test]
fn a_damaged_snapshot_is_not_trusted_and_the_log_is_read_instead() {
    reopened_knows_the_producer(true, false);
}

#[test]
fn without_any_snapshot_the_whole_log_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
    log.append(produced(0, 0, 2), crate::now_ms()).unwrap();
    log.append(produced(0, 2, 2), crate::now_ms()).unwrap();
    drop(log);
    assert!(snapshots(dir.path()).is_empty());
    let mut log = Log::open(dir.path(), config(1 << 20), false).unwrap();
    assert!(log.append(produced(0, 0, 2), crate::now_ms()).unwrap().duplicate);
    assert_eq!(log.producers().get(7).map(|p| p.batches().len()), Some(2));
}

#[test]
fn a_snapshot_past_the_log_end_is_removed_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
    log.append(produced(0, 0, 2), crate::now_ms()).unwrap();
    log.flush_all().unwrap();
    drop(log);
    // A snapshot from a longer log, as a lost tail leaves behind.
    let stale = dir.path().join(format!("{:020}.producers", 50));
    fs::copy(dir.path().join(format!("{:020}.producers", 2)), &stale).unwrap();
    let log = Log::open(dir.path(), config(1 << 20), false).unwrap();
    assert!(!stale.exists());
    assert_eq!(log.producers().len(), 1);
}

#[test]
fn a_producer_costs_what_the_documentation_says() {
    assert_eq!(std::mem::size_of::<super::producers::ProducerEntry>(), 136);
}

#[test]
fn idle_producers_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(1 << 20), true).unwrap();
    log.set_producer_expiration_ms(1_000);
    log.append(produced(0, 5, 1), 10_000).unwrap();
    log.apply_retention(10_500).unwrap();
    assert_eq!(log.producers().len(), 1);
    log.apply_retention(11_001).unwrap();
    assert!(log.producers().is_empty());
    // Forgotten: any sequence is taken again.
    log.append(produced(0, 9, 1), 11_002).unwrap();
}
