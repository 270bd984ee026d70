//! A consumer group under churn against a real broker, while records keep
//! arriving: members join and leave gracefully, one goes silent, one is a
//! separate `herald consume --group` process killed with SIGKILL. Every
//! record produced is processed by some member, committed offsets never move
//! backwards, and no partition ever has two owners: neither in any snapshot of
//! the group, nor in what the consumers themselves apply.
//!
//! Also, step by step with hand-driven members: a partition given to a member
//! that has not confirmed it yet goes to a newer member only after the first
//! one reports it released. And a consumer whose thread stalls past its
//! session timeout finds out it was removed and joins again.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{herald_bin, keyed, value, TestBroker, PATIENCE};
use herald::client::{Client, ClientError, GroupConsumer, GroupConsumerConfig, GroupEvent};
use herald::protocol::*;
use tokio::sync::watch;
use tokio::task::{block_in_place, JoinHandle};

const TOPIC: &str = "churn";
const GROUP: &str = "churners";
const PARTITIONS: u32 = 6;

/// A stretch of time during which one consumer surely owned a partition: from
/// the end of the poll that applied the assignment to the start of the poll
/// that applied the revocation (the exact moments lie within those polls).
#[derive(Debug, Clone)]
struct Ownership {
    consumer: String,
    from: Instant,
    until: Instant,
}

/// What the members did, as the test saw it.
#[derive(Default)]
struct Observed {
    /// Every `(partition, offset)` some member processed.
    processed: BTreeSet<(u32, i64)>,
    /// Per partition, the finished stretches of ownership.
    ownership: BTreeMap<u32, Vec<Ownership>>,
    /// Stretches still open: `(consumer, partition)` to their start.
    owning: BTreeMap<(String, u32), Instant>,
    /// Partitions a consumer lost without a revocation (it was removed).
    lost: Vec<(String, Vec<(String, u32)>)>,
}

impl Observed {
    fn assigned(&mut self, consumer: &str, partitions: &[(String, u32)], at: Instant) {
        for (_, partition) in partitions {
            self.owning.insert((consumer.to_string(), *partition), at);
        }
    }

    fn released(&mut self, consumer: &str, partitions: &[(String, u32)], at: Instant) {
        for (_, partition) in partitions {
            if let Some(from) = self.owning.remove(&(consumer.to_string(), *partition)) {
                self.ownership.entry(*partition).or_default().push(Ownership {
                    consumer: consumer.to_string(),
                    from,
                    until: at,
                });
            }
        }
    }
}

type Shared = Arc<Mutex<Observed>>;

fn consumer_config() -> GroupConsumerConfig {
    let mut config = GroupConsumerConfig::new(GROUP, &[TOPIC]);
    config.session_timeout_ms = 1_000;
    config.auto_commit_interval_ms = 200;
    config.max_wait_ms = 100;
    config
}

/// Polls until told to stop, recording what it processes and when its
/// assignment changes; then leaves gracefully (committing first).
async fn consume(name: String, client: Client, observed: Shared, stop: watch::Receiver<bool>) -> Result<(), String> {
    let fail = |what: &str, err: ClientError| format!("{name}: {what}: {err}");
    let mut consumer = GroupConsumer::join(client, consumer_config()).await.map_err(|e| fail("join", e))?;
    while !*stop.borrow() {
        let started = Instant::now();
        let records = consumer.poll().await.map_err(|e| fail("poll", e))?;
        let ended = Instant::now();
        let mut observed = observed.lock().unwrap();
        for event in consumer.take_events() {
            match event {
                GroupEvent::Assigned { partitions, .. } => observed.assigned(&name, &partitions, ended),
                GroupEvent::Revoked { partitions, .. } => observed.released(&name, &partitions, started),
                GroupEvent::Lost { partitions } => {
                    observed.released(&name, &partitions, started);
                    observed.lost.push((name.clone(), partitions));
                }
            }
        }
        observed.processed.extend(records.iter().map(|r| (r.partition, r.record.offset)));
    }
    let leaving = Instant::now();
    let owned = consumer.assignment();
    consumer.close().await.map_err(|e| fail("close", e))?;
    observed.lock().unwrap().released(&name, &owned, leaving);
    Ok(())
}

/// A running consumer task.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
}

impl Running {
    async fn start(broker: &TestBroker, name: &str, observed: &Shared) -> Running {
        let client = Client::connect(broker.addr(), name).await.expect("connect");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume(name.to_string(), client, observed.clone(), stopped));
        Running { stop, task }
    }

    async fn close(self) {
        self.stop.send_replace(true);
        let ended = tokio::time::timeout(PATIENCE, self.task).await.expect("the consumer stops");
        ended.expect("consumer task").unwrap_or_else(|err| panic!("{err}"));
    }
}

