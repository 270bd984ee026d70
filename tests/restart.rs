//! A clean stop and a start on the same data directory: every topic, setting
//! and record is back at the same offsets, and producing carries on.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{config, fetch_at, keyed, read_partition, value, TestBroker};
use herald::client::Client;
use herald::protocol::{ConfigValue, DescribeTopicResponse, PartitionDescription, WireRecord};
use herald_actors::batch::Record;

/// A topic as describe reports it: name, settings, partitions.
/// Name, id, settings and partitions.
type Described = (String, String, BTreeMap<String, ConfigValue>, Vec<PartitionDescription>);

/// Everything a client can see of a broker's data.
#[derive(Debug, PartialEq)]
struct Snapshot {
    topics: Vec<(String, u32)>,
    described: Vec<Described>,
    records: BTreeMap<(String, u32), Vec<Record>>,
}

async fn snapshot(client: &Client) -> Snapshot {
    let topics: Vec<(String, u32)> =
        client.list_topics().await.unwrap().into_iter().map(|t| (t.topic, t.partitions)).collect();
    let mut described = Vec::new();
    let mut records = BTreeMap::new();
    for (topic, partitions) in &topics {
        let DescribeTopicResponse { topic: name, topic_id, config, partitions: states } =
            client.describe_topic(topic).await.unwrap();
        described.push((name, topic_id, config, states));
        for partition in 0..*partitions {
            records.insert((topic.clone(), partition), read_partition(client, topic, partition, 0).await);
        }
    }
    Snapshot { topics, described, records }
}

/// Records with everything a record can carry.
fn rich_records(tag: &str, n: usize) -> Vec<WireRecord> {
    (0..n)
        .map(|i| WireRecord {
            key: (i % 2 == 0).then(|| Bytes::from(format!("{tag}-key-{i}"))),
            value: (i % 5 != 4).then(|| Bytes::from(format!("{tag}-value-{i}"))),
            headers: vec![("h".into(), Bytes::from(format!("{i}")))],
            timestamp: Some(1_700_000_000_000 + i as i64),
        })
        .collect()
}

#[tokio::test]
async fn a_clean_restart_keeps_every_topic_setting_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;

    client.create_topic("alpha", 3, BTreeMap::new()).await.unwrap();
    let beta_config = config(&[
        ("message_timestamp_type", ConfigValue::Str("LogAppendTime".into())),
        ("retention_ms", ConfigValue::Int(-1)),
        ("max_message_bytes", ConfigValue::Int(4096)),
    ]);
    client.create_topic("beta", 1, beta_config).await.unwrap();
    // Small segments: the log is several segments long, with sparse indexes.
    client
        .create_topic(
            "gamma",
            2,
            config(&[("segment_max_bytes", ConfigValue::Int(1024)), ("max_message_bytes", ConfigValue::Int(1024))]),
        )
        .await
        .unwrap();
    client.add_partitions("gamma", 4).await.unwrap();
    client.create_topic("empty", 2, BTreeMap::new()).await.unwrap();
    client.create_topic("doomed", 1, BTreeMap::new()).await.unwrap();
    client.produce("doomed", Some(0), vec![value("gone")]).await.unwrap();
    client.delete_topic("doomed").await.unwrap();

    for round in 0..5 {
        for partition in 0..3 {
            client.produce("alpha", Some(partition), rich_records(&format!("a{round}p{partition}"), 7)).await.unwrap();
        }
        client.produce("beta", Some(0), vec![value(format!("beta-{round}"))]).await.unwrap();
        for partition in 0..4 {
            let records = (0..6).map(|i| value(format!("g{round}-{partition}-{i}-{}", "x".repeat(40)))).collect();
            client.produce("gamma", Some(partition), records).await.unwrap();
        }
    }
    client.produce("alpha", None, (0..30).map(|i| keyed(format!("k{i}"), "routed")).collect()).await.unwrap();

    let mut before = snapshot(&client).await;
    assert!(before.described[3].3.iter().all(|p| p.segments > 1), "gamma rolled segments: {:?}", before.described[3]);
    let gamma_1_at_17 = before.records[&("gamma".to_string(), 1)][17].clone();
    broker.stop().await;
    assert!(dir.path().join("clean_shutdown").exists(), "a clean stop leaves its marker");

    // Twice: the state a restart leaves must itself survive a restart.
    for restart in 0..2 {
        let broker = TestBroker::start_in(dir.path());
        let client = broker.client().await;
        assert_eq!(snapshot(&client).await, before, "everything is back as it was (restart {restart})");

        // Indexes work after the reopen: a fetch from the middle of gamma's
        // segments finds its record.
        let middle = client.fetch(&fetch_at("gamma", 1, 17)).await.unwrap();
        assert_eq!(middle.records[0], gamma_1_at_17);

        // Producing continues at each partition's end.
        for (topic, partitions) in [("alpha", 3u32), ("beta", 1), ("gamma", 4), ("empty", 2)] {
            for partition in 0..partitions {
                let end = before.records[&(topic.to_string(), partition)].len() as i64;
                let written = client.produce(topic, Some(partition), vec![value(format!("after-{restart}"))]).await;
                assert_eq!(written.unwrap()[0].base_offset, end, "{topic}/{partition} after restart {restart}");
            }
        }
        assert_eq!(client.describe_topic("doomed").await.unwrap_err().code(), Some(3), "deleted stays deleted");
        before = snapshot(&client).await;
        broker.stop().await;
    }
}

#[tokio::test]
async fn the_keyless_rotation_and_new_topics_work_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    client.create_topic("spin", 2, BTreeMap::new()).await.unwrap();
    client.produce("spin", None, vec![value("one")]).await.unwrap();
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    // Keyless requests still alternate over both partitions.
    let mut landed = Vec::new();
    for i in 0..4 {
        landed.push(client.produce("spin", None, vec![value(format!("{i}"))]).await.unwrap()[0].partition);
    }
    landed.sort_unstable();
    assert_eq!(landed, [0, 0, 1, 1]);
    // Admin works on the reopened directory.
    client.create_topic("later", 1, BTreeMap::new()).await.unwrap();
    assert_eq!(client.list_topics().await.unwrap().len(), 2);
    assert_eq!(client.produce("later", Some(0), vec![value("x")]).await.unwrap()[0].base_offset, 0);
    broker.stop().await;
}
