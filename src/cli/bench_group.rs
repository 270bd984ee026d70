//! `herald bench-group`: consumer-group benchmarks against a running broker.
//!
//! - `leave`, `disconnect`, `silent`: how long the partitions of a member that
//!   goes away stay without an owner. A group of `--members` members over a
//!   topic of `--partitions` partitions is driven by hand with raw protocol
//!   requests, each member on its own connection: it joins, then keeps one
//!   long-poll heartbeat outstanding, always reporting `owned` = the last
//!   assignment it was given (so revocations are acknowledged at once). Once
//!   the group is stable, one member leaves (`leave_group`), drops its
//!   connection, or stops heartbeating while keeping its connection. The time
//!   measured runs from the leave request being sent (from the close, from the
//!   silent member's last heartbeat answer) until the remaining members'
//!   assignments, as received in their heartbeat answers, cover every
//!   partition: the latest arrival, over the members, of the answer that gave
//!   each its final assignment. A new member then joins to restore the group,
//!   and the next round starts once the group is stable again. For `silent`
//!   the session timeout is subtracted: the figure is the delay beyond it.
//! - `throughput`: produce records to a topic, then consume them all with a
//!   group of `--members` `GroupConsumer`s (one task and connection each, a
//!   new group) and, for comparison, with one plain `Consumer` of every
//!   partition.
//!
//! Every time is taken on the client, with `Instant`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures::stream::{FuturesUnordered, StreamExt};
use herald::client::{
    AutoOffsetReset, Client, ClientError, Consumer, ConsumerConfig, GroupConsumer, GroupConsumerConfig, Producer,
    ProducerConfig, StartOffset,
};
use herald::protocol::*;
use serde::Serialize;

use super::bench::Phase;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{BrokerArgs, CliResult};

/// How long a group may take to become stable (all partitions owned, every
/// member holding exactly its assignment) before the benchmark gives up.
const STABLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What `bench-group` measures.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// A member sends `leave_group`.
    Leave,
    /// A member's connection closes.
    Disconnect,
    /// A member stops heartbeating but keeps its connection.
    Silent,
    /// Records/s consumed by a group against a plain consumer.
    Throughput,
}

#[derive(Args, Debug)]
pub struct BenchGroupArgs {
    /// What to measure.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Group members [default: 10; 4 for throughput].
    #[arg(long)]
    members: Option<usize>,
    /// Partitions of the benchmark topic [default: 100; 8 for throughput].
    #[arg(long)]
    partitions: Option<u32>,
    /// Rebalances to measure [default: 30; 10 for silent].
    #[arg(long)]
    rounds: Option<usize>,
    /// The members' session timeout, in ms [default: 10000; 500 for silent].
    #[arg(long)]
    session_timeout_ms: Option<u64>,
    /// The group's assignor (range, roundrobin, sticky); the broker's default when absent.
    #[arg(long)]
    assignor: Option<String>,
    /// throughput: records to produce.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// throughput: bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Keep the benchmark topic (and group) afterwards instead of deleting them.
    #[arg(long)]
    keep: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

pub async fn run(args: BenchGroupArgs) -> CliResult {
    match args.scenario {
        Scenario::Throughput => throughput(args).await,
        scenario => rebalance(scenario, args).await,
    }
}

// ---------------------------------------------------------------------------
// leave / disconnect / silent
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Summary {
    samples: usize,
    min_ms: f64,
    mean_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Summary {
    fn of(samples: &[f64]) -> Summary {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let pick = |p: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i]
        };
        Summary {
            samples: sorted.len(),
            min_ms: sorted.first().copied().unwrap_or(0.0),
            mean_ms: if sorted.is_empty() { 0.0 } else { sorted.iter().sum::<f64>() / sorted.len() as f64 },
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
        }
    }
}

#[derive(Debug, Serialize)]
struct RebalanceReport {
    scenario: Scenario,
    topic: String,
    group_id: String,
    assignor: String,
    members: usize,
    partitions: u32,
    rounds: usize,
    session_timeout_ms: u64,
    /// Per round: ms from the member going away until every partition was
    /// owned again (for `silent`, minus the session timeout).
    samples_ms: Vec<f64>,
    /// For `silent`: the same samples without subtracting the session timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_samples_ms: Option<Vec<f64>>,
    summary: Summary,
    target_p99_ms: f64,
    target_met: bool,
}

