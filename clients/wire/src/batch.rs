//! The record batch: the unit in which records travel and are stored.
//!
//! A batch is written once, by the topic actor that routes a produce request, and
//! from then on its bytes are never re-encoded: the partition patches the base
//! offset (outside the checksum) when it appends, the log stores the bytes as
//! they are, and a fetch sends them back as they are. The layout is specified in
//! docs/protocol.md ("Record batch format"); all integers are big-endian.
//!
//! ```text
//! offset size field
//!  0      8   base_offset        i64, first record's offset (set by the partition)
//!  8      4   batch_length       i32, bytes after this field
//! 12      4   crc                u32, CRC-32C (Castagnoli) of bytes 16..end
//! 16      1   magic              u8, 1 or 2
//! 17      1   attributes         u8, bit 0: timestamp type (0 create, 1 log append),
//!                                bits 1-2: codec (0 none, 1 lz4, 2 zstd; see batch_codec.rs)
//! 18      2   reserved           u16, = 0
//! 20      4   last_offset_delta  i32, record_count - 1
//! 24      8   base_timestamp     i64, ms since the epoch
//! 32      8   max_timestamp      i64, ms since the epoch
//! 40      4   record_count       i32
//! 44      ..  magic 1: records (with a codec: one frame of it holding them)
//! ```
//!
//! Magic 2 is magic 1's header followed by the idempotent producer's fields,
//! then the records:
//!
//! ```text
//! 44      8   producer_id        i64, -1 for no producer
//! 52      2   producer_epoch     i16, -1 for no producer
//! 54      4   base_sequence      i32, the first record's sequence; -1 for no producer
//! 58      ..  records
//! ```
//!
//! Both versions are read everywhere; [`header_bytes`] is where a header's
//! length comes from.
//!
//! Each record:
//!
//! ```text
//!  4  record_length    i32, bytes after this field
//!  4  offset_delta     i32
//!  8  timestamp_delta  i64, timestamp - base_timestamp
//!  4  key_length       i32, -1 for no key
//!  k  key
//!  4  value_length     i32, -1 for no value (a tombstone)
//!  v  value
//!  4  header_count     i32
//!     per header: 2 key_length u16, key (UTF-8), 4 value_length i32, value
//! ```
//!
//! Time arithmetic never wraps: [`encode`] refuses records whose timestamp
//! delta does not fit an i64, and decoding refuses a record whose
//! `base_timestamp + timestamp_delta` (or `base_offset + offset_delta`) is
//! outside the i64 range, as malformed. Such a batch can only come from an
//! older writer or from damage; validation alone does not look at timestamps.

use bytes::{Buf, Bytes};

#[path = "batch_codec.rs"]
mod codec;
#[path = "batch_encode.rs"]
mod encoding;
#[path = "batch_produced.rs"]
mod produced;
pub use codec::{decompress, Compression, ATTR_CODEC_MASK, ATTR_KNOWN, MAX_DECOMPRESSED_BYTES};
pub use encoding::{encode, encode_with, BatchPlan, RecordParts};
pub use produced::{check_produced, ProducedError};
use thiserror::Error;

/// The batch format without producer fields.
pub const MAGIC_V1: u8 = 1;
/// The batch format with the idempotent producer's fields.
pub const MAGIC_V2: u8 = 2;
/// Bytes before the first record of a batch of format `magic` (an unknown
/// magic counts as 1: its header is refused after the common part is read).
pub const fn header_bytes(magic: u8) -> usize {
    match magic {
        MAGIC_V2 => 58,
        _ => 44,
    }
}
/// The shortest header: enough to read any batch's magic and length.
pub const MIN_HEADER_BYTES: usize = header_bytes(MAGIC_V1);
/// The longest header.
pub const MAX_HEADER_BYTES: usize = header_bytes(MAGIC_V2);
/// Bytes covered by `base_offset` and `batch_length`, which precede the checksum.
pub const LOG_OVERHEAD: usize = 12;
/// Byte offset of the `magic` field.
pub const MAGIC_OFFSET: usize = 16;
/// Attribute bit: record timestamps were set by the broker on append.
pub const ATTR_LOG_APPEND_TIME: u8 = 0x01;
/// `producer_id` of a batch without an idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;

const CRC_OFFSET: usize = 12;
pub(crate) const CRC_START: usize = 16;
pub(crate) const ATTRIBUTES_OFFSET: usize = 17;
const BASE_TIMESTAMP_OFFSET: usize = 24;
const MAX_TIMESTAMP_OFFSET: usize = 32;

