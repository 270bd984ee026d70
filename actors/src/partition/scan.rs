//! Walking the batches of a `.log` file: the [`Scanner`], the whole-file check
//! of recovery and of the offline scrub ([`scan_file`]), and finding where
//! valid batches resume after damaged bytes ([`resync`]).
//!
//! A batch is valid when its header parses, it fits in the file, its CRC-32C
//! and records check out, and its base offset is the one expected: the offset
//! after the previous valid batch (or the segment's base offset), since the
//! base offset is outside the checksum. Pure `std::fs`; used by the segment
//! and by the offline scrub.

use std::path::Path;
use std::sync::Arc;

use super::damage::Damage;
use super::log::LogError;
use crate::batch::{self, BatchError, BatchHeader, MAX_HEADER_BYTES, MIN_HEADER_BYTES};
use crate::fs::FileRef;

/// The fewest bytes one record takes in a batch (its six fixed-size fields),
/// so a segment holds at most one offset per this many bytes.
pub(crate) const MIN_RECORD_BYTES: u64 = 28;
/// Bytes read at once when a scan walks a file.
pub(crate) const SCAN_CHUNK_BYTES: usize = 256 * 1024;

/// What a [`Scanner`] found at its position.
pub(crate) enum Step {
    /// A batch at this position; the scanner moved past it.
    Batch(u64, BatchHeader),
    /// The bytes at the position are not a whole valid batch.
    Bad(BatchError),
    /// The position is the end.
    End,
}

/// Walks the batches of a `.log` file forward, reading it in chunks.
pub(crate) struct Scanner {
    file: FileRef,
    path: Arc<Path>,
    /// Position of the next batch.
    position: u64,
    /// Where the batches end (the segment's size, or the file's length).
    end: u64,
    /// Least bytes to read at once.
    chunk: usize,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
}

impl Scanner {
    pub fn new(file: FileRef, path: Arc<Path>, position: u64, end: u64, chunk: usize) -> Self {
        Scanner { file, path, position, end, chunk, buf: Vec::new(), buf_start: 0 }
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves to `position`, with batches ending at `end`.
    pub fn seek(&mut self, position: u64, end: u64) {
        self.position = position;
        self.end = end;
    }

    /// The file's bytes `[position, position + len)`, which lie before `end`.
    pub fn bytes(&mut self, position: u64, len: usize) -> Result<&[u8], LogError> {
        let buffered_end = self.buf_start + self.buf.len() as u64;
        if position < self.buf_start || position + len as u64 > buffered_end {
            let want = (len.max(self.chunk) as u64).min(self.end - position) as usize;
            self.buf.resize(want, 0);
            if let Err(err) = self.file.read_exact_at(&mut self.buf, position) {
                self.buf.clear();
                return Err(LogError::io(&self.path)(err));
            }
            self.buf_start = position;
        }
        let from = (position - self.buf_start) as usize;
        Ok(&self.buf[from..from + len])
    }

    /// The batch at the position; `verify` checks it whole (CRC and records),
    /// otherwise only its header and that it fits before `end`.
    pub fn next(&mut self, verify: bool) -> Result<Step, LogError> {
        let position = self.position;
        let remaining = usize::try_from(self.end.saturating_sub(position)).unwrap_or(usize::MAX);
        if remaining == 0 {
            return Ok(Step::End);
        }
        if remaining < MIN_HEADER_BYTES {
            return Ok(Step::Bad(BatchError::Truncated { needed: MIN_HEADER_BYTES, available: remaining }));
        }
        let header = match BatchHeader::parse(self.bytes(position, MAX_HEADER_BYTES.min(remaining))?) {
            Ok(header) => header,
            Err(err) => return Ok(Step::Bad(err)),
        };
        let total = header.total_bytes();
        if total > remaining {
            return Ok(Step::Bad(BatchError::Truncated { needed: total, available: remaining }));
        }
        if verify {
            if let Err(err) = batch::validate(self.bytes(position, total)?) {
                return Ok(Step::Bad(err));
            }
        }
        self.position += total as u64;
        Ok(Step::Batch(position, header))
    }
}

/// Checks the CRC-32C of a whole stored batch: whether its bytes are still as
/// written. Enough for a read, since the records were checked when the batch
/// was appended and the CRC covers them; recovery and the scrub check more.
///
/// # Errors
///
/// [`BatchError::Checksum`] when they are not.
pub(crate) fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    // The CRC covers everything after base_offset, batch_length and itself.
    let computed = crc32c::crc32c(&batch[batch::LOG_OVERHEAD + 4..header.total_bytes()]);
    match computed == header.crc {
        true => Ok(()),
        false => Err(BatchError::Checksum { stored: header.crc, computed }),
    }
}

