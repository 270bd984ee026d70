//! The `Partition` actor on a temporary directory, started under a
//! `Supervisor` as a topic starts it, driven by its messages.

use std::path::Path;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use super::*;
use crate::batch::Record;

/// How long a test waits for what should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

pub(super) fn settings() -> PartitionSettings {
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

fn partition(dir: &Path, writer: &SyncWriter, clean_shutdown: bool) -> Partition {
    let config = TopicConfig::default();
    Partition::new("t".into(), 0, dir.to_path_buf(), config, settings(), writer.clone(), clean_shutdown)
}

/// Starts a partition on the current arbiter, under a supervisor.
fn start(dir: &Path, writer: &SyncWriter) -> Addr<Partition> {
    let (dir, writer) = (dir.to_path_buf(), writer.clone());
    Supervisor::start(move |_| partition(&dir, &writer, false))
}

/// A batch of records with these values and timestamps `ts, ts + 1, ...`.
fn batch_of(values: &[&str], ts: i64) -> BytesMut {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            timestamp: ts + i as i64,
            ..Record::default()
        })
        .collect();
    batch::encode(&records).unwrap()
}

async fn append(addr: &Addr<Partition>, values: &[&str], ts: i64) -> Appended {
    addr.send(Append { checked: false, acks: 1, timeout_ms: 0, batch: batch_of(values, ts) })
        .await
        .expect("the partition is running")
        .expect("appended")
}

fn fetch_at(offset: i64) -> Fetch {
    Fetch { offset, max_bytes: 1 << 20, min_bytes: 0, max_wait_ms: 0 }
}

async fn fetch(addr: &Addr<Partition>, request: Fetch) -> Result<FetchResult, BrokerError> {
    let answer = tokio::time::timeout(PATIENCE, addr.send(request)).await.expect("answered in time");
    answer.expect("the partition is running")
}

/// (offset, value) of every record in a fetch result.
fn records(result: &FetchResult) -> Vec<(i64, String)> {
    batch::decode_all(&result.records)
        .unwrap()
        .into_iter()
        .map(|r| (r.offset, String::from_utf8(r.value.unwrap().to_vec()).unwrap()))
        .collect()
}

async fn list_offsets(addr: &Addr<Partition>, timestamp: i64) -> Result<i64, BrokerError> {
    addr.send(ListOffsets { timestamp }).await.expect("the partition is running")
}

#[actix::test]
async fn appended_batches_are_fetched_back_at_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer);

    assert_eq!(append(&addr, &["a", "b", "c"], 1000).await, Appended { base_offset: 0, record_count: 3 });
    assert_eq!(append(&addr, &["d", "e"], 2000).await, Appended { base_offset: 3, record_count: 2 });

    let all = fetch(&addr, fetch_at(0)).await.unwrap();
    let expected: Vec<(i64, String)> =
        ["a", "b", "c", "d", "e"].iter().enumerate().map(|(i, v)| (i as i64, v.to_string())).collect();
    assert_eq!(records(&all), expected);
    assert_eq!((all.high_watermark, all.log_start_offset), (5, 0));
    // From inside the second batch: that batch, from its start.
    let tail = fetch(&addr, fetch_at(4)).await.unwrap();
    assert_eq!(records(&tail), [(3, "d".to_string()), (4, "e".to_string())]);
    // At the end: in range, nothing to read.
    let end = fetch(&addr, fetch_at(5)).await.unwrap();
    assert!(end.records.is_empty() && end.high_watermark == 5, "{end:?}");

    let described = addr.send(Describe).await.unwrap().unwrap();
    assert_eq!((described.log_start_offset, described.log_end_offset, described.high_watermark), (0, 5, 5));
    assert_eq!(
        described.size_bytes,
        (batch_of(&["a", "b", "c"], 1000).len() + batch_of(&["d", "e"], 2000).len()) as u64
    );
}

