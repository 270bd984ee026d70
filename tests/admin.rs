//! Admin operations against a real broker: create, list, describe, delete,
//! add partitions, and the exact error codes clients rely on.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{config, fetch_at, read_partition, text, value, TestBroker};
use herald::client::{Client, ClientError};
use herald::protocol::{ConfigValue, WireRecord};
use herald_actors::batch::{self, Record};

/// The broker's error code of a failed call.
fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> i16 {
    match result {
        Ok(ok) => panic!("expected an error, got {ok:?}"),
        Err(err) => err.code().unwrap_or_else(|| panic!("expected a broker error, got {err}")),
    }
}

fn no_config() -> BTreeMap<String, ConfigValue> {
    BTreeMap::new()
}

#[tokio::test]
async fn create_list_describe_delete_round_trip() {
    let broker = TestBroker::start();
    let client = broker.client().await;

    assert!(client.list_topics().await.unwrap().is_empty());
    client.create_topic("orders", 3, no_config()).await.unwrap();
    client.create_topic("audit", 1, config(&[("retention_ms", ConfigValue::Int(-1))])).await.unwrap();

    let listed: Vec<(String, u32)> =
        client.list_topics().await.unwrap().into_iter().map(|t| (t.topic, t.partitions)).collect();
    assert_eq!(listed, [("audit".to_string(), 1), ("orders".to_string(), 3)], "sorted by name");

    let orders = client.describe_topic("orders").await.unwrap();
    assert_eq!(orders.topic, "orders");
    assert_eq!(orders.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), [0, 1, 2]);
    for p in &orders.partitions {
        assert_eq!((p.log_start_offset, p.log_end_offset, p.high_watermark, p.size_bytes), (0, 0, 0, 0), "{p:?}");
        assert_eq!(p.segments, 1, "{p:?}");
    }
    // The effective settings: every per-topic key, the broker's defaults.
    let keys: Vec<&str> = orders.config.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "cleanup_policy",
            "delete_retention_ms",
            "max_message_bytes",
            "message_timestamp_type",
            "min_cleanable_dirty_ratio",
            "min_compaction_lag_ms",
            "min_insync_replicas",
            "retention_bytes",
            "retention_ms",
            "segment_max_bytes",
            "segment_ms",
            "unclean_leader_election_enable"
        ]
    );
    assert_eq!(orders.config["message_timestamp_type"], ConfigValue::Str("CreateTime".into()));
    assert_eq!(orders.config["retention_ms"], ConfigValue::Int(604_800_000));
    let audit = client.describe_topic("audit").await.unwrap();
    assert_eq!(audit.config["retention_ms"], ConfigValue::Int(-1), "an override is reported");

    client.delete_topic("orders").await.unwrap();
    let listed: Vec<String> = client.list_topics().await.unwrap().into_iter().map(|t| t.topic).collect();
    assert_eq!(listed, ["audit"]);
    assert_eq!(code(client.describe_topic("orders").await), 3);
    assert!(
        !broker.data_dir().join("topics").join("orders").exists(),
        "a deleted topic's directory is gone once the delete is acknowledged"
    );
    broker.stop().await;
}

#[tokio::test]
async fn describe_reports_each_partitions_log_bounds_and_size() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("sized", 2, no_config()).await.unwrap();

    let records: Vec<WireRecord> =
        (0..3).map(|i| WireRecord { timestamp: Some(1_700_000_000_000 + i), ..value(format!("record-{i}")) }).collect();
    client.produce("sized", Some(0), records.clone()).await.unwrap();
    client.produce("sized", Some(0), records.clone()).await.unwrap();

    // The log stores each batch exactly as encoded: its size is predictable.
    let as_stored: Vec<Record> = records
        .iter()
        .map(|w| Record {
            key: w.key.clone(),
            value: w.value.clone(),
            headers: w.headers.clone(),
            timestamp: w.timestamp.unwrap(),
            offset: 0,
        })
        .collect();
    let batch_bytes = batch::encode(&as_stored).unwrap().len() as u64;

    let described = client.describe_topic("sized").await.unwrap();
    let p0 = &described.partitions[0];
    assert_eq!((p0.partition, p0.log_start_offset, p0.log_end_offset, p0.high_watermark), (0, 0, 6, 6));
    assert_eq!(p0.size_bytes, 2 * batch_bytes);
    assert_eq!(p0.segments, 1);
    let p1 = &described.partitions[1];
    assert_eq!((p1.partition, p1.log_start_offset, p1.log_end_offset, p1.size_bytes), (1, 0, 0, 0));
    broker.stop().await;
}