/// What offsets a valid batch of one segment may have.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect {
    /// The segment's base offset.
    pub segment_base: i64,
    /// The base offset the next batch must have (after damage: at least).
    pub offset: i64,
    /// Offsets must stay below this: the next segment's base offset, or the
    /// end of what the segment is known to hold. `None` for no bound.
    pub below: Option<i64>,
    /// The segment was rewritten by the log cleaner (`cleaner.rs`): a batch
    /// may start past the offset after the previous one (the offsets
    /// between them were compacted away), never before it.
    pub gaps: bool,
}

impl Expect {
    /// Whether `header`, at `position`, may be the next valid batch after
    /// damage: its offsets lie in bounds, and no more offsets precede it in
    /// the segment than `position` bytes can hold.
    fn plausible(&self, header: &BatchHeader, position: u64) -> bool {
        let before = header.base_offset.checked_sub(self.segment_base);
        header.base_offset >= self.offset
            && before.is_some_and(|n| n as u64 <= position / MIN_RECORD_BYTES)
            && self.below.is_none_or(|below| header.last_offset() < below)
    }

    /// Whether `header` is exactly the next batch.
    pub fn follows(&self, header: &BatchHeader) -> bool {
        let placed = match self.gaps {
            true => header.base_offset >= self.offset,
            false => header.base_offset == self.offset,
        };
        placed && self.below.is_none_or(|below| header.last_offset() < below)
    }
}

/// Why a batch that parsed and checked out is still not the next one.
pub(crate) fn out_of_place(header: &BatchHeader, expect: &Expect) -> BatchError {
    if header.base_offset < expect.offset || (header.base_offset != expect.offset && !expect.gaps) {
        BatchError::Malformed("base offset does not follow the previous batch")
    } else {
        BatchError::Malformed("offsets reach past the end of the segment")
    }
}

/// The first valid batch after damaged bytes at `from`, searched byte by byte
/// up to `end`: a whole batch that checks out and whose offsets are plausible
/// there (see [`Expect`]). `None` when there is none: the damage runs to `end`.
///
/// # Errors
///
/// [`LogError::Io`] on a failed read.
pub(crate) fn resync(
    file: &FileRef,
    path: &Arc<Path>,
    from: u64,
    end: u64,
    expect: &Expect,
) -> Result<Option<(u64, BatchHeader)>, LogError> {
    let mut scanner = Scanner::new(Arc::clone(file), Arc::clone(path), from, end, SCAN_CHUNK_BYTES);
    let mut candidate = Scanner::new(Arc::clone(file), Arc::clone(path), from, end, SCAN_CHUNK_BYTES);
    let mut position = from + 1;
    while position + MIN_HEADER_BYTES as u64 <= end {
        let len = MAX_HEADER_BYTES.min((end - position) as usize);
        let header = scanner.bytes(position, len)?;
        // The magic is the cheapest filter.
        if matches!(header[batch::MAGIC_OFFSET], batch::MAGIC_V1 | batch::MAGIC_V2) {
            if let Ok(header) = BatchHeader::parse(header) {
                if expect.plausible(&header, position) && (header.total_bytes() as u64) <= end - position {
                    candidate.seek(position, end);
                    if let Step::Batch(at, header) = candidate.next(true)? {
                        return Ok(Some((at, header)));
                    }
                }
            }
        }
        position += 1;
    }
    Ok(None)
}

