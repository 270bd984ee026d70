//! Producing and fetching through the real client: ordering, offsets, record
//! contents, the partitioner, list_offsets, timestamps and size limits.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::{config, fetch_at, keyed, read_partition, text, value, TestBroker};
use futures::future::join_all;
use herald::client::{Client, ClientError};
use herald::protocol::{op, ConfigValue, FetchRequest, ProduceRequest, ProduceResponse, ResponseHeader, WireRecord};
use herald_actors::batch::BatchHeader;
use herald_actors::now_ms;
use herald_actors::partitioner::partition_for_key;
use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> i16 {
    match result {
        Ok(ok) => panic!("expected an error, got {ok:?}"),
        Err(err) => err.code().unwrap_or_else(|| panic!("expected a broker error, got {err}")),
    }
}

/// The headers of the whole batches in a fetch response's `records`.
fn batch_headers(mut records: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    while let Ok(header) = BatchHeader::parse(records) {
        if records.len() < header.total_bytes() {
            break;
        }
        records = &records[header.total_bytes()..];
        out.push(header);
    }
    assert!(records.is_empty(), "a fetch returns whole batches only");
    out
}

/// Sends a produce request as it is and returns the per-partition results,
/// errors included (the client's `produce` stops at the first error).
async fn produce_raw(client: &Client, request: ProduceRequest) -> Result<ProduceResponse, ClientError> {
    client.request(op::PRODUCE, &request).await
}

#[tokio::test]
async fn pipelined_batches_keep_their_order_and_offsets_have_no_gaps() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("ordered", 1, BTreeMap::new()).await.unwrap();

    // 200 batches of 1 to 7 records, all queued on the connection before the
    // first answer arrives.
    let mut sent = Vec::new();
    let mut pending = Vec::new();
    for b in 0..200 {
        let batch: Vec<String> = (0..(b % 7 + 1)).map(|i| format!("b{b}-r{i}")).collect();
        let records = batch.iter().map(value).collect();
        pending.push(client.start_produce("ordered", Some(0), records, 1).unwrap());
        sent.push(batch);
    }
    let answers = join_all(pending).await;

    let mut expected_base = 0;
    for (batch, answer) in sent.iter().zip(answers) {
        let answer = answer.unwrap();
        assert_eq!(answer.len(), 1);
        assert_eq!(answer[0].partition, 0);
        assert_eq!(answer[0].base_offset, expected_base, "batches get consecutive offsets in the order sent");
        assert_eq!(answer[0].record_count as usize, batch.len());
        expected_base += batch.len() as i64;
    }

    let read = read_partition(&client, "ordered", 0, 0).await;
    let offsets: Vec<i64> = read.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..expected_base).collect::<Vec<_>>());
    let values: Vec<String> = read.iter().map(text).collect();
    assert_eq!(values, sent.concat());
    broker.stop().await;
}

