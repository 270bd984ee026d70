//! Keeping the idempotent producers' state (`producers.rs`) with the log:
//! snapshot files, and the rebuild at open.
//!
//! A snapshot `<offset, 20 digits>.producers` holds the state of every
//! producer after the batches below `offset`. It is written through the
//! log's [`FileSystem`] as a `.tmp` file renamed into place, and the two
//! newest are kept:
//!
//! - when a segment rolls, at the new segment's base offset; the file is
//!   fsynced with the rolled segment, by the same group commit
//!   ([`Log::take_unsynced`]) and before the directory, so that no directory
//!   fsync runs ahead of segment data (see `log.rs`) and the event loop does
//!   not wait on a disk;
//! - by [`Log::flush_all`] at a clean shutdown, at the log end offset, after
//!   the segments: fsynced, then the directory.
//!
//! A snapshot that cannot be written is logged and skipped, and one cut
//! short by a crash fails its checksum: either way the next open reads from
//! an older one, or from the log start; nothing is lost, it is only slower.
//!
//! At open the newest snapshot whose offset is at most the log end offset
//! and that reads back whole (its checksum) is loaded, and only the batches
//! from its offset on are read to bring it up to date; a damaged snapshot is
//! logged and never trusted: the one before it is tried, then the log from
//! its start. Snapshots past the log end (a tail lost in a crash) are
//! deleted, since they describe batches the log no longer has. Producers
//! rebuilt from the batches count as having appended at open.
//!
//! Format, big-endian: `HPS` and version 1, a u32 count, then per producer
//! its id (i64), epoch (i16), last append time (i64, ms), the number of
//! kept batches (u8, at most 5) and each batch's first and last sequence
//! (i32) and first and last offset (i64); a CRC-32C of all of it last.

use std::io;
use std::path::Path;

use bytes::{Buf, BufMut};
use tracing::{info, warn};

use super::{sync_dir, Log, LogError};
use crate::batch::BatchHeader;
use crate::fs::{FileRef, FileSystem, OpenMode};
use crate::partition::producers::{KeptBatch, ProducerEntry, ProducerStates, KEPT_BATCHES};
use crate::partition::segment::file_name;

/// The suffix of a snapshot file.
pub const SNAPSHOT_SUFFIX: &str = "producers";
const MAGIC: &[u8; 4] = b"HPS\x01";
/// Bytes of one producer in a snapshot, at most.
const ENTRY_MAX_BYTES: usize = 8 + 2 + 8 + 1 + KEPT_BATCHES * 24;
/// Bytes read at once while rebuilding from the log.
const SCAN_BYTES: usize = 1 << 20;

/// The bytes of a snapshot of `states`.
pub fn encode_snapshot(states: &ProducerStates) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + states.len() * ENTRY_MAX_BYTES);
    out.put_slice(MAGIC);
    out.put_u32(states.len() as u32);
    for (id, entry) in states.iter() {
        out.put_i64(id);
        out.put_i16(entry.epoch);
        out.put_i64(entry.last_append_ms);
        out.put_u8(entry.batches().len() as u8);
        for batch in entry.batches() {
            out.put_i32(batch.first_sequence);
            out.put_i32(batch.last_sequence);
            out.put_i64(batch.first_offset);
            out.put_i64(batch.last_offset);
        }
    }
    let crc = crc32c::crc32c(&out);
    out.put_u32(crc);
    out
}

/// The producers of a snapshot's bytes; `None` unless they read back whole.
pub fn decode_snapshot(bytes: &[u8]) -> Option<Vec<(i64, ProducerEntry)>> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut b = body.strip_prefix(MAGIC)?;
    if b.len() < 4 {
        return None;
    }
    let count = b.get_u32() as usize;
    let mut entries = Vec::with_capacity(count.min(b.len() / 19));
    for _ in 0..count {
        if b.len() < 19 {
            return None;
        }
        let (id, epoch, last_append_ms, len) = (b.get_i64(), b.get_i16(), b.get_i64(), usize::from(b.get_u8()));
        if len > KEPT_BATCHES || b.len() < len * 24 || id < 0 || epoch < 0 {
            return None;
        }
        let mut entry = ProducerEntry::new(epoch, last_append_ms);
        for _ in 0..len {
            let (first_sequence, last_sequence) = (b.get_i32(), b.get_i32());
            entry.push(KeptBatch {
                first_sequence,
                last_sequence,
                first_offset: b.get_i64(),
                last_offset: b.get_i64(),
            });
        }
        entries.push((id, entry));
    }
    b.is_empty().then_some(entries)
}

