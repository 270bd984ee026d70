//! Log compaction: the work of one cleaning of one partition, off the
//! partition's actor (the broker's cleaner thread runs it, see
//! `crate::cleaner`), and the partition's cleaner checkpoint.
//!
//! A cleaning reads only sealed segments, which never change while the log
//! lives (retention may remove one meanwhile: the open handle still reads
//! it, and the install skips it). It:
//!
//! 1. builds a key → latest offset map ([`OffsetMap`]: a 16-byte SHA-256
//!    prefix of the key and an offset, as Kafka's SkimpyOffsetMap) over the
//!    dirty part: the records from the checkpoint's `cleaned_to` up to the
//!    end of the last cleanable segment. When the map is full it stops at the
//!    record that did not fit: the cleaning covers up to there;
//! 2. rewrites every sealed segment that starts below where the map reached,
//!    keeping a record when it has no key, when it is at or past that point,
//!    or when no later record of its key is in the map (a batch that is an
//!    idempotent producer's last one the partition knows is kept whole, as
//!    Kafka's cleaner does, so the log alone says where each producer's
//!    sequence stands); a tombstone (no value)
//!    is dropped besides once `delete_retention_ms` passed since its segment
//!    was first cleaned (Kafka's rule: a consumer that read the segment's
//!    earlier records has that long to see the tombstone);
//! 3. writes each rewritten segment to `<name>.log.cleaned`, fsynced, then
//!    stores the checkpoint; the log swaps them in (`log_clean.rs`).
//!
//! Offsets never change. The records kept from one original batch that are
//! contiguous in offset become one batch, with the original's codec and
//! timestamp type, its base offset the first kept record's: every batch
//! keeps offset deltas 0, 1, 2..., and gaps appear only between batches.
//! A segment whose bytes do not all check out is not cleaned (the cleaning
//! is given up and logged): damage is never rewritten into valid-looking data.
//!
//! The checkpoint (`cleaner-checkpoint` in the partition's directory) holds
//! `cleaned_to` and, per segment, when it was first cleaned. Its existence
//! also tells the log's recovery that segments may have offset gaps. It is
//! written as the start checkpoint is (`log_start.rs`): a temporary file,
//! fsynced, renamed over the old one, the directory fsynced, with a CRC.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use sha2::{Digest, Sha256};

use super::log::LogError;
use super::scan::{Scanner, Step, SCAN_CHUNK_BYTES};
use crate::batch::{self, BatchHeader, BatchPlan, BatchProducer, Record, RecordParts};
use crate::fs::{FileSystem, OpenMode};

/// The cleaner checkpoint's file name in a partition's directory.
pub const CLEANER_CHECKPOINT: &str = "cleaner-checkpoint";
/// The checkpoint being written; a leftover is removed at open (`.tmp`).
const CLEANER_CHECKPOINT_TEMP: &str = "cleaner-checkpoint.tmp";
/// Added to a segment's `.log` name for its rewritten copy; a leftover (a
/// cleaning cut short before its swap) is removed at open.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Bytes one map entry stands for: a 16-byte key hash and an 8-byte offset.
pub const MAP_ENTRY_BYTES: usize = 24;
/// Bytes written to a `.cleaned` file at once.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// What the cleaner knows of one partition, kept in its checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanerState {
    /// Offsets below this were cleaned at least once.
    pub cleaned_to: i64,
    /// Segment base offset → when that segment was first cleaned (ms).
    pub first_cleaned: BTreeMap<i64, i64>,
}

impl CleanerState {
    fn text(&self) -> String {
        let mut body = format!("cleaned_to {}\n", self.cleaned_to);
        for (base, at) in &self.first_cleaned {
            body.push_str(&format!("segment {base} {at}\n"));
        }
        format!("{body}crc {:08x}\n", crc32c::crc32c(body.as_bytes()))
    }

