//! `herald bench`: throughput, latency percentiles and CPU per record of
//! produce, consume and end-to-end delivery against a running broker, and the
//! machine's loopback round trip to compare them with.
//!
//! Modes: `all` (produce, then consume what was produced: the default),
//! `produce`, `consume` (an existing topic, from its start), `e2e` (a
//! producer at `--rate` records/s and a long-polling consumer), `rtt` (no
//! broker), `scale` (`--topics` × `--partitions` partitions and
//! `--connections` connections, every one checked: see [`scale`]). CPU is read from `/proc` for this process and for the broker when
//! it runs on this machine (found by its listening port, or `--broker-pid`).
//! The produce phase reports the broker's fsyncs (per second, per request),
//! scraped from its HTTP listener's `/metrics` (`--http`) before and after.

mod consume;
mod e2e;
mod fsyncs;
mod payload;
mod produce;
mod rtt;
mod scale;
mod stats;
mod traffic;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use herald_actors::batch::Compression;
use serde::Serialize;

use self::consume::ConsumePlan;
use self::payload::Payload;
use self::produce::{ProducePlan, SendWith};
pub(super) use self::stats::Phase;
use self::stats::{CpuClock, CpuUsage, Latency};
use super::{BrokerArgs, CliResult, UsageError};

/// The result of the parts that run on spawned tasks.
type Outcome<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What `herald bench` measures.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Produce, then consume what was produced.
    All,
    Produce,
    /// Read an existing topic (`--topic`) from its start to its current end.
    Consume,
    /// End-to-end latency at `--rate` records/s.
    E2e,
    /// The loopback TCP round trip of this machine; `--records` round trips.
    Rtt,
    /// Many topics, partitions and connections, every one produced to and
    /// read back (`--topics`, `--partitions` each, `--connections`).
    Scale,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::All)]
    mode: Mode,
    /// Records to produce (round trips for `--mode rtt`).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Partitions of the benchmark topic (created if missing).
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// Topic to use; a fresh one by default.
    #[arg(long)]
    topic: Option<String>,
    /// How records are sent: through the batching `producer`, as one
    /// `requests` per batch, or as `raw` frames encoded once (the ceiling).
    #[arg(long, value_enum, default_value_t = SendWith::Producer)]
    send_with: SendWith,
    /// Producer linger, in ms (`producer` and `e2e`).
    #[arg(long, default_value_t = 2)]
    linger_ms: u64,
    /// Records per produce request, at most.
    #[arg(long, default_value_t = 5_000)]
    batch_records: usize,
    /// Produce requests in flight at once, per producer.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Producer connections; the records are split between them.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer connections; the partitions are split between them.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Bytes per fetch and partition, at most.
    #[arg(long, default_value_t = 4 << 20)]
    fetch_max_bytes: u64,
    /// acks of every produce request: 1 (or -1) waits for the broker's
    /// answer under its durability setting; 0 does not (`producer` only).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    acks: i64,
    /// Codec of the produced batches: none, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: Compression,
    /// What the record values hold: the same byte `pattern` in every record,
    /// `random` bytes, or JSON log lines (`text`), which compress as logs do.
    #[arg(long, value_enum, default_value_t = Payload::Pattern)]
    payload: Payload,
    /// Topics for `--mode scale` (named `--topic` or `scale`, then `-N`).
    #[arg(long, default_value_t = 1_000)]
    topics: u32,
    /// Connections held at once by `--mode scale`, each producing and
    /// fetching a record.
    #[arg(long, default_value_t = 1_000)]
    connections: usize,
    /// Records per second for `--mode e2e`.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// The broker's HTTP listener, to count its fsyncs from `/metrics`;
    /// default: the broker's host, port 9644.
    #[arg(long)]
    http: Option<String>,
    /// The broker's pid, to report its CPU; found by its port when omitted.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Never show the progress line (it shows only on a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Keep the topic the benchmark made (one named with --topic is always kept).
    #[arg(long)]
    keep_topic: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

/// One measured phase: throughput, latencies and CPU.
#[derive(Debug, Serialize)]
struct Measured {
    #[serde(flatten)]
    phase: Phase,
    /// Produce: per acknowledged record (`producer`) or request; e2e: per
    /// record from send to receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<Latency>,
    cpu: CpuUsage,
    /// Produce: the broker's fsyncs during the phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    fsyncs: Option<fsyncs::Fsyncs>,
    /// Produce and consume: bytes per record on the wire and on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    traffic: Option<traffic::Traffic>,
}

#[derive(Debug, Serialize)]
struct Report {
    mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    partitions: u32,
    record_size: usize,
    send_with: SendWith,
    batch_records: usize,
    in_flight: usize,
    producers: usize,
    consumers: usize,
    acks: i64,
    #[serde(serialize_with = "codec_name")]
    compression: Compression,
    payload: Payload,
    broker_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    produce: Option<Measured>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consume: Option<Measured>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e2e: Option<Measured>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scale: Option<scale::ScaleReport>,
}

