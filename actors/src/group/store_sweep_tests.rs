//! The group log's part of the fault suite: seeded byte flips anywhere in its
//! log file, every byte of its indexes flipped, each index missing, every cut
//! point of its last batches, garbage appended, over a log with many
//! commits, one compaction and commits after it. After each, the reopened
//! store must
//!
//! - report the damage (100 %): a damaged range, or the torn tail it
//!   truncated after an unclean shutdown;
//! - keep every commit it can still read: its state is exactly the replay of
//!   every batch outside what it reports, so no partition falls back to an
//!   older offset while a newer commit of it is intact;
//! - lose no intact batch beside the damaged one, and nothing at all to a
//!   damaged or missing index;
//! - survive a compaction of the damaged log with the same state.
//!
//! `HERALD_FAULT_FLIPS` sets the number of flips (CI: 300); `HERALD_FAULT_SEED`
//! replays a run.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::test_support::{seed, Rng};

const PARTITIONS: u32 = 8;

/// One batch of the log file: where it lies, its offsets, what it holds.
#[derive(Debug, Clone)]
struct Stored {
    start: u64,
    end: u64,
    first: i64,
    next: i64,
    records: Vec<StoredRecord>,
}

fn commit(partition: u32, offset: i64) -> StoredRecord {
    StoredRecord::Offset {
        topic: "t".into(),
        partition,
        offset,
        metadata: Some(format!("m{offset}")),
        commit_timestamp: offset,
        topic_id: Some("id".into()),
    }
}

fn segment(dir: &Path) -> PathBuf {
    dir.join(format!("{:020}.log", 0))
}

/// 120 appends of 1 to 3 commits (each partition's offsets rising), the
/// assignor twice, a compaction after the 60th; fsynced and closed. Returns
/// every batch of the resulting log file.
fn build(dir: &Path) -> Vec<Stored> {
    let (mut store, mut state) = GroupStore::open(dir, false).unwrap();
    let mut next = [0i64; PARTITIONS as usize];
    for i in 0..120u32 {
        let mut records: Vec<StoredRecord> = (0..=i % 3)
            .map(|j| {
                let partition = (i * 5 + j * 3) % PARTITIONS;
                next[partition as usize] += 1 + i64::from(i % 4);
                commit(partition, next[partition as usize])
            })
            .collect();
        if i % 50 == 7 {
            records.push(StoredRecord::Assignor { name: format!("a{i}") });
        }
        store.append(&records, i64::from(i)).unwrap();
        records.iter().for_each(|r| state.apply(r));
        if i == 60 {
            store.compact(&state, 60).unwrap();
        }
    }
    store.flush_all().unwrap();
    drop(store);
    let bytes = fs::read(segment(dir)).unwrap();
    let mut batches = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let header = batch::validate(&bytes[at..]).unwrap();
        let end = at + header.total_bytes();
        let records = batch::decode_all(&bytes[at..end])
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
            .collect();
        batches.push(Stored {
            start: at as u64,
            end: end as u64,
            first: header.base_offset,
            next: header.next_offset(),
            records,
        });
        at = end;
    }
    assert!(batches.len() > 40, "a snapshot and the commits after it: {}", batches.len());
    batches
}

fn copy(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The state a replay of `batches` gives.
fn replay<'a>(batches: impl Iterator<Item = &'a Stored>) -> GroupState {
    let mut state = GroupState::default();
    batches.flat_map(|b| b.records.iter()).for_each(|r| state.apply(r));
    state
}

/// Whether the store reports the batch as lost.
fn reported(damaged: &[DamagedRecords], batch: &Stored) -> bool {
    damaged.iter().any(|d| {
        let torn_tail = d.first_offset == d.next_offset && batch.first >= d.first_offset;
        torn_tail || (d.first_offset < batch.next && batch.first < d.next_offset)
    })
}

/// What a reopen showed.
#[derive(Debug, Default)]
struct Outcome {
    reported: bool,
    /// Batches not touched by the damage but reported lost with it.
    collateral: usize,
}

/// Opens the damaged copy in `dir` and checks it against `batches`, of which
/// those in `touched` were damaged and those from `gone` on cut away whole.
/// Compacts it and reopens when `compact`.
fn check(
    dir: &Path,
    batches: &[Stored],
    (touched, gone): (&[usize], usize),
    clean: bool,
    compact: bool,
    context: &str,
) -> Outcome {
    let (mut store, state) =
        GroupStore::open(dir, clean).unwrap_or_else(|e| panic!("{context}: the store does not open: {e}"));
    let damaged = store.damaged().to_vec();
    let kept = batches[..gone].iter().filter(|b| !reported(&damaged, b));
    assert_eq!(state, replay(kept), "{context}: not every readable commit kept ({damaged:?})");
    for &i in touched {
        assert!(reported(&damaged, &batches[i]), "{context}: batch {i} is damaged, not reported: {damaged:?}");
    }
    let collateral = (0..gone).filter(|i| !touched.contains(i) && reported(&damaged, &batches[*i])).count();
    if compact {
        store.compact(&state, 9).unwrap();
        drop(store);
        let (_, compacted) = GroupStore::open(dir, true).unwrap();
        assert_eq!(compacted, state, "{context}: the compaction of a damaged log changed its state");
    }
    Outcome { reported: !damaged.is_empty(), collateral }
}