/// The offsets of the snapshots in `dir`, ascending.
fn snapshots(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut offsets: Vec<i64> = fs
        .read_dir(dir)
        .map_err(LogError::io(dir))?
        .iter()
        .filter_map(|name| {
            let (digits, suffix) = name.split_once('.')?;
            (suffix == SNAPSHOT_SUFFIX && digits.len() == 20).then(|| digits.parse().ok()).flatten()
        })
        .collect();
    offsets.sort_unstable();
    Ok(offsets)
}

fn read_file(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path, OpenMode::Read)?;
    let len = file.file_len()?;
    let mut bytes = vec![0; usize::try_from(len).map_err(|_| io::Error::other("snapshot too large"))?];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

fn remove(fs: &dyn FileSystem, path: &Path) -> Result<(), LogError> {
    match fs.remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(LogError::io(path)(err)),
        _ => Ok(()),
    }
}

impl Log {
    /// How long an idempotent producer without appends is remembered
    /// (`producer_id_expiration_ms`).
    pub fn set_producer_expiration_ms(&mut self, expiration_ms: i64) {
        self.producers.set_expiration_ms(expiration_ms);
    }

    /// The idempotent producers' state.
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    /// Rebuilds the producers' state at open (see the module doc).
    pub(super) fn recover_producers(&mut self, now_ms: i64) -> Result<(), LogError> {
        let fs = std::sync::Arc::clone(self.files.fs());
        let end = self.log_end_offset();
        let mut from = None;
        for offset in snapshots(&*fs, &self.dir)?.into_iter().rev() {
            let path = self.dir.join(file_name(offset, SNAPSHOT_SUFFIX));
            if offset > end {
                info!(path = %path.display(), log_end_offset = end, "removing a producer snapshot past the log end");
                remove(&*fs, &path)?;
                continue;
            }
            if from.is_some() {
                continue;
            }
            match read_file(&*fs, &path).map(|bytes| decode_snapshot(&bytes)) {
                Ok(Some(entries)) => {
                    for (id, entry) in entries {
                        self.producers.insert(id, entry);
                    }
                    from = Some(offset);
                }
                Ok(None) => warn!(path = %path.display(), "a producer snapshot does not read back; ignored"),
                Err(err) => warn!(%err, path = %path.display(), "cannot read a producer snapshot; ignored"),
            }
        }
        let mut offset = from.unwrap_or(i64::MIN).max(self.log_start_offset());
        while offset < end {
            let read = match self.read(offset, SCAN_BYTES, i64::MAX) {
                Ok(read) => read.bytes,
                Err(LogError::Damaged(span)) => {
                    offset = span.next_offset.max(offset + 1);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let mut rest = &read[..];
            let before = offset;
            while let Ok(header) = BatchHeader::parse(rest) {
                if header.total_bytes() > rest.len() {
                    break;
                }
                if header.base_offset >= offset && header.producer().is_some() {
                    self.producers.record(&header, now_ms);
                }
                offset = offset.max(header.next_offset());
                rest = &rest[header.total_bytes()..];
            }
            if offset == before {
                break;
            }
        }
        self.producers.expire(now_ms);
        Ok(())
    }

    /// Writes a snapshot of the producers' state at the log end offset and
    /// removes all but the two newest; a failure is logged (see the module
    /// doc). `durable`: fsync it and the directory now (shutdown); otherwise
    /// its file joins the files the next group commit fsyncs.
    pub(super) fn snapshot_producers(&mut self, now_ms: i64, durable: bool) {
        self.producers.expire(now_ms);
        match self.write_snapshot(durable) {
            Ok(Some(file)) => self.unsynced.push(file),
            Ok(None) => {}
            Err(err) => {
                warn!(%err, dir = %self.dir.display(), "cannot write a producer snapshot; the next open reads further back")
            }
        }
    }

    fn write_snapshot(&self, durable: bool) -> Result<Option<FileRef>, LogError> {
        let fs = &**self.files.fs();
        let offset = self.log_end_offset();
        let path = self.dir.join(file_name(offset, SNAPSHOT_SUFFIX));
        let temp = path.with_extension(format!("{SNAPSHOT_SUFFIX}.tmp"));
        remove(fs, &temp)?;
        let file = fs.open(&temp, OpenMode::CreateNew).map_err(LogError::io(&temp))?;
        file.append(&encode_snapshot(&self.producers)).map_err(LogError::io(&temp))?;
        if durable {
            file.sync_all().map_err(LogError::io(&temp))?;
        }
        fs.rename(&temp, &path).map_err(LogError::io(&path))?;
        if durable {
            sync_dir(fs, &self.dir)?;
        }
        let all = snapshots(fs, &self.dir)?;
        for old in all.iter().take(all.len().saturating_sub(2)) {
            remove(fs, &self.dir.join(file_name(*old, SNAPSHOT_SUFFIX)))?;
        }
        Ok((!durable).then_some(file))
    }
}
