//! Feature discovery and version negotiation: what the handshake answers, the
//! highest shared protocol version, and the Rust client's use of the answer
//! (refusing unlisted operations, sizing the producer's batches).

mod common;
mod raw;

use std::collections::BTreeSet;

use common::{test_settings, value, TestBroker};
use herald::client::{Producer, ProducerConfig};
use herald::config::Settings;
use herald::protocol::{op, Empty, WireRecord};
use raw::{get, request, Raw};
use rmpv::Value;

/// A broker whose announced settings all differ from the defaults.
fn tuned(dir: &std::path::Path) -> Settings {
    let mut settings = test_settings(dir);
    settings.server.max_frame_bytes = 64 * 1024;
    settings.server.max_in_flight = 16;
    settings.server.max_held_requests = 77;
    settings.groups.min_session_timeout_ms = 200;
    settings.groups.max_session_timeout_ms = 60_000;
    settings.groups.default_session_timeout_ms = 5_000;
    settings.log.max_message_bytes = 60 * 1024;
    settings
}

fn handshake(correlation_id: u32, versions: &[(&str, Value)]) -> Vec<u8> {
    let mut fields = vec![("client_id", Value::from("features"))];
    fields.extend_from_slice(versions);
    request(correlation_id, "handshake", &fields)
}

#[tokio::test]
async fn the_handshake_lists_operations_assignors_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(tuned(dir.path()));
    let mut raw = Raw::connect(broker.addr()).await;
    raw.send(&handshake(1, &[("min_protocol_version", 1.into()), ("max_protocol_version", 9.into())])).await;
    let answer = raw.response().await;
    answer.assert_ok(1);
    let uint = |name: &str| answer.field(name).as_u64().unwrap_or_else(|| panic!("`{name}` is a uint: {answer:?}"));
    assert_eq!(uint("protocol_version"), 1, "the highest version both speak");
    assert_eq!((uint("min_protocol_version"), uint("max_protocol_version")), (1, 1));
    assert_eq!((uint("max_frame_bytes"), uint("max_in_flight")), (64 * 1024, 16));
    assert_eq!(uint("max_held_requests"), 77);
    assert_eq!(
        (uint("min_session_timeout_ms"), uint("max_session_timeout_ms"), uint("default_session_timeout_ms")),
        (200, 60_000, 5_000)
    );
    assert_eq!(uint("max_message_bytes"), 60 * 1024);
    assert_eq!(answer.field("broker_version").as_str(), Some(env!("CARGO_PKG_VERSION")));
    let assignors: Vec<&str> =
        answer.field("assignors").as_array().expect("assignors").iter().filter_map(Value::as_str).collect();
    assert_eq!(assignors, ["range", "roundrobin", "sticky"]);

    let operations = answer.field("operations").as_array().expect("operations");
    let mut listed = BTreeSet::new();
    for operation in operations {
        let name = get(operation, "op").as_str().expect("an op name");
        assert_eq!(get(operation, "min_version").as_u64(), Some(1), "{name}");
        assert_eq!(get(operation, "max_version").as_u64(), Some(1), "{name}");
        listed.insert(name.to_string());
    }
    // Every listed operation is served: none is unknown to the broker.
    for (n, name) in listed.iter().enumerate() {
        let correlation_id = 10 + n as u32;
        raw.send(&request(correlation_id, name, &[])).await;
        let response = raw.response().await;
        assert_ne!(response.header.error_code, 1001, "{name} is listed but unknown: {response:?}");
    }
    assert_eq!(listed.len(), 36);
    assert!(listed.contains("produce") && listed.contains("join_group") && listed.contains("handshake"));
    assert!(listed.contains("alter_topic_config") && listed.contains("delete_records"));
    assert!(listed.contains("init_producer_id") && listed.contains("controlled_shutdown"));
    assert!(listed.contains("find_coordinator"));
    broker.stop().await;
}