#[tokio::test]
async fn several_partitions_and_connections_at_once() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("spread", 4, BTreeMap::new()).await.unwrap();

    // One connection per partition, all producing at the same time, each
    // pipelining 50 batches of 3 records.
    let producers = (0..4u32).map(|partition| {
        let addr = broker.addr();
        async move {
            let client = Client::connect(addr, "producer").await.unwrap();
            let pending: Vec<_> = (0..50)
                .map(|b| {
                    let records = (0..3).map(|i| value(format!("p{partition}-b{b}-r{i}"))).collect();
                    client.start_produce("spread", Some(partition), records, -1).unwrap()
                })
                .collect();
            join_all(pending).await.into_iter().map(|r| r.unwrap()[0].base_offset).collect::<Vec<_>>()
        }
    });
    for bases in join_all(producers).await {
        assert_eq!(bases, (0..50).map(|b| b * 3).collect::<Vec<i64>>());
    }

    let described = admin.describe_topic("spread").await.unwrap();
    for partition in 0..4u32 {
        assert_eq!(described.partitions[partition as usize].log_end_offset, 150);
        let read = read_partition(&admin, "spread", partition, 0).await;
        let expected: Vec<String> =
            (0..50).flat_map(|b| (0..3).map(move |i| format!("p{partition}-b{b}-r{i}"))).collect();
        assert_eq!(read.iter().map(text).collect::<Vec<_>>(), expected, "partition {partition}");
        assert_eq!(read.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..150).collect::<Vec<_>>());
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_fetch_from_the_middle_of_a_batch_starts_at_that_offset() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("middle", 1, BTreeMap::new()).await.unwrap();
    client.produce("middle", Some(0), (0..10).map(|i| value(format!("v{i}"))).collect()).await.unwrap();
    client.produce("middle", Some(0), (10..15).map(|i| value(format!("v{i}"))).collect()).await.unwrap();

    // The broker returns the batch containing the offset, from its start.
    let raw = client.fetch_raw(&fetch_at("middle", 0, 5)).await.unwrap();
    let headers = batch_headers(&raw.records);
    assert_eq!(headers.iter().map(|h| (h.base_offset, h.record_count)).collect::<Vec<_>>(), [(0, 10), (10, 5)]);

    // The client skips what precedes the offset asked for.
    let fetched = client.fetch(&fetch_at("middle", 0, 5)).await.unwrap();
    assert_eq!(fetched.records.iter().map(|r| r.offset).collect::<Vec<_>>(), (5..15).collect::<Vec<_>>());
    assert_eq!(text(&fetched.records[0]), "v5");
    assert_eq!(fetched.high_watermark, 15);

    let fetched = client.fetch(&fetch_at("middle", 0, 14)).await.unwrap();
    assert_eq!(fetched.records.iter().map(text).collect::<Vec<_>>(), ["v14"]);
    broker.stop().await;
}

#[tokio::test]
async fn max_bytes_is_a_soft_limit_of_whole_batches() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("limited", 1, BTreeMap::new()).await.unwrap();
    let payload = "x".repeat(1000);
    for _ in 0..10 {
        client.produce("limited", Some(0), vec![value(&payload), value(&payload)]).await.unwrap();
    }
    let whole = client.fetch_raw(&fetch_at("limited", 0, 0)).await.unwrap();
    let all = batch_headers(&whole.records);
    assert_eq!(all.len(), 10);
    let batch_bytes = all[0].total_bytes() as u64;

    let with_limit = |max_bytes: u64, offset: i64| FetchRequest { max_bytes, ..fetch_at("limited", 0, offset) };

    // Smaller than one batch: that one batch anyway.
    let one = client.fetch_raw(&with_limit(1, 0)).await.unwrap();
    assert_eq!(batch_headers(&one.records).iter().map(|h| h.base_offset).collect::<Vec<_>>(), [0]);
    let one = client.fetch_raw(&with_limit(1, 7)).await.unwrap();
    assert_eq!(batch_headers(&one.records).iter().map(|h| h.base_offset).collect::<Vec<_>>(), [6]);

    // Two and a half batches' worth: two whole batches, never a partial one.
    let two = client.fetch_raw(&with_limit(batch_bytes * 5 / 2, 0)).await.unwrap();
    assert_eq!(two.records.len() as u64, 2 * batch_bytes);
    assert_eq!(batch_headers(&two.records).len(), 2);

    // Exactly three batches' worth: three.
    let three = client.fetch_raw(&with_limit(batch_bytes * 3, 4)).await.unwrap();
    assert_eq!(batch_headers(&three.records).iter().map(|h| h.base_offset).collect::<Vec<_>>(), [4, 6, 8]);
    broker.stop().await;
}

#[tokio::test]
async fn offsets_outside_the_log_are_out_of_range() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("bounded", 1, BTreeMap::new()).await.unwrap();

    // An empty log: 0 is its end, and so in range.
    let empty = client.fetch(&fetch_at("bounded", 0, 0)).await.unwrap();
    assert!(empty.records.is_empty());
    assert_eq!(code(client.fetch(&fetch_at("bounded", 0, 1)).await), 1);

    client.produce("bounded", Some(0), (0..10).map(|i| value(format!("{i}"))).collect()).await.unwrap();
    assert_eq!(code(client.fetch(&fetch_at("bounded", 0, -1)).await), 1, "below the log start");
    assert_eq!(code(client.fetch(&fetch_at("bounded", 0, 11)).await), 1, "above the log end");
    assert_eq!(code(client.fetch(&fetch_at("bounded", 0, i64::MAX)).await), 1);
    let at_end = client.fetch(&fetch_at("bounded", 0, 10)).await.unwrap();
    assert!(at_end.records.is_empty(), "the log end itself is in range, with nothing to read");
    assert_eq!((at_end.high_watermark, at_end.log_start_offset), (10, 0));
    broker.stop().await;
}

