//! The real `herald` binary, killed while it acknowledges writes: every
//! acknowledged record is there after the restart, at its offset, with no gap.
//! And SIGTERM is a clean shutdown: exit status 0, nothing to recover.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{read_partition, text, value, BinaryBroker};
use herald::client::Client;
use tokio::task::block_in_place;

const PARTITIONS: u32 = 3;
const BATCH: usize = 10;

/// One acknowledged produce: where its records went and what they were.
#[derive(Debug)]
struct Acked {
    partition: u32,
    base_offset: i64,
    values: Vec<String>,
}

/// Produces batches of [`BATCH`] records to `partition`, up to four requests in
/// flight, until a request fails (the broker is gone); returns what was
/// acknowledged.
async fn produce_until_failure(client: Client, worker: usize, partition: u32) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut in_flight = std::collections::VecDeque::new();
    for seq in 0.. {
        let values: Vec<String> = (0..BATCH).map(|i| format!("w{worker}-p{partition}-s{seq}-r{i}")).collect();
        let records = values.iter().map(value).collect();
        match client.start_produce("crash", Some(partition), records, 1) {
            Ok(answer) => in_flight.push_back((values, answer)),
            Err(_) => break,
        }
        if in_flight.len() < 4 {
            continue;
        }
        let (values, answer) = in_flight.pop_front().unwrap();
        match answer.await {
            Ok(written) => {
                assert_eq!(written[0].record_count as usize, BATCH);
                acked.push(Acked { partition, base_offset: written[0].base_offset, values });
            }
            Err(_) => break,
        }
    }
    // Whatever was still in flight may or may not have been acknowledged.
    for (values, answer) in in_flight {
        if let Ok(written) = answer.await {
            acked.push(Acked { partition, base_offset: written[0].base_offset, values });
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_sigkill() {
    let root = tempfile::tempdir().unwrap();
    let broker = block_in_place(|| BinaryBroker::start(root.path()));
    let client = broker.client().await;
    client.create_topic("crash", i64::from(PARTITIONS), BTreeMap::new()).await.unwrap();

    // Two producers per partition, each on its own connection.
    let mut workers = Vec::new();
    for worker in 0..(2 * PARTITIONS as usize) {
        let producer = broker.client().await;
        workers.push(tokio::spawn(produce_until_failure(producer, worker, worker as u32 % PARTITIONS)));
    }
    // Let them write for a while, then pull the plug mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(workers.iter().all(|w| !w.is_finished()), "the producers were still producing");
    block_in_place(|| broker.kill());

    let mut acked = Vec::new();
    for worker in workers {
        acked.extend(worker.await.unwrap());
    }
    assert!(acked.len() >= 10, "only {} batches were acknowledged before the kill", acked.len());
    eprintln!("{} batches of {BATCH} acknowledged before the kill", acked.len());

    let mut broker = block_in_place(|| BinaryBroker::start(root.path()));
    let opened = block_in_place(|| broker.wait_for_line("opened data directory"));
    assert!(opened.contains("start=after_unclean_stop"), "a kill is not a clean shutdown: {opened}");
    let client = broker.client().await;
    assert_eq!(client.describe_topic("crash").await.unwrap().partitions.len(), PARTITIONS as usize);

    let mut ends = Vec::new();
    for partition in 0..PARTITIONS {
        let records = read_partition(&client, "crash", partition, 0).await;
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..records.len() as i64).collect::<Vec<_>>(), "partition {partition} has no gap");
        for batch in acked.iter().filter(|a| a.partition == partition) {
            for (i, expected) in batch.values.iter().enumerate() {
                let offset = batch.base_offset + i as i64;
                let found = records.get(offset as usize).map(text);
                assert_eq!(found.as_deref(), Some(expected.as_str()), "acknowledged record at {partition}/{offset}");
            }
        }
        ends.push(records.len() as i64);
    }

    // New writes go after everything that survived.
    for partition in 0..PARTITIONS {
        let written = client.produce("crash", Some(partition), vec![value("after the crash")]).await.unwrap();
        assert_eq!(written[0].base_offset, ends[partition as usize], "partition {partition}");
    }
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "SIGTERM exits 0, got {status}");

    let mut broker = block_in_place(|| BinaryBroker::start(root.path()));
    let opened = block_in_place(|| broker.wait_for_line("opened data directory"));
    assert!(opened.contains("start=after_clean_shutdown"), "{opened}");
    let client = broker.client().await;
    for partition in 0..PARTITIONS {
        let end = client.list_offsets("crash", partition, -1).await.unwrap();
        assert_eq!(end, ends[partition as usize] + 1, "partition {partition}");
    }
    block_in_place(|| broker.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_the_next_start_is_clean() {
    let root = tempfile::tempdir().unwrap();
    let mut broker = block_in_place(|| BinaryBroker::start(root.path()));
    let opened = block_in_place(|| broker.wait_for_line("opened data directory"));
    assert!(opened.contains("topics=0"), "{opened}");
    let client = broker.client().await;
    client.create_topic("calm", 2, BTreeMap::new()).await.unwrap();
    for i in 0..20 {
        client.produce("calm", Some(i % 2), vec![value(format!("m{i}"))]).await.unwrap();
    }
    // A consumer parked in a long poll does not hold the shutdown up.
    let parked = {
        let client = client.clone();
        tokio::spawn(async move {
            let request = herald::protocol::FetchRequest {
                topic: "calm".into(),
                partition: 0,
                offset: 10,
                max_bytes: 1 << 20,
                min_bytes: 1,
                max_wait_ms: 60_000,
            };
            client.fetch(&request).await
        })
    };
    client.list_offsets("calm", 0, -2).await.unwrap();

    let started = std::time::Instant::now();
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    let refused = parked.await.unwrap().expect_err("the long poll is refused before the broker exits");
    assert_eq!(refused.code(), Some(herald_actors::error::ErrorCode::BROKER_SHUTTING_DOWN.code()), "{refused}");

    let mut broker = block_in_place(|| BinaryBroker::start(root.path()));
    let opened = block_in_place(|| broker.wait_for_line("opened data directory"));
    assert!(opened.contains("start=after_clean_shutdown") && opened.contains("topics=1"), "{opened}");
    let client = broker.client().await;
    for partition in 0..2 {
        let records = read_partition(&client, "calm", partition, 0).await;
        let expected: Vec<String> = (0..20).filter(|i| i % 2 == partition).map(|i| format!("m{i}")).collect();
        assert_eq!(records.iter().map(text).collect::<Vec<_>>(), expected);
    }
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "{status}");
}
