//! The `Partition` actor: one per partition, owner of that partition's [`Log`].
//!
//! Contract:
//! - Runs on the arbiter its topic picked by a stable hash of (topic, partition),
//!   under an actix `Supervisor`: if it stops (a panic in a handler), it is
//!   restarted and reopens its log from disk, checking the tail.
//! - A write that fails (disk full, an I/O error) is refused with
//!   `KAFKA_STORAGE_ERROR` and the operating system's reason, and the partition
//!   serves on: reads and waiting long polls are not disturbed, and the next
//!   append tries again, so writes resume once space returns. A refused
//!   append is undone whole (its bytes and index entries), so it is never
//!   served nor stored. A failed write that the log could not undo leaves it
//!   refusing appends: the partition then reopens it in place (cutting the
//!   refused bytes first, so recovery cannot serve them), at once and again
//!   at each append until that succeeds, reading from the old one meanwhile.
//! - Takes [`Append`], [`Fetch`], [`ListOffsets`], [`Describe`],
//!   [`SetConfig`], [`DeleteRecords`], [`Close`] and [`Shutdown`]. Offsets are assigned
//!   synchronously inside `Append`'s handler, so batches are ordered as they
//!   arrive in the mailbox; only the durability acknowledgement is asynchronous.
//! - Replication (`replica.rs`, `replica_fetch.rs`): also takes
//!   [`BecomeLeader`], [`BecomeFollower`], [`IsrUpdated`], [`ReplicaFetch`],
//!   [`AppendAsFollower`], [`LeaderEpochEndOffset`] and [`TruncateTo`]. A
//!   partition alone (the default role) behaves as described here; a leader's
//!   high watermark also waits for its in-sync followers, and a follower
//!   serves no client.
//! - `flush = always`: an append is acknowledged, and becomes visible to fetches
//!   (the high watermark moves), only after the data directory's [`SyncWriter`]
//!   fsynced it. `interval` and `never`: acknowledged and visible once written to
//!   the page cache; `never` still fsyncs written files every 10 s in the
//!   background, so that their descriptors may be closed.
//! - Fail-stop on fsync: once an fsync of the data directory failed (this
//!   partition's `always` or `interval` fsync, or any other through the shared
//!   [`SyncWriter`]), every further append is refused with
//!   `KAFKA_STORAGE_ERROR`, whatever the policy; reads go on.
//! - What is lost if it stops: nothing acknowledged; fetches waiting on it get a
//!   retriable error.
//! - A log that cannot be opened (out of file descriptors, an unreadable
//!   directory) is opened again after 100 ms, then after twice as long each
//!   time up to 10 s, until it opens; meanwhile every request gets
//!   `LEADER_NOT_AVAILABLE` (retriable) with the reason.
//! - A fetch at an offset in a damaged range of the log gets `CORRUPT_MESSAGE`
//!   naming the range ([`BrokerError::damaged`]); [`Describe`] lists the
//!   ranges found so far. Every second, while the broker-wide [`ScrubBudget`]
//!   allows, the actor checks a little more of its sealed segments.
//! - A topic whose `cleanup_policy` compacts: on the retention tick the actor
//!   offers a cleaning to the broker's cleaner thread and swaps the
//!   rewritten segments in when it is done (`compaction.rs`); appends of a
//!   record without a key are refused with `INVALID_RECORD`.

mod admin;
pub mod cleaner;
mod compaction;
mod damage;
mod epoch_cache;
mod failures;
pub mod file_cache;
mod index;
pub mod log;
pub mod producers;
mod reads;
pub mod replica;
mod replica_acks;
mod replica_fetch;
mod replica_position;
mod scan;
pub mod scrub;
mod segment;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::batch;
use crate::error::{BrokerError, ErrorCode};
use crate::now_ms;
use crate::topic_config::{TimestampType, TopicConfig};
use crate::writer::SyncWriter;
pub use admin::{DeleteRecords, SetConfig, TO_HIGH_WATERMARK};
use log::Log;
pub use reads::{Describe, Fetch, FetchResult, ListOffsets, OwnRead, PartitionState, ReadOwn};
pub use replica::{
    AppendAsFollower, BecomeFollower, BecomeLeader, IsrProposal, IsrUpdated, LeaderEpochEndOffset, ReplicaFetch,
    ReplicaFetched, RoleInfo, TruncateTo, DEFAULT_REPLICA_LAG_TIME_MAX_MS,
};
pub use replica_position::{FollowerPosition, Position};
use scrub::ScrubBudget;