/// What a member's task reports.
enum Event {
    /// A heartbeat answer arrived (`at`): the member now owns `assignment`.
    Answer { slot: usize, member_id: String, at: Instant, generation_id: i64, assignment: BTreeSet<u32> },
    /// The member was told to fall silent; its last answer arrived at `at`.
    Silent { slot: usize, member_id: String, at: Instant },
    /// The member's heartbeat failed (left, removed, connection gone).
    Ended { slot: usize, member_id: String, error: String },
}

/// One member position in the group; a new member takes it after a round.
struct Slot {
    member_id: String,
    /// The member's connection; `None` once dropped.
    client: Option<Client>,
    task: Option<JoinHandle<()>>,
    /// Stop heartbeating after the next answer (for `silent`).
    fall_silent: Arc<AtomicBool>,
    /// Whether the member counts towards coverage.
    live: bool,
    generation_id: i64,
    assignment: BTreeSet<u32>,
    /// When the answer that gave the current assignment arrived.
    since: Instant,
    silent_at: Option<Instant>,
    ended: Option<String>,
}

struct Group {
    addr: String,
    /// How members connect: the CLI's timeouts and TLS.
    connect: herald::client::ConnectOptions,
    admin: Client,
    topic: String,
    group_id: String,
    partitions: u32,
    session_timeout_ms: u64,
    assignor: Option<String>,
    slots: Vec<Slot>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
}

fn partition_set(list: &[TopicPartitions], topic: &str) -> BTreeSet<u32> {
    list.iter().filter(|t| t.topic == topic).flat_map(|t| t.partitions.iter().copied()).collect()
}

/// A member's heartbeat loop: one heartbeat outstanding at all times,
/// reporting as owned exactly what the last answer gave.
#[allow(clippy::too_many_arguments)]
async fn member_loop(
    slot: usize,
    client: Client,
    group_id: String,
    topic: String,
    joined: AssignmentResponse,
    max_wait_ms: u64,
    fall_silent: Arc<AtomicBool>,
    events: mpsc::UnboundedSender<Event>,
) {
    let member_id = joined.member_id;
    let mut generation_id = joined.generation_id;
    let mut owned = joined.assignment;
    loop {
        let request = HeartbeatRequest {
            group_id: group_id.clone(),
            member_id: member_id.clone(),
            generation_id,
            owned: owned.clone(),
            topics: None,
            max_wait_ms,
        };
        match client.request::<_, AssignmentResponse>(group_op::HEARTBEAT, &request).await {
            Ok(answer) => {
                let at = Instant::now();
                generation_id = answer.generation_id;
                owned = answer.assignment;
                let assignment = partition_set(&owned, &topic);
                let _ =
                    events.send(Event::Answer { slot, member_id: member_id.clone(), at, generation_id, assignment });
                if fall_silent.load(Ordering::SeqCst) {
                    let _ = events.send(Event::Silent { slot, member_id: member_id.clone(), at });
                    return;
                }
            }
            Err(err) => {
                let _ = events.send(Event::Ended { slot, member_id: member_id.clone(), error: err.to_string() });
                return;
            }
        }
    }
}

