//! The hostile clients. Each runs until its deadline on raw TCP connections
//! and tolerates whatever the broker does to it (a pause, an error, a close):
//! only the broker's memory, the healthy client and the broker's health
//! afterwards are judged, by the scenario.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald::client::Client;
use herald::protocol::{op, ProduceRequest, RequestEnvelope, WireRecord};
use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::fault::Rng;
use crate::raw::{frame, handshake, request};
use crate::FRAME_BYTES;

/// A hostile client.
#[derive(Clone, Debug)]
pub enum Attack {
    /// Pipelines fetches of up to 8 MiB each and never reads a response.
    NeverReading,
    /// Each connection announces a frame of `max_frame_bytes`, sends all but
    /// its last byte, and stalls.
    Slowloris { connections: u64 },
    /// Produce frames of `max_frame_bytes` holding one-byte empty records,
    /// on a few connections at once.
    Amplification,
    /// Each connection sends produce frames of 16,000 records of 1 KB
    /// (16 MB), one after the other.
    ConcurrentProduce { connections: u64 },
    /// Frames of random bytes and valid requests with bytes flipped, cut or
    /// inserted, from a seed.
    RandomFrames { seed: u64 },
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attack::NeverReading => write!(f, "never-reading"),
            Attack::Slowloris { connections } => write!(f, "slowloris ({connections} connections)"),
            Attack::Amplification => write!(f, "amplification"),
            Attack::ConcurrentProduce { connections } => write!(f, "concurrent-produce ({connections} connections)"),
            Attack::RandomFrames { seed } => write!(f, "random-frames (seed {seed})"),
        }
    }
}

/// The topic the hostile clients read and write.
const TOPIC: &str = "hostile";

impl Attack {
    /// Creates what the attack needs, once, before anything is measured.
    pub async fn prepare(&self, admin: &Client) {
        if admin.describe_topic(TOPIC).await.is_ok() {
            return;
        }
        admin.create_topic(TOPIC, 1, Default::default()).await.expect("create the hostile topic");
        // 8 MiB for the fetches of the client that never reads.
        for _ in 0..8 {
            let record = WireRecord { value: Some(Bytes::from(vec![b'x'; 1 << 20])), ..WireRecord::default() };
            admin.produce(TOPIC, Some(0), vec![record]).await.expect("produce the data to fetch");
        }
    }
}

/// Runs `attack` against `addr` until `until`; returns what it got done.
pub async fn run(addr: SocketAddr, attack: Attack, until: Instant) -> String {
    match attack {
        Attack::NeverReading => never_reading(addr, until).await,
        Attack::Slowloris { connections } => slowloris(addr, connections, until).await,
        Attack::Amplification => amplification(addr, until).await,
        Attack::ConcurrentProduce { connections } => concurrent_produce(addr, connections, until).await,
        Attack::RandomFrames { seed } => random_frames(addr, seed, until).await,
    }
}

/// A connection that has shaken hands, or `None` if the broker refused it.
async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(&frame(&handshake(1))).await.ok()?;
    read_frame(&mut stream, Duration::from_secs(5)).await?;
    Some(stream)
}

/// Reads one response frame's payload; `None` on a close, an error or no
/// frame within `wait`.
async fn read_frame(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    timeout(wait, async {
        let mut length = [0u8; 4];
        stream.read_exact(&mut length).await.ok()?;
        let mut payload = vec![0u8; u32::from_be_bytes(length) as usize];
        stream.read_exact(&mut payload).await.ok()?;
        Some(payload)
    })
    .await
    .ok()
    .flatten()
}

/// The `error_code` of a response payload.
fn error_code(payload: &[u8]) -> Option<i64> {
    let value = rmpv::decode::read_value(&mut &payload[..]).ok()?;
    value.as_map()?.iter().find(|(k, _)| k.as_str() == Some("error_code"))?.1.as_i64()
}

fn left(until: Instant) -> Duration {
    until.saturating_duration_since(Instant::now())
}

