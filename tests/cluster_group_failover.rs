//! A consumer group through the loss of its coordinator, against a real
//! ZooKeeper and the real binary: three members consume and commit a
//! replicated topic while the broker that coordinates their group is
//! SIGKILLed. The group carries on at the next coordinator, which has every
//! acknowledged commit: no member reads a record below an offset the group
//! had committed, every record is read, and the coordinators' assignments
//! never give a partition to two members.
//!
//! One kill in the default suite; `HERALD_CLUSTER_FAULTS=long` kills the
//! coordinator's broker five times (each restarted once the next
//! coordinator has taken over), as `scripts/fault-long.sh` runs it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Cluster as Brokers, TAKEOVER};
use common::value;
use herald::client::{AutoOffsetReset, Cluster, ConnectOptions, GroupConsumer, GroupConsumerConfig, GroupEvent};
use herald::protocol::TopicPartitions;

const TOPIC: &str = "orders";
const GROUP: &str = "fulfilment";
const PARTITIONS: u32 = 6;
/// Records per partition for each kill.
const PER_ROUND: i64 = 1_000;
/// Each member's pause between polls, and the most a fetch returns: the
/// group takes seconds to read the topic, so the kill lands mid-way.
const PAUSE: Duration = Duration::from_millis(20);
const MAX_FETCH_BYTES: u64 = 2_048;

fn rounds() -> i64 {
    if std::env::var("HERALD_CLUSTER_FAULTS").is_ok_and(|v| v == "long") {
        5
    } else {
        1
    }
}

/// What the members did, in the order they did it.
#[derive(Debug, Clone)]
enum Seen {
    /// Member `m` read the record at `offset` of `partition`.
    Read {
        member: usize,
        partition: u32,
        offset: i64,
    },
    /// The group acknowledged member `m`'s commit of these positions.
    Committed {
        member: usize,
        positions: Vec<(u32, i64)>,
    },
    Event {
        member: usize,
        event: GroupEvent,
    },
}

type History = Arc<Mutex<Vec<Seen>>>;

/// One kill: the coordinator's broker, the distinct records read before,
/// and how long until the next coordinator answered and reads went on.
#[derive(Debug)]
#[allow(dead_code)] // Printed.
struct Round {
    broker: i32,
    read_before: i64,
    coordinated: Duration,
    resumed: Duration,
}

