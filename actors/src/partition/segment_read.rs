//! The read path of one segment: finding the batch that holds an offset,
//! reading and checking batches before they are served, searching by time,
//! and the scrub. Every walk steps over known damaged spans and records the
//! ones it meets (see `damage.rs`).

use std::sync::Arc;

use bytes::BytesMut;
use tracing::warn;

use super::{report, Segment};
use crate::batch::{self, BatchError, BatchHeader, MIN_HEADER_BYTES};
use crate::partition::damage::{self, Damage};
use crate::partition::log::LogError;
use crate::partition::scan::{self, Expect, Scanner, Step, SCAN_CHUNK_BYTES};

/// Bytes read at once when a lookup walks batch headers from an index entry.
const LOOKUP_CHUNK_BYTES: usize = 16 * 1024;

/// Where the batch holding an offset is.
enum Located {
    /// The valid batch at this position, with this base offset, holds it.
    Batch(u64, i64),
    /// A damaged span stands for it.
    Damaged(Damage),
    /// The segment ends at or before it.
    After,
}

impl Segment {
    /// Where batches that start at `position` must end: the next damaged span
    /// after it, or the segment's size.
    fn limit_after(&self, position: u64) -> u64 {
        self.damage.iter().map(|d| d.position).find(|&p| p > position).unwrap_or(self.size).min(self.size)
    }

    /// Records the damaged span that starts at `position`, where a batch with
    /// base offset `expected` should have been and `reason` says why it is
    /// not, and returns it (merged with known spans it touches).
    fn found_damage(&mut self, position: u64, expected: i64, reason: &BatchError) -> Result<Damage, LogError> {
        let limit = self.limit_after(position);
        let below = self.damage.iter().find(|d| d.position == limit).map_or(self.next_offset, |d| d.first_offset);
        let expect = Expect { segment_base: self.base_offset, offset: expected, below: Some(below), gaps: self.gaps };
        let next = scan::resync(&self.file()?, &self.log_path, position, limit, &expect)?;
        let (end, next_offset) = next.map_or((limit, below), |(at, header)| (at, header.base_offset));
        let span = Damage {
            segment_base: self.base_offset,
            position,
            bytes: end - position,
            first_offset: expected,
            next_offset,
            reason: reason.to_string(),
        };
        report(&self.log_path, &span, "damaged range found; its offsets are skipped, never reused");
        Ok(damage::insert(&mut self.damage, span))
    }

    /// Walks the valid batches from `position`, where one with base offset
    /// `expected` starts, and calls `visit` with each (its position, header,
    /// and with `verify` its bytes, checked whole) until `visit` returns a
    /// value. Damaged spans are stepped over; the ones met for the first time
    /// are recorded. `None` at the segment's end.
    fn walk<T>(
        &mut self,
        mut position: u64,
        mut expected: i64,
        verify: bool,
        mut visit: impl FnMut(u64, &BatchHeader, &[u8]) -> Option<T>,
    ) -> Result<Option<T>, LogError> {
        let chunk = if verify { SCAN_CHUNK_BYTES } else { LOOKUP_CHUNK_BYTES };
        let mut scanner = Scanner::new(self.file()?, Arc::clone(&self.log_path), position, self.size, chunk);
        loop {
            if let Some(span) = self.damage.iter().find(|d| d.covers(position)) {
                (position, expected) = (span.end(), span.next_offset);
                continue;
            }
            if position >= self.size {
                return Ok(None);
            }
            scanner.seek(position, self.limit_after(position));
            let expect = Expect {
                segment_base: self.base_offset,
                offset: expected,
                below: Some(self.next_offset),
                gaps: self.gaps,
            };
            let reason = match scanner.next(verify)? {
                Step::Batch(at, header) if expect.follows(&header) => {
                    let bytes = if verify { scanner.bytes(at, header.total_bytes())? } else { &[] };
                    if let Some(found) = visit(at, &header, bytes) {
                        return Ok(Some(found));
                    }
                    (position, expected) = (scanner.position(), header.next_offset());
                    continue;
                }
                Step::Batch(_, header) => scan::out_of_place(&header, &expect),
                Step::Bad(err) => err,
                // Only an empty span can end the batches here.
                Step::End => return Ok(None),
            };
            self.found_damage(position, expected, &reason)?;
        }
    }

