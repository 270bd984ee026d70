//! Group members for the fault scenarios: each a real `GroupConsumer` in its
//! own thread with its own single-threaded runtime, so that a pause of the
//! thread stops everything the member does (its polls, its heartbeat task, its
//! connection's reads and writes) while its connection stays open, as a
//! stopped process's would. A member records what it does as [`Fact`]s in a
//! shared [`History`]; the scenario orders it to pause, to die (its runtime
//! and connection dropped at once, no leave, no commit) or to close.
//!
//! Each member commits its positions itself, every `commit_every`
//! (auto-commit is off), and records each commit with its answer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herald::client::{Client, GroupConsumer, GroupConsumerConfig, GroupEvent};

use super::group::Fact;

/// Everything the members did, with the scenario's clock.
pub struct History {
    start: Instant,
    facts: Mutex<Vec<Fact>>,
    /// When the broker was last killed (µs; 0: never).
    killed_at: AtomicU64,
}

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History { start: Instant::now(), facts: Mutex::new(Vec::new()), killed_at: AtomicU64::new(0) })
    }

    /// µs since the scenario started (never 0).
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64 + 1
    }

    pub fn push(&self, fact: Fact) {
        self.facts.lock().unwrap().push(fact);
    }

    /// Notes that the broker was killed now (call after its process is reaped:
    /// its connections are closed by then).
    pub fn broker_killed(&self) {
        self.killed_at.store(self.now(), Ordering::SeqCst);
    }

    pub fn facts(&self) -> Vec<Fact> {
        self.facts.lock().unwrap().clone()
    }
}

/// What the scenario tells a member.
pub enum Order {
    /// Stop the whole thread for this long.
    Pause(Duration),
    /// Drop the connection at once: no leave, no commit.
    Die,
    /// Commit and leave the group.
    Close,
}

/// What a member reports when its thread ends.
#[derive(Debug, Default)]
pub struct MemberReport {
    pub name: String,
    /// Every member id it had, in order (a new one after each loss).
    pub member_ids: Vec<String>,
    /// Per pause: whether the member then found out it had lost its
    /// membership (a `Lost` event, or a new member id if it owned nothing).
    pub pauses: Vec<bool>,
    /// Losses the pauses explain (one may follow several pauses: a member
    /// paused again before it could find out).
    pub pause_losses: usize,
    /// `Lost` events not explained by a pause (the broker died, say).
    pub other_losses: usize,
    /// Poll errors (expected only while the broker is down).
    pub errors: Vec<String>,
}

impl MemberReport {
    /// The member found out it lost its membership: the `unresolved` last
    /// pauses explain it.
    fn found_out(&mut self, unresolved: &mut usize) {
        let from = self.pauses.len() - *unresolved;
        self.pauses[from..].iter_mut().for_each(|f| *f = true);
        *unresolved = 0;
        self.pause_losses += 1;
    }
}

/// A member's thread.
pub struct Member {
    pub name: String,
    orders: mpsc::Sender<Order>,
    thread: JoinHandle<MemberReport>,
}

impl Member {
    /// Starts a member of `config.group_id` on `addr`.
    pub fn start(
        name: &str,
        addr: SocketAddr,
        config: GroupConsumerConfig,
        commit_every: Duration,
        history: &Arc<History>,
    ) -> Member {
        let (orders, inbox) = mpsc::channel();
        let history = history.clone();
        let owned_name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("member-{name}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                let report = runtime.block_on(run(owned_name, addr, config, commit_every, history, inbox));
                // Dropping the runtime drops the connection's tasks and socket.
                drop(runtime);
                report
            })
            .expect("spawn a member thread");
        Member { name: name.to_string(), orders, thread }
    }

    pub fn order(&self, order: Order) {
        let _ = self.orders.send(order);
    }

    /// Orders `order` (die or close) and waits for the report.
    pub fn finish(self, order: Order) -> MemberReport {
        self.order(order);
        self.thread.join().expect("member thread")
    }
}

fn partitions(list: &[(String, u32)]) -> Vec<u32> {
    list.iter().map(|(_, p)| *p).collect()
}

