//! The `Topic` actor: one per topic, owner of its partitions' addresses and
//! metadata.
//!
//! Contract:
//! - Started by the [`Broker`](crate::broker::Broker) on the arbiter picked by a
//!   stable hash of the topic's name. It starts each partition under a
//!   `Supervisor` on the arbiter picked by a stable hash of (topic, partition).
//! - Owns the topic's [`Route`]: connections take it with [`GetRoute`] and
//!   send produce and fetch requests straight to the partitions, so the topic
//!   is not on the data path; it changes the route as partitions are added and
//!   when it closes.
//! - Takes [`Produce`] and [`ProduceBatch`] (as a connection sends them
//!   through the route), [`ForPartition`] (forwarding a partition message),
//!   [`DescribeTopic`], [`AddPartitions`], [`AlterConfig`], [`PartitionCount`], [`GetRoute`],
//!   [`CloseTopic`] and [`ShutdownTopic`].
//! - Its metadata (`topic.json`: name, id, partition count, settings) is written
//!   atomically and fsynced before a change is acknowledged; nothing is lost if
//!   the actor stops, since it holds no data of its own.
//! - [`AddPartitions`] holds the topic's mailbox until it is done, so adds and
//!   a delete's [`CloseTopic`] apply one after another, never interleaved.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::batch::Record;
use crate::error::{BrokerError, ErrorCode};
use crate::partition::{self, Appended, Partition, PartitionSettings, PartitionState};
use crate::topic_config::{ConfigValue, TopicConfig};
use crate::topic_route::{Closed, Route, Routed};
use crate::writer::SyncWriter;

/// A topic's stored metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    /// The topic's id (see [`new_topic_id`]): a re-created topic of the same
    /// name has another. Absent only in metadata written before topics had
    /// ids; the broker gives such a topic one at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    pub partitions: u32,
    pub config: TopicConfig,
}

/// The metadata file in a topic's directory.
pub const META_FILE: &str = "topic.json";