async fn member(brokers: Cluster, n: usize, history: History, done: Arc<AtomicBool>) {
    let mut config = GroupConsumerConfig::new(GROUP, &[TOPIC]);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.auto_commit = false;
    config.session_timeout_ms = 6_000;
    config.max_bytes = MAX_FETCH_BYTES;
    let mut consumer = loop {
        match GroupConsumer::join_with_cluster(brokers.clone(), config.clone()).await {
            Ok(consumer) => break consumer,
            Err(err) => tracing::info!(n, %err, "join failed; again"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    while !done.load(Ordering::SeqCst) {
        let read = consumer.poll().await;
        {
            let mut log = history.lock().unwrap();
            log.extend(consumer.take_events().into_iter().map(|event| Seen::Event { member: n, event }));
            match read {
                Ok(records) => log.extend(records.iter().map(|r| Seen::Read {
                    member: n,
                    partition: r.partition,
                    offset: r.record.offset,
                })),
                Err(err) => tracing::info!(n, %err, "poll failed; polling again"),
            }
        }
        let positions: Vec<(u32, i64)> =
            consumer.assignment().iter().filter_map(|(t, p)| Some((*p, consumer.position(t, *p)?))).collect();
        if consumer.commit().await.is_ok() {
            history.lock().unwrap().push(Seen::Committed { member: n, positions });
        }
        tokio::time::sleep(PAUSE).await;
    }
    let _ = consumer.close().await;
}

/// Every partition's owner in each assignment the coordinator describes,
/// sampled until `done`: none may have two.
async fn watch_assignments(brokers: Cluster, done: Arc<AtomicBool>) -> usize {
    let mut samples = 0;
    while !done.load(Ordering::SeqCst) {
        if let Ok(described) = brokers.describe_group(GROUP).await {
            let mut owners: BTreeMap<u32, &str> = BTreeMap::new();
            for m in &described.members {
                for p in TopicPartitions::pairs(&m.assignment).map(|(_, p)| p) {
                    let before = owners.insert(p, &m.member_id);
                    assert!(before.is_none(), "partition {p} given to two members: {described:?}");
                }
            }
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    samples
}

/// Waits until the group's coordinator is a broker other than `old` (the
/// client may still hold its connection to `old` for a moment).
async fn coordinator_other_than(brokers: &Cluster, old: i32) -> i32 {
    let deadline = Instant::now() + TAKEOVER * 2;
    loop {
        let found = match brokers.coordinator(GROUP, deadline).await {
            Ok(coordinator) => coordinator.describe_cluster().await.map(|d| d.broker_id),
            Err(err) => Err(err),
        };
        match found {
            Ok(id) if id != old => return id,
            other => {
                assert!(Instant::now() < deadline, "no coordinator other than broker {old}: {other:?}");
                brokers.forget_coordinator(GROUP);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_carries_on_from_its_commits_when_its_coordinators_broker_is_killed() {
    common::init_logging();
    let mut cluster = Brokers::start_with(3, &[("HERALD_CLUSTER__OFFSETS_TOPIC_PARTITIONS", "6")]).await;
    let any = cluster.broker(1).client().await;
    any.create_replicated_topic(TOPIC, i64::from(PARTITIONS), Some(3), BTreeMap::new()).await.unwrap();
    for p in 0..PARTITIONS {
        cluster.placement(TOPIC, p, "the full ISR", |m| m.isr.len() == 3).await;
    }
    let bootstrap: Vec<String> = cluster.live().map(|b| b.addr().to_string()).collect();
    let brokers = Cluster::connect(&bootstrap, "failover-test", ConnectOptions::default()).await.unwrap();
    let rounds = rounds();
    let per_partition = PER_ROUND * rounds;
    for p in 0..PARTITIONS {
        let leader = brokers.leader(TOPIC, p).await.unwrap();
        for chunk in 0..per_partition / 100 {
            let records = (0..100).map(|i| value(format!("{p}-{}", chunk * 100 + i))).collect();
            leader.produce_with_acks(TOPIC, Some(p), records, -1).await.unwrap();
        }
    }

    let (history, done) = (History::default(), Arc::new(AtomicBool::new(false)));
    let members: Vec<_> =
        (0..3).map(|n| tokio::spawn(member(brokers.clone(), n, history.clone(), done.clone()))).collect();
    let watcher = tokio::spawn(watch_assignments(brokers.clone(), done.clone()));

    let distinct = |history: &History| {
        let log = history.lock().unwrap();
        let read: BTreeSet<(u32, i64)> = log
            .iter()
            .filter_map(|s| match s {
                Seen::Read { partition, offset, .. } => Some((*partition, *offset)),
                _ => None,
            })
            .collect();
        let commits = log.iter().filter(|s| matches!(s, Seen::Committed { .. })).count();
        (read.len() as i64, commits)
    };
    let total = i64::from(PARTITIONS) * per_partition;
    let mut killed = Vec::new();
    for round in 0..rounds {
        // Kill once the group has read its share of the topic for this round.
        let due = total * (2 * round + 1) / (2 * rounds);
        let deadline = Instant::now() + TAKEOVER * 2;
        while distinct(&history).0 < due || distinct(&history).1 < 3 {
            assert!(Instant::now() < deadline, "round {round}: the group read only {:?}", distinct(&history));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let coordinator = brokers.coordinator(GROUP, Instant::now() + TAKEOVER).await.unwrap();
        let old = coordinator.describe_cluster().await.unwrap().broker_id;
        let before = distinct(&history).0;
        let at = Instant::now();
        cluster.kill(old);
        coordinator_other_than(&brokers, old).await;
        let coordinated = at.elapsed();
        // The members read again (a hundred records past where they were).
        while distinct(&history).0 < (before + 100).min(total) {
            assert!(Instant::now() < deadline + TAKEOVER * 2, "round {round}: reads did not resume");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        killed.push(Round { broker: old, read_before: before, coordinated, resumed: at.elapsed() });
        if round + 1 < rounds {
            cluster.restart(old);
            cluster.all_in(3).await;
        }
    }

    let deadline = Instant::now() + TAKEOVER * 3;
    while distinct(&history).0 < total {
        assert!(Instant::now() < deadline, "the group stopped at {:?} of {total}", distinct(&history));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each member is one of the group (on a connection of its own).
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let described = brokers.describe_group(GROUP).await;
        if described.as_ref().is_ok_and(|d| d.members.len() == 3) {
            break;
        }
        assert!(Instant::now() < deadline, "the group is not its 3 members: {described:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.store(true, Ordering::SeqCst);
    for m in members {
        m.await.unwrap();
    }
    let samples = watcher.await.unwrap();
    assert!(samples >= 5, "the coordinators' assignments were sampled {samples} times");

    // Nothing committed is lost: once the group acknowledged a commit of a
    // partition's position, no member reads that partition below it.
    let log = history.lock().unwrap();
    // Each partition's highest acknowledged position, and who committed it.
    let mut committed: BTreeMap<u32, (i64, usize)> = BTreeMap::new();
    let (mut reads, mut again) = (0usize, 0usize);
    let mut first: BTreeMap<(u32, i64), usize> = BTreeMap::new();
    for (at, seen) in log.iter().enumerate() {
        match seen {
            Seen::Committed { member, positions } => {
                for (p, o) in positions {
                    let c = committed.entry(*p).or_insert((0, *member));
                    if *o > c.0 {
                        *c = (*o, *member);
                    }
                }
            }
            Seen::Read { member, partition, offset } => {
                reads += 1;
                let (floor, by) = committed.get(partition).copied().unwrap_or((0, *member));
                assert!(
                    *offset >= floor,
                    "member {member} read {partition}/{offset} after member {by} committed {floor} (event {at})"
                );
                if first.insert((*partition, *offset), at).is_some() {
                    again += 1;
                }
            }
            Seen::Event { .. } => {}
        }
    }
    let lost: BTreeSet<usize> = log
        .iter()
        .filter_map(|s| match s {
            Seen::Event { member, event: GroupEvent::Lost { .. } } => Some(*member),
            _ => None,
        })
        .collect();
    println!(
        "read {reads} records ({again} again, all above the group's commits); coordinators killed: {killed:?}; \
         members {lost:?} lost their partitions; {samples} assignment samples"
    );
    assert!(!lost.is_empty(), "no member noticed the coordinator's loss");
    assert_eq!(first.len() as i64, total);
}
