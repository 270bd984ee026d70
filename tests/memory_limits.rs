//! A hostile client cannot hold the broker's memory without bound: a client
//! that does not read is paused then closed (`server.write_stall_timeout_ms`),
//! a handshake or frame that does not arrive in time closes the connection
//! (`server.handshake_timeout_ms`, `server.frame_timeout_ms`), a produce
//! request may carry at most `server.max_records_per_request` records, and
//! request bodies past `server.max_inflight_request_bytes` across all
//! connections wait to be read.

mod common;
mod raw;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::{test_settings, value, TestBroker, PATIENCE};
use herald::config::Settings;
use raw::{frame, map, request, Raw};
use rmpv::Value;
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

const REQUEST_TIMED_OUT: i16 = 7;
const INVALID_REQUEST: i16 = 42;

/// Settings with a 1 MiB frame, so that the byte bounds are small.
fn small(dir: &std::path::Path) -> Settings {
    let mut settings = test_settings(dir);
    settings.server.max_frame_bytes = 1 << 20;
    settings.log.max_message_bytes = 512 << 10;
    settings.server.max_connection_bytes = 1 << 20;
    settings.server.max_inflight_request_bytes = 1 << 20;
    settings
}

fn produce(correlation_id: u32, topic: &str, records: usize) -> Vec<u8> {
    let records = vec![map(&[]); records];
    request(
        correlation_id,
        "produce",
        &[("topic", topic.into()), ("partition", 0.into()), ("records", Value::Array(records))],
    )
}

fn fetch(correlation_id: u32, topic: &str, max_bytes: u64) -> Vec<u8> {
    request(
        correlation_id,
        "fetch",
        &[("topic", topic.into()), ("partition", 0.into()), ("offset", 0.into()), ("max_bytes", max_bytes.into())],
    )
}

#[tokio::test]
async fn a_frame_that_stalls_midway_is_closed_after_frame_timeout_ms() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = small(dir.path());
    settings.server.frame_timeout_ms = 300;
    let broker = TestBroker::start_with(settings);
    let mut raw = Raw::ready(broker.addr()).await;

    // Announces 1 MiB − 1 and sends ten bytes of it.
    let started = Instant::now();
    raw.write(&((1u32 << 20) - 1).to_be_bytes()).await;
    raw.write(&[0x80; 10]).await;
    raw.response().await.assert_error(0, REQUEST_TIMED_OUT);
    raw.assert_closed().await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "closed after {elapsed:?}, before the deadline");
    broker.stop().await;
}

#[tokio::test]
async fn a_connection_without_a_handshake_is_closed_after_handshake_timeout_ms() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = small(dir.path());
    settings.server.handshake_timeout_ms = 300;
    let broker = TestBroker::start_with(settings);

    let mut silent = Raw::connect(broker.addr()).await;
    let mut partial = Raw::connect(broker.addr()).await;
    partial.write(&[0, 0, 0]).await;
    for raw in [&mut silent, &mut partial] {
        raw.response().await.assert_error(0, REQUEST_TIMED_OUT);
        raw.assert_closed().await;
    }
    // An idle connection that did shake hands stays open.
    let mut idle = Raw::ready(broker.addr()).await;
    assert!(idle.response_within(Duration::from_millis(600)).await.is_none());
    idle.send(&request(2, "list_topics", &[])).await;
    idle.response().await.assert_ok(2);
    broker.stop().await;
}

#[tokio::test]
async fn a_produce_with_more_than_max_records_per_request_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = small(dir.path());
    settings.server.max_records_per_request = 1000;
    let broker = TestBroker::start_with(settings);
    broker.client().await.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    let mut raw = Raw::ready(broker.addr()).await;

    raw.send(&produce(2, "t", 1001)).await;
    let refused = raw.response().await;
    refused.assert_error(2, INVALID_REQUEST);
    let message = refused.header.error_message.clone().unwrap_or_default();
    assert!(message.contains("1001") && message.contains("1000"), "{message}");
    // The connection stays open and a request at the bound is appended.
    raw.send(&produce(3, "t", 1000)).await;
    raw.response().await.assert_ok(3);
    broker.stop().await;
}