/// Produces 20 records every 5 ms, in turn keyless, to an explicit partition,
/// and keyed, until told to stop; returns every `(partition, offset)` written.
async fn produce(client: Client, stop: watch::Receiver<bool>) -> BTreeSet<(u32, i64)> {
    let mut produced = BTreeSet::new();
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    let mut n = 0u64;
    for batch in 0u64.. {
        if *stop.borrow() {
            break;
        }
        pace.tick().await;
        let mut records = Vec::new();
        for _ in 0..20 {
            n += 1;
            records.push(if batch % 3 == 2 {
                keyed(format!("k{}", n % 17), format!("n{n}"))
            } else {
                value(format!("n{n}"))
            });
        }
        let partition = (batch % 3 == 1).then_some((batch / 3 % u64::from(PARTITIONS)) as u32);
        for written in client.produce(TOPIC, partition, records).await.expect("produce") {
            let end = written.base_offset + i64::from(written.record_count);
            produced.extend((written.base_offset..end).map(|offset| (written.partition, offset)));
        }
    }
    produced
}

/// What the sampler found wrong, and how much it looked.
#[derive(Debug, Default)]
struct Sampled {
    snapshots: usize,
    violations: Vec<String>,
    member_ids: BTreeSet<String>,
}

/// Describes the group and fetches its committed offsets, again and again,
/// until told to stop: within each snapshot no partition has two members, the
/// group's generation never falls, and no committed offset moves backwards.
async fn sample(client: Client, stop: watch::Receiver<bool>) -> Sampled {
    let mut sampled = Sampled::default();
    let mut generation = 0;
    let mut committed: BTreeMap<u32, i64> = BTreeMap::new();
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    while !*stop.borrow() {
        pace.tick().await;
        let request = GroupRequest { group_id: GROUP.into() };
        let d = match client.request::<_, DescribeGroupResponse>(group_op::DESCRIBE_GROUP, &request).await {
            Ok(d) => d,
            Err(err) if err.code() == Some(69) => continue, // nobody joined yet
            Err(err) => panic!("describe: {err}"),
        };
        sampled.snapshots += 1;
        if d.generation_id < generation {
            sampled.violations.push(format!("generation fell from {generation} to {}", d.generation_id));
        }
        generation = d.generation_id;
        let mut owners: BTreeMap<u32, &str> = BTreeMap::new();
        for member in &d.members {
            sampled.member_ids.insert(member.member_id.clone());
            for partition in member.assignment.iter().flat_map(|t| t.partitions.iter()) {
                if let Some(other) = owners.insert(*partition, &member.member_id) {
                    sampled.violations.push(format!(
                        "generation {}: partition {partition} assigned to {other} and {}",
                        d.generation_id, member.member_id
                    ));
                }
            }
        }
        let fetched: FetchOffsetsResponse =
            client.request(group_op::FETCH_OFFSETS, &all_offsets()).await.expect("fetch offsets");
        for o in fetched.offsets {
            let last = committed.entry(o.partition).or_insert(o.offset);
            if o.offset < *last {
                sampled
                    .violations
                    .push(format!("partition {}: committed offset went from {last} to {}", o.partition, o.offset));
            }
            *last = o.offset;
        }
    }
    sampled
}

fn all_offsets() -> FetchOffsetsRequest {
    FetchOffsetsRequest { group_id: GROUP.into(), partitions: None, member_id: None, generation_id: None }
}

async fn describe(client: &Client, group_id: &str) -> DescribeGroupResponse {
    client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: group_id.into() }).await.expect("describe group")
}

