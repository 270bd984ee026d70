//! The wire protocol at the byte level, without the client: malformed frames,
//! the handshake rule, oversize lengths, unknown operations, pipelining, a
//! Kafka client on the wrong port, and clients that vanish mid-frame.

mod common;
mod raw;

use std::collections::{BTreeMap, BTreeSet};

use common::{value, TestBroker};
use raw::{encode, frame, handshake, map, request, Raw};
use rmpv::Value;

/// The broker still serves: a fresh connection gets through a handshake and a
/// request, and so does an existing client.
async fn assert_still_serving(broker: &TestBroker, existing: &herald::client::Client) {
    existing.list_topics().await.expect("an existing connection is unaffected");
    let mut fresh = Raw::ready(broker.addr()).await;
    fresh.send(&request(2, "list_topics", &[])).await;
    fresh.response().await.assert_ok(2);
}

#[tokio::test]
async fn malformed_payloads_get_invalid_request_and_the_connection_stays_open() {
    let broker = TestBroker::start();
    let mut raw = Raw::connect(broker.addr()).await;

    // Garbage before the handshake: an error, not a close.
    raw.send(b"\xc1\xc1 definitely not msgpack").await;
    raw.response().await.assert_error(0, 42);
    raw.send(&handshake(1)).await;
    let handshake = raw.response().await;
    handshake.assert_ok(1);
    assert_eq!(handshake.field("protocol_version").as_u64(), Some(1));
    assert_eq!(handshake.field("max_frame_bytes").as_u64(), Some(16 << 20));
    assert_eq!(handshake.field("max_in_flight").as_u64(), Some(64));
    assert!(handshake.field("broker_version").is_str());

    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("garbage", b"\xc1garbage".to_vec(), 0),
        ("not a map", encode(&Value::Array(vec![1.into(), "list_topics".into()])), 0),
        ("a bare string", encode(&Value::from("list_topics")), 0),
        ("no correlation_id", encode(&map(&[("op", "list_topics".into())])), 0),
        ("a string correlation_id", encode(&map(&[("correlation_id", "7".into()), ("op", "list_topics".into())])), 0),
        (
            "a truncated map",
            encode(&map(&[("correlation_id", 7.into()), ("op", "list_topics".into())]))[..5].to_vec(),
            0,
        ),
        ("an empty payload", Vec::new(), 0),
        ("no op", encode(&map(&[("correlation_id", 11.into())])), 11),
        ("missing fields", request(12, "fetch", &[("topic", "t".into())]), 12),
        ("a wrong type", request(13, "describe_topic", &[("topic", 5.into())]), 13),
        (
            "text for an int",
            request(14, "list_offsets", &[("topic", "t".into()), ("partition", 0.into()), ("timestamp", "x".into())]),
            14,
        ),
        (
            "a negative uint",
            request(
                15,
                "fetch",
                &[("topic", "t".into()), ("partition", 0.into()), ("offset", 0.into()), ("max_bytes", (-1).into())],
            ),
            15,
        ),
        ("text for records", request(16, "produce", &[("topic", "t".into()), ("records", "r".into())]), 16),
    ];
    for (what, payload, correlation_id) in cases {
        raw.send(&payload).await;
        let response = raw.response().await;
        assert_eq!(
            (response.header.correlation_id, response.header.error_code),
            (correlation_id, 42),
            "{what}: {response:?}"
        );
    }

    // The same connection still works.
    raw.send(&request(20, "list_topics", &[])).await;
    let listed = raw.response().await;
    listed.assert_ok(20);
    assert_eq!(listed.field("topics"), &Value::Array(vec![]));
    assert!(listed.field("error_message").is_nil(), "no message on success");
    broker.stop().await;
}

#[tokio::test]
async fn a_request_before_the_handshake_gets_1000_and_a_close() {
    let broker = TestBroker::start();
    let mut raw = Raw::connect(broker.addr()).await;
    raw.send(&request(5, "list_topics", &[])).await;
    raw.response().await.assert_error(5, 1000);
    raw.assert_closed().await;

    // An unsupported protocol version: 35, then a close.
    let mut raw = Raw::connect(broker.addr()).await;
    raw.send(&request(6, "handshake", &[("client_id", "future".into()), ("protocol_version", 2.into())])).await;
    raw.response().await.assert_error(6, 35);
    raw.assert_closed().await;
    broker.stop().await;
}

#[tokio::test]
async fn an_oversize_length_gets_1002_and_a_close_and_the_broker_keeps_serving() {
    let broker = TestBroker::start();
    let bystander = broker.client().await;

    for length in [0x7fff_ffff_u32, (16 << 20) + 1, u32::MAX] {
        let mut raw = Raw::ready(broker.addr()).await;
        // Only the length: the broker must refuse it without waiting for (or
        // allocating) the payload it announces.
        raw.write(&length.to_be_bytes()).await;
        raw.response().await.assert_error(0, 1002);
        raw.assert_closed().await;
    }
    // Also as the very first bytes of a connection.
    let mut raw = Raw::connect(broker.addr()).await;
    raw.write(&0x7fff_ffff_u32.to_be_bytes()).await;
    raw.response().await.assert_error(0, 1002);
    raw.assert_closed().await;

    // A frame of exactly max_frame_bytes is not refused for its size.
    let mut raw = Raw::ready(broker.addr()).await;
    let empty = request(3, "list_topics", &[("padding", Value::Binary(Vec::new()))]).len();
    // The padding's bin 32 header is 3 bytes longer than the empty one's bin 8.
    let padded = request(3, "list_topics", &[("padding", Value::Binary(vec![0u8; (16 << 20) - empty - 3]))]);
    assert_eq!(padded.len(), 16 << 20);
    raw.send(&padded).await;
    raw.response().await.assert_ok(3);

    assert_still_serving(&broker, &bystander).await;
    broker.stop().await;
}

