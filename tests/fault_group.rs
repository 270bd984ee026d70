//! kill -9 under a committing group: the real binary is SIGKILLed again and
//! again at seeded moments while producers write unique values with
//! acknowledgements (`flush = "always"`, the default) and a group of real
//! `GroupConsumer`s (tests/fault/members.rs) processes and commits them.
//!
//! The members reach the broker through a forwarder on a fixed address, so
//! that every restart (on a new port) is the same broker to them: each kill
//! closes their connections, and they connect and join again on their own.
//! After each restart the committed offsets are read back. The history is
//! then checked (tests/fault/group.rs): every acknowledged record processed at
//! least once, no partition with two owners at once, no commit acknowledged
//! for a partition not owned, committed offsets never backwards (in
//! particular, never below a commit the broker acknowledged before the kill);
//! and the log itself (tests/fault/mod.rs): nothing acknowledged lost.
//!
//! CI runs 10 kills and at least 50,000 acknowledged records; the long tier
//! raises them (`HERALD_FAULT_KILLS`, `HERALD_FAULT_MIN_ACKS`); replay with
//! `HERALD_FAULT_SEED=<seed>`.

mod common;
mod fault;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{read_partition, text, BinaryBroker, PATIENCE};
use fault::group::{check_group, ownership_excerpt, Fact};
use fault::members::{History, Member, Order};
use fault::produce::produce_until_failure;
use fault::{check_log, quantile, seed, setting, Ack, Rng};
use herald::client::{Client, GroupConsumerConfig};
use herald::protocol::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::block_in_place;

const TOPIC: &str = "ledger";
const GROUP: &str = "bookkeepers";
const PARTITIONS: u32 = 4;
const MEMBERS: usize = 3;
const PRODUCERS: usize = 4;

