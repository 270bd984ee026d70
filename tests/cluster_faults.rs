//! The cluster under faults, through the real binary against a real
//! ZooKeeper (2 s session timeout): a partition leader killed with SIGKILL
//! under `acks` -1 load, round after round; a leader paused past its session
//! and resumed; the controller killed, then a leader right after; ZooKeeper
//! restarted. Three producer tasks send unique values through [`Leaders`]
//! (they find each partition's leader themselves); at the end every replica
//! must be back in sync with identical logs, and [`history::check`] finds no
//! acknowledged record lost, moved or stored more often than its attempts
//! allow. In the leader-kill rounds a consumer group reads the topic all
//! along and must end up with every acknowledged record. Each test prints
//! one line of figures.
//!
//! Short tier by default (3 kill rounds); the long tier is
//! `HERALD_CLUSTER_FAULTS=long cargo test --release --test cluster_faults`
//! (10 rounds, or `HERALD_CLUSTER_FAULT_ROUNDS`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::group::Group;
use common::cluster::history::{check, Anomaly, Sent};
use common::cluster::{describe_until, Cluster, Leaders, Seeds, SESSION_TIMEOUT_MS, TAKEOVER};
use common::{quantile, value};
use tokio::task::JoinHandle;

/// A new leader is in place at most this long after its predecessor died:
/// the session timeout, then 2 s for ZooKeeper and the controller.
const ELECTION_BOUND: Duration = Duration::from_millis(SESSION_TIMEOUT_MS + 2_000);

/// The tests run one at a time: each runs a cluster of its own, and the
/// failover bound is about the cluster, not about a crowded machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn long_tier() -> bool {
    std::env::var("HERALD_CLUSTER_FAULTS").is_ok_and(|v| v == "long")
}

/// Producer tasks sending `acks` -1 records one at a time, each value
/// unique, producer `t` to partition `t` modulo the partitions (so that a
/// partition's failover holds up only its own producers), each through its
/// own [`Leaders`].
struct Load {
    topic: String,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    sent: Arc<Mutex<Vec<Sent>>>,
    /// (partition, when its acknowledgement came).
    acks: Arc<Mutex<Vec<(u32, Instant)>>>,
}

