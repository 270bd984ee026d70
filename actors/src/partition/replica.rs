//! The partition's side of replication: its role, leader epoch, high
//! watermark, in-sync replicas (ISR) and acks=all. The cluster layer drives
//! it by messages; nothing here talks to ZooKeeper or the network.
//!
//! A partition has a [`Role`]:
//!
//! - `Standalone` (the default; a broker alone): the high watermark (HW) is
//!   the durable log end, as without replication. acks=-1 is acks=1.
//! - `Leader` ([`BecomeLeader`]): appends as standalone; its own log end
//!   counts once durable (per the flush policy). It tracks each follower's
//!   log end offset (LEO) from the `fetch_offset` of its [`ReplicaFetch`]es
//!   (a follower fetching from X has X durable) and when it was last caught
//!   up (its fetch offset reached the leader's LEO at that fetch, or at the
//!   one before: Kafka's lastCaughtUpTime). HW = the least LEO over the
//!   "maximal ISR" (the committed ISR and a pending addition; a pending
//!   removal still counts), its own included (a member that has not fetched
//!   yet holds it where it is); it never goes back. Consumer
//!   [`Fetch`](super::Fetch)es return records below the HW only, and their
//!   long polls wake when the HW passes their offset.
//!
//!   ISR changes are proposed, never applied by the partition alone: a
//!   follower outside the ISR whose LEO reached the HW and the start of the
//!   current leader epoch is proposed for addition; an ISR follower not
//!   caught up within `replica_lag_time_max_ms` (checked on a timer) for
//!   removal. A proposal ([`IsrProposal`]) goes to the recipient given in
//!   [`BecomeLeader`] (none: no proposals); the cluster layer stores it and
//!   answers [`IsrUpdated`], ignored unless of the current epoch. One
//!   proposal is in flight at a time, sent again on the timer until
//!   confirmed.
//!
//!   acks=-1: refused before appending with `NOT_ENOUGH_REPLICAS` while the
//!   ISR has fewer than `min_insync_replicas` members; otherwise answered
//!   once the HW reaches the batch's end, with
//!   `NOT_ENOUGH_REPLICAS_AFTER_APPEND` if the ISR is then too small. A
//!   waiting append is answered `NOT_LEADER_OR_FOLLOWER` if the partition
//!   stops leading, and `REQUEST_TIMED_OUT` after its `timeout_ms`.
//! - `Follower` ([`BecomeFollower`]): appends, consumer fetches,
//!   ListOffsets and DeleteRecords are refused with `NOT_LEADER_OR_FOLLOWER`; it takes the
//!   leader's batches by [`AppendAsFollower`] (`replica_fetch.rs`) and
//!   truncates a divergent tail by [`TruncateTo`]. Its HW is the least of
//!   the leader's HW at the last fetch and its own durable LEO.
//!
//! The HW is not stored: at the first role (from `Standalone`, the broker's
//! start) it drops to the log start and rises with the followers' fetches,
//! since nothing in the log is known replicated yet.
//!
//! Leader epochs only go up: a role change with an older epoch is refused
//! with `FENCED_LEADER_EPOCH`; the same epoch again in the same role is a
//! no-op. Becoming leader records (epoch, LEO) in the leader epoch cache
//! (`epoch_cache.rs`), which a follower uses to find where its log diverges
//! (KIP-101/279): it asks the leader [`LeaderEpochEndOffset`] for its latest
//! epoch and truncates to the least of the answer and its own LEO.
//!
//! Every message here runs on the partition's own actor (see `mod.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::epoch_cache::EpochCache;
use super::Partition;
use crate::error::{BrokerError, ErrorCode};

pub use super::replica_fetch::{AppendAsFollower, LeaderEpochEndOffset, ReplicaFetch, ReplicaFetched, TruncateTo};

/// Kafka's default `replica.lag.time.max.ms`.
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: u64 = 30_000;
/// A proposal not confirmed this long is sent again.
const ISR_RESEND_AFTER: Duration = Duration::from_secs(2);

/// What a partition is in its cluster. See the module doc.
pub(super) enum Role {
    Standalone,
    Leader(Box<Leading>),
    Follower { leader: i32, leader_high_watermark: i64 },
}

/// A leader's view of its replicas.
pub(super) struct Leading {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub min_insync_replicas: u32,
    pub my_id: i32,
    pub isr_sink: Option<Recipient<IsrProposal>>,
    pub followers: HashMap<i32, FollowerState>,
    /// The ISR proposed and not confirmed yet, and when it was sent.
    pub pending: Option<(Vec<i32>, Instant)>,
    /// The log end when this epoch began.
    pub epoch_start_offset: i64,
}

