//! Compressed batches (docs/protocol.md, "Record batch format"): the broker
//! checks their header and CRC without decompressing them, stores and serves
//! their bytes as received, and the client decodes them.

mod common;
mod raw;

use std::time::Instant;

use bytes::Bytes;
use common::{text, TestBroker, PATIENCE};
use herald::client::{GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig};
use herald::protocol::WireRecord;
use herald_actors::batch::{self, BatchHeader, Compression, Record, MIN_HEADER_BYTES};
use raw::{get, request, Raw};
use rmpv::Value;

const CODECS: [Compression; 2] = [Compression::Lz4, Compression::Zstd];

/// JSON-ish log lines, `n` of them from number `from`.
fn lines(from: usize, n: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| Record {
            key: Some(Bytes::from(format!("host-{}", i % 5))),
            value: Some(Bytes::from(format!(r#"{{"level":"info","msg":"request {i} served","status":200}}"#))),
            headers: vec![("trace".into(), Bytes::from(format!("{i:08x}")))],
            timestamp: 1_700_000_000_000 + i as i64,
            offset: 0,
        })
        .collect()
}

fn produce(correlation_id: u32, topic: &str, partition: i64, batch: &[u8]) -> Vec<u8> {
    let fields = [
        ("topic", topic.into()),
        ("acks", 1.into()),
        ("partition", partition.into()),
        ("batch", Value::Binary(batch.to_vec())),
    ];
    request(correlation_id, "produce", &fields)
}

/// The one partition entry's error code of a produce response.
fn entry_error(response: &raw::Response) -> i64 {
    let partitions = response.field("partitions").as_array().expect("partitions");
    get(&partitions[0], "error_code").as_i64().expect("error_code")
}

fn with_offsets(records: Vec<Record>, from: i64) -> Vec<Record> {
    records.into_iter().enumerate().map(|(i, r)| Record { offset: from + i as i64, ..r }).collect()
}

#[tokio::test]
async fn the_handshake_lists_the_codecs() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    assert!(client.features().has_compression("lz4") && client.features().has_compression("zstd"));
    let mut raw = Raw::connect(broker.addr()).await;
    raw.send(&raw::handshake(1)).await;
    let answer = raw.response().await;
    assert_eq!(answer.field("compression"), &Value::Array(vec!["lz4".into(), "zstd".into()]));
}

#[tokio::test]
async fn each_codec_is_stored_as_sent_and_read_back_decompressed() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 1, vec![]).await;
    let mut sent = Vec::new();
    for (n, codec) in [Compression::Lz4, Compression::None, Compression::Zstd].into_iter().enumerate() {
        let batch = batch::encode_with(&lines(n * 50, 50), codec).unwrap();
        raw.send(&produce(3 + n as u32, "t", 0, &batch)).await;
        let answer = raw.response().await;
        answer.assert_ok(3 + n as u32);
        assert_eq!(entry_error(&answer), 0);
        sent.push(batch);
    }
    let bytes = common::stored(&broker, "t", 0).await;
    let mut at = 0;
    for (n, batch) in sent.iter().enumerate() {
        let header = BatchHeader::parse(&bytes[at..]).unwrap();
        assert_eq!(header.base_offset, 50 * n as i64);
        assert_eq!(&bytes[at + 8..at + header.total_bytes()], &batch[8..], "batch {n} stored as sent");
        at += header.total_bytes();
    }
    assert_eq!(at, bytes.len());
    let read = common::read_partition(&broker.client().await, "t", 0, 0).await;
    assert_eq!(read, with_offsets(lines(0, 150), 0));
    // A fetch from inside a compressed batch gets the records from there on.
    let fetched = broker.client().await.fetch(&common::fetch_at("t", 0, 60)).await.unwrap();
    assert_eq!((fetched.records[0].offset, text(&fetched.records[0])), (60, text(&lines(60, 1)[0])));
}

#[tokio::test]
async fn a_log_append_time_topic_stamps_a_compressed_batch_and_keeps_its_codec() {
    let broker = TestBroker::start();
    let config = vec![("message_timestamp_type", "LogAppendTime".into())];
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 1, config).await;
    let before = herald_actors::now_ms();
    for (n, codec) in CODECS.into_iter().enumerate() {
        let batch = batch::encode_with(&lines(0, 20), codec).unwrap();
        raw.send(&produce(3 + n as u32, "t", 0, &batch)).await;
        raw.response().await.assert_ok(3 + n as u32);
    }
    let bytes = common::stored(&broker, "t", 0).await;
    let first = batch::validate(&bytes).expect("resealed");
    let second = batch::validate(&bytes[first.total_bytes()..]).expect("resealed");
    for (header, codec) in [(first, Compression::Lz4), (second, Compression::Zstd)] {
        assert!(header.log_append_time());
        assert_eq!(header.compression(), Ok(codec));
        assert!(header.max_timestamp >= before && header.max_timestamp <= herald_actors::now_ms());
    }
    let records = batch::decode_all(&bytes).unwrap();
    assert_eq!(records.len(), 40);
    assert!(records[..20].iter().all(|r| r.timestamp == first.max_timestamp));
    assert!(records[20..].iter().all(|r| r.timestamp == second.max_timestamp));
}

