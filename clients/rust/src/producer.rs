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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use herald_wire::batch::Compression;
use herald_wire::partitioner::partition_for_key;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::{Client, ClientError};
use herald_wire::error::ErrorCode;
use herald_wire::protocol::WireRecord;

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
    /// 1 (or -1): wait for the broker's acknowledgement; 0: do not.
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
            acks: 1,
            max_in_flight: 8,
            partitioner: Partitioner::Sticky,
            sticky_switch_bytes: 16 << 10,
            compression: Compression::None,
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

type Reply = oneshot::Sender<Result<RecordMetadata, ClientError>>;

enum Command {
    Send { topic: String, partition: Option<u32>, record: WireRecord, reply: Reply },
    Flush(oneshot::Sender<()>),
}

/// A batching producer. Dropping it sends what is buffered.
pub struct Producer {
    commands: mpsc::Sender<Command>,
}

impl Producer {
    /// A producer over `client`'s connection.
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        let (commands, queue) = mpsc::channel(config.batch_max_records.max(1024));
        tokio::spawn(Batcher::new(client, config).run(queue));
        Producer { commands }
    }

    /// Queues a record; the returned future resolves once it is acknowledged.
    /// Waits when the producer's queue is full.
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
        self.commands
            .send(Command::Send { topic: topic.into(), partition, record, reply })
            .await
            .map_err(|_| ClientError::Closed)?;
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

struct Batch {
    records: Vec<WireRecord>,
    replies: Vec<Reply>,
    bytes: usize,
    deadline: Instant,
}

/// What the producer keeps of one topic: found with one lookup per record.
struct TopicState {
    partitions: u32,
    /// The partition keyless records go to now, and the bytes it has taken
    /// of them (sticky) or the next one in turn (round robin).
    keyless: (u32, usize),
    /// The batches being filled, by partition.
    batches: HashMap<u32, Batch, BuildHasherDefault<PartitionHasher>>,
}

/// Hashes a partition number as itself, spread by one multiplication: the
/// keys are the producer's own, and SipHash cost more than the rest of a
/// record's lookup.
#[derive(Default)]
struct PartitionHasher(u64);

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

impl TopicState {
    /// Takes the batch of `partition` to send; with the sticky partitioner,
    /// keyless records move on from it.
    fn take(&mut self, partition: u32, partitioner: Partitioner) -> Option<Batch> {
        let batch = self.batches.remove(&partition)?;
        if partitioner == Partitioner::Sticky && self.keyless.0 == partition {
            self.keyless = ((partition + 1) % self.partitions.max(1), 0);
        }
        Some(batch)
    }
}

struct Batcher {
    client: Client,
    config: ProducerConfig,
    topics: HashMap<String, TopicState>,
    in_flight: Arc<Semaphore>,
}

impl Batcher {
    fn new(client: Client, config: ProducerConfig) -> Batcher {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        Batcher { client, config, topics: HashMap::new(), in_flight }
    }

