//! One damaged topic never stops a broker, and a create never leaves half a
//! topic: a topic whose metadata cannot be read at start is quarantined (listed
//! as damaged with the reason, requests to it answered KAFKA_STORAGE_ERROR 56
//! naming the problem, deletable), the others serve; a create that fails
//! midway leaves nothing in `topics/`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{herald_bin, read_partition, text, value, TestBroker, Tmpfs};
use herald::client::{Client, ClientError};
use herald::protocol::TopicState;

/// The broker's error (code, message) of a request that must fail.
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (i16, String) {
    match result {
        Err(ClientError::Broker { code, message, .. }) => (code, message),
        other => panic!("expected a broker error, got {other:?}"),
    }
}

/// Stops a broker with topics `good` and `bad` (one record each) on `dir`.
async fn two_topics(dir: &std::path::Path) {
    let broker = TestBroker::start_in(dir);
    let client = broker.client().await;
    for name in ["good", "bad"] {
        client.create_topic(name, 2, BTreeMap::new()).await.unwrap();
        client.produce(name, Some(0), vec![value(format!("{name} record"))]).await.unwrap();
    }
    broker.stop().await;
}

/// Every request naming `topic` is 56 with a message naming `problem`.
async fn every_request_is_56(client: &Client, topic: &str, problem: &str) {
    let answers = [
        refused(client.produce(topic, Some(0), vec![value("x")]).await),
        refused(client.fetch(&common::fetch_at(topic, 0, 0)).await),
        refused(client.describe_topic(topic).await),
        refused(client.list_offsets(topic, 0, -1).await),
        refused(client.add_partitions(topic, 3).await),
    ];
    for (code, message) in answers {
        assert_eq!(code, 56, "{message}");
        assert!(message.contains("damaged") && message.contains(problem), "{message}");
    }
}

#[tokio::test]
async fn a_topic_with_unreadable_metadata_is_quarantined_and_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    two_topics(dir.path()).await;
    let bad = dir.path().join("topics/bad");
    std::fs::write(bad.join("topic.json"), b"{\"name\": \"bad\", \"partit").unwrap();

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    let listed = client.list_topics().await.unwrap();
    let summary: Vec<_> = listed.iter().map(|t| (t.topic.as_str(), t.partitions, t.state)).collect();
    assert_eq!(summary, [("bad", 2, TopicState::Damaged), ("good", 2, TopicState::Ok)]);
    let error = listed[0].error.as_deref().unwrap();
    assert!(error.contains("topic.json"), "{error}");
    assert_eq!(listed[1].error, None);

    every_request_is_56(&client, "bad", "topic.json").await;
    assert_eq!(refused(client.create_topic("bad", 1, BTreeMap::new()).await).0, 36, "the name is taken");
    let good = read_partition(&client, "good", 0, 0).await;
    assert_eq!(good.iter().map(text).collect::<Vec<_>>(), ["good record"]);
    client.produce("good", Some(1), vec![value("more")]).await.unwrap();

    // The CLI shows it too.
    let out = Command::new(herald_bin())
        .args(["topic", "list", "--broker", &broker.addr().to_string()])
        .output()
        .expect("run herald topic list");
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.starts_with("bad")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("damaged") && row.contains("topic.json"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("good") && l.contains("ok")), "{table}");

    // Deleting it is how an operator clears it; the name is free again.
    client.delete_topic("bad").await.unwrap();
    assert!(!bad.exists());
    client.create_topic("bad", 1, BTreeMap::new()).await.unwrap();
    client.produce("bad", Some(0), vec![value("new")]).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn a_topic_whose_metadata_is_missing_or_names_another_topic_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    two_topics(dir.path()).await;
    std::fs::remove_file(dir.path().join("topics/bad/topic.json")).unwrap();
    // A copy of good's metadata in a directory of another name.
    let copy = dir.path().join("topics/copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(dir.path().join("topics/good/topic.json"), copy.join("topic.json")).unwrap();

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    let listed = client.list_topics().await.unwrap();
    let states: Vec<_> = listed.iter().map(|t| (t.topic.as_str(), t.state)).collect();
    assert_eq!(states, [("bad", TopicState::Damaged), ("copy", TopicState::Damaged), ("good", TopicState::Ok)]);
    assert!(listed[0].error.as_deref().unwrap().contains("missing"), "{:?}", listed[0]);
    assert!(listed[1].error.as_deref().unwrap().contains("good"), "{:?}", listed[1]);
    every_request_is_56(&client, "bad", "missing").await;
    every_request_is_56(&client, "copy", "good").await;
    assert_eq!(read_partition(&client, "good", 0, 0).await.len(), 1);
    broker.stop().await;

    // Quarantined, not removed: what is left of it is still on disk.
    assert!(dir.path().join("topics/bad/0").exists());
}

#[tokio::test]
async fn a_create_that_fails_midway_leaves_nothing_behind() {
    let Some(disk) = Tmpfs::mount(2 << 20) else { return };
    let data = disk.path().join("data");
    let broker = TestBroker::start_in(&data);
    let client = broker.client().await;
    client.create_topic("before", 1, BTreeMap::new()).await.unwrap();
    let filler = disk.path().join("filler");
    disk.fill(&filler);

    let (code, message) = refused(client.create_topic("full", 2, BTreeMap::new()).await);
    assert_eq!(code, 56, "{message}");
    assert!(message.contains("No space left on device"), "{message}");
    let names: Vec<String> = std::fs::read_dir(data.join("topics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["before"], "nothing of the failed create is in topics/");
    assert_eq!(refused(client.describe_topic("full").await).0, 3);

    std::fs::remove_file(&filler).unwrap();
    client.create_topic("full", 2, BTreeMap::new()).await.unwrap();
    client.produce("full", Some(1), vec![value("fits")]).await.unwrap();
    broker.stop().await;
    let broker = TestBroker::start_in(&data);
    let client = broker.client().await;
    let listed: Vec<_> = client.list_topics().await.unwrap().into_iter().map(|t| (t.topic, t.state)).collect();
    assert_eq!(listed, [("before".to_string(), TopicState::Ok), ("full".to_string(), TopicState::Ok)]);
    broker.stop().await;
}