impl Load {
    fn start(seeds: &Seeds, topic: &str, partitions: u32, producers: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..producers)
            .map(|t| {
                let (stop, sent, acks) = (stop.clone(), sent.clone(), acks.clone());
                let (mut leaders, topic) = (Leaders::new(seeds.clone()), topic.to_string());
                tokio::spawn(async move {
                    let mut n = 0u32;
                    while !stop.load(Ordering::SeqCst) {
                        let partition = t % partitions;
                        let text = format!("p{t}-{n}");
                        let deadline = Instant::now() + Duration::from_secs(20);
                        let produced = leaders.produce(&topic, partition, &text, -1, deadline).await;
                        if produced.offset.is_some() {
                            acks.lock().unwrap().push((partition, Instant::now()));
                        }
                        let record = Sent { value: text, partition, acked: produced.offset, unknown: produced.unknown };
                        sent.lock().unwrap().push(record);
                        n += 1;
                    }
                })
            })
            .collect();
        Load { topic: topic.to_string(), stop, tasks, sent, acks }
    }

    /// The last acknowledgement on `partition` before `at`.
    fn last_ack_before(&self, partition: u32, at: Instant) -> Option<Instant> {
        self.acks.lock().unwrap().iter().filter(|(p, t)| *p == partition && *t < at).map(|(_, t)| *t).max()
    }

    /// Waits for the first acknowledgement on `partition` after `at`.
    async fn first_ack_after(&self, cluster: &Cluster, partition: u32, at: Instant) -> Instant {
        self.acks_after(cluster, partition, at, 1).await
    }

    /// Waits for `n` acknowledgements on `partition` after `at`; when the
    /// `n`th came. Failing, it shows what `cluster`'s brokers logged of the
    /// partition.
    async fn acks_after(&self, cluster: &Cluster, partition: u32, at: Instant, n: usize) -> Instant {
        let deadline = Instant::now() + TAKEOVER;
        loop {
            let mut after: Vec<Instant> =
                self.acks.lock().unwrap().iter().filter(|(p, t)| *p == partition && *t > at).map(|(_, t)| *t).collect();
            after.sort();
            if let Some(nth) = after.get(n - 1) {
                return *nth;
            }
            if Instant::now() >= deadline {
                cluster.show_partition(&self.topic, partition);
                panic!("not {n} acknowledgements on partition {partition} within {TAKEOVER:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn acknowledged(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Stops the producers (each finishes the record it is sending) and
    /// returns everything they sent.
    async fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.expect("a producer task");
        }
        let sent = self.sent.lock().unwrap().clone();
        sent
    }
}

/// Checks the history and prints the figures all tests share.
fn verdict(name: &str, sent: &[Sent], reads: &BTreeMap<u32, Vec<(i64, String)>>, figures: &str) {
    let anomalies = check(sent, reads);
    let acked = sent.iter().filter(|s| s.acked.is_some()).count();
    let maybe = sent.iter().filter(|s| s.unknown > 0).count();
    let stored: usize = reads.values().map(Vec::len).sum();
    println!(
        "{name}: {} sent, {acked} acknowledged, {maybe} retried after an unknown outcome, {stored} stored, {} anomalies; {figures}",
        sent.len(),
        anomalies.len()
    );
    assert!(anomalies.is_empty(), "{name}: {:?}", &anomalies[..anomalies.len().min(20)]);
}

/// Waits until `ids` lead no partition of `topic` (as the brokers not in
/// `ids` say) and returns how long that took from `since`.
async fn led_elsewhere(cluster: &Cluster, topic: &str, partitions: &[u32], gone: i32, since: Instant) -> Duration {
    let survivors: Vec<i32> = cluster.live_ids().into_iter().filter(|&id| id != gone).collect();
    for &p in partitions {
        cluster.placement_among(&survivors, topic, p, "a new leader", |m| m.leader != gone).await;
    }
    since.elapsed()
}

// Several threads: the producers go on while the test blocks on starting,
// killing or signalling a process.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_killed_leader_is_replaced_within_its_session_timeout_and_loses_nothing_acknowledged() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let rounds: u32 = match std::env::var("HERALD_CLUSTER_FAULT_ROUNDS") {
        Ok(n) => n.trim().parse().expect("HERALD_CLUSTER_FAULT_ROUNDS is a number"),
        Err(_) if long_tier() => 10,
        Err(_) => 3,
    };
    let mut cluster = Cluster::start_with(3, &[("HERALD_CLUSTER__OFFSETS_TOPIC_PARTITIONS", "3")]).await;
    cluster.create("k", 3, 3).await;
    let load = Load::start(&cluster.seeds, "k", 3, 3);
    // A consumer group reads the topic all along: it must carry on.
    let group = Group::start(&cluster.seeds, "readers", "k", 2);
    let (mut windows, mut elections, mut controllers_killed) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        let mut placed = Vec::new();
        for p in 0..3 {
            placed.push(cluster.placement("k", p, "the full ISR", |m| m.isr.len() == 3).await);
        }
        let victim = placed[round as usize % 3].leader;
        let led: Vec<u32> = placed.iter().filter(|m| m.leader == victim).map(|m| m.partition).collect();
        // Under load before each kill.
        for &p in &led {
            load.acks_after(&cluster, p, Instant::now(), 20).await;
        }
        let controller = cluster.broker(victim).client().await.describe_cluster().await.unwrap().controller_id;
        controllers_killed += usize::from(controller == victim);
        let killed_at = Instant::now();
        cluster.kill(victim);
        let elected = led_elsewhere(&cluster, "k", &led, victim, killed_at).await;
        elections.push(elected.as_secs_f64() * 1000.0);
        if elected > ELECTION_BOUND {
            cluster.show_partition("k", led[0]);
            panic!("round {round}: new leaders of {led:?} after {elected:?} (the controller was {controller})");
        }
        for &p in &led {
            let first = load.first_ack_after(&cluster, p, killed_at).await;
            let last = load.last_ack_before(p, killed_at).expect("an acknowledgement before the kill");
            windows.push((first - last).as_secs_f64() * 1000.0);
        }
        cluster.restart(victim);
    }
    let sent = load.stop().await;
    let reads = cluster.settled("k", 3).await;
    let acked: BTreeSet<String> = sent.iter().filter(|s| s.acked.is_some()).map(|s| s.value.clone()).collect();
    let unread = group.read_all(&acked, TAKEOVER * 2).await;
    assert!(unread.is_empty(), "the group never read {} acknowledged records: {unread:?}", unread.len());
    let figures = format!(
        "{rounds} rounds ({controllers_killed} killed the controller); new leader after p50 {:.0} ms, max {:.0} ms; unavailability p50 {:.0} ms, p99 {:.0} ms over {} windows; a group of 2 read every acknowledged record",
        quantile(&elections, 0.5),
        quantile(&elections, 1.0),
        quantile(&windows, 0.5),
        quantile(&windows, 0.99),
        windows.len()
    );
    verdict("leader kill -9", &sent, &reads, &figures);
}