/// Forwards every connection to the broker's current address.
async fn forward(listener: TcpListener, broker: Arc<Mutex<SocketAddr>>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { continue };
        let to = *broker.lock().unwrap();
        tokio::spawn(async move {
            // A broker that is down: the connection closes, the client retries.
            if let Ok(mut outbound) = TcpStream::connect(to).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// The group's committed offsets, read by a request sent now.
async fn read_committed(client: &Client, history: &History) -> BTreeMap<u32, i64> {
    let at = history.now();
    let request =
        FetchOffsetsRequest { group_id: GROUP.into(), partitions: None, member_id: None, generation_id: None };
    let response: FetchOffsetsResponse =
        client.request(group_op::FETCH_OFFSETS, &request).await.expect("fetch committed offsets");
    let committed: BTreeMap<u32, i64> = response.offsets.into_iter().map(|o| (o.partition, o.offset)).collect();
    for (&partition, &offset) in &committed {
        history.push(Fact::CommittedSeen { partition, offset, at });
    }
    committed
}

/// Waits until every partition is owned by a member of a stable group;
/// returns how long that took (ms).
async fn wait_owned(client: &Client) -> f64 {
    let started = Instant::now();
    let deadline = started + PATIENCE;
    loop {
        let request = GroupRequest { group_id: GROUP.into() };
        if let Ok(d) = client.request::<_, DescribeGroupResponse>(group_op::DESCRIBE_GROUP, &request).await {
            let owned: usize = d.members.iter().flat_map(|m| m.assignment.iter()).map(|t| t.partitions.len()).sum();
            if d.state == "Stable" && owned == PARTITIONS as usize {
                return started.elapsed().as_secs_f64() * 1000.0;
            }
        }
        assert!(Instant::now() < deadline, "the group did not settle after a restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn start(root: &std::path::Path) -> (BinaryBroker, f64) {
    let started = Instant::now();
    let broker = BinaryBroker::start(root);
    (broker, started.elapsed().as_secs_f64() * 1000.0)
}

fn member_config() -> GroupConsumerConfig {
    let mut config = GroupConsumerConfig::new(GROUP, &[TOPIC]);
    config.session_timeout_ms = 3_000;
    config.auto_commit = false;
    config.max_wait_ms = 100;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committing_group_processes_every_acknowledged_record_across_repeated_sigkills() {
    let seed = seed();
    let kills = setting("HERALD_FAULT_KILLS", 10);
    let min_acks = setting("HERALD_FAULT_MIN_ACKS", 50_000) as usize;
    eprintln!("fault_group kill9: seed {seed} (replay with HERALD_FAULT_SEED={seed}), {kills} kills");
    let mut rng = Rng::new(seed);
    let root = tempfile::tempdir().unwrap();
    let (mut broker, _) = block_in_place(|| start(root.path()));
    broker.client().await.create_topic(TOPIC, i64::from(PARTITIONS), BTreeMap::new()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = listener.local_addr().unwrap();
    let backend = Arc::new(Mutex::new(broker.addr()));
    let forwarder = tokio::spawn(forward(listener, backend.clone()));

    let history = History::new();
    let members: Vec<Member> = (0..MEMBERS)
        .map(|i| Member::start(&format!("m{i}"), front, member_config(), Duration::from_millis(100), &history))
        .collect();
    wait_owned(&broker.client().await).await;

    let count = Arc::new(AtomicUsize::new(0));
    let mut acks: Vec<Ack> = Vec::new();
    let (mut restarts, mut settles) = (Vec::new(), Vec::new());
    for cycle in 0..kills {
        let mut producers = Vec::new();
        for worker in 0..PRODUCERS {
            let client = broker.client().await;
            let (partition, count) = (worker as u32 % PARTITIONS, count.clone());
            producers.push(tokio::spawn(async move {
                produce_until_failure(client, TOPIC, partition, cycle, worker, count).await
            }));
        }
        // The schedule: how long the producers run before the plug is pulled
        // (longer if this cycle's share of acknowledgements is not there yet).
        let planned = Instant::now() + Duration::from_millis(rng.between(200, 900));
        let share = (cycle as usize + 1) * min_acks / kills.max(1) as usize;
        let latest = Instant::now() + Duration::from_secs(15);
        while Instant::now() < planned || (count.load(Ordering::Relaxed) < share && Instant::now() < latest) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        block_in_place(|| broker.kill());
        history.broker_killed();
        for producer in producers {
            acks.extend(producer.await.unwrap());
        }
        let (next, restart_ms) = block_in_place(|| start(root.path()));
        broker = next;
        *backend.lock().unwrap() = broker.addr();
        restarts.push(restart_ms);
        let admin = broker.client().await;
        read_committed(&admin, &history).await;
        settles.push(wait_owned(&admin).await);
    }

    // No more faults: the members drain what is left and commit it.
    let admin = broker.client().await;
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        ends.insert(partition, admin.list_offsets(TOPIC, partition, LATEST_TIMESTAMP).await.unwrap());
    }
    let deadline = Instant::now() + PATIENCE * 3;
    while read_committed(&admin, &history).await != ends {
        assert!(Instant::now() < deadline, "seed {seed}: the group never committed up to {ends:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reports: Vec<_> = members.into_iter().map(|m| block_in_place(|| m.finish(Order::Close))).collect();
    forwarder.abort();

    let mut reads = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let records = read_partition(&admin, TOPIC, partition, 0).await;
        reads.insert(partition, records.iter().map(|r| (r.offset, text(r))).collect::<Vec<_>>());
    }
    let log_anomalies = check_log(&acks, &reads);
    let (anomalies, figures) = check_group(&acks, &history.facts());
    eprintln!(
        "fault_group kill9: seed {seed}, flush always, kills {kills}, acknowledged {}, processed {}, duplicates {}, \
         ownership stretches {}, commits acknowledged {} refused {}, anomalies {} (log {}), \
         restart to ready p50 {:.0} ms p99 {:.0} ms, group owns every partition again p50 {:.0} ms p99 {:.0} ms",
        acks.len(),
        figures.processed,
        figures.duplicates,
        figures.stretches,
        figures.commits_acked,
        figures.commits_refused,
        anomalies.len(),
        log_anomalies.len(),
        quantile(&restarts, 0.5),
        quantile(&restarts, 0.99),
        quantile(&settles, 0.5),
        quantile(&settles, 0.99),
    );
    assert!(log_anomalies.is_empty(), "seed {seed}: {:?}", &log_anomalies[..log_anomalies.len().min(20)]);
    if !anomalies.is_empty() {
        for fact in ownership_excerpt(&anomalies, &history.facts()) {
            eprintln!("  {fact:?}");
        }
    }
    assert!(anomalies.is_empty(), "seed {seed}: {:?}", &anomalies[..anomalies.len().min(20)]);
    assert!(acks.len() >= min_acks, "seed {seed}: only {} records acknowledged (want {min_acks})", acks.len());
    assert!(figures.losses >= kills as usize, "seed {seed}: the kills did not take the members' partitions");
    for report in &reports {
        assert_eq!(report.other_losses, 0, "seed {seed}: {report:?}");
    }
    block_in_place(|| broker.kill());
}
