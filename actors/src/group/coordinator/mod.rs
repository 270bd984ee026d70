//! The `GroupCoordinator` actor: one per consumer group.
//!
//! Contract:
//! - Started by [`Groups`](super::Groups) on first use (or at start for every
//!   group on disk), under an actix `Supervisor`, on the arbiter picked by a
//!   stable hash of the group id. Handlers run through [`guard`]: a panic
//!   stops the actor and the supervisor restarts it; on (re)start it replays
//!   its [`GroupStore`] (committed offsets and the assignor survive), and
//!   every member's session is told the member is gone (it joins again).
//! - Owns the group's [`Membership`] (members, epochs, assignments), its
//!   committed offsets, and each member's liveness: a session timer (armed
//!   when the member's last heartbeat was answered, or when a static member's
//!   connection closed; disarmed while a heartbeat is held) and a rebalance
//!   timer (armed when the member starts keeping partitions it was asked to
//!   give up). Both fire to the millisecond and remove the member.
//! - Speaks with one [`Session`] per member ([`members`]): takes `Join`,
//!   `Heartbeat`, `HeartbeatAnswered`, `Leave`, `MemberDisconnected`, and
//!   pushes [`AssignmentChanged`] to the sessions of the members whose
//!   assignment changed and [`MemberRemoved`] to those it removes. A session
//!   holds its client's heartbeat; this actor never holds a request.
//! - Takes [`CommitOffsets`], [`FetchOffsets`], [`DescribeGroup`],
//!   [`ResetOffsets`] ([`offsets`]), [`CloseGroup`], [`ShutdownGroup`]. Commits
//!   are acknowledged only after the fsync writer synced them.
//! - Partition counts of subscribed topics are refreshed every
//!   `metadata_refresh_ms`; a change (partitions added) rebalances.
//! - A change costs O(members + partitions): the assignor, one reconciliation
//!   pass, and a message to each member whose assignment changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix::WeakAddr;
use futures::future::join_all;

mod closing;
mod members;
mod offsets;
mod watch;

pub use closing::{CloseGroup, ClosedFlag, ExpireIfIdle, Resign, ShutdownGroup};
pub use members::{Beat, Heartbeat, HeartbeatAnswered, Join, Leave, MemberDisconnected};
pub use offsets::{
    CommitOffsets, DescribeGroup, FetchOffsets, GroupDescription, PartitionLag, ResetOffsets, ResetTo,
    MAX_METADATA_BYTES,
};
pub use watch::{GroupChanged, GroupMember, WatchGroup};

use super::assignor::{self, TopicPartition};
use super::membership::{MemberError, Membership};
use super::replicated;
use super::session::{AssignmentChanged, MemberRemoved, Session};
use super::store::{Committed, DamagedRecords, GroupState, GroupStore, StoredRecord};
use super::GroupSettings;
use crate::broker::{Broker, LookupTopic};
use crate::error::{BrokerError, ErrorCode};
use crate::now_ms;
use crate::partition::Partition;
use crate::topic::PartitionCount;
use crate::writer::SyncWriter;

/// Where a coordinator keeps its group's records.
pub enum Origin {
    /// A broker alone: the group's own log, in this directory.
    Dir(PathBuf),
    /// A broker in a cluster: the group's partition of `__consumer_offsets`
    /// ([`replicated`]), with the group's state as read back from it (taken
    /// at the first start; a restart keeps the state it has).
    Partition { addr: Addr<Partition>, state: Option<GroupState>, damaged: Vec<DamagedRecords> },
}

/// The group's open store.
enum Store {
    Local(Box<GroupStore>),
    Replicated { partition: Addr<Partition>, damaged: Vec<DamagedRecords> },
}

impl Store {
    fn damaged(&self) -> &[DamagedRecords] {
        match self {
            Store::Local(store) => store.damaged(),
            Store::Replicated { damaged, .. } => damaged,
        }
    }
}

