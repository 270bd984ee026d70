//! The `GroupCoordinator` actor: one per consumer group.
//!
//! Contract:
//! - Started by [`Groups`](super::Groups) on first use (or at start for every
//!   group on disk), under an actix `Supervisor`, on the arbiter picked by a
//!   stable hash of the group id. On (re)start it replays its [`GroupStore`]:
//!   committed offsets and the assignor survive; members rejoin.
//! - Owns the group's [`Membership`] (members, epochs, assignments) and its
//!   committed offsets. Takes [`Join`], [`Heartbeat`], [`Leave`],
//!   [`MemberGone`] from [`Session`](super::session::Session) actors and the
//!   frontend, and [`CommitOffsets`], [`FetchOffsets`], [`DescribeGroup`],
//!   [`ResetOffsets`], [`CloseGroup`], [`ShutdownGroup`].
//! - Heartbeats are long polls: one is answered at once when the member's
//!   assignment differs from what it reported, otherwise held until its
//!   assignment changes or its wait ends. So a rebalance reaches members as
//!   soon as it is computed, not at their next heartbeat.
//! - Commits are acknowledged only after the fsync writer synced them.
//! - Partition counts of subscribed topics are refreshed every
//!   `metadata_refresh_ms`; a change (partitions added) rebalances.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::join_all;
use tokio::sync::oneshot;

mod offsets;

pub use offsets::{
    CommitOffsets, DescribeGroup, FetchOffsets, GroupDescription, PartitionLag, ResetOffsets, ResetTo,
    MAX_METADATA_BYTES,
};

use super::assignor::{self, TopicPartition};
use super::membership::{MemberError, MemberInfo, Membership};
use super::store::{Committed, GroupState, GroupStore, StoredRecord};
use super::GroupSettings;
use crate::broker::{Broker, LookupTopic};
use crate::error::{BrokerError, ErrorCode};
use crate::now_ms;
use crate::topic::PartitionCount;
use crate::writer::SyncWriter;

/// One group's coordinator. See the module documentation for its contract.
pub struct GroupCoordinator {
    group_id: Arc<str>,
    dir: PathBuf,
    settings: GroupSettings,
    broker: Addr<Broker>,
    writer: SyncWriter,
    clean_shutdown: bool,
    store: Option<GroupStore>,
    state: GroupState,
    membership: Membership,
    /// Partition counts of every topic a member subscribes to.
    partitions: BTreeMap<String, u32>,
    /// Held heartbeats, by member id, each with the number of its hold (so a
    /// hold's timer never answers a later hold of the same member).
    held: HashMap<String, (u64, oneshot::Sender<Result<Assigned, BrokerError>>)>,
    holds: u64,
    next_member: u64,
    closed: bool,
}

/// A member's generation and the partitions it may own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub member_id: String,
    pub generation_id: i64,
    pub assignment: BTreeSet<TopicPartition>,
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
}

fn default_assignor() -> &'static dyn assignor::Assignor {
    assignor::by_name(assignor::DEFAULT_ASSIGNOR).expect("the default assignor is one of the built-in ones")
}

fn member_error(err: MemberError, member_id: &str) -> BrokerError {
    match err {
        MemberError::UnknownMember => {
            BrokerError::new(ErrorCode::UNKNOWN_MEMBER_ID, format!("`{member_id}` is not a member of the group"))
        }
        MemberError::Fenced => BrokerError::new(
            ErrorCode::FENCED_INSTANCE_ID,
            format!("`{member_id}` was replaced by a newer member with its group_instance_id"),
        ),
        MemberError::IllegalGeneration { current, got } => BrokerError::new(
            ErrorCode::ILLEGAL_GENERATION,
            format!("generation {got} is not valid for `{member_id}`, whose generation is {current}"),
        ),
        MemberError::NotOwned { stale: true } => BrokerError::new(
            ErrorCode::ILLEGAL_GENERATION,
            "the partition was reassigned in a newer generation; the member was fenced from it",
        ),
        MemberError::NotOwned { stale: false } => BrokerError::new(
            ErrorCode::REBALANCE_IN_PROGRESS,
            "the partition is not assigned to this member yet; heartbeat to get the assignment",
        ),
    }
}

