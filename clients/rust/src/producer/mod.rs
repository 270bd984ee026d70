//! A batching producer: records are grouped per partition and sent when a batch
//! is full or has waited `linger_ms`.
//!
//! Partitioning happens here, as in Kafka's clients: a keyed record goes to
//! `toPositive(murmur2(key)) % partitions`. Records without a key follow the
//! [`Partitioner`]: by default they stick to one partition until it has taken
//! [`ProducerConfig::sticky_switch_bytes`] of them or their batch is sent,
//! then move to the next (Kafka's uniform sticky partitioner, KIP-794), so a
//! few thousand small records already spread over every partition; or they go
//! round robin, one record per partition in turn. Every produce request names
//! its partition, and each record's offset is known exactly: the batch's base
//! offset plus its position in the batch. A record sent to a partition the
//! topic does not have fails alone with `UNKNOWN_TOPIC_OR_PARTITION`, before
//! anything is sent (with acks 0 the broker would not say).
//!
//! A batch's size is counted as its records take on the wire, and capped by
//! what the broker announced in the handshake: a produce request must fit its
//! `max_frame_bytes` (a larger one would be refused), and its batch its
//! default `max_message_bytes`. A record too large alone fails alone.
//!
//! With `linger_ms = 0`, a record sent while nothing waits in the producer
//! (no record queued or being batched, a request of the in-flight window
//! free, its topic known) is sent at once by the caller, in a batch of its
//! own: no hand-off to the producer's task. Otherwise it is queued, and
//! records queued together go out together; a record never overtakes one
//! sent before it.
//!
//! Idempotent by default ([`ProducerConfig::idempotent`], see
//! `idempotence.rs` and docs/protocol.md, "Idempotent producers"): each
//! batch carries the producer's id and its sequence in its partition, so the
//! broker stores a batch it gets twice once; at most 5 requests are then in
//! flight. `OUT_OF_ORDER_SEQUENCE_NUMBER` and `INVALID_PRODUCER_EPOCH` fail
//! the batch's records like any other error: the producer does not renumber.

mod idempotence;
mod retry;
mod route;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_wire::batch::Compression;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use self::idempotence::Idempotence;
use self::retry::{Attempt, Flows};
use self::route::{PartitionHasher, Route, Routes};
use crate::{Client, ClientError, Cluster};
use herald_wire::protocol::{ProducePartitionResponse, WireRecord};

/// An upper bound of a produce request's bytes besides its records and topic.
const REQUEST_OVERHEAD_BYTES: usize = 128;

/// An upper bound of the bytes `record` takes in a produce request: its map,
/// field names and value headers, then its data.
fn encoded_bytes(record: &WireRecord) -> usize {
    let data = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, |b| b.len());
    let headers: usize = record.headers.iter().map(|(key, value)| 11 + key.len() + value.len()).sum();
    53 + data(&record.key) + data(&record.value) + headers
}

/// How the producer batches.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a record may wait for its batch to fill.
    pub linger_ms: u64,
    /// Records per batch at most.
    pub batch_max_records: usize,
    /// Bytes per batch at most, as the records are encoded in a produce
    /// request; the broker's limits cap it further (see the module doc).
    pub batch_max_bytes: usize,
    /// -1 (the default, as Kafka's `acks=all`): wait until every in-sync
    /// replica has the batch (a broker alone: until it has it, as 1); 1:
    /// until the leader has it; 0: do not wait for an answer.
    pub acks: i64,
    /// Produce requests in flight at once.
    pub max_in_flight: usize,
    /// Where records without a key go.
    pub partitioner: Partitioner,
    /// With [`Partitioner::Sticky`], the bytes (as counted for a batch) a
    /// partition takes of keyless records before the next one gets them.
    pub sticky_switch_bytes: usize,
    /// The codec of each batch's records (docs/protocol.md, "Compression");
    /// batches go uncompressed to a broker that does not list it.
    pub compression: Compression,
    /// Whether batches carry an idempotent producer's id and sequences
    /// (with acks 1 or -1, against a broker that lists `init_producer_id`);
    /// `max_in_flight` is then at most 5.
    pub idempotent: bool,
    /// How long after a batch is created the producer may resend it to a
    /// new leader before failing its records (Kafka's
    /// `delivery.timeout.ms`).
    pub delivery_timeout: Duration,
}