/// A new topic id: 128 random bits from the system's generator, as 32
/// lowercase hex digits (Kafka's topic ids are random 128-bit UUIDs too).
/// Committed offsets belong to a topic id, so that a topic deleted and
/// created again under the same name does not inherit them. Blocking (a
/// read of `/dev/urandom`).
///
/// # Errors
///
/// The system's random source cannot be read.
pub fn new_topic_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl TopicMeta {
    /// Writes the metadata atomically: a temporary file, fsync, rename, fsync of
    /// the directory. Blocking: call it off the event loop.
    ///
    /// # Errors
    ///
    /// Any I/O error; the previous metadata is then left in place.
    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        {
            let mut file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, &json)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(META_FILE))?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// Reads the metadata stored in `dir`.
    ///
    /// # Errors
    ///
    /// Any I/O error, or a file that does not parse.
    pub fn load(dir: &Path) -> std::io::Result<TopicMeta> {
        let bytes = std::fs::read(dir.join(META_FILE))?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// Where and how partitions run: shared by every topic of a broker.
#[derive(Clone)]
pub struct Placement {
    /// One arbiter per core.
    pub arbiters: Vec<ArbiterHandle>,
    pub settings: PartitionSettings,
    pub writer: SyncWriter,
    /// Whether the broker's last shutdown was clean (indexes may be trusted).
    pub clean_shutdown: bool,
}

impl Placement {
    /// The arbiter for a key, by a hash that is stable across runs (FNV-1a).
    pub fn arbiter_for(&self, key: &str) -> ArbiterHandle {
        let hash =
            key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
        self.arbiters[(hash % self.arbiters.len() as u64) as usize].clone()
    }
}

/// One topic's actor. See the module documentation for its contract.
pub struct Topic {
    name: Arc<str>,
    topic_id: Option<String>,
    dir: PathBuf,
    config: TopicConfig,
    partitions: Vec<Addr<Partition>>,
    placement: Placement,
    /// The partitions' addresses for connections, and the keyless round
    /// robin; changed only here.
    route: Arc<Route>,
}

impl Topic {
    /// A topic whose metadata is already stored in `dir`.
    pub fn new(meta: TopicMeta, dir: PathBuf, placement: Placement) -> Self {
        let name: Arc<str> = meta.name.into();
        let mut topic = Topic {
            route: Arc::new(Route::new(name.clone(), meta.config.max_message_bytes)),
            name,
            topic_id: meta.topic_id,
            dir,
            config: meta.config,
            partitions: Vec::with_capacity(meta.partitions as usize),
            placement,
        };
        topic.start_partitions(meta.partitions);
        topic
    }

    fn start_partitions(&mut self, count: u32) {
        for id in self.partitions.len() as u32..count {
            let arbiter = self.placement.arbiter_for(&format!("{}/{id}", self.name));
            let (topic, dir, config) = (self.name.clone(), self.dir.join(id.to_string()), self.config.clone());
            let (settings, writer) = (self.placement.settings.clone(), self.placement.writer.clone());
            let clean = self.placement.clean_shutdown;
            let addr = Supervisor::start_in_arbiter(&arbiter, move |_| {
                Partition::new(topic, id, dir, config, settings, writer, clean)
            });
            self.partitions.push(addr);
        }
        self.route.set_partitions(self.partitions.clone());
    }

    fn meta(&self) -> TopicMeta {
        TopicMeta {
            name: self.name.to_string(),
            topic_id: self.topic_id.clone(),
            partitions: self.partitions.len() as u32,
            config: self.config.clone(),
        }
    }

    fn partition(&self, partition: u32) -> Result<&Addr<Partition>, BrokerError> {
        self.refuse_if_closed()?;
        self.partitions.get(partition as usize).ok_or_else(|| {
            BrokerError::new(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic `{}` has no partition {partition} (it has {})", self.name, self.partitions.len()),
            )
        })
    }

    /// The error for a request to a topic that takes no more (see
    /// [`Route::check_open`]).
    fn refuse_if_closed(&self) -> Result<(), BrokerError> {
        self.route.check_open()
    }
}

impl Actor for Topic {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // `Addr::send` enqueues at once unless the mailbox is full, in which case
        // the message waits in the returned future and may overtake, or be
        // overtaken by, later ones. Produce order depends on enqueueing at once;
        // back-pressure comes from each connection's in-flight budget instead.
        ctx.set_mailbox_capacity(crate::UNBOUNDED_MAILBOX);
    }
}

/// Append records, to one partition or routed by key.
#[derive(Message)]
#[rtype(result = "Result<Vec<PartitionAppend>, BrokerError>")]
pub struct Produce {
    pub partition: Option<u32>,
    pub records: Vec<Record>,
}

/// The outcome of a produce on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAppend {
    pub partition: u32,
    pub record_count: u32,
    pub result: Result<Appended, BrokerError>,
}

/// Sends a batch to its partition (see [`ProduceBatch`]), here and now; the
/// future gives the outcome.
///
/// # Errors
///
/// As [`Route::batch_partition`].
pub fn send_batch(
    route: &Route,
    msg: ProduceBatch,
    acks: Acks,
) -> Result<impl std::future::Future<Output = PartitionAppend>, BrokerError> {
    let ProduceBatch { partition, record_count, batch } = msg;
    let (partition, addr) = route.batch_partition(partition)?;
    let request = addr.send(partition::Append { batch, checked: true, acks: acks.acks, timeout_ms: acks.timeout_ms });
    Ok(async move {
        let result = request.await.unwrap_or_else(|e| Err(e.into()));
        PartitionAppend { partition, record_count, result }
    })
}

impl Handler<Produce> for Topic {
    type Result = ResponseFuture<Result<Vec<PartitionAppend>, BrokerError>>;

    fn handle(&mut self, msg: Produce, _: &mut Context<Self>) -> Self::Result {
        let sent = self.route.route(msg.partition, msg.records).map(|routed| send_routed(routed, Acks::LEADER));
        Box::pin(async move { Ok(sent?.await) })
    }
}

/// What a produce waits for: `acks` (0, 1 or -1: every in-sync replica),
/// and for -1 at most `timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acks {
    pub acks: i8,
    pub timeout_ms: u64,
}

impl Acks {
    /// The leader's own append.
    pub const LEADER: Acks = Acks { acks: 1, timeout_ms: 0 };

