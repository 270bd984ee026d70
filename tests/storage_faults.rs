//! What admin operations and fetches answer when the data directory is not
//! as the broker left it: a write that cannot be made is KAFKA_STORAGE_ERROR
//! (56) and changes nothing (the partition serves on), a log that cannot be
//! opened is LEADER_NOT_AVAILABLE (5) for that partition only, until a retry
//! opens it with no restart, a damaged stored batch is CORRUPT_MESSAGE (2), and a
//! create cut short before its metadata was written does not stop a start.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

use common::{fetch_at, read_partition, text, value, TestBroker};
use herald::client::ClientError;
use herald::protocol::{ConfigValue, FetchRequest};
use herald_actors::topic::TopicMeta;

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> i16 {
    match result {
        Ok(ok) => panic!("expected an error, got {ok:?}"),
        Err(err) => err.code().unwrap_or_else(|| panic!("expected a broker error, got {err}")),
    }
}

#[tokio::test]
async fn a_create_whose_directory_cannot_be_made_is_56_and_creates_nothing() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    let blocker = broker.data_dir().join("topics").join("blocked");
    std::fs::write(&blocker, b"not a directory").unwrap();

    assert_eq!(code(client.create_topic("blocked", 2, BTreeMap::new()).await), 56);
    assert!(client.list_topics().await.unwrap().is_empty());
    assert_eq!(code(client.describe_topic("blocked").await), 3);

    std::fs::remove_file(&blocker).unwrap();
    client.create_topic("blocked", 2, BTreeMap::new()).await.unwrap();
    assert_eq!(client.describe_topic("blocked").await.unwrap().partitions.len(), 2);
    broker.stop().await;
}

#[tokio::test]
async fn an_add_whose_metadata_cannot_be_written_is_56_and_keeps_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    client.create_topic("stuck", 2, BTreeMap::new()).await.unwrap();
    let topic_dir = dir.path().join("topics").join("stuck");
    // The metadata is written to this temporary name first.
    let blocker = topic_dir.join("topic.json.tmp");
    std::fs::create_dir(&blocker).unwrap();

    assert_eq!(code(client.add_partitions("stuck", 4).await), 56);
    assert_eq!(client.describe_topic("stuck").await.unwrap().partitions.len(), 2);
    assert_eq!(TopicMeta::load(&topic_dir).unwrap().partitions, 2);
    assert!(!topic_dir.join("2").exists(), "no partition was started");

    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(client.add_partitions("stuck", 4).await.unwrap(), 4);
    broker.stop().await;
    let broker = TestBroker::start_in(dir.path());
    assert_eq!(broker.client().await.describe_topic("stuck").await.unwrap().partitions.len(), 4);
    broker.stop().await;
}

#[tokio::test]
async fn a_delete_that_cannot_move_the_directory_is_56_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    client.create_topic("sticky", 2, BTreeMap::new()).await.unwrap();
    client.produce("sticky", Some(1), vec![value("kept")]).await.unwrap();
    // A delete renames the topic's directory into deleted/: make that fail.
    let graveyard = dir.path().join("deleted");
    std::fs::remove_dir(&graveyard).unwrap();
    std::fs::write(&graveyard, b"not a directory").unwrap();

    assert_eq!(code(client.delete_topic("sticky").await), 56);
    let listed: Vec<(String, u32)> =
        client.list_topics().await.unwrap().into_iter().map(|t| (t.topic, t.partitions)).collect();
    assert_eq!(listed, [("sticky".to_string(), 2)], "the topic is still there");
    assert_eq!(read_partition(&client, "sticky", 1, 0).await.iter().map(text).collect::<Vec<_>>(), ["kept"]);
    let written = client.produce("sticky", Some(1), vec![value("more")]).await.unwrap();
    assert_eq!(written[0].base_offset, 1, "and takes writes where it was");

    std::fs::remove_file(&graveyard).unwrap();
    std::fs::create_dir(&graveyard).unwrap();
    client.delete_topic("sticky").await.unwrap();
    assert!(client.list_topics().await.unwrap().is_empty());
    broker.stop().await;
    let broker = TestBroker::start_in(dir.path());
    assert!(broker.client().await.list_topics().await.unwrap().is_empty(), "deleted for good");
    broker.stop().await;
}

