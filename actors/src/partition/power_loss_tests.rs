//! Power loss under the log, on `FaultFs` (see `crate::fs::fault`): seeded
//! histories of appends, each cut by losing power at a random point (after
//! some appends, in the middle of a sync, with or without a torn last write),
//! then reopened as after an unclean shutdown.
//!
//! - `flush = always`: an append counts as acknowledged only once every file
//!   `take_unsynced` named was synced. Every acknowledged record must be
//!   served at its offset after the loss, nothing is served that was not
//!   appended there, and no acknowledged offset is given out again;
//! - `flush = interval`: every append is acknowledged at once and the files
//!   are synced every few appends. Only records appended after the last sync
//!   may be lost; the figures line counts them.
//!
//! `HERALD_FAULT_SEED` replays a run; `HERALD_FAULT_POINTS` raises the number
//! of power losses (default 1,000 per test).

use std::collections::BTreeMap;
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::file_cache::FileCache;
use super::log::tests::config;
use super::log::{Log, LogError};
use crate::batch::{self, Record};
use crate::fs::fault::FaultFs;
pub(super) use crate::test_support::{next, seed};

/// Power losses per history; a new `FaultFs` for each history bounds the log's size.
const POINTS_PER_HISTORY: u64 = 100;

fn points() -> u64 {
    std::env::var("HERALD_FAULT_POINTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000)
}

/// A batch of `values`, one record each.
pub(super) fn batch_of_values(values: &[String]) -> BytesMut {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record { value: Some(Bytes::from(v.clone().into_bytes())), timestamp: 1_000, ..Record::default() })
        .collect();
    batch::encode(&records).unwrap()
}

/// Every served record's value by offset, and the damaged ranges met.
pub(super) fn read_all(log: &mut Log) -> (BTreeMap<i64, String>, Vec<(i64, i64)>) {
    let (mut records, mut damaged) = (BTreeMap::new(), Vec::new());
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        match log.read(offset, 1 << 16, i64::MAX) {
            Ok(read) if read.bytes.is_empty() => break,
            Ok(read) => {
                for record in batch::decode_all(&read.bytes).unwrap() {
                    let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                    records.insert(record.offset, value);
                    offset = record.offset + 1;
                }
            }
            Err(LogError::Damaged(span)) => {
                damaged.push((span.first_offset, span.next_offset));
                offset = span.next_offset;
            }
            Err(err) => panic!("read at {offset}: {err}"),
        }
    }
    (records, damaged)
}

/// Opens the log at `dir` on `fs` with a cache of its own.
pub(super) fn open(fs: &FaultFs, dir: &Path, clean: bool) -> Log {
    Log::open_in(dir, config(1024), clean, &FileCache::with_fs(16, fs.shared())).unwrap()
}

/// Syncs `files` in order; stops at the first failure.
fn sync(files: &[crate::fs::FileRef]) -> bool {
    files.iter().all(|f| f.sync_data().is_ok())
}

#[derive(Default)]
struct Figures {
    appends: u64,
    acked: u64,
    lost_acked: u64,
    max_lost_in_one_loss: u64,
    in_flight_kept: u64,
    torn_bytes: u64,
    /// Distinct damaged ranges reported. None is expected: `take_unsynced`
    /// puts the directory last, so a sync cut short never makes a segment's
    /// entry durable before an earlier segment's data.
    damaged_ranges: u64,
}