/// How often a partition runs a step of the background scrub.
const SCRUB_TICK: Duration = Duration::from_secs(1);
/// The most one step of the background scrub reads, in bytes.
const SCRUB_STEP_MAX_BYTES: u64 = 1 << 20;
/// The first wait before opening a log that failed to open again.
const OPEN_RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two tries to open a log.
const OPEN_RETRY_MAX: Duration = Duration::from_secs(10);
/// Under `flush = never`, how often written files are fsynced in the
/// background: not for durability (nothing waits for it) but so that their
/// descriptors may be closed (a file is closed only after an fsync through
/// it, see `file_cache.rs`).
const NEVER_SYNC_EVERY: Duration = Duration::from_secs(10);

/// The durability setting: when an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushPolicy {
    /// Acknowledge after fsync (group commit).
    Always,
    /// Fsync every `flush_interval_ms`; acknowledge after the write.
    Interval,
    /// Leave flushing to the operating system.
    Never,
}

/// Broker-wide settings every partition follows.
#[derive(Debug, Clone)]
pub struct PartitionSettings {
    pub flush: FlushPolicy,
    pub flush_interval_ms: u64,
    pub retention_check_interval_ms: u64,
    /// The background scrub's allowance, shared by every partition.
    pub scrub: ScrubBudget,
    /// A leader removes from the ISR a follower not caught up for this long.
    pub replica_lag_time_max_ms: u64,
    /// Part of a cluster: the partition serves nothing until it is given a
    /// role (leader or follower); alone, it serves at once.
    pub replicated: bool,
    /// How long an idempotent producer without appends is remembered.
    pub producer_id_expiration_ms: i64,
}

/// One partition's actor. See the module documentation for its contract.
pub struct Partition {
    topic: Arc<str>,
    partition: u32,
    dir: PathBuf,
    config: TopicConfig,
    settings: PartitionSettings,
    writer: SyncWriter,
    /// `None` once closed (topic deleted) or while reopening failed.
    log: Option<Log>,
    /// Whether the last shutdown was clean; only the first open may trust it.
    clean_shutdown: bool,
    /// The end of what consumers may read: the log end offset once durable.
    high_watermark: i64,
    /// Long polls waiting for data, by id.
    waiters: HashMap<u64, Waiter>,
    /// "Latest offset" queries waiting for appends before them to become
    /// durable: (log end offset when asked, reply).
    latest_waiters: Vec<(i64, oneshot::Sender<i64>)>,
    next_waiter: u64,
    /// Set by [`Close`] and [`Shutdown`]; survives restarts.
    closed: bool,
    /// Set by [`Shutdown`]: requests after it are refused as the broker's
    /// shutdown (retriable elsewhere), not as a deleted partition.
    shut_down: bool,
    /// Set when an fsync failed: no further write is acknowledged.
    failed: bool,
    /// Set when a failed write left the log refusing appends, until a reopen
    /// succeeds.
    needs_reopen: bool,
    /// Why the last try to open the log failed, while it is not open.
    open_failure: Option<String>,
    /// The topic's bytes and records in and out, for `/metrics`.
    stats: Arc<crate::stats::TopicStats>,
    /// The wait before the next try to open the log.
    open_retry: Duration,
    /// Role, leader epoch, ISR, waiting acks=-1 appends (`replica.rs`).
    replica: replica::ReplicaState,
    /// A cleaning of this log is with the cleaner thread (`compaction.rs`).
    cleaning: bool,
}

struct Waiter {
    offset: i64,
    max_bytes: usize,
    min_bytes: usize,
    reply: oneshot::Sender<Result<FetchResult, BrokerError>>,
}

impl Partition {
    /// A partition of `topic` whose log lives in `dir`; opened when started.
    pub fn new(
        topic: Arc<str>,
        partition: u32,
        dir: PathBuf,
        config: TopicConfig,
        settings: PartitionSettings,
        writer: SyncWriter,
        clean_shutdown: bool,
    ) -> Self {
        let stats = crate::stats::topic(&topic);
        let mut replica = replica::ReplicaState::new(settings.replica_lag_time_max_ms);
        if settings.replicated {
            replica.role = replica::Role::Follower { leader: -1, leader_high_watermark: 0 };
        }
        Partition {
            topic,
            partition,
            dir,
            config,
            settings,
            writer,
            log: None,
            clean_shutdown,
            high_watermark: 0,
            waiters: HashMap::new(),
            latest_waiters: Vec::new(),
            next_waiter: 0,
            closed: false,
            shut_down: false,
            failed: false,
            needs_reopen: false,
            open_failure: None,
            open_retry: OPEN_RETRY_MIN,
            cleaning: false,
            stats,
            replica,
        }
    }

