//! A topic's route: what a connection needs to reach the topic's partitions
//! without passing through the [`Topic`](crate::topic::Topic) actor.
//!
//! The topic actor owns it and changes it (partitions added, the topic
//! closed); connections hold it from their first request to the topic on and
//! send produce and fetch requests straight to the partition's actor. Every
//! request then crosses one thread less, and no topic's thread is on the data
//! path. The keyless round robin lives here, shared by every connection, so
//! that it spreads keyless requests as one topic-wide counter did before.
//!
//! Order: a request reaches its partition's mailbox when the connection sends
//! it, in the connection's order; offsets are assigned in mailbox order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use bytes::BytesMut;

use crate::batch::{self, Record};
use crate::error::{BrokerError, ErrorCode};
use crate::partition::Partition;
use crate::partitioner::partition_for_key;

/// Why a topic was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The topic is being deleted.
    Deleted,
    /// The broker is stopping.
    ShutDown,
}

/// What the route's owner changes under its lock.
struct State {
    partitions: Arc<[Addr<Partition>]>,
    closed: Option<Closed>,
}

/// See the module documentation.
pub struct Route {
    name: Arc<str>,
    state: RwLock<State>,
    /// The partition the next keyless request goes to.
    next_keyless: AtomicU32,
    /// The topic's `max_message_bytes`: records whose bytes alone pass it
    /// are refused without encoding their batch (the partition would refuse
    /// the batch, which is larger still).
    max_message_bytes: AtomicU64,
}

/// One partition's share of a produce request: its address, its record
/// count, and its batch or the reason it could not be encoded.
pub struct Routed {
    pub partition: u32,
    pub addr: Addr<Partition>,
    pub record_count: u32,
    pub batch: Result<BytesMut, BrokerError>,
}

impl Route {
    pub(crate) fn new(name: Arc<str>, max_message_bytes: u64) -> Route {
        Route {
            name,
            state: RwLock::new(State { partitions: Arc::from(Vec::new()), closed: None }),
            next_keyless: AtomicU32::new(0),
            max_message_bytes: AtomicU64::new(max_message_bytes),
        }
    }

    pub(crate) fn set_max_message_bytes(&self, max: u64) {
        self.max_message_bytes.store(max, Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Never poisoned in practice: nothing that holds the lock can panic.
    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_partitions(&self, partitions: Vec<Addr<Partition>>) {
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.partitions = partitions.into();
    }

    pub(crate) fn close(&self, why: Closed) {
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.closed = Some(why);
    }

    /// Whether the topic takes no more requests (a connection then looks the
    /// topic up again: a deleted one may have been created anew).
    pub fn is_closed(&self) -> bool {
        self.state().closed.is_some()
    }

    /// The error for a request to a topic that takes no more: a deleted topic
    /// does not exist (3); after the broker's shutdown flush, the request is
    /// refused as the shutdown (1003, retriable), not as a missing topic.
    fn refuse_if_closed(&self, closed: Option<Closed>) -> Result<(), BrokerError> {
        match closed {
            None => Ok(()),
            Some(Closed::Deleted) => Err(BrokerError::new(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic `{}` does not exist", self.name),
            )),
            Some(Closed::ShutDown) => {
                Err(BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is shutting down"))
            }
        }
    }

    /// # Errors
    ///
    /// The topic is closed (see [`Route::is_closed`]).
    pub fn check_open(&self) -> Result<(), BrokerError> {
        self.refuse_if_closed(self.state().closed)
    }

    /// The partition's actor.
    ///
    /// # Errors
    ///
    /// The topic is closed, or has no such partition.
    pub fn partition(&self, partition: u32) -> Result<Addr<Partition>, BrokerError> {
        let state = self.state();
        self.refuse_if_closed(state.closed)?;
        state.partitions.get(partition as usize).cloned().ok_or_else(|| {
            BrokerError::new(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic `{}` has no partition {partition} (it has {})", self.name, state.partitions.len()),
            )
        })
    }

    /// The partition a batch goes to: `partition`, or without one the next in
    /// the topic's keyless round robin.
    ///
    /// # Errors
    ///
    /// As [`Route::partition`].
    pub fn batch_partition(&self, partition: Option<u32>) -> Result<(u32, Addr<Partition>), BrokerError> {
        let partition = match partition {
            Some(partition) => partition,
            None => {
                let count = self.state().partitions.len() as u32;
                self.next_keyless.fetch_add(1, Ordering::Relaxed) % count.max(1)
            }
        };
        Ok((partition, self.partition(partition)?))
    }

    /// Groups records by partition (`partition`, or each record's key with
    /// Kafka's partitioner, or the keyless round robin), in request order
    /// within each, and encodes one batch per partition.
    ///
    /// # Errors
    ///
    /// No records, the topic is closed, or `partition` does not exist.
    pub fn route(&self, partition: Option<u32>, records: Vec<Record>) -> Result<Vec<Routed>, BrokerError> {
        if records.is_empty() {
            return Err(BrokerError::new(ErrorCode::INVALID_REQUEST, "a produce request needs at least one record"));
        }
        let partitions = {
            let state = self.state();
            self.refuse_if_closed(state.closed)?;
            state.partitions.clone()
        };
        if let Some(p) = partition {
            self.partition(p)?;
        }
        let count = partitions.len() as u32;
        let mut keyless = None;
        let mut groups: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for record in records {
            let p = match (partition, &record.key) {
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, count),
                (None, None) => {
                    *keyless.get_or_insert_with(|| self.next_keyless.fetch_add(1, Ordering::Relaxed) % count.max(1))
                }
            };
            groups.entry(p).or_default().push(record);
        }
        let max = self.max_message_bytes.load(Ordering::Relaxed);
        Ok(groups
            .into_iter()
            .map(|(p, records)| {
                let payload: u64 = records.iter().map(payload_bytes).sum();
                let batch = if payload > max {
                    Err(BrokerError::new(
                        ErrorCode::MESSAGE_TOO_LARGE,
                        format!(
                            "records of {payload} bytes (before their batch's framing) exceed max_message_bytes {max}"
                        ),
                    ))
                } else {
                    batch::encode(&records).map_err(|err| BrokerError::new(ErrorCode::INVALID_REQUEST, err.to_string()))
                };
                Routed { partition: p, addr: partitions[p as usize].clone(), record_count: records.len() as u32, batch }
            })
            .collect())
    }
}

/// The bytes of a record's key, value and headers: a lower bound on what
/// it takes in a batch.
fn payload_bytes(record: &Record) -> u64 {
    let headers: usize = record.headers.iter().map(|(key, value)| key.len() + value.len()).sum();
    (record.key.as_ref().map_or(0, |k| k.len()) + record.value.as_ref().map_or(0, |v| v.len()) + headers) as u64
}