#[tokio::test]
async fn retention_moves_the_log_start_and_older_offsets_become_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::test_settings(dir.path());
    settings.storage.retention_check_interval_ms = 20;
    let broker = TestBroker::start_with(settings);
    let client = broker.client().await;
    let small = config(&[
        ("segment_max_bytes", ConfigValue::Int(1024)),
        ("max_message_bytes", ConfigValue::Int(1024)),
        ("retention_bytes", ConfigValue::Int(2048)),
    ]);
    client.create_topic("retained", 1, small).await.unwrap();
    let payload = "r".repeat(300);
    for i in 0..30 {
        client.produce("retained", Some(0), vec![value(format!("{i}:{payload}"))]).await.unwrap();
    }

    // Retention runs on the partition's timer (possibly while the produces
    // above still ran) and removes segments one at a time; there is no event
    // to wait on, so poll until it has brought the partition under its limit
    // plus one segment and the log start has stayed put for a few polls.
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    let mut settled = (0, 0);
    let start = loop {
        let p = client.describe_topic("retained").await.unwrap().partitions[0].clone();
        if p.log_start_offset > 0 && p.size_bytes < 2048 + 1024 {
            assert!(p.size_bytes >= 2048, "retention keeps at least retention_bytes: {p:?}");
            assert_eq!(p.log_end_offset, 30, "retention never touches the end: {p:?}");
            settled =
                if settled.0 == p.log_start_offset { (settled.0, settled.1 + 1) } else { (p.log_start_offset, 0) };
            if settled.1 == 5 {
                break p.log_start_offset;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "retention never settled: {p:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    assert_eq!(client.list_offsets("retained", 0, -2).await.unwrap(), start);
    assert_eq!(code(client.fetch(&fetch_at("retained", 0, start - 1)).await), 1);
    assert_eq!(code(client.fetch(&fetch_at("retained", 0, 0)).await), 1);
    let read = read_partition(&client, "retained", 0, start).await;
    assert_eq!(read.first().map(|r| r.offset), Some(start));
    assert_eq!(read.last().map(|r| r.offset), Some(29));
    assert!(text(&read[0]).starts_with(&format!("{start}:")));
    broker.stop().await;
}

#[tokio::test]
async fn keys_headers_timestamps_and_tombstones_round_trip() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("shapes", 1, BTreeMap::new()).await.unwrap();

    let b = |s: &[u8]| Bytes::copy_from_slice(s);
    let sent = vec![
        WireRecord {
            key: Some(b(b"user-1")),
            value: Some(b(b"{\"name\":\"Ada\"}")),
            headers: vec![("trace".into(), b(b"abc")), ("trace".into(), b(b"def")), ("empty".into(), b(b""))],
            timestamp: Some(1_600_000_000_123),
        },
        // A tombstone: a key and no value.
        WireRecord { key: Some(b(b"user-1")), value: None, headers: vec![], timestamp: Some(1_600_000_000_000) },
        // An empty key and an empty value are not absent ones.
        WireRecord { key: Some(b(b"")), value: Some(b(b"")), headers: vec![], timestamp: Some(1) },
        // Binary bytes of every value survive.
        WireRecord {
            key: None,
            value: Some(Bytes::from((0..=255u8).collect::<Vec<_>>())),
            headers: vec![("bin".into(), Bytes::from(vec![0u8, 255, 0]))],
            timestamp: Some(1_600_000_009_999),
        },
    ];
    client.produce("shapes", Some(0), sent.clone()).await.unwrap();
    // Without a timestamp, the broker's clock stamps the record.
    let before = now_ms();
    client.produce("shapes", Some(0), vec![value("now")]).await.unwrap();
    let after = now_ms();

    let read = read_partition(&client, "shapes", 0, 0).await;
    assert_eq!(read.len(), 5);
    for (got, want) in read.iter().zip(&sent) {
        assert_eq!(got.key, want.key);
        assert_eq!(got.value, want.value);
        assert_eq!(got.headers, want.headers);
        assert_eq!(Some(got.timestamp), want.timestamp);
    }
    assert!(read[1].value.is_none(), "a tombstone stays a tombstone");
    assert!(read[3].key.is_none(), "no key stays no key");
    assert!((before..=after).contains(&read[4].timestamp), "{before} <= {} <= {after}", read[4].timestamp);
    broker.stop().await;
}

#[tokio::test]
async fn keyed_records_land_on_kafkas_partition_and_keyless_ones_rotate() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("routed", 6, BTreeMap::new()).await.unwrap();

    let keys: Vec<String> = (0..120).map(|i| format!("customer-{i}")).collect();
    let answer = client.produce("routed", None, keys.iter().map(|k| keyed(k, k)).collect()).await.unwrap();
    assert_eq!(answer.iter().map(|p| p.record_count).sum::<u32>(), 120);
    assert!(answer.len() > 1, "120 keys spread over several partitions");

    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for key in &keys {
        expected.entry(partition_for_key(key.as_bytes(), 6)).or_default().push(key.clone());
    }
    for partition in 0..6 {
        let read = read_partition(&client, "routed", partition, 0).await;
        let got: Vec<String> = read.iter().map(text).collect();
        assert_eq!(got, expected.remove(&partition).unwrap_or_default(), "partition {partition}, in request order");
        for record in &read {
            assert_eq!(partition_for_key(record.key.as_ref().unwrap(), 6), partition);
        }
    }

    // Keyless records: one partition per request, the next request the next one.
    let mut landed = Vec::new();
    for i in 0..6 {
        let answer = client.produce("routed", None, vec![value(format!("a{i}")), value(format!("b{i}"))]).await;
        let answer = answer.unwrap();
        assert_eq!(answer.len(), 1, "a request's keyless records stay together");
        assert_eq!(answer[0].record_count, 2);
        landed.push(answer[0].partition);
    }
    landed.sort_unstable();
    assert_eq!(landed, [0, 1, 2, 3, 4, 5], "round robin over requests");
    broker.stop().await;
}

