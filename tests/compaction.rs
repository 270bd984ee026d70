//! Log compaction against the real broker: a `compact` topic keeps the
//! latest record per key at its offset, consumers and consumer groups go
//! across the gaps, keyless records are refused, and a topic altered to
//! `compact` is cleaned. Every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{config, keyed, read_partition, test_settings, text, value, TestBroker};
use herald::client::{Client, ClientError};
use herald::client::{GroupConsumer, GroupConsumerConfig};
use herald::protocol::ConfigValue::{self, Int, Str};

/// The cleaner runs on the retention tick; a short one keeps tests fast.
fn broker() -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (broker_in(dir.path()), dir)
}

fn broker_in(dir: &std::path::Path) -> TestBroker {
    let mut settings = test_settings(dir);
    settings.storage.retention_check_interval_ms = 50;
    TestBroker::start_with(settings)
}

fn compacted() -> BTreeMap<String, ConfigValue> {
    config(&[
        ("cleanup_policy", Str("compact".into())),
        ("segment_max_bytes", Int(1024)),
        ("max_message_bytes", Int(1024)),
        ("min_cleanable_dirty_ratio", Str("0.01".into())),
    ])
}

/// Produces 10 rounds of updates of keys k0..k9, one record per produce,
/// then k0..k4 once more in one batch, then a large record of its own key
/// that rolls them into a sealed segment. Returns every record's
/// (offset, key, value) as produced.
async fn produce_updates(client: &Client, topic: &str) -> Vec<(i64, String, String)> {
    let mut produced = Vec::new();
    for round in 0..10 {
        for k in 0..10 {
            let (key, v) = (format!("k{k}"), format!("r{round}"));
            let offset = client.produce(topic, Some(0), vec![keyed(&key, &v)]).await.unwrap()[0].base_offset;
            produced.push((offset, key, v));
        }
    }
    let last: Vec<_> = (0..5).map(|k| keyed(format!("k{k}"), "last")).collect();
    let base = client.produce(topic, Some(0), last).await.unwrap()[0].base_offset;
    produced.extend((0..5).map(|k| (base + k as i64, format!("k{k}"), "last".to_string())));
    let filler = "f".repeat(900);
    let offset = client.produce(topic, Some(0), vec![keyed("filler", &filler)]).await.unwrap()[0].base_offset;
    produced.push((offset, "filler".into(), filler));
    produced
}

/// Per key, its latest (offset, key, value), by offset.
fn latest(produced: &[(i64, String, String)]) -> Vec<(i64, String, String)> {
    let by_key: BTreeMap<&str, &(i64, String, String)> = produced.iter().map(|r| (r.1.as_str(), r)).collect();
    let mut out: Vec<_> = by_key.into_values().cloned().collect();
    out.sort();
    out
}

async fn read_rows(client: &Client, topic: &str) -> Vec<(i64, String, String)> {
    read_partition(client, topic, 0, 0)
        .await
        .iter()
        .map(|r| (r.offset, String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(), text(r)))
        .collect()
}