/// Runs histories of `points()` power losses in all. `interval`: sync every
/// that many appends and acknowledge at once (`flush = interval`); `None`:
/// sync after every append and acknowledge after it (`flush = always`).
fn run(seed: u64, interval: Option<u64>) -> Figures {
    let mut state = seed.max(1);
    let mut figures = Figures::default();
    let mut counter = 0u64;
    let dir = Path::new("/data/topic-0");
    for history in 0..points().div_ceil(POINTS_PER_HISTORY) {
        let fs = FaultFs::new();
        let mut log = open(&fs, dir, false);
        // What was appended at each offset (the latest append there), and
        // the end of what a completed sync made durable.
        let mut appended: BTreeMap<i64, String> = BTreeMap::new();
        let mut acked_end = 0i64;
        let mut since_sync = 0u64;
        let mut seen_damage = std::collections::BTreeSet::new();
        let losses = POINTS_PER_HISTORY.min(points() - history * POINTS_PER_HISTORY);
        for point in 0..losses {
            let context = format!("seed {seed} history {history} point {point}");
            let appends = 1 + next(&mut state) % 12;
            for _ in 0..appends {
                let n = 1 + next(&mut state) % 3;
                let values: Vec<String> = (0..n)
                    .map(|_| {
                        counter += 1;
                        format!("value {counter} {}", "x".repeat((next(&mut state) % 200) as usize))
                    })
                    .collect();
                let info = log.append(batch_of_values(&values), 0).unwrap();
                for (i, v) in values.into_iter().enumerate() {
                    appended.insert(info.base_offset + i as i64, v);
                }
                figures.appends += 1;
                since_sync += 1;
                let due = interval.is_none_or(|every| since_sync >= every);
                if due && sync(&log.take_unsynced()) {
                    acked_end = log.log_end_offset();
                    since_sync = 0;
                }
                if interval.is_none() {
                    figures.acked += n;
                }
            }
            if interval.is_some() {
                figures.acked += appends;
            }
            // The cut: maybe one more append, then a sync cut short.
            if next(&mut state).is_multiple_of(2) {
                let value = vec![format!("in flight {point}")];
                let info = log.append(batch_of_values(&value), 0).unwrap();
                appended.insert(info.base_offset, value[0].clone());
                let files = log.take_unsynced();
                let synced = (next(&mut state) % (files.len() as u64 + 1)) as usize;
                assert!(sync(&files[..synced]), "{context}");
            }
            let tear = next(&mut state).is_multiple_of(2).then(|| next(&mut state) % 4096);
            drop(log);
            figures.torn_bytes += fs.lose_power(tear);

            log = open(&fs, dir, false);
            let (records, damaged) = read_all(&mut log);
            for range in damaged {
                figures.damaged_ranges += u64::from(seen_damage.insert(range));
            }
            for (offset, value) in &records {
                assert_eq!(appended.get(offset), Some(value), "{context}: offset {offset} holds what was not appended");
            }
            for (offset, value) in appended.range(..acked_end) {
                assert_eq!(records.get(offset), Some(value), "{context}: acknowledged offset {offset} was lost");
            }
            assert!(log.log_end_offset() >= acked_end, "{context}: acknowledged offsets would be reused");
            let lost: Vec<i64> =
                appended.range(acked_end..).filter(|(o, _)| !records.contains_key(o)).map(|(o, _)| *o).collect();
            if let Some(every) = interval {
                // Fewer than `every` appends of at most 3 records since the
                // last sync, and the one in flight.
                assert!(lost.len() as u64 <= (every - 1) * 3 + 1, "{context}: {} records lost", lost.len());
                figures.lost_acked += lost.len() as u64;
                figures.max_lost_in_one_loss = figures.max_lost_in_one_loss.max(lost.len() as u64);
            }
            figures.in_flight_kept +=
                appended.range(acked_end..).filter(|(o, _)| records.contains_key(o)).count() as u64;
            // From now on the log holds exactly what it served.
            appended = records;
            acked_end = log.log_end_offset();
            since_sync = 0;
        }
    }
    figures
}

#[test]
fn flush_always_loses_no_acknowledged_record_at_any_power_loss() {
    let seed = seed();
    let f = run(seed, None);
    assert_eq!(f.lost_acked, 0);
    assert_eq!(f.damaged_ranges, 0, "seed {seed}: damaged ranges after power loss");
    eprintln!(
        "power loss, flush = always: seed {seed}, {} losses, {} appends, {} records acknowledged, 0 lost, \
         {} unacknowledged kept, {} torn bytes kept, {} damaged ranges",
        points(),
        f.appends,
        f.acked,
        f.in_flight_kept,
        f.torn_bytes,
        f.damaged_ranges
    );
}

#[test]
fn flush_interval_loses_only_appends_after_the_last_sync() {
    const EVERY: u64 = 5;
    let seed = seed();
    let f = run(seed, Some(EVERY));
    assert_eq!(f.damaged_ranges, 0, "seed {seed}: damaged ranges after power loss");
    eprintln!(
        "power loss, flush = interval (every {EVERY} appends): seed {seed}, {} losses, {} appends acknowledged, \
         {} records lost (at most {} in one loss, all appended after the last sync), {} torn bytes kept, \
         {} damaged ranges",
        points(),
        f.acked,
        f.lost_acked,
        f.max_lost_in_one_loss,
        f.torn_bytes,
        f.damaged_ranges
    );
}
