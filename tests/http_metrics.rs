//! `/metrics` against a real broker: the counters equal what was produced and
//! fetched, requests and errors per operation, the latency histogram, group
//! lag as the wire reports it, and the gauges computed at scrape time.
//!
//! Metrics are process-wide, so this file holds one test: no other broker in
//! the process adds to the counters it checks exactly.

mod common;
mod raw;

use std::collections::BTreeMap;

use common::http::{get, value};
use common::{read_partition, value as record, TestBroker};
use herald::protocol::OffsetCommit;
use herald::protocol::{group_op, CommitOffsetsRequest, CommitOffsetsResponse, DescribeGroupResponse, GroupRequest};
use raw::Raw;

#[tokio::test]
async fn metrics_count_what_was_produced_and_fetched_and_the_lag_of_a_group() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("metered", 2, BTreeMap::new()).await.unwrap();
    client.produce("metered", Some(0), (0..5).map(|n| record(format!("zero-{n}"))).collect()).await.unwrap();
    client.produce("metered", Some(1), (0..3).map(|n| record(format!("one-{n}"))).collect()).await.unwrap();
    let fetched =
        read_partition(&client, "metered", 0, 0).await.len() + read_partition(&client, "metered", 1, 0).await.len();
    assert_eq!(fetched, 8);
    assert!(client.describe_topic("absent").await.is_err());
    let commit = CommitOffsetsRequest {
        group_id: "lagging".into(),
        member_id: None,
        generation_id: -1,
        offsets: vec![OffsetCommit { topic: "metered".into(), partition: 0, offset: 2, metadata: None }],
    };
    let committed: CommitOffsetsResponse = client.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
    assert!(committed.partitions.iter().all(|p| p.error_code == 0), "{committed:?}");
    let described: DescribeGroupResponse =
        client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: "lagging".into() }).await.unwrap();
    let wire_lag = described.offsets.iter().find(|p| p.partition == 0).and_then(|p| p.lag).expect("lag of partition 0");
    assert_eq!(wire_lag, 3);
    // Refused frames: an oversize length, and a request that cannot be decoded.
    let mut oversize = Raw::ready(broker.addr()).await;
    oversize.write(&u32::MAX.to_be_bytes()).await;
    oversize.response().await.assert_error(0, 1002);
    let mut garbled = Raw::ready(broker.addr()).await;
    garbled.send(&raw::encode(&raw::map(&[("correlation_id", 7.into())]))).await;
    let _ = garbled.response().await;

    let (status, m) = get(broker.http_addr(), "/metrics").await;
    assert_eq!(status, 200, "{m}");

    // Bytes and records, in and out: the stored batches, as describe_topic counts them.
    let stored: u64 = client.describe_topic("metered").await.unwrap().partitions.iter().map(|p| p.size_bytes).sum();
    assert_eq!(value(&m, r#"herald_produced_records_total{topic="metered"}"#), 8.0);
    assert_eq!(value(&m, r#"herald_fetched_records_total{topic="metered"}"#), 8.0);
    assert_eq!(value(&m, r#"herald_produced_bytes_total{topic="metered"}"#), stored as f64);
    assert_eq!(value(&m, r#"herald_fetched_bytes_total{topic="metered"}"#), stored as f64);

    // Requests per operation, their errors and their latency.
    assert_eq!(value(&m, r#"herald_requests_total{op="produce"}"#), 2.0);
    assert_eq!(value(&m, r#"herald_requests_total{op="create_topic"}"#), 1.0);
    assert!(value(&m, r#"herald_requests_total{op="fetch"}"#) >= 2.0);
    assert_eq!(
        value(&m, r#"herald_request_errors_total{op="describe_topic",error="UNKNOWN_TOPIC_OR_PARTITION"}"#),
        1.0
    );
    assert_eq!(value(&m, r#"herald_request_duration_seconds_count{op="produce"}"#), 2.0);
    assert_eq!(value(&m, r#"herald_request_duration_seconds_bucket{op="produce",le="+Inf"}"#), 2.0);
    assert!(value(&m, r#"herald_request_duration_seconds_sum{op="produce"}"#) > 0.0);
    assert!(m.contains("# TYPE herald_request_duration_seconds histogram\n"), "{m}");

    // Group lag: computed at scrape time, equal to what the wire reports.
    assert_eq!(
        value(&m, r#"herald_group_lag_records{group="lagging",topic="metered",partition="0"}"#),
        wire_lag as f64
    );

    // Connections, fsyncs and the gauges of the broker.
    assert!(value(&m, "herald_connections_open") >= 1.0);
    assert!(value(&m, "herald_connections_accepted_total") >= 1.0);
    assert!(value(&m, "herald_fsync_duration_seconds_count") >= 2.0, "flush = always fsyncs each produce");
    assert_eq!(value(&m, r#"herald_rejected_frames_total{reason="too_large"}"#), 1.0);
    assert_eq!(value(&m, r#"herald_rejected_frames_total{reason="malformed"}"#), 1.0);
    assert_eq!(value(&m, r#"herald_rejected_frames_total{reason="deadline"}"#), 0.0);
    assert_eq!(value(&m, "herald_topics"), 1.0);
    assert_eq!(value(&m, "herald_partitions"), 2.0);
    assert_eq!(value(&m, "herald_segments"), 2.0);
    assert!(value(&m, "herald_open_fds") > 0.0);
    assert!(value(&m, "herald_disk_used_bytes") >= stored as f64);
    assert!(value(&m, "herald_disk_free_bytes") > 0.0);
    assert_eq!(value(&m, "herald_ready"), 1.0);
    broker.stop().await;
}