impl GroupCoordinator {
    pub fn new(
        group_id: Arc<str>,
        dir: PathBuf,
        settings: GroupSettings,
        broker: Addr<Broker>,
        writer: SyncWriter,
        clean_shutdown: bool,
    ) -> Self {
        GroupCoordinator {
            group_id,
            dir,
            settings,
            broker,
            writer,
            clean_shutdown,
            store: None,
            state: GroupState::default(),
            membership: Membership::new(default_assignor()),
            partitions: BTreeMap::new(),
            held: HashMap::new(),
            holds: 0,
            next_member: 0,
            closed: false,
        }
    }

    fn open(&mut self) {
        match GroupStore::open(&self.dir, self.clean_shutdown) {
            Ok((store, state)) => {
                if let Some(assignor) = state.assignor.as_deref().and_then(assignor::by_name) {
                    self.membership.set_assignor(assignor);
                }
                self.store = Some(store);
                self.state = state;
            }
            Err(err) => tracing::error!(%err, group = %self.group_id, "cannot open the group's log"),
        }
        self.clean_shutdown = false;
    }

    fn unavailable(&self) -> BrokerError {
        if self.closed {
            BrokerError::new(ErrorCode::GROUP_ID_NOT_FOUND, format!("group `{}` was deleted", self.group_id))
        } else {
            BrokerError::new(ErrorCode::COORDINATOR_NOT_AVAILABLE, "the group's log could not be opened")
        }
    }

    fn assigned(&self, member_id: &str) -> Result<Assigned, BrokerError> {
        let (generation_id, assignment) =
            self.membership.assignment(member_id).map_err(|e| member_error(e, member_id))?;
        let session = self.membership.members().into_iter().find(|m| m.info.member_id == member_id);
        let session_timeout_ms =
            session.map_or(self.settings.default_session_timeout_ms, |m| m.info.session_timeout_ms);
        Ok(Assigned {
            member_id: member_id.to_string(),
            generation_id,
            assignment: assignment.clone(),
            heartbeat_interval_ms: (session_timeout_ms / 3).max(1),
            session_timeout_ms,
        })
    }

    /// Answers the held heartbeats of members whose assignment changed.
    fn notify(&mut self, changed: Vec<String>) {
        self.membership.touch(now_ms());
        for member_id in changed {
            self.answer_held(&member_id);
        }
        // A member that left the group is told so by its held heartbeat.
        let gone: Vec<String> =
            self.held.keys().filter(|id| self.membership.assignment(id).is_err()).cloned().collect();
        for member_id in gone {
            self.answer_held(&member_id);
        }
    }

    /// Answers the member's held heartbeat, if any, with where it stands now.
    fn answer_held(&mut self, member_id: &str) {
        if let Some((_, reply)) = self.held.remove(member_id) {
            let _ = reply.send(self.assigned(member_id));
        }
    }