/// Reads the partition from 0 until it holds one record per key, for at
/// most 30 s.
async fn wait_for_compaction(client: &Client, topic: &str, keys: usize) -> Vec<(i64, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = read_rows(client, topic).await;
        if rows.len() == keys {
            return rows;
        }
        assert!(Instant::now() < deadline, "not compacted after 30 s: {} records", rows.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_compacted_topic_keeps_the_latest_record_per_key_at_its_offset() {
    let (broker, _dir) = broker();
    let client = broker.client().await;
    client.create_topic("prices", 1, compacted()).await.unwrap();
    let produced = produce_updates(&client, "prices").await;
    let expected = latest(&produced);
    let rows = wait_for_compaction(&client, "prices", expected.len()).await;
    assert_eq!(rows, expected);
    assert_eq!(client.describe_topic("prices").await.unwrap().config["cleanup_policy"], Str("compact".into()));
    // The earliest offset is still 0: a fetch there starts at the next batch.
    assert_eq!(client.list_offsets("prices", 0, -2).await.unwrap(), 0);

    // New records go on after the last offset; the cleaned part stays.
    let next = client.produce("prices", Some(0), vec![keyed("k9", "new")]).await.unwrap()[0].base_offset;
    assert_eq!(next, produced.last().unwrap().0 + 1);
    let rows = read_rows(&client, "prices").await;
    assert_eq!(rows[..expected.len()], expected[..]);
    assert_eq!(rows.last().unwrap(), &(next, "k9".to_string(), "new".to_string()));

    // After a restart: the same records at the same offsets, and the end
    // where it was.
    drop(client);
    let dir = broker.data_dir().to_path_buf();
    broker.stop().await;
    let broker = broker_in(&dir);
    let client = broker.client().await;
    assert_eq!(read_rows(&client, "prices").await, rows);
    let after = client.produce("prices", Some(0), vec![keyed("k8", "again")]).await.unwrap()[0].base_offset;
    assert_eq!(after, next + 1);
}

#[tokio::test]
async fn a_consumer_group_commits_and_resumes_across_gaps() {
    let (broker, _dir) = broker();
    let client = broker.client().await;
    client.create_topic("accounts", 1, compacted()).await.unwrap();
    let expected = latest(&produce_updates(&client, "accounts").await);
    wait_for_compaction(&client, "accounts", expected.len()).await;

    // One batch per fetch: the commit after the first poll lands in a gap
    // or on the next kept record.
    let mut config = GroupConsumerConfig::new("auditors", &["accounts"]);
    config.auto_commit = false;
    config.max_bytes = 1;
    let mut consumer = GroupConsumer::join(broker.client().await, config.clone()).await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.is_empty() {
        assert!(Instant::now() < deadline, "no record consumed");
        seen.extend(consumer.poll().await.unwrap().into_iter().map(|r| r.record.offset));
    }
    consumer.commit().await.unwrap();
    let committed = consumer.position("accounts", 0).unwrap();
    assert_eq!(committed, seen.last().unwrap() + 1);
    consumer.close().await.unwrap();

    let mut consumer = GroupConsumer::join(broker.client().await, config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < expected.len() {
        assert!(Instant::now() < deadline, "resumed consumer stalled at {seen:?}");
        seen.extend(consumer.poll().await.unwrap().into_iter().map(|r| r.record.offset));
    }
    let offsets: Vec<i64> = expected.iter().map(|r| r.0).collect();
    assert_eq!(seen, offsets, "every kept record once, in order, across the gaps");
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_record_without_a_key_is_refused_by_a_compacted_topic() {
    let (broker, _dir) = broker();
    let client = broker.client().await;
    client.create_topic("keyed-only", 1, compacted()).await.unwrap();
    let refused = client.produce("keyed-only", Some(0), vec![keyed("a", "1"), value("no key")]).await;
    match refused {
        Err(ClientError::Broker { code, message, .. }) => {
            assert_eq!(code, 87, "{message}");
            assert!(message.contains("no key"), "{message}");
        }
        other => panic!("expected INVALID_RECORD, got {other:?}"),
    }
    // Nothing of the refused batch was appended.
    assert_eq!(client.produce("keyed-only", Some(0), vec![keyed("a", "1")]).await.unwrap()[0].base_offset, 0);
    // A topic that deletes takes keyless records.
    client.create_topic("plain", 1, BTreeMap::new()).await.unwrap();
    client.produce("plain", Some(0), vec![value("no key")]).await.unwrap();
}

#[tokio::test]
async fn a_topic_altered_to_compact_is_cleaned() {
    let (broker, _dir) = broker();
    let client = broker.client().await;
    let small = config(&[("segment_max_bytes", Int(1024)), ("max_message_bytes", Int(1024))]);
    client.create_topic("settled", 1, small).await.unwrap();
    let produced = produce_updates(&client, "settled").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read_rows(&client, "settled").await.len(), produced.len(), "delete: nothing compacted");

    let set = config(&[("cleanup_policy", Str("compact".into())), ("min_cleanable_dirty_ratio", Str("0.01".into()))]);
    let answer = client.alter_topic_config("settled", set, vec![], false).await.unwrap();
    assert_eq!(answer["cleanup_policy"], Str("compact".into()));
    let expected = latest(&produced);
    assert_eq!(wait_for_compaction(&client, "settled", expected.len()).await, expected);
}

#[tokio::test]
async fn the_cli_creates_a_compacted_topic_and_describe_shows_its_policy() {
    let (broker, _dir) = broker();
    let addr = broker.addr().to_string();
    let cli = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--broker", &addr]);
        common::herald_cli(&all)
    };
    let (status, out) = cli(&[
        "topic",
        "create",
        "ledger",
        "--partitions",
        "1",
        "--config",
        "cleanup_policy=compact,delete",
        "--config",
        "min_cleanable_dirty_ratio=0.2",
    ]);
    assert_eq!(status, Some(0), "{out}");
    let (status, out) = cli(&["topic", "describe", "ledger"]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("cleanup_policy=compact,delete"), "{out}");
    assert!(out.contains("min_cleanable_dirty_ratio=0.2"), "{out}");
    assert!(out.contains("delete_retention_ms=86400000"), "{out}");
    let (status, out) = cli(&["topic", "alter-config", "ledger", "--set", "cleanup_policy=shred"]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("cleanup_policy"), "{out}");
}