/// Waits until `check` holds for a description of the group.
async fn wait_for_group(
    client: &Client,
    what: &str,
    check: impl Fn(&DescribeGroupResponse) -> bool,
) -> DescribeGroupResponse {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let d = describe(client, GROUP).await;
        if check(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "waited in vain for {what}: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn join_request(group_id: &str, session_timeout_ms: u64) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group_id.into(),
        member_id: None,
        topics: vec![TOPIC.into()],
        group_instance_id: None,
        session_timeout_ms: Some(session_timeout_ms),
        rebalance_timeout_ms: None,
        assignor: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_under_churn_processes_every_record_and_never_gives_a_partition_two_owners() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, i64::from(PARTITIONS), Default::default()).await.unwrap();
    let observed = Shared::default();
    // The churn follows a schedule, in ms from the start; where a step depends
    // on something having happened, the test waits for that instead.
    let started = Instant::now();
    let at = |ms: u64| tokio::time::sleep_until((started + Duration::from_millis(ms)).into());

    let (stop_producing, producing) = watch::channel(false);
    let producer = tokio::spawn(produce(broker.client().await, producing));
    let (stop_sampling, sampling) = watch::channel(false);
    let sampler = tokio::spawn(sample(broker.client().await, sampling));

    let c1 = Running::start(&broker, "c1", &observed).await;
    let c2 = Running::start(&broker, "c2", &observed).await;

    // A member in another process: `herald consume --group`, printing what it
    // processes.
    at(800).await;
    let mut process = Command::new(herald_bin())
        .args(["consume", TOPIC, "--group", GROUP, "--from-beginning", "--format", "{partition} {offset}"])
        .arg("--broker")
        .arg(broker.addr().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn herald consume");
    let (printed_tx, mut printed) = watch::channel(0usize);
    let reader = {
        let stdout = process.stdout.take().expect("piped stdout");
        let observed = observed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (partition, offset) = line.split_once(' ').expect("`partition offset`");
                let record = (partition.parse().expect("partition"), offset.parse().expect("offset"));
                observed.lock().unwrap().processed.insert(record);
                printed_tx.send_modify(|n| *n += 1);
            }
        })
    };
    tokio::time::timeout(PATIENCE, printed.wait_for(|n| *n >= 50)).await.expect("the process consumes").unwrap();
    let process_member = wait_for_group(&admin, "the process's membership", |d| {
        d.members.iter().any(|m| m.client_id == "herald-cli" && !m.assignment.is_empty())
    })
    .await
    .members
    .into_iter()
    .find(|m| m.client_id == "herald-cli")
    .unwrap();

    let c3 = Running::start(&broker, "c3", &observed).await;
    // A member that joins and never heartbeats, its connection left open.
    let silent = Client::connect(broker.addr(), "silent").await.unwrap();
    let silent_joined = Instant::now();
    let silent_member: AssignmentResponse =
        silent.request(group_op::JOIN_GROUP, &join_request(GROUP, 1_000)).await.expect("join");

    at(2_500).await;
    block_in_place(|| {
        process.kill().expect("SIGKILL the consumer process");
        process.wait().expect("reap it");
    });
    reader.join().expect("stdout reader");
    // Its connection closed: it is gone at once, not after its session timeout.
    wait_for_group(&admin, "the killed process to leave", |d| {
        d.members.iter().all(|m| m.member_id != process_member.member_id)
    })
    .await;

    at(3_000).await;
    let c4 = Running::start(&broker, "c4", &observed).await;
    at(3_500).await;
    c1.close().await;
    // The silent member is removed once its session times out.
    wait_for_group(&admin, "the silent member's removal", |d| {
        d.members.iter().all(|m| m.member_id != silent_member.member_id)
    })
    .await;
    assert!(silent_joined.elapsed() >= Duration::from_millis(1_000), "removed after {:?}", silent_joined.elapsed());
    at(4_500).await;
    let c5 = Running::start(&broker, "c5", &observed).await;
    c2.close().await;
    at(5_500).await;
    let c6 = Running::start(&broker, "c6", &observed).await;
    at(6_500).await;
    c3.close().await;

    at(7_000).await;
    stop_producing.send_replace(true);
    let produced = producer.await.unwrap();
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        ends.insert(partition, admin.list_offsets(TOPIC, partition, LATEST_TIMESTAMP).await.unwrap());
    }
    // The remaining members drain the backlog and commit it: no lag left.
    wait_for_group(&admin, "the lag to drain", |d| {
        d.state == "Stable"
            && d.offsets.len() == PARTITIONS as usize
            && d.offsets.iter().all(|o| o.current_offset == Some(ends[&o.partition]) && o.lag == Some(0))
    })
    .await;
    let drained = started.elapsed();
    for member in [c4, c5, c6] {
        member.close().await;
    }
    stop_sampling.send_replace(true);
    let sampled = sampler.await.unwrap();

    let observed = std::mem::take(&mut *observed.lock().unwrap());
    let missing: Vec<&(u32, i64)> = produced.difference(&observed.processed).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records were never processed: {:?}",
        missing.len(),
        produced.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(sampled.violations.is_empty(), "{:#?}", sampled.violations);
    assert!(sampled.snapshots > 100, "only {} snapshots", sampled.snapshots);
    assert!(observed.lost.is_empty(), "consumers that kept heartbeating lost their membership: {:?}", observed.lost);
    assert!(observed.owning.is_empty(), "{:?}", observed.owning);
    for (partition, stretches) in &observed.ownership {
        for (i, a) in stretches.iter().enumerate() {
            for b in &stretches[i + 1..] {
                assert!(
                    a.consumer == b.consumer || a.until <= b.from || b.until <= a.from,
                    "partition {partition} was owned by two consumers at once: {a:?} and {b:?}"
                );
            }
        }
    }
    let final_offsets: FetchOffsetsResponse = admin.request(group_op::FETCH_OFFSETS, &all_offsets()).await.unwrap();
    let committed: BTreeMap<u32, i64> = final_offsets.offsets.iter().map(|o| (o.partition, o.offset)).collect();
    assert_eq!(committed, ends);
    let silent_commit = CommitOffsetsRequest {
        group_id: GROUP.into(),
        member_id: Some(silent_member.member_id.clone()),
        generation_id: silent_member.generation_id,
        offsets: vec![OffsetCommit { topic: TOPIC.into(), partition: 0, offset: 0, metadata: None }],
    };
    let refused: CommitOffsetsResponse = silent.request(group_op::COMMIT_OFFSETS, &silent_commit).await.unwrap();
    assert_eq!(refused.partitions[0].error_code, 25, "{refused:?}");
    let heartbeat = HeartbeatRequest {
        group_id: GROUP.into(),
        member_id: silent_member.member_id.clone(),
        generation_id: silent_member.generation_id,
        owned: silent_member.assignment.clone(),
        topics: None,
        max_wait_ms: 0,
    };
    let removed = silent.request::<_, AssignmentResponse>(group_op::HEARTBEAT, &heartbeat).await;
    assert_eq!(removed.err().and_then(|e| e.code()), Some(25), "a removed member must join again");
    eprintln!(
        "{} records, {} snapshots of the group, {} member ids, {} ownership stretches; drained after {drained:?}",
        produced.len(),
        sampled.snapshots,
        sampled.member_ids.len(),
        observed.ownership.values().map(Vec::len).sum::<usize>()
    );
    broker.stop().await;
}

