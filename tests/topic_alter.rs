//! `alter_topic_config` against the real broker: a change applies to live
//! partitions at once and survives a restart; an invalid change, or one only
//! validated, changes nothing (neither what the broker serves nor what it
//! stores). Both new operations' fields have exactly their types (raw frames).

mod common;
mod raw;

use std::collections::BTreeMap;
use std::path::Path;

use common::{config, value, TestBroker};
use herald::client::{Client, ClientError};
use herald::protocol::ConfigValue::{self, Int, Str};
use raw::{map, request, Raw};
use rmpv::Value;

const TOPIC: &str = "settings";

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> (i16, String) {
    match result {
        Err(ClientError::Broker { code, message, .. }) => (code, message),
        other => panic!("expected a broker error, got {other:?}"),
    }
}

fn set(pairs: &[(&str, ConfigValue)]) -> BTreeMap<String, ConfigValue> {
    config(pairs)
}

fn stored_metadata(data_dir: &Path) -> Vec<u8> {
    std::fs::read(data_dir.join("topics").join(TOPIC).join("topic.json")).expect("the topic's metadata")
}

async fn described(client: &Client) -> BTreeMap<String, ConfigValue> {
    client.describe_topic(TOPIC).await.unwrap().config
}

#[tokio::test]
async fn a_lowered_max_message_bytes_refuses_the_next_produce_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    client.create_topic(TOPIC, 1, BTreeMap::new()).await.unwrap();
    let big = || vec![value(vec![b'x'; 2000])];
    client.produce(TOPIC, Some(0), big()).await.unwrap();

    let answer = client.alter_topic_config(TOPIC, set(&[("max_message_bytes", Int(1024))]), vec![], false).await;
    let answer = answer.unwrap();
    assert_eq!(answer["max_message_bytes"], Int(1024));
    assert_eq!(answer, described(&client).await, "the answer is the whole effective config");
    let (refused, message) = code(client.produce(TOPIC, Some(0), big()).await);
    assert_eq!(refused, 10, "{message}");
    client.produce(TOPIC, Some(0), vec![value("small")]).await.unwrap();
    drop(client);
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    assert_eq!(described(&client).await["max_message_bytes"], Int(1024));
    assert_eq!(code(client.produce(TOPIC, Some(0), big()).await).0, 10);

    // Deleted: back to the broker's default, which takes the batch again.
    let answer = client.alter_topic_config(TOPIC, BTreeMap::new(), vec!["max_message_bytes".into()], false).await;
    assert_eq!(answer.unwrap()["max_message_bytes"], Int(8 << 20));
    client.produce(TOPIC, Some(0), big()).await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn a_lowered_retention_removes_old_segments_at_once() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    let small = config(&[("segment_max_bytes", Int(1024)), ("max_message_bytes", Int(1024))]);
    client.create_topic(TOPIC, 1, small).await.unwrap();
    for i in 0..20 {
        client.produce(TOPIC, Some(0), vec![value(format!("{i:0>300}"))]).await.unwrap();
    }
    let before = client.describe_topic(TOPIC).await.unwrap().partitions[0].clone();
    assert!(before.segments >= 5, "{before:?}");
    assert_eq!(before.log_start_offset, 0);

    client.alter_topic_config(TOPIC, set(&[("retention_bytes", Int(1024))]), vec![], false).await.unwrap();
    let after = client.describe_topic(TOPIC).await.unwrap().partitions[0].clone();
    assert!(after.segments < before.segments, "{before:?} -> {after:?}");
    assert!(after.log_start_offset > 0, "{after:?}");
    assert_eq!(after.log_end_offset, 20);
    let (out_of_range, _) = code(client.fetch(&common::fetch_at(TOPIC, 0, 0)).await);
    assert_eq!(out_of_range, 1);
    broker.stop().await;
}

