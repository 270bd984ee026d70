//! The wire rules of docs/protocol.md, byte for byte: `acks` 0 is never
//! answered, an error carries the request's correlation id whenever it can be
//! read, each field has exactly one MessagePack type family, and record
//! timestamps have a valid range.

mod common;
mod raw;

use std::time::Duration;

use common::TestBroker;
use raw::{encode, get, map, request, Raw};
use rmpv::Value;

/// How long a test waits to be sure that no response comes.
const SILENCE: Duration = Duration::from_millis(300);

fn bin(bytes: &[u8]) -> Value {
    Value::Binary(bytes.to_vec())
}

/// A produce to partition 0 of `topic` with these records and `acks`.
fn produce(correlation_id: u32, topic: &str, acks: Value, records: Vec<Value>) -> Vec<u8> {
    request(
        correlation_id,
        "produce",
        &[("topic", topic.into()), ("partition", 0.into()), ("acks", acks), ("records", Value::Array(records))],
    )
}

/// A connection after its handshake, with `topic` created (one partition).
/// The partition's high watermark, through `list_offsets`.
async fn high_watermark(raw: &mut Raw, correlation_id: u32, topic: &str) -> i64 {
    raw.send(&request(
        correlation_id,
        "list_offsets",
        &[("topic", topic.into()), ("partition", 0.into()), ("timestamp", (-1).into())],
    ))
    .await;
    let response = raw.response().await;
    response.assert_ok(correlation_id);
    response.field("offset").as_i64().expect("an offset")
}

/// Asserts that the next response is the one to `correlation_id`: nothing
/// was sent for the requests before it.
async fn assert_next_is(raw: &mut Raw, correlation_id: u32) {
    raw.send(&request(correlation_id, "list_topics", &[])).await;
    raw.response().await.assert_ok(correlation_id);
}

#[tokio::test]
async fn a_produce_with_acks_0_is_never_answered_not_even_when_malformed() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "quiet", 1, vec![]).await;
    let good = map(&[("value", bin(b"v"))]);

    let silent: Vec<(&str, Vec<u8>)> = vec![
        ("a str value", produce(10, "quiet", 0.into(), vec![map(&[("value", "text".into())])])),
        (
            "records not an array",
            request(11, "produce", &[("topic", "quiet".into()), ("acks", 0.into()), ("records", 5.into())]),
        ),
        ("no topic", request(12, "produce", &[("acks", 0.into()), ("records", Value::Array(vec![good.clone()]))])),
        ("acks first, then garbage", {
            let mut bytes = request(13, "produce", &[("acks", 0.into()), ("topic", "quiet".into())]);
            bytes[0] += 1; // one more entry announced than present
            bytes
        }),
        ("an unknown topic", produce(14, "nowhere", 0.into(), vec![good.clone()])),
        (
            "a negative timestamp",
            produce(15, "quiet", 0.into(), vec![map(&[("value", bin(b"v")), ("timestamp", (-5).into())])]),
        ),
        ("no records", produce(16, "quiet", 0.into(), vec![])),
    ];
    for (what, payload) in silent {
        raw.send(&payload).await;
        if let Some(response) = raw.response_within(SILENCE).await {
            panic!("{what}: acks 0 was answered: {response:?}");
        }
    }
    assert_next_is(&mut raw, 20).await;
    assert_eq!(high_watermark(&mut raw, 21, "quiet").await, 0, "nothing was appended");

    // `acks` that is not the integer 0 does not silence a malformed request.
    raw.send(&produce(30, "quiet", "0".into(), vec![good.clone()])).await;
    raw.response().await.assert_error(30, 42);
    raw.send(&produce(31, "quiet", 1.into(), vec![map(&[("value", "text".into())])])).await;
    raw.response().await.assert_error(31, 42);

    // A well-formed produce with acks 0 is appended, unanswered.
    raw.send(&produce(32, "quiet", 0.into(), vec![good.clone()])).await;
    assert_next_is(&mut raw, 33).await;
    assert_eq!(high_watermark(&mut raw, 34, "quiet").await, 1);

    // Before the handshake, the handshake rule wins: 1000 and a close.
    let mut early = Raw::connect(broker.addr()).await;
    early.send(&produce(40, "quiet", 0.into(), vec![good])).await;
    early.response().await.assert_error(40, 1000);
    early.assert_closed().await;
    broker.stop().await;
}