    /// Where a walk to `offset` may start: the last offset index entry at or
    /// before it whose batch is there with the entry's offset, or the
    /// segment's start. Indexes have no checksum and the log is the truth: an
    /// entry that disagrees is dropped (from memory) and the one before tried.
    fn walk_start(&mut self, offset: i64) -> Result<(u64, i64), LogError> {
        let relative = offset - self.base_offset;
        while let Some(entry) = self.offset_index.floor(|e| i64::from(e.relative_offset) <= relative) {
            let (position, expected) = (u64::from(entry.position), self.base_offset + i64::from(entry.relative_offset));
            match self.header_at(position, self.size) {
                Ok(header) if header.base_offset == expected => return Ok((position, expected)),
                Err(err @ LogError::Io { .. }) => return Err(err),
                _ => {
                    warn!(path = %self.log_path.display(), ?entry, "an offset index entry disagrees with the log; dropped");
                    self.offset_index.forget(entry);
                }
            }
        }
        Ok((0, self.base_offset))
    }

    /// Where the batch holding `offset` is, by the offset index and a walk of
    /// batch headers from its entry.
    fn locate(&mut self, offset: i64) -> Result<Located, LogError> {
        if offset >= self.next_offset {
            return Ok(Located::After);
        }
        let (position, expected) = self.walk_start(offset)?;
        let found = match self.damage.iter().find(|d| d.contains(offset)) {
            Some(span) => return Ok(Located::Damaged(span.clone())),
            None => self.walk(position, expected, false, |at, header, _| {
                (header.last_offset() >= offset).then_some((at, header.base_offset))
            })?,
        };
        // The walk may have found the span that holds `offset`.
        if let Some(span) = self.damage.iter().find(|d| d.contains(offset)) {
            return Ok(Located::Damaged(span.clone()));
        }
        Ok(found.map_or(Located::After, |(at, base)| Located::Batch(at, base)))
    }

