//! The Rust client in a cluster, through the real binary against a real
//! ZooKeeper (docs/protocol.md, "Following leaders"): a producer and a
//! consumer given a bootstrap list (its first address dead) send each
//! partition's requests to its leader; an idempotent producer with acks -1
//! carries on through its partition's leader killed with SIGKILL, its
//! records all acknowledged, stored once each, in the order sent.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::paced::Paced;
use common::cluster::{Cluster, TAKEOVER};
use common::{herald_bin, value};
use herald::client::{
    Cluster as Brokers, ConnectOptions, Consumer, ConsumerConfig, Producer, ProducerConfig, RecordMetadata, StartOffset,
};

/// The tests run one at a time: each runs a cluster of its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A bootstrap list: an address nothing listens on, then the live brokers.
fn bootstrap(cluster: &Cluster) -> Vec<String> {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    std::iter::once(dead).chain(cluster.bootstrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_and_a_consumer_given_a_bootstrap_list_follow_each_partitions_leader() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3).await;
    cluster.create("r", 3, 3).await;
    let leaders: Vec<i32> = {
        let mut leaders = Vec::new();
        for p in 0..3 {
            leaders.push(cluster.placement("r", p, "a leader", |_| true).await.leader);
        }
        leaders
    };
    let distinct: std::collections::BTreeSet<i32> = leaders.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "the preferred leaders are spread: {leaders:?}");

    // Each partition is led by another broker: a client that sent every
    // produce to one broker would be refused by two of them.
    let follower = cluster.broker(if leaders[0] == 1 { 2 } else { 1 }).client().await;
    let refused = follower.produce_with_acks("r", Some(0), vec![value("x")], -1).await.unwrap_err();
    assert_eq!(refused.code(), Some(6), "a follower refuses produce: {refused}");

    let brokers = Brokers::connect(&bootstrap(&cluster), "leaders", ConnectOptions::default()).await.unwrap();
    let producer = Producer::with_cluster(brokers.clone(), ProducerConfig { linger_ms: 1, ..Default::default() });
    let mut answers = Vec::new();
    for i in 0..300u32 {
        let answer = producer.send("r", Some(i % 3), value(format!("v{i}"))).await.unwrap();
        answers.push((i, answer));
    }
    let mut acked: BTreeMap<u32, Vec<(i64, String)>> = BTreeMap::new();
    for (i, answer) in answers {
        let RecordMetadata { partition, offset } = answer.await.unwrap().unwrap();
        acked.entry(partition).or_default().push((offset, format!("v{i}")));
    }
    for (p, records) in &acked {
        let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..100).collect::<Vec<_>>(), "partition {p}: the offsets in order, none twice");
    }

    let mut consumer = Consumer::with_cluster(brokers, ConsumerConfig::default());
    consumer.assign_all("r", StartOffset::Earliest).await.unwrap();
    let mut read: BTreeMap<u32, Vec<(i64, String)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.values().map(Vec::len).sum::<usize>() < 300 {
        assert!(Instant::now() < deadline, "read {read:?} within 30 s");
        for r in consumer.poll().await.unwrap() {
            let text = String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).into_owned();
            read.entry(r.partition).or_default().push((r.record.offset, text));
        }
    }
    assert_eq!(read, acked, "the consumer reads from each leader what the producer stored there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_given_a_bootstrap_list_produces_to_each_partitions_leader() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3).await;
    cluster.create("c", 3, 3).await;
    let lines: String = (0..30).map(|i| format!("line{i}\n")).collect();
    let list = bootstrap(&cluster).join(",");
    let mut child = std::process::Command::new(herald_bin())
        .args(["produce", "c", "--bootstrap", &list, "--partitioner", "roundrobin", "--linger-ms", "0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "herald produce: {}", String::from_utf8_lossy(&output.stderr));
    let reads = cluster.settled("c", 3).await;
    let mut stored: Vec<String> = reads.values().flatten().map(|(_, v)| v.clone()).collect();
    stored.sort();
    let mut expected: Vec<String> = (0..30).map(|i| format!("line{i}")).collect();
    expected.sort();
    assert_eq!(stored, expected, "every line stored once");
    assert!(reads.values().all(|r| r.len() == 10), "round robin over the three leaders: {reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn an_idempotent_producer_carries_on_through_a_killed_leader_with_nothing_lost_or_stored_twice() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    cluster.create("k", 1, 3).await;
    let brokers = Brokers::connect(&bootstrap(&cluster), "failover", ConnectOptions::default()).await.unwrap();
    let config = ProducerConfig { linger_ms: 2, delivery_timeout: Duration::from_secs(60), ..Default::default() };
    assert_eq!((config.acks, config.idempotent), (-1, true), "acks -1 and idempotence are the defaults");
    let producer = Arc::new(Producer::with_cluster(brokers, config));

    // Records one every millisecond or so, several batches in flight.
    let sender = Paced::start(producer.clone(), "k", 1);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let leader = cluster.placement("k", 0, "a leader", |_| true).await.leader;
    let killed_at = Instant::now();
    cluster.kill(leader);
    let survivors = cluster.live_ids();
    let placed = cluster.placement_among(&survivors, "k", 0, "a new leader", |m| m.leader != leader).await;
    let elected = killed_at.elapsed();
    // Records go on to the new leader for a while.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let answers = sender.stop().await;
    producer.flush().await.unwrap();

    let sent = answers.len();
    let mut acked = Vec::new();
    for (i, _, answer) in answers {
        let (answered, _) = tokio::time::timeout(TAKEOVER, answer).await.expect("an answer").expect("the task");
        let metadata = answered.unwrap_or_else(|err| panic!("v{i} failed: {err}"));
        acked.push((metadata.offset, format!("v{i}")));
    }
    let reads = cluster.settled("k", 1).await;
    let stored = &reads[&0];
    let expected: Vec<String> = (0..sent).map(|i| format!("v{i}")).collect();
    let stored_values: Vec<String> = stored.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(stored_values, expected, "every record stored once, in the order sent");
    assert_eq!(stored, &acked, "each acknowledged where it is stored");
    println!(
        "figures: {sent} records, leader {leader} killed, broker {} led after {} ms; all acknowledged once",
        placed.leader,
        elected.as_millis()
    );
}
