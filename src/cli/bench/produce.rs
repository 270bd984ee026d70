//! The produce side of `herald bench`: three ways to send the same records,
//! so that the client's own cost can be told from the broker's.
//!
//! - `producer`: through the Rust client's batching [`Producer`], one `send`
//!   per record (what an application does);
//! - `requests`: one produce request per batch of `--batch-records` records
//!   through [`Client::start_produce`], `--in-flight` requests at once;
//! - `raw`: one produce frame (its records as one `batch` when the broker
//!   takes it) encoded once and written again and again on a bare connection
//!   with only its correlation id changed: the ceiling that no client work
//!   limits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use herald::client::{Client, ConnectOptions, Producer, ProducerConfig};
use herald::protocol::{
    HandshakeRequest, HandshakeResponse, ProduceRequest, RequestEnvelope, WireRecord, FEATURE_PRODUCE_BATCH,
};
use herald_actors::batch::{self, Compression, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::payload::{Payload, Values};
use super::Outcome;

/// How records are sent (see the module documentation).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendWith {
    Producer,
    Requests,
    Raw,
}

/// What one produce run sends.
#[derive(Debug, Clone)]
pub(super) struct ProducePlan {
    pub broker: String,
    /// How to connect: the CLI's timeouts and TLS.
    pub connect: ConnectOptions,
    pub topic: String,
    pub partitions: u32,
    pub records: u64,
    pub record_size: usize,
    pub batch_records: usize,
    pub in_flight: usize,
    pub linger_ms: u64,
    pub producers: usize,
    pub acks: i64,
    pub send_with: SendWith,
    /// The codec of the batches sent.
    pub compression: Compression,
    /// What the record values hold.
    pub payload: Payload,
}

impl ProducePlan {
    /// Produce requests the run sends, when it decides them (`requests` and
    /// `raw`; the batching producer forms its own).
    pub(super) fn requests(&self) -> Option<u64> {
        if self.send_with == SendWith::Producer {
            return None;
        }
        let producers = self.producers.max(1) as u64;
        let size = self.batch_records.max(1) as u64;
        let share = |index: u64| self.records / producers + u64::from(index < self.records % producers);
        Some((0..producers).map(|index| share(index).div_ceil(size)).sum())
    }

    /// The batching producer's settings for this plan.
    pub(super) fn producer_config(&self) -> ProducerConfig {
        ProducerConfig {
            linger_ms: self.linger_ms,
            batch_max_records: self.batch_records,
            batch_max_bytes: 4 << 20,
            acks: self.acks,
            max_in_flight: self.in_flight,
            compression: self.compression,
            ..ProducerConfig::default()
        }
    }
}

/// `size` bytes of a fixed pattern, the value of `--payload pattern`.
pub(super) fn pattern(size: usize) -> Bytes {
    Values::new(Payload::Pattern, size).get(0)
}

/// Sends `plan.records` records split over `plan.producers` connections;
/// returns the acknowledgement latencies (per record with `producer`, per
/// request otherwise). `done` counts acknowledged records as they come.
pub(super) async fn run(plan: &ProducePlan, done: Arc<AtomicU64>) -> Outcome<Vec<Duration>> {
    let producers = plan.producers.max(1) as u64;
    let mut tasks = Vec::new();
    for index in 0..producers {
        let share = plan.records / producers + u64::from(index < plan.records % producers);
        let (plan, done) = (plan.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            match plan.send_with {
                SendWith::Producer => with_producer(&plan, share, &done).await,
                SendWith::Requests => with_requests(&plan, index as u32, share, &done).await,
                SendWith::Raw => with_raw_frames(&plan, index as u32, share, &done).await,
            }
            .map_err(|err| err.to_string())
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|err| err.to_string())??);
    }
    Ok(latencies)
}

async fn connect(plan: &ProducePlan) -> Outcome<Client> {
    let broker = plan.broker.as_str();
    Client::connect_with_options(broker, "herald-bench", plan.connect.clone())
        .await
        .map_err(|err| format!("cannot reach the broker at {broker}: {err}").into())
}

