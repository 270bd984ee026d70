//! Fetch as a long poll: it waits up to `max_wait_ms` for `min_bytes`, and is
//! answered as soon as a produce (on any connection) makes them available.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{value, TestBroker};
use futures::future::join_all;
use herald::client::Client;
use herald::protocol::FetchRequest;

fn long_poll(topic: &str, partition: u32, offset: i64, min_bytes: u64, max_wait_ms: u64) -> FetchRequest {
    FetchRequest {
        topic: topic.into(),
        partition: partition.into(),
        offset,
        max_bytes: 1 << 20,
        min_bytes,
        max_wait_ms,
    }
}

/// Returns once every request sent before it on `client`'s connection to this
/// partition has reached the partition: requests of one connection are
/// dispatched in order, and one partition handles its messages in order. A
/// long poll sent before it is therefore parked in the partition by then.
async fn barrier(client: &Client, topic: &str, partition: u32) {
    client.list_offsets(topic, partition, -2).await.expect("list_offsets barrier");
}

#[tokio::test]
async fn a_fetch_at_the_log_end_waits_max_wait_then_returns_empty() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("idle", 1, BTreeMap::new()).await.unwrap();
    client.produce("idle", Some(0), vec![value("already here")]).await.unwrap();

    let started = Instant::now();
    let fetched = client.fetch(&long_poll("idle", 0, 1, 1, 300)).await.unwrap();
    let waited = started.elapsed();
    assert!(fetched.records.is_empty(), "{fetched:?}");
    assert_eq!(fetched.high_watermark, 1);
    assert!(waited >= Duration::from_millis(250), "returned after {waited:?}, before max_wait_ms");
    assert!(waited < Duration::from_secs(5), "returned after {waited:?}");

    // With data available, the same fetch does not wait at all.
    let started = Instant::now();
    let fetched = client.fetch(&long_poll("idle", 0, 0, 1, 10_000)).await.unwrap();
    assert_eq!(fetched.records.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    broker.stop().await;
}

#[tokio::test]
async fn a_waiting_fetch_returns_as_soon_as_another_connection_produces() {
    let broker = TestBroker::start();
    let consumer = broker.client().await;
    let producer = broker.client().await;
    consumer.create_topic("wake", 2, BTreeMap::new()).await.unwrap();

    let started = Instant::now();
    let waiting = {
        let consumer = consumer.clone();
        tokio::spawn(async move { consumer.fetch(&long_poll("wake", 1, 0, 1, 10_000)).await })
    };
    barrier(&consumer, "wake", 1).await;
    assert!(!waiting.is_finished(), "nothing to read yet");

    // A produce to another partition does not answer it.
    producer.produce("wake", Some(0), vec![value("elsewhere")]).await.unwrap();
    producer.produce("wake", Some(1), vec![value("hello")]).await.unwrap();
    let fetched = waiting.await.unwrap().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(fetched.records.iter().map(common::text).collect::<Vec<_>>(), ["hello"]);
    assert_eq!((fetched.records[0].offset, fetched.high_watermark), (0, 1));
    assert!(elapsed < Duration::from_secs(5), "the fetch waited {elapsed:?} for a record that was there");
    broker.stop().await;
}

#[tokio::test]
async fn min_bytes_holds_the_fetch_until_enough_has_arrived() {
    let broker = TestBroker::start();
    let consumer = broker.client().await;
    let producer = broker.client().await;
    consumer.create_topic("fill", 1, BTreeMap::new()).await.unwrap();

    let started = Instant::now();
    let waiting = {
        let consumer = consumer.clone();
        tokio::spawn(async move { consumer.fetch(&long_poll("fill", 0, 0, 2000, 10_000)).await })
    };
    barrier(&consumer, "fill", 0).await;

    // About a hundred bytes: fewer than min_bytes, so the fetch keeps waiting.
    producer.produce("fill", Some(0), vec![value("small")]).await.unwrap();
    producer.produce("fill", Some(0), vec![value("L".repeat(3000))]).await.unwrap();
    let fetched = waiting.await.unwrap().unwrap();
    assert_eq!(fetched.records.len(), 2, "answered only once both batches were there");
    assert_eq!(common::text(&fetched.records[0]), "small");
    assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
    broker.stop().await;
}

#[tokio::test]
async fn one_produce_answers_every_fetch_waiting_on_the_partition() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("fanout", 1, BTreeMap::new()).await.unwrap();

    let mut consumers = Vec::new();
    for _ in 0..4 {
        consumers.push(Client::connect(broker.addr(), "consumer").await.unwrap());
    }
    let started = Instant::now();
    let waiting: Vec<_> = consumers
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move { c.fetch(&long_poll("fanout", 0, 0, 1, 10_000)).await })
        })
        .collect();
    for c in &consumers {
        barrier(c, "fanout", 0).await;
    }
    admin.produce("fanout", Some(0), vec![value("for everyone")]).await.unwrap();
    for fetched in join_all(waiting).await {
        let fetched = fetched.unwrap().unwrap();
        assert_eq!(fetched.records.iter().map(common::text).collect::<Vec<_>>(), ["for everyone"]);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_refuses_waiting_fetches_instead_of_waiting_for_them() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("closing", 1, BTreeMap::new()).await.unwrap();

    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.fetch(&long_poll("closing", 0, 0, 1, 60_000)).await })
    };
    barrier(&client, "closing", 0).await;

    let started = Instant::now();
    broker.stop().await;
    let refused = waiting.await.unwrap().expect_err("a parked fetch is refused at shutdown");
    assert_eq!(refused.code(), Some(herald_actors::error::ErrorCode::BROKER_SHUTTING_DOWN.code()), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_waiting_fetch_gets_unknown_topic_when_its_topic_is_deleted() {
    let broker = TestBroker::start();
    let consumer = broker.client().await;
    let admin = broker.client().await;
    consumer.create_topic("doomed", 1, BTreeMap::new()).await.unwrap();

    let started = Instant::now();
    let waiting = {
        let consumer = consumer.clone();
        tokio::spawn(async move { consumer.fetch(&long_poll("doomed", 0, 0, 1, 60_000)).await })
    };
    barrier(&consumer, "doomed", 0).await;
    admin.delete_topic("doomed").await.unwrap();
    let answer = waiting.await.unwrap();
    assert_eq!(answer.map(|f| f.records).unwrap_err().code(), Some(3));
    assert!(started.elapsed() < Duration::from_secs(5), "answered at the delete, not after max_wait_ms");
    broker.stop().await;
}