impl Group {
    /// Joins a new member into `slot` (appending when `slot` is the length).
    async fn join(&mut self, slot: usize) -> CliResult {
        let client =
            Client::connect_with_options(self.addr.as_str(), "herald-bench-group", self.connect.clone()).await?;
        let request = JoinGroupRequest {
            group_id: self.group_id.clone(),
            member_id: None,
            topics: vec![self.topic.clone()],
            group_instance_id: None,
            session_timeout_ms: Some(self.session_timeout_ms),
            rebalance_timeout_ms: None,
            assignor: self.assignor.clone(),
        };
        let joined: AssignmentResponse = client.request(group_op::JOIN_GROUP, &request).await?;
        let fall_silent = Arc::new(AtomicBool::new(false));
        let state = Slot {
            member_id: joined.member_id.clone(),
            client: Some(client.clone()),
            task: None,
            fall_silent: fall_silent.clone(),
            live: true,
            generation_id: joined.generation_id,
            assignment: partition_set(&joined.assignment, &self.topic),
            since: Instant::now(),
            silent_at: None,
            ended: None,
        };
        let task = tokio::spawn(member_loop(
            slot,
            client,
            self.group_id.clone(),
            self.topic.clone(),
            joined,
            (self.session_timeout_ms / 2).max(1),
            fall_silent,
            self.events_tx.clone(),
        ));
        let state = Slot { task: Some(task), ..state };
        if slot == self.slots.len() {
            self.slots.push(state);
        } else {
            self.slots[slot] = state;
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Answer { slot, member_id, at, generation_id, assignment } => {
                let Some(s) = self.slots.get_mut(slot).filter(|s| s.member_id == member_id) else { return };
                if s.assignment != assignment {
                    s.since = at;
                    s.assignment = assignment;
                }
                s.generation_id = generation_id;
            }
            Event::Silent { slot, member_id, at } => {
                if let Some(s) = self.slots.get_mut(slot).filter(|s| s.member_id == member_id) {
                    s.silent_at = Some(at);
                }
            }
            Event::Ended { slot, member_id, error } => {
                if let Some(s) = self.slots.get_mut(slot).filter(|s| s.member_id == member_id) {
                    s.ended = Some(error);
                }
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.apply(event);
        }
    }

    /// Whether the live members' assignments cover every partition exactly once.
    fn covered(&self) -> bool {
        let live = self.slots.iter().filter(|s| s.live);
        let total: usize = live.clone().map(|s| s.assignment.len()).sum();
        let union: BTreeSet<u32> = live.flat_map(|s| s.assignment.iter().copied()).collect();
        union.len() == self.partitions as usize && total == union.len()
    }

    /// Waits until the broker calls the group stable and every live member
    /// has received the assignment the broker has for it.
    async fn wait_stable(&mut self) -> CliResult {
        let deadline = Instant::now() + STABLE_TIMEOUT;
        loop {
            self.drain();
            if let Some(s) = self.slots.iter().find(|s| s.live && s.ended.is_some()) {
                return Err(format!("member {} ended: {}", s.member_id, s.ended.as_deref().unwrap_or("")).into());
            }
            if self.covered() {
                let described: DescribeGroupResponse = self
                    .admin
                    .request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: self.group_id.clone() })
                    .await?;
                self.drain();
                let live: Vec<&Slot> = self.slots.iter().filter(|s| s.live).collect();
                let agree = described.members.len() == live.len()
                    && described.members.iter().all(|m| {
                        live.iter().any(|s| {
                            s.member_id == m.member_id
                                && s.generation_id == m.generation_id
                                && s.assignment == partition_set(&m.assignment, &self.topic)
                        })
                    });
                if described.state == "Stable" && agree {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("the group did not become stable within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the live members cover every partition; returns when the
    /// last answer needed for that arrived (never before `t0`).
    async fn wait_covered(&mut self, t0: Instant) -> CliResult<Instant> {
        let deadline = Instant::now() + STABLE_TIMEOUT;
        loop {
            if self.covered() {
                let done = self.slots.iter().filter(|s| s.live).map(|s| s.since.max(t0)).max().unwrap_or(t0);
                return Ok(done);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(event)) => self.apply(event),
                Ok(None) => return Err("the members' event channel closed".into()),
                Err(_) => return Err("the partitions were not all owned again within 60 s".into()),
            }
        }
    }

    /// Waits for a slot's member to report that it fell silent.
    async fn wait_silent(&mut self, slot: usize) -> CliResult<Instant> {
        let deadline = Instant::now() + STABLE_TIMEOUT;
        loop {
            if let Some(at) = self.slots[slot].silent_at {
                return Ok(at);
            }
            if let Some(error) = &self.slots[slot].ended {
                return Err(format!("the member to silence ended: {error}").into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(event)) => self.apply(event),
                Ok(None) => return Err("the members' event channel closed".into()),
                Err(_) => return Err("the member did not fall silent".into()),
            }
        }
    }

    /// Takes a member out of a slot for good: stops its task, drops its connection.
    async fn retire(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.live = false;
        if let Some(task) = s.task.take() {
            task.abort();
            let _ = task.await;
        }
        s.client = None;
    }

    /// One round: a member goes away; returns ms until every partition is
    /// owned again (silent: from its last answer, session timeout included).
    async fn round(&mut self, scenario: Scenario, victim: usize) -> CliResult<f64> {
        let elapsed = match scenario {
            Scenario::Leave => {
                let client = self.slots[victim].client.clone().ok_or("the member has no connection")?;
                let request = LeaveGroupRequest {
                    group_id: self.group_id.clone(),
                    member_id: self.slots[victim].member_id.clone(),
                };
                self.slots[victim].live = false;
                let t0 = Instant::now();
                let _: Empty = client.request(group_op::LEAVE_GROUP, &request).await?;
                let done = self.wait_covered(t0).await?;
                done - t0
            }
            Scenario::Disconnect => {
                let t0 = Instant::now();
                // Dropping every handle of the connection closes it (FIN).
                self.retire(victim).await;
                let done = self.wait_covered(t0).await?;
                done - t0
            }
            Scenario::Silent => {
                self.slots[victim].fall_silent.store(true, Ordering::SeqCst);
                let t0 = self.wait_silent(victim).await?;
                // Still connected (its `client` is kept), just silent.
                self.slots[victim].live = false;
                let done = self.wait_covered(t0).await?;
                done - t0
            }
            Scenario::Throughput => unreachable!("not a rebalance scenario"),
        };
        self.retire(victim).await;
        Ok(elapsed.as_secs_f64() * 1e3)
    }

    /// Leaves with every member still in, for a tidy end.
    async fn leave_all(&mut self) {
        for slot in 0..self.slots.len() {
            if let Some(task) = self.slots[slot].task.take() {
                task.abort();
                let _ = task.await;
            }
            if let Some(client) = self.slots[slot].client.take() {
                let request = LeaveGroupRequest {
                    group_id: self.group_id.clone(),
                    member_id: self.slots[slot].member_id.clone(),
                };
                let _ = client.request::<_, Empty>(group_op::LEAVE_GROUP, &request).await;
            }
        }
    }
}

async fn rebalance(scenario: Scenario, args: BenchGroupArgs) -> CliResult {
    let members = args.members.unwrap_or(10);
    let partitions = args.partitions.unwrap_or(100);
    let rounds = args.rounds.unwrap_or(if scenario == Scenario::Silent { 10 } else { 30 });
    let session_timeout_ms = args.session_timeout_ms.unwrap_or(if scenario == Scenario::Silent { 500 } else { 10_000 });
    if members < 2 {
        return Err("--members must be at least 2: someone must take over the partitions".into());
    }
    let admin = args.broker.connect().await?;
    let stamp = herald_actors::now_ms();
    let topic = format!("bench-group-{stamp}");
    let group_id = format!("bench-group-{}-{stamp}", scenario_name(scenario));
    admin.create_topic(&topic, i64::from(partitions), Default::default()).await?;
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut group = Group {
        addr: args.broker.first().to_string(),
        connect: args.broker.connect_options(args.broker.first())?,
        admin: admin.clone(),
        topic: topic.clone(),
        group_id: group_id.clone(),
        partitions,
        session_timeout_ms,
        assignor: args.assignor.clone(),
        slots: Vec::new(),
        events_tx,
        events,
    };
    for slot in 0..members {
        group.join(slot).await?;
    }
    group.wait_stable().await?;

    let mut raw = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let victim = round % members;
        let ms = group.round(scenario, victim).await?;
        tracing::debug!(round, victim, ms, "round measured");
        raw.push(ms);
        group.wait_stable().await?;
        group.join(victim).await?;
        group.wait_stable().await?;
    }
    let described: DescribeGroupResponse =
        admin.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: group_id.clone() }).await?;
    group.leave_all().await;
    if !args.keep {
        let _ = admin.request::<_, Empty>(group_op::DELETE_GROUP, &GroupRequest { group_id: group_id.clone() }).await;
        let _ = admin.delete_topic(&topic).await;
    }

