//! Sending a producer's batches to their partitions' leaders, and resending
//! them when a leader moves (docs/protocol.md, "Following leaders" and
//! "Idempotent retries").
//!
//! Each batch becomes an [`Attempt`]: its request built once
//! ([`PreparedProduce`]), its callers' replies, its place in the in-flight
//! window, and its deadline (the delivery timeout after it was created). A
//! partition's batches are numbered in the order they are built, which is
//! their sequence order.
//!
//! Normally a batch goes at once to the leader's connection, pipelined with
//! the partition's other batches. When one is answered with an error that
//! says the leader moved (or the connection is gone, or no leader is known),
//! the partition *recovers*: nothing newer is sent to it; once every batch
//! of it in flight is answered (the failed ones join the queue), the queue
//! is resent one batch at a time, oldest first, each to the leader as
//! `metadata` names it then, with a backoff of 100 ms doubling to 1 s; after
//! the first success the rest go pipelined again, in order. A batch
//! answered `OUT_OF_ORDER_SEQUENCE_NUMBER` while an older batch of its
//! partition is unanswered or queued joins the queue too (it overtook one
//! that will be resent). A batch still unanswered at its deadline fails with
//! the last error; an idempotent producer then takes a new producer id,
//! since the partition may or may not hold that batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herald_wire::error::ErrorCode;
use herald_wire::protocol::ProducePartitionResponse;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::{answer, Reply, Shared};
use crate::{leader_moved, ClientError, PreparedProduce, RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN};

/// One batch on its way (see the module documentation).
pub(super) struct Attempt {
    pub topic: String,
    pub partition: u32,
    pub prepared: PreparedProduce,
    pub replies: Vec<Reply>,
    pub permit: OwnedSemaphorePermit,
    pub deadline: Instant,
    /// Its place in the producer's order of batches.
    pub order: u64,
    /// Why it was last not delivered.
    pub last_error: Option<ClientError>,
}

/// One partition's batches in flight and queued.
#[derive(Default)]
struct Flow {
    in_flight: BTreeSet<u64>,
    /// Set while the partition recovers: batches queue instead of going.
    recovering: bool,
    queue: BTreeMap<u64, Attempt>,
    changed: Arc<Notify>,
}

/// Every partition's flow, by (topic, partition).
#[derive(Clone, Default)]
pub(super) struct Flows(Arc<Mutex<HashMap<(String, u32), Flow>>>);

impl Flows {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, u32), Flow>> {
        // Every update leaves a flow whole.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Shared {
    /// Sends `attempt` to its partition's leader now, or queues it while the
    /// partition recovers (starting the recovery when the leader's
    /// connection is not at hand).
    pub(super) fn launch(&self, mut attempt: Attempt) {
        let key = (attempt.topic.clone(), attempt.partition);
        let mut flows = self.flows.lock();
        let flow = flows.entry(key.clone()).or_default();
        if flow.recovering {
            flow.queue.insert(attempt.order, attempt);
            return;
        }
        let started = match self.cluster.cached_leader(&attempt.topic, attempt.partition) {
            Some(client) => client.start_prepared(&mut attempt.prepared),
            None => Err(ClientError::Closed),
        };
        match started {
            Ok(pending) => {
                flow.in_flight.insert(attempt.order);
                let shared = self.clone();
                tokio::spawn(async move {
                    let result = pending.await;
                    shared.answered(attempt, result);
                });
            }
            Err(err) => {
                attempt.last_error = Some(err);
                flow.queue.insert(attempt.order, attempt);
                flow.recovering = true;
                drop(flows);
                tokio::spawn(self.clone().recover(key));
            }
        }
    }

