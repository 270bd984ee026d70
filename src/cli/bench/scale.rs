//! `herald bench --mode scale`: many topics and partitions, and many
//! connections, on one broker. It creates `--topics` topics of
//! `--partitions` partitions (`PREFIX-N`; those that exist are kept), produces
//! one record to every partition, reads every partition back and checks what
//! it holds (every record names its partition; the new one is where its
//! produce said), then opens `--connections` connections at once, holds them
//! all, and has each produce a record and fetch it back.
//!
//! Run it again after a restart and it checks that the earlier runs' records
//! are all still there. `scripts/bench-scale.sh` drives the broker around it
//! (memory, restart to ready).

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use herald::client::Client;
use herald::protocol::{FetchRequest, WireRecord};
use serde::Serialize;

use super::stats::Latency;
use super::Outcome;

/// Connections the create, produce and fetch phases spread their requests
/// over, each with `in_flight` requests at once.
const WORKERS: usize = 4;

/// What one scale run does.
pub(super) struct ScalePlan {
    pub broker: String,
    /// How to connect: the CLI's timeouts and TLS.
    pub connect: herald::client::ConnectOptions,
    pub prefix: String,
    pub topics: u32,
    pub partitions: u32,
    pub connections: usize,
    pub in_flight: usize,
}

/// What one scale run measured.
#[derive(Debug, Serialize)]
pub(super) struct ScaleReport {
    pub topics: u32,
    pub partitions: u64,
    /// Topics this run created (the others existed).
    pub created_topics: u64,
    pub create_seconds: f64,
    pub produce_seconds: f64,
    pub fetch_seconds: f64,
    /// Records read back and checked, over every partition.
    pub checked_records: u64,
    pub connections: usize,
    /// From the first connect to the last handshake answered.
    pub connect_seconds: f64,
    /// Every connection's produce and fetch, all at once.
    pub connection_round_seconds: f64,
    /// One connection's produce and fetch of its own record.
    pub connection_latency: Latency,
}

impl ScaleReport {
    pub fn lines(&self) -> Vec<String> {
        let rate = |seconds: f64| self.partitions as f64 / seconds.max(1e-9);
        vec![
            format!(
                "{} topics, {} partitions: created {} topics in {:.2} s",
                self.topics, self.partitions, self.created_topics, self.create_seconds
            ),
            format!(
                "produce to every partition: {:.2} s ({:.0} partitions/s)",
                self.produce_seconds,
                rate(self.produce_seconds)
            ),
            format!(
                "fetch and check every partition: {:.2} s ({:.0} partitions/s), {} records checked",
                self.fetch_seconds,
                rate(self.fetch_seconds),
                self.checked_records
            ),
            format!(
                "{} connections at once: connected in {:.2} s, each produced and fetched in {:.2} s; per connection {}",
                self.connections,
                self.connect_seconds,
                self.connection_round_seconds,
                self.connection_latency.line()
            ),
        ]
    }
}

fn topic_name(plan: &ScalePlan, topic: u32) -> String {
    format!("{}-{topic}", plan.prefix)
}

/// The value of the record that `run` produces to a partition: it names
/// the partition, so that a record read from the wrong one shows.
fn value_of(topic: &str, partition: u32, run: &str) -> String {
    format!("{topic}/{partition}/{run}")
}

fn record(value: String) -> WireRecord {
    WireRecord { key: None, value: Some(value.into_bytes().into()), headers: Vec::new(), timestamp: None }
}

async fn connect(plan: &ScalePlan, name: &str) -> Outcome<Client> {
    let broker = plan.broker.as_str();
    Client::connect_with_options(broker, name, plan.connect.clone())
        .await
        .map_err(|err| format!("cannot reach the broker at {broker}: {err}").into())
}

