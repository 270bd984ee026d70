//! Groups' records in a replicated partition of `__consumer_offsets` (a
//! broker in a cluster; docs/cluster.md, "Consumer groups").
//!
//! Each change to a group is a record keyed by what it sets, so that the
//! topic can be compacted: the latest record of each key is the state.
//! - key `{"group": G, "kind": "offset", "topic": T, "partition": P}`: the
//!   committed offset of T/P (value: a [`StoredRecord::Offset`]);
//! - key `{"group": G, "kind": "assignor"}` and `{"group": G, "kind":
//!   "generation"}`: the group's assignor and generation;
//! - a record without a value (a tombstone) removes what its key set: a
//!   deleted topic's offsets, and every key of a deleted or expired group.
//!
//! Values are the same JSON as a broker alone writes to a group's own log.
//! Records are appended with acks -1: a change is answered once every
//! in-sync replica has it, so a new leader has every acknowledged commit.
//! On becoming the partition's leader a broker reads it back whole, to its
//! log end ([`load`]), and coordinates the groups it holds.

use std::collections::BTreeMap;

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::assignor::TopicPartition;
use super::store::{DamagedRecords, GroupState, StoredRecord};
use crate::batch::{self, Record};
use crate::error::{BrokerError, ErrorCode};
use crate::partition::{Append, Partition, ReadOwn};

/// How long an append waits for the in-sync replicas (Kafka's
/// `offsets.commit.timeout.ms`).
pub const APPEND_TIMEOUT_MS: u64 = 5_000;

/// What a record of the partition sets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    pub group: String,
    #[serde(flatten)]
    pub of: KeyOf,
}

/// The part of a group a key names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyOf {
    Offset { topic: String, partition: u32 },
    Assignor,
    Generation,
}

/// One record to append: a key and its value, or a tombstone.
pub type Keyed = (GroupKey, Option<StoredRecord>);

/// The keyed records that carry `records` of `group`, whose state before
/// them is `state`: a deleted topic and a deleted group become tombstones
/// of the keys they remove.
pub fn keyed(group: &str, records: &[StoredRecord], state: &GroupState) -> Vec<Keyed> {
    let key = |of| GroupKey { group: group.to_string(), of };
    let offset_key = |tp: &TopicPartition| key(KeyOf::Offset { topic: tp.topic.clone(), partition: tp.partition });
    let mut running = state.clone();
    let mut out = Vec::new();
    for record in records {
        match record {
            StoredRecord::Offset { topic, partition, .. } => {
                out.push((key(KeyOf::Offset { topic: topic.clone(), partition: *partition }), Some(record.clone())))
            }
            StoredRecord::Assignor { .. } => out.push((key(KeyOf::Assignor), Some(record.clone()))),
            StoredRecord::Generation { .. } => out.push((key(KeyOf::Generation), Some(record.clone()))),
            StoredRecord::TopicDeleted { .. } => {
                let mut after = running.clone();
                after.apply(record);
                let gone = running.offsets.keys().filter(|tp| !after.offsets.contains_key(*tp));
                out.extend(gone.map(|tp| (offset_key(tp), None)));
            }
            StoredRecord::Deleted => {
                out.extend(running.offsets.keys().map(|tp| (offset_key(tp), None)));
                if running.assignor.is_some() {
                    out.push((key(KeyOf::Assignor), None));
                }
                if running.generation > 0 {
                    out.push((key(KeyOf::Generation), None));
                }
            }
        }
        running.apply(record);
    }
    out
}

/// Applies one record read back to `state`; false when its value does not
/// fit its key.
fn apply(state: &mut GroupState, of: &KeyOf, value: Option<StoredRecord>) -> bool {
    match (of, value) {
        (KeyOf::Offset { topic, partition }, None) => {
            state.offsets.remove(&TopicPartition { topic: topic.clone(), partition: *partition });
        }
        (KeyOf::Assignor, None) => state.assignor = None,
        (KeyOf::Generation, None) => state.generation = 0,
        (KeyOf::Offset { topic, partition }, Some(record @ StoredRecord::Offset { .. })) => {
            let StoredRecord::Offset { topic: t, partition: p, .. } = &record else { return false };
            if t != topic || p != partition {
                return false;
            }
            state.apply(&record);
        }
        (KeyOf::Assignor, Some(record @ StoredRecord::Assignor { .. }))
        | (KeyOf::Generation, Some(record @ StoredRecord::Generation { .. })) => state.apply(&record),
        _ => return false,
    }
    true
}