    /// Opens the log; on failure tries again later, waiting twice as long
    /// each time (see the module doc).
    fn open(&mut self, ctx: &mut Context<Self>) {
        if self.closed || self.log.is_some() {
            return;
        }
        match Log::open(&self.dir, self.config.log_config(), self.clean_shutdown) {
            Ok(mut log) => {
                log.set_producer_expiration_ms(self.settings.producer_id_expiration_ms);
                if self.open_failure.take().is_some() {
                    tracing::info!(topic = %self.topic, partition = self.partition, "opened the log after failing to");
                }
                self.high_watermark = self.replica_opened(log.log_end_offset(), log.file_system());
                self.log = Some(log);
                self.open_retry = OPEN_RETRY_MIN;
            }
            Err(err) => {
                let retry_ms = self.open_retry.as_millis() as u64;
                tracing::error!(%err, topic = %self.topic, partition = self.partition, retry_ms, "cannot open log; will try again");
                self.open_failure = Some(err.to_string());
                ctx.run_later(self.open_retry, |act, ctx| act.open(ctx));
                self.open_retry = (self.open_retry * 2).min(OPEN_RETRY_MAX);
            }
        }
        // Reopening after a restart must check the tail again.
        self.clean_shutdown = false;
    }

    fn log(&self) -> Result<&Log, BrokerError> {
        self.log.as_ref().ok_or_else(|| self.unavailable())
    }

    fn log_mut(&mut self) -> Result<&mut Log, BrokerError> {
        if self.log.is_none() {
            return Err(self.unavailable());
        }
        self.log.as_mut().ok_or_else(|| BrokerError::unavailable("the partition"))
    }

    /// Why a partition without an open log refuses a request.
    fn unavailable(&self) -> BrokerError {
        if self.shut_down {
            BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is shutting down")
        } else if self.closed {
            BrokerError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, "the partition was closed")
        } else {
            let reason = self.open_failure.as_deref().unwrap_or("it is being opened");
            BrokerError::new(
                ErrorCode::LEADER_NOT_AVAILABLE,
                format!("the partition's log is not open ({reason}); the broker retries opening it"),
            )
        }
    }

    fn read(&mut self, offset: i64, max_bytes: usize) -> Result<FetchResult, BrokerError> {
        let high_watermark = self.high_watermark;
        let read = self.log_mut()?.read(offset, max_bytes, high_watermark)?;
        self.stats.fetched(&read.bytes);
        Ok(FetchResult {
            records: read.bytes,
            high_watermark: self.high_watermark,
            log_start_offset: read.log_start_offset,
        })
    }

    /// Moves the high watermark and answers every long poll it satisfies.
    /// `offset` is the durable log end; a replica's HW is bounded by its
    /// followers or leader (`replica.rs`).
    fn advance_high_watermark(&mut self, offset: i64) {
        let Some(offset) = self.replica_high_watermark(offset) else { return };
        if offset <= self.high_watermark {
            return;
        }
        self.high_watermark = offset;
        let (ready, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.latest_waiters).into_iter().partition(|(target, _)| *target <= offset);
        self.latest_waiters = waiting;
        for (_, reply) in ready {
            let _ = reply.send(offset);
        }
        let ready: Vec<u64> = self.waiters.iter().filter(|(_, w)| w.offset < offset).map(|(id, _)| *id).collect();
        for id in ready {
            let (offset, max_bytes, min_bytes) = {
                let w = &self.waiters[&id];
                (w.offset, w.max_bytes, w.min_bytes)
            };
            match self.read(offset, max_bytes) {
                Ok(result) if result.records.len() < min_bytes => {}
                result => {
                    if let Some(waiter) = self.waiters.remove(&id) {
                        let _ = waiter.reply.send(result);
                    }
                }
            }
        }
        self.answer_ack_waiters();
    }

    fn answer_waiter(&mut self, id: u64) {
        if let Some(waiter) = self.waiters.remove(&id) {
            let _ = waiter.reply.send(self.read(waiter.offset, waiter.max_bytes));
        }
    }

    fn answer_all_waiters(&mut self) {
        for (_, reply) in self.latest_waiters.drain(..) {
            let _ = reply.send(self.high_watermark);
        }
        let ids: Vec<u64> = self.waiters.keys().copied().collect();
        for id in ids {
            self.answer_waiter(id);
        }
    }

    fn enforce_retention(&mut self) {
        let Some(log) = self.log.as_mut() else { return };
        match log.apply_retention(now_ms()) {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(topic = %self.topic, partition = self.partition, segments = removed.len() / 3, "retention removed segments");
                // Deleting files can block; keep it off the event loop.
                std::thread::spawn(move || {
                    for path in removed {
                        if let Err(err) = std::fs::remove_file(&path) {
                            tracing::warn!(%err, path = %path.display(), "cannot delete old segment file");
                        }
                    }
                });
            }
            Ok(_) => {}
            Err(err) => tracing::error!(%err, topic = %self.topic, partition = self.partition, "retention failed"),
        }
    }

    /// Checks as much of the sealed segments as the scrub's allowance gives.
    fn scrub_step(&mut self) {
        let Some(log) = self.log.as_mut() else { return };
        if log.segment_count() < 2 {
            return;
        }
        let granted = self.settings.scrub.take(SCRUB_STEP_MAX_BYTES);
        if granted == 0 {
            return;
        }
        if let Err(err) = log.scrub(granted) {
            tracing::error!(%err, topic = %self.topic, partition = self.partition, "scrub failed to read the log");
        }
    }
}

