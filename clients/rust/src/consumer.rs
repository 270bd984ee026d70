//! A consumer of explicitly assigned partitions, each read from a position.
//!
//! `poll` sends one fetch per assigned partition at once (pipelined on the
//! connection), each a long poll of up to `max_wait_ms`, and returns what
//! arrived, in offset order within each partition. Positions advance past
//! what `poll` returned.

use std::collections::BTreeMap;

use futures::future::join_all;
use herald_wire::batch::Record;

use crate::{Client, ClientError};
use herald_wire::protocol::{FetchRequest, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

/// How the consumer fetches.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Bytes per partition per fetch, at most (a soft limit).
    pub max_bytes: u64,
    /// How long a fetch waits for data.
    pub max_wait_ms: u64,
    /// How much data a fetch waits for.
    pub min_bytes: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig { max_bytes: 1 << 20, max_wait_ms: 500, min_bytes: 1 }
    }
}

/// Where a newly assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The first offset still stored (the log start).
    Earliest,
    /// Only records produced from now on (the high watermark).
    Latest,
    /// This offset.
    Offset(i64),
    /// The first record at or after this time (ms); the log end if none.
    Timestamp(i64),
}

/// A record with the partition it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The topic it was read from.
    pub topic: String,
    /// The partition it was read from.
    pub partition: u32,
    /// The record, with its offset and timestamp.
    pub record: Record,
}

/// A consumer of assigned partitions.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    /// (topic, partition) → the next offset to read.
    positions: BTreeMap<(String, u32), i64>,
    /// A fetch that met a damaged range while other partitions returned
    /// records: reported by the next poll, so that neither is lost.
    damaged: Option<ClientError>,
}

impl Consumer {
    /// A consumer on `client`'s connection, with no partition assigned yet.
    pub fn new(client: Client, config: ConsumerConfig) -> Consumer {
        Consumer { client, config, positions: BTreeMap::new(), damaged: None }
    }

    /// Assigns a partition, starting at `start`.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION`, or a connection error.
    pub async fn assign(&mut self, topic: &str, partition: u32, start: StartOffset) -> Result<i64, ClientError> {
        let offset = match start {
            StartOffset::Offset(offset) => offset,
            StartOffset::Earliest => self.client.list_offsets(topic, partition, EARLIEST_TIMESTAMP).await?,
            StartOffset::Latest => self.client.list_offsets(topic, partition, LATEST_TIMESTAMP).await?,
            StartOffset::Timestamp(ts) => match self.client.list_offsets(topic, partition, ts).await? {
                -1 => self.client.list_offsets(topic, partition, LATEST_TIMESTAMP).await?,
                offset => offset,
            },
        };
        self.positions.insert((topic.to_string(), partition), offset);
        Ok(offset)
    }

    /// Assigns every partition of a topic.
    ///
    /// # Errors
    ///
    /// As [`Consumer::assign`].
    pub async fn assign_all(&mut self, topic: &str, start: StartOffset) -> Result<(), ClientError> {
        let partitions = self.client.describe_topic(topic).await?.partitions.len() as u32;
        for partition in 0..partitions {
            self.assign(topic, partition, start).await?;
        }
        Ok(())
    }

    /// The next offset to read of an assigned partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.positions.get(&(topic.to_string(), partition)).copied()
    }

    /// Moves the next offset to read of an assigned partition (for example
    /// past a damaged range, to its `next_offset`). Returns false if the
    /// partition is not assigned.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: i64) -> bool {
        seek_in(&mut self.positions, topic, partition, offset)
    }

    /// Fetches from every assigned partition at once and returns the records,
    /// waiting up to `max_wait_ms` when none are available.
    ///
    /// # Errors
    ///
    /// The first fetch error (e.g. `OFFSET_OUT_OF_RANGE`) when no partition
    /// returned records; positions of the partitions that succeeded still
    /// advance. A fetch at an offset in a damaged range of the broker's log is
    /// `CORRUPT_MESSAGE` with [`ClientError::damaged`] naming it (by the next
    /// poll if others returned records): the position stays there until the
    /// application [seeks](Consumer::seek) past it.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        if let Some(err) = self.damaged.take() {
            return Err(err);
        }
        let fetches = self.positions.iter().map(|((topic, partition), offset)| {
            let request = FetchRequest {
                topic: topic.clone(),
                partition: i64::from(*partition),
                offset: *offset,
                max_bytes: self.config.max_bytes,
                min_bytes: self.config.min_bytes,
                max_wait_ms: self.config.max_wait_ms,
            };
            let client = self.client.clone();
            async move { (request.topic.clone(), *partition, client.fetch(&request).await) }
        });
        let mut out = Vec::new();
        let mut first_error = None;
        for (topic, partition, fetched) in join_all(fetches).await {
            match fetched {
                Ok(fetched) => {
                    if let Some(last) = fetched.records.last() {
                        self.positions.insert((topic.clone(), partition), last.offset + 1);
                    }
                    out.extend(fetched.records.into_iter().map(|record| ConsumedRecord {
                        topic: topic.clone(),
                        partition,
                        record,
                    }));
                }
                Err(err) => {
                    // A damaged range is the one error not to leave unreported.
                    let first_is_damage = first_error.as_ref().is_some_and(|e: &ClientError| e.damaged().is_some());
                    if first_error.is_none() || (err.damaged().is_some() && !first_is_damage) {
                        first_error = Some(err);
                    }
                }
            }
        }
        match first_error {
            Some(err) if out.is_empty() => Err(err),
            Some(err) if err.damaged().is_some() => {
                self.damaged = Some(err);
                Ok(out)
            }
            _ => Ok(out),
        }
    }
}

/// Sets the next offset of `(topic, partition)` if it has one; false if not.
/// The seek of both consumers.
pub(crate) fn seek_in(positions: &mut BTreeMap<(String, u32), i64>, topic: &str, partition: u32, offset: i64) -> bool {
    match positions.get_mut(&(topic.to_string(), partition)) {
        Some(position) => {
            *position = offset;
            true
        }
        None => false,
    }
}