/// A client that pipelines fetches and never reads: the broker stops reading
/// it once its responses fill `max_connection_bytes`, then closes it after
/// `write_stall_timeout_ms`, having produced a bounded part of the responses.
#[tokio::test]
async fn a_client_that_never_reads_is_paused_then_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = small(dir.path());
    settings.server.write_stall_timeout_ms = 500;
    let broker = TestBroker::start_with(settings);
    let client = broker.client().await;
    client.create_topic("big", 1, BTreeMap::new()).await.unwrap();
    for _ in 0..4 {
        client.produce("big", Some(0), vec![value(vec![7u8; 100 << 10]); 4]).await.unwrap();
    }

    let mut raw = Raw::ready(broker.addr()).await;
    // 2,000 fetches of up to 512 KiB each: about 1 GB of responses if the
    // broker answered them all.
    let fetches: Vec<u8> = (0..2000u32).flat_map(|id| frame(&fetch(id + 2, "big", 512 << 10))).collect();
    // The broker stops reading: the writes may never complete.
    let _ = timeout(Duration::from_secs(2), raw.write(&fetches)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let closed = timeout(PATIENCE, async {
        loop {
            match raw.stream.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => total += n,
                Err(err) if err.kind() == ErrorKind::ConnectionReset => return,
                Err(err) => panic!("read: {err}"),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the broker closes a connection that does not read");
    // Socket buffers on both sides hold a few MB; the broker's own share is
    // bounded by max_connection_bytes plus one response.
    assert!(total < 64 << 20, "{total} bytes of responses for a client that did not read");
    // Others are served meanwhile and after.
    client.list_topics().await.unwrap();
    broker.stop().await;
}

/// Request bodies past `max_inflight_request_bytes` (here one frame's worth)
/// wait: a frame stalled midway holds the budget until `frame_timeout_ms`
/// closes its connection, and only then is another connection's large frame
/// read. Small frames (up to 64 KiB) take nothing from the budget, so the
/// stalled frame does not hold them up.
#[tokio::test]
async fn request_bytes_past_the_broker_wide_budget_wait_to_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = small(dir.path());
    // The stalled frame holds the budget until its deadline: the bounds below
    // sit well apart from it, for a busy machine.
    settings.server.frame_timeout_ms = 2_000;
    let broker = TestBroker::start_with(settings);
    broker.client().await.create_topic("t", 1, BTreeMap::new()).await.unwrap();

    let mut stalled = Raw::ready(broker.addr()).await;
    let mut small_frames = Raw::ready(broker.addr()).await;
    let mut large_frames = Raw::ready(broker.addr()).await;
    let started = Instant::now();
    stalled.write(&(1u32 << 20).to_be_bytes()).await;
    stalled.write(&[0x80; 100]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A produce of 100,000 one-byte records: a frame of about 100 KB.
    large_frames.send(&produce(2, "t", 100_000)).await;
    small_frames.send(&produce(2, "t", 1)).await;
    small_frames.response().await.assert_ok(2);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1_500), "a small frame waited for the budget: {elapsed:?}");
    large_frames.response().await.assert_ok(2);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1_900), "read while the budget was spent, after {elapsed:?}");
    stalled.response().await.assert_error(0, REQUEST_TIMED_OUT);
    // With the budget free again, large frames are read at once.
    let started = Instant::now();
    large_frames.send(&produce(3, "t", 100_000)).await;
    large_frames.response().await.assert_ok(3);
    assert!(started.elapsed() < Duration::from_millis(1_500), "took {:?}", started.elapsed());
    broker.stop().await;
}

