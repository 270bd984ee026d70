//! The partition's read side: [`Fetch`] (with long polls), [`ListOffsets`]
//! and [`Describe`]. Split from the partition's state and writes; the same
//! actor.

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::log::{Damage, Log};
use super::replica::RoleInfo;
use super::{Partition, Waiter};
use crate::error::{BrokerError, ErrorCode};

/// Read from an offset: a long poll when `min_bytes` are not there yet.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<FetchResult, BrokerError>")]
pub struct Fetch {
    pub offset: i64,
    pub max_bytes: usize,
    pub min_bytes: usize,
    pub max_wait_ms: u64,
}

/// Stored batches and the partition's bounds.
#[derive(Debug, Clone, Default)]
pub struct FetchResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl Handler<Fetch> for Partition {
    type Result = ResponseFuture<Result<FetchResult, BrokerError>>;

    fn handle(&mut self, msg: Fetch, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(err) = self.check_serves_clients() {
            return Box::pin(futures::future::ready(Err(err)));
        }
        let now = self.read(msg.offset, msg.max_bytes);
        let ready = match &now {
            Ok(result) => result.records.len() >= msg.min_bytes || msg.max_wait_ms == 0,
            Err(_) => true,
        };
        if ready || self.closed {
            return Box::pin(futures::future::ready(now));
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        let (reply, answer) = oneshot::channel();
        self.waiters.insert(
            id,
            Waiter { offset: msg.offset, max_bytes: msg.max_bytes, min_bytes: msg.min_bytes.max(1), reply },
        );
        ctx.run_later(Duration::from_millis(msg.max_wait_ms), move |act, _| act.answer_waiter(id));
        Box::pin(async move { answer.await.unwrap_or_else(|_| Err(BrokerError::unavailable("the partition"))) })
    }
}

/// Find an offset: earliest (-2), latest (-1, the high watermark) or by timestamp.
#[derive(Message)]
#[rtype(result = "Result<i64, BrokerError>")]
pub struct ListOffsets {
    pub timestamp: i64,
}

impl Handler<ListOffsets> for Partition {
    type Result = ResponseFuture<Result<i64, BrokerError>>;

    fn handle(&mut self, msg: ListOffsets, _: &mut Context<Self>) -> Self::Result {
        if let Err(err) = self.check_serves_clients() {
            return Box::pin(futures::future::ready(Err(err)));
        }
        let high_watermark = self.high_watermark;
        // A leader's HW waits for its followers, not for the disk: it
        // answers with the HW as it is, as Kafka's does.
        let standalone = self.replica.leading().is_none();
        let answer = (|| {
            let log = self.log_mut()?;
            match msg.timestamp {
                -2 => Ok(Some(log.log_start_offset())),
                // Appends before this request may still be on their way to disk:
                // answer once they are visible, so requests keep their order.
                -1 if standalone && log.log_end_offset() > high_watermark => Ok(None),
                -1 => Ok(Some(high_watermark)),
                ts if ts < 0 => {
                    Err(BrokerError::new(ErrorCode::INVALID_TIMESTAMP, format!("timestamp {ts} is not valid")))
                }
                ts => Ok(Some(log.offset_for_timestamp(ts)?.filter(|o| *o < high_watermark).unwrap_or(-1))),
            }
        })();
        match answer {
            Ok(None) => {
                let (reply, wait) = oneshot::channel();
                let target = self.log.as_ref().map_or(0, Log::log_end_offset);
                self.latest_waiters.push((target, reply));
                Box::pin(async move { wait.await.map_err(|_| BrokerError::unavailable("the partition")) })
            }
            Ok(Some(offset)) => Box::pin(futures::future::ready(Ok(offset))),
            Err(err) => Box::pin(futures::future::ready(Err(err))),
        }
    }
}

/// Report the partition's bounds and size.
#[derive(Message)]
#[rtype(result = "Result<PartitionState, BrokerError>")]
pub struct Describe;

/// A partition's bounds and size, as describe reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: u32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub segments: u64,
    /// Damaged ranges found so far (on open, by reads, by the scrub).
    pub damaged: Vec<Damage>,
    /// Its role in the cluster (with the ISR when leader) and its leader
    /// epoch (-1 for a broker alone).
    pub role: RoleInfo,
    pub leader_epoch: i32,
}

impl Handler<Describe> for Partition {
    type Result = Result<PartitionState, BrokerError>;

    fn handle(&mut self, _: Describe, _: &mut Context<Self>) -> Self::Result {
        let (role, leader_epoch) = self.role_info();
        let log = self.log()?;
        Ok(PartitionState {
            partition: self.partition,
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            high_watermark: self.high_watermark,
            size_bytes: log.size_bytes(),
            segments: log.segment_count() as u64,
            damaged: log.damaged(),
            role,
            leader_epoch,
        })
    }
}

/// Read the leader's own log, up to its end rather than the high
/// watermark: for a broker reading back what it wrote itself (the groups'
/// records of `__consumer_offsets` when it becomes their coordinator).
/// Refused by a follower. Reads from the log start when `offset` is below it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<OwnRead, BrokerError>")]
pub struct ReadOwn {
    pub offset: i64,
    pub max_bytes: usize,
}

/// Batches from the leader's own log, and its bounds.
#[derive(Debug, Clone, Default)]
pub struct OwnRead {
    pub records: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

impl Handler<ReadOwn> for Partition {
    type Result = Result<OwnRead, BrokerError>;

    fn handle(&mut self, msg: ReadOwn, _: &mut Context<Self>) -> Self::Result {
        self.check_serves_clients()?;
        let log = self.log_mut()?;
        let end = log.log_end_offset();
        let read = log.read(msg.offset.max(log.log_start_offset()), msg.max_bytes, end)?;
        Ok(OwnRead { records: read.bytes, log_start_offset: read.log_start_offset, log_end_offset: end })
    }
}