/// Where records without a key (and without a partition) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// To one partition until it has taken `sticky_switch_bytes` or its batch
    /// is sent, then to the next: few, large batches.
    #[default]
    Sticky,
    /// Each record to the next partition in turn: an exactly even spread, in
    /// batches as many times smaller as there are partitions.
    RoundRobin,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger_ms: 5,
            batch_max_records: 10_000,
            batch_max_bytes: 1 << 20,
            acks: -1,
            max_in_flight: 8,
            partitioner: Partitioner::Sticky,
            sticky_switch_bytes: 16 << 10,
            compression: Compression::None,
            idempotent: true,
            delivery_timeout: Duration::from_secs(120),
        }
    }
}

/// Where a produced record landed. With acks = 0 the offset is -1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition the record was appended to.
    pub partition: u32,
    /// Its offset there.
    pub offset: i64,
}

pub(super) type Reply = oneshot::Sender<Result<RecordMetadata, ClientError>>;

enum Command {
    Send { topic: String, partition: Option<u32>, record: WireRecord, reply: Reply },
    Flush(oneshot::Sender<()>),
}

/// What a producer's callers and its task share.
#[derive(Clone)]
pub(super) struct Shared {
    cluster: Cluster,
    config: ProducerConfig,
    routes: Routes,
    in_flight: Arc<Semaphore>,
    /// Records handed to the producer's task and not yet sent (or failed):
    /// while there are any, a caller does not send its record itself, which
    /// would overtake them.
    queued: Arc<AtomicUsize>,
    /// The producer id and sequences, when idempotent.
    idempotence: Option<Arc<Idempotence>>,
    /// Each partition's batches in flight and waiting to be resent.
    flows: Flows,
    /// The number of the next batch built.
    next_order: Arc<AtomicU64>,
}

/// A batching producer. Dropping it sends what is buffered.
pub struct Producer {
    commands: mpsc::Sender<Command>,
    shared: Shared,
}

impl Producer {
    /// A producer starting from `client`'s connection: each batch goes to
    /// its partition's leader (this broker, alone; see [`Cluster`]).
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        Producer::with_cluster(Cluster::of(client), config)
    }

    /// A producer sending to the leaders `cluster` finds.
    pub fn with_cluster(cluster: Cluster, config: ProducerConfig) -> Producer {
        let (commands, queue) = mpsc::channel(config.batch_max_records.max(1024));
        let idempotent = config.idempotent && config.acks != 0;
        let max_in_flight = match idempotent {
            true => config.max_in_flight.clamp(1, idempotence::MAX_IN_FLIGHT),
            false => config.max_in_flight.max(1),
        };
        let config = ProducerConfig { max_in_flight, ..config };
        let shared = Shared {
            cluster,
            flows: Flows::default(),
            next_order: Arc::new(AtomicU64::new(0)),
            routes: Routes::default(),
            idempotence: idempotent.then(Arc::default),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            queued: Arc::new(AtomicUsize::new(0)),
            config,
        };
        tokio::spawn(Batcher { shared: shared.clone(), batches: HashMap::new() }.run(queue));
        Producer { commands, shared }
    }

    /// Queues a record (or, with `linger_ms = 0` and nothing waiting, sends
    /// it at once: see the module documentation); the returned future
    /// resolves once it is acknowledged. Waits when the producer's queue is
    /// full.
    ///
    /// # Errors
    ///
    /// The producer's task has ended.
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: WireRecord,
    ) -> Result<oneshot::Receiver<Result<RecordMetadata, ClientError>>, ClientError> {
        let (reply, answer) = oneshot::channel();
        let Some((record, reply)) = self.shared.send_now(topic, partition, record, reply) else { return Ok(answer) };
        // Counted before it is queued; uncounted if this future is dropped
        // before the record is in the queue.
        let counted = Queued::count(&self.shared.queued);
        self.commands
            .send(Command::Send { topic: topic.into(), partition, record, reply })
            .await
            .map_err(|_| ClientError::Closed)?;
        counted.keep();
        Ok(answer)
    }

    /// Sends every buffered record and waits until all sent ones are answered.
    ///
    /// # Errors
    ///
    /// The producer's task has ended.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (done, wait) = oneshot::channel();
        self.commands.send(Command::Flush(done)).await.map_err(|_| ClientError::Closed)?;
        wait.await.map_err(|_| ClientError::Closed)
    }
}

