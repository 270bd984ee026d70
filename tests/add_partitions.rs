//! `add_partitions` under concurrency: adds to one topic, and an add racing
//! a delete, come out as if they had run one after another, and what is on
//! disk agrees with what the clients were told, across a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::TestBroker;
use futures::future::join_all;
use herald::client::{Client, ClientError};
use herald_actors::topic::TopicMeta;

/// A call's outcome: the new count, or the broker's error code.
fn outcome(result: Result<u32, ClientError>) -> Result<u32, i16> {
    result.map_err(|err| err.code().unwrap_or_else(|| panic!("expected a broker error, got {err}")))
}

/// The partition directories of a topic on disk, by number.
fn partition_dirs(data_dir: &Path, topic: &str) -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("topics").join(topic)) else { return BTreeSet::new() };
    entries
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_str().unwrap().parse().expect("a partition directory is a number"))
        .collect()
}

/// The count in the topic's stored metadata.
fn stored_count(data_dir: &Path, topic: &str) -> u32 {
    TopicMeta::load(&data_dir.join("topics").join(topic)).expect("the topic's metadata").partitions
}

async fn count(client: &Client, topic: &str) -> u32 {
    client.describe_topic(topic).await.unwrap().partitions.len() as u32
}

#[tokio::test]
async fn pipelined_adds_on_one_connection_apply_in_order() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("grow", 2, BTreeMap::new()).await.unwrap();

    // Sent in this order on one connection, so they reach the topic in this
    // order: the first (20) wins, and every smaller total after it is refused.
    let totals: Vec<i64> = (3..=20).rev().collect();
    let answers = join_all(totals.iter().map(|&t| client.add_partitions("grow", t))).await;
    let outcomes: Vec<Result<u32, i16>> = answers.into_iter().map(outcome).collect();
    let mut expected = vec![Ok(20)];
    expected.extend(std::iter::repeat_n(Err(37), totals.len() - 1));
    assert_eq!(outcomes, expected);

    assert_eq!(count(&client, "grow").await, 20);
    assert_eq!(stored_count(broker.data_dir(), "grow"), 20);
    assert_eq!(partition_dirs(broker.data_dir(), "grow"), (0..20).collect());
    broker.stop().await;
}

#[tokio::test]
async fn concurrent_adds_from_many_connections_are_serializable_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let admin = broker.client().await;
    admin.create_topic("contested", 2, BTreeMap::new()).await.unwrap();

    // Eight connections, each pipelining five adds; the totals interleave so
    // that many calls pass each other.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(broker.client().await);
    }
    let calls = clients.iter().enumerate().map(|(c, client)| async move {
        let totals: Vec<i64> = (0..5).map(|i| 3 + ((c as i64 * 7 + i * 11) % 40)).collect();
        let answers = join_all(totals.iter().map(|&t| client.add_partitions("contested", t))).await;
        totals.into_iter().zip(answers.into_iter().map(outcome)).collect::<Vec<_>>()
    });
    let results: Vec<(i64, Result<u32, i16>)> = join_all(calls).await.into_iter().flatten().collect();

    let mut successes = Vec::new();
    for (total, result) in &results {
        match result {
            Ok(n) => {
                assert_eq!(i64::from(*n), *total, "a success reports the total asked");
                successes.push(*n);
            }
            Err(code) => assert_eq!(*code, 37, "total {total}"),
        }
    }
    // As if serial: each success grew the topic past every earlier one, so no
    // two report the same count, and every refusal asked for no more than the
    // final count.
    let unique: BTreeSet<u32> = successes.iter().copied().collect();
    assert_eq!(unique.len(), successes.len(), "two adds both grew the topic to the same count: {results:?}");
    let last = *unique.last().expect("at least one add succeeds");
    for (total, result) in &results {
        if result.is_err() {
            assert!(*total <= i64::from(last), "{total} was refused, yet the topic only reached {last}");
        }
    }

    assert_eq!(count(&admin, "contested").await, last);
    assert_eq!(stored_count(dir.path(), "contested"), last, "the stored metadata");
    assert_eq!(partition_dirs(dir.path(), "contested"), (0..last).collect());
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    assert_eq!(count(&client, "contested").await, last, "after a restart");
    assert_eq!(partition_dirs(dir.path(), "contested"), (0..last).collect());
    broker.stop().await;
}

#[tokio::test]
async fn an_add_racing_a_delete_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let deleter = broker.client().await;

    for round in 0..20 {
        // A fresh connection each round: none remembers an earlier "race".
        let adder = broker.client().await;
        adder.create_topic("race", 1, BTreeMap::new()).await.unwrap();
        // The adder knows the topic (its connection has looked it up).
        assert_eq!(count(&adder, "race").await, 1);
        // Alternately on the same connection (add first, then delete) and on
        // two connections at once.
        let (added, deleted) = if round % 2 == 0 {
            futures::join!(adder.add_partitions("race", 8), adder.delete_topic("race"))
        } else {
            futures::join!(adder.add_partitions("race", 8), deleter.delete_topic("race"))
        };
        deleted.unwrap();
        let added = outcome(added);
        assert!(matches!(added, Ok(8) | Err(3)), "round {round}: {added:?}");
        assert!(adder.list_topics().await.unwrap().is_empty(), "round {round}");
        assert_eq!(outcome(adder.add_partitions("race", 9).await), Err(3), "round {round}: an add after the delete");
        assert!(!dir.path().join("topics").join("race").exists(), "round {round}: the topic's directory is back");
    }
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    assert!(client.list_topics().await.unwrap().is_empty(), "a deleted topic stays deleted");
    broker.stop().await;
}
