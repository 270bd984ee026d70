//! Committed offsets across a crash and a clean restart of the real `herald`
//! binary: after SIGKILL, every acknowledged commit is there (a commit still
//! in flight may or may not be), and a group consumer resumes exactly at the
//! committed offsets; after SIGTERM, the same, from a clean start.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{text, value, BinaryBroker, PATIENCE};
use herald::client::{AutoOffsetReset, Client, GroupConsumer, GroupConsumerConfig};
use herald::protocol::*;
use tokio::sync::watch;
use tokio::task::block_in_place;

const TOPIC: &str = "ledger";
const PARTITIONS: u32 = 3;
const RECORDS: i64 = 500;

/// What one committer saw acknowledged before the broker died.
#[derive(Debug)]
struct Committed {
    partition: u32,
    /// The last offset acknowledged.
    acked: Option<i64>,
    /// The offset whose commit was in flight when the connection broke.
    in_flight: Option<i64>,
}

fn commit_request(group_id: &str, offsets: &[(u32, i64)]) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        group_id: group_id.into(),
        member_id: None,
        generation_id: -1,
        offsets: offsets
            .iter()
            .map(|&(partition, offset)| OffsetCommit {
                topic: TOPIC.into(),
                partition: i64::from(partition),
                offset,
                metadata: Some(format!("m{offset}")),
            })
            .collect(),
    }
}

/// Commits offsets 1, 2, ... of `partition`, one at a time, until a commit
/// fails (the broker is gone) or all are committed; counts the acknowledged
/// ones on `progress`.
async fn commit_until_failure(
    client: Client,
    group_id: &str,
    partition: u32,
    progress: watch::Sender<i64>,
) -> Committed {
    let mut acked = None;
    for offset in 1..=RECORDS {
        let answer = client
            .request::<_, CommitOffsetsResponse>(
                group_op::COMMIT_OFFSETS,
                &commit_request(group_id, &[(partition, offset)]),
            )
            .await;
        match answer {
            Ok(response) => {
                assert_eq!(response.partitions[0].error_code, 0, "{response:?}");
                acked = Some(offset);
                progress.send_replace(offset);
            }
            Err(_) => return Committed { partition, acked, in_flight: Some(offset) },
        }
    }
    Committed { partition, acked, in_flight: None }
}

async fn fetch_offsets(client: &Client, group_id: &str) -> BTreeMap<u32, (i64, Option<String>)> {
    let request =
        FetchOffsetsRequest { group_id: group_id.into(), partitions: None, member_id: None, generation_id: None };
    let response: FetchOffsetsResponse =
        client.request(group_op::FETCH_OFFSETS, &request).await.expect("fetch offsets");
    response.offsets.into_iter().map(|o| (o.partition, (o.offset, o.metadata))).collect()
}