/// One record as a producer writes it or a consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The partitioning key; `None` for a record without one.
    pub key: Option<Bytes>,
    /// The payload; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Ordered headers: string key, byte value.
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The record's offset in its partition (0 before it is appended).
    pub offset: i64,
}

/// Why a batch was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch is truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("batch has unsupported magic {0}")]
    BadMagic(u8),
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("batch is malformed: {0}")]
    Malformed(&'static str),
    #[error("batch has no records")]
    Empty,
    #[error("batch has unknown codec {0} (attribute bits 1-2): 0 none, 1 lz4, 2 zstd")]
    UnknownCodec(u8),
    #[error("batch's records decompress to more than {limit} bytes, the most a batch may hold")]
    TooLarge { limit: usize },
}

/// Recomputes the checksum of a batch whose covered bytes changed. A buffer
/// shorter than a header is left alone.
pub fn reseal(batch: &mut [u8]) {
    if batch.len() < MIN_HEADER_BYTES {
        return;
    }
    reseal_at(batch);
}

/// [`reseal`] of a buffer known to hold at least a header.
fn reseal_at(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the first record's offset. The base offset is outside the checksum.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if batch.len() < 8 {
        return;
    }
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Marks the batch as stamped with the broker's time: every record of it now has
/// timestamp `now_ms`. Recomputes the checksum.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    if batch.len() < MIN_HEADER_BYTES {
        return;
    }
    batch[ATTRIBUTES_OFFSET] |= ATTR_LOG_APPEND_TIME;
    batch[BASE_TIMESTAMP_OFFSET..BASE_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    reseal(batch);
}

/// The fixed-size fields of a batch, read without touching its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the `batch_length` field.
    pub batch_length: i32,
    pub crc: u32,
    pub magic: u8,
    pub attributes: u8,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub record_count: i32,
    /// The idempotent producer's id; [`NO_PRODUCER_ID`] for none (and for
    /// every magic 1 batch).
    pub producer_id: i64,
    /// The producer's epoch; -1 for no producer.
    pub producer_epoch: i16,
    /// The sequence of the batch's first record; -1 for no producer.
    pub base_sequence: i32,
}

/// A batch's producer fields: who wrote it and its place in that producer's
/// sequence of the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// `sequence` moved on by `delta`, wrapping from `i32::MAX` to 0 (Kafka's
/// rule; sequences are never negative).
pub fn add_sequence(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

impl BatchHeader {
    /// Reads the header at the start of `buf`.
    ///
    /// # Errors
    ///
    /// [`BatchError::Truncated`] when `buf` is shorter than a header,
    /// [`BatchError::BadMagic`] or [`BatchError::Malformed`] when the fields are
    /// impossible.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < MIN_HEADER_BYTES {
            return Err(BatchError::Truncated { needed: MIN_HEADER_BYTES, available: buf.len() });
        }
        let magic = buf[MAGIC_OFFSET];
        if magic != MAGIC_V1 && magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        let needed = header_bytes(magic);
        if buf.len() < needed {
            return Err(BatchError::Truncated { needed, available: buf.len() });
        }
        let mut b = buf;
        let mut header = BatchHeader {
            base_offset: b.get_i64(),
            batch_length: b.get_i32(),
            crc: b.get_u32(),
            magic: b.get_u8(),
            attributes: b.get_u8(),
            last_offset_delta: {
                b.advance(2);
                b.get_i32()
            },
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            record_count: b.get_i32(),
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: -1,
        };
        if magic == MAGIC_V2 {
            header.producer_id = b.get_i64();
            header.producer_epoch = b.get_i16();
            header.base_sequence = b.get_i32();
            let none = (header.producer_epoch, header.base_sequence) == (-1, -1);
            let valid = match header.producer_id {
                NO_PRODUCER_ID => none,
                id => id >= 0 && header.producer_epoch >= 0 && header.base_sequence >= 0,
            };
            if !valid {
                return Err(BatchError::Malformed(
                    "producer fields: producer_id -1 with epoch and sequence -1, or all three non-negative",
                ));
            }
        }
        if (header.batch_length as i64) < (needed - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Malformed("batch_length shorter than the header"));
        }
        if header.record_count < 1 || header.last_offset_delta != header.record_count - 1 {
            return Err(BatchError::Malformed("record_count and last_offset_delta disagree"));
        }
        Ok(header)
    }

    /// Bytes before the first record.
    pub fn header_bytes(&self) -> usize {
        header_bytes(self.magic)
    }

    /// The producer fields, when an idempotent producer wrote the batch.
    pub fn producer(&self) -> Option<BatchProducer> {
        (self.producer_id != NO_PRODUCER_ID).then_some(BatchProducer {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
        })
    }

    /// The sequence of the batch's last record (-1 for no producer).
    pub fn last_sequence(&self) -> i32 {
        match self.producer_id {
            NO_PRODUCER_ID => -1,
            _ => add_sequence(self.base_sequence, self.last_offset_delta),
        }
    }

    /// Total bytes of the batch, header included.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset after the batch's last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Whether the broker stamped the records with its own time.
    pub fn log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// The codec of the records section.
    ///
    /// # Errors
    ///
    /// [`BatchError::UnknownCodec`] for codec 3.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }
}

