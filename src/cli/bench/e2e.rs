//! End-to-end latency for `herald bench --mode e2e`: a producer sends records
//! at a fixed rate, each carrying the time it was handed to the producer, and
//! a long-polling consumer on another connection measures when each arrives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use herald::client::{Client, Consumer, ConsumerConfig, Producer, StartOffset};
use herald::protocol::WireRecord;

use super::produce::{pattern, ProducePlan};
use super::Outcome;

/// How long the consumer waits for records it has not seen before giving up.
const STRAGGLER_WAIT: Duration = Duration::from_secs(30);

/// Sends `plan.records` records at `rate` per second and returns each one's
/// latency from the producer's `send` to the consumer's `poll`.
pub(super) async fn run(plan: &ProducePlan, rate: u64, done: Arc<AtomicU64>) -> Outcome<Vec<Duration>> {
    let epoch = Instant::now();
    let client = Client::connect(plan.broker.as_str(), "herald-bench").await?;
    let mut consumer = Consumer::new(client, ConsumerConfig { max_bytes: 4 << 20, max_wait_ms: 500, min_bytes: 1 });
    consumer.assign_all(&plan.topic, StartOffset::Latest).await?;
    let records = plan.records;
    let consuming = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(records as usize);
        let mut last_progress = Instant::now();
        while (latencies.len() as u64) < records {
            let polled = consumer.poll().await.map_err(|err| err.to_string())?;
            let now = epoch.elapsed();
            if polled.is_empty() && last_progress.elapsed() > STRAGGLER_WAIT {
                return Err(format!("{} of {records} records never arrived", records - latencies.len() as u64));
            }
            for record in polled {
                let value = record.record.value.unwrap_or_default();
                let sent = value.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default())).unwrap_or(0);
                latencies.push(now.saturating_sub(Duration::from_nanos(sent)));
                done.fetch_add(1, Ordering::Relaxed);
                last_progress = Instant::now();
            }
        }
        Ok(latencies)
    });

    let client = Client::connect(plan.broker.as_str(), "herald-bench").await?;
    let producer = Producer::new(client, plan.producer_config());
    let padding = pattern(plan.record_size.saturating_sub(8));
    let mut pending = FuturesUnordered::new();
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < records {
        // Everything due by now goes out; then wait for the next one's time.
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(records);
        while sent < due {
            let mut value = BytesMut::with_capacity(8 + padding.len());
            value.put_u64(epoch.elapsed().as_nanos() as u64);
            value.put_slice(&padding);
            let record = WireRecord { key: None, value: Some(value.freeze()), headers: Vec::new(), timestamp: None };
            pending.push(producer.send(&plan.topic, None, record).await?);
            sent += 1;
        }
        while let Some(Some(answer)) = futures::FutureExt::now_or_never(pending.next()) {
            answer??;
        }
        let next = Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
        tokio::time::sleep_until((started + next).into()).await;
    }
    producer.flush().await?;
    while let Some(answer) = pending.next().await {
        answer??;
    }
    Ok(consuming.await.map_err(|err| err.to_string())??)
}