impl Actor for Partition {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // See `Topic::started`: appends must enqueue in the order they are sent.
        ctx.set_mailbox_capacity(crate::UNBOUNDED_MAILBOX);
        if self.closed {
            return;
        }
        self.open(ctx);
        self.replica_started(ctx);
        let sync_every = match self.settings.flush {
            FlushPolicy::Always => None,
            FlushPolicy::Interval => Some(Duration::from_millis(self.settings.flush_interval_ms.max(1))),
            FlushPolicy::Never => Some(NEVER_SYNC_EVERY),
        };
        if let Some(every) = sync_every {
            ctx.run_interval(every, |act, ctx| act.sync_in_background(ctx));
        }
        let every = Duration::from_millis(self.settings.retention_check_interval_ms.max(1));
        ctx.run_interval(every, |act, ctx| {
            act.enforce_retention();
            act.offer_cleaning(ctx);
        });
        if self.settings.scrub.is_on() {
            ctx.run_interval(SCRUB_TICK, |act, _| act.scrub_step());
        }
    }
}

impl Supervised for Partition {
    fn restarting(&mut self, _: &mut Context<Self>) {
        if self.closed {
            // Closed on purpose (deleted, or shut down): nothing to reopen.
            return;
        }
        tracing::warn!(topic = %self.topic, partition = self.partition, "partition restarting; reopening its log");
        self.log = None;
        self.latest_waiters.clear();
        self.replica_restarting();
        let waiters = std::mem::take(&mut self.waiters);
        for (_, waiter) in waiters {
            let _ = waiter.reply.send(Err(BrokerError::unavailable("the partition")));
        }
    }
}

/// Append one batch (encoded by [`batch::encode`]; base offset patched here).
#[derive(Message)]
#[rtype(result = "Result<Appended, BrokerError>")]
pub struct Append {
    pub batch: BytesMut,
    /// The sender has checked the whole batch already ([`batch::encode`]
    /// built it, or [`batch::check_produced`] passed it): the log reads its
    /// header only, without a second pass over its records and checksum.
    pub checked: bool,
    /// 0, 1 or -1 (all): with -1 a leader answers once every in-sync
    /// replica has the batch (`replica.rs`); elsewhere as 1.
    pub acks: i8,
    /// How long an acks=-1 append waits for the replicas (`REQUEST_TIMED_OUT`).
    pub timeout_ms: u64,
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub record_count: u32,
}

impl Handler<Append> for Partition {
    type Result = ResponseActFuture<Self, Result<Appended, BrokerError>>;