pub async fn run(args: BenchArgs) -> CliResult {
    let mut report = Report {
        mode: args.mode,
        topic: None,
        partitions: args.partitions,
        record_size: args.record_size,
        send_with: args.send_with,
        batch_records: args.batch_records,
        in_flight: args.in_flight,
        producers: args.producers,
        consumers: args.consumers,
        acks: args.acks,
        compression: args.compression,
        payload: args.payload,
        broker_pid: None,
        produce: None,
        consume: None,
        e2e: None,
        rtt: None,
        scale: None,
    };
    if args.mode == Mode::Rtt {
        let rounds = args.records;
        let latencies = tokio::task::spawn_blocking(move || rtt::run(rounds).map_err(|e| e.to_string())).await??;
        report.rtt = Some(Latency::of(latencies));
        return print(&args, &report);
    }
    if args.send_with == SendWith::Raw && args.acks == 0 {
        return Err(UsageError("--send-with raw needs acknowledgements: use --acks 1 or -1".into()).into());
    }

    if args.mode == Mode::Scale {
        let plan = scale::ScalePlan {
            broker: args.broker.first().to_string(),
            connect: args.broker.connect_options(args.broker.first())?,
            prefix: args.topic.clone().unwrap_or_else(|| "scale".into()),
            topics: args.topics,
            partitions: args.partitions,
            connections: args.connections,
            in_flight: args.in_flight,
        };
        report.topic = Some(plan.prefix.clone());
        report.scale = Some(scale::run(&plan).await.map_err(|e| e.to_string())?);
        return print(&args, &report);
    }

    let client = args.broker.connect().await?;
    let address = resolve(&args.broker.broker);
    report.broker_pid = args.broker_pid.or_else(|| address.and_then(stats::broker_pid));
    let topic = match (&args.topic, args.mode) {
        (Some(topic), _) => topic.clone(),
        (None, Mode::Consume) => {
            return Err(UsageError("--mode consume reads an existing topic: name it with --topic".into()).into())
        }
        (None, _) => format!("bench-{}", herald_actors::now_ms()),
    };
    let partitions = if args.mode == Mode::Consume {
        client.describe_topic(&topic).await?.partitions.len() as u32
    } else {
        match client.create_topic(&topic, i64::from(args.partitions), Default::default()).await {
            Ok(()) => {}
            Err(err) if err.code() == Some(36) => {}
            Err(err) => return Err(err.into()),
        }
        client.describe_topic(&topic).await?.partitions.len() as u32
    };
    report.partitions = partitions;
    report.topic = Some(topic.clone());
    let plan = ProducePlan {
        broker: args.broker.first().to_string(),
        connect: args.broker.connect_options(args.broker.first())?,
        topic: topic.clone(),
        partitions,
        records: args.records,
        record_size: args.record_size,
        batch_records: args.batch_records,
        in_flight: args.in_flight,
        linger_ms: args.linger_ms,
        producers: args.producers,
        acks: args.acks,
        send_with: args.send_with,
        compression: args.compression,
        payload: args.payload,
    };
    let progress = !args.json && super::progress::Progress::wanted(args.no_progress);

    let measured = measure(&args, &plan, &client, progress, &mut report).await;
    if args.topic.is_none() && !args.keep_topic {
        client.delete_topic(&topic).await?;
    }
    measured?;
    print(&args, &report)
}

/// Runs the phases of `args.mode`, filling `report`.
async fn measure(
    args: &BenchArgs,
    plan: &ProducePlan,
    client: &herald::client::Client,
    progress: bool,
    report: &mut Report,
) -> CliResult {
    let topic = plan.topic.clone();
    let partitions = plan.partitions;
    if matches!(args.mode, Mode::All | Mode::Produce) {
        let done = Arc::new(AtomicU64::new(0));
        let shown = show_progress(progress, "produce", args.records, done.clone());
        let http = http_address(args);
        let fsyncs_before = fsyncs::count(&http).await;
        let wire_before = traffic::counter(&http, traffic::PRODUCED, &topic).await;
        let disk_before = traffic::on_disk(client, &topic).await.ok();
        let clock = CpuClock::start(report.broker_pid);
        let latencies = produce::run(plan, done).await.map_err(|e| e.to_string());
        let (elapsed, cpu) = (clock.elapsed(), clock.stop(args.records));
        shown.abort();
        let latencies = latencies?;
        let fsyncs_after = fsyncs::count(&http).await;
        let traffic = traffic::Traffic {
            wire_bytes_per_record: traffic::per_record(
                wire_before,
                traffic::counter(&http, traffic::PRODUCED, &topic).await,
                args.records,
            ),
            disk_bytes_per_record: traffic::per_record(
                disk_before,
                traffic::on_disk(client, &topic).await.ok(),
                args.records,
            ),
        };
        let phase = Phase::new(args.records, args.records * args.record_size as u64, elapsed);
        let fsyncs = fsyncs::Fsyncs::between(fsyncs_before, fsyncs_after, phase.seconds, args.records, plan.requests());
        report.produce = Some(Measured {
            phase,
            latency: (args.acks != 0).then(|| Latency::of(latencies)),
            cpu,
            fsyncs: Some(fsyncs),
            traffic: Some(traffic),
        });
    }
    if matches!(args.mode, Mode::All | Mode::Consume) {
        let consume_plan = ConsumePlan {
            broker: args.broker.first().to_string(),
            connect: args.broker.connect_options(args.broker.first())?,
            topic: topic.clone(),
            partitions,
            consumers: args.consumers,
            fetch_max_bytes: args.fetch_max_bytes,
        };
        let total = consume::records_to_read(client, &topic, partitions).await.map_err(|e| e.to_string())?;
        let done = Arc::new(AtomicU64::new(0));
        let shown = show_progress(progress, "consume", total, done.clone());
        let http = http_address(args);
        let wire_before = traffic::counter(&http, traffic::FETCHED, &topic).await;
        let clock = CpuClock::start(report.broker_pid);
        let consumed = consume::run(&consume_plan, done).await.map_err(|e| e.to_string());
        let elapsed = clock.elapsed();
        shown.abort();
        let consumed = consumed?;
        let wire_after = traffic::counter(&http, traffic::FETCHED, &topic).await;
        report.consume = Some(Measured {
            phase: Phase::new(consumed.records, consumed.bytes, elapsed),
            latency: None,
            cpu: clock.stop(consumed.records),
            fsyncs: None,
            traffic: Some(traffic::Traffic {
                wire_bytes_per_record: traffic::per_record(wire_before, wire_after, consumed.records),
                disk_bytes_per_record: None,
            }),
        });
    }
    measure_e2e(args, plan, progress, report).await
}