#[actix::test]
async fn a_long_poll_is_answered_by_the_append_it_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer);

    let started = Instant::now();
    // Enqueued now, before the append below: it finds nothing and parks.
    let waiting = addr.send(Fetch { offset: 0, max_bytes: 1 << 20, min_bytes: 1, max_wait_ms: 60_000 });
    append(&addr, &["wake"], 1000).await;
    let woken = tokio::time::timeout(PATIENCE, waiting).await.expect("woken by the append").unwrap().unwrap();
    assert_eq!(records(&woken), [(0, "wake".to_string())]);
    assert_eq!(woken.high_watermark, 1);
    assert!(started.elapsed() < PATIENCE, "waited {:?}", started.elapsed());
}

#[actix::test]
async fn a_long_poll_with_nothing_to_read_ends_after_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer);
    append(&addr, &["there"], 1000).await;

    let started = Instant::now();
    let answer = fetch(&addr, Fetch { offset: 1, max_bytes: 1 << 20, min_bytes: 1, max_wait_ms: 200 }).await.unwrap();
    assert!(answer.records.is_empty(), "{answer:?}");
    assert_eq!(answer.high_watermark, 1);
    assert!(started.elapsed() >= Duration::from_millis(200), "answered after {:?}", started.elapsed());

    // min_bytes more than one small batch: still parked after it.
    let waiting = addr.send(Fetch { offset: 1, max_bytes: 1 << 20, min_bytes: 2000, max_wait_ms: 60_000 });
    append(&addr, &["small"], 1001).await;
    append(&addr, &[&"L".repeat(3000)], 1002).await;
    let answer = tokio::time::timeout(PATIENCE, waiting).await.expect("answered once enough arrived").unwrap().unwrap();
    assert_eq!(
        records(&answer).iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        [1, 2],
        "both batches, not the first alone"
    );
}

#[actix::test]
async fn offsets_outside_the_log_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer);
    let code = |result: Result<FetchResult, BrokerError>| result.map(|r| r.records).unwrap_err().code;

    assert_eq!(code(fetch(&addr, fetch_at(1)).await), ErrorCode::OFFSET_OUT_OF_RANGE, "past the end of an empty log");
    append(&addr, &["a", "b"], 1000).await;
    for offset in [-1, 3, i64::MAX, i64::MIN] {
        assert_eq!(code(fetch(&addr, fetch_at(offset)).await), ErrorCode::OFFSET_OUT_OF_RANGE, "offset {offset}");
    }
    // A long poll out of range is answered at once, not parked.
    let started = Instant::now();
    let parked = fetch(&addr, Fetch { offset: 9, max_bytes: 1 << 20, min_bytes: 1, max_wait_ms: 60_000 }).await;
    assert_eq!(code(parked), ErrorCode::OFFSET_OUT_OF_RANGE);
    assert!(started.elapsed() < PATIENCE);
}

#[actix::test]
async fn list_offsets_by_earliest_latest_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer);
    assert_eq!(list_offsets(&addr, -2).await, Ok(0));
    assert_eq!(list_offsets(&addr, -1).await, Ok(0));
    assert_eq!(list_offsets(&addr, 0).await, Ok(-1), "no record at all");

    append(&addr, &["a", "b", "c"], 1000).await;
    append(&addr, &["d", "e", "f"], 2000).await;
    assert_eq!(list_offsets(&addr, -2).await, Ok(0));
    assert_eq!(list_offsets(&addr, -1).await, Ok(6));
    for (ts, offset) in [(0, 0), (1000, 0), (1001, 1), (1002, 2), (1003, 3), (2000, 3), (2002, 5), (2003, -1)] {
        assert_eq!(list_offsets(&addr, ts).await, Ok(offset), "timestamp {ts}");
    }
    let invalid = list_offsets(&addr, -3).await.unwrap_err();
    assert_eq!(invalid.code, ErrorCode::INVALID_TIMESTAMP);

    // "Latest" asked right behind an append includes it, although the append
    // is still waiting for its fsync when the question arrives.
    let appending = addr.send(Append { checked: false, acks: 1, timeout_ms: 0, batch: batch_of(&["g"], 3000) });
    let latest = addr.send(ListOffsets { timestamp: -1 });
    assert_eq!(latest.await.unwrap(), Ok(7));
    assert_eq!(appending.await.unwrap().unwrap().base_offset, 6);
}