async fn with_producer(plan: &ProducePlan, records: u64, done: &AtomicU64) -> Outcome<Vec<Duration>> {
    let client = connect(plan).await?;
    let producer = Producer::new(client, plan.producer_config());
    let values = Values::new(plan.payload, plan.record_size);
    let mut latencies = Vec::with_capacity(records as usize);
    // Answers come in the order the records were sent (per partition, and
    // batches of several partitions are answered close together): they are
    // looked at in that order, without a task per record.
    let mut pending = std::collections::VecDeque::new();
    for n in 0..records {
        let record = WireRecord { key: None, value: Some(values.get(n)), headers: Vec::new(), timestamp: None };
        let sent_at = Instant::now();
        pending.push_back((producer.send(&plan.topic, None, record).await?, sent_at));
        while let Some((answer, sent_at)) = pending.front_mut() {
            match answer.try_recv() {
                Ok(answer) => answer?,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => break,
                Err(closed) => return Err(closed.into()),
            };
            latencies.push(sent_at.elapsed());
            done.fetch_add(1, Ordering::Relaxed);
            pending.pop_front();
        }
    }
    producer.flush().await?;
    for (answer, sent_at) in pending {
        answer.await??;
        latencies.push(sent_at.elapsed());
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

/// The sizes of the batches `records` records are sent in.
fn batches(records: u64, batch_records: usize) -> impl Iterator<Item = usize> {
    let size = batch_records.max(1) as u64;
    (0..records.div_ceil(size)).map(move |i| (records - i * size).min(size) as usize)
}

async fn with_requests(plan: &ProducePlan, index: u32, records: u64, done: &AtomicU64) -> Outcome<Vec<Duration>> {
    let client = connect(plan).await?;
    let values = Values::new(plan.payload, plan.record_size);
    let mut latencies = Vec::new();
    let mut pending = FuturesUnordered::new();
    let mut sent = 0u64;
    for (n, size) in batches(records, plan.batch_records).enumerate() {
        if pending.len() >= plan.in_flight.max(1) {
            if let Some(answered) = pending.next().await {
                let (records, latency): (usize, Duration) = answered?;
                latencies.push(latency);
                done.fetch_add(records as u64, Ordering::Relaxed);
            }
        }
        let batch: Vec<WireRecord> = (sent..sent + size as u64)
            .map(|n| WireRecord { key: None, value: Some(values.get(n)), headers: Vec::new(), timestamp: None })
            .collect();
        sent += size as u64;
        let partition = (index + n as u32) % plan.partitions.max(1);
        let sent_at = Instant::now();
        let answer =
            client.start_produce_compressed(&plan.topic, Some(partition), batch, plan.acks, plan.compression)?;
        pending.push(async move { answer.await.map(|_| (size, sent_at.elapsed())) });
    }
    while let Some(answered) = pending.next().await {
        let (records, latency) = answered?;
        latencies.push(latency);
        done.fetch_add(records as u64, Ordering::Relaxed);
    }
    Ok(latencies)
}

/// The first correlation id of a raw connection: large enough that every id
/// it uses is a MessagePack uint32, so that it can be patched in place.
const FIRST_RAW_ID: u32 = 1 << 16;

/// A length-prefixed request frame.
fn request_frame<T: serde::Serialize>(correlation_id: u32, op: &str, body: T) -> Outcome<Vec<u8>> {
    let payload = rmp_serde::to_vec_named(&RequestEnvelope { correlation_id, op, body })?;
    let mut frame = u32::try_from(payload.len())?.to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Where the four bytes of the uint32 correlation id start in `frame`.
fn correlation_id_at(frame: &[u8]) -> Outcome<usize> {
    let mut key = vec![0xa0 | 14];
    key.extend_from_slice(b"correlation_id");
    key.push(0xce);
    frame
        .windows(key.len())
        .position(|w| w == key.as_slice())
        .map(|at| at + key.len())
        .ok_or_else(|| "no uint32 correlation id in the encoded request".into())
}

async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>) -> Outcome<()> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    buf.resize(u32::from_be_bytes(len) as usize, 0);
    stream.read_exact(buf).await?;
    Ok(())
}

/// A produce response's outcome: the first error it carries, if any.
fn produce_error(frame: &[u8]) -> Outcome<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Answer {
        error_code: i16,
        #[serde(default)]
        error_message: Option<String>,
        #[serde(default)]
        partitions: Option<Vec<herald::protocol::ProducePartitionResponse>>,
    }
    let answer: Answer = rmp_serde::from_slice(frame)?;
    if answer.error_code != 0 {
        return Ok(Some(format!("error {}: {}", answer.error_code, answer.error_message.unwrap_or_default())));
    }
    let failed = answer.partitions.unwrap_or_default().into_iter().find(|p| p.error_code != 0);
    Ok(failed.map(|p| format!("error {}: {}", p.error_code, p.error_message.unwrap_or_default())))
}

