//! The consume side of `herald bench`: `--consumers` connections, each
//! reading its share of the topic's partitions from the start to the end
//! offsets they had when the phase began.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use herald::client::{Client, Consumer, ConsumerConfig, StartOffset};

use super::Outcome;

/// What one consume run reads.
#[derive(Debug, Clone)]
pub(super) struct ConsumePlan {
    pub broker: String,
    /// How to connect: the CLI's timeouts and TLS.
    pub connect: herald::client::ConnectOptions,
    pub topic: String,
    pub partitions: u32,
    pub consumers: usize,
    pub fetch_max_bytes: u64,
}

/// Records and value bytes read.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Consumed {
    pub records: u64,
    pub bytes: u64,
}

/// The records the topic holds now, counted from each partition's start: what
/// [`run`] will read.
pub(super) async fn records_to_read(client: &Client, topic: &str, partitions: u32) -> Outcome<u64> {
    let mut total = 0;
    for partition in 0..partitions {
        let end = client.list_offsets(topic, partition, -1).await?;
        let start = client.list_offsets(topic, partition, -2).await?;
        total += u64::try_from(end - start).unwrap_or(0);
    }
    Ok(total)
}

/// Reads every partition to the end offset it had when called; `done` counts
/// records as they arrive.
pub(super) async fn run(plan: &ConsumePlan, done: Arc<AtomicU64>) -> Outcome<Consumed> {
    let consumers = plan.consumers.clamp(1, plan.partitions.max(1) as usize);
    let mut tasks = Vec::new();
    for index in 0..consumers {
        let mine: Vec<u32> = (0..plan.partitions).filter(|p| *p as usize % consumers == index).collect();
        let (plan, done) = (plan.clone(), done.clone());
        tasks.push(tokio::spawn(async move { read(&plan, mine, &done).await.map_err(|err| err.to_string()) }));
    }
    let mut total = Consumed::default();
    for task in tasks {
        let part = task.await.map_err(|err| err.to_string())??;
        total.records += part.records;
        total.bytes += part.bytes;
    }
    Ok(total)
}

async fn read(plan: &ConsumePlan, partitions: Vec<u32>, done: &AtomicU64) -> Outcome<Consumed> {
    let client = Client::connect_with_options(plan.broker.as_str(), "herald-bench", plan.connect.clone()).await?;
    let mut wanted = 0u64;
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig { max_bytes: plan.fetch_max_bytes, max_wait_ms: 100, min_bytes: 1 },
    );
    for partition in &partitions {
        let end = client.list_offsets(&plan.topic, *partition, -1).await?;
        let start = consumer.assign(&plan.topic, *partition, StartOffset::Earliest).await?;
        wanted += u64::try_from(end - start).unwrap_or(0);
    }
    let mut got = Consumed::default();
    while got.records < wanted {
        let records = consumer.poll().await?;
        got.records += records.len() as u64;
        got.bytes += records.iter().map(|r| r.record.value.as_ref().map_or(0, |v| v.len() as u64)).sum::<u64>();
        done.fetch_add(records.len() as u64, Ordering::Relaxed);
    }
    Ok(got)
}