async fn never_reading(addr: SocketAddr, until: Instant) -> String {
    let fetch = |id: u32| {
        request(
            id,
            "fetch",
            &[
                ("topic", TOPIC.into()),
                ("partition", 0.into()),
                ("offset", 0.into()),
                ("max_bytes", (8u64 << 20).into()),
            ],
        )
    };
    let fetches: Vec<u8> = (0..1000u32).flat_map(|id| frame(&fetch(id + 2))).collect();
    let (mut connections, mut closed) = (0, 0);
    while !left(until).is_zero() {
        let Some(mut stream) = connect(addr).await else { continue };
        connections += 1;
        // The broker stops reading once the responses fill the connection's
        // bound, then closes it when they are not taken.
        let _ = timeout(left(until), stream.write_all(&fetches)).await;
        if timeout(left(until), wait_closed(&mut stream)).await.is_ok() {
            closed += 1;
        }
    }
    format!("{connections} connections of 1,000 pipelined 8 MiB fetches never read, {closed} closed by the broker")
}

/// Waits until the broker closes `stream`, without reading any of its data:
/// a write fails once the broker has closed its side.
async fn wait_closed(stream: &mut TcpStream) {
    loop {
        if stream.write_all(&[0]).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn slowloris(addr: SocketAddr, connections: u64, until: Instant) -> String {
    let mut stalled = vec![0x80u8; FRAME_BYTES as usize + 3];
    stalled[..4].copy_from_slice(&(FRAME_BYTES as u32).to_be_bytes());
    let stalled = Arc::new(stalled);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let stalled = stalled.clone();
            tokio::spawn(async move {
                let mut opened = 0u64;
                while !left(until).is_zero() {
                    let Some(mut stream) = connect(addr).await else { continue };
                    opened += 1;
                    // Every byte but the last; the broker reads as its budget
                    // allows and closes the connection at its frame deadline.
                    let _ = timeout(left(until), stream.write_all(&stalled)).await;
                    let _ = timeout(left(until), read_frame(&mut stream, left(until))).await;
                }
                opened
            })
        })
        .collect();
    let mut opened = 0;
    for task in tasks {
        opened += task.await.unwrap_or(0);
    }
    format!("{opened} connections each announcing {} MiB and stalling one byte short", FRAME_BYTES >> 20)
}

/// Connections sending amplification frames at once.
const AMPLIFIERS: u64 = 4;

/// A produce frame of `max_frame_bytes` holding only empty records.
fn amplification_frame() -> Vec<u8> {
    let head = request(2, "produce", &[("topic", TOPIC.into()), ("partition", 0.into())]);
    // The map gets one more entry: `records`, an array32 of empty maps.
    let mut payload = Vec::with_capacity(FRAME_BYTES as usize);
    let (_, fields) = head.split_at(1);
    let entries = (head[0] & 0x0f) + 1;
    payload.push(0x80 | entries);
    payload.extend_from_slice(fields);
    payload.push(0xa7);
    payload.extend_from_slice(b"records");
    let count = FRAME_BYTES as usize - payload.len() - 5;
    payload.push(0xdd);
    payload.extend_from_slice(&(count as u32).to_be_bytes());
    payload.resize(payload.len() + count, 0x80);
    frame(&payload)
}

async fn amplification(addr: SocketAddr, until: Instant) -> String {
    let produce = Arc::new(amplification_frame());
    let tasks: Vec<_> = (0..AMPLIFIERS)
        .map(|_| {
            let produce = produce.clone();
            tokio::spawn(async move {
                let (mut sent, mut refused) = (0u64, 0u64);
                while !left(until).is_zero() {
                    let Some(mut stream) = connect(addr).await else { continue };
                    while !left(until).is_zero() {
                        if stream.write_all(&produce).await.is_err() {
                            break;
                        }
                        sent += 1;
                        match read_frame(&mut stream, Duration::from_secs(30)).await {
                            Some(response) => refused += u64::from(error_code(&response) == Some(42)),
                            None => break,
                        }
                    }
                }
                (sent, refused)
            })
        })
        .collect();
    let (mut sent, mut refused) = (0, 0);
    for task in tasks {
        let (s, r) = task.await.unwrap_or((0, 0));
        (sent, refused) = (sent + s, refused + r);
    }
    format!(
        "{sent} produce frames of {} MiB of empty records on {AMPLIFIERS} connections, {refused} refused INVALID_REQUEST",
        FRAME_BYTES >> 20
    )
}