    let (samples_ms, raw_samples_ms) = if scenario == Scenario::Silent {
        (raw.iter().map(|ms| ms - session_timeout_ms as f64).collect(), Some(raw))
    } else {
        (raw, None)
    };
    let summary = Summary::of(&samples_ms);
    let target_p99_ms = 50.0;
    let report = RebalanceReport {
        scenario,
        topic,
        group_id,
        assignor: described.assignor,
        members,
        partitions,
        rounds,
        session_timeout_ms,
        target_met: summary.p99_ms < target_p99_ms,
        samples_ms,
        raw_samples_ms,
        summary,
        target_p99_ms,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let s = &report.summary;
        let what = match scenario {
            Scenario::Leave => "from leave_group sent to every partition owned again",
            Scenario::Disconnect => "from the connection closed to every partition owned again",
            _ => "from the last heartbeat answer to every partition owned again, minus the session timeout",
        };
        println!(
            "{}: {} members, {} partitions, {} rounds, session timeout {} ms, assignor {}",
            scenario_name(scenario),
            members,
            partitions,
            rounds,
            session_timeout_ms,
            report.assignor
        );
        println!("{what}:");
        println!(
            "  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (min {:.2}, mean {:.2}); target p99 < {:.0} ms: {}",
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.min_ms,
            s.mean_ms,
            report.target_p99_ms,
            if report.target_met { "met" } else { "MISSED" }
        );
    }
    Ok(())
}