/// A member driven by hand; it applies an answer only when told to.
struct Member {
    client: Client,
    member_id: String,
    generation_id: i64,
    owned: Vec<TopicPartitions>,
}

impl Member {
    async fn join(broker: &TestBroker, group_id: &str) -> (Member, AssignmentResponse) {
        let client = broker.client().await;
        let joined: AssignmentResponse =
            client.request(group_op::JOIN_GROUP, &join_request(group_id, 5_000)).await.expect("join");
        (Member { client, member_id: joined.member_id.clone(), generation_id: 0, owned: Vec::new() }, joined)
    }

    /// Reports what it applied; returns the answer without applying it.
    async fn heartbeat(&self, group_id: &str) -> AssignmentResponse {
        let request = HeartbeatRequest {
            group_id: group_id.into(),
            member_id: self.member_id.clone(),
            generation_id: self.generation_id,
            owned: self.owned.clone(),
            topics: None,
            max_wait_ms: 0,
        };
        self.client.request(group_op::HEARTBEAT, &request).await.expect("heartbeat")
    }

    fn apply(&mut self, answer: &AssignmentResponse) {
        self.generation_id = answer.generation_id;
        self.owned = answer.assignment.clone();
    }

    /// Heartbeats and applies the answer.
    async fn sync(&mut self, group_id: &str) -> AssignmentResponse {
        let answer = self.heartbeat(group_id).await;
        self.apply(&answer);
        answer
    }

    async fn commit(&self, group_id: &str, partition: u32) -> i16 {
        let request = CommitOffsetsRequest {
            group_id: group_id.into(),
            member_id: Some(self.member_id.clone()),
            generation_id: self.generation_id,
            offsets: vec![OffsetCommit {
                topic: TOPIC.into(),
                partition: i64::from(partition),
                offset: 0,
                metadata: None,
            }],
        };
        let response: CommitOffsetsResponse =
            self.client.request(group_op::COMMIT_OFFSETS, &request).await.expect("commit");
        response.partitions[0].error_code
    }
}

fn partitions(list: &[TopicPartitions]) -> BTreeSet<u32> {
    list.iter().flat_map(|t| t.partitions.iter().copied()).collect()
}