/// One record counted in [`Shared::queued`], uncounted again when dropped
/// unless kept (the producer's task uncounts it when it sends it).
struct Queued<'a>(Option<&'a AtomicUsize>);

impl<'a> Queued<'a> {
    fn count(queued: &'a AtomicUsize) -> Queued<'a> {
        queued.fetch_add(1, Ordering::SeqCst);
        Queued(Some(queued))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(queued) = self.0 {
            queued.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Shared {
    /// Sends `record` at once in a batch of its own, from the caller, when
    /// nothing would make it wait or be overtaken (see the module
    /// documentation); hands it back otherwise, for the producer's task.
    fn send_now(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: WireRecord,
        reply: Reply,
    ) -> Option<(WireRecord, Reply)> {
        if self.config.linger_ms != 0 || self.queued.load(Ordering::SeqCst) != 0 {
            return Some((record, reply));
        }
        if self.idempotence.as_ref().is_some_and(|i| !i.ready()) {
            return Some((record, reply));
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else { return Some((record, reply)) };
        let chosen = {
            let mut routes = self.routes.lock();
            let Some(route) = routes.get_mut(topic) else { return Some((record, reply)) };
            let (partitioner, switch_bytes) = (self.config.partitioner, self.config.sticky_switch_bytes);
            let chosen =
                route.partition_for(topic, partition, &record, encoded_bytes(&record), partitioner, switch_bytes);
            if let Ok(partition) = chosen {
                route.sent(partition, partitioner);
            }
            chosen
        };
        match chosen {
            Ok(partition) => self.dispatch(topic, partition, vec![record], vec![reply], permit, Instant::now()),
            Err(err) => {
                let _ = reply.send(Err(err));
            }
        }
        None
    }

    /// Builds the request of `records` (created at `created`) and sends it
    /// to the partition's leader now (so batches of one partition reach it
    /// in the order they were sent), or queues it while the partition
    /// recovers (`retry.rs`); answers `replies` when the broker does or the
    /// batch fails. `permit` is its place in the in-flight window.
    fn dispatch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<WireRecord>,
        replies: Vec<Reply>,
        permit: OwnedSemaphorePermit,
        created: Instant,
    ) {
        let (acks, compression) = (self.config.acks, self.config.compression);
        let count = records.len();
        let client = self.cluster.cached_leader(topic, partition).unwrap_or_else(|| self.cluster.home());
        let deadline = retry::deadline(created, self.config.delivery_timeout);
        let mut waiting = Some((replies, permit));
        // Built and launched under the sequence lock: the batches of a
        // partition are numbered in the order they go out.
        let launch = |producer| {
            let prepared = client.prepare_produce(topic, Some(partition), records, acks, compression, producer)?;
            if let Some((replies, permit)) = waiting.take() {
                let order = self.next_order.fetch_add(1, Ordering::SeqCst);
                let (topic, last_error) = (topic.to_string(), None);
                self.launch(Attempt { topic, partition, prepared, replies, permit, deadline, order, last_error });
            }
            Ok(())
        };
        let launched = match &self.idempotence {
            Some(idempotence) => idempotence.send(topic, partition, count, launch),
            None => launch(None),
        };
        if let (Err(err), Some((replies, _))) = (launched, waiting) {
            answer(partition, Err(err), replies);
        }
    }
}

/// Answers the record of each of `replies` with where it landed, or the error.
fn answer(partition: u32, result: Result<Vec<ProducePartitionResponse>, ClientError>, replies: Vec<Reply>) {
    match result {
        Ok(partitions) => {
            let base = partitions.first().map_or(-1, |p| p.base_offset);
            for (i, reply) in replies.into_iter().enumerate() {
                let offset = if base < 0 { -1 } else { base + i as i64 };
                let _ = reply.send(Ok(RecordMetadata { partition, offset }));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.duplicate()));
            }
        }
    }
}

struct Batch {
    /// When its first record came.
    created: Instant,
    records: Vec<WireRecord>,
    replies: Vec<Reply>,
    bytes: usize,
    deadline: Instant,
}

/// The batches being filled of one topic, by partition.
type TopicBatches = HashMap<u32, Batch, BuildHasherDefault<PartitionHasher>>;

/// The producer's task: batches the queued records.
struct Batcher {
    shared: Shared,
    batches: HashMap<String, TopicBatches>,
}

impl Batcher {
    /// Takes the commands queued, as many as there are at once (one wake and
    /// one timer for many records), until the producer is dropped.
    async fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        let chunk = self.shared.config.batch_max_records.clamp(1, 4096);
        let mut commands = Vec::with_capacity(chunk);
        loop {
            let next_deadline = self.batches.values().flat_map(|t| t.values()).map(|b| b.deadline).min();
            let received = match next_deadline {
                Some(deadline) => tokio::select! {
                    received = queue.recv_many(&mut commands, chunk) => received,
                    _ = tokio::time::sleep_until(deadline) => {
                        self.send_due(Instant::now()).await;
                        continue;
                    }
                },
                None => queue.recv_many(&mut commands, chunk).await,
            };
            if received == 0 {
                // Every sender is gone: send what is buffered and end.
                self.send_due(Instant::now() + Duration::from_secs(3600)).await;
                return;
            }
            for command in commands.drain(..) {
                self.handle(command).await;
            }
            // No linger: what was queued at once goes out now, batched
            // (a timer of zero would still wait for the runtime's next
            // millisecond tick). Records still batch up while the in-flight
            // window is full: they wait in the queue and come in one chunk.
            if self.shared.config.linger_ms == 0 {
                self.send_due(Instant::now() + Duration::from_secs(3600)).await;
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Send { topic, partition, record, reply } => self.add(topic, partition, record, reply).await,
            Command::Flush(done) => {
                self.send_due(Instant::now() + Duration::from_secs(3600)).await;
                // Every permit back means every request was answered.
                let all = self.shared.config.max_in_flight.max(1) as u32;
                if let Ok(permits) = self.shared.in_flight.acquire_many(all).await {
                    drop(permits);
                }
                let _ = done.send(());
            }
        }
    }

    /// The partition count of `topic`, asked of the broker the first time
    /// (and again for each record until it answers).
    async fn learn(&self, topic: &str) -> Result<(), ClientError> {
        if self.shared.routes.lock().contains_key(topic) {
            return Ok(());
        }
        let partitions = self.shared.cluster.partitions(topic).await?;
        self.shared.routes.lock().entry(topic.into()).or_insert_with(|| Route::new(partitions));
        Ok(())
    }

    /// The most bytes of records one batch of `topic` may hold.
    fn max_batch_bytes(&self, topic: &str) -> usize {
        let home = self.shared.cluster.home();
        let broker = home.features();
        let mut max = self.shared.config.batch_max_bytes;
        if broker.max_frame_bytes > 0 {
            let frame = usize::try_from(broker.max_frame_bytes).unwrap_or(usize::MAX);
            max = max.min(frame.saturating_sub(REQUEST_OVERHEAD_BYTES + topic.len()));
        }
        if broker.max_message_bytes > 0 {
            max = max.min(usize::try_from(broker.max_message_bytes).unwrap_or(usize::MAX));
        }
        max.max(1)
    }

    /// A record that fails alone, before it is batched.
    fn refuse(&self, reply: Reply, err: ClientError) {
        self.shared.queued.fetch_sub(1, Ordering::SeqCst);
        let _ = reply.send(Err(err));
    }

    async fn add(&mut self, topic: String, partition: Option<u32>, record: WireRecord, reply: Reply) {
        let size = encoded_bytes(&record);
        let max_bytes = self.max_batch_bytes(&topic);
        let config = &self.shared.config;
        let (partitioner, switch_bytes) = (config.partitioner, config.sticky_switch_bytes);
        let (max_records, linger) = (config.batch_max_records, Duration::from_millis(config.linger_ms));
        if let Err(err) = self.learn(&topic).await {
            return self.refuse(reply, err);
        }
        let chosen = match self.shared.routes.lock().get_mut(&topic) {
            Some(route) => route.partition_for(&topic, partition, &record, size, partitioner, switch_bytes),
            None => Err(ClientError::Closed),
        };
        let partition = match chosen {
            Ok(p) => p,
            Err(err) => return self.refuse(reply, err),
        };
        let batches = match self.batches.get_mut(&topic) {
            Some(batches) => batches,
            None => self.batches.entry(topic.clone()).or_default(),
        };
        // Full before this record: it starts the next batch.
        let full = batches.get(&partition).is_some_and(|b| b.bytes + size > max_bytes);
        let earlier = if full { batches.remove(&partition) } else { None };
        let batch = batches.entry(partition).or_insert_with(|| Batch {
            created: Instant::now(),
            records: Vec::with_capacity(max_records.min(1024)),
            replies: Vec::with_capacity(max_records.min(1024)),
            bytes: 0,
            deadline: Instant::now() + linger,
        });
        batch.records.push(record);
        batch.replies.push(reply);
        batch.bytes += size;
        let now_full = batch.records.len() >= max_records || batch.bytes >= max_bytes;
        let this = if now_full { batches.remove(&partition) } else { None };
        for batch in earlier.into_iter().chain(this) {
            self.send_batch(&topic, partition, batch).await;
        }
    }

    async fn send_due(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (topic, batches) in &mut self.batches {
            let partitions: Vec<u32> = batches.iter().filter(|(_, b)| b.deadline <= now).map(|(p, _)| *p).collect();
            for partition in partitions {
                if let Some(batch) = batches.remove(&partition) {
                    due.push((topic.clone(), partition, batch));
                }
            }
        }
        for (topic, partition, batch) in due {
            self.send_batch(&topic, partition, batch).await;
        }
    }

    /// Sends `batch` once a request of the in-flight window is free.
    async fn send_batch(&mut self, topic: &str, partition: u32, batch: Batch) {
        if let Some(route) = self.shared.routes.lock().get_mut(topic) {
            route.sent(partition, self.shared.config.partitioner);
        }
        let records = batch.records.len();
        if let Some(idempotence) = &self.shared.idempotence {
            let ensured = match self.shared.cluster.any().await {
                Ok(client) => idempotence.ensure(&client).await,
                Err(err) => Err(err),
            };
            if let Err(err) = ensured {
                self.shared.queued.fetch_sub(records, Ordering::SeqCst);
                return answer(partition, Err(err), batch.replies);
            }
        }
        // The leader's connection, opened now if need be (on failure the
        // batch waits in its partition's recovery instead).
        let _ = self.shared.cluster.leader(topic, partition).await;
        let Ok(permit) = self.shared.in_flight.clone().acquire_owned().await else {
            // The window is never closed; were it, the records fail.
            self.shared.queued.fetch_sub(records, Ordering::SeqCst);
            return answer(partition, Err(ClientError::Closed), batch.replies);
        };
        self.shared.dispatch(topic, partition, batch.records, batch.replies, permit, batch.created);
        self.shared.queued.fetch_sub(records, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use herald_wire::protocol::{op, ProduceRequest, RequestEnvelope};

    #[test]
    fn a_request_fits_its_counted_bytes() {
        let big = |n: usize| Some(Bytes::from(vec![7u8; n]));
        let records = vec![
            WireRecord::default(),
            WireRecord {
                key: big(70_000),
                value: big(300),
                headers: vec![("h".repeat(300), Bytes::new())],
                timestamp: Some(i64::MAX),
            },
            WireRecord {
                value: big(20),
                headers: vec![("a".into(), big(70_000).unwrap_or_default())],
                ..Default::default()
            },
        ];
        let topic = "t".repeat(249);
        let counted: usize = records.iter().map(encoded_bytes).sum::<usize>() + REQUEST_OVERHEAD_BYTES + topic.len();
        let request = ProduceRequest { topic, partition: Some(i64::from(u32::MAX)), acks: -1, records, batch: None };
        let frame =
            rmp_serde::to_vec_named(&RequestEnvelope { correlation_id: u32::MAX, op: op::PRODUCE, body: request })
                .unwrap();
        assert!(frame.len() <= counted, "{} bytes encoded, {counted} counted", frame.len());
    }
}