#[tokio::test]
async fn an_invalid_change_changes_nothing_and_names_the_key() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic(TOPIC, 2, config(&[("retention_ms", Int(60_000))])).await.unwrap();
    let (config_before, stored_before) = (described(&client).await, stored_metadata(broker.data_dir()));

    let huge = 1_i64 << 40;
    let cases: Vec<(BTreeMap<String, ConfigValue>, Vec<String>, &str)> = vec![
        (set(&[("colour", Int(1))]), vec![], "colour"),
        (set(&[("retention_ms", Str("soon".into()))]), vec![], "retention_ms"),
        (set(&[("retention_ms", Int(0))]), vec![], "retention_ms"),
        (set(&[("message_timestamp_type", Str("Now".into()))]), vec![], "message_timestamp_type"),
        // Against each other: every batch must fit in one segment.
        (set(&[("segment_max_bytes", Int(4096))]), vec![], "segment_max_bytes"),
        // Against the broker's limits.
        (set(&[("segment_max_bytes", Int(huge)), ("max_message_bytes", Int(huge))]), vec![], "max_frame_bytes"),
        (set(&[("retention_ms", Int(5))]), vec!["retention_ms".into()], "retention_ms"),
        (BTreeMap::new(), vec!["colour".into()], "colour"),
        (set(&[("partitions", Int(4))]), vec![], "add_partitions"),
        // One bad key among good ones: none applies.
        (set(&[("retention_bytes", Int(4096)), ("segment_ms", Int(-3))]), vec![], "segment_ms"),
    ];
    for (set, delete, named) in cases {
        let context = format!("{set:?} {delete:?}");
        let (refused, message) = code(client.alter_topic_config(TOPIC, set, delete, false).await);
        assert_eq!(refused, 40, "{context}: {message}");
        assert!(message.contains(named), "{context}: {message}");
    }
    assert_eq!(described(&client).await, config_before);
    assert_eq!(stored_metadata(broker.data_dir()), stored_before);

    let (unknown, _) = code(client.alter_topic_config("nope", set(&[("retention_ms", Int(1))]), vec![], false).await);
    assert_eq!(unknown, 3);
    broker.stop().await;
}

#[tokio::test]
async fn validate_only_answers_the_new_config_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    client.create_topic(TOPIC, 1, BTreeMap::new()).await.unwrap();
    let (config_before, stored_before) = (described(&client).await, stored_metadata(dir.path()));

    let change = set(&[("max_message_bytes", Int(1024)), ("message_timestamp_type", Str("LogAppendTime".into()))]);
    let answer = client.alter_topic_config(TOPIC, change, vec![], true).await.unwrap();
    assert_eq!(answer["max_message_bytes"], Int(1024));
    assert_eq!(answer["message_timestamp_type"], Str("LogAppendTime".into()));
    assert_eq!(described(&client).await, config_before);
    assert_eq!(stored_metadata(dir.path()), stored_before);
    client.produce(TOPIC, Some(0), vec![value(vec![b'x'; 2000])]).await.unwrap();
    drop(client);
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path());
    assert_eq!(described(&broker.client().await).await, config_before);
    broker.stop().await;
}

#[tokio::test]
async fn the_fields_of_both_operations_have_exactly_their_types() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready(broker.addr()).await;
    raw.send(&request(2, "create_topic", &[("topic", TOPIC.into()), ("partitions", 1.into())])).await;
    raw.response().await.assert_ok(2);

    let topic = ("topic", Value::from(TOPIC));
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("set not a map", request(10, "alter_topic_config", &[topic.clone(), ("set", Value::from(5))])),
        ("delete not an array", request(11, "alter_topic_config", &[topic.clone(), ("delete", "segment_ms".into())])),
        ("validate_only an int", request(12, "alter_topic_config", &[topic.clone(), ("validate_only", 1.into())])),
        (
            "a bool value",
            request(13, "alter_topic_config", &[topic.clone(), ("set", map(&[("segment_ms", true.into())]))]),
        ),
        ("no offset", request(14, "delete_records", &[topic.clone(), ("partition", 0.into())])),
        (
            "offset a str",
            request(15, "delete_records", &[topic.clone(), ("partition", 0.into()), ("offset", "end".into())]),
        ),
    ];
    for (what, frame) in refused {
        raw.send(&frame).await;
        let response = raw.response().await;
        assert_eq!(response.header.error_code, 42, "{what}: {response:?}");
    }

    // Optional fields may be absent or nil.
    let nils = [("set", Value::Nil), ("delete", Value::Nil), ("validate_only", Value::Nil)];
    raw.send(&request(20, "alter_topic_config", &[&[topic.clone()][..], &nils].concat())).await;
    let response = raw.response().await;
    response.assert_ok(20);
    assert_eq!(response.field("validate_only"), &Value::from(false));
    assert!(response.field("config").as_map().is_some_and(|m| m.len() == 12), "{response:?}");
    raw.send(&request(21, "delete_records", &[topic, ("partition", 0.into()), ("offset", (-1).into())])).await;
    let response = raw.response().await;
    response.assert_ok(21);
    assert_eq!(response.field("log_start_offset"), &Value::from(0));
}
