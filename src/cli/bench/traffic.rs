//! Bytes per record of a produce or consume run, to see what compression
//! saves: the record batches on the wire, from the broker's
//! `herald_produced_bytes` / `herald_fetched_bytes` of the topic (scraped from
//! `/metrics`, as the fsyncs are), and on disk, from the topic's partitions'
//! `size_bytes`. Batches travel and are stored as the producer made them, so
//! the two differ by the indexes and by batches fetched twice; each request's
//! frame adds some tens of bytes on the wire that neither counts.

use serde::Serialize;

use super::Outcome;

/// The counter of batch bytes appended to a topic.
pub(super) const PRODUCED: &str = "herald_produced_bytes";
/// The counter of batch bytes read for a topic's fetches.
pub(super) const FETCHED: &str = "herald_fetched_bytes";

/// Bytes per record of one run; `None` where a figure could not be read.
#[derive(Debug, Serialize)]
pub(super) struct Traffic {
    pub wire_bytes_per_record: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bytes_per_record: Option<f64>,
}

impl Traffic {
    pub fn line(&self) -> String {
        let figure = |v: Option<f64>| v.map_or_else(|| "unknown".to_string(), |v| format!("{v:.1}"));
        let disk = self.disk_bytes_per_record.map_or_else(String::new, |v| format!(", on disk {v:.1}"));
        format!("bytes per record: batches on the wire {}{disk}", figure(self.wire_bytes_per_record))
    }
}

/// The counter `name` of `topic` now, from the broker's `/metrics` at `http`.
pub(super) async fn counter(http: &str, name: &str, topic: &str) -> Option<u64> {
    let (status, body) = herald::http::get::get(http, "/metrics", std::time::Duration::from_secs(5)).await.ok()?;
    (status == 200).then(|| topic_counter(&body, name, topic)).flatten()
}

/// Bytes of the topic's partitions on disk now.
pub(super) async fn on_disk(client: &herald::client::Client, topic: &str) -> Outcome<u64> {
    Ok(client.describe_topic(topic).await?.partitions.iter().map(|p| p.size_bytes).sum())
}

/// Per record, between two readings.
pub(super) fn per_record(before: Option<u64>, after: Option<u64>, records: u64) -> Option<f64> {
    Some(after?.saturating_sub(before?) as f64 / records.max(1) as f64)
}

/// The sample of counter `name` (exported with or without `_total`) labelled
/// with `topic`, in a Prometheus text exposition.
fn topic_counter(metrics: &str, name: &str, topic: &str) -> Option<u64> {
    let label = format!("topic=\"{topic}\"");
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix("_total").unwrap_or(rest);
        let (labels, value) = rest.strip_prefix('{')?.split_once('}')?;
        labels.split(',').any(|l| l == label).then(|| value.trim().parse::<f64>().ok()).flatten().map(|v| v as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_of_the_named_topic_is_read_and_no_other() {
        let text = "# TYPE herald_produced_bytes counter\n\
                    herald_produced_bytes_total{topic=\"other\"} 5\n\
                    herald_produced_bytes_total{topic=\"t\"} 1234\n\
                    herald_produced_records_total{topic=\"t\"} 9\n";
        assert_eq!(topic_counter(text, PRODUCED, "t"), Some(1234));
        assert_eq!(topic_counter(text, PRODUCED, "other"), Some(5));
        assert_eq!(topic_counter(text, PRODUCED, "missing"), None);
        assert_eq!(topic_counter(text, FETCHED, "t"), None);
        assert_eq!(per_record(Some(100), Some(1100), 10), Some(100.0));
        assert_eq!(per_record(None, Some(1100), 10), None);
    }
}
