//! `produce` with `batch`: the records as one record batch in the stored
//! format (docs/protocol.md, `produce`), checked whole by the broker and
//! appended as sent, with only the base offset (and, on a LogAppendTime
//! topic, the timestamps) set.

mod common;
mod raw;

use std::time::Duration;

use bytes::Bytes;
use common::TestBroker;
use herald::protocol::{ConfigValue, MAX_TIMESTAMP_MS};
use herald_actors::batch::{self, BatchHeader, Record};
use raw::{get, request, Raw};
use rmpv::Value;

/// How long a test waits to be sure that no response comes.
const SILENCE: Duration = Duration::from_millis(300);

fn record(value: &str, timestamp: i64) -> Record {
    Record {
        key: Some(Bytes::from(format!("k-{value}"))),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![("h".into(), Bytes::from_static(b"x"))],
        timestamp,
        offset: 0,
    }
}

/// A batch of records with these values, timestamps 1000, 1001, ...
fn batch_of(values: &[&str]) -> Vec<u8> {
    let records: Vec<Record> = values.iter().enumerate().map(|(i, v)| record(v, 1000 + i as i64)).collect();
    batch::encode(&records).unwrap().to_vec()
}

/// A produce of `batch` to `partition` (none: the broker chooses).
fn produce(correlation_id: u32, topic: &str, partition: Option<i64>, acks: i64, batch: &[u8]) -> Vec<u8> {
    let mut fields = vec![("topic", topic.into()), ("acks", acks.into()), ("batch", Value::Binary(batch.to_vec()))];
    if let Some(p) = partition {
        fields.push(("partition", p.into()));
    }
    request(correlation_id, "produce", &fields)
}

/// The stored bytes of partition `partition` from offset 0.
/// The one partition entry of a produce response: (partition, base_offset, error_code).
fn entry(response: &raw::Response) -> (i64, i64, i64) {
    let partitions = response.field("partitions").as_array().expect("partitions");
    assert_eq!(partitions.len(), 1, "{response:?}");
    let field = |name| get(&partitions[0], name).as_i64().expect(name);
    (field("partition"), field("base_offset"), field("error_code"))
}

#[tokio::test]
async fn the_handshake_lists_the_batch_form() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    assert!(client.features().has_feature(herald::protocol::FEATURE_PRODUCE_BATCH));
    let mut raw = Raw::connect(broker.addr()).await;
    raw.send(&raw::handshake(1)).await;
    let answer = raw.response().await;
    answer.assert_ok(1);
    assert_eq!(answer.field("features"), &Value::Array(vec!["produce_batch".into()]));
}

#[tokio::test]
async fn a_batch_is_stored_as_sent_with_its_base_offset_set() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 1, vec![]).await;
    let (first, second) = (batch_of(&["a", "b"]), batch_of(&["c", "d", "e"]));
    raw.send(&produce(3, "t", Some(0), 1, &first)).await;
    let answer = raw.response().await;
    answer.assert_ok(3);
    assert_eq!(entry(&answer), (0, 0, 0));
    assert_eq!(get(&answer.field("partitions")[0], "record_count").as_u64(), Some(2));
    raw.send(&produce(4, "t", Some(0), -1, &second)).await;
    let answer = raw.response().await;
    assert_eq!(entry(&answer), (0, 2, 0));

    let bytes = common::stored(&broker, "t", 0).await;
    assert_eq!(bytes.len(), first.len() + second.len());
    assert_eq!(&bytes[..first.len()], &first[..], "the first batch as sent (base offset 0)");
    let (at, tail) = (first.len(), &bytes[first.len()..]);
    assert_eq!(BatchHeader::parse(tail).unwrap().base_offset, 2);
    assert_eq!(&tail[8..], &second[8..], "only the base offset differs");
    batch::validate(&bytes[at..]).expect("a valid batch: the base offset is outside the CRC");

    // The Rust client reads back what was encoded.
    let records = common::read_partition(&broker.client().await, "t", 0, 0).await;
    let expected: Vec<Record> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let timestamp = if i < 2 { 1000 + i as i64 } else { 1000 + i as i64 - 2 };
            Record { offset: i as i64, ..record(v, timestamp) }
        })
        .collect();
    assert_eq!(records, expected);
}

