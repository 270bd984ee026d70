//! The fault-injection harness: a seeded schedule, and a pure checker of what
//! producers were told (acknowledgements) against what the log holds after
//! the faults.
//!
//! A scenario records every acknowledgement (value, partition, offset), reads
//! every partition back in full after its last fault, and hands both to
//! [`check_log`], which names every anomaly: an acknowledged record missing
//! or elsewhere, a value stored twice, a gap or a repeat in the offsets. The
//! checker knows nothing of brokers; its own tests below feed it hand-made
//! histories. Each scenario prints its seed and one line of figures; a
//! failing seed is rerun with `HERALD_FAULT_SEED=<seed>`.
//!
//! For consumer groups, [`group`] is the pure checker of what the members did
//! (processed at least once, one owner per partition, commits never
//! backwards), and [`members`] runs real group consumers that record it.
#![allow(dead_code)]

pub mod group;
pub mod members;
pub mod produce;

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

/// xorshift64*: small and deterministic, so a seed replays a schedule.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// The seed: `HERALD_FAULT_SEED` when set (to replay a run), else the clock.
pub fn seed() -> u64 {
    match std::env::var("HERALD_FAULT_SEED") {
        Ok(seed) => seed.trim().parse().expect("HERALD_FAULT_SEED is a number"),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1),
    }
}

/// A setting of a scenario from the environment (the long tier raises them).
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// The broker acknowledged `value` at `offset` of `partition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub value: String,
    pub partition: u32,
    pub offset: i64,
}

/// Something the log should never show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// An acknowledged record is not at its offset (nor anywhere).
    Lost { value: String, partition: u32, offset: i64 },
    /// An acknowledged record is stored, but at another offset.
    Moved { value: String, partition: u32, acked_at: i64, found_at: i64 },
    /// One value is stored more than once.
    Duplicated { value: String, places: Vec<(u32, i64)> },
    /// The offsets read jump: `expected` was next, `found` came.
    Gap { partition: u32, expected: i64, found: i64 },
}

/// Checks a log read back in full (`reads`: per partition, every (offset,
/// value) from the log start, in the order read) against the acknowledgements.
/// The log start of each partition is its first offset read; values that were
/// sent but never acknowledged may be there or not.
pub fn check_log(acks: &[Ack], reads: &BTreeMap<u32, Vec<(i64, String)>>) -> Vec<Anomaly> {
    let mut anomalies = Vec::new();
    let mut places: HashMap<&str, Vec<(u32, i64)>> = HashMap::new();
    let mut at: HashMap<(u32, i64), &str> = HashMap::new();
    for (&partition, records) in reads {
        let mut expected = records.first().map(|(o, _)| *o);
        for (offset, value) in records {
            if let Some(next) = expected {
                if *offset != next {
                    anomalies.push(Anomaly::Gap { partition, expected: next, found: *offset });
                }
            }
            expected = Some(offset + 1);
            places.entry(value.as_str()).or_default().push((partition, *offset));
            at.insert((partition, *offset), value.as_str());
        }
    }
    for (value, spots) in &places {
        if spots.len() > 1 {
            anomalies.push(Anomaly::Duplicated { value: value.to_string(), places: spots.clone() });
        }
    }
    for ack in acks {
        if at.get(&(ack.partition, ack.offset)) == Some(&ack.value.as_str()) {
            continue;
        }
        match places.get(ack.value.as_str()).and_then(|p| p.first()) {
            Some(&(partition, found_at)) if partition == ack.partition => {
                anomalies.push(Anomaly::Moved { value: ack.value.clone(), partition, acked_at: ack.offset, found_at })
            }
            _ => {
                anomalies.push(Anomaly::Lost { value: ack.value.clone(), partition: ack.partition, offset: ack.offset })
            }
        }
    }
    anomalies
}

pub use crate::common::quantile;

#[cfg(test)]
mod checker_tests {
    use super::*;

    fn ack(value: &str, partition: u32, offset: i64) -> Ack {
        Ack { value: value.into(), partition, offset }
    }

    fn log(partition: u32, start: i64, values: &[&str]) -> (u32, Vec<(i64, String)>) {
        (partition, values.iter().enumerate().map(|(i, v)| (start + i as i64, v.to_string())).collect())
    }

    #[test]
    fn a_log_holding_every_acknowledged_record_where_acknowledged_is_clean() {
        let reads = BTreeMap::from([log(0, 0, &["a", "b", "unacked"]), log(1, 5, &["c"])]);
        assert!(check_log(&[ack("a", 0, 0), ack("b", 0, 1), ack("c", 1, 5)], &reads).is_empty());
    }

    #[test]
    fn every_kind_of_anomaly_is_named() {
        let reads = BTreeMap::from([log(0, 0, &["a", "x", "b"]), (1, vec![(0, "c".into()), (2, "a".into())])]);
        let found = check_log(&[ack("a", 0, 0), ack("b", 0, 1), ack("lost", 1, 1)], &reads);
        assert!(found.contains(&Anomaly::Gap { partition: 1, expected: 1, found: 2 }), "{found:?}");
        assert!(found.iter().any(|a| matches!(a, Anomaly::Duplicated { value, .. } if value == "a")), "{found:?}");
        assert!(found.contains(&Anomaly::Moved { value: "b".into(), partition: 0, acked_at: 1, found_at: 2 }));
        assert!(found.contains(&Anomaly::Lost { value: "lost".into(), partition: 1, offset: 1 }), "{found:?}");
    }

    #[test]
    fn a_record_found_only_in_another_partition_is_lost_from_its_own() {
        let reads = BTreeMap::from([log(0, 0, &[]), log(1, 0, &["a"])]);
        assert_eq!(
            check_log(&[ack("a", 0, 0)], &reads),
            [Anomaly::Lost { value: "a".into(), partition: 0, offset: 0 }]
        );
    }

    #[test]
    fn a_seed_replays_its_schedule() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let first: Vec<u64> = (0..5).map(|_| a.between(10, 20)).collect();
        assert_eq!(first, (0..5).map(|_| b.between(10, 20)).collect::<Vec<_>>());
        assert!(first.iter().all(|n| (10..=20).contains(n)));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
    }
}
