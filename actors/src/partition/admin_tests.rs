//! The partition's admin messages on a temporary directory: `DeleteRecords`
//! and its start-offset checkpoint (kept by a new actor on the same
//! directory; torn, missing, or beyond the log end at open), and `SetConfig`.

use std::path::Path;

use actix::prelude::*;
use bytes::Bytes;

use super::log::{Log, CHECKPOINT_FILE};
use super::*;
use crate::batch::Record;

fn settings() -> PartitionSettings {
    PartitionSettings {
        flush: FlushPolicy::Always,
        flush_interval_ms: 10,
        retention_check_interval_ms: 60_000,
        scrub: ScrubBudget::new(0),
        replica_lag_time_max_ms: DEFAULT_REPLICA_LAG_TIME_MAX_MS,
        replicated: false,
        producer_id_expiration_ms: 86_400_000,
    }
}

/// Settings whose segments hold about three of [`append_one`]'s batches.
fn small_segments() -> TopicConfig {
    TopicConfig { segment_max_bytes: 1024, max_message_bytes: 1024, ..TopicConfig::default() }
}

fn start(dir: &Path, writer: &SyncWriter, config: TopicConfig) -> Addr<Partition> {
    let (dir, writer) = (dir.to_path_buf(), writer.clone());
    Supervisor::start(move |_| Partition::new("t".into(), 0, dir, config, settings(), writer, false))
}

/// Appends one batch of one record of 300 bytes, timestamp 1000 + its number.
async fn append_one(addr: &Addr<Partition>, n: i64) -> i64 {
    let record = Record { value: Some(Bytes::from(vec![b'v'; 300])), timestamp: 1000 + n, ..Record::default() };
    let batch = batch::encode(&[record]).unwrap();
    addr.send(Append { batch, checked: true, acks: 1, timeout_ms: 0 }).await.unwrap().unwrap().base_offset
}

async fn delete_records(addr: &Addr<Partition>, offset: i64) -> Result<i64, BrokerError> {
    addr.send(DeleteRecords { offset }).await.expect("the partition is running")
}

async fn fetch_offsets(addr: &Addr<Partition>, offset: i64) -> Result<Vec<i64>, BrokerError> {
    let fetched = addr.send(Fetch { offset, max_bytes: 1 << 20, min_bytes: 0, max_wait_ms: 0 }).await.unwrap()?;
    Ok(batch::decode_all(&fetched.records).unwrap().iter().map(|r| r.offset).collect())
}

async fn describe(addr: &Addr<Partition>) -> PartitionState {
    addr.send(Describe).await.unwrap().unwrap()
}

async fn stop(addr: Addr<Partition>) {
    addr.send(Shutdown).await.unwrap().unwrap();
}

fn log_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count()
}

#[actix::test]
async fn delete_records_moves_the_start_durably_and_a_new_actor_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer, small_segments());
    for n in 0..10 {
        append_one(&addr, n).await;
    }
    let before = describe(&addr).await;
    assert!(before.segments >= 3, "{before:?}");

    assert_eq!(delete_records(&addr, 5).await, Ok(5));
    let err = fetch_offsets(&addr, 4).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::OFFSET_OUT_OF_RANGE, "{err}");
    assert_eq!(fetch_offsets(&addr, 5).await.unwrap()[0], 5);
    assert_eq!(addr.send(ListOffsets { timestamp: -2 }).await.unwrap(), Ok(5));
    // The first record at or after the time of record 0 that is still served.
    assert_eq!(addr.send(ListOffsets { timestamp: 1000 }).await.unwrap(), Ok(5));
    let after = describe(&addr).await;
    assert_eq!(after.log_start_offset, 5);
    assert!(after.segments < before.segments, "{before:?} -> {after:?}");

    // At or below the start: no change. Out of range: refused, no change.
    assert_eq!(delete_records(&addr, 3).await, Ok(5));
    for offset in [11, -2, i64::MIN] {
        let err = delete_records(&addr, offset).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::OFFSET_OUT_OF_RANGE, "{offset}: {err}");
    }
    assert_eq!(describe(&addr).await.log_start_offset, 5);
    stop(addr).await;

    let addr = start(dir.path(), &writer, small_segments());
    assert_eq!(describe(&addr).await.log_start_offset, 5);
    assert_eq!(fetch_offsets(&addr, 4).await.unwrap_err().code, ErrorCode::OFFSET_OUT_OF_RANGE);
    // -1: up to the high watermark; appends go on after it.
    assert_eq!(delete_records(&addr, TO_HIGH_WATERMARK).await, Ok(10));
    assert!(fetch_offsets(&addr, 10).await.unwrap().is_empty());
    assert_eq!(append_one(&addr, 10).await, 10);
    assert_eq!(fetch_offsets(&addr, 10).await.unwrap(), [10]);
    stop(addr).await;
}

