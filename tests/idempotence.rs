//! The idempotent producer through the real broker (docs/protocol.md,
//! "Idempotent producers"): a batch sent twice, because its acknowledgement
//! was lost or the broker died between the append and the retry, is stored
//! once and both answers carry the same offsets; producer ids are never
//! given twice by one data directory.

mod common;
mod raw;

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use common::{read_partition, text, BinaryBroker, TestBroker};
use herald::client::{Producer, ProducerConfig};
use herald::protocol::WireRecord;
use herald_actors::batch::{BatchHeader, BatchPlan, BatchProducer, Record, RecordParts, MAGIC_V2};
use raw::{get, request, Raw};
use rmpv::Value;
use tokio::task::block_in_place;

/// A magic 2 batch of `values` from producer `id`, epoch 0, at `sequence`.
fn batch(id: i64, sequence: i32, values: &[&str]) -> Vec<u8> {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record { value: Some(Bytes::copy_from_slice(v.as_bytes())), timestamp: 1_000, ..Default::default() })
        .collect();
    let producer = BatchProducer { producer_id: id, producer_epoch: 0, base_sequence: sequence };
    let plan = BatchPlan::of(records.iter().map(RecordParts::from)).unwrap().with_producer(Some(producer)).unwrap();
    let mut out = BytesMut::new();
    plan.encode_into(&mut out, records.iter().map(RecordParts::from));
    out.to_vec()
}

fn produce_frame(correlation_id: u32, topic: &str, batch: Vec<u8>) -> Vec<u8> {
    let fields =
        [("topic", topic.into()), ("partition", 0.into()), ("acks", 1.into()), ("batch", Value::Binary(batch))];
    request(correlation_id, "produce", &fields)
}

async fn producer_id(raw: &mut Raw, correlation_id: u32) -> i64 {
    raw.send(&request(correlation_id, "init_producer_id", &[])).await;
    let response = raw.response().await;
    response.assert_ok(correlation_id);
    assert_eq!(response.field("producer_epoch").as_i64(), Some(0));
    response.field("producer_id").as_i64().expect("a producer id")
}

/// Sends `frame` and returns the partition's (error_code, base_offset).
async fn produce(raw: &mut Raw, correlation_id: u32, frame: &[u8]) -> (i64, i64) {
    raw.send(frame).await;
    let response = raw.response().await;
    response.assert_ok(correlation_id);
    let partition = &response.field("partitions").as_array().expect("partitions")[0];
    (get(partition, "error_code").as_i64().unwrap(), get(partition, "base_offset").as_i64().unwrap())
}

async fn values(broker_client: &herald::client::Client, topic: &str) -> Vec<String> {
    read_partition(broker_client, topic, 0, 0).await.iter().map(text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_acknowledgement_was_lost_is_stored_once() {
    let broker = TestBroker::start();
    let mut raw = Raw::ready_with_topic(broker.addr(), "idem", 1, vec![]).await;
    let id = producer_id(&mut raw, 3).await;
    let first = produce_frame(4, "idem", batch(id, 0, &["a", "b"]));
    assert_eq!(produce(&mut raw, 4, &first).await, (0, 0));
    // The same frame again, as a producer that never saw the answer sends it.
    assert_eq!(produce(&mut raw, 4, &first).await, (0, 0));
    assert_eq!(produce(&mut raw, 5, &produce_frame(5, "idem", batch(id, 2, &["c"]))).await, (0, 2));
    assert_eq!(produce(&mut raw, 4, &first).await, (0, 0));
    // A gap, and a sequence already passed, are refused.
    let gap = produce(&mut raw, 6, &produce_frame(6, "idem", batch(id, 5, &["lost"]))).await;
    assert_eq!(gap, (45, -1));
    let client = broker.client().await;
    assert_eq!(values(&client, "idem").await, ["a", "b", "c"]);
    let stored = client.fetch_raw(&common::fetch_at("idem", 0, 0)).await.unwrap().records;
    assert_eq!(BatchHeader::parse(&stored).unwrap().magic, MAGIC_V2, "stored as sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_broker_was_killed_is_stored_once() {
    let root = tempfile::tempdir().unwrap();
    let broker = block_in_place(|| BinaryBroker::start(root.path()));
    let mut raw = Raw::ready_with_topic(broker.addr(), "idem", 1, vec![]).await;
    let id = producer_id(&mut raw, 3).await;
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|i| produce_frame(10 + i, "idem", batch(id, i as i32 * 2, &[&format!("r{i}a"), &format!("r{i}b")])))
        .collect();
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(produce(&mut raw, 10 + i as u32, frame).await, (0, 2 * i as i64));
    }
    block_in_place(|| broker.kill());

    let broker = block_in_place(|| BinaryBroker::start(root.path()));
    let mut raw = Raw::ready(broker.addr()).await;
    // Every batch still kept by the partition is answered as first appended.
    for (i, frame) in frames.iter().enumerate().skip(1) {
        assert_eq!(produce(&mut raw, 10 + i as u32, frame).await, (0, 2 * i as i64), "retry of batch {i}");
    }
    let next = produce_frame(20, "idem", batch(id, 8, &["after"]));
    assert_eq!(produce(&mut raw, 20, &next).await, (0, 8));
    let client = broker.client().await;
    let stored = values(&client, "idem").await;
    assert_eq!(stored, ["r0a", "r0b", "r1a", "r1b", "r2a", "r2b", "r3a", "r3b", "after"]);
    block_in_place(|| broker.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_unique_across_restarts() {
    let root = tempfile::tempdir().unwrap();
    let mut seen = BTreeSet::new();
    for round in 0..3 {
        let broker = block_in_place(|| BinaryBroker::start(root.path()));
        let mut raw = Raw::ready(broker.addr()).await;
        for i in 0..3 {
            let id = producer_id(&mut raw, 2 + i).await;
            assert!(id >= 0 && seen.insert(id), "round {round}: id {id} given twice");
        }
        match round {
            0 => block_in_place(|| broker.kill()),
            _ => assert!(block_in_place(|| broker.terminate()).success()),
        }
    }
    assert_eq!(seen.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_is_idempotent_by_default_and_can_be_turned_off() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    for (topic, idempotent) in [("on", true), ("off", false)] {
        client.create_topic(topic, 1, Default::default()).await.unwrap();
        let config = ProducerConfig { idempotent, linger_ms: 0, ..Default::default() };
        let producer = Producer::new(broker.client().await, config);
        let mut answers = Vec::new();
        for i in 0..20 {
            let record = WireRecord { value: Some(Bytes::from(format!("v{i}"))), ..Default::default() };
            answers.push(producer.send(topic, Some(0), record).await.unwrap());
        }
        producer.flush().await.unwrap();
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap().unwrap().offset, i as i64);
        }
        let stored = client.fetch_raw(&common::fetch_at(topic, 0, 0)).await.unwrap().records;
        let header = BatchHeader::parse(&stored).unwrap();
        assert_eq!(header.producer().is_some(), idempotent, "{topic}: {header:?}");
        assert_eq!(values(&client, topic).await.len(), 20);
    }
}