/// What the leader knows of one follower.
pub(super) struct FollowerState {
    /// Its log end, from its last fetch; `None` before its first.
    pub leo: Option<i64>,
    pub last_caught_up: Instant,
    /// When it last fetched, and the leader's LEO then.
    pub last_fetch: Option<(Instant, i64)>,
}

/// The replication state a partition keeps (see the module doc).
pub(super) struct ReplicaState {
    pub role: Role,
    /// The current leader epoch; -1 until a role is given.
    pub leader_epoch: i32,
    /// `None` until the log is opened.
    pub epochs: Option<EpochCache>,
    /// The local log end known durable.
    pub durable_end: i64,
    pub lag_time_max: Duration,
    pub ack_waiters: HashMap<u64, super::replica_acks::AckWaiter>,
    pub fetch_waiters: HashMap<u64, super::replica_fetch::FetchWaiter>,
    pub next_waiter: u64,
    pub timer: Option<SpawnHandle>,
}

impl ReplicaState {
    pub(super) fn new(replica_lag_time_max_ms: u64) -> Self {
        ReplicaState {
            role: Role::Standalone,
            leader_epoch: -1,
            epochs: None,
            durable_end: 0,
            lag_time_max: Duration::from_millis(replica_lag_time_max_ms),
            ack_waiters: HashMap::new(),
            fetch_waiters: HashMap::new(),
            next_waiter: 0,
            timer: None,
        }
    }

    pub(super) fn leading(&self) -> Option<&Leading> {
        match &self.role {
            Role::Leader(leading) => Some(leading),
            _ => None,
        }
    }

    fn leading_mut(&mut self) -> Option<&mut Leading> {
        match &mut self.role {
            Role::Leader(leading) => Some(leading),
            _ => None,
        }
    }
}

/// The error for a request only a leader (or a broker alone) serves.
pub(super) fn not_leader(what: &str) -> BrokerError {
    BrokerError::new(ErrorCode::NOT_LEADER_OR_FOLLOWER, format!("this broker does not lead the partition ({what})"))
}

/// A proposed ISR, for the cluster layer to store and confirm with [`IsrUpdated`].
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct IsrProposal {
    pub topic: std::sync::Arc<str>,
    pub partition: u32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// Lead the partition from now on, at `leader_epoch`.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct BecomeLeader {
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub min_insync_replicas: u32,
    pub my_id: i32,
    pub isr_sink: Option<Recipient<IsrProposal>>,
}

/// Follow `leader` from now on, at `leader_epoch`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct BecomeFollower {
    pub leader_epoch: i32,
    pub leader: i32,
}

/// The ISR the cluster layer stored for `leader_epoch`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct IsrUpdated {
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// A partition's role, as [`Describe`](super::Describe) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleInfo {
    Standalone,
    Leader { isr: Vec<i32>, replicas: Vec<i32> },
    Follower { leader: i32 },
}

impl Partition {
    /// Checks a role change to `epoch`: `Ok(true)` to apply it, `Ok(false)`
    /// when it repeats the current one (`same_role`).
    fn check_epoch(&self, epoch: i32, same_role: bool) -> Result<bool, BrokerError> {
        let current = self.replica.leader_epoch;
        if epoch < current || (epoch == current && !same_role) {
            return Err(BrokerError::new(
                ErrorCode::FENCED_LEADER_EPOCH,
                format!("leader epoch {epoch} is not newer than the partition's {current} (in its role)"),
            ));
        }
        Ok(epoch > current)
    }

    /// Answers every replica's waiting fetch and acks=-1 append, and every
    /// consumer long poll, with `err` (the partition stopped leading).
    fn drop_leader_waiters(&mut self, err: &BrokerError) {
        for (_, waiter) in self.replica.ack_waiters.drain() {
            let _ = waiter.reply.send(Err(err.clone()));
        }
        for (_, waiter) in self.replica.fetch_waiters.drain() {
            let _ = waiter.reply.send(Err(err.clone()));
        }
        for (_, waiter) in self.waiters.drain() {
            let _ = waiter.reply.send(Err(err.clone()));
        }
        // Their senders dropped: a retriable error for the asker.
        self.latest_waiters.clear();
    }

    /// The HW for a local log end `durable` (hook of the partition's HW
    /// update): `None` when it cannot move.
    pub(super) fn replica_high_watermark(&mut self, durable: i64) -> Option<i64> {
        let state = &mut self.replica;
        state.durable_end = state.durable_end.max(durable);
        match &state.role {
            Role::Standalone => Some(durable),
            Role::Follower { leader_high_watermark, .. } => Some((*leader_high_watermark).min(state.durable_end)),
            Role::Leader(leading) => {
                let mut hw = state.durable_end;
                let pending = leading.pending.as_ref().map(|(isr, _)| isr.as_slice()).unwrap_or(&[]);
                for id in leading.isr.iter().chain(pending).filter(|&&id| id != leading.my_id) {
                    hw = hw.min(leading.followers.get(id)?.leo?);
                }
                Some(hw)
            }
        }
    }

