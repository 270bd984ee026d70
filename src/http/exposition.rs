//! `/metrics`: every metric in the Prometheus text format (0.0.4), encoded by
//! `prometheus-client`.
//!
//! Counters come from the atomics of `herald_actors::stats` and
//! [`super::metrics`]; everything else is computed at scrape time, off the
//! data path: topics, partitions and segments from `describe_topic`, group lag
//! from `describe_group` (committed offsets against high watermarks), open
//! file descriptors from `/proc/self/fd`, disk use from a walk of the data
//! directory and free space from `statvfs`. The list is [`METRICS`], which
//! docs/operations.md must document (a test checks).

use std::path::Path;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use herald_actors::error::ErrorCode;
use herald_actors::stats::{self, OTHER};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::metrics::{frontend, Rejected};
use super::{api, HttpState};
use crate::protocol::OPERATIONS;

/// Every metric `/metrics` exports: (name as exported, type, help).
pub const METRICS: &[(&str, MetricType, &str)] = &[
    ("herald_produced_bytes", MetricType::Counter, "Bytes of record batches appended to the topic, as stored."),
    ("herald_produced_records", MetricType::Counter, "Records appended to the topic."),
    ("herald_fetched_bytes", MetricType::Counter, "Bytes of record batches read from the topic for fetches."),
    ("herald_fetched_records", MetricType::Counter, "Records in the whole batches read from the topic for fetches."),
    (
        "herald_cleaner_cleaned_bytes",
        MetricType::Counter,
        "Bytes of the topic's segments the log cleaner read and rewrote.",
    ),
    ("herald_cleaner_removed_records", MetricType::Counter, "Records of the topic the log cleaner removed."),
    (
        "herald_cleaner_last_clean_timestamp_seconds",
        MetricType::Gauge,
        "When a cleaning of one of the topic's partitions was last swapped in (seconds since the epoch).",
    ),
    ("herald_requests", MetricType::Counter, "Requests dispatched, by operation."),
    ("herald_request_errors", MetricType::Counter, "Requests answered with an error, by operation and error code."),
    ("herald_request_duration_seconds", MetricType::Histogram, "Time from dispatch to response, by operation."),
    ("herald_connections_open", MetricType::Gauge, "Client connections open."),
    ("herald_connections_accepted", MetricType::Counter, "Client connections accepted."),
    ("herald_rejected_frames", MetricType::Counter, "Frames or connections refused before dispatch, by reason."),
    ("herald_fsync_duration_seconds", MetricType::Histogram, "Time each fsync of a log file or directory took."),
    (
        "herald_group_lag_records",
        MetricType::Gauge,
        "Records between a group's committed offset and the high watermark.",
    ),
    ("herald_group_rebalances", MetricType::Counter, "Rebalances started by any group (new group epochs)."),
    ("herald_topics", MetricType::Gauge, "Topics."),
    ("herald_partitions", MetricType::Gauge, "Partitions of every topic."),
    ("herald_segments", MetricType::Gauge, "Log segments of every partition."),
    ("herald_open_fds", MetricType::Gauge, "Open file descriptors of the process."),
    ("herald_disk_used_bytes", MetricType::Gauge, "Bytes of the files in the data directory."),
    ("herald_disk_free_bytes", MetricType::Gauge, "Bytes free for the broker on the data directory's file system."),
    ("herald_uptime_seconds", MetricType::Gauge, "Seconds since the broker started."),
    ("herald_ready", MetricType::Gauge, "1 when /readyz answers 200, else 0."),
];

/// A sample's value.
#[derive(Debug, Clone)]
enum Value {
    Counter(u64),
    Gauge(i64),
    Histogram { sum: f64, count: u64, buckets: Vec<(f64, u64)> },
}