// Several threads: the producers go on while the test blocks on starting,
// killing or signalling a process.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_leader_paused_past_its_session_is_fenced_and_rejoins_as_a_follower_with_its_tail_cut() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3).await;
    cluster.create("s", 1, 3).await;
    let load = Load::start(&cluster.seeds, "s", 1, 3);
    let before = cluster.placement("s", 0, "the full ISR", |m| m.isr.len() == 3).await;
    let old = before.leader;
    load.first_ack_after(&cluster, 0, Instant::now()).await;

    // Paused: what is sent to it now waits in its socket until it resumes.
    let direct = cluster.broker(old).client().await;
    let paused_at = Instant::now();
    cluster.signal(old, "STOP");
    let mut stale = Vec::new();
    for i in 0..3 {
        for acks in [-1, 1] {
            let text = format!("stale-acks{acks}-{i}");
            stale.push((text.clone(), acks, direct.start_produce("s", Some(0), vec![value(&text)], acks).unwrap()));
        }
    }
    let survivors: Vec<i32> = cluster.live_ids().into_iter().filter(|&id| id != old).collect();
    let after = cluster.placement_among(&survivors, "s", 0, "a new leader", |m| m.leader != old).await;
    let elected = paused_at.elapsed();
    assert!(after.leader_epoch > before.leader_epoch);
    let resumed_at = Instant::now();
    load.first_ack_after(&cluster, 0, resumed_at).await;

    // Resumed: it answers what waited, but never acknowledges an acks -1
    // write alone; it learns it no longer leads, follows the new leader and
    // cuts what it appended that the new leader does not have.
    cluster.signal(old, "CONT");
    let mut sent = Vec::new();
    let (mut refused, mut acked_one) = (Vec::new(), 0);
    for (text, acks, answer) in stale {
        let answer = tokio::time::timeout(TAKEOVER, answer).await.expect("the resumed broker answers");
        let offset = match answer {
            Ok(answer) => Some(answer[0].base_offset),
            Err(err) => {
                refused.push(err.code().unwrap_or(-1));
                None
            }
        };
        acked_one += usize::from(acks == 1 && offset.is_some());
        assert!(acks == 1 || offset.is_none(), "the old leader acknowledged {text} alone at {offset:?}");
        // acks 1 promises nothing across a failover: stored once or not.
        sent.push(Sent { value: text, partition: 0, acked: offset.filter(|_| acks == -1), unknown: 1 });
    }
    cluster.placement("s", 0, "the old leader back in the ISR", |m| m.leader != old && m.isr.len() == 3).await;
    let followed = resumed_at.elapsed();
    sent.extend(load.stop().await);
    let reads = cluster.settled("s", 1).await;
    let stale_kept = reads[&0].iter().filter(|(_, v)| v.starts_with("stale")).count();
    let figures = format!(
        "new leader {} after {} ms paused; old leader in sync again {} ms after resuming; \
         its stale produces answered {refused:?} (acks 1 acknowledged: {acked_one}, kept: {stale_kept})",
        after.leader,
        elected.as_millis(),
        followed.as_millis()
    );
    verdict("leader paused", &sent, &reads, &figures);
}