/// Consumes with a group consumer until every partition reached `ends`;
/// returns, per partition, the offsets and values consumed in order.
async fn consume_to(consumer: &mut GroupConsumer, ends: &BTreeMap<u32, i64>) -> BTreeMap<u32, Vec<(i64, String)>> {
    let mut consumed: BTreeMap<u32, Vec<(i64, String)>> = BTreeMap::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let done = ends
            .iter()
            .all(|(p, end)| consumed.get(p).and_then(|r| r.last()).map_or(*end == 0, |(offset, _)| offset + 1 >= *end));
        if done {
            return consumed;
        }
        assert!(Instant::now() < deadline, "consumed only {consumed:?}");
        for r in consumer.poll().await.expect("poll") {
            consumed.entry(r.partition).or_default().push((r.record.offset, text(&r.record)));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_commit_survives_sigkill_and_a_consumer_resumes_from_it() {
    let root = tempfile::tempdir().unwrap();
    let broker = block_in_place(|| BinaryBroker::start(root.path()));
    let admin = broker.client().await;
    admin.create_topic(TOPIC, i64::from(PARTITIONS), BTreeMap::new()).await.unwrap();
    for p in 0..PARTITIONS {
        for chunk in 0..RECORDS / 100 {
            let records = (chunk * 100..(chunk + 1) * 100).map(|i| value(format!("p{p}-{i}"))).collect();
            admin.produce(TOPIC, Some(p), records).await.unwrap();
        }
    }

    // One committer per partition, each on its own connection, all committing
    // at once; the broker is killed while they commit.
    let mut committers = Vec::new();
    let mut progress = Vec::new();
    for partition in 0..PARTITIONS {
        let (tx, rx) = watch::channel(0);
        let client = broker.client().await;
        committers.push(tokio::spawn(async move { commit_until_failure(client, "auditors", partition, tx).await }));
        progress.push(rx);
    }
    for rx in &mut progress {
        tokio::time::timeout(PATIENCE, rx.wait_for(|acked| *acked >= 20)).await.expect("commits progress").unwrap();
    }
    block_in_place(|| broker.kill());
    let mut results = Vec::new();
    for committer in committers {
        results.push(committer.await.unwrap());
    }

    let mut broker = block_in_place(|| BinaryBroker::start(root.path()));
    let opened = block_in_place(|| broker.wait_for_line("opened data directory"));
    assert!(opened.contains("start=after_unclean_stop"), "a kill is not a clean shutdown: {opened}");
    let admin = broker.client().await;
    let found = fetch_offsets(&admin, "auditors").await;
    assert_eq!(found.len(), PARTITIONS as usize, "{found:?}");
    for Committed { partition, acked, in_flight } in &results {
        let (offset, metadata) = found[partition].clone();
        assert!(
            Some(offset) == *acked || Some(offset) == *in_flight,
            "partition {partition}: found {offset}, acknowledged {acked:?}, in flight {in_flight:?}"
        );
        assert_eq!(metadata, Some(format!("m{offset}")));
    }
    eprintln!("acknowledged before the kill: {results:?}");

    // Commits acknowledged just before a kill are all there, exactly.
    let chosen = [(0, 100), (1, 250), (2, 0)];
    let response: CommitOffsetsResponse =
        admin.request(group_op::COMMIT_OFFSETS, &commit_request("auditors", &chosen)).await.unwrap();
    assert!(response.partitions.iter().all(|p| p.error_code == 0), "{response:?}");
    block_in_place(|| broker.kill());

    let broker = block_in_place(|| BinaryBroker::start(root.path()));
    let admin = broker.client().await;
    let expected: BTreeMap<u32, (i64, Option<String>)> =
        chosen.iter().map(|&(p, offset)| (p, (offset, Some(format!("m{offset}"))))).collect();
    assert_eq!(fetch_offsets(&admin, "auditors").await, expected);

    // A group consumer starts exactly there (it may not fall back on a reset).
    let mut config = GroupConsumerConfig::new("auditors", &[TOPIC]);
    config.auto_offset_reset = AutoOffsetReset::None;
    config.auto_commit = false;
    let mut consumer = GroupConsumer::join(broker.client().await, config).await.unwrap();
    let ends: BTreeMap<u32, i64> = (0..PARTITIONS).map(|p| (p, RECORDS)).collect();
    let consumed = consume_to(&mut consumer, &ends).await;
    for &(p, from) in &chosen {
        let expected: Vec<(i64, String)> = (from..RECORDS).map(|i| (i, format!("p{p}-{i}"))).collect();
        assert_eq!(consumed[&p], expected, "partition {p}");
    }
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    let all_read: BTreeMap<u32, i64> =
        fetch_offsets(&admin, "auditors").await.into_iter().map(|(p, (o, _))| (p, o)).collect();
    assert_eq!(all_read, ends);
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "SIGTERM exits 0, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_and_the_assignor_survive_a_clean_sigterm_restart() {
    let root = tempfile::tempdir().unwrap();
    let broker = block_in_place(|| BinaryBroker::start(root.path()));
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 2, BTreeMap::new()).await.unwrap();
    for p in 0..2u32 {
        admin.produce(TOPIC, Some(p), (0..50).map(|i| value(format!("a{p}-{i}"))).collect()).await.unwrap();
    }
    let mut config = GroupConsumerConfig::new("readers", &[TOPIC]);
    config.assignor = Some("range".into());
    config.auto_commit = false;
    let mut consumer = GroupConsumer::join(broker.client().await, config.clone()).await.unwrap();
    let ends = BTreeMap::from([(0, 50), (1, 50)]);
    consume_to(&mut consumer, &ends).await;
    consumer.commit().await.unwrap();
    for p in 0..2u32 {
        admin.produce(TOPIC, Some(p), (0..10).map(|i| value(format!("b{p}-{i}"))).collect()).await.unwrap();
    }

    // The broker stops while the consumer is still a member.
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    drop(consumer);

    let mut broker = block_in_place(|| BinaryBroker::start(root.path()));
    let opened = block_in_place(|| broker.wait_for_line("opened data directory"));
    assert!(opened.contains("start=after_clean_shutdown"), "{opened}");
    let admin = broker.client().await;
    let found: BTreeMap<u32, i64> =
        fetch_offsets(&admin, "readers").await.into_iter().map(|(p, (o, _))| (p, o)).collect();
    assert_eq!(found, ends);
    let described: DescribeGroupResponse =
        admin.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: "readers".into() }).await.unwrap();
    assert_eq!((described.state.as_str(), described.assignor.as_str()), ("Empty", "range"), "{described:?}");
    assert!(described.members.is_empty());

    // A consumer resumes after what was committed: only the new records.
    config.auto_offset_reset = AutoOffsetReset::None;
    let mut consumer = GroupConsumer::join(broker.client().await, config).await.unwrap();
    let consumed = consume_to(&mut consumer, &BTreeMap::from([(0, 60), (1, 60)])).await;
    for p in 0..2u32 {
        let expected: Vec<(i64, String)> = (0..10).map(|i| (50 + i, format!("b{p}-{i}"))).collect();
        assert_eq!(consumed[&p], expected, "partition {p}");
    }
    consumer.close().await.unwrap();
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "{status}");
}