/// What a partition held when it was read back: each group's state, and
/// the ranges that could not be read (they may have held any group's
/// records).
#[derive(Debug, Default)]
pub struct Loaded {
    pub groups: BTreeMap<String, GroupState>,
    pub damaged: Vec<DamagedRecords>,
}

/// Reads the partition back from its log start to its log end.
///
/// # Errors
///
/// The partition does not lead any more, or cannot be read.
pub async fn load(partition: Addr<Partition>) -> Result<Loaded, BrokerError> {
    let mut loaded = Loaded::default();
    let mut offset = 0;
    loop {
        let read = partition.send(ReadOwn { offset, max_bytes: 4 << 20 }).await.map_err(BrokerError::from)?;
        let read = match read {
            Ok(read) => read,
            Err(err) if err.damaged.is_some() => {
                let range = err.damaged.as_deref().map_or((offset, offset + 1), |d| (d.first_offset, d.next_offset));
                let (first_offset, next_offset) = (range.0, range.1.max(offset + 1));
                tracing::error!(first_offset, next_offset, reason = %err.message,
                    "records of __consumer_offsets cannot be read: the group changes in them are lost");
                loaded.damaged.push(DamagedRecords { first_offset, next_offset, reason: err.message });
                offset = next_offset;
                continue;
            }
            Err(err) => return Err(err),
        };
        offset = offset.max(read.log_start_offset);
        if read.records.is_empty() {
            if offset < read.log_end_offset {
                tracing::warn!(
                    offset,
                    log_end_offset = read.log_end_offset,
                    "reading __consumer_offsets back found no batch before its end"
                );
            }
            return Ok(loaded);
        }
        let records = batch::decode_all(&read.records)
            .map_err(|e| BrokerError::new(ErrorCode::CORRUPT_MESSAGE, format!("at offset {offset}: {e}")))?;
        let from = offset;
        for record in records.into_iter().filter(|r| r.offset >= from) {
            offset = record.offset + 1;
            let parsed = record.key.as_deref().map(serde_json::from_slice::<GroupKey>);
            let value = record.value.as_deref().map(serde_json::from_slice::<StoredRecord>).transpose();
            let fits = match (parsed, value) {
                (Some(Ok(key)), Ok(value)) => apply(loaded.groups.entry(key.group).or_default(), &key.of, value),
                _ => false,
            };
            if !fits {
                let reason = "a record of __consumer_offsets does not parse as a group's record".to_string();
                tracing::error!(offset = record.offset, "{reason}; skipped");
                loaded.damaged.push(DamagedRecords { first_offset: record.offset, next_offset: offset, reason });
            }
        }
    }
}

/// Appends `records` to the partition and waits for every in-sync replica.
/// Errors are as Kafka's coordinator answers them: the partition moved
/// (`NOT_COORDINATOR`), or it could not take the change now
/// (`COORDINATOR_NOT_AVAILABLE`; the change may still be stored).
pub async fn append(partition: Addr<Partition>, records: Vec<Keyed>, now_ms: i64) -> Result<(), BrokerError> {
    if records.is_empty() {
        return Ok(());
    }
    let encoded: Vec<Record> = records
        .iter()
        .map(|(key, value)| Record {
            key: Some(Bytes::from(serde_json::to_vec(key).unwrap_or_default())),
            value: value.as_ref().map(|v| Bytes::from(serde_json::to_vec(v).unwrap_or_default())),
            headers: Vec::new(),
            timestamp: now_ms,
            offset: 0,
        })
        .collect();
    let batch =
        batch::encode(&encoded).map_err(|e| BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, e.to_string()))?;
    let appended = partition.send(Append { batch, checked: true, acks: -1, timeout_ms: APPEND_TIMEOUT_MS }).await;
    match appended {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(coordinator_error(err)),
        Err(_) => Err(BrokerError::new(ErrorCode::NOT_COORDINATOR, "the group's partition is gone from this broker")),
    }
}

/// Kafka's mapping of a failed append of a group's records.
fn coordinator_error(err: BrokerError) -> BrokerError {
    let code = match err.code {
        ErrorCode::NOT_LEADER_OR_FOLLOWER | ErrorCode::FENCED_LEADER_EPOCH | ErrorCode::KAFKA_STORAGE_ERROR => {
            ErrorCode::NOT_COORDINATOR
        }
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        | ErrorCode::LEADER_NOT_AVAILABLE
        | ErrorCode::NOT_ENOUGH_REPLICAS
        | ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | ErrorCode::REQUEST_TIMED_OUT => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        code => code,
    };
    BrokerError::new(code, format!("the group's records could not be replicated: {}", err.message))
}

#[cfg(test)]
#[path = "replicated_tests.rs"]
mod tests;