    /// Every in-sync replica's append (in a cluster; alone, the broker's
    /// own), for at most Kafka's default request timeout.
    pub const ALL: Acks = Acks { acks: -1, timeout_ms: 30_000 };

    /// `acks` from the wire (checked to be 0, 1 or -1 before), with Kafka's
    /// default request timeout for -1.
    pub fn from_wire(acks: i64) -> Acks {
        Acks { acks: acks.clamp(-1, 1) as i8, timeout_ms: Acks::ALL.timeout_ms }
    }
}

/// Sends each partition its batch, here and in order (offsets are assigned
/// in mailbox order); the future gathers the outcomes.
pub fn send_routed(routed: Vec<Routed>, acks: Acks) -> impl std::future::Future<Output = Vec<PartitionAppend>> {
    let appends: Vec<_> = routed
        .into_iter()
        .map(|Routed { partition, addr, record_count, batch }| {
            let request = batch.map(|batch| {
                addr.send(partition::Append { batch, checked: true, acks: acks.acks, timeout_ms: acks.timeout_ms })
            });
            async move {
                let result = match request {
                    Ok(request) => request.await.unwrap_or_else(|e| Err(e.into())),
                    Err(err) => Err(err),
                };
                PartitionAppend { partition, record_count, result }
            }
        })
        .collect();
    join_all(appends)
}

/// Append one batch, encoded by the caller (the frontend encodes a large
/// request's batch off the arbiters, where it holds no actor up) or sent by
/// the producer as it is (`produce` with `batch`, checked by the frontend),
/// to one partition, or, without one, to the partition a keyless request's
/// records would go to (the topic's round robin). Answered as [`Produce`] is.
#[derive(Message)]
#[rtype(result = "Result<Vec<PartitionAppend>, BrokerError>")]
pub struct ProduceBatch {
    pub partition: Option<u32>,
    pub record_count: u32,
    /// As [`batch::encode`] builds it.
    pub batch: bytes::BytesMut,
}

impl Handler<ProduceBatch> for Topic {
    type Result = ResponseFuture<Result<Vec<PartitionAppend>, BrokerError>>;

    fn handle(&mut self, msg: ProduceBatch, _: &mut Context<Self>) -> Self::Result {
        let sent = send_batch(&self.route, msg, Acks::LEADER);
        Box::pin(async move { Ok(vec![sent?.await]) })
    }
}

/// Forward a message to one of the topic's partitions.
pub struct ForPartition<M> {
    pub partition: u32,
    pub message: M,
}

impl<M, T> Message for ForPartition<M>
where
    M: Message<Result = Result<T, BrokerError>>,
    T: 'static,
{
    type Result = Result<T, BrokerError>;
}

impl<M, T> Handler<ForPartition<M>> for Topic
where
    M: Message<Result = Result<T, BrokerError>> + Send + 'static,
    T: Send + 'static,
    Partition: Handler<M>,
    <Partition as Actor>::Context: ToEnvelope<Partition, M>,
{
    type Result = ResponseFuture<Result<T, BrokerError>>;

    fn handle(&mut self, msg: ForPartition<M>, _: &mut Context<Self>) -> Self::Result {
        let sent = self.partition(msg.partition).map(|addr| addr.send(msg.message));
        Box::pin(async move { sent?.await.unwrap_or_else(|e| Err(e.into())) })
    }
}

/// Describe the topic: settings and every partition's bounds.
#[derive(Message)]
#[rtype(result = "Result<TopicDescription, BrokerError>")]
pub struct DescribeTopic;

/// A topic as describe reports it.
#[derive(Debug, Clone)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: String,
    pub config: BTreeMap<String, ConfigValue>,
    pub partitions: Vec<PartitionState>,
}

impl Handler<DescribeTopic> for Topic {
    type Result = ResponseFuture<Result<TopicDescription, BrokerError>>;