    /// Proposes the ISR the followers' progress calls for, if it differs
    /// from the committed one and no proposal is in flight (or the one in
    /// flight is old: sent again).
    pub(super) fn maybe_propose_isr(&mut self) {
        let hw = self.high_watermark;
        let lag = self.replica.lag_time_max;
        let epoch = self.replica.leader_epoch;
        let (topic, partition) = (self.topic.clone(), self.partition);
        let Some(leading) = self.replica.leading_mut() else { return };
        let Some(sink) = leading.isr_sink.clone() else { return };
        let now = Instant::now();
        if let Some((isr, sent)) = &mut leading.pending {
            if now.duration_since(*sent) >= ISR_RESEND_AFTER {
                *sent = now;
                sink.do_send(IsrProposal { topic, partition, leader_epoch: epoch, isr: isr.clone() });
            }
            return;
        }
        let in_sync = |id: &i32| -> bool {
            if *id == leading.my_id {
                return true;
            }
            let Some(f) = leading.followers.get(id) else { return false };
            if leading.isr.contains(id) {
                now.duration_since(f.last_caught_up) <= lag
            } else {
                f.leo.is_some_and(|leo| leo >= hw && leo >= leading.epoch_start_offset)
            }
        };
        let wanted: Vec<i32> = leading.replicas.iter().copied().filter(|id| in_sync(id)).collect();
        let mut current = leading.isr.clone();
        current.sort_unstable();
        let mut sorted = wanted.clone();
        sorted.sort_unstable();
        if sorted == current {
            return;
        }
        tracing::info!(topic = %topic, partition, leader_epoch = epoch, isr = ?leading.isr, proposed = ?wanted, "proposing an ISR change");
        leading.pending = Some((wanted.clone(), now));
        sink.do_send(IsrProposal { topic, partition, leader_epoch: epoch, isr: wanted });
    }

    /// A follower's progress as its fetch from `fetch_offset` shows it,
    /// with the leader's LEO `leader_end` at that fetch.
    pub(super) fn follower_fetched(&mut self, replica_id: i32, fetch_offset: i64, leader_end: i64) {
        let Some(leading) = self.replica.leading_mut() else { return };
        let Some(follower) = leading.followers.get_mut(&replica_id) else { return };
        let now = Instant::now();
        if fetch_offset >= leader_end {
            follower.last_caught_up = now;
        } else if let Some((then, end_then)) = follower.last_fetch {
            if fetch_offset >= end_then {
                follower.last_caught_up = follower.last_caught_up.max(then);
            }
        }
        follower.last_fetch = Some((now, leader_end));
        follower.leo = Some(fetch_offset);
        let durable = self.replica.durable_end;
        self.advance_high_watermark(durable);
        self.maybe_propose_isr();
    }

    /// The partition restarts under its supervisor: its timers are gone,
    /// so its waiting appends and replica fetches are answered now.
    pub(super) fn replica_restarting(&mut self) {
        self.replica.timer = None;
        let err = BrokerError::unavailable("the partition");
        for (_, waiter) in self.replica.ack_waiters.drain() {
            let _ = waiter.reply.send(Err(err.clone()));
        }
        for (_, waiter) in self.replica.fetch_waiters.drain() {
            let _ = waiter.reply.send(Err(err.clone()));
        }
    }

    /// The HW to start from once the log is open at `log_end_offset`: the
    /// log end for a broker alone; a replica keeps what it knew.
    pub(super) fn replica_opened(&mut self, log_end_offset: i64, fs: std::sync::Arc<dyn crate::fs::FileSystem>) -> i64 {
        let epochs = EpochCache::load(fs.clone(), &self.dir, log_end_offset).unwrap_or_else(|err| {
            tracing::warn!(%err, topic = %self.topic, partition = self.partition, "cannot read the leader epoch cache; taken as empty");
            EpochCache::empty(fs, &self.dir)
        });
        self.replica.epochs = Some(epochs);
        self.replica.durable_end = log_end_offset;
        match self.replica.role {
            Role::Standalone => log_end_offset,
            _ => self.high_watermark.min(log_end_offset),
        }
    }

    /// A broker alone shows its whole durable log; a replica only what its
    /// ISR has. The HW is not stored, so at the first role (the broker's
    /// start in a cluster) nothing is known replicated: the HW drops to the
    /// log start and rises with the followers' fetches (as a follower, with
    /// the leader's HW), so that no consumer sees a record a later leader
    /// may not have.
    fn leave_standalone(&mut self) -> Result<(), BrokerError> {
        if matches!(self.replica.role, Role::Standalone) {
            self.high_watermark = self.log()?.log_start_offset();
        }
        Ok(())
    }