    fn parse(text: &str) -> Option<CleanerState> {
        let (body, last) = text.strip_suffix('\n')?.rsplit_once('\n')?;
        let body = format!("{body}\n");
        let crc = u32::from_str_radix(last.strip_prefix("crc ")?, 16).ok()?;
        if crc != crc32c::crc32c(body.as_bytes()) {
            return None;
        }
        let mut lines = body.lines();
        let cleaned_to = lines.next()?.strip_prefix("cleaned_to ")?.parse().ok()?;
        let mut first_cleaned = BTreeMap::new();
        for line in lines {
            let mut words = line.strip_prefix("segment ")?.split(' ');
            let (Some(base), Some(at), None) = (words.next(), words.next(), words.next()) else { return None };
            first_cleaned.insert(base.parse().ok()?, at.parse().ok()?);
        }
        Some(CleanerState { cleaned_to, first_cleaned })
    }

    /// The checkpoint of `dir`: `None` when the log was never cleaned. A
    /// file that does not read back counts as a log cleaned from nothing
    /// (its segments may still have gaps): the next cleaning starts over.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if the file exists but cannot be read.
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Option<CleanerState>, LogError> {
        let path = dir.join(CLEANER_CHECKPOINT);
        if !fs.exists(&path).map_err(LogError::io(&path))? {
            return Ok(None);
        }
        let file = fs.open(&path, OpenMode::Read).map_err(LogError::io(&path))?;
        let len = file.file_len().map_err(LogError::io(&path))?.min(16 << 20);
        let mut bytes = vec![0; len as usize];
        file.read_exact_at(&mut bytes, 0).map_err(LogError::io(&path))?;
        let parsed = std::str::from_utf8(&bytes).ok().and_then(CleanerState::parse);
        if parsed.is_none() {
            tracing::error!(path = %path.display(), "the cleaner checkpoint does not read back; cleaning starts over");
        }
        Ok(Some(parsed.unwrap_or_default()))
    }

    /// Writes the checkpoint of `dir` atomically. Blocking.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] if a step fails; the previous checkpoint is then in place.
    pub fn store(&self, fs: &dyn FileSystem, dir: &Path) -> Result<(), LogError> {
        let temp = dir.join(CLEANER_CHECKPOINT_TEMP);
        match fs.remove_file(&temp) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(LogError::io(&temp)(err)),
            _ => {}
        }
        let file = fs.open(&temp, OpenMode::CreateNew).map_err(LogError::io(&temp))?;
        file.append(self.text().as_bytes()).map_err(LogError::io(&temp))?;
        file.sync_all().map_err(LogError::io(&temp))?;
        let path = dir.join(CLEANER_CHECKPOINT);
        fs.rename(&temp, &path).map_err(LogError::io(&path))?;
        fs.open_dir(dir).and_then(|d| d.sync_all()).map_err(LogError::io(dir))
    }
}

/// Key hash → latest offset, bounded in entries.
pub struct OffsetMap {
    entries: HashMap<[u8; 16], i64, BuildHasherDefault<PrefixHasher>>,
    capacity: usize,
}

