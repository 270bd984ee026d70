//! A consumer of explicitly assigned partitions, each read from a position.
//!
//! `poll` sends one fetch per assigned partition at once (pipelined on the
//! connection), each a long poll of up to `max_wait_ms`, and returns what
//! arrived, in offset order within each partition. Positions advance past
//! what `poll` returned.
//!
//! Each partition is fetched from its leader ([`Cluster`]; a broker alone
//! leads all). A fetch answered with an error that says the leader moved
//! (docs/protocol.md, "Following leaders") returns nothing for that
//! partition: the leader is looked up again and the next poll fetches from
//! the same position at the new one.
//!
//! The consumer outlives its connections: when no broker can be reached (a
//! restart), `poll` returns no records and connects again, with a back-off
//! that grows to [`RECONNECT_BACKOFF_MAX`], keeping every position; it logs a
//! warning once per outage. A topic assigned whole ([`Consumer::assign_all`])
//! is looked up again every [`TOPIC_REFRESH`]: partitions added since are
//! assigned from their start, so nothing produced to them is missed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use herald_wire::batch::Record;

use crate::{Client, ClientError, Cluster, Fetched, RETRY_BACKOFF_MIN};
use herald_wire::error::ErrorCode;
use herald_wire::protocol::{FetchRequest, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

/// The longest wait between two attempts to connect again.
pub(crate) const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often the partitions of a topic assigned whole are looked up again.
pub(crate) const TOPIC_REFRESH: Duration = Duration::from_secs(2);
/// The first wait before connecting again.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);

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
    cluster: Cluster,
    config: ConsumerConfig,
    /// (topic, partition) → the next offset to read.
    positions: BTreeMap<(String, u32), i64>,
    /// A fetch that met a damaged range while other partitions returned
    /// records: reported by the next poll, so that neither is lost.
    damaged: Option<ClientError>,
    /// Topics assigned whole, whose new partitions are assigned too.
    whole_topics: BTreeSet<String>,
    topics_checked: Instant,
    /// While the broker is unreachable: the wait before the next attempt.
    reconnecting: Option<Duration>,
}

impl Consumer {
    /// A consumer starting from `client`'s connection, with no partition
    /// assigned yet.
    pub fn new(client: Client, config: ConsumerConfig) -> Consumer {
        Consumer::with_cluster(Cluster::of(client), config)
    }

    /// A consumer fetching from the leaders `cluster` finds.
    pub fn with_cluster(cluster: Cluster, config: ConsumerConfig) -> Consumer {
        Consumer {
            cluster,
            config,
            positions: BTreeMap::new(),
            damaged: None,
            whole_topics: BTreeSet::new(),
            topics_checked: Instant::now(),
            reconnecting: None,
        }
    }

    /// Assigns a partition, starting at `start`.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION`, or a connection error.
    pub async fn assign(&mut self, topic: &str, partition: u32, start: StartOffset) -> Result<i64, ClientError> {
        let offset = match start {
            StartOffset::Offset(offset) => offset,
            StartOffset::Earliest => list_offsets(&self.cluster, topic, partition, EARLIEST_TIMESTAMP).await?,
            StartOffset::Latest => list_offsets(&self.cluster, topic, partition, LATEST_TIMESTAMP).await?,
            StartOffset::Timestamp(ts) => match list_offsets(&self.cluster, topic, partition, ts).await? {
                -1 => list_offsets(&self.cluster, topic, partition, LATEST_TIMESTAMP).await?,
                offset => offset,
            },
        };
        self.positions.insert((topic.to_string(), partition), offset);
        Ok(offset)
    }

    /// Assigns every partition of a topic, and the partitions added to it
    /// later (from their start; see the module documentation).
    ///
    /// # Errors
    ///
    /// As [`Consumer::assign`].
    pub async fn assign_all(&mut self, topic: &str, start: StartOffset) -> Result<(), ClientError> {
        let partitions = self.cluster.any().await?.describe_topic(topic).await?.partitions.len() as u32;
        for partition in 0..partitions {
            self.assign(topic, partition, start).await?;
        }
        self.whole_topics.insert(topic.to_string());
        self.topics_checked = Instant::now();
        Ok(())
    }

    /// Assigns, from their start, the partitions added to the topics assigned
    /// whole since they were last looked up.
    async fn assign_new_partitions(&mut self) -> Result<(), ClientError> {
        if self.topics_checked.elapsed() < TOPIC_REFRESH || self.whole_topics.is_empty() {
            return Ok(());
        }
        self.topics_checked = Instant::now();
        for topic in self.whole_topics.clone() {
            let described = match self.cluster.any().await {
                Ok(client) => client.describe_topic(&topic).await,
                Err(err) => Err(err),
            };
            let partitions = match described {
                Ok(described) => described.partitions.len() as u32,
                // Deleted: its fetches report it.
                Err(err) if err.code().is_some() => continue,
                Err(err) => return Err(err),
            };
            for partition in 0..partitions {
                if self.position(&topic, partition).is_none() {
                    tracing::info!(%topic, partition, "a new partition: reading it from its start");
                    self.assign(&topic, partition, StartOffset::Earliest).await?;
                }
            }
        }
        Ok(())
    }