type Labels = Vec<(&'static str, String)>;

/// Every sample of one scrape, by metric name.
#[derive(Debug, Default)]
struct Snapshot {
    samples: Vec<(&'static str, Labels, Value)>,
}

impl Snapshot {
    fn add(&mut self, name: &'static str, labels: Labels, value: Value) {
        self.samples.push((name, labels, value));
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for &(name, kind, help) in METRICS {
            let samples: Vec<_> = self.samples.iter().filter(|(n, _, _)| *n == name).collect();
            if samples.is_empty() {
                continue;
            }
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for (_, labels, value) in samples {
                let mut sample = metric.encode_family(labels)?;
                match value {
                    Value::Counter(v) => sample.encode_counter::<NoLabelSet, u64, u64>(v, None)?,
                    Value::Gauge(v) => sample.encode_gauge(v)?,
                    Value::Histogram { sum, count, buckets } => {
                        sample.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

fn histogram(h: &stats::Histogram) -> Value {
    let (sum, count, buckets) = h.snapshot();
    Value::Histogram { sum, count, buckets }
}

pub async fn metrics(state: web::Data<HttpState>) -> HttpResponse {
    let snapshot = scrape(&state).await;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut body = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut body, &registry) {
        Ok(()) => {
            HttpResponse::Ok().content_type(prometheus_client::encoding::prometheus_text::CONTENT_TYPE).body(body)
        }
        Err(err) => HttpResponse::InternalServerError().body(format!("cannot encode the metrics: {err}")),
    }
}

async fn scrape(state: &HttpState) -> Snapshot {
    let mut s = Snapshot::default();
    for (topic, [pb, pr, fb, fr]) in stats::topic_snapshot() {
        let labels = || vec![("topic", topic.clone())];
        s.add("herald_produced_bytes", labels(), Value::Counter(pb));
        s.add("herald_produced_records", labels(), Value::Counter(pr));
        s.add("herald_fetched_bytes", labels(), Value::Counter(fb));
        s.add("herald_fetched_records", labels(), Value::Counter(fr));
    }
    for (topic, [cleaned, removed, last_ms]) in stats::cleaner_snapshot() {
        let labels = || vec![("topic", topic.clone())];
        s.add("herald_cleaner_cleaned_bytes", labels(), Value::Counter(cleaned));
        s.add("herald_cleaner_removed_records", labels(), Value::Counter(removed));
        s.add("herald_cleaner_last_clean_timestamp_seconds", labels(), Value::Gauge((last_ms / 1000) as i64));
    }
    let frontend = frontend();
    for (op, counters) in OPERATIONS.iter().zip(&frontend.ops) {
        let requests = counters.requests.load(Ordering::Relaxed);
        if requests == 0 {
            continue;
        }
        let op_label = || vec![("op", op.name.to_string())];
        s.add("herald_requests", op_label(), Value::Counter(requests));
        s.add("herald_request_duration_seconds", op_label(), histogram(&counters.latency));
        for (code, errors) in ErrorCode::ALL.iter().zip(&counters.errors) {
            let errors = errors.load(Ordering::Relaxed);
            if errors > 0 {
                let labels = vec![("op", op.name.to_string()), ("error", code.name().to_string())];
                s.add("herald_request_errors", labels, Value::Counter(errors));
            }
        }
    }
    s.add("herald_connections_open", vec![], Value::Gauge(frontend.connections_open.load(Ordering::Relaxed) as i64));
    s.add("herald_connections_accepted", vec![], Value::Counter(frontend.connections_accepted.load(Ordering::Relaxed)));
    for (reason, count) in Rejected::ALL.iter().zip(&frontend.rejected) {
        let labels = vec![("reason", reason.label().to_string())];
        s.add("herald_rejected_frames", labels, Value::Counter(count.load(Ordering::Relaxed)));
    }
    s.add("herald_fsync_duration_seconds", vec![], histogram(stats::fsync_seconds()));
    s.add("herald_group_rebalances", vec![], Value::Counter(stats::GROUP_REBALANCES.load(Ordering::Relaxed)));
    if let Some(actors) = state.actors() {
        let cap = state.settings.http.metrics_max_label_sets as usize;
        actor_samples(&mut s, actors, cap).await;
    }
    if let Some(fds) = open_fds() {
        s.add("herald_open_fds", vec![], Value::Gauge(fds));
    }
    let data_dir = state.settings.storage.data_dir.clone();
    let (used, free) = web::block(move || (disk_used(&data_dir), disk_free(&data_dir))).await.unwrap_or((None, None));
    if let Some(used) = used {
        s.add("herald_disk_used_bytes", vec![], Value::Gauge(used as i64));
    }
    if let Some(free) = free {
        s.add("herald_disk_free_bytes", vec![], Value::Gauge(free as i64));
    }
    s.add("herald_uptime_seconds", vec![], Value::Gauge(state.started.elapsed().as_secs() as i64));
    s.add("herald_ready", vec![], Value::Gauge(i64::from(state.missing().is_empty())));
    s
}

/// Topics, partitions, segments and group lag, asked of the actors.
async fn actor_samples(s: &mut Snapshot, actors: &super::Actors, cap: usize) {
    let topics = api::list_topics(actors).await.unwrap_or_default();
    let (mut partitions, mut segments) = (0i64, 0i64);
    for topic in &topics.topics {
        partitions += i64::from(topic.partitions);
        if let Ok(described) = api::describe_topic(actors, &topic.topic).await {
            segments += described.partitions.iter().map(|p| p.segments as i64).sum::<i64>();
        }
    }
    s.add("herald_topics", vec![], Value::Gauge(topics.topics.len() as i64));
    s.add("herald_partitions", vec![], Value::Gauge(partitions));
    s.add("herald_segments", vec![], Value::Gauge(segments));
    let groups = api::list_groups(actors).await.unwrap_or_default();
    // Past the cap, groups' lag is added up per partition under `_other`.
    let mut lag: std::collections::BTreeMap<(String, String, u32), i64> = Default::default();
    let mut names: Vec<&str> = groups.groups.iter().map(|g| g.group_id.as_str()).collect();
    names.sort_unstable();
    for (n, group) in names.into_iter().enumerate() {
        let Ok(described) = api::describe_group(actors, group).await else { continue };
        let label = if n < cap { group.to_string() } else { OTHER.to_string() };
        for p in described.offsets {
            if let Some(l) = p.lag {
                *lag.entry((label.clone(), p.topic, p.partition)).or_default() += l;
            }
        }
    }
    for ((group, topic, partition), l) in lag {
        let labels = vec![("group", group), ("topic", topic), ("partition", partition.to_string())];
        s.add("herald_group_lag_records", labels, Value::Gauge(l));
    }
}

/// Entries of `/proc/self/fd`, less the one the listing itself holds open.
fn open_fds() -> Option<i64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count() as i64 - 1)
}

/// Bytes of every file under `dir`.
fn disk_used(dir: &Path) -> Option<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Some(total)
}

/// Bytes an unprivileged process may still write on `dir`'s file system.
fn disk_free(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut vfs = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string; statvfs fills `vfs` when it returns 0.
    if unsafe { libc::statvfs(path.as_ptr(), vfs.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: filled by the successful call above.
    let vfs = unsafe { vfs.assume_init() };
    Some(vfs.f_bavail.saturating_mul(vfs.f_frsize))
}

/// The data directory's bytes used and free, for `/api/v1/broker`.
pub async fn disk(dir: std::path::PathBuf) -> (Option<u64>, Option<u64>) {
    web::block(move || (disk_used(&dir), disk_free(&dir))).await.unwrap_or((None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_operations_documents_every_metric_exported() {
        let docs = include_str!("../../docs/operations.md");
        for (name, kind, _) in METRICS {
            let exported = match kind {
                MetricType::Counter => format!("{name}_total"),
                _ => name.to_string(),
            };
            assert!(docs.contains(&format!("`{exported}`")), "docs/operations.md does not document `{exported}`");
        }
    }

    #[test]
    fn every_metric_docs_operations_lists_is_exported() {
        let docs = include_str!("../../docs/operations.md");
        let exported: Vec<String> = METRICS
            .iter()
            .map(
                |(name, kind, _)| if *kind == MetricType::Counter { format!("{name}_total") } else { name.to_string() },
            )
            .collect();
        let listed: Vec<&str> =
            docs.lines().filter_map(|line| line.strip_prefix("| `herald_")?.split('`').next()).collect();
        assert!(listed.len() >= METRICS.len(), "{listed:?}");
        for name in listed {
            let name = format!("herald_{name}");
            assert!(exported.contains(&name), "docs/operations.md lists `{name}`, which /metrics does not export");
        }
    }

    #[test]
    fn every_metric_listed_is_encoded_with_its_type() {
        let mut s = Snapshot::default();
        for (name, kind, _) in METRICS {
            let value = match kind {
                MetricType::Counter => Value::Counter(1),
                MetricType::Histogram => histogram(&stats::Histogram::default()),
                _ => Value::Gauge(1),
            };
            s.add(name, vec![("topic", "t".into())], value);
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(s));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        for (name, kind, _) in METRICS {
            let (exported, kind) = match kind {
                MetricType::Counter => (format!("{name}_total"), "counter"),
                MetricType::Histogram => (name.to_string(), "histogram"),
                _ => (name.to_string(), "gauge"),
            };
            assert!(text.contains(&format!("# TYPE {exported} {kind}\n")), "{exported} missing:\n{text}");
        }
        assert!(text.contains("herald_fsync_duration_seconds_bucket{topic=\"t\",le=\"+Inf\"} 0"), "{text}");
    }
}
