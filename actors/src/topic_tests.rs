//! The `Topic` actor on a temporary directory: what a request gets once the
//! topic is deleted, or once the broker's shutdown has flushed it.

use std::path::Path;

use actix::prelude::*;
use bytes::Bytes;

use super::*;
use crate::partition::{FlushPolicy, PartitionSettings};

fn start(dir: &Path) -> Addr<Topic> {
    start_with(dir, TopicConfig::default())
}

fn start_with(dir: &Path, config: TopicConfig) -> Addr<Topic> {
    let placement = Placement {
        arbiters: vec![Arbiter::current()],
        settings: PartitionSettings {
            flush: FlushPolicy::Always,
            flush_interval_ms: 10,
            retention_check_interval_ms: 60_000,
            scrub: crate::partition::scrub::ScrubBudget::new(0),
            replica_lag_time_max_ms: crate::partition::DEFAULT_REPLICA_LAG_TIME_MAX_MS,
            replicated: false,
            producer_id_expiration_ms: 86_400_000,
        },
        writer: SyncWriter::start("test").unwrap(),
        clean_shutdown: false,
    };
    let meta = TopicMeta { name: "t".into(), topic_id: Some("id".into()), partitions: 2, config };
    meta.store(dir).unwrap();
    let dir = dir.to_path_buf();
    Topic::create(move |_| Topic::new(meta, dir, placement))
}

fn produce() -> Produce {
    Produce {
        partition: Some(1),
        records: vec![Record { value: Some(Bytes::from_static(b"v")), timestamp: 1, ..Record::default() }],
    }
}

fn fetch() -> ForPartition<partition::Fetch> {
    ForPartition {
        partition: 1,
        message: partition::Fetch { offset: 0, max_bytes: 1024, min_bytes: 0, max_wait_ms: 0 },
    }
}

/// The code of every request kind sent to `addr`.
async fn codes(addr: &Addr<Topic>) -> [ErrorCode; 4] {
    [
        addr.send(produce()).await.unwrap().unwrap_err().code,
        addr.send(fetch()).await.unwrap().unwrap_err().code,
        addr.send(DescribeTopic).await.unwrap().unwrap_err().code,
        addr.send(AddPartitions { total: 3 }).await.unwrap().unwrap_err().code,
    ]
}

#[actix::test]
async fn a_deleted_topic_is_unknown_and_a_shut_down_one_is_shutting_down() {
    let dir = tempfile::tempdir().unwrap();
    let open = start(&dir.path().join("open"));
    let written = open.send(produce()).await.unwrap().unwrap();
    assert_eq!(written[0].result.as_ref().map(|a| a.base_offset), Ok(0), "a working topic first");
    assert_eq!(open.send(fetch()).await.unwrap().unwrap().high_watermark, 1);

    let deleted = start(&dir.path().join("deleted"));
    deleted.send(CloseTopic).await.unwrap();
    assert_eq!(codes(&deleted).await, [ErrorCode::UNKNOWN_TOPIC_OR_PARTITION; 4]);

    open.send(ShutdownTopic).await.unwrap().unwrap();
    assert_eq!(codes(&open).await, [ErrorCode::BROKER_SHUTTING_DOWN; 4]);
}

#[actix::test]
async fn the_route_spreads_keyless_requests_follows_added_partitions_and_closes_with_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let topic = start(dir.path());
    let route = topic.send(GetRoute).await.unwrap();
    let keyless = || vec![Record { value: Some(Bytes::from_static(b"v")), timestamp: 1, ..Record::default() }];
    let mut partitions = Vec::new();
    for _ in 0..4 {
        let appended = send_routed(route.route(None, keyless()).unwrap(), Acks::LEADER).await;
        partitions.push(appended[0].partition);
    }
    assert_eq!(partitions, [0, 1, 0, 1], "one round robin across requests");
    assert_eq!(route.partition(2).unwrap_err().code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);

    topic.send(AddPartitions { total: 3 }).await.unwrap().unwrap();
    let batch = ProduceBatch { partition: Some(2), record_count: 1, batch: crate::batch::encode(&keyless()).unwrap() };
    let appended = send_batch(&route, batch, Acks::LEADER).unwrap().await;
    assert_eq!(appended.result.map(|a| a.base_offset), Ok(0), "the added partition is on the route");

    assert!(!route.is_closed());
    topic.send(CloseTopic).await.unwrap();
    assert!(route.is_closed(), "a connection holding the route sees the delete");
    assert_eq!(route.partition(0).unwrap_err().code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(route.route(None, keyless()).map(drop).unwrap_err().code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
}

#[actix::test]
async fn records_whose_bytes_alone_pass_max_message_bytes_are_refused_before_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let topic = start_with(dir.path(), TopicConfig { max_message_bytes: 1000, ..TopicConfig::default() });
    let route = topic.send(GetRoute).await.unwrap();
    let record = |n: usize| Record { value: Some(Bytes::from(vec![b'v'; n])), timestamp: 1, ..Record::default() };
    let routed = route.route(Some(0), vec![record(600), record(600)]).unwrap();
    let refused = routed[0].batch.as_ref().map(drop).unwrap_err();
    assert_eq!(refused.code, ErrorCode::MESSAGE_TOO_LARGE);
    assert!(refused.message.contains("1200 bytes") && refused.message.contains("1000"), "{}", refused.message);
    // Under the bound by its bytes, the batch is encoded; the partition
    // judges its framed size.
    assert!(route.route(Some(0), vec![record(900)]).unwrap()[0].batch.is_ok());
    let appended = send_routed(route.route(Some(0), vec![record(990)]).unwrap(), Acks::LEADER).await;
    assert_eq!(appended[0].result.as_ref().map(drop).unwrap_err().code, ErrorCode::MESSAGE_TOO_LARGE);
}
