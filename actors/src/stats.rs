//! Counters the actors bump on the data path, read by the broker's `/metrics`
//! (see `docs/operations.md`, "Metrics").
//!
//! Process-wide, like Prometheus' default registry: one broker per process.
//! Bumping is lock-free and allocation-free: a partition takes its topic's
//! [`TopicStats`] once, when it is created, and adds to its atomics on every
//! append and read; the fsync histogram and the rebalance count are atomics.
//! Only taking a topic's counters (once per partition actor) takes a lock.
//!
//! Label sets are bounded: past [`set_max_topics`] distinct topics, further
//! topics share the counters named [`OTHER`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::batch::{BatchHeader, MIN_HEADER_BYTES};

/// The label value that topics (or groups) past the cap are folded into.
pub const OTHER: &str = "_other";

/// Bytes and records into and out of one topic's partitions.
#[derive(Debug, Default)]
pub struct TopicStats {
    /// Bytes of record batches appended (as stored).
    pub produced_bytes: AtomicU64,
    /// Records appended.
    pub produced_records: AtomicU64,
    /// Bytes of record batches read for fetches (as stored).
    pub fetched_bytes: AtomicU64,
    /// Records in the whole batches read for fetches.
    pub fetched_records: AtomicU64,
    /// Bytes of segments the log cleaner read and rewrote.
    pub cleaned_bytes: AtomicU64,
    /// Records the log cleaner removed.
    pub cleaner_removed_records: AtomicU64,
    /// When a cleaning of one of the topic's partitions was last installed
    /// (ms since the epoch; 0 for never).
    pub last_clean_ms: AtomicU64,
}

impl TopicStats {
    /// An append of `bytes` holding `records` succeeded.
    pub fn produced(&self, bytes: usize, records: u32) {
        self.produced_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.produced_records.fetch_add(u64::from(records), Ordering::Relaxed);
    }

    /// A cleaning that read `bytes` and removed `records` was installed at `now_ms`.
    pub fn cleaned(&self, bytes: u64, records: u64, now_ms: i64) {
        self.cleaned_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.cleaner_removed_records.fetch_add(records, Ordering::Relaxed);
        self.last_clean_ms.store(u64::try_from(now_ms).unwrap_or(0), Ordering::Relaxed);
    }

    /// A read for a fetch returned `batches` (stored batches, the last one
    /// possibly cut short by `max_bytes`: its records are not counted).
    pub fn fetched(&self, batches: &[u8]) {
        if batches.is_empty() {
            return;
        }
        self.fetched_bytes.fetch_add(batches.len() as u64, Ordering::Relaxed);
        self.fetched_records.fetch_add(records_in(batches), Ordering::Relaxed);
    }
}

/// Records in the whole batches of `buf`, by their headers alone.
pub fn records_in(mut buf: &[u8]) -> u64 {
    let mut records = 0;
    while buf.len() >= MIN_HEADER_BYTES {
        let Ok(header) = BatchHeader::parse(buf) else { break };
        let total = header.total_bytes();
        if total > buf.len() {
            break;
        }
        records += u64::try_from(header.record_count).unwrap_or(0);
        buf = &buf[total..];
    }
    records
}

/// Every topic's counters, by name, at most `max` names plus [`OTHER`].
#[derive(Debug)]
struct Topics {
    by_name: Mutex<HashMap<Arc<str>, Arc<TopicStats>>>,
    max: AtomicUsize,
}

fn topics() -> &'static Topics {
    static TOPICS: OnceLock<Topics> = OnceLock::new();
    TOPICS.get_or_init(|| Topics { by_name: Mutex::new(HashMap::new()), max: AtomicUsize::new(1000) })
}

/// Sets the most topics counted under their own name (`http.metrics_max_label_sets`).
pub fn set_max_topics(max: usize) {
    topics().max.store(max, Ordering::Relaxed);
}

/// The counters of `topic`: its own while fewer than the cap are named,
/// else those of [`OTHER`]. Called once per partition actor, not per request.
pub fn topic(topic: &str) -> Arc<TopicStats> {
    let topics = topics();
    let mut by_name = topics.by_name.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(stats) = by_name.get(topic) {
        return stats.clone();
    }
    let named = by_name.keys().filter(|name| &***name != OTHER).count();
    let name: Arc<str> = if named < topics.max.load(Ordering::Relaxed) { topic.into() } else { OTHER.into() };
    by_name.entry(name).or_default().clone()
}

/// A copy of every topic's counters: (label, produced bytes, produced
/// records, fetched bytes, fetched records).
pub fn topic_snapshot() -> Vec<(String, [u64; 4])> {
    let by_name = topics().by_name.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out: Vec<(String, [u64; 4])> = by_name
        .iter()
        .map(|(name, s)| {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            (
                name.to_string(),
                [load(&s.produced_bytes), load(&s.produced_records), load(&s.fetched_bytes), load(&s.fetched_records)],
            )
        })
        .collect();
    out.sort();
    out
}

/// Per topic the log cleaner worked on: bytes cleaned, records removed, and
/// the last cleaning's time (ms since the epoch), sorted by topic name.
pub fn cleaner_snapshot() -> Vec<(String, [u64; 3])> {
    let by_name = topics().by_name.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out: Vec<(String, [u64; 3])> = by_name
        .iter()
        .filter(|(_, s)| load(&s.last_clean_ms) > 0)
        .map(|(name, s)| {
            (name.to_string(), [load(&s.cleaned_bytes), load(&s.cleaner_removed_records), load(&s.last_clean_ms)])
        })
        .collect();
    out.sort();
    out
}

/// Upper bounds of the latency histograms, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A latency histogram of atomics: observing is a few relaxed adds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is over every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// The sum of observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(took.as_nanos().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    /// (sum in seconds, count, (upper bound, observations in that bucket
    /// alone)); the encoder adds them up into Prometheus' cumulative buckets.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (n, in_bucket) in self.buckets.iter().enumerate() {
            let in_bucket = in_bucket.load(Ordering::Relaxed);
            count += in_bucket;
            buckets.push((LATENCY_BUCKETS.get(n).copied().unwrap_or(f64::INFINITY), in_bucket));
        }
        (self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9, count, buckets)
    }
}

/// How long each fsync of a segment or directory took.
pub fn fsync_seconds() -> &'static Histogram {
    static FSYNC: OnceLock<Histogram> = OnceLock::new();
    FSYNC.get_or_init(Histogram::default)
}

/// Rebalances started by any group (a generation begun).
pub static GROUP_REBALANCES: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{encode, Record};

    fn batch(n: usize) -> Vec<u8> {
        let records: Vec<Record> =
            (0..n).map(|_| Record { value: Some(bytes::Bytes::from_static(b"v")), ..Record::default() }).collect();
        encode(&records).expect("encode").to_vec()
    }

    #[test]
    fn records_are_counted_from_whole_batch_headers_only() {
        let mut two = batch(3);
        two.extend(batch(4));
        assert_eq!(records_in(&two), 7);
        assert_eq!(records_in(&two[..two.len() - 1]), 3, "a cut batch is not counted");
        assert_eq!(records_in(&[]), 0);
    }

    #[test]
    fn the_histogram_counts_each_bucket_and_sums_seconds() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 10.00305).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (0.0001, 1));
        assert_eq!(buckets[5], (0.005, 1));
        assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 3);
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
    }
}