// Several threads: the producers go on while the test blocks on starting,
// killing or signalling a process.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_controller_killed_then_a_leader_killed_right_after_are_both_taken_over() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    cluster.create("c", 3, 3).await;
    let load = Load::start(&cluster.seeds, "c", 3, 3);
    let first = cluster.all_in(3).await;
    load.first_ack_after(&cluster, 0, Instant::now()).await;

    let controller = first.controller_id;
    let killed_at = Instant::now();
    cluster.kill(controller);
    let mut successor = None;
    for broker in cluster.live() {
        let d = describe_until(broker, TAKEOVER, "another controller", |d| {
            d.controller_id != -1 && d.controller_id != controller && d.brokers.len() == 2
        })
        .await;
        assert!(d.controller_epoch > first.controller_epoch, "{first:?} then {d:?}");
        assert!(successor.is_none_or(|s| s == d.controller_id), "the survivors disagree");
        successor = Some(d.controller_id);
    }
    let successor = successor.unwrap();
    let elected = killed_at.elapsed();
    let all: Vec<u32> = (0..3).collect();
    led_elsewhere(&cluster, "c", &all, controller, killed_at).await;

    // At once a leader dies too, not the new controller when another leads.
    let mut leaders = Vec::new();
    for p in 0..3 {
        leaders.push(cluster.placement("c", p, "a leader", |_| true).await.leader);
    }
    let victim = leaders.iter().copied().find(|&l| l != successor).unwrap_or(successor);
    let led: Vec<u32> = all.iter().copied().filter(|&p| leaders[p as usize] == victim).collect();
    let second_at = Instant::now();
    cluster.kill(victim);
    let second = led_elsewhere(&cluster, "c", &led, victim, second_at).await;
    assert!(second <= ELECTION_BOUND, "new leaders of {led:?} after {second:?}");
    for &p in &all {
        load.first_ack_after(&cluster, p, second_at + second).await;
    }

    cluster.restart(controller);
    cluster.restart(victim);
    cluster.all_in(3).await;
    let sent = load.stop().await;
    let reads = cluster.settled("c", 3).await;
    let figures = format!(
        "controller {controller} killed, {successor} in control after {} ms; leader {victim} killed right after, \
         its {} partitions led elsewhere after {} ms",
        elected.as_millis(),
        led.len(),
        second.as_millis()
    );
    verdict("controller kill", &sent, &reads, &figures);
}

// Several threads: the producers go on while the test blocks on starting,
// killing or signalling a process.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn brokers_carry_on_through_zookeeper_restarts() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    cluster.create("z", 3, 3).await;
    let load = Load::start(&cluster.seeds, "z", 3, 3);
    for p in 0..3 {
        load.acks_after(&cluster, p, Instant::now(), 20).await;
    }

    // A restart at once, then one after longer than the session timeout.
    // ZooKeeper restores sessions with a fresh timeout, but the brokers'
    // client gives a session up as expired when it reaches no server within
    // the session timeout (ZooKeeper's own restart takes about that), so the
    // brokers may rejoin with new sessions either time. Either way the
    // cluster works on after each.
    let mut outages = Vec::new();
    for pause in [Duration::ZERO, Duration::from_millis(SESSION_TIMEOUT_MS + 1_500)] {
        let acked = load.acknowledged();
        let stopped_at = Instant::now();
        cluster.zk.stop();
        tokio::time::sleep(pause).await;
        cluster.zk.start_again();
        let during = load.acknowledged() - acked;
        cluster.all_in(3).await;
        for p in 0..3 {
            load.first_ack_after(&cluster, p, Instant::now()).await;
        }
        outages.push(format!("{} ms down, {during} acks meanwhile", stopped_at.elapsed().as_millis()));
    }

    // The controller still does its work: a leader killed (once every
    // replica is back in sync) is replaced.
    let mut placed = Vec::new();
    for p in 0..3 {
        placed.push(cluster.placement("z", p, "the full ISR", |m| m.isr.len() == 3).await);
    }
    let leader = placed[0].leader;
    let led: Vec<u32> = placed.iter().filter(|m| m.leader == leader).map(|m| m.partition).collect();
    let killed_at = Instant::now();
    cluster.kill(leader);
    let elected = led_elsewhere(&cluster, "z", &led, leader, killed_at).await;
    assert!(elected <= ELECTION_BOUND, "new leaders of {led:?} after {elected:?}");
    cluster.restart(leader);
    cluster.all_in(3).await;
    let rejoined = cluster.live().filter(|b| b.log_text().contains("rejoined the cluster")).count();
    let sent = load.stop().await;
    let reads = cluster.settled("z", 3).await;
    let figures = format!(
        "restarts: {}; brokers that rejoined with a new session: {rejoined}; a leader killed afterwards replaced in {} ms",
        outages.join(", "),
        elected.as_millis()
    );
    verdict("zookeeper restart", &sent, &reads, &figures);
}

