//! `herald bench`: produce N records through the batching producer, then
//! consume them all, and report throughput and acknowledgement latency.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use herald::client::{Consumer, ConsumerConfig, Producer, ProducerConfig, StartOffset};
use herald::protocol::WireRecord;
use serde::Serialize;

use super::{BrokerArgs, CliResult};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Records to produce.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Partitions of the benchmark topic (created if missing).
    #[arg(long, default_value_t = 6)]
    partitions: i64,
    /// Topic to use; a fresh one by default.
    #[arg(long)]
    topic: Option<String>,
    /// Producer linger, in ms.
    #[arg(long, default_value_t = 2)]
    linger_ms: u64,
    /// Records per produce batch, at most.
    #[arg(long, default_value_t = 5_000)]
    batch_records: usize,
    /// Produce requests in flight at once.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

/// Throughput of one benchmark phase.
#[derive(Debug, Serialize)]
pub(super) struct Phase {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_second: f64,
    pub megabytes_per_second: f64,
}

impl Phase {
    pub(super) fn new(records: u64, bytes: u64, elapsed: Duration) -> Phase {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Phase {
            records,
            bytes,
            seconds,
            records_per_second: records as f64 / seconds,
            megabytes_per_second: bytes as f64 / seconds / 1e6,
        }
    }
}

#[derive(Debug, Serialize)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    topic: String,
    partitions: i64,
    record_size: usize,
    produce: Phase,
    produce_ack_latency: Latency,
    consume: Phase,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

pub async fn run(args: BenchArgs) -> CliResult {
    let client = args.broker.connect().await?;
    let topic = args.topic.clone().unwrap_or_else(|| format!("bench-{}", herald_actors::now_ms()));
    match client.create_topic(&topic, args.partitions, Default::default()).await {
        Ok(()) => {}
        Err(err) if err.code() == Some(36) => {}
        Err(err) => return Err(err.into()),
    }
    let value = Bytes::from((0..args.record_size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());

    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger_ms: args.linger_ms,
            batch_max_records: args.batch_records,
            batch_max_bytes: 4 << 20,
            acks: 1,
            max_in_flight: args.in_flight,
        },
    );
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(args.records as usize);
    let mut pending = FuturesUnordered::new();
    for _ in 0..args.records {
        let record = WireRecord { key: None, value: Some(value.clone()), headers: Vec::new(), timestamp: None };
        let sent_at = Instant::now();
        let answer = producer.send(&topic, None, record).await?;
        pending.push(async move { (answer.await, sent_at.elapsed()) });
        while let Some(Some((done, latency))) = futures::FutureExt::now_or_never(pending.next()) {
            done??;
            latencies.push(latency);
        }
    }
    producer.flush().await?;
    while let Some((done, latency)) = pending.next().await {
        done??;
        latencies.push(latency);
    }
    let produce = Phase::new(args.records, args.records * args.record_size as u64, started.elapsed());
    latencies.sort_unstable();
    let produce_ack_latency = Latency {
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        p999_ms: percentile(&latencies, 0.999),
        max_ms: percentile(&latencies, 1.0),
    };

    let mut consumer = Consumer::new(client, ConsumerConfig { max_bytes: 4 << 20, max_wait_ms: 100, min_bytes: 1 });
    consumer.assign_all(&topic, StartOffset::Earliest).await?;
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    while records < args.records {
        for r in consumer.poll().await? {
            records += 1;
            bytes += r.record.value.as_ref().map_or(0, |v| v.len() as u64);
        }
    }
    let consume = Phase::new(records, bytes, started.elapsed());

    let report = Report {
        topic,
        partitions: args.partitions,
        record_size: args.record_size,
        produce,
        produce_ack_latency,
        consume,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let p = &report.produce;
        let l = &report.produce_ack_latency;
        let c = &report.consume;
        println!(
            "topic {} ({} partitions), {} records of {} bytes",
            report.topic, report.partitions, p.records, report.record_size
        );
        println!(
            "produce: {:.0} records/s, {:.1} MB/s; ack latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            p.records_per_second, p.megabytes_per_second, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
        println!("consume: {:.0} records/s, {:.1} MB/s", c.records_per_second, c.megabytes_per_second);
    }
    Ok(())
}