    fn handle(&mut self, _: DescribeTopic, _: &mut Context<Self>) -> Self::Result {
        if let Err(err) = self.refuse_if_closed() {
            return Box::pin(async move { Err(err) });
        }
        let sends: Vec<_> = self.partitions.iter().map(|p| p.send(partition::Describe)).collect();
        let (name, config) = (self.name.to_string(), self.config.to_map());
        let topic_id = self.topic_id.clone().unwrap_or_default();
        Box::pin(async move {
            let mut partitions = Vec::with_capacity(sends.len());
            for state in join_all(sends).await {
                partitions.push(state.unwrap_or_else(|e| Err(e.into()))?);
            }
            Ok(TopicDescription { name, topic_id, config, partitions })
        })
    }
}

/// Grow the topic to `total` partitions.
///
/// Adds are serialized with every other message of the topic: the handler
/// pauses the topic's mailbox (`AtomicResponse`) until the new metadata is
/// stored and the new partitions are started. Two adds cannot then both pass
/// the "greater than the current count" check, nor write `topic.json` at the
/// same time, and a [`CloseTopic`] (a delete) runs either before the add, which
/// then finds the topic closed, or after it, which then closes the new
/// partitions too. Produce requests to the topic wait out that one fsync.
#[derive(Message)]
#[rtype(result = "Result<u32, BrokerError>")]
pub struct AddPartitions {
    pub total: i64,
}

impl Handler<AddPartitions> for Topic {
    type Result = AtomicResponse<Self, Result<u32, BrokerError>>;

    fn handle(&mut self, msg: AddPartitions, _: &mut Context<Self>) -> Self::Result {
        let current = self.partitions.len() as i64;
        if let Err(err) = self.refuse_if_closed() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        if msg.total <= current || msg.total > crate::broker::MAX_PARTITIONS as i64 {
            let err = BrokerError::new(
                ErrorCode::INVALID_PARTITIONS,
                format!(
                    "topic `{}` has {current} partitions; the new count must be greater, and at most {}",
                    self.name,
                    crate::broker::MAX_PARTITIONS
                ),
            );
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        let total = msg.total as u32;
        let meta = TopicMeta { partitions: total, ..self.meta() };
        let dir = self.dir.clone();
        let stored = actix_rt::task::spawn_blocking(move || meta.store(&dir));
        AtomicResponse::new(Box::pin(stored.into_actor(self).map(move |stored, act, _| match stored {
            Ok(Ok(())) => {
                act.start_partitions(total);
                tracing::info!(topic = %act.name, partitions = total, "added partitions");
                Ok(total)
            }
            Ok(Err(err)) => Err(BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, err.to_string())),
            Err(err) => Err(BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, err.to_string())),
        })))
    }
}

/// The topic's route, for a connection to reach its partitions directly.
#[derive(Message)]
#[rtype(result = "Arc<Route>")]
pub struct GetRoute;

impl Handler<GetRoute> for Topic {
    type Result = Arc<Route>;

    fn handle(&mut self, _: GetRoute, _: &mut Context<Self>) -> Arc<Route> {
        self.route.clone()
    }
}

/// The topic's partition count.
#[derive(Message)]
#[rtype(result = "u32")]
pub struct PartitionCount;

impl Handler<PartitionCount> for Topic {
    type Result = u32;

    fn handle(&mut self, _: PartitionCount, _: &mut Context<Self>) -> u32 {
        self.partitions.len() as u32
    }
}

/// Close the topic for good (it is being deleted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseTopic;

impl Handler<CloseTopic> for Topic {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: CloseTopic, _: &mut Context<Self>) -> Self::Result {
        self.route.close(Closed::Deleted);
        let sends: Vec<_> = self.partitions.drain(..).map(|p| p.send(partition::Close)).collect();
        Box::pin(async move {
            join_all(sends).await;
        })
    }
}

/// Flush and fsync every partition (broker shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct ShutdownTopic;

impl Handler<ShutdownTopic> for Topic {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, _: ShutdownTopic, _: &mut Context<Self>) -> Self::Result {
        self.route.close(Closed::ShutDown);
        let sends: Vec<_> = self.partitions.iter().map(|p| p.send(partition::Shutdown)).collect();
        Box::pin(async move {
            for result in join_all(sends).await {
                result.unwrap_or_else(|e| Err(e.into()))?;
            }
            Ok(())
        })
    }
}

#[path = "topic_alter.rs"]
mod alter;
pub use alter::AlterConfig;

#[cfg(test)]
#[path = "topic_tests.rs"]
mod tests;