    /// The broker answered `attempt` (pipelined, not recovering).
    fn answered(&self, mut attempt: Attempt, result: Result<Vec<ProducePartitionResponse>, ClientError>) {
        let key = (attempt.topic.clone(), attempt.partition);
        let mut flows = self.flows.lock();
        let Some(flow) = flows.get_mut(&key) else {
            drop(flows);
            return match result {
                Ok(parts) => deliver(attempt, Ok(parts)),
                Err(err) => self.give_up(attempt, err),
            };
        };
        flow.in_flight.remove(&attempt.order);
        flow.changed.notify_waiters();
        let err = match result {
            Ok(parts) => return deliver(attempt, Ok(parts)),
            Err(err) => err,
        };
        let overtook = err.code() == Some(ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER.code())
            && (flow.in_flight.first().is_some_and(|o| *o < attempt.order)
                || flow.queue.first_key_value().is_some_and(|(o, _)| *o < attempt.order));
        if !(leader_moved(&err) || overtook) || Instant::now() >= attempt.deadline {
            drop(flows);
            return self.give_up(attempt, err);
        }
        if leader_moved(&err) {
            self.cluster.forget(&attempt.topic, attempt.partition);
        }
        tracing::debug!(topic = %attempt.topic, partition = attempt.partition, %err, "resending a batch");
        attempt.last_error = Some(err);
        flow.queue.insert(attempt.order, attempt);
        if !flow.recovering {
            flow.recovering = true;
            drop(flows);
            tokio::spawn(self.clone().recover(key));
        }
    }

    /// Fails `attempt` with `err`. An idempotent producer starts over with
    /// a new id: the partition may hold the batch or not, and either way the
    /// next batch's sequence would not follow what it holds.
    fn give_up(&self, attempt: Attempt, err: ClientError) {
        if let Some(idempotence) = &self.idempotence {
            idempotence.reset();
        }
        deliver(attempt, Err(err));
    }

    /// Recovers partition `key` (see the module documentation).
    async fn recover(self, key: (String, u32)) {
        loop {
            // Until nothing of the partition is in flight.
            loop {
                let changed = {
                    let flows = self.flows.lock();
                    let Some(flow) = flows.get(&key) else { return };
                    if flow.in_flight.is_empty() {
                        break;
                    }
                    flow.changed.clone()
                };
                let notified = changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.flows.lock().get(&key).is_some_and(|f| !f.in_flight.is_empty()) {
                    notified.await;
                }
            }
            let next = self.flows.lock().get_mut(&key).and_then(|f| f.queue.pop_first());
            let Some((_, attempt)) = next else {
                let mut flows = self.flows.lock();
                if let Some(flow) = flows.get_mut(&key) {
                    if flow.queue.is_empty() && flow.in_flight.is_empty() {
                        flow.recovering = false;
                        return;
                    }
                }
                continue;
            };
            if self.resend(attempt).await {
                // Delivered: the leader works; the rest go pipelined.
                let queued = {
                    let mut flows = self.flows.lock();
                    let Some(flow) = flows.get_mut(&key) else { return };
                    flow.recovering = false;
                    std::mem::take(&mut flow.queue)
                };
                for (_, attempt) in queued {
                    self.launch(attempt);
                }
                return;
            }
        }
    }

    /// Sends `attempt` alone until it is answered or its deadline passes;
    /// true when it was delivered.
    async fn resend(&self, mut attempt: Attempt) -> bool {
        let (topic, partition) = (attempt.topic.clone(), attempt.partition);
        let mut backoff = RETRY_BACKOFF_MIN;
        loop {
            let now = Instant::now();
            if now >= attempt.deadline {
                let err = attempt.last_error.take().unwrap_or(ClientError::Closed);
                self.give_up(attempt, err);
                return false;
            }
            let result = match self.cluster.leader(&topic, partition).await {
                Ok(client) => match client.start_prepared(&mut attempt.prepared) {
                    Ok(pending) => pending.await,
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
            match result {
                Ok(parts) => {
                    deliver(attempt, Ok(parts));
                    return true;
                }
                Err(err) if leader_moved(&err) => {
                    tracing::debug!(%topic, partition, %err, "the leader moved; resending");
                    self.cluster.forget(&topic, partition);
                    attempt.last_error = Some(err);
                }
                Err(err) => {
                    self.give_up(attempt, err);
                    return false;
                }
            }
            let wait = backoff.min(attempt.deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        }
    }
}

/// Answers `attempt`'s records and frees its place in the window.
fn deliver(attempt: Attempt, result: Result<Vec<ProducePartitionResponse>, ClientError>) {
    let Attempt { partition, replies, permit, .. } = attempt;
    drop(permit);
    answer(partition, result, replies);
}

/// The deadline of a batch created at `created`.
pub(super) fn deadline(created: Instant, delivery_timeout: Duration) -> Instant {
    created.checked_add(delivery_timeout).unwrap_or_else(|| created + Duration::from_secs(86_400 * 365))
}
