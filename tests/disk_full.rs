//! A full disk, for real: the broker's data directory on a small tmpfs. A
//! write that does not fit is refused with KAFKA_STORAGE_ERROR (56) and the
//! operating system's reason; the partition stays up (reads, and long polls
//! waiting on it, go on), nothing refused is acknowledged or half visible, and
//! writes are accepted again once space returns. Skipped, with the reason
//! printed, where a tmpfs cannot be mounted.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{fetch_at, read_partition, text, value, TestBroker, Tmpfs};
use herald::client::ClientError;
use herald::protocol::FetchRequest;

/// The broker's error (code, message) of a request that must fail.
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (i16, String) {
    match result {
        Err(ClientError::Broker { code, message, .. }) => (code, message),
        other => panic!("expected a broker error, got {other:?}"),
    }
}

fn values(records: &[herald_actors::batch::Record]) -> Vec<String> {
    records.iter().map(text).collect()
}

#[tokio::test]
async fn a_write_that_does_not_fit_is_56_and_the_partition_serves_on_and_takes_writes_when_space_returns() {
    let Some(disk) = Tmpfs::mount(4 << 20) else { return };
    let data = disk.path().join("data");
    let broker = TestBroker::start_in(&data);
    let client = broker.client().await;
    let consumer = broker.client().await;
    client.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..3 {
        let v = format!("acked-{i}-{}", "a".repeat(1000));
        client.produce("t", Some(0), vec![value(&v)]).await.unwrap();
        acked.push(v);
    }
    // A consumer waits at the end of the partition.
    let mut parked = {
        let consumer = consumer.clone();
        let request = FetchRequest { min_bytes: 1, max_wait_ms: 60_000, ..fetch_at("t", 0, 3) };
        tokio::spawn(async move { consumer.fetch(&request).await })
    };
    consumer.list_offsets("t", 0, -2).await.unwrap();

    let filler = disk.path().join("filler");
    disk.fill(&filler);
    // Part of this batch fits in the segment's last page: a short write, undone.
    for attempt in 0..3 {
        let (code, message) = refused(client.produce("t", Some(0), vec![value("r".repeat(2000))]).await);
        assert_eq!(code, 56, "attempt {attempt}: {message}");
        assert!(message.contains("No space left on device"), "the OS reason: {message}");
    }
    // The partition did not restart: the long poll is still waiting, and
    // describe (after the refusals on the partition's mailbox) answers.
    let described = consumer.describe_topic("t").await.unwrap();
    assert_eq!((described.partitions[0].log_end_offset, described.partitions[0].high_watermark), (3, 3));
    if let Ok(answer) = tokio::time::timeout(Duration::from_millis(200), &mut parked).await {
        panic!("the long poll was answered: {answer:?}");
    }
    assert_eq!(values(&read_partition(&consumer, "t", 0, 0).await), acked, "reads go on; nothing refused is visible");

    std::fs::remove_file(&filler).unwrap();
    let written = client.produce("t", Some(0), vec![value("after")]).await.unwrap();
    assert_eq!(written[0].base_offset, 3, "right after the last acknowledged record");
    let woken = parked.await.unwrap().unwrap();
    assert_eq!(values(&woken.records), ["after"], "the waiting consumer gets it");
    broker.stop().await;

    let broker = TestBroker::start_in(&data);
    let client = broker.client().await;
    acked.push("after".into());
    assert_eq!(values(&read_partition(&client, "t", 0, 0).await), acked, "and so after a restart");
    broker.stop().await;
}

#[tokio::test]
async fn an_index_entry_that_does_not_fit_refuses_nothing_and_the_index_is_rebuilt_after_a_restart() {
    let Some(disk) = Tmpfs::mount(4 << 20) else { return };
    let data = disk.path().join("data");
    let broker = TestBroker::start_in(&data);
    let client = broker.client().await;
    client.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    // Over index_interval_bytes (4096): the next batch earns the segment's
    // first index entry, whose file has no page yet. 5 KB of log leaves room
    // for that next batch in its second page.
    let first = format!("first-{}", "f".repeat(5000));
    client.produce("t", Some(0), vec![value(&first)]).await.unwrap();

    let filler = disk.path().join("filler");
    disk.fill(&filler);
    // Index entries stay in memory until the segment is sealed or the broker
    // stops, so the batch is accepted (before, its entry's write refused it).
    let written = client.produce("t", Some(0), vec![value("second")]).await.unwrap();
    assert_eq!(written[0].base_offset, 1);
    assert_eq!(values(&read_partition(&client, "t", 0, 0).await), [first.as_str(), "second"]);
    // The clean stop cannot write the index either: it is left out, and the
    // next start rebuilds it from the log.
    broker.stop().await;
    std::fs::remove_file(&filler).unwrap();

    let broker = TestBroker::start_in(&data);
    let client = broker.client().await;
    assert_eq!(values(&read_partition(&client, "t", 0, 0).await), [first.as_str(), "second"]);
    assert_eq!(client.list_offsets("t", 0, 0).await.unwrap(), 0, "a search by time finds the first record");
    let written = client.produce("t", Some(0), vec![value("after")]).await.unwrap();
    assert_eq!(written[0].base_offset, 2, "right after the last acknowledged record");
    broker.stop().await;
}
