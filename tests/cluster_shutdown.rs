//! Controlled shutdown (docs/cluster.md, "Controlled shutdown"), through the
//! real binary against a real ZooKeeper: a broker stopped with SIGTERM first
//! has the controller move its leaderships away, so that an idempotent
//! producer with acks -1 going through a rolling restart of every broker
//! sees no failed record and only a short pause, and a leader's partitions
//! have new leaders before it exits; a partition no other replica can take
//! (one replica) does not hold the exit for
//! `cluster.controlled_shutdown_timeout_ms`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::paced::Paced;
use common::cluster::{Cluster, SESSION_TIMEOUT_MS, TAKEOVER};
use herald::client::{Cluster as Brokers, ConnectOptions, Producer, ProducerConfig};

/// The tests run one at a time: each runs a cluster of its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The longest time without any acknowledgement between `from` and `to`
/// (counting from the last acknowledgement before `from`).
fn longest_gap(acks: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut previous = acks.iter().copied().filter(|t| *t <= from).max().unwrap_or(from);
    let mut longest = Duration::ZERO;
    for &t in acks.iter().filter(|t| **t > from && **t <= to) {
        longest = longest.max(t - previous);
        previous = t;
    }
    longest.max(to.saturating_duration_since(previous))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_rolling_restart_under_an_idempotent_acks_all_producer_fails_no_record_and_barely_pauses() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    const PARTITIONS: u32 = 3;
    cluster.create("roll", PARTITIONS, 3).await;
    let brokers = Brokers::connect(&cluster.bootstrap(), "rolling", ConnectOptions::default()).await.unwrap();
    let config = ProducerConfig { linger_ms: 2, delivery_timeout: Duration::from_secs(60), ..Default::default() };
    assert_eq!((config.acks, config.idempotent), (-1, true), "acks -1 and idempotence are the defaults");
    let producer = Arc::new(Producer::with_cluster(brokers, config));

    // A record every millisecond or so, round the partitions.
    let sender = Paced::start(producer.clone(), "roll", PARTITIONS);

    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let mut restarts = Vec::new();
    for id in 1..=3 {
        let started = Instant::now();
        let (status, _) = tokio::task::block_in_place(|| cluster.terminate(id));
        assert!(status.success(), "broker {id} stopped cleanly: {status}");
        let stopped = started.elapsed();
        tokio::task::block_in_place(|| cluster.restart(id));
        cluster.all_in(3).await;
        cluster.full_isr("roll", PARTITIONS, 3).await;
        restarts.push((id, started, Instant::now(), stopped));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = sender.stop().await;
    producer.flush().await.unwrap();
    let total = sent.len();
    let mut acked: BTreeMap<u32, Vec<(i64, String)>> = BTreeMap::new();
    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut times: BTreeMap<u32, Vec<Instant>> = BTreeMap::new();
    let mut failed = Vec::new();
    for (i, p, answered) in sent {
        let (result, at) = tokio::time::timeout(TAKEOVER, answered).await.expect("an answer").expect("the task");
        expected.entry(p).or_default().push(format!("v{i}"));
        match result {
            Ok(metadata) => {
                acked.entry(p).or_default().push((metadata.offset, format!("v{i}")));
                times.entry(p).or_default().push(at);
            }
            Err(err) => failed.push(format!("v{i}: {err}")),
        }
    }
    let mut gaps = Vec::new();
    for (id, from, to, stopped) in &restarts {
        // Per partition: the others' acknowledgements must not hide one
        // that stalls.
        let gap = times.values().map(|t| longest_gap(t, *from, *to)).max().unwrap_or_default();
        println!(
            "figures: broker {id} stopped in {} ms, back in full ISR after {} ms; longest gap between \
             acknowledgements of a partition {} ms",
            stopped.as_millis(),
            (*to - *from).as_millis(),
            gap.as_millis()
        );
        gaps.push(gap);
    }
    assert!(failed.is_empty(), "{} of {total} records failed: {:?}", failed.len(), &failed[..failed.len().min(10)]);
    let reads = cluster.settled("roll", PARTITIONS).await;
    for p in 0..PARTITIONS {
        let stored = &reads[&p];
        let values: Vec<String> = stored.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(values, expected[&p], "partition {p}: every record stored once, in the order sent");
        assert_eq!(stored, &acked[&p], "partition {p}: each acknowledged where it is stored");
    }
    println!("figures: {total} records, all acknowledged, each stored once in order");
    let bound = Duration::from_millis(SESSION_TIMEOUT_MS / 2);
    assert!(gaps.iter().all(|g| *g < bound), "a gap of {gaps:?} is not well under the session timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_hands_its_partitions_over_before_it_exits_and_waits_no_longer_than_the_timeout() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const TIMEOUT: Duration = Duration::from_millis(20_000);
    let timeout_ms = TIMEOUT.as_millis().to_string();
    let mut cluster =
        Cluster::start_with(3, &[("HERALD_CLUSTER__CONTROLLED_SHUTDOWN_TIMEOUT_MS", timeout_ms.as_str())]).await;
    cluster.create("moved", 3, 3).await;
    // One replica per partition, spread over the brokers: one on each.
    cluster.create("solo", 3, 1).await;
    // The controller, so that it hands its own partitions over too.
    let victim = cluster.all_in(3).await.controller_id;
    let mut led = Vec::new();
    for p in 0..3 {
        let placed = cluster.placement("moved", p, "a leader", |_| true).await;
        if placed.leader == victim {
            led.push((p, placed.leader_epoch));
        }
    }
    assert!(!led.is_empty(), "the leaders are spread: broker {victim} leads a partition of `moved`");
    let mut stuck = None;
    for p in 0..3 {
        if cluster.placement("solo", p, "a leader", |_| true).await.leader == victim {
            stuck = Some(p);
        }
    }
    let stuck = stuck.expect("a partition of `solo` on the victim");

    let started = Instant::now();
    let (status, log) = tokio::task::block_in_place(|| cluster.terminate(victim));
    let took = started.elapsed();
    assert!(status.success(), "broker {victim} stopped cleanly: {status}");
    let lines: Vec<&str> = log.lines().collect();
    let at = |what: &str, needle: &dyn Fn(&str) -> bool| {
        lines.iter().position(|l| needle(l)).unwrap_or_else(|| panic!("broker {victim} never logged {what}:\n{log}"))
    };
    let draining = at("the drain", &|l: &str| l.contains("shutting down: no new connections"));
    for (p, epoch) in &led {
        let partition = format!("topic=moved partition={p} ");
        // The victim is the controller: it logs each decision once written.
        let not_victim = format!("leader={victim} ");
        let handed = at(&format!("a new leader of moved/{p} decided"), &|l: &str| {
            l.contains("partition state decided") && l.contains(&partition) && !l.contains(&not_victim)
        });
        assert!(handed < draining, "moved/{p} had a new leader before broker {victim} stopped serving:\n{log}");
        let after = cluster.placement("moved", *p, "a new leader", |m| m.leader != victim).await;
        assert_eq!(after.leader_epoch, epoch + 1, "one election for moved/{p}: {after:?}");
    }
    let gave_up = at("leaving `solo` behind", &|l: &str| l.contains("no other live replica can take over"));
    assert!(
        lines[gave_up].contains(&format!("solo/{stuck}")),
        "it names the partition it still led: {}",
        lines[gave_up]
    );
    assert!(gave_up < draining, "then it stops as usual");
    assert!(
        took < Duration::from_secs(5),
        "a partition no other replica can take does not hold the exit (timeout {TIMEOUT:?}): {took:?}"
    );
    println!(
        "figures: broker {victim} (the controller) handed {} partitions over and exited {} ms after SIGTERM \
         (timeout {} ms; solo/{stuck}, with no other replica, left behind)",
        led.len(),
        took.as_millis(),
        TIMEOUT.as_millis()
    );
}
