//! `storage.group_commit` both ways, on the broker binary (the fsync count is
//! process-wide, so each broker is a process of its own), read from its
//! `/metrics`: off, every produce request gets an fsync of its own; on, the
//! requests of concurrent producers share fsyncs. Counts, not timings. Every
//! acknowledged record is read back either way.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::http::{get, value};
use common::{read_partition, value as record, BinaryBroker};

const PRODUCERS: usize = 16;
const REQUESTS_EACH: usize = 25;
const RECORDS_PER_REQUEST: usize = 10;
const REQUESTS: usize = PRODUCERS * REQUESTS_EACH;

async fn fsyncs(http: SocketAddr) -> f64 {
    let (status, metrics) = get(http, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    value(&metrics, "herald_fsync_duration_seconds_count")
}

/// Sends [`REQUESTS`] produce requests to one partition from [`PRODUCERS`]
/// connections at once, each waiting for every answer before its next
/// request; returns the fsyncs they cost and checks every record is stored.
async fn fsyncs_of_concurrent_produces(group_commit: bool) -> f64 {
    let root = tempfile::tempdir().unwrap();
    let setting = if group_commit { "true" } else { "false" };
    let broker = BinaryBroker::start_with(root.path(), |command| {
        command.env("HERALD_STORAGE__GROUP_COMMIT", setting);
    });
    let client = broker.client().await;
    client.create_topic("grouped", 1, BTreeMap::new()).await.unwrap();
    // The topic's creation made the first segment: its directory entry is
    // fsynced with the first append. One warm-up request takes it.
    client.produce("grouped", Some(0), vec![record("warm-up")]).await.unwrap();
    let before = fsyncs(broker.http_addr()).await;

    let mut producers = Vec::new();
    for producer in 0..PRODUCERS {
        let client = broker.client().await;
        producers.push(tokio::spawn(async move {
            for request in 0..REQUESTS_EACH {
                let records = (0..RECORDS_PER_REQUEST).map(|n| record(format!("{producer}-{request}-{n}"))).collect();
                client.produce("grouped", Some(0), records).await.unwrap();
            }
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
    let spent = fsyncs(broker.http_addr()).await - before;

    let stored = read_partition(&client, "grouped", 0, 0).await;
    assert_eq!(stored.len(), 1 + REQUESTS * RECORDS_PER_REQUEST, "every acknowledged record is stored");
    spent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_group_commit_every_request_gets_its_own_fsync() {
    let spent = fsyncs_of_concurrent_produces(false).await;
    assert_eq!(spent, REQUESTS as f64, "one fsync of the partition's file per request, no more, no fewer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_group_commit_concurrent_requests_share_fsyncs() {
    let spent = fsyncs_of_concurrent_produces(true).await;
    assert!(spent >= 1.0, "the appends were fsynced");
    assert!(
        spent < REQUESTS as f64 * 0.75,
        "{spent} fsyncs for {REQUESTS} requests from {PRODUCERS} producers at once: they should share"
    );
}