    fn remove_member(&mut self, member_id: &str, why: &str) {
        if let Some(changed) = self.membership.remove(member_id) {
            tracing::info!(group = %self.group_id, member_id, why, epoch = self.membership.group_epoch(), "member removed");
            self.notify(changed);
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        format!("{client_id}-{nanos:x}-{:x}", self.next_member)
    }

    /// Durably appends records, then runs `then` on success.
    fn persist<T: 'static>(
        &mut self,
        records: Vec<StoredRecord>,
        then: impl FnOnce(&mut Self) -> T + 'static,
    ) -> ResponseActFuture<Self, Result<T, BrokerError>> {
        let Some(store) = self.store.as_mut() else {
            let err = self.unavailable();
            return Box::pin(fut::ready(Err(err)));
        };
        let files = match store.append(&records, now_ms()) {
            Ok(files) => files,
            Err(err) => {
                let err = BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, err.to_string());
                return Box::pin(fut::ready(Err(err)));
            }
        };
        // The state follows the log at once, in the order of the appends: a
        // commit in flight is what the next owner of its partition reads, even
        // if its author is removed before the fsync completes. Only the answer
        // waits for durability.
        for record in &records {
            self.state.apply(record);
        }
        let synced = self.writer.sync(files);
        Box::pin(synced.into_actor(self).map(move |synced, act, _| {
            synced?;
            act.compact_if_needed();
            Ok(then(act))
        }))
    }

    fn compact_if_needed(&mut self) {
        let Some(store) = self.store.as_mut() else { return };
        if store.needs_compaction() {
            if let Err(err) = store.compact(&self.state, now_ms()) {
                tracing::error!(%err, group = %self.group_id, "compacting the group's log failed");
            }
        }
    }

    /// Asks the topics for their partition counts.
    fn partition_counts(&self, topics: BTreeSet<String>) -> impl std::future::Future<Output = BTreeMap<String, u32>> {
        let broker = self.broker.clone();
        async move {
            let lookups = topics.into_iter().map(|topic| {
                let broker = broker.clone();
                async move {
                    let addr = broker.send(LookupTopic { name: topic.clone() }).await.ok()?.ok()?;
                    Some((topic, addr.send(PartitionCount).await.ok()?))
                }
            });
            join_all(lookups).await.into_iter().flatten().collect()
        }
    }

    fn refresh_partitions(&mut self, ctx: &mut Context<Self>) {
        let topics = self.membership.subscribed_topics();
        if topics.is_empty() {
            return;
        }
        let counts = self.partition_counts(topics);
        ctx.spawn(counts.into_actor(self).map(|counts, act, _| {
            act.partitions = counts;
            let changed = act.membership.set_partitions(act.partitions.clone());
            act.notify(changed);
        }));
    }

    fn offsets_snapshot(&self) -> BTreeMap<TopicPartition, Committed> {
        self.state.offsets.clone()
    }
}

impl Actor for GroupCoordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(crate::UNBOUNDED_MAILBOX);
        if self.closed {
            return;
        }
        self.open();
        ctx.run_interval(Duration::from_millis(self.settings.metadata_refresh_ms.max(10)), |act, ctx| {
            act.refresh_partitions(ctx);
            for member_id in act.membership.overdue_revocations(now_ms()) {
                act.remove_member(&member_id, "did not release revoked partitions within its rebalance timeout");
            }
        });
    }
}

impl Supervised for GroupCoordinator {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if self.closed {
            // Closed on purpose (deleted, or shut down): nothing to reopen.
            return;
        }
        tracing::warn!(group = %self.group_id, "group coordinator restarting; members must rejoin");
        self.store = None;
        self.held.clear();
        self.membership = Membership::new(default_assignor());
    }
}

/// A member joins (a new member id is chosen here).
#[derive(Message)]
#[rtype(result = "Result<Assigned, BrokerError>")]
pub struct Join {
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: Option<u64>,
    pub rebalance_timeout_ms: Option<u64>,
    pub assignor: Option<String>,
}