#[tokio::test]
async fn list_offsets_finds_earliest_latest_and_by_timestamp() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("timed", 1, BTreeMap::new()).await.unwrap();
    assert_eq!(client.list_offsets("timed", 0, -2).await.unwrap(), 0);
    assert_eq!(client.list_offsets("timed", 0, -1).await.unwrap(), 0);
    assert_eq!(client.list_offsets("timed", 0, 1).await.unwrap(), -1, "no record at all");

    let base = 1_700_000_000_000_i64;
    // Ten batches of three records, one second apart per record.
    for b in 0..10 {
        let records = (0..3)
            .map(|i| {
                let n = b * 3 + i;
                WireRecord { timestamp: Some(base + n * 1000), ..value(format!("{n}")) }
            })
            .collect();
        client.produce("timed", Some(0), records).await.unwrap();
    }

    assert_eq!(client.list_offsets("timed", 0, -2).await.unwrap(), 0);
    assert_eq!(client.list_offsets("timed", 0, -1).await.unwrap(), 30);
    assert_eq!(client.list_offsets("timed", 0, 0).await.unwrap(), 0);
    assert_eq!(client.list_offsets("timed", 0, base).await.unwrap(), 0);
    assert_eq!(client.list_offsets("timed", 0, base + 1).await.unwrap(), 1);
    assert_eq!(client.list_offsets("timed", 0, base + 13_000).await.unwrap(), 13, "inside a batch");
    assert_eq!(client.list_offsets("timed", 0, base + 13_500).await.unwrap(), 14);
    assert_eq!(client.list_offsets("timed", 0, base + 29_000).await.unwrap(), 29);
    assert_eq!(client.list_offsets("timed", 0, base + 29_001).await.unwrap(), -1, "after the last record");

    // "Latest" right after an acknowledged produce includes it.
    client.produce("timed", Some(0), vec![value("late")]).await.unwrap();
    assert_eq!(client.list_offsets("timed", 0, -1).await.unwrap(), 31);
    broker.stop().await;
}