    fn handle(&mut self, msg: Append, ctx: &mut Context<Self>) -> Self::Result {
        let (acks, timeout_ms) = (msg.acks, msg.timeout_ms);
        if let Err(err) = self.check_append_role(acks) {
            return fail(err);
        }
        let local = self.append_local(msg, ctx);
        self.wake_replica_fetches();
        self.replica_acks(local, acks, timeout_ms)
    }
}

impl Partition {
    /// Appends to the local log; answered once durable per the flush policy.
    fn append_local(
        &mut self,
        msg: Append,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<Appended, BrokerError>> {
        let mut batch = msg.batch;
        if let Err(err) = self.check_fsync_health() {
            return fail(err);
        }
        if batch.len() as u64 > self.config.max_message_bytes {
            return fail(BrokerError::new(
                ErrorCode::MESSAGE_TOO_LARGE,
                format!("batch of {} bytes exceeds max_message_bytes {}", batch.len(), self.config.max_message_bytes),
            ));
        }
        if self.needs_reopen && self.log.is_some() {
            if let Err(err) = self.reopen(ctx) {
                return fail(err);
            }
        }
        if let Err(err) = self.check_keys(&batch) {
            return fail(err);
        }
        let now = now_ms();
        if self.config.message_timestamp_type == TimestampType::LogAppendTime {
            batch::set_log_append_time(&mut batch, now);
        }
        let Some(log) = self.log.as_mut() else { return fail(self.unavailable()) };
        let bytes = batch.len();
        let appending = if msg.checked { log.append_checked(batch, now) } else { log.append(batch, now) };
        let info = match appending {
            Ok(info) => info,
            Err(err @ log::LogError::Io { .. }) => {
                // Refused, and the partition serves on: stopping it would
                // drop its long polls and make it unreadable while it
                // reopens, for an error (a full disk) that retrying cures.
                let writable = log.is_writable();
                tracing::error!(%err, topic = %self.topic, partition = self.partition, writable, "append failed; refused");
                if !writable {
                    let _ = self.reopen(ctx);
                }
                return fail(err.into());
            }
            Err(err) => return fail(err.into()),
        };
        let appended =
            Appended { base_offset: info.base_offset, record_count: (info.last_offset - info.base_offset + 1) as u32 };
        // A duplicate is answered like its first append, once that is durable
        // (below: the fsync writer answers in order); it adds nothing.
        if !info.duplicate {
            self.stats.produced(bytes, appended.record_count);
        }
        let end = info.last_offset + 1;
        match self.settings.flush {
            FlushPolicy::Always => {}
            FlushPolicy::Interval => {
                self.advance_high_watermark(end);
                return Box::pin(fut::ready(Ok(appended)));
            }
            FlushPolicy::Never => {
                // Synced every `NEVER_SYNC_EVERY`, so that they may close.
                self.advance_high_watermark(end);
                return Box::pin(fut::ready(Ok(appended)));
            }
        }
        let synced = self.writer.sync(log.take_unsynced());
        Box::pin(synced.into_actor(self).map(move |result, act, _| match result {
            Ok(()) => {
                act.advance_high_watermark(end);
                Ok(appended)
            }
            Err(err) => {
                act.refuse_writes(&err);
                Err(err)
            }
        }))
    }
}

fn fail<T: 'static>(err: BrokerError) -> ResponseActFuture<Partition, Result<T, BrokerError>> {
    Box::pin(fut::ready(Err(err)))
}

/// Close for good (the topic is being deleted): answer waiters, drop the log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

impl Handler<Close> for Partition {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        self.closed = true;
        self.log = None;
        self.answer_all_waiters();
        // Stopping drops the timers; a supervised restart of a closed partition
        // starts none, so the actor ends once its last address is dropped.
        ctx.stop();
    }
}

/// Stop taking writes and fsync everything (broker shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Shutdown;

impl Handler<Shutdown> for Partition {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.answer_all_waiters();
        self.closed = true;
        self.shut_down = true;
        match self.log.as_mut() {
            Some(log) => {
                let result = log.flush_all();
                self.log = None;
                result.map_err(BrokerError::from)
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod admin_tests;
#[cfg(test)]
mod compressed_tests;
#[cfg(test)]
mod fault_sweep_tests;
#[cfg(test)]
mod power_loss_tests;
#[cfg(test)]
mod producer_tests;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod replica_gap_tests;
#[cfg(test)]
mod replica_start_tests;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod storage_fault_tests;
#[cfg(test)]
mod tests;