#[tokio::test]
async fn a_request_carries_records_or_a_batch_not_both_nor_neither() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 1, vec![]).await;
    let batch = Value::Binary(batch_of(&["a"]));
    let records = Value::Array(vec![Value::Map(vec![("value".into(), Value::Binary(b"v".to_vec()))])]);
    raw.send(&request(3, "produce", &[("topic", "t".into()), ("records", records), ("batch", batch)])).await;
    let both = raw.response().await;
    both.assert_error(3, 42);
    assert!(both.header.error_message.as_deref().unwrap().contains("not both"), "{both:?}");
    raw.send(&request(4, "produce", &[("topic", "t".into()), ("partition", 0.into())])).await;
    let neither = raw.response().await;
    neither.assert_error(4, 42);
    assert!(neither.header.error_message.as_deref().unwrap().contains("`records` or `batch`"), "{neither:?}");
    raw.send(&request(5, "produce", &[("topic", "t".into()), ("batch", "text".into())])).await;
    raw.response().await.assert_error(5, 42);
    assert!(common::stored(&broker, "t", 0).await.is_empty(), "nothing appended");
}

#[tokio::test]
async fn a_broken_batch_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::test_settings(dir.path());
    settings.server.max_records_per_request = 3;
    let broker = TestBroker::start_with(settings);
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 1, vec![("max_message_bytes", 2048.into())]).await;
    let good = batch_of(&["a", "b"]);

    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let truncated = good[..good.len() - 3].to_vec();
    // Three records claimed, two present; the header otherwise consistent.
    let mut miscounted = good.clone();
    miscounted[20..24].copy_from_slice(&2i32.to_be_bytes());
    miscounted[40..44].copy_from_slice(&3i32.to_be_bytes());
    batch::reseal(&mut miscounted);
    let mut unknown_codec = good.clone();
    unknown_codec[17] = 0x06;
    batch::reseal(&mut unknown_codec);
    let too_many = batch_of(&["a", "b", "c", "d"]);
    let late = batch::encode(&[record("a", 1), record("b", MAX_TIMESTAMP_MS + 1)]).unwrap().to_vec();
    let early = batch::encode(&[record("a", -1)]).unwrap().to_vec();
    let cases: [(&str, &[u8], i16); 8] = [
        ("a wrong checksum", &bad_crc, 2),
        ("a truncated batch", &truncated, 2),
        ("a wrong record count", &miscounted, 2),
        ("garbage", b"not a batch", 2),
        ("codec 3", &unknown_codec, 42),
        ("more records than a request may carry", &too_many, 42),
        ("a timestamp after 9999", &late, 32),
        ("a timestamp before 1970", &early, 32),
    ];
    for (n, (case, batch, code)) in cases.into_iter().enumerate() {
        let id = 10 + n as u32;
        raw.send(&produce(id, "t", Some(0), 1, batch)).await;
        let answer = raw.response().await;
        assert_eq!((answer.header.correlation_id, answer.header.error_code), (id, code), "{case}: {answer:?}");
        assert!(!answer.header.error_message.as_deref().unwrap_or_default().is_empty(), "{case}");
    }

    // Over the topic's max_message_bytes: the partition's entry fails.
    let big = "x".repeat(1500);
    raw.send(&produce(30, "t", Some(0), 1, &batch_of(&[&big, &big]))).await;
    let answer = raw.response().await;
    answer.assert_ok(30);
    assert_eq!(entry(&answer), (0, -1, 10));

    assert!(common::stored(&broker, "t", 0).await.is_empty(), "nothing of a refused batch is appended");
    raw.send(&produce(31, "t", Some(0), 1, &good)).await;
    assert_eq!(entry(&raw.response().await), (0, 0, 0), "the next batch takes offset 0");
}