#[tokio::test]
async fn an_unknown_operation_gets_1001_and_the_connection_stays_open() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready(broker.addr()).await;
    raw.send(&request(8, "launch_rockets", &[("count", 3.into())])).await;
    raw.response().await.assert_error(8, 1001);
    raw.send(&request(9, "", &[])).await;
    raw.response().await.assert_error(9, 1001);
    raw.send(&request(10, "list_topics", &[])).await;
    raw.response().await.assert_ok(10);
    broker.stop().await;
}

#[tokio::test]
async fn pipelined_requests_all_get_responses_matched_by_correlation_id() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready(broker.addr()).await;
    raw.send(&request(2, "create_topic", &[("topic", "pipe".into()), ("partitions", 2.into())])).await;
    raw.response().await.assert_ok(2);

    // 150 requests in one write, more than max_in_flight (64): the broker
    // stops reading for a while but answers every one.
    let mut bytes = Vec::new();
    let mut produce_ids = Vec::new();
    let mut expected = BTreeSet::new();
    for i in 0..150u32 {
        let id = 1000 + i * 7;
        let payload = match i % 3 {
            0 | 1 => {
                produce_ids.push(id);
                let record = map(&[("value", Value::Binary(format!("r{i}").into_bytes()))]);
                request(
                    id,
                    "produce",
                    &[("topic", "pipe".into()), ("partition", 1.into()), ("records", Value::Array(vec![record]))],
                )
            }
            _ => request(id, "describe_topic", &[("topic", "pipe".into())]),
        };
        bytes.extend(frame(&payload));
        expected.insert(id);
    }
    raw.write(&bytes).await;

    let mut responses = BTreeMap::new();
    for _ in 0..expected.len() {
        let response = raw.response().await;
        assert_eq!(response.header.error_code, 0, "{response:?}");
        assert!(responses.insert(response.header.correlation_id, response).is_none(), "one response per request");
    }
    assert_eq!(responses.keys().copied().collect::<BTreeSet<_>>(), expected);
    // Produces to one partition ran in the order they were sent.
    for (n, id) in produce_ids.iter().enumerate() {
        let partitions = responses[id].field("partitions").as_array().unwrap().clone();
        let result = &partitions[0];
        let get =
            |name: &str| result.as_map().unwrap().iter().find(|(k, _)| k.as_str() == Some(name)).unwrap().1.clone();
        assert_eq!(get("base_offset").as_i64(), Some(n as i64), "produce #{n} (id {id})");
        assert_eq!(get("partition").as_u64(), Some(1));
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_kafka_request_gets_no_response_and_a_close() {
    let broker = TestBroker::start();
    let bystander = broker.client().await;
    let mut raw = Raw::connect(broker.addr()).await;
    // Kafka ApiVersions v3: api_key 18, api_version 3, correlation id 1,
    // client id "rdkafka", then tagged fields.
    let mut payload = vec![0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x07];
    payload.extend_from_slice(b"rdkafka");
    payload.extend_from_slice(&[
        0x00, 0x08, b'r', b'd', b'k', b'a', b'f', b'k', b'a', 0x06, b'2', b'.', b'3', b'.', b'0', 0x00,
    ]);
    raw.send(&payload).await;
    raw.assert_closed().await;
    assert_still_serving(&broker, &bystander).await;
    broker.stop().await;
}

#[tokio::test]
async fn clients_that_vanish_mid_frame_do_not_affect_others() {
    let broker = TestBroker::start();
    let bystander = broker.client().await;
    bystander.create_topic("steady", 1, BTreeMap::new()).await.unwrap();

    // Half a length prefix, then gone.
    let mut raw = Raw::connect(broker.addr()).await;
    raw.write(&[0x00, 0x00]).await;
    drop(raw);
    // A frame announced as 100 bytes, 10 sent, then gone.
    let mut raw = Raw::ready(broker.addr()).await;
    let mut partial = 100u32.to_be_bytes().to_vec();
    partial.extend_from_slice(&[0x85; 10]);
    raw.write(&partial).await;
    drop(raw);
    // A whole produce, then gone before its answer: the append still happens.
    let mut raw = Raw::ready(broker.addr()).await;
    let record = map(&[("value", Value::Binary(b"orphan".to_vec()))]);
    raw.send(&request(
        2,
        "produce",
        &[("topic", "steady".into()), ("partition", 0.into()), ("records", Value::Array(vec![record]))],
    ))
    .await;
    drop(raw);

    // Waits for the orphaned append (a long poll, not a sleep).
    let request = herald::protocol::FetchRequest {
        topic: "steady".into(),
        partition: 0,
        offset: 0,
        max_bytes: 1 << 20,
        min_bytes: 1,
        max_wait_ms: 10_000,
    };
    let fetched = bystander.fetch(&request).await.unwrap();
    assert_eq!(fetched.records.iter().map(common::text).collect::<Vec<_>>(), ["orphan"]);

    let written = bystander.produce("steady", Some(0), vec![value("next")]).await.unwrap();
    assert_eq!(written[0].base_offset, 1);
    assert_still_serving(&broker, &bystander).await;
    broker.stop().await;
}