/// One group's coordinator. See the module documentation for its contract.
pub struct GroupCoordinator {
    group_id: Arc<str>,
    origin: Origin,
    settings: GroupSettings,
    broker: Addr<Broker>,
    writer: SyncWriter,
    clean_shutdown: bool,
    store: Option<Store>,
    state: GroupState,
    membership: Membership,
    /// Partition counts of every topic a member subscribes to.
    partitions: BTreeMap<String, u32>,
    /// Each member's session and liveness timers, by member id.
    live: HashMap<String, Liveness>,
    next_member: u64,
    closed: bool,
    /// Closed because another broker coordinates the group now.
    resigned: bool,
    /// Set once closed for good (`closing.rs`), for those who keep this
    /// coordinator's address to know to look the group up again.
    closed_flag: Arc<std::sync::atomic::AtomicBool>,
    /// When the group last had a member (as seen by the expiry check), or
    /// when this coordinator started: a group is never expired sooner than a
    /// full retention after a broker start.
    last_active_ms: i64,
    /// Extensions watching the membership (see the `watch` module).
    watchers: Vec<Recipient<GroupChanged>>,
    /// The membership last sent to them.
    published: Option<GroupChanged>,
}

/// How the coordinator reaches a member and watches it.
struct Liveness {
    /// Weak: a session lives as long as its connection holds it.
    session: WeakAddr<Session>,
    /// Removes the member when it fires; `None` while a heartbeat is held.
    expiry: Option<SpawnHandle>,
    /// Removes the member for keeping revoked partitions too long; with the
    /// `revoking_since` it was armed for.
    rebalance: Option<(i64, SpawnHandle)>,
    /// The member's connection closed (a static member waiting to come back):
    /// its session timer runs from then and nothing restarts it.
    disconnected: bool,
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

/// The one place a membership refusal becomes a wire error.
fn member_error(err: MemberError, member_id: &str) -> BrokerError {
    match err {
        MemberError::UnknownMember => BrokerError::new(
            ErrorCode::UNKNOWN_MEMBER_ID,
            format!("`{member_id}` is not a member of the group; join again"),
        ),
        MemberError::Fenced => BrokerError::new(
            ErrorCode::FENCED_INSTANCE_ID,
            format!("`{member_id}` was replaced by a newer member with its group_instance_id"),
        ),
        MemberError::IllegalGeneration { current, got } => BrokerError::new(
            ErrorCode::ILLEGAL_GENERATION,
            format!("generation {got} is not valid for `{member_id}`, whose generation is {current}"),
        ),
        MemberError::StaleGeneration { given_at, got } => BrokerError::new(
            ErrorCode::ILLEGAL_GENERATION,
            format!("stale generation {got}: `{member_id}` was given this partition at generation {given_at}"),
        ),
        MemberError::NotOwned => BrokerError::new(
            ErrorCode::PARTITION_NOT_OWNED,
            format!("`{member_id}` does not hold this partition (never assigned to it, or released)"),
        ),
    }
}

/// The error a request gets when the coordinator stopped (a panic) while
/// handling it: the supervisor is restarting it.
fn restarting() -> BrokerError {
    BrokerError::new(ErrorCode::COORDINATOR_NOT_AVAILABLE, "the group's coordinator is restarting; join again")
}

impl GroupCoordinator {
    pub fn new(
        group_id: Arc<str>,
        origin: Origin,
        settings: GroupSettings,
        broker: Addr<Broker>,
        writer: SyncWriter,
        clean_shutdown: bool,
    ) -> Self {
        GroupCoordinator {
            group_id,
            origin,
            settings,
            broker,
            writer,
            clean_shutdown,
            store: None,
            state: GroupState::default(),
            membership: Membership::new(default_assignor()),
            partitions: BTreeMap::new(),
            live: HashMap::new(),
            next_member: 0,
            closed: false,
            resigned: false,
            closed_flag: Arc::default(),
            last_active_ms: now_ms(),
            watchers: Vec::new(),
            published: None,
        }
    }

    fn open(&mut self) {
        let opened = match &mut self.origin {
            Origin::Dir(dir) => match GroupStore::open(dir, self.clean_shutdown) {
                Ok((store, state)) => Some((Store::Local(Box::new(store)), state)),
                Err(err) => {
                    tracing::error!(%err, group = %self.group_id, "cannot open the group's log");
                    None
                }
            },
            Origin::Partition { addr, state, damaged } => {
                let state = state.take().unwrap_or_else(|| self.state.clone());
                Some((Store::Replicated { partition: addr.clone(), damaged: damaged.clone() }, state))
            }
        };
        if let Some((store, state)) = opened {
            if let Some(assignor) = state.assignor.as_deref().and_then(assignor::by_name) {
                self.membership.set_assignor(assignor);
            }
            self.membership.resume_group_epoch(state.generation);
            self.store = Some(store);
            self.state = state;
        }
        self.clean_shutdown = false;
    }