#[test]
fn every_flipped_byte_of_a_group_log_is_reported_and_every_readable_commit_kept() {
    let seed = seed();
    let flips = std::env::var("HERALD_FAULT_FLIPS").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(300u64);
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path());
    let len = batches.last().unwrap().end;
    let mut rng = Rng(seed.max(1));
    let (mut reported, mut collateral, mut compacted) = (0, 0, 0);
    for round in 0..flips {
        let position = rng.next() % len;
        let mask = (rng.next() % 255 + 1) as u8;
        let clean = rng.next().is_multiple_of(2);
        let compact = round % 10 == 0;
        let context = format!("seed {seed} round {round}: byte {position} ^ {mask:#x}, clean {clean}");
        let dir = tempfile::tempdir().unwrap();
        copy(original.path(), dir.path());
        let file = OpenOptions::new().read(true).write(true).open(segment(dir.path())).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, position).unwrap();
        file.write_all_at(&[byte[0] ^ mask], position).unwrap();
        drop(file);
        let touched = batches.iter().position(|b| b.start <= position && position < b.end).unwrap();
        let outcome = check(dir.path(), &batches, (&[touched], batches.len()), clean, compact, &context);
        assert!(outcome.reported, "{context}: the flip was not reported");
        reported += 1;
        collateral += outcome.collateral;
        compacted += usize::from(compact);
    }
    eprintln!(
        "group log flip sweep: seed {seed}, {flips} flips over {len} bytes ({} batches, a snapshot among them): \
         {reported} reported, {collateral} intact batches lost beside a flipped one, {compacted} compacted after",
        batches.len()
    );
    assert_eq!(collateral, 0, "seed {seed}: intact commits were lost beside damaged ones");
}

#[test]
fn every_cut_in_the_last_batches_and_garbage_appended_are_reported_and_nothing_whole_is_lost() {
    let seed = seed();
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path());
    let len = batches.last().unwrap().end;
    let from = batches[batches.len() - 3].start;
    let (mut cuts, mut boundaries) = (0, 0);
    for cut_at in from..len {
        for clean in [true, false] {
            let context = format!("cut at byte {cut_at} of {len}, clean {clean}");
            let dir = tempfile::tempdir().unwrap();
            copy(original.path(), dir.path());
            OpenOptions::new().write(true).open(segment(dir.path())).unwrap().set_len(cut_at).unwrap();
            let touched: Vec<usize> =
                (0..batches.len()).filter(|&i| batches[i].start < cut_at && cut_at < batches[i].end).collect();
            let gone = batches.iter().position(|b| b.end > cut_at).unwrap();
            let outcome = check(dir.path(), &batches, (&touched, gone + touched.len()), clean, false, &context);
            if touched.is_empty() {
                // Whole batches gone: a log that ends earlier, nothing to see.
                boundaries += 1;
            } else {
                assert!(outcome.reported, "{context}: a cut batch was not reported");
                cuts += 1;
            }
            assert_eq!(outcome.collateral, 0, "{context}");
        }
    }
    let mut rng = Rng(seed.max(1));
    let garbage_rounds = 100;
    for round in 0..garbage_rounds {
        let garbage: Vec<u8> = (0..rng.next() % 300 + 1).map(|_| rng.next() as u8).collect();
        let clean = round % 2 == 0;
        let context = format!("seed {seed} round {round}: {} bytes of garbage appended, clean {clean}", garbage.len());
        let dir = tempfile::tempdir().unwrap();
        copy(original.path(), dir.path());
        OpenOptions::new().append(true).open(segment(dir.path())).unwrap().write_all_at(&garbage, len).unwrap();
        let outcome = check(dir.path(), &batches, (&[], batches.len()), clean, round % 10 == 0, &context);
        assert!(outcome.reported, "{context}: the garbage was not reported");
        assert_eq!(outcome.collateral, 0, "{context}: a whole batch was lost");
    }
    eprintln!(
        "group log cut sweep: {cuts} cuts inside the last 3 batches reported ({boundaries} at batch boundaries), \
         {garbage_rounds} garbage tails (seed {seed}) reported, 0 whole batches lost"
    );
}

/// The indexes only speed up reads: a flip anywhere in them (every byte, three
/// masks) must cost no commit, whatever the shutdown.
#[test]
fn a_flipped_byte_of_a_group_logs_indexes_loses_no_commit() {
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path());
    let (mut rounds, mut reported) = (0, 0);
    for suffix in ["index", "timeindex"] {
        let name = format!("{:020}.{suffix}", 0);
        let len = fs::metadata(original.path().join(&name)).unwrap().len();
        for (position, mask, clean) in
            (0..len).flat_map(|p| [0x01u8, 0x80, 0xff].into_iter().flat_map(move |m| [(p, m, true), (p, m, false)]))
        {
            let context = format!("{name}: byte {position} ^ {mask:#x}, clean {clean}");
            let dir = tempfile::tempdir().unwrap();
            copy(original.path(), dir.path());
            let file = OpenOptions::new().read(true).write(true).open(dir.path().join(&name)).unwrap();
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, position).unwrap();
            file.write_all_at(&[byte[0] ^ mask], position).unwrap();
            drop(file);
            let outcome = check(dir.path(), &batches, (&[], batches.len()), clean, false, &context);
            assert_eq!(outcome.collateral, 0, "{context}: commits lost to a damaged index");
            rounds += 1;
            reported += usize::from(outcome.reported);
        }
    }
    for suffix in ["index", "timeindex"] {
        for clean in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            copy(original.path(), dir.path());
            fs::remove_file(dir.path().join(format!("{:020}.{suffix}", 0))).unwrap();
            let context = format!("the .{suffix} file missing, clean {clean}");
            let outcome = check(dir.path(), &batches, (&[], batches.len()), clean, false, &context);
            assert_eq!((outcome.collateral, outcome.reported), (0, false), "{context}");
        }
    }
    eprintln!(
        "group log index sweep: {rounds} flips of the indexes, 0 commits lost ({reported} reported); \
         each index missing, 0 commits lost"
    );
}
