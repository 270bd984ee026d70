//! The cluster's history checker: what the producers were told against
//! the partitions read back after the faults. Pure: it knows nothing of
//! brokers; tests/cluster_faults.rs feeds it hand-made histories too.
//!
//! Without an idempotent producer a retried produce may be stored twice:
//! an attempt whose outcome is unknown (the connection closed, a timeout,
//! an error that may come after the append) may have stored the record.
//! So each sent record may appear as many times as it was acknowledged (0
//! or 1) plus its attempts of unknown outcome, and at least once if it was
//! acknowledged; a record acknowledged on its first attempt appears
//! exactly once.

use std::collections::{BTreeMap, HashMap};

/// One record a producer sent (every value unique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub value: String,
    pub partition: u32,
    /// The offset the broker acknowledged it at (`acks` -1), if it did.
    pub acked: Option<i64>,
    /// Its attempts of unknown outcome.
    pub unknown: u32,
}

/// Something the logs should never show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// An acknowledged record is in none of the places read.
    Lost { value: String, partition: u32, offset: i64 },
    /// An acknowledged record is stored, but not at its offset.
    Moved { value: String, partition: u32, acked_at: i64, found_at: Vec<(u32, i64)> },
    /// A record is stored more often than its attempts allow.
    Duplicated { value: String, places: Vec<(u32, i64)>, allowed: u32 },
    /// A record no producer sent.
    Unknown { value: String, partition: u32, offset: i64 },
    /// Two records were acknowledged at one offset.
    OffsetReused { partition: u32, offset: i64, values: Vec<String> },
    /// The offsets read jump or repeat: `expected` was next, `found` came.
    Gap { partition: u32, expected: i64, found: i64 },
}

/// Checks the partitions read back in full (`reads`: per partition, every
/// (offset, value) from its log start, in order) against what was sent.
pub fn check(sent: &[Sent], reads: &BTreeMap<u32, Vec<(i64, String)>>) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    let mut places: HashMap<&str, Vec<(u32, i64)>> = HashMap::new();
    for (&partition, records) in reads {
        let mut expected = records.first().map(|(o, _)| *o);
        for (offset, value) in records {
            if let Some(next) = expected.filter(|next| next != offset) {
                anomalies.push(Anomaly::Gap { partition, expected: next, found: *offset });
            }
            expected = Some(offset + 1);
            places.entry(value.as_str()).or_default().push((partition, *offset));
        }
    }
    let by_value: HashMap<&str, &Sent> = sent.iter().map(|s| (s.value.as_str(), s)).collect();
    for (value, spots) in &places {
        if !by_value.contains_key(value) {
            let (partition, offset) = spots[0];
            anomalies.push(Anomaly::Unknown { value: value.to_string(), partition, offset });
        }
    }
    let mut acked_at: BTreeMap<(u32, i64), Vec<String>> = BTreeMap::new();
    for s in sent {
        let spots = places.get(s.value.as_str()).cloned().unwrap_or_default();
        let allowed = u32::from(s.acked.is_some()) + s.unknown;
        if spots.len() as u32 > allowed {
            anomalies.push(Anomaly::Duplicated { value: s.value.clone(), places: spots.clone(), allowed });
        }
        let Some(offset) = s.acked else { continue };
        acked_at.entry((s.partition, offset)).or_default().push(s.value.clone());
        if spots.contains(&(s.partition, offset)) {
            continue;
        }
        if spots.is_empty() {
            anomalies.push(Anomaly::Lost { value: s.value.clone(), partition: s.partition, offset });
        } else {
            anomalies.push(Anomaly::Moved {
                value: s.value.clone(),
                partition: s.partition,
                acked_at: offset,
                found_at: spots,
            });
        }
    }
    for ((partition, offset), values) in acked_at {
        if values.len() > 1 {
            anomalies.push(Anomaly::OffsetReused { partition, offset, values });
        }
    }
    anomalies
}