    /// While the broker is unreachable: waits the back-off, then tries to
    /// connect again. True once connected.
    async fn reconnect(&mut self) -> bool {
        let Some(wait) = self.reconnecting else { return true };
        tokio::time::sleep(wait).await;
        match self.cluster.any().await {
            Ok(_) => {
                tracing::info!("connected to the broker again");
                self.reconnecting = None;
                true
            }
            Err(err) => {
                tracing::debug!(%err, "broker not reachable yet");
                self.reconnecting = Some((wait * 2).min(RECONNECT_BACKOFF_MAX));
                false
            }
        }
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
        if !self.reconnect().await {
            return Ok(Vec::new());
        }
        match self.assign_new_partitions().await {
            Err(err) if connection_lost(&err) => {
                self.lost_connection(&err);
                return Ok(Vec::new());
            }
            Err(err) => return Err(err),
            Ok(()) => {}
        }
        let fetched = fetch_positions(&self.cluster, &self.positions, &self.config).await;
        let mut out = Vec::new();
        let mut first_error = None;
        let mut moved = false;
        for (topic, partition, fetched) in fetched {
            match fetched {
                Err(err) if fetch_leader_moved(&err) && !connection_lost(&err) => {
                    tracing::debug!(%topic, partition, %err, "the partition's leader moved; looking it up again");
                    self.cluster.forget(&topic, partition);
                    moved = true;
                }
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
                    if connection_lost(&err) {
                        self.cluster.forget(&topic, partition);
                    }
                    // A damaged range is the one error not to leave unreported.
                    let first_is_damage = first_error.as_ref().is_some_and(|e: &ClientError| e.damaged().is_some());
                    if first_error.is_none() || (err.damaged().is_some() && !first_is_damage) {
                        first_error = Some(err);
                    }
                }
            }
        }
        if moved && out.is_empty() && first_error.is_none() {
            // Not at once again: the new leader may take a moment.
            tokio::time::sleep(RETRY_BACKOFF_MIN).await;
        }
        match first_error {
            Some(err) if connection_lost(&err) => {
                self.lost_connection(&err);
                Ok(out)
            }
            Some(err) if out.is_empty() => Err(err),
            Some(err) if err.damaged().is_some() => {
                self.damaged = Some(err);
                Ok(out)
            }
            _ => Ok(out),
        }
    }
}

/// `list_offsets` of `topic`/`partition` at its leader.
async fn list_offsets(cluster: &Cluster, topic: &str, partition: u32, timestamp: i64) -> Result<i64, ClientError> {
    cluster.leader(topic, partition).await?.list_offsets(topic, partition, timestamp).await
}

/// One long-poll fetch per entry of `positions` (`(topic, partition)` → the
/// next offset), each to its partition's leader, those to one broker
/// pipelined on its connection: each answer with its partition. The fetch of
/// both consumers.
pub(crate) async fn fetch_positions(
    cluster: &Cluster,
    positions: &BTreeMap<(String, u32), i64>,
    config: &ConsumerConfig,
) -> Vec<(String, u32, Result<Fetched, ClientError>)> {
    let fetches = positions.iter().map(|((topic, partition), offset)| {
        let request = FetchRequest {
            topic: topic.clone(),
            partition: i64::from(*partition),
            offset: *offset,
            max_bytes: config.max_bytes,
            min_bytes: config.min_bytes,
            max_wait_ms: config.max_wait_ms,
        };
        async move {
            let fetched = match cluster.leader(&request.topic, *partition).await {
                Ok(client) => client.fetch(&request).await,
                Err(err) => Err(err),
            };
            (request.topic.clone(), *partition, fetched)
        }
    });
    join_all(fetches).await
}

/// Whether a fetch answered `err` should go to the partition's leader as
/// looked up again (docs/protocol.md, "Following leaders"); the connection
/// errors among them are also [`connection_lost`].
pub(crate) fn fetch_leader_moved(err: &ClientError) -> bool {
    connection_lost(err) || crate::leaders::answered_one_of(err, &crate::leaders::LEADER_CODES)
}

/// Whether `err` means the connection is gone or about to go (a broker
/// shutting down answers 1003, then closes), as opposed to a refusal.
fn connection_lost(err: &ClientError) -> bool {
    matches!(err, ClientError::Closed | ClientError::Io(_) | ClientError::TimedOut { .. })
        || err.code() == Some(ErrorCode::BROKER_SHUTTING_DOWN.code())
}

impl Consumer {
    fn lost_connection(&mut self, err: &ClientError) {
        if connection_lost(err) && self.reconnecting.is_none() {
            tracing::warn!(%err, "lost the broker; connecting again (positions kept)");
            self.reconnecting = Some(RECONNECT_BACKOFF_MIN);
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
