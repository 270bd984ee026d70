//! Seeded sweeps over a closed log's files, the recovery part of the fault
//! suite: every cut point inside the active segment's last batches, and
//! single-byte flips anywhere in any segment's log file. The reopened log must
//! never serve a record with bytes other than those stored, must report every
//! flip (the flipped batch is never served), may leave out only what it
//! reports as damaged (or, after an unclean shutdown, a torn tail of the
//! active segment), and never reuses an offset.
//!
//! `HERALD_FAULT_FLIPS` raises the number of flips (the long tier);
//! `HERALD_FAULT_SEED` replays one run.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

use super::log::tests::config;
use super::log::{Log, LogError};
use super::segment::{parse_file_name, LOG_SUFFIX};
use crate::batch::{self, Record};
use crate::test_support::{next, seed};

const BATCHES: usize = 40;
const PER_BATCH: usize = 3;

/// A batch whose records hold their own offsets as values, so that a record
/// served at the wrong offset or with other bytes is seen.
fn batch_from(first_offset: i64) -> BytesMut {
    let records: Vec<Record> = (0..PER_BATCH as i64)
        .map(|i| Record {
            value: Some(Bytes::from(format!("record {}", first_offset + i).into_bytes())),
            timestamp: 1_000 + first_offset + i,
            ..Record::default()
        })
        .collect();
    batch::encode(&records).unwrap()
}

/// Where each batch of a segment file lies: (file, start, end, first offset, next offset).
type Layout = Vec<(PathBuf, u64, u64, i64, i64)>;

/// A log of 40 batches in segments of 2048 bytes, fsynced and closed; and
/// where each batch is.
fn build(dir: &Path) -> Layout {
    build_with(dir, BATCHES)
}