#[tokio::test]
async fn a_partition_given_but_not_yet_confirmed_moves_on_only_after_its_member_releases_it() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, i64::from(PARTITIONS), Default::default()).await.unwrap();
    let group = "handoff";
    let (mut a, joined) = Member::join(&broker, group).await;
    a.apply(&joined);
    a.sync(group).await;
    assert_eq!(partitions(&a.owned), (0..PARTITIONS).collect());

    // B joins; once A released half, B is told it may consume them.
    let (mut b, joined) = Member::join(&broker, group).await;
    assert!(joined.assignment.is_empty());
    b.apply(&joined);
    a.sync(group).await;
    a.sync(group).await;
    let given = b.heartbeat(group).await;
    let b_partitions = partitions(&given.assignment);
    assert_eq!(b_partitions.len(), 3, "{given:?}");
    // B now consumes them, but has not said so yet.
    b.apply(&given);

    // C joins: its share comes partly from B, which it must not get before B
    // gives it up.
    let (mut c, joined) = Member::join(&broker, group).await;
    let overlap: BTreeSet<u32> = partitions(&joined.assignment).intersection(&b_partitions).copied().collect();
    assert!(overlap.is_empty(), "C was given {overlap:?}, which B consumes");
    c.apply(&joined);
    let d = describe(&admin, group).await;
    for row in d.offsets.iter().filter(|r| b_partitions.contains(&r.partition)) {
        assert_eq!(row.member_id.as_deref(), Some(b.member_id.as_str()), "{row:?}");
    }
    // B may still commit every one of them.
    for partition in &b_partitions {
        assert_eq!(b.commit(group, *partition).await, 0, "partition {partition}");
    }

    // B reports what it consumes, applies its new assignment, reports that:
    // then C gets the rest of its share.
    let revoked = b.sync(group).await;
    let taken: BTreeSet<u32> = b_partitions.difference(&partitions(&revoked.assignment)).copied().collect();
    assert!(!taken.is_empty(), "{revoked:?}");
    assert!(partitions(&c.sync(group).await.assignment).is_disjoint(&taken));
    b.sync(group).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        for member in [&mut a, &mut b, &mut c] {
            member.sync(group).await;
        }
        if describe(&admin, group).await.state == "Stable" {
            break;
        }
        assert!(Instant::now() < deadline, "the group never settled");
    }
    assert!(taken.is_subset(&c.owned.iter().flat_map(|t| t.partitions.iter().copied()).collect()));
    let all: Vec<u32> = [&a, &b, &c].iter().flat_map(|m| partitions(&m.owned)).collect();
    assert_eq!(all.len(), PARTITIONS as usize);
    assert_eq!(all.iter().copied().collect::<BTreeSet<_>>(), (0..PARTITIONS).collect());
    broker.stop().await;
}

/// The default single-threaded test runtime: blocking it stalls the consumer's
/// heartbeat task too, as an application that blocks its only thread would.
#[tokio::test]
async fn a_consumer_stalled_past_its_session_timeout_finds_out_and_joins_again() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 2, Default::default()).await.unwrap();
    for partition in 0..2 {
        admin.produce(TOPIC, Some(partition), vec![value("before")]).await.unwrap();
    }
    let mut config = consumer_config();
    config.session_timeout_ms = 300;
    let mut consumer = GroupConsumer::join(broker.client().await, config).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while consumer.assignment().len() < 2 {
        consumer.poll().await.expect("poll");
        assert!(Instant::now() < deadline, "never assigned");
    }
    let old_member_id = consumer.member_id().to_string();
    consumer.take_events();

    // The stall: nothing runs on this thread, heartbeats included.
    std::thread::sleep(Duration::from_millis(1_000));

    let deadline = Instant::now() + PATIENCE;
    let mut events = Vec::new();
    while !events.iter().any(|e| matches!(e, GroupEvent::Lost { .. })) {
        consumer.poll().await.expect("poll after the stall");
        events.extend(consumer.take_events());
        assert!(Instant::now() < deadline, "the consumer never found out it was removed: {events:?}");
    }
    assert_ne!(consumer.member_id(), old_member_id);
    // It consumes again, as the group's only member, under its new id.
    loop {
        consumer.poll().await.expect("poll");
        let d = describe(&admin, GROUP).await;
        if consumer.assignment().len() == 2 && d.state == "Stable" {
            assert_eq!(d.members.len(), 1, "{d:?}");
            assert_eq!(d.members[0].member_id, consumer.member_id());
            break;
        }
        assert!(Instant::now() < deadline, "not assigned again: {d:?}");
    }
    consumer.close().await.unwrap();
    broker.stop().await;
}