#[tokio::test]
async fn a_partition_whose_log_cannot_be_opened_is_5_until_a_retry_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    client.create_topic("half", 2, BTreeMap::new()).await.unwrap();
    client.produce("half", Some(1), vec![value("fine")]).await.unwrap();
    broker.stop().await;
    // Partition 0's directory becomes a file: its log cannot be opened.
    let p0 = dir.path().join("topics").join("half").join("0");
    std::fs::remove_dir_all(&p0).unwrap();
    std::fs::write(&p0, b"not a directory").unwrap();

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    assert_eq!(code(client.fetch(&fetch_at("half", 0, 0)).await), 5);
    assert_eq!(code(client.describe_topic("half").await), 5);
    assert_eq!(read_partition(&client, "half", 1, 0).await.iter().map(text).collect::<Vec<_>>(), ["fine"]);
    assert_eq!(client.list_topics().await.unwrap()[0].partitions, 2);

    // The cause removed, the partition opens on a later try, no restart.
    std::fs::remove_file(&p0).unwrap();
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        match client.produce("half", Some(0), vec![value("back")]).await {
            Ok(written) => break assert_eq!(written[0].base_offset, 0),
            Err(err) => assert!(std::time::Instant::now() < deadline, "never opened again: {err}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(read_partition(&client, "half", 0, 0).await.iter().map(text).collect::<Vec<_>>(), ["back"]);
    broker.stop().await;
}

#[tokio::test]
async fn a_failed_write_is_56_and_the_partition_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    let consumer = broker.client().await;
    client
        .create_topic(
            "fragile",
            1,
            common::config(&[
                ("segment_max_bytes", ConfigValue::Int(1024)),
                ("max_message_bytes", ConfigValue::Int(1024)),
            ]),
        )
        .await
        .unwrap();
    let big = "x".repeat(600);
    client.produce("fragile", Some(0), vec![value(&big)]).await.unwrap();

    let waiting = {
        let consumer = consumer.clone();
        let request = FetchRequest { min_bytes: 1, max_wait_ms: 60_000, ..fetch_at("fragile", 0, 1) };
        tokio::spawn(async move { consumer.fetch(&request).await })
    };
    // Once this answers, the fetch sent before it on the same connection waits
    // in the partition.
    consumer.list_offsets("fragile", 0, -2).await.unwrap();
    // The next produce must roll a new segment, in a directory that is gone.
    let partition_dir = dir.path().join("topics/fragile/0");
    let kept = dir.path().join("kept");
    std::fs::rename(&partition_dir, &kept).unwrap();
    assert_eq!(code(client.produce("fragile", Some(0), vec![value(&big)]).await), 56);
    assert_eq!(read_partition(&consumer, "fragile", 0, 0).await.iter().map(text).collect::<Vec<_>>(), [big]);

    std::fs::rename(&kept, &partition_dir).unwrap();
    assert_eq!(client.produce("fragile", Some(0), vec![value("back")]).await.unwrap()[0].base_offset, 1);
    let woken = waiting.await.unwrap().unwrap();
    assert_eq!(woken.records.iter().map(text).collect::<Vec<_>>(), ["back"], "the waiting fetch was not dropped");
    broker.stop().await;
}

#[tokio::test]
async fn a_stored_batch_damaged_on_disk_is_2_to_a_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    client.create_topic("damaged", 1, BTreeMap::new()).await.unwrap();
    client.produce("damaged", Some(0), vec![value("first")]).await.unwrap();
    client.produce("damaged", Some(0), vec![value("second")]).await.unwrap();

    // The first batch's magic byte (after base offset, length and CRC).
    let segment = dir.path().join("topics/damaged/0/00000000000000000000.log");
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.write_all_at(&[0x00], 16).unwrap();

    assert_eq!(code(client.fetch(&fetch_at("damaged", 0, 0)).await), 2);
    broker.stop().await;
}

#[tokio::test]
async fn a_create_cut_short_before_its_metadata_does_not_stop_a_start() {
    let dir = tempfile::tempdir().unwrap();
    // What a create leaves when the broker dies while writing the metadata.
    let unfinished = dir.path().join("topics").join("unfinished");
    std::fs::create_dir_all(&unfinished).unwrap();
    std::fs::write(unfinished.join("topic.json.tmp"), b"{\"name\":").unwrap();

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    assert!(client.list_topics().await.unwrap().is_empty());
    assert!(!unfinished.exists(), "the leftover is removed");
    client.create_topic("unfinished", 1, BTreeMap::new()).await.unwrap();
    assert_eq!(client.produce("unfinished", Some(0), vec![value("v")]).await.unwrap()[0].base_offset, 0);
    broker.stop().await;
}