/// The map's hasher: the keys are SHA-256 prefixes already, so their first
/// eight bytes serve as the hash (hashing them again, as the default
/// SipHash does, cost a seventh of a cleaning).
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 16]` is hashed as its length, then its bytes.
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

impl OffsetMap {
    /// A map of at most `bytes / MAP_ENTRY_BYTES` keys (at least one).
    pub fn with_bytes(bytes: usize) -> OffsetMap {
        let capacity = (bytes / MAP_ENTRY_BYTES).max(1);
        // Grown as keys come, not reserved whole: a table sized for the
        // bound spreads a few keys over megabytes, a cache miss each.
        OffsetMap { entries: HashMap::default(), capacity }
    }

    fn hash(key: &[u8]) -> [u8; 16] {
        let digest = Sha256::digest(key);
        let mut out = [0; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// Records `offset` as the latest of `key`; false (and nothing changed)
    /// when the key is new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = OffsetMap::hash(key);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&hash) {
            return false;
        }
        self.entries.insert(hash, offset);
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(&OffsetMap::hash(key)).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A sealed segment as a cleaning sees it.
#[derive(Debug, Clone)]
pub struct SegmentView {
    pub base_offset: i64,
    pub path: PathBuf,
    pub size: u64,
    pub next_offset: i64,
}

/// One cleaning of one partition: everything it needs, taken from the log.
#[derive(Clone)]
pub struct CleanJob {
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
    /// The sealed segments that may be rewritten, ascending; the dirty part
    /// runs from `state.cleaned_to` to the last one's end.
    pub segments: Vec<SegmentView>,
    pub state: CleanerState,
    /// The offset map's bound, in bytes.
    pub map_bytes: usize,
    pub now_ms: i64,
    pub delete_retention_ms: u64,
    /// Dirty bytes over sealed bytes, in thousandths: the cleaner takes the
    /// partition with the highest first.
    pub dirty_permille: u64,
    /// Each idempotent producer the partition knows, by id: the last offset
    /// of its last batch. That batch is kept whole, so that the log alone
    /// still says where each producer's sequence stands (Kafka's rule).
    pub producers_last: HashMap<i64, i64>,
}

/// One segment rewritten to a `.cleaned` file.
#[derive(Debug, Clone)]
pub struct CleanedSegment {
    pub base_offset: i64,
    /// The `.log` file's size when it was read: the swap checks it is unchanged.
    pub old_size: u64,
    pub new_size: u64,
    pub cleaned_path: PathBuf,
}

/// What a cleaning did, for the log to install.
#[derive(Debug, Clone)]
pub struct CleanOutcome {
    pub state: CleanerState,
    pub cleaned: Vec<CleanedSegment>,
    /// Bytes of the segments read and rewritten.
    pub bytes_read: u64,
    pub records_removed: u64,
}

/// Calls `visit` with every batch of a segment's `.log` file, checked whole:
/// its position, header, stored bytes and records.
fn each_batch(
    job: &CleanJob,
    segment: &SegmentView,
    mut visit: impl FnMut(u64, &BatchHeader, &[u8], Vec<Record>) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    let path: Arc<Path> = segment.path.as_path().into();
    let file = job.fs.open(&path, OpenMode::Read).map_err(LogError::io(&path))?;
    let mut scanner = Scanner::new(file, Arc::clone(&path), 0, segment.size, SCAN_CHUNK_BYTES);
    loop {
        match scanner.next(true)? {
            Step::End => return Ok(()),
            Step::Bad(err) => return Err(err.into()),
            Step::Batch(at, header) => {
                let stored = scanner.bytes(at, header.total_bytes())?;
                let records = batch::decode_all(stored)?;
                if !visit(at, &header, stored, records)? {
                    return Ok(());
                }
            }
        }
    }
}

/// Builds the offset map over the dirty part; returns it and the offset the
/// cleaning covers up to (exclusive).
fn build_map(job: &CleanJob) -> Result<(OffsetMap, i64), LogError> {
    let mut map = OffsetMap::with_bytes(job.map_bytes);
    let mut reached = job.segments.last().map_or(job.state.cleaned_to, |s| s.next_offset);
    'segments: for segment in job.segments.iter().filter(|s| s.next_offset > job.state.cleaned_to) {
        let mut full_at = None;
        each_batch(job, segment, |_, header, _, records| {
            if header.last_offset() < job.state.cleaned_to {
                return Ok(true);
            }
            for record in records.iter().filter(|r| r.offset >= job.state.cleaned_to) {
                let Some(key) = &record.key else { continue };
                if !map.put(key, record.offset) {
                    full_at = Some(record.offset);
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        if let Some(at) = full_at {
            reached = at;
            break 'segments;
        }
    }
    Ok((map, reached))
}

/// Runs one cleaning (see the module doc). Blocking; for the cleaner thread.
///
/// # Errors
///
/// [`LogError::Io`] on a failed read or write, [`LogError::InvalidBatch`]
/// for a segment whose bytes do not check out; `.cleaned` files written
/// before the error are removed (best effort; the next open removes them too).
pub fn clean(job: &CleanJob) -> Result<CleanOutcome, LogError> {
    let (map, reached) = build_map(job)?;
    let mut outcome = CleanOutcome { state: job.state.clone(), cleaned: Vec::new(), bytes_read: 0, records_removed: 0 };
    if reached <= job.state.cleaned_to {
        return Ok(outcome);
    }
    for segment in job.segments.iter().filter(|s| s.base_offset < reached) {
        match rewrite(job, segment, &map, reached) {
            Ok((removed, cleaned)) => {
                outcome.bytes_read += segment.size;
                outcome.records_removed += removed;
                outcome.cleaned.extend(cleaned);
            }
            Err(err) => {
                for cleaned in &outcome.cleaned {
                    drop(job.fs.remove_file(&cleaned.cleaned_path));
                }
                return Err(err);
            }
        }
        if segment.next_offset <= reached {
            outcome.state.first_cleaned.entry(segment.base_offset).or_insert(job.now_ms);
        }
    }
    outcome.state.cleaned_to = reached;
    // Before any segment is swapped in, so that recovery knows about gaps;
    // here, so that its fsyncs stay off the partition's thread.
    if let Err(err) = outcome.state.store(&*job.fs, &job.dir) {
        for cleaned in &outcome.cleaned {
            drop(job.fs.remove_file(&cleaned.cleaned_path));
        }
        return Err(err);
    }
    Ok(outcome)
}

/// Whether `record`, at or below `reached`, stays.
fn keep(job: &CleanJob, segment: &SegmentView, map: &OffsetMap, reached: i64, record: &Record) -> bool {
    if record.offset >= reached {
        return true;
    }
    let Some(key) = &record.key else { return true };
    if map.get(key).is_some_and(|latest| latest > record.offset) {
        return false;
    }
    let tombstone_expired = record.value.is_none()
        && job.state.first_cleaned.get(&segment.base_offset).is_some_and(|&first| {
            job.now_ms.saturating_sub(first) >= i64::try_from(job.delete_retention_ms).unwrap_or(i64::MAX)
        });
    !tombstone_expired
}

/// Rewrites one segment into its `.cleaned` file, fsynced; `None` when it
/// would keep every record (nothing to swap). Returns the records removed.
///
/// A producer's last batch is kept whole (see [`CleanJob::producers_last`]).
/// Streams: a batch kept whole is copied as stored (byte for byte, its
/// codec's frame included); a batch that lost records is rebuilt
/// ([`rebuilt`]). The file is created at the first batch that lost records,
/// with the bytes before it copied from the segment: a segment that keeps
/// everything is read once and never written.
fn rewrite(
    job: &CleanJob,
    segment: &SegmentView,
    map: &OffsetMap,
    reached: i64,
) -> Result<(u64, Option<CleanedSegment>), LogError> {
    let mut cleaned_path = segment.path.as_os_str().to_owned();
    cleaned_path.push(CLEANED_SUFFIX);
    let mut copy = Copy { path: PathBuf::from(cleaned_path), file: None, pending: BytesMut::new(), written: 0 };
    let mut removed = 0u64;
    each_batch(job, segment, |at, header, stored, records| {
        let total = records.len();
        let last_of_producer = header.producer().is_some_and(|p| {
            job.producers_last.get(&p.producer_id) == Some(&(header.base_offset + i64::from(header.last_offset_delta)))
        });
        let kept: Vec<Record> = match last_of_producer {
            true => records,
            false => records.into_iter().filter(|r| keep(job, segment, map, reached, r)).collect(),
        };
        if kept.len() == total {
            return copy.put(stored).map(|()| true);
        }
        removed += (total - kept.len()) as u64;
        if copy.file.is_none() {
            copy.start(job, segment, at)?;
        }
        for run in contiguous_runs(&kept) {
            copy.put(&rebuilt(header, run)?)?;
        }
        Ok(true)
    })
    .inspect_err(|_| {
        if copy.file.is_some() {
            drop(job.fs.remove_file(&copy.path));
        }
    })?;
    if removed == 0 {
        return Ok((0, None));
    }
    let new_size = copy.finish()?;
    let cleaned =
        CleanedSegment { base_offset: segment.base_offset, old_size: segment.size, new_size, cleaned_path: copy.path };
    Ok((removed, Some(cleaned)))
}

/// The `.cleaned` file being written.
struct Copy {
    path: PathBuf,
    /// `None` until a batch lost records: until then the copy would be the
    /// segment's own bytes.
    file: Option<crate::fs::FileRef>,
    /// Bytes not written yet.
    pending: BytesMut,
    written: u64,
}

impl Copy {
    /// Creates the file with the segment's bytes before `position`.
    fn start(&mut self, job: &CleanJob, segment: &SegmentView, position: u64) -> Result<(), LogError> {
        let fs = &*job.fs;
        match fs.remove_file(&self.path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(LogError::io(&self.path)(err)),
            _ => {}
        }
        let file = fs.open(&self.path, OpenMode::CreateNew).map_err(LogError::io(&self.path))?;
        self.file = Some(file);
        let source = fs.open(&segment.path, OpenMode::Read).map_err(LogError::io(&segment.path))?;
        let mut chunk = vec![0; WRITE_CHUNK_BYTES];
        let mut from = 0;
        while from < position {
            let len = (position - from).min(WRITE_CHUNK_BYTES as u64) as usize;
            source.read_exact_at(&mut chunk[..len], from).map_err(LogError::io(&segment.path))?;
            self.put(&chunk[..len])?;
            from += len as u64;
        }
        Ok(())
    }

    /// Adds `bytes`; dropped while there is no file (see [`Copy::file`]).
    fn put(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        if self.file.is_none() {
            return Ok(());
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= WRITE_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        if let Some(file) = &self.file {
            file.append(&self.pending).map_err(LogError::io(&self.path))?;
            self.written += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(())
    }

    /// Writes what is left and fsyncs; returns the file's size.
    fn finish(&mut self) -> Result<u64, LogError> {
        self.flush()?;
        if let Some(file) = &self.file {
            file.sync_all().map_err(LogError::io(&self.path))?;
        }
        Ok(self.written)
    }
}

/// The batch of `run`, records of the original batch `header` contiguous in
/// offset: the original's codec and timestamp type, its base offset the
/// first record's. Built only from one original batch, so that fields a
/// batch carries for all its records are the original's: its attributes,
/// and a producer's id and epoch, with its base sequence moved by the first
/// kept record's offset delta (so each record keeps its sequence).
fn rebuilt(header: &BatchHeader, run: &[Record]) -> Result<BytesMut, LogError> {
    let producer = header.producer().map(|p| {
        let delta = i32::try_from(run[0].offset - header.base_offset).unwrap_or(i32::MAX);
        BatchProducer { base_sequence: batch::add_sequence(p.base_sequence, delta), ..p }
    });
    let plan = BatchPlan::of(run.iter().map(RecordParts::from))?.with_producer(producer)?;
    let mut encoded = BytesMut::with_capacity(plan.bytes());
    plan.encode_compressed_into(&mut encoded, run.iter().map(RecordParts::from), header.compression()?)?;
    if header.log_append_time() {
        batch::set_log_append_time(&mut encoded, header.max_timestamp);
    }
    batch::set_base_offset(&mut encoded, run[0].offset);
    Ok(encoded)
}

/// `records` cut where an offset does not follow the one before.
fn contiguous_runs(records: &[Record]) -> impl Iterator<Item = &[Record]> {
    records.chunk_by(|a, b| b.offset == a.offset + 1)
}

#[cfg(test)]
#[path = "cleaner_tests.rs"]
mod tests;