impl Handler<Join> for GroupCoordinator {
    type Result = ResponseActFuture<Self, Result<Assigned, BrokerError>>;

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> Self::Result {
        if self.store.is_none() {
            return Box::pin(fut::ready(Err(self.unavailable())));
        }
        let session_timeout_ms = msg.session_timeout_ms.unwrap_or(self.settings.default_session_timeout_ms);
        if !(self.settings.min_session_timeout_ms..=self.settings.max_session_timeout_ms).contains(&session_timeout_ms)
        {
            return Box::pin(fut::ready(Err(BrokerError::new(
                ErrorCode::INVALID_SESSION_TIMEOUT,
                format!(
                    "session_timeout_ms {session_timeout_ms} is outside [{}, {}]",
                    self.settings.min_session_timeout_ms, self.settings.max_session_timeout_ms
                ),
            ))));
        }
        let assignor = match msg.assignor.as_deref() {
            None => None,
            Some(name) => match assignor::by_name(name) {
                Some(assignor) => Some(assignor),
                None => {
                    return Box::pin(fut::ready(Err(BrokerError::new(
                        ErrorCode::UNSUPPORTED_ASSIGNOR,
                        format!("assignor `{name}` is not one of {}", assignor::ASSIGNORS.join(", ")),
                    ))))
                }
            },
        };
        if msg.topics.is_empty() {
            return Box::pin(fut::ready(Err(BrokerError::new(
                ErrorCode::INVALID_REQUEST,
                "a member must subscribe to at least one topic",
            ))));
        }
        let member_id = self.new_member_id(&msg.client_id);
        let info = MemberInfo {
            member_id: member_id.clone(),
            group_instance_id: msg.group_instance_id,
            client_id: msg.client_id,
            host: msg.host,
            topics: msg.topics.clone(),
            session_timeout_ms,
            rebalance_timeout_ms: msg.rebalance_timeout_ms.unwrap_or(session_timeout_ms) as i64,
        };
        // Learn the partition counts of new topics before assigning.
        let unknown: BTreeSet<String> =
            msg.topics.iter().filter(|t| !self.partitions.contains_key(*t)).cloned().collect();
        let counts = self.partition_counts(unknown);
        let change_assignor = assignor.filter(|a| a.name() != self.membership.assignor().name());
        Box::pin(counts.into_actor(self).then(move |counts, act, _| {
            act.partitions.extend(counts);
            let mut changed = act.membership.set_partitions(act.partitions.clone());
            changed.extend(act.membership.join(info));
            tracing::info!(group = %act.group_id, member_id, epoch = act.membership.group_epoch(), "member joined");
            act.notify(changed);
            let answer = act.assigned(&member_id);
            match change_assignor {
                Some(assignor) if act.membership.len() == 1 => {
                    let record = StoredRecord::Assignor { name: assignor.name().to_string() };
                    Box::pin(
                        act.persist(vec![record], move |act| {
                            let changed = act.membership.set_assignor(assignor);
                            act.notify(changed);
                            act.assigned(&member_id)
                        })
                        .map(|r, _, _| r.and_then(|a| a)),
                    ) as ResponseActFuture<Self, _>
                }
                _ => Box::pin(fut::ready(answer)),
            }
        }))
    }
}

/// A member's heartbeat: what it owns now; answered with its assignment.
#[derive(Message)]
#[rtype(result = "Result<Assigned, BrokerError>")]
pub struct Heartbeat {
    pub member_id: String,
    pub generation_id: i64,
    pub owned: BTreeSet<TopicPartition>,
    pub topics: Option<BTreeSet<String>>,
    pub max_wait_ms: u64,
}

impl Handler<Heartbeat> for GroupCoordinator {
    type Result = ResponseFuture<Result<Assigned, BrokerError>>;

    fn handle(&mut self, msg: Heartbeat, ctx: &mut Context<Self>) -> Self::Result {
        let new_topics = msg.topics.as_ref().is_some_and(|t| t.iter().any(|t| !self.partitions.contains_key(t)));
        let changed =
            match self.membership.heartbeat(&msg.member_id, msg.generation_id, msg.owned.clone(), msg.topics, now_ms())
            {
                Ok(changed) => changed,
                Err(err) => {
                    let err = member_error(err, &msg.member_id);
                    return Box::pin(futures::future::ready(Err(err)));
                }
            };
        if new_topics {
            self.refresh_partitions(ctx);
        }
        self.notify(changed);
        let answer = match self.assigned(&msg.member_id) {
            Ok(answer) => answer,
            Err(err) => return Box::pin(futures::future::ready(Err(err))),
        };
        // Answer now if the member is not where it should be.
        if answer.generation_id != msg.generation_id || answer.assignment != msg.owned || msg.max_wait_ms == 0 {
            return Box::pin(futures::future::ready(Ok(answer)));
        }
        let (reply, wait) = oneshot::channel();
        self.holds += 1;
        let hold = self.holds;
        if let Some((_, previous)) = self.held.insert(msg.member_id.clone(), (hold, reply)) {
            let _ = previous.send(Ok(answer.clone()));
        }
        let max_wait = msg.max_wait_ms.min(answer.session_timeout_ms / 2);
        let member_id = msg.member_id;
        ctx.run_later(Duration::from_millis(max_wait), move |act, _| {
            if act.held.get(&member_id).is_some_and(|(h, _)| *h == hold) {
                act.answer_held(&member_id);
            }
        });
        Box::pin(async move {
            wait.await.unwrap_or_else(|_| {
                Err(BrokerError::new(ErrorCode::COORDINATOR_NOT_AVAILABLE, "the coordinator restarted"))
            })
        })
    }
}