/// Checks a complete batch at the start of `buf`: header, length, checksum, and
/// that its records parse and fill it exactly. Returns the header.
///
/// A compressed batch is checked by its header, codec and checksum only: it is
/// not decompressed (decoding it checks its records).
///
/// # Errors
///
/// Any [`BatchError`]; a batch that fails here is never stored nor served.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_bytes();
    if buf.len() < total {
        return Err(BatchError::Truncated { needed: total, available: buf.len() });
    }
    let computed = crc32c::crc32c(&buf[CRC_START..total]);
    if computed != header.crc {
        return Err(BatchError::Checksum { stored: header.crc, computed });
    }
    if header.compression()? != Compression::None {
        return Ok(header);
    }
    let count = walk_records(&buf[header.header_bytes()..total], &mut Check)?;
    if count != header.record_count as usize {
        return Err(BatchError::Malformed("record_count disagrees with the records"));
    }
    Ok(header)
}

/// Decodes every record of every complete batch in `buf`, in order. A trailing
/// partial batch (as a fetch may return when it hits its byte limit) is skipped.
///
/// # Errors
///
/// Any [`BatchError`] of a complete batch.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Record>, BatchError> {
    decode_batches(buf, None)
}

/// As [`decode_all`], each record's key, value and header values sharing
/// `buf`'s memory ([`Bytes::slice_ref`]) instead of being copied.
///
/// # Errors
///
/// As [`decode_all`].
pub fn decode_all_shared(buf: &Bytes) -> Result<Vec<Record>, BatchError> {
    decode_batches(buf, Some(buf))
}

fn decode_batches(mut buf: &[u8], shared: Option<&Bytes>) -> Result<Vec<Record>, BatchError> {
    let mut out = Vec::new();
    while buf.len() >= MIN_HEADER_BYTES {
        let header = match BatchHeader::parse(buf) {
            // A partial batch's header, cut before its producer fields.
            Err(BatchError::Truncated { .. }) => break,
            parsed => parsed?,
        };
        let total = header.total_bytes();
        if buf.len() < total {
            break;
        }
        let records = &buf[header.header_bytes()..total];
        let computed = crc32c::crc32c(&buf[CRC_START..total]);
        if computed != header.crc {
            return Err(BatchError::Checksum { stored: header.crc, computed });
        }
        out.reserve(header.record_count.clamp(0, 4096) as usize);
        let before = out.len();
        out = match header.compression()? {
            Compression::None => {
                let mut sink = Decode { header: &header, shared, records: out };
                walk_records(records, &mut sink)?;
                sink.records
            }
            codec => {
                let plain = Bytes::from(decompress(codec, records)?);
                let mut sink = Decode { header: &header, shared: shared.map(|_| &plain), records: out };
                walk_records(&plain, &mut sink)?;
                sink.records
            }
        };
        if out.len() - before != header.record_count as usize {
            return Err(BatchError::Malformed("record_count disagrees with the records"));
        }
        buf = &buf[total..];
    }
    Ok(out)
}

/// Receives the parts of each record as [`walk_records`] finds them, borrowed
/// from the batch: validation looks at them, decoding copies them.
pub(crate) trait RecordSink<'a> {
    fn record(
        &mut self,
        offset_delta: i32,
        timestamp_delta: i64,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
    ) -> Result<(), BatchError>;
    fn header(&mut self, key: &'a str, value: &'a [u8]);
}

