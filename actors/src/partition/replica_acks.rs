//! acks=-1 on a leader (the contract is in `replica.rs`): refused before
//! appending while the ISR is too small, else answered once the high
//! watermark covers the batch. Part of the partition actor.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::replica::{not_leader, Role};
use super::{Appended, Partition};
use crate::error::{BrokerError, ErrorCode};

/// An acks=-1 append waiting for the HW to reach `end`.
pub(super) struct AckWaiter {
    end: i64,
    appended: Appended,
    pub(super) reply: oneshot::Sender<Result<Appended, BrokerError>>,
}

impl Partition {
    /// Answers the acks=-1 appends the HW now covers (hook of the HW update).
    pub(super) fn answer_ack_waiters(&mut self) {
        let hw = self.high_watermark;
        let ready: Vec<u64> = self.replica.ack_waiters.iter().filter(|(_, w)| w.end <= hw).map(|(id, _)| *id).collect();
        for id in ready {
            if let Some(waiter) = self.replica.ack_waiters.remove(&id) {
                let _ = waiter.reply.send(self.isr_check_after_append(waiter.appended));
            }
        }
    }

    fn isr_check_after_append(&self, appended: Appended) -> Result<Appended, BrokerError> {
        match self.replica.leading() {
            Some(l) if l.isr.len() < l.min_insync_replicas as usize => Err(BrokerError::new(
                ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                format!(
                    "the batch was appended, but the in-sync replicas ({:?}) are fewer than min_insync_replicas {}",
                    l.isr, l.min_insync_replicas
                ),
            )),
            Some(_) => Ok(appended),
            None => Err(not_leader("it stopped leading before the batch was replicated")),
        }
    }

    /// Refuses an append the role does not take (hook of `Append`).
    pub(super) fn check_append_role(&self, acks: i8) -> Result<(), BrokerError> {
        match &self.replica.role {
            Role::Standalone => Ok(()),
            Role::Follower { leader, .. } => Err(not_leader(&format!("broker {leader} leads it"))),
            Role::Leader(l) if acks == -1 && l.isr.len() < l.min_insync_replicas as usize => Err(BrokerError::new(
                ErrorCode::NOT_ENOUGH_REPLICAS,
                format!(
                    "the in-sync replicas {:?} are fewer than min_insync_replicas {}",
                    l.isr, l.min_insync_replicas
                ),
            )),
            Role::Leader(_) => Ok(()),
        }
    }

    /// Refuses a consumer fetch or ListOffsets on a follower.
    pub(super) fn check_serves_clients(&self) -> Result<(), BrokerError> {
        match &self.replica.role {
            Role::Follower { leader, .. } => Err(not_leader(&format!("broker {leader} leads it"))),
            _ => Ok(()),
        }
    }

    /// Makes an append's answer wait for replication when it asks acks=-1 of
    /// a leader (hook of `Append`, around the local append's future).
    pub(super) fn replica_acks(
        &mut self,
        local: ResponseActFuture<Self, Result<Appended, BrokerError>>,
        acks: i8,
        timeout_ms: u64,
    ) -> ResponseActFuture<Self, Result<Appended, BrokerError>> {
        if acks != -1 || self.replica.leading().is_none() {
            return local;
        }
        let epoch = self.replica.leader_epoch;
        Box::pin(local.then(move |result, act, ctx| act.await_replication(result, epoch, timeout_ms, ctx)))
    }

    fn await_replication(
        &mut self,
        result: Result<Appended, BrokerError>,
        epoch: i32,
        timeout_ms: u64,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<Appended, BrokerError>> {
        let ready = |r| -> ResponseActFuture<Self, Result<Appended, BrokerError>> { Box::pin(fut::ready(r)) };
        let appended = match result {
            Ok(appended) => appended,
            Err(err) => return ready(Err(err)),
        };
        if self.replica.leading().is_none() || self.replica.leader_epoch != epoch {
            return ready(Err(not_leader("it stopped leading before the batch was replicated")));
        }
        let end = appended.base_offset + i64::from(appended.record_count);
        if self.high_watermark >= end {
            return ready(self.isr_check_after_append(appended));
        }
        let id = self.replica.next_waiter;
        self.replica.next_waiter += 1;
        let (reply, answer) = oneshot::channel();
        self.replica.ack_waiters.insert(id, AckWaiter { end, appended, reply });
        ctx.run_later(Duration::from_millis(timeout_ms), move |act, _| {
            if let Some(waiter) = act.replica.ack_waiters.remove(&id) {
                let _ = waiter.reply.send(Err(BrokerError::new(
                    ErrorCode::REQUEST_TIMED_OUT,
                    format!("the in-sync replicas did not all have the batch within {timeout_ms} ms"),
                )));
            }
        });
        Box::pin(fut::wrap_future(async move {
            answer.await.unwrap_or_else(|_| Err(BrokerError::unavailable("the partition")))
        }))
    }
}
