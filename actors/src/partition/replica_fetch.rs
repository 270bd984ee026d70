//! Moving batches between replicas of a partition (the contract is in
//! `replica.rs`): a leader answers [`ReplicaFetch`] and
//! [`LeaderEpochEndOffset`]; a follower takes the answer with
//! [`AppendAsFollower`] and cuts a divergent tail with [`TruncateTo`].
//! The cluster layer carries them over the network; here they are messages
//! to the same partition actor.

use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use super::replica::{not_leader, Role};
use super::{FlushPolicy, Partition};
use crate::batch;
use crate::error::{BrokerError, ErrorCode};
use crate::now_ms;

/// A follower's fetch from the leader: whole stored batches from
/// `fetch_offset` up to the leader's log end (not its HW). `follower_epoch`
/// is the leader epoch the follower knows. A long poll: answered when there
/// is data past `fetch_offset`, or after `max_wait_ms`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<ReplicaFetched, BrokerError>")]
pub struct ReplicaFetch {
    pub replica_id: i32,
    pub fetch_offset: i64,
    pub follower_epoch: i32,
    pub max_bytes: usize,
    pub max_wait_ms: u64,
}

/// The leader's answer to a [`ReplicaFetch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaFetched {
    /// Whole stored batches from the fetch offset, as stored.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub leader_epoch: i32,
    /// The leader epoch cache entries `(epoch, start_offset)` covering the
    /// returned range, for the follower's own cache.
    pub epochs: Vec<(i32, i64)>,
}

/// A replica's fetch waiting for data.
pub(super) struct FetchWaiter {
    fetch_offset: i64,
    max_bytes: usize,
    pub(super) reply: oneshot::Sender<Result<ReplicaFetched, BrokerError>>,
}