    /// Takes the commands queued, as many as there are at once (one wake and
    /// one timer for many records), until the producer is dropped.
    async fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        let chunk = self.config.batch_max_records.clamp(1, 4096);
        let mut commands = Vec::with_capacity(chunk);
        loop {
            let next_deadline = self.topics.values().flat_map(|t| t.batches.values()).map(|b| b.deadline).min();
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
            if self.config.linger_ms == 0 {
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
                let all = self.config.max_in_flight.max(1) as u32;
                if let Ok(permits) = self.in_flight.acquire_many(all).await {
                    drop(permits);
                }
                let _ = done.send(());
            }
        }
    }

    /// The state of a topic not seen before: its partition count asked of
    /// the broker (asked again for each record until it answers).
    async fn new_topic(&mut self, topic: &str) -> Result<&mut TopicState, ClientError> {
        let partitions = self.client.describe_topic(topic).await?.partitions.len() as u32;
        let state = TopicState { partitions, keyless: (first_partition(partitions), 0), batches: HashMap::default() };
        Ok(self.topics.entry(topic.into()).or_insert(state))
    }

    /// The most bytes of records one batch of `topic` may hold.
    fn max_batch_bytes(&self, topic: &str) -> usize {
        let broker = self.client.features();
        let mut max = self.config.batch_max_bytes;
        if broker.max_frame_bytes > 0 {
            let frame = usize::try_from(broker.max_frame_bytes).unwrap_or(usize::MAX);
            max = max.min(frame.saturating_sub(REQUEST_OVERHEAD_BYTES + topic.len()));
        }
        if broker.max_message_bytes > 0 {
            max = max.min(usize::try_from(broker.max_message_bytes).unwrap_or(usize::MAX));
        }
        max.max(1)
    }

    async fn add(&mut self, topic: String, partition: Option<u32>, record: WireRecord, reply: Reply) {
        let size = encoded_bytes(&record);
        let max_bytes = self.max_batch_bytes(&topic);
        let (partitioner, switch_bytes) = (self.config.partitioner, self.config.sticky_switch_bytes);
        let (max_records, linger) = (self.config.batch_max_records, Duration::from_millis(self.config.linger_ms));
        let state = match self.topics.get_mut(&topic) {
            Some(state) => state,
            None => match self.new_topic(&topic).await {
                Ok(state) => state,
                Err(err) => {
                    let _ = reply.send(Err(err));
                    return;
                }
            },
        };
        let partition = match partition_for(state, &topic, partition, &record, size, partitioner, switch_bytes) {
            Ok(p) => p,
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        };
        // Full before this record: it starts the next batch.
        let full = state.batches.get(&partition).is_some_and(|b| b.bytes + size > max_bytes);
        let earlier = if full { state.take(partition, partitioner) } else { None };
        let batch = state.batches.entry(partition).or_insert_with(|| Batch {
            records: Vec::with_capacity(max_records.min(1024)),
            replies: Vec::with_capacity(max_records.min(1024)),
            bytes: 0,
            deadline: Instant::now() + linger,
        });
        batch.records.push(record);
        batch.replies.push(reply);
        batch.bytes += size;
        let now_full = batch.records.len() >= max_records || batch.bytes >= max_bytes;
        let this = if now_full { state.take(partition, partitioner) } else { None };
        for batch in earlier.into_iter().chain(this) {
            self.send_batch(&topic, partition, batch).await;
        }
    }

    async fn send_due(&mut self, now: Instant) {
        let partitioner = self.config.partitioner;
        let mut due = Vec::new();
        for (topic, state) in &mut self.topics {
            let partitions: Vec<u32> =
                state.batches.iter().filter(|(_, b)| b.deadline <= now).map(|(p, _)| *p).collect();
            for partition in partitions {
                if let Some(batch) = state.take(partition, partitioner) {
                    due.push((topic.clone(), partition, batch));
                }
            }
        }
        for (topic, partition, batch) in due {
            self.send_batch(&topic, partition, batch).await;
        }
    }

    async fn send_batch(&mut self, topic: &str, partition: u32, batch: Batch) {
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else { return };
        // The request is queued on the connection now, so batches of one
        // partition reach the broker in the order they were sent.
        let (acks, compression) = (self.config.acks, self.config.compression);
        let sent = self.client.start_produce_compressed(topic, Some(partition), batch.records, acks, compression);
        let replies = batch.replies;
        let pending = async move {
            let result = match sent {
                Ok(pending) => pending.await,
                Err(err) => Err(err),
            };
            drop(permit);
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
        };
        tokio::spawn(pending);
    }
}

/// The partition `record` goes to in `state`'s topic, `size` its counted bytes.
fn partition_for(
    state: &mut TopicState,
    topic: &str,
    partition: Option<u32>,
    record: &WireRecord,
    size: usize,
    partitioner: Partitioner,
    switch_bytes: usize,
) -> Result<u32, ClientError> {
    let count = state.partitions;
    if let Some(partition) = partition {
        if partition >= count {
            return Err(ClientError::broker(
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
                Some(format!("not sent: topic `{topic}` has {count} partitions, there is no partition {partition}")),
            ));
        }
        return Ok(partition);
    }
    if let Some(key) = &record.key {
        return Ok(partition_for_key(key, count));
    }
    let count = count.max(1);
    let (current, taken) = &mut state.keyless;
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

/// Where a producer's keyless records start: spread by the clock, so that
/// producers started together do not all begin on partition 0.
fn first_partition(count: u32) -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos % count.max(1)
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