#[tokio::test]
async fn the_broker_picks_the_highest_shared_protocol_version() {
    let broker = TestBroker::start();
    let shared: Vec<(&str, Vec<(&str, Value)>)> = vec![
        ("just protocol_version", vec![("protocol_version", 1.into())]),
        ("a range above", vec![("min_protocol_version", 1.into()), ("max_protocol_version", 5.into())]),
        ("protocol_version and a max", vec![("protocol_version", 1.into()), ("max_protocol_version", 3.into())]),
        ("a range from 0", vec![("min_protocol_version", 0.into()), ("max_protocol_version", 1.into())]),
    ];
    for (what, versions) in shared {
        let mut raw = Raw::connect(broker.addr()).await;
        raw.send(&handshake(3, &versions)).await;
        let answer = raw.response().await;
        assert_eq!((answer.header.error_code, answer.field("protocol_version").as_u64()), (0, Some(1)), "{what}");
    }

    // Nothing shared: 35, and the connection closes.
    for versions in [
        vec![("min_protocol_version", 2.into()), ("max_protocol_version", 3.into())],
        vec![("protocol_version", 2.into())],
    ] {
        let mut raw = Raw::connect(broker.addr()).await;
        raw.send(&handshake(4, &versions)).await;
        raw.response().await.assert_error(4, 35);
        raw.assert_closed().await;
    }

    // No version at all, or an empty range: 42, and the client may try again.
    let mut raw = Raw::connect(broker.addr()).await;
    raw.send(&handshake(5, &[])).await;
    raw.response().await.assert_error(5, 42);
    raw.send(&handshake(6, &[("min_protocol_version", 3.into()), ("max_protocol_version", 1.into())])).await;
    raw.response().await.assert_error(6, 42);
    raw.send(&handshake(8, &[("protocol_version", 1.into()), ("min_protocol_version", 2.into())])).await;
    raw.response().await.assert_error(8, 42);
    raw.send(&handshake(7, &[("protocol_version", 1.into())])).await;
    raw.response().await.assert_ok(7);
    broker.stop().await;
}

#[tokio::test]
async fn the_client_keeps_the_answer_and_refuses_what_the_broker_does_not_list() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    let features = client.features();
    assert_eq!(features.protocol_version, 1);
    assert!(features.offers(op::PRODUCE) && features.offers(op::JOIN_GROUP));
    assert_eq!(features.assignors, ["range", "roundrobin", "sticky"]);
    assert_eq!(features.max_message_bytes, 8 << 20);

    let refused = client.request::<_, Empty>("launch_rockets", &Empty {}).await.unwrap_err();
    assert_eq!(refused.code(), Some(1001));
    assert!(refused.to_string().contains("not sent"), "refused locally: {refused}");
    // A request too large for the broker is refused locally too, and the
    // connection lives on.
    let huge = vec![value(vec![0u8; 17 << 20])];
    let refused = client.produce("anything", Some(0), huge).await.unwrap_err();
    assert_eq!(refused.code(), Some(1002));
    assert!(refused.to_string().contains("not sent"), "refused locally: {refused}");
    client.list_topics().await.expect("the connection is still open");
    broker.stop().await;
}

#[tokio::test]
async fn the_producer_caps_its_batches_by_the_brokers_limits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(tuned(dir.path()));
    let client = broker.client().await;
    client.create_topic("capped", 1, Default::default()).await.unwrap();
    // Only size sends a batch: the linger is longer than the test.
    let config = ProducerConfig { linger_ms: 600_000, ..ProducerConfig::default() };
    assert!(config.batch_max_bytes > 64 * 1024, "the configured batch alone would not fit a frame");
    let producer = Producer::new(client.clone(), config);

    let mut answers = Vec::new();
    for n in 0..300 {
        let record = WireRecord { key: Some(format!("{n}").into_bytes().into()), ..value(vec![b'x'; 1000]) };
        answers.push(producer.send("capped", Some(0), record).await.unwrap());
    }
    // One record larger than a frame fails alone.
    let alone = producer.send("capped", Some(0), value(vec![0u8; 70 * 1024])).await.unwrap();
    let after = producer.send("capped", Some(0), value("after")).await.unwrap();
    producer.flush().await.unwrap();

    for (n, answer) in answers.into_iter().enumerate() {
        let written = answer.await.unwrap().unwrap_or_else(|err| panic!("record {n}: {err}"));
        assert_eq!((written.partition, written.offset), (0, n as i64));
    }
    let err = alone.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(1002), "{err}");
    assert_eq!(after.await.unwrap().unwrap().offset, 300);
    broker.stop().await;
}
