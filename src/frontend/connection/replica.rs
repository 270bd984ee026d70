//! The requests brokers send each other in a cluster: `replica_fetch` (a
//! follower's fetch from its leader, of every partition it follows from
//! that leader in one request), `leader_epoch_end_offset` (where an
//! epoch ended in the leader's log, for a follower's truncation) and
//! `controlled_shutdown` (a stopping broker asks the controller to move its
//! leaderships away).
//!
//! `replica_fetch` is a long poll over all its partitions: each is first
//! read without waiting; when none has data past the follower's offset,
//! each waits for up to `max_wait_ms` and the answer goes as soon as one
//! has data (the others answer empty and are fetched again next time).

use actix::prelude::*;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use herald_actors::error::BrokerError;
use herald_actors::partition as part;

use super::budget::Admission;
use super::Connection;
use crate::cluster::{local_partition, ControlledShutdown, Membership};
use crate::protocol::{
    ControlledShutdownRequest, EpochEnd, EpochEndRequest, EpochEndResponse, ReplicaFetchPartition, ReplicaFetchRequest,
    ReplicaFetchResponse, ReplicaFetched,
};

/// The longest a replica fetch may be held, whatever it asks.
const MAX_WAIT_MS: u64 = 5_000;

impl Connection {
    /// `replica_fetch`.
    pub(super) fn replica_fetch(
        &mut self,
        correlation_id: u32,
        r: ReplicaFetchRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let broker = self.broker.clone();
        let answer = async move {
            let mut targets = Vec::with_capacity(r.partitions.len());
            for p in &r.partitions {
                targets.push(local_partition(&broker, &p.topic, p.partition).await);
            }
            let fetch = |i: usize, wait_ms: u64| {
                let p = r.partitions[i].clone();
                let target = targets[i].clone();
                let message = part::ReplicaFetch {
                    replica_id: r.replica_id,
                    fetch_offset: p.fetch_offset,
                    follower_epoch: p.leader_epoch,
                    max_bytes: r.max_bytes as usize,
                    max_wait_ms: wait_ms,
                };
                async move {
                    let fetched = match target {
                        Ok(addr) => addr.send(message).await.map_err(BrokerError::from).and_then(|r| r),
                        Err(err) => Err(err),
                    };
                    (i, answer_of(&p, fetched))
                }
            };
            let mut answers: Vec<ReplicaFetched> =
                futures::future::join_all((0..r.partitions.len()).map(|i| fetch(i, 0)))
                    .await
                    .into_iter()
                    .map(|(_, a)| a)
                    .collect();
            let ready = |a: &ReplicaFetched| a.error_code != 0 || !a.records.is_empty();
            let wait_ms = r.max_wait_ms.min(MAX_WAIT_MS);
            if wait_ms > 0 && !answers.iter().any(ready) {
                let mut waiting: FuturesUnordered<_> = (0..r.partitions.len()).map(|i| fetch(i, wait_ms)).collect();
                while let Some((i, answer)) = waiting.next().await {
                    let done = ready(&answer);
                    answers[i] = answer;
                    if done {
                        break;
                    }
                }
            }
            Ok(Some(ReplicaFetchResponse { partitions: answers }))
        };
        self.respond(correlation_id, permit, answer, ctx);
    }

    /// `leader_epoch_end_offset`.
    pub(super) fn epoch_end(
        &mut self,
        correlation_id: u32,
        r: EpochEndRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let broker = self.broker.clone();
        let answer = async move {
            let mut answers = Vec::with_capacity(r.partitions.len());
            for p in r.partitions {
                let asked = match local_partition(&broker, &p.topic, p.partition).await {
                    Ok(addr) => addr
                        .send(part::LeaderEpochEndOffset { epoch: p.leader_epoch })
                        .await
                        .map_err(BrokerError::from)
                        .and_then(|r| r),
                    Err(err) => Err(err),
                };
                answers.push(match asked {
                    Ok((leader_epoch, end_offset)) => {
                        EpochEnd { topic: p.topic, partition: p.partition, error_code: 0, leader_epoch, end_offset }
                    }
                    Err(err) => EpochEnd {
                        topic: p.topic,
                        partition: p.partition,
                        error_code: err.code.code(),
                        leader_epoch: -1,
                        end_offset: -1,
                    },
                });
            }
            Ok(Some(EpochEndResponse { partitions: answers }))
        };
        self.respond(correlation_id, permit, answer, ctx);
    }
}

impl Connection {
    /// `controlled_shutdown`: served by the controller
    /// (src/cluster/shutdown.rs); a broker alone has no one to hand over to.
    pub(super) fn controlled_shutdown(
        &mut self,
        correlation_id: u32,
        r: ControlledShutdownRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let node = match &self.membership {
            Membership::Cluster(node) => node.clone(),
            Membership::Single(_) => {
                let error = BrokerError::new(
                    herald_actors::error::ErrorCode::INVALID_REQUEST,
                    "controlled_shutdown: this broker is not in a cluster",
                );
                return self.send_error(correlation_id, &error);
            }
        };
        let answer = async move {
            let answered = node.send(ControlledShutdown { broker_id: r.broker_id }).await;
            answered.map_err(BrokerError::from).and_then(|r| r).map(Some)
        };
        self.respond(correlation_id, permit, answer, ctx);
    }
}

fn answer_of(p: &ReplicaFetchPartition, fetched: Result<part::ReplicaFetched, BrokerError>) -> ReplicaFetched {
    match fetched {
        Ok(f) => ReplicaFetched {
            topic: p.topic.clone(),
            partition: p.partition,
            error_code: 0,
            error_message: None,
            high_watermark: f.high_watermark,
            log_start_offset: f.log_start_offset,
            leader_epoch: f.leader_epoch,
            epochs: f.epochs,
            records: f.records,
        },
        Err(err) => ReplicaFetched {
            topic: p.topic.clone(),
            partition: p.partition,
            error_code: err.code.code(),
            error_message: Some(err.message.clone()),
            high_watermark: -1,
            log_start_offset: -1,
            leader_epoch: -1,
            epochs: Vec::new(),
            records: Bytes::new(),
        },
    }
}