async fn connect(addr: SocketAddr, name: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(addr, name).await {
            Ok(client) => return client,
            Err(err) if Instant::now() < deadline => {
                tracing::debug!(%err, "member cannot connect yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("member {name} cannot connect: {err}"),
        }
    }
}

async fn run(
    name: String,
    addr: SocketAddr,
    config: GroupConsumerConfig,
    commit_every: Duration,
    history: Arc<History>,
    inbox: mpsc::Receiver<Order>,
) -> MemberReport {
    let mut report = MemberReport { name: name.clone(), ..MemberReport::default() };
    let mut consumer = loop {
        match GroupConsumer::join(connect(addr, &name).await, config.clone()).await {
            Ok(consumer) => break consumer,
            Err(err) => {
                report.errors.push(format!("join: {err}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    report.member_ids.push(consumer.member_id().to_string());
    // The last moment the member was surely a member when it paused, until
    // it finds out whether the pause cost it its membership.
    let mut paused_at: Option<(u64, Instant)> = None;
    // The pauses not found out yet: the member may be paused again before
    // it could find out about the last one (it runs for a moment between).
    let mut unresolved = 0;
    let mut kill_handled = 0;
    let mut acked: BTreeMap<u32, i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    let session = Duration::from_millis(config.session_timeout_ms);
    loop {
        match inbox.try_recv() {
            Ok(Order::Pause(pause)) => {
                let since = paused_at.map_or_else(|| history.now(), |(at, _)| at);
                paused_at = Some((since, Instant::now() + pause));
                report.pauses.push(false);
                unresolved += 1;
                std::thread::sleep(pause);
            }
            Ok(Order::Die) => {
                history.push(Fact::Lost {
                    member: name.clone(),
                    partitions: partitions(&consumer.assignment()),
                    at: history.now(),
                });
                // No leave, no commit: the heartbeat task is aborted, and the
                // socket closes when the runtime goes, right after this.
                drop(consumer);
                return report;
            }
            Ok(Order::Close) | Err(mpsc::TryRecvError::Disconnected) => {
                let owned = partitions(&consumer.assignment());
                commit(&mut consumer, &name, &history, &mut acked).await;
                let at = history.now();
                if let Err(err) = consumer.close().await {
                    report.errors.push(format!("close: {err}"));
                }
                // Owned until it sent its leave; no generation revokes them.
                history.push(Fact::Revoked { member: name.clone(), generation: -1, partitions: owned, at });
                return report;
            }
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let owned_before: BTreeSet<u32> = partitions(&consumer.assignment()).into_iter().collect();
        let started = history.now();
        let polled = consumer.poll().await;
        let ended = history.now();
        for event in consumer.take_events() {
            match event {
                GroupEvent::Assigned { generation_id, partitions: list } => {
                    // Given after a kill: a later loss is not that kill's.
                    let killed_at = history.killed_at.load(Ordering::SeqCst);
                    if killed_at < started {
                        kill_handled = kill_handled.max(killed_at);
                    }
                    history.push(Fact::Assigned {
                        member: name.clone(),
                        generation: generation_id,
                        partitions: partitions(&list),
                        at: ended,
                    })
                }
                GroupEvent::Revoked { generation_id, partitions: list } => history.push(Fact::Revoked {
                    member: name.clone(),
                    generation: generation_id,
                    partitions: partitions(&list),
                    at: started,
                }),
                GroupEvent::Lost { partitions: list } => {
                    let killed_at = history.killed_at.load(Ordering::SeqCst);
                    let at = if let Some((at, _)) = paused_at.take() {
                        report.found_out(&mut unresolved);
                        at
                    } else if killed_at > kill_handled {
                        // The first loss since the broker was killed.
                        kill_handled = killed_at;
                        killed_at
                    } else {
                        report.other_losses += 1;
                        started
                    };
                    history.push(Fact::Lost { member: name.clone(), partitions: partitions(&list), at });
                    acked.clear();
                }
            }
        }
        if paused_at.is_some_and(|(_, resumed)| resumed.elapsed() > 2 * session) {
            // Still a member long after the pause: it was shorter than the
            // session timeout, or the broker was slow to notice.
            paused_at = None;
            unresolved = 0;
        }
        if report.member_ids.last().map(String::as_str) != Some(consumer.member_id()) {
            report.member_ids.push(consumer.member_id().to_string());
            // Removed while it owned nothing: no `Lost`, but a new id.
            if paused_at.take().is_some() {
                report.found_out(&mut unresolved);
            }
        }
        match polled {
            Ok(records) => {
                for r in records {
                    let at = if owned_before.contains(&r.partition) { started } else { ended };
                    history.push(Fact::Processed {
                        member: name.clone(),
                        partition: r.partition,
                        offset: r.record.offset,
                        value: String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).into_owned(),
                        at,
                    });
                }
            }
            Err(err) => {
                report.errors.push(format!("poll: {err}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if last_commit.elapsed() >= commit_every {
            commit(&mut consumer, &name, &history, &mut acked).await;
            last_commit = Instant::now();
        }
    }
}

/// Commits the positions that moved since this member's last acknowledged
/// commit, and records the commit with its answer.
async fn commit(consumer: &mut GroupConsumer, name: &str, history: &History, acked: &mut BTreeMap<u32, i64>) {
    let moved: Vec<(u32, i64)> = consumer
        .assignment()
        .iter()
        .filter_map(|(topic, p)| consumer.position(topic, *p).map(|o| (*p, o)))
        .filter(|(p, o)| acked.get(p) != Some(o))
        .collect();
    if moved.is_empty() {
        return;
    }
    let generation = consumer.generation_id();
    let sent = history.now();
    let answer = consumer.commit().await;
    let at = history.now();
    let ok = answer.is_ok();
    if let Err(err) = &answer {
        tracing::debug!(%err, member = name, "commit refused");
    }
    for (partition, offset) in moved {
        history.push(Fact::Commit { member: name.to_string(), generation, partition, offset, acked: ok, sent, at });
        if ok {
            acked.insert(partition, offset);
        }
    }
}