#[actix::test]
async fn a_restarted_partition_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();

    // On an arbiter of its own, which is then stopped: the actor ends with no
    // shutdown message, as in a crash of its thread.
    let arbiter = Arbiter::new();
    let (path, w) = (dir.path().to_path_buf(), writer.clone());
    let addr = Supervisor::start_in_arbiter(&arbiter.handle(), move |_| partition(&path, &w, false));
    for i in 0..10 {
        let values: Vec<String> = (0..3).map(|r| format!("{i}-{r}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        assert_eq!(append(&addr, &values, 1000 + i).await.base_offset, 3 * i);
    }
    arbiter.stop();
    arbiter.join().unwrap();
    assert!(addr.send(Describe).await.is_err(), "the first actor is gone");

    let addr = start(dir.path(), &writer);
    let all = fetch(&addr, fetch_at(0)).await.unwrap();
    let offsets: Vec<i64> = records(&all).iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..30).collect::<Vec<_>>());
    assert_eq!(records(&all)[29].1, "9-2");
    assert_eq!(all.high_watermark, 30);
    assert_eq!(append(&addr, &["after"], 5000).await.base_offset, 30, "appends continue at the end");

    // A clean stop (flush, then a start that trusts the indexes) keeps them too.
    addr.send(Shutdown).await.unwrap().unwrap();
    let (path, w) = (dir.path().to_path_buf(), writer.clone());
    let addr = Supervisor::start(move |_| partition(&path, &w, true));
    let all = fetch(&addr, fetch_at(0)).await.unwrap();
    assert_eq!(records(&all).len(), 31);
    assert_eq!(records(&all)[30], (30, "after".to_string()));
    // Batch 7 holds offsets 21..=23 with timestamps 1007..=1009.
    assert_eq!(list_offsets(&addr, 1009).await, Ok(23), "the time index is back too");
}

#[actix::test]
async fn a_failed_write_is_refused_and_the_partition_serves_on_and_writes_again_once_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("p");
    let writer = SyncWriter::start("test").unwrap();
    let (path, w) = (log_dir.clone(), writer.clone());
    let addr = Supervisor::start(move |_| {
        let config = TopicConfig { segment_max_bytes: 1024, ..TopicConfig::default() };
        Partition::new("t".into(), 0, path.clone(), config, settings(), w.clone(), false)
    });
    let big = "x".repeat(600);
    append(&addr, &[&big], 1000).await;
    let mut waiting = Box::pin(addr.send(Fetch { offset: 1, max_bytes: 1 << 20, min_bytes: 1, max_wait_ms: 60_000 }));
    // The next append must roll a new segment, in a directory that is gone.
    let kept = dir.path().join("kept");
    std::fs::rename(&log_dir, &kept).unwrap();
    for attempt in 0..2 {
        let failed = addr
            .send(Append { checked: false, acks: 1, timeout_ms: 0, batch: batch_of(&[&big], 1001) })
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(failed.code, ErrorCode::KAFKA_STORAGE_ERROR, "attempt {attempt}");
        assert!(failed.message.contains("No such file or directory"), "the OS reason: {}", failed.message);
    }
    // Not restarted: reads go on and the long poll still waits.
    assert_eq!(records(&fetch(&addr, fetch_at(0)).await.unwrap()), [(0, big.clone())]);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut waiting).await.is_err(),
        "the long poll was answered"
    );

    std::fs::rename(&kept, &log_dir).unwrap();
    assert_eq!(append(&addr, &["again"], 1002).await.base_offset, 1, "offsets go on, none reused");
    let woken = tokio::time::timeout(PATIENCE, waiting).await.expect("woken by the append").unwrap().unwrap();
    assert_eq!(records(&woken), [(1, "again".to_string())]);
}

#[actix::test]
async fn a_closed_partition_answers_its_long_polls_with_unknown_partition() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer);
    let waiting = addr.send(Fetch { offset: 0, max_bytes: 1 << 20, min_bytes: 1, max_wait_ms: 60_000 });
    addr.send(Close).await.unwrap();
    let answer = tokio::time::timeout(PATIENCE, waiting).await.expect("answered at the close").unwrap();
    assert_eq!(answer.unwrap_err().code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    let after =
        addr.send(Append { checked: false, acks: 1, timeout_ms: 0, batch: batch_of(&["late"], 0) }).await.unwrap();
    assert_eq!(after.unwrap_err().code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "the supervisor restarted it closed");
}