#[tokio::test]
async fn create_errors_have_exact_codes_and_change_nothing() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("taken", 2, no_config()).await.unwrap();

    // TOPIC_ALREADY_EXISTS, whatever the partition count asked.
    assert_eq!(code(client.create_topic("taken", 2, no_config()).await), 36);
    assert_eq!(code(client.create_topic("taken", 5, no_config()).await), 36);

    // INVALID_TOPIC_EXCEPTION.
    let too_long = "x".repeat(250);
    for name in ["", ".", "..", "a/b", "has space", "ümlaut", "tab\t", too_long.as_str()] {
        assert_eq!(code(client.create_topic(name, 1, no_config()).await), 17, "{name:?}");
    }
    // The limits themselves are fine.
    client.create_topic(&"y".repeat(249), 1, no_config()).await.unwrap();
    client.create_topic("a.b_c-D9", 1, no_config()).await.unwrap();

    // INVALID_PARTITIONS.
    for partitions in [0, -1, 10_001] {
        assert_eq!(code(client.create_topic("parts", partitions, no_config()).await), 37, "{partitions}");
    }

    // INVALID_CONFIG: an unknown key, a wrong type, an out-of-range value.
    for (key, value) in [
        ("colour", ConfigValue::Int(1)),
        ("retention.ms", ConfigValue::Int(1000)),
        ("segment_ms", ConfigValue::Str("soon".into())),
        ("retention_ms", ConfigValue::Int(0)),
        ("segment_max_bytes", ConfigValue::Int(10)),
        ("message_timestamp_type", ConfigValue::Str("WallClock".into())),
        ("max_message_bytes", ConfigValue::Int(0)),
    ] {
        let refused = client.create_topic("configured", 1, config(&[(key, value.clone())])).await;
        assert_eq!(code(refused), 40, "{key} = {value:?}");
    }
    // Checked against the broker's frame limit (16 MiB by default), as its own
    // [log] settings are: a batch this large could never arrive.
    let too_large =
        [("max_message_bytes", ConfigValue::Int(16 << 20)), ("segment_max_bytes", ConfigValue::Int(32 << 20))];
    let refused = client.create_topic("configured", 1, config(&too_large)).await.unwrap_err();
    assert_eq!(refused.code(), Some(40));
    assert!(refused.to_string().contains("max_frame_bytes"), "{refused}");

    let names: Vec<String> = client.list_topics().await.unwrap().into_iter().map(|t| t.topic).collect();
    assert_eq!(names, ["a.b_c-D9", "taken", "y".repeat(249).as_str()], "no refused topic was created");
    assert_eq!(client.describe_topic("taken").await.unwrap().partitions.len(), 2, "unchanged by the duplicates");
    broker.stop().await;
}

#[tokio::test]
async fn unknown_topics_and_partitions_are_code_3() {
    let broker = TestBroker::start();
    let client = broker.client().await;

    assert_eq!(code(client.describe_topic("ghost").await), 3);
    assert_eq!(code(client.delete_topic("ghost").await), 3);
    assert_eq!(code(client.add_partitions("ghost", 2).await), 3);
    assert_eq!(code(client.produce("ghost", Some(0), vec![value("v")]).await), 3);
    assert_eq!(code(client.produce("ghost", None, vec![value("v")]).await), 3);
    assert_eq!(code(client.fetch(&fetch_at("ghost", 0, 0)).await), 3);
    assert_eq!(code(client.list_offsets("ghost", 0, -1).await), 3);

    client.create_topic("real", 2, no_config()).await.unwrap();
    assert_eq!(code(client.produce("real", Some(2), vec![value("v")]).await), 3);
    assert_eq!(code(client.fetch(&fetch_at("real", 2, 0)).await), 3);
    let negative = herald::protocol::FetchRequest { partition: -1, ..fetch_at("real", 0, 0) };
    assert_eq!(code(client.fetch(&negative).await), 3, "a negative partition");
    assert_eq!(code(client.list_offsets("real", 7, -2).await), 3);
    broker.stop().await;
}