fn scenario_name(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Leave => "leave",
        Scenario::Disconnect => "disconnect",
        Scenario::Silent => "silent",
        Scenario::Throughput => "throughput",
    }
}

// ---------------------------------------------------------------------------
// throughput
// ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct ThroughputReport {
    scenario: Scenario,
    topic: String,
    partitions: u32,
    records: u64,
    record_size: usize,
    produce: Phase,
    group_consumers: usize,
    /// From the first join sent until every record was consumed (joins and
    /// the initial rebalances included).
    group: Phase,
    /// Records delivered to the group more than once (re-read after a move).
    group_duplicates: u64,
    /// When the last group consumer's join was answered, ms after the start.
    group_joined_ms: f64,
    plain: Phase,
}

/// Progress shared by the group's consumer tasks.
struct Progress {
    /// Per partition: the next offset to read, the highest seen by any consumer.
    next: Vec<AtomicI64>,
    ends: Vec<i64>,
    delivered: AtomicU64,
    done: AtomicBool,
    finished_at: Mutex<Option<Instant>>,
}

impl Progress {
    fn complete(&self) -> bool {
        self.next.iter().zip(&self.ends).all(|(n, end)| n.load(Ordering::Relaxed) >= *end)
    }
}

async fn produce_all(client: &Client, topic: &str, records: u64, record_size: usize) -> CliResult<Phase> {
    let value = Bytes::from((0..record_size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger_ms: 2,
            batch_max_records: 5_000,
            batch_max_bytes: 4 << 20,
            acks: 1,
            max_in_flight: 16,
            ..ProducerConfig::default()
        },
    );
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for _ in 0..records {
        let record = WireRecord { key: None, value: Some(value.clone()), headers: Vec::new(), timestamp: None };
        pending.push(producer.send(topic, None, record).await?);
        while let Some(Some(done)) = futures::FutureExt::now_or_never(pending.next()) {
            done??;
        }
    }
    producer.flush().await?;
    while let Some(done) = pending.next().await {
        done??;
    }
    Ok(Phase::new(records, records * record_size as u64, started.elapsed()))
}

async fn group_member(
    client: Client,
    config: GroupConsumerConfig,
    topic: String,
    progress: Arc<Progress>,
) -> Result<(GroupConsumer, Instant), ClientError> {
    let mut consumer = GroupConsumer::join(client, config).await?;
    let joined = Instant::now();
    while !progress.done.load(Ordering::Relaxed) {
        let records = consumer.poll().await?;
        for r in &records {
            if r.topic == topic {
                progress.next[r.partition as usize].fetch_max(r.record.offset + 1, Ordering::Relaxed);
            }
        }
        progress.delivered.fetch_add(records.len() as u64, Ordering::Relaxed);
        if !records.is_empty() && progress.complete() && !progress.done.swap(true, Ordering::SeqCst) {
            if let Ok(mut at) = progress.finished_at.lock() {
                *at = Some(Instant::now());
            }
        }
    }
    Ok((consumer, joined))
}

