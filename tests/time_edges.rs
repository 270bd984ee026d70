//! Time at the edges: list_offsets by timestamp over records at both ends of
//! the accepted range (0 and 253402300799999), and over a stored batch whose
//! timestamp deltas overflow an i64 (as an older broker could have written).

mod common;

use std::collections::BTreeMap;

use common::{value, TestBroker};
use herald::protocol::WireRecord;
use herald_actors::batch::{self, BatchHeader, MIN_HEADER_BYTES};

/// The largest timestamp a produce accepts: 9999-12-31T23:59:59.999Z.
const MAX_ACCEPTED: i64 = 253_402_300_799_999;

fn at(timestamp: i64, v: &str) -> WireRecord {
    WireRecord { timestamp: Some(timestamp), ..value(v) }
}

#[tokio::test]
async fn list_offsets_by_time_answers_at_the_edges_of_the_range() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("edges", 1, BTreeMap::new()).await.unwrap();
    // Offsets 0..=5; batches: [0, 0, 1] [MAX-1, MAX] [0].
    client.produce("edges", Some(0), vec![at(0, "a"), at(0, "b"), at(1, "c")]).await.unwrap();
    client.produce("edges", Some(0), vec![at(MAX_ACCEPTED - 1, "d"), at(MAX_ACCEPTED, "e")]).await.unwrap();
    client.produce("edges", Some(0), vec![at(0, "f")]).await.unwrap();

    for (timestamp, expected) in
        [(0, 0), (1, 2), (2, 3), (MAX_ACCEPTED - 1, 3), (MAX_ACCEPTED, 4), (MAX_ACCEPTED + 1, -1), (i64::MAX, -1)]
    {
        assert_eq!(client.list_offsets("edges", 0, timestamp).await.unwrap(), expected, "timestamp {timestamp}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_stored_batch_whose_deltas_overflow_is_found_by_its_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = TestBroker::start_in(dir.path());
        let client = broker.client().await;
        client.create_topic("old", 1, BTreeMap::new()).await.unwrap();
        client.produce("old", Some(0), vec![at(5, "a")]).await.unwrap();
        client.produce("old", Some(0), vec![at(10, "b"), at(20, "c")]).await.unwrap();
        client.produce("old", Some(0), vec![at(30, "d")]).await.unwrap();
        broker.stop().await;
    }
    // Rewrite the second batch as a wrapping encoder would have written
    // timestamps i64::MIN and 20: base i64::MIN, deltas 0 and 20 - i64::MIN
    // (wrapped). Its max timestamp, 20, stays, and so does the time index.
    let segment = dir.path().join("topics/old/0").join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let first = BatchHeader::parse(&bytes[..MIN_HEADER_BYTES]).unwrap().total_bytes();
    let second = &mut bytes[first..];
    let length = BatchHeader::parse(&second[..MIN_HEADER_BYTES]).unwrap().total_bytes();
    second[24..32].copy_from_slice(&i64::MIN.to_be_bytes());
    let mut position = MIN_HEADER_BYTES;
    for timestamp in [i64::MIN, 20] {
        let record_length = i32::from_be_bytes(second[position..position + 4].try_into().unwrap()) as usize;
        let delta = timestamp.wrapping_sub(i64::MIN);
        second[position + 8..position + 16].copy_from_slice(&delta.to_be_bytes());
        position += 4 + record_length;
    }
    batch::reseal(&mut second[..length]);
    assert!(batch::decode_all(&second[..length]).is_err(), "20 - i64::MIN does not fit: the batch is malformed");
    std::fs::write(&segment, &bytes).unwrap();

    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    for (timestamp, expected) in [(0, 0), (5, 0), (6, 1), (20, 1), (21, 3), (30, 3), (31, -1), (i64::MAX, -1)] {
        assert_eq!(client.list_offsets("old", 0, timestamp).await.unwrap(), expected, "timestamp {timestamp}");
    }
    broker.stop().await;
}