/// Runs `each` on every item, over [`WORKERS`] connections with `in_flight`
/// requests each at once; returns the results in no particular order.
async fn spread<I, T, F, Fut>(plan: &ScalePlan, items: Vec<I>, each: F) -> Outcome<Vec<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(Client, I) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome<T>> + Send,
{
    let mut shares: Vec<Vec<I>> = (0..WORKERS).map(|_| Vec::new()).collect();
    for (n, item) in items.into_iter().enumerate() {
        shares[n % WORKERS].push(item);
    }
    let mut tasks = Vec::new();
    for (w, share) in shares.into_iter().enumerate() {
        let client = connect(plan, &format!("herald-bench-scale-{w}")).await?;
        let (each, in_flight) = (each.clone(), plan.in_flight.max(1));
        tasks.push(tokio::spawn(async move {
            stream::iter(share.into_iter().map(|item| each(client.clone(), item)))
                .buffer_unordered(in_flight)
                .try_collect::<Vec<T>>()
                .await
                .map_err(|err| err.to_string())
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.extend(task.await.map_err(|err| err.to_string())??);
    }
    Ok(out)
}

pub(super) async fn run(plan: &ScalePlan) -> Outcome<ScaleReport> {
    let run = herald_actors::now_ms().to_string();
    let started = Instant::now();
    let (partitions, topics) = (plan.partitions.max(1), plan.topics.max(1));
    let names: Vec<String> = (0..topics).map(|t| topic_name(plan, t)).collect();
    let created = spread(plan, names.clone(), move |client, topic: String| async move {
        match client.create_topic(&topic, i64::from(partitions), Default::default()).await {
            Ok(()) => Ok(1u64),
            Err(err) if err.code() == Some(36) => Ok(0),
            Err(err) => Err(format!("create {topic}: {err}").into()),
        }
    })
    .await?;
    let create_seconds = started.elapsed().as_secs_f64();

    let every: Vec<(String, u32)> = names.iter().flat_map(|t| (0..partitions).map(move |p| (t.clone(), p))).collect();
    let started = Instant::now();
    let run_id = run.clone();
    let produced = spread(plan, every, move |client, (topic, partition)| {
        let value = value_of(&topic, partition, &run_id);
        async move {
            let answer = client.produce(&topic, Some(partition), vec![record(value)]).await;
            let answer = answer.map_err(|err| format!("produce to {topic}/{partition}: {err}"))?;
            let offset = answer.first().map(|p| p.base_offset).ok_or("an empty produce answer")?;
            Ok((topic, partition, offset))
        }
    })
    .await?;
    let produce_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let run_id = run.clone();
    let checked = spread(plan, produced, move |client, (topic, partition, offset)| {
        let run_id = run_id.clone();
        async move { check_partition(&client, &topic, partition, offset, &run_id).await }
    })
    .await?;
    let fetch_seconds = started.elapsed().as_secs_f64();

    let (connect_seconds, connection_round_seconds, latencies) = many_connections(plan, &names, &run).await?;
    Ok(ScaleReport {
        topics,
        partitions: u64::from(topics) * u64::from(partitions),
        created_topics: created.iter().sum(),
        create_seconds,
        produce_seconds,
        fetch_seconds,
        checked_records: checked.iter().sum(),
        connections: plan.connections,
        connect_seconds,
        connection_round_seconds,
        connection_latency: Latency::of(latencies),
    })
}

/// Reads a whole partition and checks it: every record names this
/// partition, the offsets follow each other from the log start to the high
/// watermark, and this run's record is at `offset`. Returns the records read.
async fn check_partition(client: &Client, topic: &str, partition: u32, offset: i64, run: &str) -> Outcome<u64> {
    let wrong =
        |what: String| -> Box<dyn std::error::Error + Send + Sync> { format!("{topic}/{partition}: {what}").into() };
    let prefix = value_of(topic, partition, "");
    let (mut next, mut read, mut found) = (None, 0u64, false);
    loop {
        let from = next.unwrap_or(0);
        let fetched =
            client.fetch(&FetchRequest::at_once(topic, partition, from)).await.map_err(|err| wrong(err.to_string()))?;
        let mut expected = next.unwrap_or(fetched.log_start_offset);
        for r in &fetched.records {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            if r.offset != expected || !value.starts_with(&prefix) {
                return Err(wrong(format!(
                    "offset {} holds `{value}`, expected offset {expected} and `{prefix}…`",
                    r.offset
                )));
            }
            found |= r.offset == offset && value == value_of(topic, partition, run);
            expected += 1;
            read += 1;
        }
        next = Some(expected);
        if expected >= fetched.high_watermark {
            break;
        }
        if fetched.records.is_empty() {
            return Err(wrong(format!("nothing at {expected} below the high watermark {}", fetched.high_watermark)));
        }
    }
    if !found {
        return Err(wrong(format!("this run's record is not at offset {offset}")));
    }
    Ok(read)
}

/// Opens `plan.connections` connections at once and holds them; then each
/// produces a record and fetches it back, all at once. Returns the seconds
/// to connect them all, the seconds of the round, and each one's latency.
async fn many_connections(plan: &ScalePlan, topics: &[String], run: &str) -> Outcome<(f64, f64, Vec<Duration>)> {
    let started = Instant::now();
    let clients = futures::future::try_join_all(
        (0..plan.connections).map(|n| async move { connect(plan, &format!("herald-bench-conn-{n}")).await }),
    )
    .await?;
    let connect_seconds = started.elapsed().as_secs_f64();
    let partitions = plan.partitions.max(1);
    let started = Instant::now();
    let rounds = clients.iter().enumerate().map(|(n, client)| {
        let topic = &topics[n % topics.len()];
        let partition = (n / topics.len()) as u32 % partitions;
        let value = format!("{}connection {n}", value_of(topic, partition, run));
        async move {
            let sent = Instant::now();
            let answer = client.produce(topic, Some(partition), vec![record(value.clone())]).await;
            let answer = answer.map_err(|err| format!("connection {n}: produce to {topic}/{partition}: {err}"))?;
            let offset = answer.first().map(|p| p.base_offset).ok_or("an empty produce answer")?;
            let fetched = client.fetch(&FetchRequest::at_once(topic, partition, offset)).await;
            let fetched = fetched.map_err(|err| format!("connection {n}: fetch {topic}/{partition}: {err}"))?;
            let got = fetched.records.first().filter(|r| r.offset == offset).and_then(|r| r.value.clone());
            if got.as_deref() != Some(value.as_bytes()) {
                return Err(
                    format!("connection {n}: {topic}/{partition} at {offset} does not hold what it produced").into()
                );
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(sent.elapsed())
        }
    });
    let latencies = futures::future::try_join_all(rounds).await?;
    let round_seconds = started.elapsed().as_secs_f64();
    drop(clients);
    Ok((connect_seconds, round_seconds, latencies))
}