/// [`build`] with `batches` batches.
fn build_with(dir: &Path, batches: usize) -> Layout {
    let mut log = Log::open(dir, config(2048), true).unwrap();
    for i in 0..batches {
        log.append(batch_from((i * PER_BATCH) as i64), 0).unwrap();
    }
    log.flush_all().unwrap();
    drop(log);
    let mut layout = Vec::new();
    for path in log_files(dir) {
        let bytes = fs::read(&path).unwrap();
        let mut at = 0usize;
        while at < bytes.len() {
            let header = batch::validate(&bytes[at..]).unwrap();
            let end = at + header.total_bytes();
            layout.push((path.clone(), at as u64, end as u64, header.base_offset, header.next_offset()));
            at = end;
        }
    }
    layout
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(i64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name();
            parse_file_name(name.to_str()?).filter(|(_, s)| *s == LOG_SUFFIX).map(|(base, _)| (base, e.path()))
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// A copy of the log's directory to damage.
fn copy(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn in_copy(path: &Path, copy: &Path) -> PathBuf {
    copy.join(path.file_name().unwrap())
}

/// Every record the log serves from its start, and the damaged ranges it
/// names on the way.
fn read_all(log: &mut Log) -> (BTreeMap<i64, Bytes>, Vec<(i64, i64)>) {
    let (mut records, mut damaged) = (BTreeMap::new(), Vec::new());
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        match log.read(offset, 1 << 20, i64::MAX) {
            Ok(read) if read.bytes.is_empty() => break,
            Ok(read) => {
                for record in batch::decode_all(&read.bytes).expect("served bytes decode") {
                    if record.offset >= offset {
                        records.insert(record.offset, record.value.unwrap_or_default());
                    }
                }
                offset = records.keys().next_back().map_or(offset, |o| o + 1);
            }
            Err(LogError::Damaged(range)) => {
                damaged.push((range.first_offset, range.next_offset));
                offset = range.next_offset;
            }
            Err(err) => panic!("reading at {offset}: {err}"),
        }
    }
    (records, damaged)
}

fn expected_value(offset: i64) -> Bytes {
    Bytes::from(format!("record {offset}").into_bytes())
}

/// What every reopened log must show, whatever was damaged.
fn check_served(records: &BTreeMap<i64, Bytes>, context: &str) {
    for (offset, value) in records {
        assert_eq!(value, &expected_value(*offset), "{context}: offset {offset} served other bytes");
    }
}

#[test]
fn every_cut_in_the_last_two_batches_of_the_active_segment_truncates_to_the_last_whole_batch() {
    let original = tempfile::tempdir().unwrap();
    let layout = build(original.path());
    let active = layout.last().unwrap().0.clone();
    let in_active: Vec<_> = layout.iter().filter(|b| b.0 == active).collect();
    let file_len = in_active.last().unwrap().2;
    let from = in_active[in_active.len().saturating_sub(2)].1;
    for cut_at in from..file_len {
        let dir = tempfile::tempdir().unwrap();
        copy(original.path(), dir.path());
        OpenOptions::new().write(true).open(in_copy(&active, dir.path())).unwrap().set_len(cut_at).unwrap();
        let mut log = Log::open(dir.path(), config(2048), false).unwrap();
        let whole_end = layout.iter().filter(|b| b.0 != active || b.2 <= cut_at).map(|b| b.4).max().unwrap();
        let context = format!("cut at byte {cut_at} of the active segment");
        assert_eq!(log.log_end_offset(), whole_end, "{context}");
        let (records, damaged) = read_all(&mut log);
        check_served(&records, &context);
        assert_eq!(records.keys().copied().collect::<Vec<_>>(), (0..whole_end).collect::<Vec<_>>(), "{context}");
        assert!(damaged.is_empty(), "{context}: a torn tail is not damage: {damaged:?}");
        assert_eq!(log.append(batch_from(whole_end), 0).unwrap().base_offset, whole_end, "{context}");
    }
}

#[test]
fn every_flipped_byte_in_any_segment_is_reported_and_never_served() {
    let seed = seed();
    let flips: u64 = std::env::var("HERALD_FAULT_FLIPS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let original = tempfile::tempdir().unwrap();
    let layout = build(original.path());
    let end = layout.last().unwrap().4;
    let total: u64 = layout.iter().map(|b| b.2 - b.1).sum();
    let mut state = seed.max(1);
    let (mut detected, mut truncated) = (0, 0);
    for round in 0..flips {
        // A byte of the whole log, uniformly, and a non-zero mask.
        let mut pick = next(&mut state) % total;
        let victim = layout.iter().find(|b| {
            let len = b.2 - b.1;
            if pick < len {
                true
            } else {
                pick -= len;
                false
            }
        });
        let (path, start, _, first, after) = victim.unwrap().clone();
        let position = start + pick;
        let mask = (next(&mut state) % 255 + 1) as u8;
        let clean = next(&mut state).is_multiple_of(2);
        let context = format!("seed {seed} round {round}: byte {position} of {path:?} ^ {mask:#x}, clean {clean}");

        let dir = tempfile::tempdir().unwrap();
        copy(original.path(), dir.path());
        let file = OpenOptions::new().read(true).write(true).open(in_copy(&path, dir.path())).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, position).unwrap();
        file.write_all_at(&[byte[0] ^ mask], position).unwrap();
        drop(file);

        let mut log = Log::open(dir.path(), config(2048), clean).unwrap();
        let (records, damaged) = read_all(&mut log);
        check_served(&records, &context);
        assert!(!records.keys().any(|o| (first..after).contains(o)), "{context}: the flipped batch was served");
        let is_last_batch = layout.last().is_some_and(|b| b.0 == path && b.1 == start);
        if !clean && is_last_batch && log.log_end_offset() == first {
            // A bad last batch after an unclean shutdown is a torn write.
            truncated += 1;
        } else {
            detected += 1;
            assert!(log.log_end_offset() >= end, "{context}: offsets would be reused ({})", log.log_end_offset());
            assert!(
                damaged.iter().any(|(f, n)| *f <= first && after <= *n) || !log.damaged().is_empty(),
                "{context}: the flip was not reported: {damaged:?}"
            );
        }
        // Whatever is neither served nor reported damaged must not exist.
        for offset in 0..log.log_end_offset().min(end) {
            assert!(
                records.contains_key(&offset) || damaged.iter().any(|(f, n)| (*f..*n).contains(&offset)),
                "{context}: offset {offset} is neither served nor reported"
            );
        }
        let next_offset = log.log_end_offset();
        assert_eq!(log.append(batch_from(next_offset), 0).unwrap().base_offset, next_offset, "{context}");
    }
    eprintln!(
        "flip sweep: seed {seed}, {flips} flips over {total} bytes: {detected} reported as damage, {truncated} \
         torn tails truncated (unclean, last batch), 0 served"
    );
}

/// What is done to an index file in [`every_damaged_or_missing_index_is_rebuilt_and_nothing_else_changes`].
#[derive(Debug, Clone, Copy)]
enum IndexDamage {
    /// One byte xor a non-zero mask.
    Flip { position: u64, mask: u8 },
    /// Cut to this length.
    Truncate(u64),
    /// This many seeded bytes appended.
    Garbage(u64),
    /// The file removed.
    Missing,
}

#[test]
fn every_damaged_or_missing_index_is_rebuilt_and_nothing_else_changes() {
    let seed = seed();
    let rounds: u64 = std::env::var("HERALD_FAULT_FLIPS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let original = tempfile::tempdir().unwrap();
    // Four sealed segments of 13 batches and an active one of 8, each with
    // index entries.
    let layout = build_with(original.path(), 60);
    let end = layout.last().unwrap().4;
    let logs = log_files(original.path());
    assert!(
        fs::metadata(logs.last().unwrap().with_extension("index")).unwrap().len() > 8,
        "the active segment is indexed"
    );
    let log_bytes: Vec<Vec<u8>> = logs.iter().map(|p| fs::read(p).unwrap()).collect();
    let mut state = seed.max(1);
    let mut counts = BTreeMap::new();
    for round in 0..rounds {
        // A segment (the last one is the active one), one of its indexes,
        // and what to do to it.
        let segment = &logs[(next(&mut state) % logs.len() as u64) as usize];
        let suffix = if next(&mut state).is_multiple_of(2) { "index" } else { "timeindex" };
        let index = segment.with_extension(suffix);
        let len = fs::metadata(&index).unwrap().len();
        let damage = match next(&mut state) % 4 {
            0 if len > 0 => {
                IndexDamage::Flip { position: next(&mut state) % len, mask: (next(&mut state) % 255 + 1) as u8 }
            }
            1 => IndexDamage::Truncate(next(&mut state) % len.max(1)),
            2 => IndexDamage::Garbage(next(&mut state) % 30 + 1),
            _ => IndexDamage::Missing,
        };
        let clean = next(&mut state).is_multiple_of(2);
        let active = segment == logs.last().unwrap();
        let context = format!(
            "seed {seed} round {round}: {damage:?} of {suffix} of {segment:?} (active {active}), clean {clean}"
        );
        let kind = match damage {
            IndexDamage::Flip { .. } => "flip",
            IndexDamage::Truncate(_) => "truncate",
            IndexDamage::Garbage(_) => "garbage",
            IndexDamage::Missing => "missing",
        };
        *counts.entry((kind, if active { "active" } else { "sealed" })).or_insert(0u32) += 1;

        let dir = tempfile::tempdir().unwrap();
        copy(original.path(), dir.path());
        let target = in_copy(&index, dir.path());
        match damage {
            IndexDamage::Flip { position, mask } => {
                let file = OpenOptions::new().read(true).write(true).open(&target).unwrap();
                let mut byte = [0u8];
                file.read_exact_at(&mut byte, position).unwrap();
                file.write_all_at(&[byte[0] ^ mask], position).unwrap();
            }
            IndexDamage::Truncate(to) => OpenOptions::new().write(true).open(&target).unwrap().set_len(to).unwrap(),
            IndexDamage::Garbage(n) => {
                let garbage: Vec<u8> = (0..n).map(|_| next(&mut state) as u8).collect();
                OpenOptions::new().append(true).open(&target).unwrap().write_all_at(&garbage, len).unwrap();
            }
            IndexDamage::Missing => fs::remove_file(&target).unwrap(),
        }

        let mut log = Log::open(dir.path(), config(2048), clean).unwrap();
        assert_eq!(log.log_end_offset(), end, "{context}");
        let (records, damaged) = read_all(&mut log);
        check_served(&records, &context);
        assert_eq!(records.len() as i64, end, "{context}: every record is served");
        assert!(damaged.is_empty() && log.damaged().is_empty(), "{context}: an index is not the log: {damaged:?}");
        // Reads by offset and by time land where they must.
        for offset in 0..end {
            let read = log.read(offset, 1, i64::MAX).unwrap();
            let first = batch::decode_all(&read.bytes).unwrap().into_iter().find(|r| r.offset >= offset);
            assert_eq!(first.map(|r| r.offset), Some(offset), "{context}: read at {offset}");
            assert_eq!(log.offset_for_timestamp(1_000 + offset).unwrap(), Some(offset), "{context}: time of {offset}");
        }
        assert_eq!(log.offset_for_timestamp(1_000 + end).unwrap(), None, "{context}: a time after the last");
        for (path, bytes) in logs.iter().zip(&log_bytes) {
            assert!(&fs::read(in_copy(path, dir.path())).unwrap() == bytes, "{context}: {path:?} was changed");
        }
        assert_eq!(log.append(batch_from(end), 0).unwrap().base_offset, end, "{context}");
    }
    let counts: Vec<String> = counts.iter().map(|((kind, at), n)| format!("{n} {kind} {at}")).collect();
    eprintln!(
        "index sweep: seed {seed}, {rounds} damaged or missing indexes ({}): every record served, reads by offset \
         and time exact, 0 log bytes changed, 0 damage reported",
        counts.join(", ")
    );
}