#[tokio::test]
async fn log_append_time_topics_are_stamped_with_the_brokers_clock() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    let broker_time = config(&[("message_timestamp_type", ConfigValue::Str("LogAppendTime".into()))]);
    client.create_topic("stamped", 1, broker_time).await.unwrap();
    client.create_topic("kept", 1, BTreeMap::new()).await.unwrap();

    let old = |v: &str| WireRecord { timestamp: Some(1_000), ..value(v) };
    let before = now_ms();
    client.produce("stamped", Some(0), vec![old("a"), old("b"), value("c")]).await.unwrap();
    let after = now_ms();
    client.produce("kept", Some(0), vec![old("a")]).await.unwrap();

    let read = read_partition(&client, "stamped", 0, 0).await;
    assert_eq!(read.len(), 3);
    let stamp = read[0].timestamp;
    assert!((before..=after).contains(&stamp), "{before} <= {stamp} <= {after}");
    assert!(read.iter().all(|r| r.timestamp == stamp), "one broker time for the whole batch: {read:?}");
    let raw = client.fetch_raw(&fetch_at("stamped", 0, 0)).await.unwrap();
    assert!(batch_headers(&raw.records)[0].log_append_time(), "the batch says whose time it is");

    let kept = read_partition(&client, "kept", 0, 0).await;
    assert_eq!(kept[0].timestamp, 1_000, "CreateTime keeps the producer's timestamp");
    let raw = client.fetch_raw(&fetch_at("kept", 0, 0)).await.unwrap();
    assert!(!batch_headers(&raw.records)[0].log_append_time());

    // Lookups by time use the broker's stamp.
    assert_eq!(client.list_offsets("stamped", 0, 1_000).await.unwrap(), 0);
    assert_eq!(client.list_offsets("stamped", 0, after + 60_000).await.unwrap(), -1);
    broker.stop().await;
}

#[tokio::test]
async fn a_batch_over_max_message_bytes_is_refused_and_nothing_is_appended() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("capped", 2, config(&[("max_message_bytes", ConfigValue::Int(1024))])).await.unwrap();

    let big = "B".repeat(1100);
    assert_eq!(code(client.produce("capped", Some(0), vec![value(&big)]).await), 10);
    // Many small records that add up to a batch over the limit.
    let many: Vec<WireRecord> = (0..40).map(|i| value(format!("small-{i:04}-{}", "s".repeat(20)))).collect();
    assert_eq!(code(client.produce("capped", Some(0), many).await), 10);
    let p0 = &client.describe_topic("capped").await.unwrap().partitions[0];
    assert_eq!((p0.log_end_offset, p0.size_bytes), (0, 0), "nothing appended");

    // Per partition: the small batch goes in, the big one is refused.
    let k0 = (0..).map(|i| format!("k{i}")).find(|k| partition_for_key(k.as_bytes(), 2) == 0).unwrap();
    let k1 = (0..).map(|i| format!("k{i}")).find(|k| partition_for_key(k.as_bytes(), 2) == 1).unwrap();
    let request = ProduceRequest {
        topic: "capped".into(),
        partition: None,
        acks: 1,
        records: vec![keyed(&k0, "fits"), keyed(&k1, &big)],
        batch: None,
    };
    let answer = produce_raw(&client, request).await.unwrap();
    let by_partition: BTreeMap<u32, (i64, i16)> =
        answer.partitions.iter().map(|p| (p.partition, (p.base_offset, p.error_code))).collect();
    assert_eq!(by_partition, BTreeMap::from([(0, (0, 0)), (1, (-1, 10))]));
    assert!(answer.partitions.iter().find(|p| p.partition == 1).unwrap().error_message.is_some());

    let described = client.describe_topic("capped").await.unwrap();
    assert_eq!(described.partitions[0].log_end_offset, 1);
    assert_eq!(described.partitions[1].log_end_offset, 0);
    let read = read_partition(&client, "capped", 0, 0).await;
    assert_eq!(read.iter().map(text).collect::<Vec<_>>(), ["fits"]);

    // A batch under the limit still goes in after the refusals.
    let written = client.produce("capped", Some(1), vec![value("small")]).await.unwrap();
    assert_eq!(written[0].base_offset, 0);
    broker.stop().await;
}