impl Partition {
    /// Checks a request that needs the leader at `epoch`.
    fn check_leader_epoch(&self, epoch: i32) -> Result<(), BrokerError> {
        if self.replica.leading().is_none() {
            return Err(not_leader("a replica fetch"));
        }
        let ours = self.replica.leader_epoch;
        match epoch.cmp(&ours) {
            std::cmp::Ordering::Less => Err(BrokerError::new(
                ErrorCode::FENCED_LEADER_EPOCH,
                format!("the follower's leader epoch {epoch} is older than the leader's {ours}"),
            )),
            std::cmp::Ordering::Greater => Err(BrokerError::new(
                ErrorCode::UNKNOWN_LEADER_EPOCH,
                format!("the follower's leader epoch {epoch} is newer than the leader's {ours}"),
            )),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Batches from `offset` up to the log end, with the leader's bounds.
    fn replica_read(&mut self, offset: i64, max_bytes: usize) -> Result<ReplicaFetched, BrokerError> {
        let log = self.log_mut()?;
        let end = log.log_end_offset();
        let read = log.read(offset, max_bytes, end)?;
        let to = match batch_end(&read.bytes) {
            Some(next) => next,
            None => offset,
        };
        let epochs = self.replica.epochs.as_ref().map(|e| e.covering(offset, to)).unwrap_or_default();
        Ok(ReplicaFetched {
            records: read.bytes,
            high_watermark: self.high_watermark,
            log_start_offset: read.log_start_offset,
            leader_epoch: self.replica.leader_epoch,
            epochs,
        })
    }

    /// Answers the waiting replica fetches that now have data (hook of
    /// `Append`, after the local append).
    pub(super) fn wake_replica_fetches(&mut self) {
        let Some(end) = self.log.as_ref().map(super::log::Log::log_end_offset) else { return };
        let ready: Vec<u64> =
            self.replica.fetch_waiters.iter().filter(|(_, w)| w.fetch_offset < end).map(|(id, _)| *id).collect();
        for id in ready {
            self.answer_replica_waiter(id);
        }
    }

    fn answer_replica_waiter(&mut self, id: u64) {
        if let Some(waiter) = self.replica.fetch_waiters.remove(&id) {
            let _ = waiter.reply.send(self.replica_read(waiter.fetch_offset, waiter.max_bytes));
        }
    }
}

/// The offset after the last whole batch in `bytes`.
fn batch_end(bytes: &[u8]) -> Option<i64> {
    let mut position = 0;
    let mut next = None;
    while let Ok(header) = batch::BatchHeader::parse(&bytes[position..]) {
        position += header.total_bytes();
        if position > bytes.len() {
            break;
        }
        next = Some(header.next_offset());
    }
    next
}

impl Handler<ReplicaFetch> for Partition {
    type Result = ResponseFuture<Result<ReplicaFetched, BrokerError>>;

    fn handle(&mut self, msg: ReplicaFetch, ctx: &mut Context<Self>) -> Self::Result {
        let ready = |r| -> Self::Result { Box::pin(futures::future::ready(r)) };
        if let Err(err) = self.check_leader_epoch(msg.follower_epoch) {
            return ready(Err(err));
        }
        let end = match self.log() {
            Ok(log) => log.log_end_offset(),
            Err(err) => return ready(Err(err)),
        };
        let known = self.replica.leading().is_some_and(|l| l.followers.contains_key(&msg.replica_id));
        if !known {
            return ready(Err(BrokerError::new(
                ErrorCode::INVALID_REQUEST,
                format!("broker {} is not a follower of this partition", msg.replica_id),
            )));
        }
        if msg.fetch_offset > end {
            return ready(Err(BrokerError::new(
                ErrorCode::OFFSET_OUT_OF_RANGE,
                format!("fetch offset {} is past the leader's log end {end}: truncate first", msg.fetch_offset),
            )));
        }
        self.follower_fetched(msg.replica_id, msg.fetch_offset, end);
        // Below the log start: no records, and the start, where the
        // follower starts over (`AppendAsFollower`).
        let start = self.log.as_ref().map_or(0, super::log::Log::log_start_offset);
        if msg.fetch_offset < start {
            return ready(Ok(ReplicaFetched {
                records: Bytes::new(),
                high_watermark: self.high_watermark,
                log_start_offset: start,
                leader_epoch: self.replica.leader_epoch,
                epochs: Vec::new(),
            }));
        }
        let now = self.replica_read(msg.fetch_offset, msg.max_bytes);
        let wait = matches!(&now, Ok(fetched) if fetched.records.is_empty()) && msg.max_wait_ms > 0;
        if !wait {
            return ready(now);
        }
        let id = self.replica.next_waiter;
        self.replica.next_waiter += 1;
        let (reply, answer) = oneshot::channel();
        let waiter = FetchWaiter { fetch_offset: msg.fetch_offset, max_bytes: msg.max_bytes, reply };
        self.replica.fetch_waiters.insert(id, waiter);
        ctx.run_later(Duration::from_millis(msg.max_wait_ms), move |act, _| act.answer_replica_waiter(id));
        Box::pin(async move { answer.await.unwrap_or_else(|_| Err(BrokerError::unavailable("the partition"))) })
    }
}

/// Append the leader's batches (a [`ReplicaFetched`]) to a follower's log,
/// byte for byte with their own offsets. They must start exactly at the log
/// end and run on without a gap; each is checked whole (CRC, structure).
/// Answered with the new log end once durable per the flush policy.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<i64, BrokerError>")]
pub struct AppendAsFollower {
    /// The leader epoch the batches were fetched under: refused
    /// (FENCED_LEADER_EPOCH) unless it is still the partition's, so that a
    /// late answer from a former leader is never appended after the
    /// partition moved on to the next one.
    pub leader_epoch: i32,
    pub records: Bytes,
    pub epochs: Vec<(i32, i64)>,
    pub leader_high_watermark: i64,
    /// The leader's log start offset: the follower's follows it, up to the
    /// follower's own high watermark (see `admin.rs`).
    pub leader_log_start_offset: i64,
}

impl Handler<AppendAsFollower> for Partition {
    type Result = ResponseActFuture<Self, Result<i64, BrokerError>>;

    fn handle(&mut self, msg: AppendAsFollower, ctx: &mut Context<Self>) -> Self::Result {
        let ready = |r| -> Self::Result { Box::pin(fut::ready(r)) };
        match self.append_as_follower(&msg, ctx) {
            Ok(Some(files)) => {
                let synced = self.writer.sync(files);
                let (leader_hw, leader_start) = (msg.leader_high_watermark, msg.leader_log_start_offset);
                Box::pin(synced.into_actor(self).map(move |result, act, ctx| match result {
                    Ok(()) => {
                        let end = act.follower_durable(leader_hw);
                        act.follow_leader_start(leader_start, ctx);
                        end
                    }
                    Err(err) => {
                        act.refuse_writes(&err);
                        Err(err)
                    }
                }))
            }
            Ok(None) => {
                let end = self.follower_durable(msg.leader_high_watermark);
                self.follow_leader_start(msg.leader_log_start_offset, ctx);
                ready(end)
            }
            Err(err) => {
                // Batches appended before the one refused are synced all the same.
                if let Some(files) = self.log.as_mut().map(super::log::Log::take_unsynced) {
                    self.sync_files(files, ctx);
                }
                ready(Err(err))
            }
        }
    }
}

impl Partition {
    /// Checks and appends the batches; the files to fsync before answering
    /// under `flush = always`.
    fn append_as_follower(
        &mut self,
        msg: &AppendAsFollower,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Vec<crate::fs::FileRef>>, BrokerError> {
        if !matches!(self.replica.role, Role::Follower { .. }) {
            return Err(not_leader("only a follower appends its leader's batches"));
        }
        if msg.leader_epoch != self.replica.leader_epoch {
            return Err(BrokerError::new(
                ErrorCode::FENCED_LEADER_EPOCH,
                format!(
                    "batches fetched under leader epoch {} while the partition follows epoch {}",
                    msg.leader_epoch, self.replica.leader_epoch
                ),
            ));
        }
        self.check_fsync_health()?;
        if msg.records.is_empty() && msg.leader_log_start_offset > self.log()?.log_end_offset() {
            self.start_over_at(msg.leader_log_start_offset, ctx)?;
            return Ok(None);
        }
        // The leader's cleaner may have removed records (while the topic
        // compacted, even if it no longer does): the next batch then starts
        // past the log end, and the gap is kept, as Kafka's followers do.
        // A batch behind the log end is refused: offsets are never reused.
        let mut expected = self.log()?.log_end_offset();
        let mut batches = Vec::new();
        let mut position = 0;
        while position < msg.records.len() {
            let header = batch::validate(&msg.records[position..]).map_err(|err| {
                BrokerError::new(ErrorCode::CORRUPT_MESSAGE, format!("a leader's batch at offset {expected}: {err}"))
            })?;
            if header.base_offset < expected {
                return Err(BrokerError::new(
                    ErrorCode::OFFSET_OUT_OF_RANGE,
                    format!("the leader's batch starts at {} where the log ends at {expected}", header.base_offset),
                ));
            }
            batches.push(msg.records.slice(position..position + header.total_bytes()));
            position += header.total_bytes();
            expected = header.next_offset();
        }
        if let Some(epochs) = self.replica.epochs.as_mut() {
            for &(epoch, start) in msg.epochs.iter().filter(|&&(_, start)| start <= expected) {
                if epochs.latest_epoch().is_none_or(|latest| epoch > latest) {
                    epochs.assign(epoch, start)?;
                }
            }
        }
        let now = now_ms();
        let flush = self.settings.flush;
        let log = self.log_mut()?;
        for bytes in batches {
            log.append_replicated(BytesMut::from(&bytes[..]), now, true)?;
        }
        Ok(match flush {
            FlushPolicy::Always => Some(log.take_unsynced()),
            FlushPolicy::Interval | FlushPolicy::Never => None,
        })
    }

    /// The follower's log is durable to its end: the HW follows.
    fn follower_durable(&mut self, leader_high_watermark: i64) -> Result<i64, BrokerError> {
        let end = self.log()?.log_end_offset();
        if let Role::Follower { leader_high_watermark: hw, .. } = &mut self.replica.role {
            *hw = (*hw).max(leader_high_watermark);
        }
        self.advance_high_watermark(end);
        Ok(end)
    }
}

impl Partition {
    /// Empties a follower's log, which ends below its leader's log start,
    /// and has it start over at `offset`, the leader's start (see
    /// [`Log::start_over_at`](super::log::Log)); its epochs go too (Kafka's
    /// truncateFullyAndStartAt), and come again with the leader's batches.
    /// Blocking (fsyncs) but rare: once when a follower comes back too late.
    fn start_over_at(&mut self, offset: i64, ctx: &mut Context<Self>) -> Result<(), BrokerError> {
        let log = self.log_mut()?;
        let old_end = log.log_end_offset();
        if let Err(err) = log.start_over_at(offset) {
            tracing::error!(%err, topic = %self.topic, partition = self.partition, offset, "starting over failed; reopening the log");
            self.log = None;
            self.open(ctx);
            return Err(err.into());
        }
        if let Some(epochs) = self.replica.epochs.as_mut() {
            epochs.truncate_from(i64::MIN)?;
        }
        tracing::warn!(
            topic = %self.topic, partition = self.partition, log_end_offset = old_end, log_start_offset = offset,
            "the leader's log starts past this replica's end: emptied, starting over at the leader's start"
        );
        Ok(())
    }
}

/// Kafka's OffsetsForLeaderEpoch, asked of the leader: the largest epoch at
/// or below `epoch` it knows, and where that epoch ended in its log;
/// `(-1, -1)` when unknown.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(i32, i64), BrokerError>")]
pub struct LeaderEpochEndOffset {
    pub epoch: i32,
}

impl Handler<LeaderEpochEndOffset> for Partition {
    type Result = Result<(i32, i64), BrokerError>;

    fn handle(&mut self, msg: LeaderEpochEndOffset, _: &mut Context<Self>) -> Self::Result {
        if self.replica.leading().is_none() {
            return Err(not_leader("leader epoch end offsets"));
        }
        let end = self.log()?.log_end_offset();
        Ok(self.replica.epochs.as_ref().map_or(super::epoch_cache::UNDEFINED, |e| e.end_offset_for(msg.epoch, end)))
    }
}

/// Remove every record at or above `offset` (see `Log::truncate_to`), and
/// the leader epoch cache entries from there; answered with the new log
/// end, durable. Refused on a leader (its log is the reference) and below
/// the log start offset; allowed below the HW (the HW follows it down).
/// Blocking (fsyncs) but rare: once when a replica starts following.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<i64, BrokerError>")]
pub struct TruncateTo {
    pub offset: i64,
}

impl Handler<TruncateTo> for Partition {
    type Result = Result<i64, BrokerError>;

    fn handle(&mut self, msg: TruncateTo, ctx: &mut Context<Self>) -> Self::Result {
        if self.replica.leading().is_some() {
            return Err(BrokerError::new(ErrorCode::INVALID_REQUEST, "a leader does not truncate its log"));
        }
        self.check_fsync_health()?;
        let log = self.log_mut()?;
        let old_end = log.log_end_offset();
        let removed = match log.truncate_to(msg.offset) {
            Ok(removed) => removed,
            Err(err @ super::log::LogError::OffsetOutOfRange { .. }) => return Err(err.into()),
            Err(err) => {
                tracing::error!(%err, topic = %self.topic, partition = self.partition, offset = msg.offset, "truncation failed; reopening the log");
                self.log = None;
                self.open(ctx);
                return Err(err.into());
            }
        };
        let (end, fs) = (log.log_end_offset(), log.file_system());
        std::thread::spawn(move || {
            for path in removed {
                if let Err(err) = fs.remove_file(&path) {
                    tracing::warn!(%err, path = %path.display(), "cannot delete a truncated segment file");
                }
            }
        });
        if let Some(epochs) = self.replica.epochs.as_mut().filter(|_| end < old_end) {
            epochs.truncate_from(end)?;
        }
        self.replica.durable_end = self.replica.durable_end.min(end);
        self.high_watermark = self.high_watermark.min(end);
        if let Role::Follower { leader_high_watermark, .. } = &mut self.replica.role {
            *leader_high_watermark = (*leader_high_watermark).min(end);
        }
        tracing::info!(topic = %self.topic, partition = self.partition, offset = msg.offset, log_end_offset = end, "truncated the log");
        Ok(end)
    }
}