#[tokio::test]
async fn a_log_append_time_topic_stamps_the_batch() {
    let broker = TestBroker::start();
    let config = vec![("message_timestamp_type", "LogAppendTime".into())];
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 1, config).await;
    let before = herald_actors::now_ms();
    raw.send(&produce(3, "t", Some(0), 1, &batch_of(&["a", "b"]))).await;
    raw.response().await.assert_ok(3);
    let bytes = common::stored(&broker, "t", 0).await;
    let header = batch::validate(&bytes).expect("resealed");
    assert!(header.log_append_time());
    assert!(header.max_timestamp >= before && header.max_timestamp <= herald_actors::now_ms());
    let records = batch::decode_all(&bytes).unwrap();
    assert!(records.iter().all(|r| r.timestamp == header.max_timestamp), "{records:?}");
    // A producer may not set the bit itself.
    let mut stamped = batch_of(&["c"]);
    stamped[17] = 0x01;
    batch::reseal(&mut stamped);
    raw.send(&produce(4, "t", Some(0), 1, &stamped)).await;
    raw.response().await.assert_error(4, 42);
}

#[tokio::test]
async fn a_batch_without_a_partition_goes_round_robin() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 2, vec![]).await;
    let mut partitions = Vec::new();
    for id in 3..7 {
        raw.send(&produce(id, "t", None, 1, &batch_of(&["a"]))).await;
        let (partition, _, error) = entry(&raw.response().await);
        assert_eq!(error, 0);
        partitions.push(partition);
    }
    assert_eq!(partitions[0], partitions[2]);
    assert_eq!(partitions[1], partitions[3]);
    assert_ne!(partitions[0], partitions[1], "{partitions:?}");
}

#[tokio::test]
async fn a_batch_with_acks_0_is_appended_unanswered_and_a_bad_one_only_logged() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 1, vec![]).await;
    let mut bad = batch_of(&["x"]);
    bad[50] ^= 1;
    raw.send(&produce(3, "t", Some(0), 0, &bad)).await;
    raw.send(&produce(4, "t", Some(0), 0, &batch_of(&["a", "b"]))).await;
    assert!(raw.response_within(SILENCE).await.is_none(), "acks 0 is never answered");
    raw.send(&request(5, "list_topics", &[])).await;
    raw.response().await.assert_ok(5);
    let records = batch::decode_all(&common::stored(&broker, "t", 0).await).unwrap();
    let values: Vec<_> = records.iter().map(common::text).collect();
    assert_eq!(values, ["a", "b"]);
}

#[tokio::test]
async fn the_rust_client_sends_batches_that_read_back_the_same() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("t", 2, common::config(&[("segment_ms", ConfigValue::Int(3_600_000))])).await.unwrap();
    let mut sent = Vec::new();
    for n in 0..3 {
        let records: Vec<_> = (0..4).map(|i| common::value(format!("{n}-{i}"))).collect();
        sent.extend(records.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned()));
        let answer = client.produce_with_acks("t", Some(1), records, 1).await.unwrap();
        assert_eq!((answer[0].partition, answer[0].base_offset, answer[0].record_count), (1, 4 * n, 4));
    }
    // Keyed records without a partition are routed by key, as maps.
    let keyed = vec![common::keyed("k1", "v1"), common::keyed("k2", "v2")];
    client.produce_with_acks("t", None, keyed, 1).await.unwrap();
    let read = common::read_partition(&client, "t", 1, 0).await;
    let values: Vec<_> = read.iter().filter(|r| r.key.is_none()).map(common::text).collect();
    assert_eq!(values, sent);
    let bytes = common::stored(&broker, "t", 1).await;
    assert_eq!(BatchHeader::parse(&bytes).unwrap().record_count, 4, "one batch per request");
}
