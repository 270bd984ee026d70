//! The Rust client's `Producer` and `Consumer` against a real broker.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use common::{keyed, value, TestBroker, PATIENCE};
use herald::client::{Consumer, ConsumerConfig, Producer, ProducerConfig, RecordMetadata, StartOffset};
use herald_actors::partitioner::partition_for_key;

const RECORDS: usize = 10_000;
const PARTITIONS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_agree_on_every_record() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("events", i64::from(PARTITIONS), BTreeMap::new()).await.unwrap();

    let producer = Producer::new(
        client.clone(),
        ProducerConfig { linger_ms: 5, batch_max_records: 500, ..ProducerConfig::default() },
    );
    // Every third record has no key; the others have one of 97 keys.
    let key_of = |i: usize| (!i.is_multiple_of(3)).then(|| format!("key-{}", i % 97));
    let mut answers = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let record = match key_of(i) {
            Some(key) => keyed(key, format!("value-{i}")),
            None => value(format!("value-{i}")),
        };
        answers.push(producer.send("events", None, record).await.unwrap());
    }
    producer.flush().await.unwrap();

    let mut metadata: Vec<RecordMetadata> = Vec::with_capacity(RECORDS);
    for answer in answers {
        // Flushed: every answer is already there.
        metadata.push(answer.await.expect("answered").expect("acknowledged"));
    }
    let distinct: HashSet<(u32, i64)> = metadata.iter().map(|m| (m.partition, m.offset)).collect();
    assert_eq!(distinct.len(), RECORDS, "every record has its own (partition, offset)");
    for (i, m) in metadata.iter().enumerate() {
        assert!(m.partition < PARTITIONS && m.offset >= 0, "{m:?}");
        if let Some(key) = key_of(i) {
            assert_eq!(m.partition, partition_for_key(key.as_bytes(), PARTITIONS), "record {i} with key {key}");
        }
    }
    // Offsets fill each partition from 0 without a gap.
    let described = client.describe_topic("events").await.unwrap();
    for p in &described.partitions {
        let count = metadata.iter().filter(|m| m.partition == p.partition).count() as i64;
        assert_eq!(p.log_end_offset, count, "partition {}", p.partition);
        let max = metadata.iter().filter(|m| m.partition == p.partition).map(|m| m.offset).max();
        assert_eq!(max, Some(count - 1), "partition {}", p.partition);
    }

    // Read everything back on a separate connection.
    let mut consumer = Consumer::new(broker.client().await, ConsumerConfig::default());
    consumer.assign_all("events", StartOffset::Earliest).await.unwrap();
    let mut consumed = Vec::with_capacity(RECORDS);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while consumed.len() < RECORDS {
        assert!(tokio::time::Instant::now() < deadline, "consumed only {} records", consumed.len());
        consumed.extend(consumer.poll().await.unwrap());
    }
    assert_eq!(consumed.len(), RECORDS, "nothing more than was produced");

    let mut last_offset: HashMap<u32, i64> = HashMap::new();
    for c in &consumed {
        assert_eq!(c.topic, "events");
        let previous = last_offset.insert(c.partition, c.record.offset);
        assert!(previous.is_none_or(|p| p < c.record.offset), "offsets increase within partition {}", c.partition);
        let i: usize = common::text(&c.record).strip_prefix("value-").unwrap().parse().unwrap();
        assert_eq!(
            RecordMetadata { partition: c.partition, offset: c.record.offset },
            metadata[i],
            "record {i} is where the producer was told it is"
        );
        assert_eq!(c.record.key.as_deref(), key_of(i).as_deref().map(str::as_bytes));
    }
    for partition in 0..PARTITIONS {
        let end = described.partitions[partition as usize].log_end_offset;
        assert_eq!(consumer.position("events", partition), Some(end), "the position is past the last record");
    }

    // A caught-up consumer's poll waits, then returns nothing.
    let started = std::time::Instant::now();
    assert!(consumer.poll().await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(400), "poll waits up to max_wait_ms");
    broker.stop().await;
}