#[tokio::test]
async fn codec_three_and_a_flipped_byte_are_refused_and_nothing_is_appended() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 1, vec![]).await;
    let good = batch::encode_with(&lines(0, 10), Compression::Zstd).unwrap().to_vec();
    let mut codec_three = good.clone();
    codec_three[17] = 0x06;
    batch::reseal(&mut codec_three);
    let mut flipped = good.clone();
    flipped[MIN_HEADER_BYTES + 5] ^= 0x01;
    // The broker does not decompress: a consistent header over a damaged frame
    // (resealed) is stored, and the client's decode refuses it.
    let mut backwards = good.clone();
    backwards[24..32].copy_from_slice(&(1_700_000_000_100i64).to_be_bytes());
    batch::reseal(&mut backwards);
    let cases: [(&str, &[u8], i16); 3] =
        [("codec 3", &codec_three, 42), ("a flipped byte", &flipped, 2), ("base after max timestamp", &backwards, 2)];
    for (n, (case, batch, code)) in cases.into_iter().enumerate() {
        let id = 10 + n as u32;
        raw.send(&produce(id, "t", 0, batch)).await;
        let answer = raw.response().await;
        assert_eq!((answer.header.correlation_id, answer.header.error_code), (id, code), "{case}: {answer:?}");
    }
    assert!(common::stored(&broker, "t", 0).await.is_empty());
    raw.send(&produce(20, "t", 0, &good)).await;
    raw.response().await.assert_ok(20);
}

#[tokio::test]
async fn list_offsets_by_time_answers_a_compressed_batch_with_its_first_offset() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "t", 1, vec![]).await;
    raw.send(&produce(3, "t", 0, &batch::encode_with(&lines(0, 10), Compression::Lz4).unwrap())).await;
    raw.response().await.assert_ok(3);
    raw.send(&request(
        4,
        "list_offsets",
        &[("topic", "t".into()), ("partition", 0.into()), ("timestamp", (1_700_000_000_005i64).into())],
    ))
    .await;
    let answer = raw.response().await;
    answer.assert_ok(4);
    assert_eq!(answer.field("offset").as_i64(), Some(0), "{answer:?}");
}

#[tokio::test]
async fn a_consumer_group_reads_compressed_batches_unchanged() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "g", 2, vec![]).await;
    for (n, codec) in CODECS.into_iter().enumerate() {
        for partition in 0..2 {
            let id = 3 + 2 * n as u32 + partition as u32;
            let batch = batch::encode_with(&lines(100 * n + 10 * partition as usize, 10), codec).unwrap();
            raw.send(&produce(id, "g", partition, &batch)).await;
            raw.response().await.assert_ok(id);
        }
    }
    let config = GroupConsumerConfig::new("readers", &["g"]);
    let mut consumer = GroupConsumer::join(broker.client().await, config).await.unwrap();
    let mut read = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while read.len() < 40 {
        assert!(Instant::now() < deadline, "read {}", read.len());
        read.extend(consumer.poll().await.unwrap().into_iter().map(|r| text(&r.record)));
    }
    read.sort();
    let mut expected: Vec<String> =
        [0, 10, 100, 110].into_iter().flat_map(|from| lines(from, 10)).map(|r| text(&r)).collect();
    expected.sort();
    assert_eq!(read, expected);
    consumer.commit().await.unwrap();
}

/// The codec of every batch stored in partition 0 of `topic`, and their records.
async fn stored_codecs(broker: &TestBroker, topic: &str) -> (Vec<Compression>, Vec<Record>) {
    let bytes = common::stored(broker, topic, 0).await;
    let (mut codecs, mut rest) = (Vec::new(), &bytes[..]);
    while !rest.is_empty() {
        let header = batch::validate(rest).unwrap();
        codecs.push(header.compression().unwrap());
        rest = &rest[header.total_bytes()..];
    }
    (codecs, batch::decode_all(&bytes).unwrap())
}

#[tokio::test]
async fn the_producer_compresses_with_its_codec() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let topic = format!("p-{}", codec.name());
        client.create_topic(&topic, 1, Default::default()).await.unwrap();
        let config = ProducerConfig { compression: codec, linger_ms: 50, ..ProducerConfig::default() };
        let producer = Producer::new(client.clone(), config);
        let mut pending = Vec::new();
        for record in lines(0, 300) {
            let record = WireRecord {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp: Some(record.timestamp),
            };
            pending.push(producer.send(&topic, Some(0), record).await.unwrap());
        }
        producer.flush().await.unwrap();
        for reply in pending {
            reply.await.unwrap().unwrap();
        }
        let (codecs, records) = stored_codecs(&broker, &topic).await;
        assert!(!codecs.is_empty() && codecs.iter().all(|c| *c == codec), "{codec:?}: {codecs:?}");
        assert_eq!(records, with_offsets(lines(0, 300), 0), "{codec:?}");
    }
}

#[tokio::test]
async fn herald_produce_takes_a_compression_flag() {
    let broker = TestBroker::start();
    broker.client().await.create_topic("cli", 1, Default::default()).await.unwrap();
    let input: String = (0..100).map(|i| format!(r#"{{"n":{i},"msg":"a log line"}}"#) + "\n").collect();
    let mut child = std::process::Command::new(common::herald_bin())
        .args(["produce", "cli", "--compression", "lz4", "--no-progress", "--broker", &broker.addr().to_string()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (codecs, records) = stored_codecs(&broker, "cli").await;
    assert!(!codecs.is_empty() && codecs.iter().all(|c| *c == Compression::Lz4), "{codecs:?}");
    let values: Vec<String> = records.iter().map(text).collect();
    assert_eq!(values, input.lines().collect::<Vec<_>>());
}