#[actix::test]
async fn after_a_shutdown_requests_are_refused_as_shutting_down() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(dir.path(), &writer);
    append(&addr, &["kept"], 1000).await;
    addr.send(Shutdown).await.unwrap().unwrap();

    let refused = addr
        .send(Append { checked: false, acks: 1, timeout_ms: 0, batch: batch_of(&["late"], 0) })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::BROKER_SHUTTING_DOWN);
    assert_eq!(fetch(&addr, fetch_at(0)).await.unwrap_err().code, ErrorCode::BROKER_SHUTTING_DOWN);
    assert_eq!(list_offsets(&addr, -1).await.unwrap_err().code, ErrorCode::BROKER_SHUTTING_DOWN);
}

/// Fails the writer's next fsync round, as a disk error would: a pipe cannot
/// be fsynced (EINVAL).
async fn fail_an_fsync(writer: &SyncWriter) {
    let (_reader, pipe) = std::io::pipe().unwrap();
    let pipe = std::sync::Arc::new(std::fs::File::from(std::os::fd::OwnedFd::from(pipe)));
    let failed = writer.sync(vec![pipe]).await.unwrap_err();
    assert_eq!(failed.code, ErrorCode::KAFKA_STORAGE_ERROR);
}

#[actix::test]
async fn with_every_flush_policy_a_failed_fsync_refuses_every_later_append() {
    for flush in [FlushPolicy::Always, FlushPolicy::Interval, FlushPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let writer = SyncWriter::start("test").unwrap();
        let (path, w) = (dir.path().to_path_buf(), writer.clone());
        let addr = Supervisor::start(move |_| {
            // An interval long enough that no background fsync runs in the test.
            let settings = PartitionSettings { flush, flush_interval_ms: 3_600_000, ..settings() };
            Partition::new("t".into(), 0, path.clone(), TopicConfig::default(), settings, w.clone(), false)
        });
        assert_eq!(append(&addr, &["before"], 1000).await.base_offset, 0, "{flush:?}");

        fail_an_fsync(&writer).await;
        for attempt in 0..2 {
            let refused = addr
                .send(Append { checked: false, acks: 1, timeout_ms: 0, batch: batch_of(&["after"], 1001) })
                .await
                .unwrap()
                .unwrap_err();
            assert_eq!(refused.code, ErrorCode::KAFKA_STORAGE_ERROR, "{flush:?}, attempt {attempt}");
            assert!(refused.message.contains("fsync"), "{flush:?}: {}", refused.message);
        }
        let read = fetch(&addr, fetch_at(0)).await.unwrap();
        assert_eq!(
            records(&read),
            [(0, "before".to_string())],
            "{flush:?}: reads still served, nothing refused is visible"
        );
        assert_eq!(read.high_watermark, 1, "{flush:?}");
    }
}

#[actix::test]
async fn a_log_that_fails_to_open_is_opened_again_later() {
    let root = tempfile::tempdir().unwrap();
    // A file where the log's directory should be: the open fails.
    let dir = root.path().join("t-0");
    std::fs::write(&dir, b"in the way").unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let addr = start(&dir, &writer);
    let refused = addr
        .send(Append { checked: false, acks: 1, timeout_ms: 0, batch: batch_of(&["a"], 1) })
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::LEADER_NOT_AVAILABLE, "{refused:?}");
    assert!(refused.message.contains("retries"), "{refused:?}");
    let refused = fetch(&addr, fetch_at(0)).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::LEADER_NOT_AVAILABLE, "{refused:?}");

    // Once the cause is gone, a later try opens it, with no restart.
    std::fs::remove_file(&dir).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let appended = loop {
        match addr.send(Append { checked: false, acks: 1, timeout_ms: 0, batch: batch_of(&["a"], 1) }).await.unwrap() {
            Ok(appended) => break appended,
            Err(err) => {
                assert_eq!(err.code, ErrorCode::LEADER_NOT_AVAILABLE, "{err:?}");
                assert!(Instant::now() < deadline, "the log was never opened again");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(appended.base_offset, 0);
    assert_eq!(records(&fetch(&addr, fetch_at(0)).await.unwrap()), [(0, "a".to_string())]);
}