#[tokio::test]
async fn a_consumer_starts_where_it_is_told() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("starts", 1, BTreeMap::new()).await.unwrap();
    let base = 1_700_000_000_000_i64;
    let records = (0..10)
        .map(|i| herald::protocol::WireRecord { timestamp: Some(base + i * 1000), ..value(format!("{i}")) })
        .collect();
    client.produce("starts", Some(0), records).await.unwrap();

    let config = ConsumerConfig { max_wait_ms: 100, ..ConsumerConfig::default() };
    let mut consumer = Consumer::new(client.clone(), config.clone());
    assert_eq!(consumer.assign("starts", 0, StartOffset::Offset(7)).await.unwrap(), 7);
    let got: Vec<String> = consumer.poll().await.unwrap().iter().map(|c| common::text(&c.record)).collect();
    assert_eq!(got, ["7", "8", "9"]);

    assert_eq!(consumer.assign("starts", 0, StartOffset::Timestamp(base + 4500)).await.unwrap(), 5);
    assert_eq!(consumer.assign("starts", 0, StartOffset::Timestamp(base + 99_000)).await.unwrap(), 10);

    // Latest: only what is produced after the assignment.
    let mut latest = Consumer::new(client.clone(), config);
    assert_eq!(latest.assign("starts", 0, StartOffset::Latest).await.unwrap(), 10);
    assert!(latest.poll().await.unwrap().is_empty());
    client.produce("starts", Some(0), vec![value("fresh")]).await.unwrap();
    let got: Vec<(i64, String)> =
        latest.poll().await.unwrap().iter().map(|c| (c.record.offset, common::text(&c.record))).collect();
    assert_eq!(got, [(10, "fresh".to_string())]);
    broker.stop().await;
}

#[tokio::test]
async fn requests_fail_instead_of_hanging_when_the_broker_goes_away() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("gone", 1, BTreeMap::new()).await.unwrap();
    broker.stop().await;

    let err = client.list_topics().await.expect_err("the broker is stopped");
    assert!(err.retriable(), "a lost connection is worth retrying: {err}");
    let err = client.produce("gone", Some(0), vec![value("v")]).await.expect_err("the broker is stopped");
    assert!(err.retriable(), "{err}");
}

/// One producer, two topics interleaved record by record, batches cut by
/// bytes: each topic's records land in order, each where its answer says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_producer_keeps_two_topics_apart() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    for (topic, partitions) in [("left", 1), ("right", 2)] {
        client.create_topic(topic, partitions, BTreeMap::new()).await.unwrap();
    }
    // About six 300-byte records per batch.
    let config = ProducerConfig { linger_ms: 5, batch_max_bytes: 2_000, ..ProducerConfig::default() };
    let producer = Producer::new(client.clone(), config);
    let mut answers = Vec::new();
    for i in 0..200u32 {
        let (topic, partition) = if i % 2 == 0 { ("left", None) } else { ("right", Some(i / 2 % 2)) };
        let record = value(format!("{topic}-{i:0>295}"));
        answers.push((topic, i, producer.send(topic, partition, record).await.unwrap()));
    }
    producer.flush().await.unwrap();

    for (topic, i, answer) in answers {
        let landed = answer.await.expect("answered").expect("acknowledged");
        let fetched = client
            .fetch(&herald::client::FetchRequest {
                topic: topic.into(),
                partition: landed.partition.into(),
                offset: landed.offset,
                max_bytes: 1,
                max_wait_ms: 0,
                min_bytes: 0,
            })
            .await
            .unwrap();
        assert_eq!(common::text(&fetched.records[0]), format!("{topic}-{i:0>295}"), "{landed:?}");
    }
    let right = client.describe_topic("right").await.unwrap();
    assert_eq!(right.partitions.iter().map(|p| p.log_end_offset).collect::<Vec<_>>(), [50, 50]);
    broker.stop().await;
}