/// What [`scan_file`] found.
pub(crate) struct Scanned {
    /// Damaged spans with valid batches after them, in file order.
    pub damage: Vec<Damage>,
    /// Where the last valid batch ends, and the offset after it.
    pub end_position: u64,
    pub end_offset: i64,
    /// Why the bytes from `end_position` to the file's end are not valid
    /// batches, if there are such bytes: no valid batch follows them.
    pub tail: Option<BatchError>,
}

/// Checks every batch of a `.log` file from `start`, expecting the base
/// offset `expect.offset` there, and calls `on_batch` with each valid one. At
/// bytes that are not the next valid batch it looks for where valid batches
/// resume ([`resync`]), records the damaged span, and goes on from there.
///
/// # Errors
///
/// [`LogError::Io`] on a failed read.
pub(crate) fn scan_file(
    file: &FileRef,
    path: &Arc<Path>,
    start: u64,
    file_len: u64,
    mut expect: Expect,
    mut on_batch: impl FnMut(u64, &BatchHeader),
) -> Result<Scanned, LogError> {
    let mut scanner = Scanner::new(Arc::clone(file), Arc::clone(path), start, file_len, SCAN_CHUNK_BYTES);
    let mut damage = Vec::new();
    loop {
        let at = scanner.position();
        let reason = match scanner.next(true)? {
            Step::End => return Ok(Scanned { damage, end_position: at, end_offset: expect.offset, tail: None }),
            Step::Batch(position, header) if expect.follows(&header) => {
                on_batch(position, &header);
                expect.offset = header.next_offset();
                continue;
            }
            Step::Batch(_, header) => out_of_place(&header, &expect),
            Step::Bad(err) => err,
        };
        match resync(file, path, at, file_len, &expect)? {
            Some((position, header)) => {
                damage.push(Damage {
                    segment_base: expect.segment_base,
                    position: at,
                    bytes: position - at,
                    first_offset: expect.offset,
                    next_offset: header.base_offset,
                    reason: reason.to_string(),
                });
                expect.offset = header.base_offset;
                scanner.seek(position, file_len);
            }
            None => {
                return Ok(Scanned { damage, end_position: at, end_offset: expect.offset, tail: Some(reason) });
            }
        }
    }
}

/// The offset after a damaged tail from `position` to `file_len` that no valid
/// batch follows, when the tail may not be truncated: past every offset its
/// bytes may hold, so that none is given out again. Batch headers that still
/// parse and follow on are believed (a cut-off last one included); the bytes
/// after them count as at most one record per [`MIN_RECORD_BYTES`].
///
/// # Errors
///
/// [`LogError::Io`] on a failed read.
pub(crate) fn tail_end_offset(
    file: &FileRef,
    path: &Arc<Path>,
    mut position: u64,
    file_len: u64,
    expected: i64,
) -> Result<i64, LogError> {
    let mut scanner = Scanner::new(Arc::clone(file), Arc::clone(path), position, file_len, SCAN_CHUNK_BYTES);
    let mut offset = expected;
    while file_len - position >= MIN_HEADER_BYTES as u64 {
        let len = MAX_HEADER_BYTES.min((file_len - position) as usize);
        match BatchHeader::parse(scanner.bytes(position, len)?) {
            Ok(header)
                if header.base_offset == offset
                    && header.record_count as u64 <= header.total_bytes() as u64 / MIN_RECORD_BYTES =>
            {
                offset = header.next_offset();
                position = (position + header.total_bytes() as u64).min(file_len);
            }
            _ => break,
        }
    }
    Ok(offset.saturating_add(((file_len - position) / MIN_RECORD_BYTES) as i64))
}
