//! Where a producer's records go: each topic's partition count and where its
//! keyless records go next, shared by the callers of `send` (which route
//! records themselves when they send them at once) and the batching task.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{Arc, Mutex, MutexGuard};

use herald_wire::error::ErrorCode;
use herald_wire::partitioner::partition_for_key;
use herald_wire::protocol::WireRecord;

use super::Partitioner;
use crate::ClientError;

/// What the producer knows of one topic.
pub(super) struct Route {
    pub(super) partitions: u32,
    /// The partition keyless records go to now, and the bytes it has taken
    /// of them (sticky) or the next one in turn (round robin).
    keyless: (u32, usize),
}

impl Route {
    pub(super) fn new(partitions: u32) -> Route {
        Route { partitions, keyless: (first_partition(partitions), 0) }
    }

    /// The batch of `partition` was sent: with the sticky partitioner,
    /// keyless records move on from it.
    pub(super) fn sent(&mut self, partition: u32, partitioner: Partitioner) {
        if partitioner == Partitioner::Sticky && self.keyless.0 == partition {
            self.keyless = ((partition + 1) % self.partitions.max(1), 0);
        }
    }

    /// The partition `record` goes to, `size` its counted bytes.
    pub(super) fn partition_for(
        &mut self,
        topic: &str,
        partition: Option<u32>,
        record: &WireRecord,
        size: usize,
        partitioner: Partitioner,
        switch_bytes: usize,
    ) -> Result<u32, ClientError> {
        let count = self.partitions;
        if let Some(partition) = partition {
            if partition >= count {
                return Err(ClientError::broker(
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
                    Some(format!(
                        "not sent: topic `{topic}` has {count} partitions, there is no partition {partition}"
                    )),
                ));
            }
            return Ok(partition);
        }
        if let Some(key) = &record.key {
            return Ok(partition_for_key(key, count));
        }
        let count = count.max(1);
        let (current, taken) = &mut self.keyless;
        let chosen = *current % count;
        match partitioner {
            Partitioner::RoundRobin => *current = (chosen + 1) % count,
            Partitioner::Sticky => {
                *taken += size;
                if *taken >= switch_bytes {
                    *current = (chosen + 1) % count;
                    *taken = 0;
                }
            }
        }
        Ok(chosen)
    }
}

/// The routes of every topic the producer has sent to, by name.
#[derive(Clone, Default)]
pub(super) struct Routes(Arc<Mutex<HashMap<String, Route>>>);

impl Routes {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Route>> {
        // Every update leaves a route whole: a panic elsewhere while the
        // lock was held leaves nothing half done.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Hashes a partition number as itself, spread by one multiplication: the
/// keys are the producer's own, and SipHash cost more than the rest of a
/// record's lookup.
#[derive(Default)]
pub(super) struct PartitionHasher(u64);

impl Hasher for PartitionHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Where a producer's keyless records start: spread by the clock, so that
/// producers started together do not all begin on partition 0.
fn first_partition(count: u32) -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos % count.max(1)
}