/// Walks the records of a batch body, checking every length and the offset
/// deltas, without copying anything. Returns the number of records.
pub(crate) fn walk_records<'a>(mut body: &'a [u8], sink: &mut impl RecordSink<'a>) -> Result<usize, BatchError> {
    let mut count = 0usize;
    while !body.is_empty() {
        let len = take_i32(&mut body)?;
        if len < 0 || len as usize > body.len() {
            return Err(BatchError::Malformed("record length out of bounds"));
        }
        let (mut rec, rest) = body.split_at(len as usize);
        body = rest;
        let offset_delta = take_i32(&mut rec)?;
        if offset_delta as i64 != count as i64 {
            return Err(BatchError::Malformed("offset deltas are not consecutive"));
        }
        count += 1;
        let timestamp_delta = take_i64(&mut rec)?;
        let key = take_slice(&mut rec)?;
        let value = take_slice(&mut rec)?;
        sink.record(offset_delta, timestamp_delta, key, value)?;
        let header_count = take_i32(&mut rec)?;
        if header_count < 0 {
            return Err(BatchError::Malformed("negative header count"));
        }
        for _ in 0..header_count {
            if rec.len() < 2 {
                return Err(BatchError::Malformed("header truncated"));
            }
            let key_len = rec.get_u16() as usize;
            if rec.len() < key_len {
                return Err(BatchError::Malformed("header key truncated"));
            }
            let (key, rest) = rec.split_at(key_len);
            rec = rest;
            let key = std::str::from_utf8(key).map_err(|_| BatchError::Malformed("header key is not UTF-8"))?;
            let value = take_slice(&mut rec)?.unwrap_or_default();
            sink.header(key, value);
        }
        if !rec.is_empty() {
            return Err(BatchError::Malformed("record has trailing bytes"));
        }
    }
    Ok(count)
}

/// Validation needs nothing but the walk's checks.
struct Check;

impl<'a> RecordSink<'a> for Check {
    fn record(&mut self, _: i32, _: i64, _: Option<&'a [u8]>, _: Option<&'a [u8]>) -> Result<(), BatchError> {
        Ok(())
    }
    fn header(&mut self, _: &'a str, _: &'a [u8]) {}
}

/// Decoding copies each record out of the batch, or shares the memory of
/// the batches it is in.
struct Decode<'h> {
    header: &'h BatchHeader,
    shared: Option<&'h Bytes>,
    records: Vec<Record>,
}

impl Decode<'_> {
    fn bytes(&self, slice: &[u8]) -> Bytes {
        match self.shared {
            Some(shared) => shared.slice_ref(slice),
            None => Bytes::copy_from_slice(slice),
        }
    }
}

impl<'a> RecordSink<'a> for Decode<'_> {
    fn record(
        &mut self,
        offset_delta: i32,
        timestamp_delta: i64,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
    ) -> Result<(), BatchError> {
        let timestamp = if self.header.log_append_time() {
            self.header.max_timestamp
        } else {
            self.header
                .base_timestamp
                .checked_add(timestamp_delta)
                .ok_or(BatchError::Malformed("a record's timestamp is outside the i64 range"))?
        };
        let offset = self
            .header
            .base_offset
            .checked_add(i64::from(offset_delta))
            .ok_or(BatchError::Malformed("a record's offset is outside the i64 range"))?;
        self.records.push(Record {
            key: key.map(|k| self.bytes(k)),
            value: value.map(|v| self.bytes(v)),
            headers: Vec::new(),
            timestamp,
            offset,
        });
        Ok(())
    }

    fn header(&mut self, key: &'a str, value: &'a [u8]) {
        let value = self.bytes(value);
        if let Some(record) = self.records.last_mut() {
            record.headers.push((key.to_owned(), value));
        }
    }
}

fn take_i32(b: &mut &[u8]) -> Result<i32, BatchError> {
    if b.len() < 4 {
        return Err(BatchError::Malformed("record truncated"));
    }
    Ok(b.get_i32())
}

fn take_i64(b: &mut &[u8]) -> Result<i64, BatchError> {
    if b.len() < 8 {
        return Err(BatchError::Malformed("record truncated"));
    }
    Ok(b.get_i64())
}

fn take_slice<'a>(b: &mut &'a [u8]) -> Result<Option<&'a [u8]>, BatchError> {
    let len = take_i32(b)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if b.len() < len {
        return Err(BatchError::Malformed("field truncated"));
    }
    let (field, rest) = b.split_at(len);
    *b = rest;
    Ok(Some(field))
}

#[cfg(test)]
#[path = "batch_time_tests.rs"]
mod time_tests;

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "batch_producer_tests.rs"]
mod producer_tests;