#[tokio::test]
async fn acks_zero_appends_without_answering_and_bad_requests_are_refused() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("quiet", 1, BTreeMap::new()).await.unwrap();

    for i in 0..5 {
        client.produce_with_acks("quiet", Some(0), vec![value(format!("q{i}"))], 0).await.unwrap();
    }
    // Requests on one connection and partition run in order: this one follows them.
    let answer = client.produce("quiet", Some(0), vec![value("loud")]).await.unwrap();
    assert_eq!(answer[0].base_offset, 5);
    let read = read_partition(&client, "quiet", 0, 0).await;
    assert_eq!(read.iter().map(text).collect::<Vec<_>>(), ["q0", "q1", "q2", "q3", "q4", "loud"]);

    assert_eq!(code(client.produce_with_acks("quiet", Some(0), vec![value("x")], 2).await), 21);
    assert_eq!(code(client.produce_with_acks("quiet", Some(0), vec![value("x")], -2).await), 21);
    assert_eq!(code(client.produce("quiet", Some(0), vec![]).await), 42, "no records");
    assert_eq!(code(client.produce("quiet", None, vec![]).await), 42, "no records");
    assert_eq!(client.list_offsets("quiet", 0, -1).await.unwrap(), 6, "nothing refused was appended");

    // On the wire: no response at all for acks 0, not even for an error; the
    // next frame the broker sends answers the request after them.
    let mut raw = TcpStream::connect(broker.addr()).await.unwrap();
    let handshake = [("client_id", Value::from("raw")), ("protocol_version", Value::from(1))];
    assert_eq!(raw_exchange(&mut raw, 1, "handshake", &handshake).await.correlation_id, 1);
    let record = Value::Map(vec![(Value::from("value"), Value::Binary(b"silent".to_vec()))]);
    let quiet = |topic: &str| {
        vec![
            ("topic", Value::from(topic)),
            ("partition", Value::from(0)),
            ("acks", Value::from(0)),
            ("records", Value::Array(vec![record.clone()])),
        ]
    };
    raw_send(&mut raw, 2, "produce", &quiet("quiet")).await;
    raw_send(&mut raw, 3, "produce", &quiet("no-such-topic")).await;
    let next = raw_exchange(&mut raw, 4, "list_topics", &[]).await;
    assert_eq!((next.correlation_id, next.error_code), (4, 0));
    assert_eq!(client.list_offsets("quiet", 0, -1).await.unwrap(), 7, "the raw acks-0 record was appended");
    broker.stop().await;
}

/// Sends one request as a raw frame: a MessagePack map of `correlation_id`,
/// `op` and `fields`.
async fn raw_send(stream: &mut TcpStream, correlation_id: u32, op: &str, fields: &[(&str, Value)]) {
    let mut map =
        vec![(Value::from("correlation_id"), Value::from(correlation_id)), (Value::from("op"), Value::from(op))];
    map.extend(fields.iter().map(|(k, v)| (Value::from(*k), v.clone())));
    let mut payload = Vec::new();
    rmpv::encode::write_value(&mut payload, &Value::Map(map)).unwrap();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    stream.write_all(&frame).await.unwrap();
}

/// Sends one request and reads the next response frame's header.
async fn raw_exchange(
    stream: &mut TcpStream,
    correlation_id: u32,
    op: &str,
    fields: &[(&str, Value)],
) -> ResponseHeader {
    raw_send(stream, correlation_id, op, fields).await;
    let read = async {
        let mut length = [0u8; 4];
        stream.read_exact(&mut length).await?;
        let mut payload = vec![0u8; u32::from_be_bytes(length) as usize];
        stream.read_exact(&mut payload).await?;
        Ok::<_, std::io::Error>(payload)
    };
    let payload = tokio::time::timeout(common::PATIENCE, read).await.expect("a response in time").unwrap();
    rmp_serde::from_slice(&payload).expect("a response header")
}