    fn unavailable(&self) -> BrokerError {
        if self.resigned {
            BrokerError::new(
                ErrorCode::NOT_COORDINATOR,
                "this broker no longer coordinates the group: find the coordinator and send there",
            )
        } else if self.closed {
            BrokerError::new(ErrorCode::GROUP_ID_NOT_FOUND, format!("group `{}` was deleted", self.group_id))
        } else {
            BrokerError::new(ErrorCode::COORDINATOR_NOT_AVAILABLE, "the group's log could not be opened")
        }
    }

    fn assigned(&self, member_id: &str) -> Result<Assigned, BrokerError> {
        let (generation_id, assignment) =
            self.membership.assignment(member_id).map_err(|e| member_error(e, member_id))?;
        let session_timeout_ms =
            self.membership.info(member_id).map_or(self.settings.default_session_timeout_ms, |i| i.session_timeout_ms);
        Ok(Assigned {
            member_id: member_id.to_string(),
            generation_id,
            assignment: assignment.clone(),
            heartbeat_interval_ms: (session_timeout_ms / 3).max(1),
            session_timeout_ms,
        })
    }

    /// Pushes the new assignment to each member whose assignment changed, and
    /// starts or stops their rebalance timers.
    fn notify(&mut self, changed: Vec<String>, ctx: &mut Context<Self>) {
        self.membership.touch(now_ms());
        self.record_generation(ctx);
        for member_id in changed {
            if let (Ok(assigned), Some(session)) =
                (self.assigned(&member_id), self.live.get(&member_id).and_then(|l| l.session.upgrade()))
            {
                session.do_send(AssignmentChanged(assigned));
            }
            self.watch_revocation(&member_id, ctx);
        }
        self.publish_membership();
    }

    /// Writes the group's generation to its log when it rose. Nothing waits
    /// for the fsync (a rebalance must not): it completes in moments, and a
    /// commit's fsync covers it too; after a crash in between, the next run
    /// may repeat the last generation or two, never older ones.
    fn record_generation(&mut self, ctx: &mut Context<Self>) {
        let epoch = self.membership.group_epoch();
        let Some(store) = self.store.as_mut().filter(|_| epoch > self.state.generation) else { return };
        let record = StoredRecord::Generation { group_epoch: epoch };
        let store = match store {
            Store::Local(store) => store,
            Store::Replicated { partition, .. } => {
                let keyed = replicated::keyed(&self.group_id, std::slice::from_ref(&record), &self.state);
                self.state.apply(&record);
                let (group, sent) = (self.group_id.clone(), replicated::append(partition.clone(), keyed, now_ms()));
                ctx.spawn(sent.into_actor(self).map(move |done, _, _| {
                    if let Err(err) = done {
                        tracing::warn!(%group, %err, "cannot store the group's generation");
                    }
                }));
                return;
            }
        };
        match store.append(std::slice::from_ref(&record), now_ms()) {
            Ok(files) => {
                self.state.apply(&record);
                let group = self.group_id.clone();
                ctx.spawn(self.writer.sync(files).into_actor(self).map(move |synced, _, _| {
                    if let Err(err) = synced {
                        tracing::error!(%group, %err, "cannot sync the group's generation");
                    }
                }));
            }
            Err(err) => tracing::error!(group = %self.group_id, %err, "cannot write the group's generation"),
        }
    }

    /// Removes a member and frees its partitions; its session, if it is to
    /// be told, gets `error`.
    fn remove_member(&mut self, member_id: &str, why: &str, error: Option<BrokerError>, ctx: &mut Context<Self>) {
        if let Some(live) = self.live.remove(member_id) {
            if let Some(handle) = live.expiry {
                ctx.cancel_future(handle);
            }
            if let Some((_, handle)) = live.rebalance {
                ctx.cancel_future(handle);
            }
            if let (Some(error), Some(session)) = (error, live.session.upgrade()) {
                session.do_send(MemberRemoved { member_id: member_id.to_string(), error });
            }
        }
        if let Some(changed) = self.membership.remove(member_id) {
            tracing::info!(group = %self.group_id, member_id, why, epoch = self.membership.group_epoch(), "member removed");
            self.notify(changed, ctx);
        }
    }