// Several threads: the producers go on while the test blocks on starting,
// killing or signalling a process.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_follower_fetches_from_a_leader_that_came_back_on_another_port() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    cluster.create("f", 1, 3).await;
    let placed = cluster.placement("f", 0, "the full ISR", |m| m.isr.len() == 3).await;
    let (first, second) = (placed.replicas[0], placed.replicas[1]);
    let third = placed.replicas[2];
    assert_eq!(placed.leader, first, "the preferred replica leads: {placed:?}");
    let mut leaders = Leaders::new(cluster.seeds.clone());
    let mut sent = Vec::new();
    let produce = async |leaders: &mut Leaders, i: usize| {
        let text = format!("v{i}");
        let produced = leaders.produce("f", 0, &text, -1, Instant::now() + TAKEOVER).await;
        assert!(produced.offset.is_some(), "{text} not acknowledged within {TAKEOVER:?}");
        Sent { value: text, partition: 0, acked: produced.offset, unknown: produced.unknown }
    };
    sent.push(produce(&mut leaders, 0).await);

    // The leader dies and comes back on another port; the third broker's
    // fetcher knew it at the old one.
    cluster.kill(first);
    cluster.placement("f", 0, "the second replica leading", |m| m.leader == second).await;
    sent.push(produce(&mut leaders, 1).await);
    cluster.restart(first);
    cluster.placement("f", 0, "the first replica back in the ISR", |m| m.isr.len() == 3).await;

    // The second dies: the first live replica of the ISR leads again, and
    // the third must follow it at its new address for acks -1 to pass.
    cluster.kill(second);
    let again = cluster.placement("f", 0, "a new leader", |m| m.leader != second).await;
    assert_eq!(again.leader, first, "{again:?}");
    assert!(again.isr.contains(&third), "{again:?}");
    for i in 2..5 {
        sent.push(produce(&mut leaders, i).await);
    }
    cluster.restart(second);
    let reads = cluster.settled("f", 1).await;
    verdict("leader back on another port", &sent, &reads, &format!("leader {first}, then {second}, then {first}"));
}

/// The checker itself, on hand-made histories.
mod checker {
    use super::*;

    fn sent(value: &str, partition: u32, acked: Option<i64>, unknown: u32) -> Sent {
        Sent { value: value.into(), partition, acked, unknown }
    }

    fn log(partition: u32, values: &[&str]) -> (u32, Vec<(i64, String)>) {
        (partition, values.iter().enumerate().map(|(i, v)| (i as i64, v.to_string())).collect())
    }

    #[test]
    fn a_clean_history_passes_and_retries_of_unknown_outcome_may_be_stored_twice() {
        // b's first attempt may have been stored (at 1) before it was
        // acknowledged at 2; c was never acknowledged; d was refused.
        let history =
            [sent("a", 0, Some(0), 0), sent("b", 0, Some(2), 1), sent("c", 1, None, 1), sent("d", 1, None, 0)];
        let reads = BTreeMap::from([log(0, &["a", "b", "b"]), log(1, &["c"])]);
        assert_eq!(check(&history, &reads), []);
        // Or each once, b at the offset acknowledged.
        let history = [sent("a", 0, Some(0), 0), sent("c", 0, None, 1), sent("b", 0, Some(2), 1)];
        let reads = BTreeMap::from([log(0, &["a", "c", "b"])]);
        assert_eq!(check(&history, &reads), []);
    }

    #[test]
    fn every_kind_of_anomaly_is_named() {
        let history = [
            sent("once", 0, Some(0), 0),
            sent("lost", 0, Some(1), 0),
            sent("moved", 0, Some(2), 0),
            sent("reuse", 0, Some(0), 0),
            sent("failed", 1, None, 0),
        ];
        let reads =
            BTreeMap::from([log(0, &["once", "once", "x", "moved"]), (1, vec![(0, "failed".into()), (2, "y".into())])]);
        let found = check(&history, &reads);
        let has = |f: &dyn Fn(&Anomaly) -> bool| found.iter().any(f);
        assert!(has(&|a| matches!(a, Anomaly::Duplicated { value, allowed: 1, .. } if value == "once")), "{found:?}");
        assert!(has(&|a| matches!(a, Anomaly::Duplicated { value, allowed: 0, .. } if value == "failed")), "{found:?}");
        assert!(found.contains(&Anomaly::Lost { value: "lost".into(), partition: 0, offset: 1 }), "{found:?}");
        assert!(has(&|a| matches!(a, Anomaly::Moved { value, acked_at: 2, .. } if value == "moved")), "{found:?}");
        assert!(found.contains(&Anomaly::Unknown { value: "x".into(), partition: 0, offset: 2 }), "{found:?}");
        assert!(has(&|a| matches!(a, Anomaly::OffsetReused { offset: 0, .. })), "{found:?}");
        assert!(found.contains(&Anomaly::Gap { partition: 1, expected: 1, found: 2 }), "{found:?}");
    }
}