#[tokio::test]
async fn an_error_carries_the_correlation_id_whenever_it_can_be_read() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready(broker.addr()).await;
    let id = |n: u32| Value::from(n);
    let cases: Vec<(&str, Vec<u8>, u32, i16)> = vec![
        ("an integer op", encode(&map(&[("correlation_id", id(5)), ("op", 7.into())])), 5, 42),
        ("a bin op", encode(&map(&[("correlation_id", id(6)), ("op", bin(b"list_topics"))])), 6, 42),
        ("a nil op", encode(&map(&[("correlation_id", id(7)), ("op", Value::Nil)])), 7, 42),
        ("an array op", encode(&map(&[("correlation_id", id(8)), ("op", Value::Array(vec!["fetch".into()]))])), 8, 42),
        ("op before the id", encode(&map(&[("op", 1.5.into()), ("correlation_id", id(9))])), 9, 42),
        ("no op", encode(&map(&[("x", 1.into()), ("correlation_id", id(10))])), 10, 42),
        (
            "garbage after the id",
            {
                let mut bytes = encode(&map(&[("correlation_id", id(11)), ("op", "list_topics".into())]));
                bytes.extend_from_slice(b"\xc1");
                bytes[0] += 1;
                bytes
            },
            11,
            42,
        ),
        (
            "a truncated body",
            request(12, "fetch", &[("topic", "t".into()), ("partition", 0.into())])[..30].to_vec(),
            12,
            42,
        ),
        ("an unknown op", request(13, "launch_rockets", &[]), 13, 1001),
        // 0 is reserved for errors the broker cannot attribute.
        ("correlation id 0", request(0, "list_topics", &[]), 0, 42),
        ("a negative id", encode(&map(&[("correlation_id", (-4).into()), ("op", "list_topics".into())])), 0, 42),
        (
            "an id above u32",
            encode(&map(&[("correlation_id", (1u64 << 32).into()), ("op", "list_topics".into())])),
            0,
            42,
        ),
    ];
    for (what, payload, correlation_id, code) in cases {
        raw.send(&payload).await;
        let response = raw.response().await;
        assert_eq!(
            (response.header.correlation_id, response.header.error_code),
            (correlation_id, code),
            "{what}: {response:?}"
        );
    }
    assert_next_is(&mut raw, 20).await;
    broker.stop().await;
}

#[tokio::test]
async fn each_field_has_exactly_one_messagepack_type_family() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "typed", 1, vec![]).await;
    let record = |fields: &[(&str, Value)]| produce(0, "typed", 1.into(), vec![map(fields)]);
    let refused: Vec<(&str, Vec<u8>)> = vec![
        ("a str value", record(&[("value", "text".into())])),
        ("a str key", record(&[("key", "k".into()), ("value", bin(b"v"))])),
        ("an array value", record(&[("value", Value::Array(vec![1.into(), 2.into()]))])),
        ("a str header value", record(&[("headers", Value::Array(vec![Value::Array(vec!["h".into(), "x".into()])]))])),
        ("a bin header key", record(&[("headers", Value::Array(vec![Value::Array(vec![bin(b"h"), bin(b"x")])]))])),
        (
            "a three-element header",
            record(&[("headers", Value::Array(vec![Value::Array(vec!["h".into(), bin(b"x"), bin(b"y")])]))]),
        ),
        ("a str timestamp", record(&[("value", bin(b"v")), ("timestamp", "1700000000000".into())])),
        ("a float timestamp", record(&[("value", bin(b"v")), ("timestamp", 1.5.into())])),
        ("a record as an array", produce(0, "typed", 1.into(), vec![Value::Array(vec![Value::Nil, bin(b"v")])])),
        (
            "a bin topic",
            request(
                0,
                "produce",
                &[("topic", bin(b"typed")), ("records", Value::Array(vec![map(&[("value", bin(b"v"))])]))],
            ),
        ),
        (
            "a str partition",
            request(
                0,
                "produce",
                &[
                    ("topic", "typed".into()),
                    ("partition", "0".into()),
                    ("records", Value::Array(vec![map(&[("value", bin(b"v"))])])),
                ],
            ),
        ),
        ("a bool acks", produce(0, "typed", true.into(), vec![map(&[("value", bin(b"v"))])])),
        (
            "a bin partition list",
            request(
                0,
                "fetch_offsets",
                &[
                    ("group_id", "g".into()),
                    ("partitions", Value::Array(vec![map(&[("topic", "typed".into()), ("partitions", bin(&[0]))])])),
                ],
            ),
        ),
        ("a bin client id", request(0, "handshake", &[("client_id", bin(b"c")), ("protocol_version", 1.into())])),
        (
            "a non-str map key",
            encode(&Value::Map(vec![
                ("correlation_id".into(), 0.into()),
                ("op".into(), "describe_topic".into()),
                (Value::from(0), "typed".into()),
            ])),
        ),
        (
            "a bin config value",
            request(
                0,
                "create_topic",
                &[("topic", "c1".into()), ("partitions", 1.into()), ("config", map(&[("segment_ms", bin(b"1000"))]))],
            ),
        ),
        (
            "a float config value",
            request(
                0,
                "create_topic",
                &[("topic", "c2".into()), ("partitions", 1.into()), ("config", map(&[("segment_ms", 1000.5.into())]))],
            ),
        ),
    ];
    for (n, (what, mut payload)) in refused.into_iter().enumerate() {
        let correlation_id = 100 + n as u32;
        // Every case above was built with correlation id 0: set the real one.
        payload = reidentify(&payload, correlation_id);
        raw.send(&payload).await;
        let response = raw.response().await;
        assert_eq!(
            (response.header.correlation_id, response.header.error_code),
            (correlation_id, 42),
            "{what}: {response:?}"
        );
    }
    assert_eq!(high_watermark(&mut raw, 200, "typed").await, 0, "nothing was appended");

    // A config value of the wrong kind for its key is the setting's error, 40.
    for (n, (key, value)) in [
        ("segment_max_bytes", Value::from("1048576")),
        ("retention_ms", Value::from("-1")),
        ("message_timestamp_type", Value::from(1)),
    ]
    .into_iter()
    .enumerate()
    {
        let correlation_id = 300 + n as u32;
        raw.send(&request(
            correlation_id,
            "create_topic",
            &[("topic", format!("k{n}").into()), ("partitions", 1.into()), ("config", map(&[(key, value)]))],
        ))
        .await;
        let response = raw.response().await;
        response.assert_error(correlation_id, 40);
        let message = response.header.error_message.unwrap_or_default();
        assert!(message.contains(key), "the error names the key: {message}");
    }

    // Any integer encoding is an integer; nil is an absent optional field.
    let accepted: Vec<(&str, Vec<u8>)> = vec![
        (
            "a u64 partition",
            request(
                400,
                "produce",
                &[
                    ("topic", "typed".into()),
                    ("partition", Value::from(0u64)),
                    (
                        "records",
                        Value::Array(vec![map(&[
                            ("value", bin(b"v")),
                            ("timestamp", Value::from(1_700_000_000_000u64)),
                        ])]),
                    ),
                ],
            ),
        ),
        (
            "nil optional fields",
            request(
                401,
                "produce",
                &[
                    ("topic", "typed".into()),
                    ("partition", Value::Nil),
                    ("acks", Value::Nil),
                    (
                        "records",
                        Value::Array(vec![map(&[
                            ("key", Value::Nil),
                            ("value", Value::Nil),
                            ("headers", Value::Nil),
                            ("timestamp", Value::Nil),
                        ])]),
                    ),
                ],
            ),
        ),
        (
            "nil fetch limits",
            request(
                402,
                "fetch",
                &[
                    ("topic", "typed".into()),
                    ("partition", 0.into()),
                    ("offset", 0.into()),
                    ("max_bytes", Value::Nil),
                    ("min_bytes", Value::Nil),
                    ("max_wait_ms", Value::Nil),
                ],
            ),
        ),
        (
            "nil config",
            request(
                403,
                "create_topic",
                &[("topic", "nil-config".into()), ("partitions", 1.into()), ("config", Value::Nil)],
            ),
        ),
    ];
    for (what, payload) in accepted {
        raw.send(&payload).await;
        let response = raw.response().await;
        assert_eq!(response.header.error_code, 0, "{what}: {response:?}");
    }
    broker.stop().await;
}