async fn measure_e2e(args: &BenchArgs, plan: &ProducePlan, progress: bool, report: &mut Report) -> CliResult {
    if args.mode == Mode::E2e {
        let done = Arc::new(AtomicU64::new(0));
        let shown = show_progress(progress, "e2e", args.records, done.clone());
        let clock = CpuClock::start(report.broker_pid);
        let latencies = e2e::run(plan, args.rate, done).await.map_err(|e| e.to_string());
        let (elapsed, cpu) = (clock.elapsed(), clock.stop(args.records));
        shown.abort();
        report.e2e = Some(Measured {
            phase: Phase::new(args.records, args.records * args.record_size as u64, elapsed),
            latency: Some(Latency::of(latencies?)),
            cpu,
            fsyncs: None,
            traffic: None,
        });
    }
    Ok(())
}

/// `--http`, or the broker's host with the HTTP listener's default port.
fn http_address(args: &BenchArgs) -> String {
    args.http.clone().unwrap_or_else(|| {
        let broker = args.broker.first();
        let host = broker.rsplit_once(':').map_or(broker, |(host, _)| host);
        format!("{host}:9644")
    })
}

fn resolve(broker: &str) -> Option<SocketAddr> {
    broker.to_socket_addrs().ok()?.next()
}

/// A line on standard error, rewritten every half second, while a phase runs.
fn show_progress(enabled: bool, label: &'static str, total: u64, done: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !enabled {
            return;
        }
        let progress = super::progress::Progress::records(true, label, Some(total));
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let done = done.load(Ordering::Relaxed);
            progress.set_position(done);
            if done >= total {
                progress.finish();
                return;
            }
        }
    })
}

fn print(args: &BenchArgs, report: &Report) -> CliResult {
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    if let Some(rtt) = &report.rtt {
        println!("loopback TCP round trip, 64 bytes: {}", rtt.line());
        return Ok(());
    }
    if let Some(scale) = &report.scale {
        scale.lines().iter().for_each(|line| println!("{line}"));
        return Ok(());
    }
    println!(
        "topic {} ({}), records of {} bytes ({}, compression {}), sent with {}: batches of {}, {} in flight, {}, acks {}",
        report.topic.as_deref().unwrap_or("-"),
        super::topic::plural(i64::from(report.partitions), "partition"),
        report.record_size,
        report.payload.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string()),
        report.compression.name(),
        report.send_with.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string()),
        report.batch_records,
        report.in_flight,
        super::topic::plural(report.producers as i64, "producer"),
        report.acks
    );
    let phase = |name: &str, m: &Measured, latency_name: &str| {
        let p = &m.phase;
        println!(
            "{name}: {} records in {:.2} s: {:.0} records/s, {:.1} MB/s",
            p.records, p.seconds, p.records_per_second, p.megabytes_per_second
        );
        if let Some(latency) = &m.latency {
            println!("  {latency_name}: {}", latency.line());
        }
        println!("  {}", m.cpu.line());
        if let Some(fsyncs) = &m.fsyncs {
            println!("  {}", fsyncs.line());
        }
        if let Some(traffic) = &m.traffic {
            println!("  {}", traffic.line());
        }
    };
    let per = if report.send_with == SendWith::Producer { "ack latency per record" } else { "ack latency per request" };
    if let Some(m) = &report.produce {
        phase("produce", m, per);
    }
    if let Some(m) = &report.consume {
        phase("consume", m, "");
    }
    if let Some(m) = &report.e2e {
        phase("end to end", m, "latency from send to receipt");
    }
    Ok(())
}

fn codec_name<S: serde::Serializer>(codec: &Compression, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(codec.name())
}