    /// Appends to `out` whole batches as stored, from the one holding `offset`,
    /// while `out` stays within `max_bytes` (but at least one batch if `out` is
    /// empty) and each batch lies entirely below `max_offset`. Every batch is
    /// checked (CRC and base offset) before it is served; the read stops
    /// at the first damaged span. Returns whether the read may go on into the
    /// next segment.
    ///
    /// # Errors
    ///
    /// [`LogError::Damaged`] when a damaged span stands for `offset`;
    /// [`LogError::Io`] on a failed read.
    pub fn read_into(
        &mut self,
        offset: i64,
        out: &mut BytesMut,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<bool, LogError> {
        // Each round that finds no batch for `offset` recorded a new damaged
        // span, which the next round's lookup sees.
        loop {
            if let Some(more) = self.try_read_into(offset, out, max_bytes, max_offset)? {
                return Ok(more);
            }
        }
    }

    fn try_read_into(
        &mut self,
        offset: i64,
        out: &mut BytesMut,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<Option<bool>, LogError> {
        let (position, mut expected) = match self.locate(offset)? {
            Located::After => return Ok(Some(true)),
            Located::Damaged(span) => return Err(LogError::Damaged(span)),
            Located::Batch(position, base) => (position, base),
        };
        let limit = self.limit_after(position);
        let available = limit - position;
        let mut want = available.min(max_bytes.saturating_sub(out.len()) as u64);
        if out.is_empty() {
            // At least one batch, even one over max_bytes.
            let first = self.header_at(position, limit).map_or(MIN_HEADER_BYTES, |h| h.total_bytes());
            want = want.max(first as u64).min(available);
        }
        let start = out.len();
        let read = self.file().and_then(|log| {
            log.read_exact_append_at(out, want as usize, position).map_err(LogError::io(&self.log_path))
        });
        if let Err(err) = read {
            out.truncate(start);
            return Err(err);
        }
        let mut taken = 0;
        let mut problem = None;
        while want as usize - taken >= MIN_HEADER_BYTES {
            let rest = &out[start + taken..];
            let header = match BatchHeader::parse(rest) {
                Ok(header) => header,
                // Cut by the byte limit before its producer fields, as a
                // batch cut before its end below.
                Err(BatchError::Truncated { .. }) => break,
                Err(err) => {
                    problem = Some(err);
                    break;
                }
            };
            let expect = Expect {
                segment_base: self.base_offset,
                offset: expected,
                below: Some(self.next_offset),
                gaps: self.gaps,
            };
            if !expect.follows(&header) {
                problem = Some(scan::out_of_place(&header, &expect));
                break;
            }
            if header.last_offset() >= max_offset {
                out.truncate(start + taken);
                return Ok(Some(false));
            }
            if header.total_bytes() > rest.len() {
                break;
            }
            if let Err(err) = scan::check_crc(rest, &header) {
                problem = Some(err);
                break;
            }
            taken += header.total_bytes();
            expected = header.next_offset();
        }
        out.truncate(start + taken);
        if let Some(reason) = problem {
            let span = self.found_damage(position + taken as u64, expected, &reason)?;
            return match (taken, span.contains(offset)) {
                (0, true) => Err(LogError::Damaged(span)),
                (0, false) => Ok(None),
                _ => Ok(Some(false)),
            };
        }
        // An empty span at the end (a sealed segment cut at a batch boundary)
        // also stops the read: the next one gets its error. A compacted
        // segment may end in a gap, which the read goes past.
        Ok(Some(position + taken as u64 == self.size && (expected == self.next_offset || self.gaps)))
    }

    /// The offset of the first record from `min_offset` on whose timestamp is
    /// at least `ts`, if any. Batches in damaged spans are not looked at.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] on a failed read.
    pub fn offset_for_timestamp(&mut self, ts: i64, min_offset: i64) -> Result<Option<i64>, LogError> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        // Every batch before a time index entry's offset has a max timestamp below
        // the entry's, so the search may start at the last entry not above `ts`,
        // once the entry is checked against the log: its batch must have its
        // timestamp as max timestamp. One that disagrees is dropped.
        let mut from = self.base_offset;
        while let Some(entry) = self.time_index.floor(|e| e.timestamp <= ts) {
            let offset = self.base_offset + i64::from(entry.relative_offset);
            if let Located::Batch(position, base) = self.locate(offset)? {
                let header = self.header_at(position, self.size);
                if base == offset && header.is_ok_and(|h| h.max_timestamp == entry.timestamp) {
                    from = offset;
                    break;
                }
            }
            warn!(path = %self.log_path.display(), ?entry, "a time index entry disagrees with the log; dropped");
            self.time_index.forget(entry);
        }
        let (position, expected) = self.walk_start(from)?;
        self.walk(position, expected, true, |_, header, bytes| {
            if header.max_timestamp < ts || header.last_offset() < min_offset {
                return None;
            }
            // A batch whose record timestamps cannot be computed (a delta past
            // the i64 range, from an older writer) answers with its first
            // offset: its max timestamp says a record at or after `ts` is in it.
            // So does a compressed batch, which the broker does not decompress.
            if header.compression() != Ok(batch::Compression::None) {
                return Some(header.base_offset.max(min_offset));
            }
            match batch::decode_all(bytes) {
                Ok(records) => records.iter().find(|r| r.timestamp >= ts && r.offset >= min_offset).map(|r| r.offset),
                Err(_) => Some(header.base_offset.max(min_offset)),
            }
        })
    }

    /// Checks the batches from `position` (where one with base offset
    /// `expected` starts) until at least `max_bytes` were read, recording
    /// damaged spans. Returns where to go on, or `None` at the segment's end.
    ///
    /// # Errors
    ///
    /// [`LogError::Io`] on a failed read.
    pub fn scrub(&mut self, position: u64, expected: i64, max_bytes: u64) -> Result<Option<(u64, i64)>, LogError> {
        let mut read = 0;
        self.walk(position, expected, true, |at, header, _| {
            read += header.total_bytes() as u64;
            (read >= max_bytes).then(|| (at + header.total_bytes() as u64, header.next_offset()))
        })
    }
}