/// A member leaves the group (its partitions move at once).
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Leave {
    pub member_id: String,
}

impl Handler<Leave> for GroupCoordinator {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) -> Self::Result {
        self.membership.assignment(&msg.member_id).map_err(|e| member_error(e, &msg.member_id))?;
        self.remove_member(&msg.member_id, "left the group");
        Ok(())
    }
}

/// A member's session ended: its connection closed, or it stopped heartbeating.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberGone {
    pub member_id: String,
    /// True when the connection closed; false when the session timed out.
    pub disconnected: bool,
}

impl Handler<MemberGone> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: MemberGone, _: &mut Context<Self>) {
        let is_static = self
            .membership
            .members()
            .iter()
            .any(|m| m.info.member_id == msg.member_id && m.info.group_instance_id.is_some());
        if msg.disconnected && is_static {
            // A static member keeps its partitions until its session times out.
            return;
        }
        let why = if msg.disconnected { "connection closed" } else { "session timed out" };
        self.remove_member(&msg.member_id, why);
    }
}

/// Summary for list-groups: state, member count, assignor.
#[derive(Message)]
#[rtype(result = "super::GroupSummary")]
pub struct Summarize;

impl Handler<Summarize> for GroupCoordinator {
    type Result = MessageResult<Summarize>;

    fn handle(&mut self, _: Summarize, _: &mut Context<Self>) -> Self::Result {
        MessageResult(super::GroupSummary {
            group_id: self.group_id.to_string(),
            state: self.membership.state(),
            members: self.membership.len(),
            assignor: self.membership.assignor().name(),
        })
    }
}

/// Close the group for good (it is being deleted); refused while it has members.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct CloseGroup;

impl Handler<CloseGroup> for GroupCoordinator {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, _: CloseGroup, ctx: &mut Context<Self>) -> Self::Result {
        if !self.membership.is_empty() {
            return Err(BrokerError::new(
                ErrorCode::NON_EMPTY_GROUP,
                format!("group `{}` has {} active members", self.group_id, self.membership.len()),
            ));
        }
        self.closed = true;
        self.store = None;
        ctx.stop();
        Ok(())
    }
}

/// Fsync the group's log (broker shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct ShutdownGroup;

impl Handler<ShutdownGroup> for GroupCoordinator {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, _: ShutdownGroup, _: &mut Context<Self>) -> Self::Result {
        for (member_id, (_, reply)) in self.held.drain() {
            let _ = reply.send(Err(BrokerError::new(
                ErrorCode::BROKER_SHUTTING_DOWN,
                format!("{member_id}: the broker is shutting down"),
            )));
        }
        self.closed = true;
        match self.store.take() {
            Some(mut store) => {
                store.flush_all().map_err(|e| BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()))
            }
            None => Ok(()),
        }
    }
}

/// Answer every held heartbeat now (shutdown: connections are draining).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AnswerHeartbeats;

impl Handler<AnswerHeartbeats> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, _: AnswerHeartbeats, _: &mut Context<Self>) {
        let held: Vec<String> = self.held.keys().cloned().collect();
        for member_id in held {
            self.answer_held(&member_id);
        }
    }
}