    /// The actor (re)started: a leader's ISR timer runs again.
    pub(super) fn replica_started(&mut self, ctx: &mut Context<Self>) {
        if self.replica.leading().is_some() {
            self.start_isr_timer(ctx);
        }
    }

    /// The timer of a leader: checks the ISR.
    fn start_isr_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.replica.timer.take() {
            ctx.cancel_future(timer);
        }
        let every = (self.replica.lag_time_max / 2).clamp(Duration::from_millis(10), Duration::from_secs(5));
        self.replica.timer = Some(ctx.run_interval(every, |act, _| act.maybe_propose_isr()));
    }

    /// Describes the role for [`Describe`](super::Describe).
    pub(super) fn role_info(&self) -> (RoleInfo, i32) {
        let info = match &self.replica.role {
            Role::Standalone => RoleInfo::Standalone,
            Role::Leader(l) => RoleInfo::Leader { isr: l.isr.clone(), replicas: l.replicas.clone() },
            Role::Follower { leader, .. } => RoleInfo::Follower { leader: *leader },
        };
        (info, self.replica.leader_epoch)
    }
}

impl Handler<BecomeLeader> for Partition {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, msg: BecomeLeader, ctx: &mut Context<Self>) -> Self::Result {
        let leading = self.replica.leading().is_some();
        if !self.check_epoch(msg.leader_epoch, leading)? {
            return Ok(());
        }
        let leo = self.log()?.log_end_offset();
        if let Some(epochs) = self.replica.epochs.as_mut() {
            epochs.assign(msg.leader_epoch, leo)?;
        }
        self.leave_standalone()?;
        let fenced = BrokerError::new(ErrorCode::FENCED_LEADER_EPOCH, "the partition has a newer leader epoch");
        for (_, waiter) in self.replica.fetch_waiters.drain() {
            let _ = waiter.reply.send(Err(fenced.clone()));
        }
        let now = Instant::now();
        let followers = msg
            .replicas
            .iter()
            .filter(|&&id| id != msg.my_id)
            .map(|&id| (id, FollowerState { leo: None, last_caught_up: now, last_fetch: None }))
            .collect();
        tracing::info!(topic = %self.topic, partition = self.partition, leader_epoch = msg.leader_epoch, isr = ?msg.isr, log_end_offset = leo, "leading the partition");
        self.replica.role = Role::Leader(Box::new(Leading {
            replicas: msg.replicas,
            isr: msg.isr,
            min_insync_replicas: msg.min_insync_replicas,
            my_id: msg.my_id,
            isr_sink: msg.isr_sink,
            followers,
            pending: None,
            epoch_start_offset: leo,
        }));
        self.replica.leader_epoch = msg.leader_epoch;
        self.start_isr_timer(ctx);
        let durable = self.replica.durable_end;
        self.advance_high_watermark(durable);
        self.maybe_propose_isr();
        Ok(())
    }
}

impl Handler<BecomeFollower> for Partition {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, msg: BecomeFollower, ctx: &mut Context<Self>) -> Self::Result {
        let following = matches!(self.replica.role, Role::Follower { leader, .. } if leader == msg.leader);
        if !self.check_epoch(msg.leader_epoch, following)? {
            return Ok(());
        }
        self.leave_standalone()?;
        if let Some(timer) = self.replica.timer.take() {
            ctx.cancel_future(timer);
        }
        self.drop_leader_waiters(&not_leader(&format!("broker {} leads it now", msg.leader)));
        tracing::info!(topic = %self.topic, partition = self.partition, leader_epoch = msg.leader_epoch, leader = msg.leader, "following the partition's leader");
        self.replica.role = Role::Follower { leader: msg.leader, leader_high_watermark: self.high_watermark };
        self.replica.leader_epoch = msg.leader_epoch;
        Ok(())
    }
}

impl Handler<IsrUpdated> for Partition {
    type Result = ();

    fn handle(&mut self, msg: IsrUpdated, _: &mut Context<Self>) {
        let epoch = self.replica.leader_epoch;
        let Some(leading) = self.replica.leading_mut().filter(|_| msg.leader_epoch == epoch) else {
            tracing::debug!(leader_epoch = msg.leader_epoch, current = epoch, "ignored an ISR update of another epoch");
            return;
        };
        tracing::info!(topic = %self.topic, partition = self.partition, leader_epoch = epoch, isr = ?msg.isr, "ISR updated");
        leading.isr = msg.isr;
        leading.pending = None;
        let durable = self.replica.durable_end;
        self.advance_high_watermark(durable);
        self.maybe_propose_isr();
    }
}