/// The same request with another correlation id (the first field).
fn reidentify(payload: &[u8], correlation_id: u32) -> Vec<u8> {
    let mut value = rmpv::decode::read_value(&mut &payload[..]).expect("a request map");
    if let Value::Map(fields) = &mut value {
        fields[0].1 = correlation_id.into();
    }
    encode(&value)
}

#[tokio::test]
async fn record_timestamps_outside_0_to_year_9999_refuse_the_whole_request() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "times", 1, vec![]).await;
    let at = |ts: Value| map(&[("value", bin(b"v")), ("timestamp", ts)]);
    const MAX: i64 = 253_402_300_799_999;
    for (n, bad) in [Value::from(-1), Value::from(i64::MIN), Value::from(MAX + 1), Value::from(u64::MAX >> 1)]
        .into_iter()
        .enumerate()
    {
        let correlation_id = 10 + n as u32;
        // One good record beside the bad one: neither is appended.
        raw.send(&produce(correlation_id, "times", 1.into(), vec![at(0.into()), at(bad.clone())])).await;
        let response = raw.response().await;
        response.assert_error(correlation_id, 32);
        // Without a partition, routed by the broker: refused all the same.
        raw.send(&request(
            correlation_id + 100,
            "produce",
            &[("topic", "times".into()), ("records", Value::Array(vec![at(bad)]))],
        ))
        .await;
        raw.response().await.assert_error(correlation_id + 100, 32);
    }
    assert_eq!(high_watermark(&mut raw, 20, "times").await, 0, "nothing was appended");

    raw.send(&produce(21, "times", 1.into(), vec![at(0.into()), at(MAX.into())])).await;
    raw.response().await.assert_ok(21);
    assert_eq!(high_watermark(&mut raw, 22, "times").await, 2);

    // list_offsets: -2 and -1 are the earliest and latest; below is refused.
    for (n, (timestamp, code)) in [(-2, 0), (-1, 0), (0, 0), (MAX, 0), (-3, 32), (i64::MIN, 32)].into_iter().enumerate()
    {
        let correlation_id = 30 + n as u32;
        raw.send(&request(
            correlation_id,
            "list_offsets",
            &[("topic", "times".into()), ("partition", 0.into()), ("timestamp", timestamp.into())],
        ))
        .await;
        let response = raw.response().await;
        assert_eq!(response.header.error_code, code, "timestamp {timestamp}: {response:?}");
        if code == 0 {
            assert!(get(&response.body, "offset").is_i64());
        }
    }
    broker.stop().await;
}