async fn concurrent_produce(addr: SocketAddr, connections: u64, until: Instant) -> String {
    let records = vec![WireRecord { value: Some(Bytes::from(vec![b'v'; 1000])), ..WireRecord::default() }; 16_000];
    let body = ProduceRequest { topic: TOPIC.into(), partition: Some(0), acks: 1, records, batch: None };
    let payload = rmp_serde::to_vec_named(&RequestEnvelope { correlation_id: 2, op: op::PRODUCE, body }).unwrap();
    let produce = Arc::new(frame(&payload));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let produce = produce.clone();
            tokio::spawn(async move {
                let mut answered = 0u64;
                let Some(mut stream) = connect(addr).await else { return 0 };
                while !left(until).is_zero() {
                    if stream.write_all(&produce).await.is_err() {
                        break;
                    }
                    if read_frame(&mut stream, Duration::from_secs(60)).await.is_none() {
                        break;
                    }
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        answered += task.await.unwrap_or(0);
    }
    format!(
        "{answered} produce requests of 16,000 × 1 KB ({} MB each) answered (MESSAGE_TOO_LARGE: a 16 MB batch passes max_message_bytes)",
        produce.len() / 1_000_000
    )
}

/// A valid request to mutate: the operations that neither create nor delete
/// anything, so that a mutation cannot fill the disk or the broker.
fn valid_request(rng: &mut Rng, id: u32) -> Vec<u8> {
    let topic = Value::from(TOPIC);
    match rng.between(0, 4) {
        0 => request(
            id,
            "produce",
            &[
                ("topic", topic),
                ("partition", 0.into()),
                ("records", Value::Array(vec![crate::raw::map(&[("value", Value::Binary(b"mutated".to_vec()))])])),
            ],
        ),
        1 => request(
            id,
            "fetch",
            &[("topic", topic), ("partition", 0.into()), ("offset", 0.into()), ("max_bytes", 4096.into())],
        ),
        2 => request(id, "list_offsets", &[("topic", topic), ("partition", 0.into()), ("timestamp", (-1).into())]),
        3 => request(id, "describe_topic", &[("topic", topic)]),
        _ => request(id, "list_topics", &[]),
    }
}

/// One hostile frame: random bytes, or a valid request with a few bytes
/// flipped, a cut, or an inserted run.
fn hostile_frame(rng: &mut Rng, id: u32) -> Vec<u8> {
    if rng.between(0, 3) == 0 {
        let length = rng.between(1, 4096) as usize;
        return frame(&(0..length).map(|_| rng.next() as u8).collect::<Vec<u8>>());
    }
    let mut payload = valid_request(rng, id);
    match rng.between(0, 2) {
        0 => {
            for _ in 0..rng.between(1, 4) {
                let at = rng.between(0, payload.len() as u64 - 1) as usize;
                payload[at] ^= 1 << rng.between(0, 7);
            }
        }
        1 => payload.truncate(rng.between(0, payload.len() as u64 - 1) as usize),
        _ => {
            let at = rng.between(0, payload.len() as u64) as usize;
            let run: Vec<u8> = (0..rng.between(1, 16)).map(|_| rng.next() as u8).collect();
            payload.splice(at..at, run);
        }
    }
    frame(&payload)
}

async fn random_frames(addr: SocketAddr, seed: u64, until: Instant) -> String {
    let mut rng = Rng::new(seed);
    let (mut frames, mut responses, mut closed) = (0u64, 0u64, 0u64);
    while !left(until).is_zero() {
        let Some(mut stream) = connect(addr).await else { continue };
        let batch: Vec<u8> = (0..50).flat_map(|n| hostile_frame(&mut rng, n + 2)).collect();
        frames += 50;
        if stream.write_all(&batch).await.is_err() {
            closed += 1;
            continue;
        }
        // Answers until the broker has nothing more to say on this
        // connection, or closes it (a framing error, or a frame the random
        // bytes left incomplete, closed at the frame deadline).
        while read_frame(&mut stream, Duration::from_millis(200)).await.is_some() {
            responses += 1;
        }
        let mut probe = [0u8; 1];
        if matches!(timeout(Duration::from_millis(10), stream.read(&mut probe)).await, Ok(Ok(0)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    format!("{frames} random or mutated frames, {responses} answers, {closed} connections closed by the broker")
}