#[tokio::test]
async fn add_partitions_grows_and_new_partitions_are_usable() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("growing", 2, no_config()).await.unwrap();
    client.produce("growing", Some(1), vec![value("before")]).await.unwrap();

    assert_eq!(client.add_partitions("growing", 4).await.unwrap(), 4);
    let described = client.describe_topic("growing").await.unwrap();
    assert_eq!(described.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(client.list_topics().await.unwrap()[0].partitions, 4);
    assert_eq!(described.partitions[1].log_end_offset, 1, "existing partitions keep their data");

    // The new partitions take writes and serve reads.
    for partition in [2, 3] {
        let written = client.produce("growing", Some(partition), vec![value("new")]).await.unwrap();
        assert_eq!((written[0].partition, written[0].base_offset), (partition, 0));
        let read = read_partition(&client, "growing", partition, 0).await;
        assert_eq!(read.iter().map(text).collect::<Vec<_>>(), ["new"]);
    }

    // The count only ever grows.
    assert_eq!(code(client.add_partitions("growing", 4).await), 37);
    assert_eq!(code(client.add_partitions("growing", 3).await), 37);
    assert_eq!(code(client.add_partitions("growing", 0).await), 37);
    assert_eq!(client.describe_topic("growing").await.unwrap().partitions.len(), 4);
    broker.stop().await;
}

#[tokio::test]
async fn a_deleted_topic_can_be_recreated_empty() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    // Another connection that used the topic before it was deleted.
    let bystander = broker.client().await;

    client.create_topic("phoenix", 2, config(&[("retention_bytes", ConfigValue::Int(1 << 20))])).await.unwrap();
    for _ in 0..5 {
        client.produce("phoenix", Some(0), vec![value("old"), value("old")]).await.unwrap();
    }
    assert_eq!(bystander.describe_topic("phoenix").await.unwrap().partitions[0].log_end_offset, 10);

    client.delete_topic("phoenix").await.unwrap();
    assert_eq!(code(bystander.produce("phoenix", Some(0), vec![value("lost")]).await), 3);
    client.create_topic("phoenix", 1, no_config()).await.unwrap();

    let described = bystander.describe_topic("phoenix").await.unwrap();
    assert_eq!(described.partitions.len(), 1, "the new topic's partition count");
    assert_eq!(described.config["retention_bytes"], ConfigValue::Int(-1), "the old settings are gone");
    let p0 = &described.partitions[0];
    assert_eq!((p0.log_start_offset, p0.log_end_offset, p0.size_bytes), (0, 0, 0));
    let fetched = bystander.fetch(&fetch_at("phoenix", 0, 0)).await.unwrap();
    assert!(fetched.records.is_empty() && fetched.high_watermark == 0, "{fetched:?}");

    let written = bystander.produce("phoenix", Some(0), vec![value("new")]).await.unwrap();
    assert_eq!(written[0].base_offset, 0, "offsets start again at 0");
    let read = read_partition(&client, "phoenix", 0, 0).await;
    assert_eq!(read.iter().map(text).collect::<Vec<_>>(), ["new"]);
    assert_eq!(read[0].value, Some(Bytes::from_static(b"new")));
    broker.stop().await;
}

#[tokio::test]
async fn a_name_whose_create_or_delete_is_under_way_is_taken() {
    let broker = TestBroker::start();
    let client = broker.client().await;

    // Pipelined on one connection, so they reach the broker in this order.
    let (first, second) =
        futures::join!(client.create_topic("busy", 1, no_config()), client.create_topic("busy", 1, no_config()));
    first.unwrap();
    assert_eq!(code(second), 36, "a create while the same create writes its metadata");

    let (deleted, created) = futures::join!(client.delete_topic("busy"), client.create_topic("busy", 3, no_config()));
    deleted.unwrap();
    assert_eq!(code(created), 36, "a create while the topic is being deleted");
    let (deleted, again) = {
        client.create_topic("busy", 1, no_config()).await.unwrap();
        futures::join!(client.delete_topic("busy"), client.delete_topic("busy"))
    };
    deleted.unwrap();
    assert_eq!(code(again), 3, "a second delete of a topic being deleted");
    assert!(client.list_topics().await.unwrap().is_empty());
    broker.stop().await;
}

#[tokio::test]
async fn handshake_reports_the_brokers_limits() {
    let broker = TestBroker::start();
    let client: Client = broker.client().await;
    let info = client.broker_info();
    assert_eq!(info.protocol_version, 1);
    assert_eq!(info.broker_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.max_frame_bytes, 16 * 1024 * 1024);
    assert_eq!(info.max_in_flight, 64);
    broker.stop().await;
}