fn held_fetch(correlation_id: u32, topic: &str, max_bytes: u64, max_wait_ms: u64) -> Vec<u8> {
    request(
        correlation_id,
        "fetch",
        &[
            ("topic", topic.into()),
            ("partition", 0.into()),
            ("offset", 0.into()),
            ("max_bytes", max_bytes.into()),
            ("min_bytes", 1.into()),
            ("max_wait_ms", max_wait_ms.into()),
        ],
    )
}

/// Held fetches (long polls) reserve their response room while parked, from
/// half of `max_connection_bytes`; one that does not fit is answered at once
/// with what is there. Without the reservation, twenty long polls of 256 KiB
/// parked on a 1 MiB connection would all be answered together when data
/// arrives: 4 MB of responses for a bound of 1 MiB.
#[tokio::test]
async fn held_fetches_reserve_their_room_within_the_connection_bound() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(small(dir.path()));
    let client = broker.client().await;
    client.create_topic("quiet", 1, BTreeMap::new()).await.unwrap();
    let mut raw = Raw::ready(broker.addr()).await;

    // 512 KiB of room for held fetches: two of 256 KiB are parked, eighteen
    // are answered at once, empty.
    let polls: Vec<u8> = (0..20u32).flat_map(|id| frame(&held_fetch(id + 2, "quiet", 256 << 10, 10_000))).collect();
    raw.write(&polls).await;
    let mut answered = Vec::new();
    for _ in 0..18 {
        let response = raw.response_within(Duration::from_secs(3)).await;
        let response = response.unwrap_or_else(|| panic!("{} long polls answered at once, not 18", answered.len()));
        assert_eq!(response.header.error_code, 0);
        let records = response.field("records").as_slice().map_or(0, <[u8]>::len);
        assert_eq!(records, 0, "answered before any data arrived");
        answered.push(response.header.correlation_id);
    }
    assert!(raw.response_within(Duration::from_millis(300)).await.is_none(), "only two are parked");

    // Data arrives: the two parked polls are answered with it, and no more.
    client.produce("quiet", Some(0), vec![value(vec![7u8; 200 << 10])]).await.unwrap();
    let mut bytes = 0;
    for _ in 0..2 {
        let response = raw.response().await;
        response.assert_ok(response.header.correlation_id);
        assert!(!answered.contains(&response.header.correlation_id), "answered twice");
        bytes += response.field("records").as_slice().map_or(0, <[u8]>::len);
    }
    assert!(bytes > 400 << 10 && bytes < 1 << 20, "{bytes} bytes for the parked polls");
    assert!(raw.response_within(Duration::from_millis(300)).await.is_none());
    broker.stop().await;
}

/// A large produce is checked and encoded away from the arbiters (bulk
/// work); the connection's requests keep their order around it: pipelined
/// behind it, a small produce to the same partition lands after it.
#[tokio::test]
async fn a_large_produce_keeps_its_place_among_pipelined_requests() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(small(dir.path()));
    broker.client().await.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    let mut raw = Raw::ready(broker.addr()).await;

    let large = Value::Binary(vec![7u8; 300 << 10]);
    let record = |value: Value| Value::Array(vec![map(&[("value", value)])]);
    let produce = |id: u32, value: Value| {
        frame(&request(id, "produce", &[("topic", "t".into()), ("partition", 0.into()), ("records", record(value))]))
    };
    let mut pipelined = produce(2, large);
    pipelined.extend(produce(3, Value::Binary(b"small".to_vec())));
    pipelined.extend(frame(&fetch(4, "t", 1 << 20)));
    raw.write(&pipelined).await;

    // Answers may come in any order; the offsets tell the order of appends.
    let mut offsets = BTreeMap::new();
    for _ in 0..3 {
        let response = raw.response().await;
        response.assert_ok(response.header.correlation_id);
        if let Some(partitions) = response.field("partitions").as_array() {
            let base_offset = raw::get(&partitions[0], "base_offset").as_i64().expect("base_offset");
            offsets.insert(response.header.correlation_id, base_offset);
        }
    }
    assert_eq!(offsets, BTreeMap::from([(2, 0), (3, 1)]), "produce order kept");
    broker.stop().await;
}