    /// (Re)starts the member's session timer: it is removed unless it
    /// heartbeats within its session timeout.
    fn arm_expiry(&mut self, member_id: &str, ctx: &mut Context<Self>) {
        let Some(timeout_ms) = self.membership.info(member_id).map(|i| i.session_timeout_ms) else { return };
        self.disarm_expiry(member_id, ctx);
        let id = member_id.to_string();
        let handle = ctx.run_later(Duration::from_millis(timeout_ms), move |act, ctx| {
            if let Some(live) = act.live.get_mut(&id) {
                live.expiry = None;
            }
            let error = BrokerError::new(ErrorCode::UNKNOWN_MEMBER_ID, "the member's session timed out; join again");
            act.remove_member(&id, "session timed out", Some(error), ctx);
        });
        if let Some(live) = self.live.get_mut(member_id) {
            live.expiry = Some(handle);
        }
    }

    fn disarm_expiry(&mut self, member_id: &str, ctx: &mut Context<Self>) {
        if let Some(handle) = self.live.get_mut(member_id).and_then(|l| l.expiry.take()) {
            ctx.cancel_future(handle);
        }
    }

    /// Arms the member's rebalance timer when it starts keeping revoked
    /// partitions, and disarms it when it has released them.
    fn watch_revocation(&mut self, member_id: &str, ctx: &mut Context<Self>) {
        let since = self.membership.revoking_since(member_id);
        let timeout_ms = self.membership.info(member_id).map_or(0, |i| i.rebalance_timeout_ms);
        let Some(live) = self.live.get_mut(member_id) else { return };
        match (since, &live.rebalance) {
            (Some(since), Some((armed_for, _))) if *armed_for == since => {}
            (since, _) => {
                if let Some((_, handle)) = live.rebalance.take() {
                    ctx.cancel_future(handle);
                }
                let Some(since) = since else { return };
                let due = Duration::from_millis((since + timeout_ms - now_ms()).max(0) as u64);
                let id = member_id.to_string();
                let handle = ctx.run_later(due, move |act, ctx| {
                    if act.membership.revoking_since(&id) == Some(since) {
                        let error = BrokerError::new(
                            ErrorCode::UNKNOWN_MEMBER_ID,
                            "the member kept revoked partitions past its rebalance timeout; join again",
                        );
                        act.remove_member(
                            &id,
                            "did not release revoked partitions within its rebalance timeout",
                            Some(error),
                            ctx,
                        );
                    }
                });
                live.rebalance = Some((since, handle));
            }
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
        then: impl FnOnce(&mut Self, &mut Context<Self>) -> T + 'static,
    ) -> ResponseActFuture<Self, Result<T, BrokerError>> {
        let store = match self.store.as_mut() {
            Some(Store::Local(store)) => store,
            Some(Store::Replicated { partition, .. }) => {
                // As below: the state follows at once, the answer waits.
                let keyed = replicated::keyed(&self.group_id, &records, &self.state);
                for record in &records {
                    self.state.apply(record);
                }
                let sent = replicated::append(partition.clone(), keyed, now_ms());
                return Box::pin(sent.into_actor(self).map(move |done, act, ctx| {
                    done?;
                    Ok(then(act, ctx))
                }));
            }
            None => {
                let err = self.unavailable();
                return Box::pin(fut::ready(Err(err)));
            }
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
        Box::pin(synced.into_actor(self).map(move |synced, act, ctx| {
            synced?;
            act.compact_if_needed();
            Ok(then(act, ctx))
        }))
    }

    fn compact_if_needed(&mut self) {
        let Some(Store::Local(store)) = self.store.as_mut() else { return };
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
        ctx.spawn(counts.into_actor(self).map(|counts, act, ctx| {
            act.partitions = counts;
            let changed = act.membership.set_partitions(act.partitions.clone());
            act.notify(changed, ctx);
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
        // Timers went with the old context; the sessions are told their
        // members are gone, so held heartbeats are answered now.
        for (member_id, live) in self.live.drain() {
            if let Some(session) = live.session.upgrade() {
                session.do_send(MemberRemoved { member_id, error: restarting() });
            }
        }
        self.store = None;
        self.partitions.clear();
        self.membership = Membership::new(default_assignor());
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

/// Makes the next handler panic (tests of supervision).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

#[cfg(test)]
impl Handler<InjectPanic> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        crate::guard::guard(self, ctx, "group coordinator", |_, _| panic!("injected failure"));
    }
}
