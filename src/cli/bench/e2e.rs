//! End-to-end latency for `herald bench --mode e2e`: a producer sends records
//! at a fixed rate, each carrying the time it was handed to the producer, and
//! a long-polling consumer on another connection measures when each arrives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
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
    let client = Client::connect_with_options(plan.broker.as_str(), "herald-bench", plan.connect.clone()).await?;
    let mut consumer = Consumer::new(client, ConsumerConfig { max_bytes: 4 << 20, max_wait_ms: 500, min_bytes: 1 });
    consumer.assign_all(&plan.topic, StartOffset::Latest).await?;
    let records = plan.records;
    let plan_topic = plan.topic.clone();
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

    let client = Client::connect_with_options(plan.broker.as_str(), "herald-bench", plan.connect.clone()).await?;
    let producer = Arc::new(Producer::new(client, plan.producer_config()));
    let padding = pattern(plan.record_size.saturating_sub(8));
    // Records are sent evenly spaced, from a thread of their own that sleeps
    // between them: the runtime's timers tick by the millisecond, which
    // would send them in bursts whose last records wait behind the first.
    let runtime = tokio::runtime::Handle::current();
    let sender = Arc::clone(&producer);
    let sending = tokio::task::spawn_blocking(move || -> Result<Vec<_>, String> {
        let mut answers = Vec::with_capacity(records as usize);
        let started = Instant::now();
        for n in 0..records {
            let due = started + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut value = BytesMut::with_capacity(8 + padding.len());
            value.put_u64(epoch.elapsed().as_nanos() as u64);
            value.put_slice(&padding);
            let record = WireRecord { key: None, value: Some(value.freeze()), headers: Vec::new(), timestamp: None };
            let answer = runtime.block_on(sender.send(&plan_topic, None, record)).map_err(|err| err.to_string())?;
            answers.push(answer);
        }
        Ok(answers)
    });
    let answers = sending.await.map_err(|err| err.to_string())??;
    producer.flush().await?;
    for answer in answers {
        answer.await??;
    }
    Ok(consuming.await.map_err(|err| err.to_string())??)
}