async fn with_raw_frames(plan: &ProducePlan, index: u32, records: u64, done: &AtomicU64) -> Outcome<Vec<Duration>> {
    if plan.acks == 0 {
        return Err("--send-with raw needs acknowledgements (acks 1 or -1)".into());
    }
    if plan.connect.tls.is_some() {
        return Err("--send-with raw writes plain TCP; it cannot be used with --tls".into());
    }
    let mut stream = TcpStream::connect(&plan.broker).await?;
    stream.set_nodelay(true)?;
    let handshake = HandshakeRequest {
        client_id: "herald-bench".into(),
        protocol_version: Some(1),
        min_protocol_version: None,
        max_protocol_version: None,
    };
    stream.write_all(&request_frame(1, "handshake", handshake)?).await?;
    let mut answer = Vec::new();
    read_frame(&mut stream, &mut answer).await?;
    let header: herald::protocol::ResponseHeader = rmp_serde::from_slice(&answer)?;
    if header.error_code != 0 {
        return Err(format!("handshake refused: error {}", header.error_code).into());
    }
    let broker: HandshakeResponse = rmp_serde::from_slice(&answer)?;
    let as_batch = broker.has_feature(FEATURE_PRODUCE_BATCH);
    if plan.compression != Compression::None && !(as_batch && broker.has_compression(plan.compression.name())) {
        return Err(format!("the broker does not take {} batches", plan.compression.name()).into());
    }

    let values = Values::new(plan.payload, plan.record_size);
    // One frame per batch size (the last batch may be shorter) and partition.
    let partitions = plan.partitions.max(1);
    // As a batch for a broker that takes one (all with the same timestamp,
    // that of the encoding), as maps otherwise.
    let now = herald_actors::now_ms();
    let encode = |size: usize, partition: u32| -> Outcome<Vec<u8>> {
        let mut body = ProduceRequest {
            topic: plan.topic.clone(),
            partition: Some(i64::from(partition)),
            acks: plan.acks,
            records: Vec::new(),
            batch: None,
        };
        if as_batch {
            let records: Vec<Record> = (0..size as u64)
                .map(|n| Record { value: Some(values.get(n)), timestamp: now, ..Record::default() })
                .collect();
            body.batch = Some(batch::encode_with(&records, plan.compression)?.freeze());
        } else {
            body.records = (0..size as u64)
                .map(|n| WireRecord { key: None, value: Some(values.get(n)), headers: Vec::new(), timestamp: None })
                .collect();
        }
        request_frame(FIRST_RAW_ID, "produce", body)
    };
    let full: Vec<Vec<u8>> = (0..partitions).map(|p| encode(plan.batch_records.max(1), p)).collect::<Outcome<_>>()?;
    let id_at = correlation_id_at(&full[0])?;

    let (mut reader, mut writer) = stream.into_split();
    let window = Arc::new(Semaphore::new(plan.in_flight.max(1)));
    let sizes: Vec<usize> = batches(records, plan.batch_records).collect();
    let sent_at: Arc<std::sync::Mutex<std::collections::VecDeque<(Instant, usize)>>> = Default::default();
    let expected = sizes.len();
    let reading = {
        let (window, sent_at) = (window.clone(), sent_at.clone());
        async move {
            let mut latencies = Vec::with_capacity(expected);
            let mut frame = Vec::new();
            for _ in 0..expected {
                read_frame(&mut reader, &mut frame).await?;
                if let Some(error) = produce_error(&frame)? {
                    return Err(format!("produce refused: {error}").into());
                }
                let (at, size) = sent_at.lock().map_err(|_| "lock")?.pop_front().ok_or("an unexpected response")?;
                latencies.push(at.elapsed());
                done.fetch_add(size as u64, Ordering::Relaxed);
                window.add_permits(1);
            }
            Outcome::Ok(latencies)
        }
    };
    let writing = async {
        for (n, size) in sizes.iter().enumerate() {
            window.acquire().await?.forget();
            let partition = (index + n as u32) % partitions;
            let mut frame = if *size == plan.batch_records.max(1) {
                full[partition as usize].clone()
            } else {
                encode(*size, partition)?
            };
            let id = FIRST_RAW_ID.wrapping_add(n as u32).max(FIRST_RAW_ID);
            frame[id_at..id_at + 4].copy_from_slice(&id.to_be_bytes());
            sent_at.lock().map_err(|_| "lock")?.push_back((Instant::now(), *size));
            writer.write_all(&frame).await?;
        }
        Outcome::Ok(())
    };
    let (latencies, written) = tokio::join!(reading, writing);
    written?;
    latencies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_record_once() {
        assert_eq!(batches(10, 4).collect::<Vec<_>>(), vec![4, 4, 2]);
        assert_eq!(batches(8, 4).collect::<Vec<_>>(), vec![4, 4]);
        assert_eq!(batches(0, 4).count(), 0);
    }

    #[test]
    fn the_correlation_id_of_an_encoded_request_is_found_and_patched() {
        #[derive(serde::Deserialize)]
        struct Id {
            correlation_id: u32,
        }
        let body = ProduceRequest { topic: "t".into(), partition: Some(0), acks: 1, records: Vec::new(), batch: None };
        let mut frame = request_frame(FIRST_RAW_ID, "produce", &body).unwrap();
        let at = correlation_id_at(&frame).unwrap();
        frame[at..at + 4].copy_from_slice(&77_777u32.to_be_bytes());
        let id: Id = rmp_serde::from_slice(&frame[4..]).unwrap();
        assert_eq!(id.correlation_id, 77_777);
    }
}
