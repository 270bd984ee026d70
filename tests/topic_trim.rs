//! `delete_records` against the real broker: the start offset moves before
//! the answer and holds across a restart; nothing below it is served (fetch
//! answers 1, earliest answers it, a group consumer committed below it resets);
//! -1 trims to the high watermark; out-of-range offsets change nothing.

mod common;

use std::time::{Duration, Instant};

use common::{config, fetch_at, read_partition, value, TestBroker, PATIENCE};
use herald::client::{AutoOffsetReset, Client, ClientError, GroupConsumer, GroupConsumerConfig};
use herald::protocol::{
    group_op, CommitOffsetsRequest, CommitOffsetsResponse, ConfigValue::Int, OffsetCommit, EARLIEST_TIMESTAMP,
};

const TOPIC: &str = "ledger";

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> i16 {
    match result {
        Err(err) => err.code().unwrap_or_else(|| panic!("expected a broker error, got {err}")),
        Ok(answer) => panic!("expected a broker error, got {answer:?}"),
    }
}

/// A topic of small segments (about three records each), `records` records
/// of 300 bytes in partition 0, one per batch.
async fn topic_with(client: &Client, partitions: i64, records: usize) {
    let small = config(&[("segment_max_bytes", Int(1024)), ("max_message_bytes", Int(1024))]);
    client.create_topic(TOPIC, partitions, small).await.unwrap();
    for i in 0..records {
        client.produce(TOPIC, Some(0), vec![value(format!("{i:0>300}"))]).await.unwrap();
    }
}

fn segment_files(data_dir: &std::path::Path) -> Vec<i64> {
    let dir = data_dir.join("topics").join(TOPIC).join("0");
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    bases.sort();
    bases
}

#[tokio::test]
async fn trimmed_records_are_never_served_again_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    topic_with(&client, 1, 20).await;
    let before = client.describe_topic(TOPIC).await.unwrap().partitions[0].clone();

    assert_eq!(client.delete_records(TOPIC, 0, 8).await.unwrap(), 8);
    assert_eq!(code(client.fetch(&fetch_at(TOPIC, 0, 7)).await), 1);
    assert_eq!(code(client.fetch(&fetch_at(TOPIC, 0, 0)).await), 1);
    let rest = read_partition(&client, TOPIC, 0, 8).await;
    assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), (8..20).collect::<Vec<_>>());
    assert_eq!(client.list_offsets(TOPIC, 0, EARLIEST_TIMESTAMP).await.unwrap(), 8);
    let after = client.describe_topic(TOPIC).await.unwrap().partitions[0].clone();
    assert_eq!((after.log_start_offset, after.log_end_offset), (8, 20));
    assert!(after.segments < before.segments, "{before:?} -> {after:?}");
    // Whole segments below the start are deleted from disk (in the background).
    let deadline = Instant::now() + PATIENCE;
    while segment_files(dir.path()).len() as u64 != after.segments {
        assert!(Instant::now() < deadline, "segment files left: {:?}", segment_files(dir.path()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(segment_files(dir.path())[0] <= 8);
    drop(client);
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    assert_eq!(code(client.fetch(&fetch_at(TOPIC, 0, 7)).await), 1);
    assert_eq!(client.list_offsets(TOPIC, 0, EARLIEST_TIMESTAMP).await.unwrap(), 8);
    assert_eq!(client.describe_topic(TOPIC).await.unwrap().partitions[0].log_start_offset, 8);
    broker.stop().await;
}

#[tokio::test]
async fn minus_one_trims_to_the_high_watermark_and_appends_go_on_from_it() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    topic_with(&client, 1, 6).await;
    assert_eq!(client.delete_records(TOPIC, 0, -1).await.unwrap(), 6);
    assert!(client.fetch(&fetch_at(TOPIC, 0, 6)).await.unwrap().records.is_empty());
    assert_eq!(code(client.fetch(&fetch_at(TOPIC, 0, 5)).await), 1);
    let appended = client.produce(TOPIC, Some(0), vec![value("next")]).await.unwrap();
    assert_eq!(appended[0].base_offset, 6);
    assert_eq!(read_partition(&client, TOPIC, 0, 6).await.len(), 1);
    broker.stop().await;
}

#[tokio::test]
async fn out_of_range_offsets_and_unknown_partitions_change_nothing() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    topic_with(&client, 2, 10).await;
    assert_eq!(client.delete_records(TOPIC, 0, 4).await.unwrap(), 4);
    for offset in [11, -2, i64::MIN, i64::MAX] {
        assert_eq!(code(client.delete_records(TOPIC, 0, offset).await), 1, "offset {offset}");
    }
    // At or below the start: success, no change.
    assert_eq!(client.delete_records(TOPIC, 0, 2).await.unwrap(), 4);
    assert_eq!(client.delete_records(TOPIC, 0, 4).await.unwrap(), 4);
    // An empty partition: only 0 (its high watermark) is in range.
    assert_eq!(client.delete_records(TOPIC, 1, 0).await.unwrap(), 0);
    assert_eq!(code(client.delete_records(TOPIC, 1, 1).await), 1);
    assert_eq!(code(client.delete_records(TOPIC, 2, 0).await), 3);
    assert_eq!(code(client.delete_records("nope", 0, 0).await), 3);
    assert_eq!(client.describe_topic(TOPIC).await.unwrap().partitions[0].log_start_offset, 4);
    broker.stop().await;
}

#[tokio::test]
async fn a_group_committed_below_the_new_start_resets_by_its_policy() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    topic_with(&client, 1, 10).await;
    let commit = CommitOffsetsRequest {
        group_id: "auditors".into(),
        member_id: None,
        generation_id: -1,
        offsets: vec![OffsetCommit { topic: TOPIC.into(), partition: 0, offset: 2, metadata: None }],
    };
    let answer: CommitOffsetsResponse = client.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
    assert_eq!(answer.partitions[0].error_code, 0, "{answer:?}");
    assert_eq!(client.delete_records(TOPIC, 0, 6).await.unwrap(), 6);

    let mut config = GroupConsumerConfig::new("auditors", &[TOPIC]);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut consumer = GroupConsumer::join(broker.client().await, config).await.unwrap();
    let mut offsets = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while offsets.len() < 4 {
        offsets.extend(consumer.poll().await.unwrap().into_iter().map(|r| r.record.offset));
        assert!(Instant::now() < deadline, "consumed {offsets:?}");
    }
    assert_eq!(offsets, [6, 7, 8, 9]);
    consumer.close().await.unwrap();
    broker.stop().await;
}