async fn throughput(args: BenchGroupArgs) -> CliResult {
    let consumers = args.members.unwrap_or(4).max(1);
    let partitions = args.partitions.unwrap_or(8);
    let client = args.broker.connect().await?;
    let stamp = herald_actors::now_ms();
    let topic = format!("bench-group-{stamp}");
    client.create_topic(&topic, i64::from(partitions), Default::default()).await?;
    let produce = produce_all(&client, &topic, args.records, args.record_size).await?;

    let described = client.describe_topic(&topic).await?;
    let mut ends = vec![0i64; partitions as usize];
    let mut starts = vec![0i64; partitions as usize];
    for p in &described.partitions {
        ends[p.partition as usize] = p.high_watermark;
        starts[p.partition as usize] = p.log_start_offset;
    }
    let records: u64 = ends.iter().zip(&starts).map(|(e, s)| (e - s).max(0) as u64).sum();

    // The group: connections first, then the clock runs from the joins on.
    let group_id = format!("bench-group-throughput-{stamp}");
    let progress = Arc::new(Progress {
        next: starts.iter().map(|s| AtomicI64::new(*s)).collect(),
        ends: ends.clone(),
        delivered: AtomicU64::new(0),
        done: AtomicBool::new(false),
        finished_at: Mutex::new(None),
    });
    let mut connections = Vec::with_capacity(consumers);
    for _ in 0..consumers {
        connections.push(
            Client::connect_with_options(
                args.broker.first(),
                "herald-bench-group",
                args.broker.connect_options(args.broker.first())?,
            )
            .await?,
        );
    }
    let started = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|member| {
            let mut config = GroupConsumerConfig::new(&group_id, &[topic.as_str()]);
            config.auto_offset_reset = AutoOffsetReset::Earliest;
            config.assignor = args.assignor.clone();
            config.max_bytes = 4 << 20;
            config.max_wait_ms = 100;
            tokio::spawn(group_member(member, config, topic.clone(), progress.clone()))
        })
        .collect();
    let mut joined_last = started;
    let mut finished = Vec::new();
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok((consumer, joined))) => {
                joined_last = joined_last.max(joined);
                finished.push(consumer);
            }
            Ok(Err(err)) => {
                first_error.get_or_insert_with(|| err.to_string());
                progress.done.store(true, Ordering::SeqCst);
            }
            Err(err) => {
                first_error.get_or_insert_with(|| err.to_string());
                progress.done.store(true, Ordering::SeqCst);
            }
        }
    }
    if let Some(err) = first_error {
        return Err(format!("a group consumer failed: {err}").into());
    }
    let finished_at = progress.finished_at.lock().ok().and_then(|at| *at).unwrap_or_else(Instant::now);
    let delivered = progress.delivered.load(Ordering::Relaxed);
    // Every value has `record_size` bytes; duplicates are not counted twice.
    let group = Phase::new(records, records * args.record_size as u64, finished_at - started);
    let group_joined_ms = (joined_last - started).as_secs_f64() * 1e3;
    for consumer in finished {
        let _ = consumer.close().await;
    }

    // One plain consumer of every partition, from the start.
    let mut consumer =
        Consumer::new(client.clone(), ConsumerConfig { max_bytes: 4 << 20, max_wait_ms: 100, min_bytes: 1 });
    let started = Instant::now();
    consumer.assign_all(&topic, StartOffset::Earliest).await?;
    let (mut consumed, mut bytes) = (0u64, 0u64);
    while consumed < records {
        for r in consumer.poll().await? {
            consumed += 1;
            bytes += r.record.value.as_ref().map_or(0, |v| v.len() as u64);
        }
    }
    let plain = Phase::new(consumed, bytes, started.elapsed());

    if !args.keep {
        let _ = client.request::<_, Empty>(group_op::DELETE_GROUP, &GroupRequest { group_id: group_id.clone() }).await;
        let _ = client.delete_topic(&topic).await;
    }
    let report = ThroughputReport {
        scenario: Scenario::Throughput,
        topic,
        partitions,
        records,
        record_size: args.record_size,
        produce,
        group_consumers: consumers,
        group,
        group_duplicates: delivered.saturating_sub(records),
        group_joined_ms,
        plain,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let (p, g, c) = (&report.produce, &report.group, &report.plain);
        println!(
            "topic {} ({} partitions), {} records of {} bytes",
            report.topic, report.partitions, report.records, report.record_size
        );
        println!("produce: {:.0} records/s, {:.1} MB/s", p.records_per_second, p.megabytes_per_second);
        println!(
            "group of {} consumers: {:.0} records/s, {:.1} MB/s ({:.2} s, joins and first rebalances included; all joined after {:.1} ms; {} duplicates)",
            report.group_consumers,
            g.records_per_second,
            g.megabytes_per_second,
            g.seconds,
            report.group_joined_ms,
            report.group_duplicates
        );
        println!(
            "plain consumer: {:.0} records/s, {:.1} MB/s ({:.2} s)",
            c.records_per_second, c.megabytes_per_second, c.seconds
        );
    }
    Ok(())
}