#[actix::test]
async fn a_torn_or_missing_checkpoint_at_open_falls_back_to_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer, small_segments());
    for n in 0..10 {
        append_one(&addr, n).await;
    }
    assert_eq!(delete_records(&addr, 5).await, Ok(5));
    stop(addr).await;
    let checkpoint = dir.path().join(CHECKPOINT_FILE);
    let whole = std::fs::read(&checkpoint).unwrap();

    for damaged in [whole[..whole.len() / 2].to_vec(), whole.iter().map(|b| b.wrapping_add(1)).collect()] {
        std::fs::write(&checkpoint, &damaged).unwrap();
        let addr = start(dir.path(), &writer, small_segments());
        let state = describe(&addr).await;
        assert!(state.log_start_offset < 5 && state.log_end_offset == 10, "{state:?}");
        assert_eq!(fetch_offsets(&addr, state.log_start_offset).await.unwrap()[0], state.log_start_offset);
        stop(addr).await;
    }

    std::fs::remove_file(&checkpoint).unwrap();
    let addr = start(dir.path(), &writer, small_segments());
    let state = describe(&addr).await;
    assert!(state.log_start_offset < 5 && state.log_end_offset == 10, "{state:?}");
    // A new delete writes a whole checkpoint again.
    assert_eq!(delete_records(&addr, 7).await, Ok(7));
    stop(addr).await;
    let addr = start(dir.path(), &writer, small_segments());
    assert_eq!(describe(&addr).await.log_start_offset, 7);
    stop(addr).await;
}

#[actix::test]
async fn a_checkpoint_beyond_the_log_end_moves_the_end_up_and_no_offset_is_given_twice() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer, small_segments());
    for n in 0..10 {
        append_one(&addr, n).await;
    }
    stop(addr).await;
    // As after a crash that lost the log's tail past offset 10 while the
    // start had been moved to 50.
    let log = Log::open(dir.path(), small_segments().log_config(), true).unwrap();
    log.start_checkpoint().store(50).unwrap();
    drop(log);

    let addr = start(dir.path(), &writer, small_segments());
    let state = describe(&addr).await;
    assert_eq!((state.log_start_offset, state.log_end_offset, state.high_watermark), (50, 50, 50));
    assert_eq!(state.segments, 1);
    assert_eq!(log_files(dir.path()), 1, "the segments below the start are deleted");
    assert_eq!(fetch_offsets(&addr, 10).await.unwrap_err().code, ErrorCode::OFFSET_OUT_OF_RANGE);
    assert_eq!(append_one(&addr, 50).await, 50);
    assert_eq!(fetch_offsets(&addr, 50).await.unwrap(), [50]);
    stop(addr).await;
}

#[actix::test]
async fn changed_settings_apply_to_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer, TopicConfig::default());
    append_one(&addr, 0).await;
    addr.send(SetConfig(TopicConfig { max_message_bytes: 100, ..TopicConfig::default() })).await.unwrap();
    let record = Record { value: Some(Bytes::from(vec![b'v'; 300])), ..Record::default() };
    let refused = addr
        .send(Append { batch: batch::encode(&[record]).unwrap(), checked: true, acks: 1, timeout_ms: 0 })
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err().code, ErrorCode::MESSAGE_TOO_LARGE);
}
