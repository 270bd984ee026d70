//! Encoding a record batch, in two passes over the records: [`BatchPlan::of`]
//! measures them and checks every limit, [`BatchPlan::encode_into`] then
//! writes the batch at the end of a caller's buffer (the record data copied
//! once, the checksum computed over the bytes in place). A produce request is
//! built this way around its batch, in one buffer (see
//! [`crate::protocol::encode_produce_batch`]). A compressed batch
//! ([`BatchPlan::encode_compressed_into`]) has its records written to a
//! scratch buffer first and compressed from there after the header.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{compress_into, Compression, MAX_DECOMPRESSED_BYTES};
use super::{
    header_bytes, reseal_at, BatchError, BatchProducer, Record, ATTRIBUTES_OFFSET, LOG_OVERHEAD, MAGIC_V1, MAGIC_V2,
};

/// One record to encode, borrowed from whatever holds it.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(String, Bytes)],
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

impl<'a> From<&'a Record> for RecordParts<'a> {
    fn from(record: &'a Record) -> Self {
        RecordParts {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
            timestamp: record.timestamp,
        }
    }
}

impl RecordParts<'_> {
    /// Bytes the record takes in a batch, its length field included.
    fn encoded_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| 2 + k.len() + 4 + v.len()).sum();
        4 + 4 + 8 + 4 + self.key.map_or(0, <[u8]>::len) + 4 + self.value.map_or(0, <[u8]>::len) + 4 + headers
    }
}

/// What a batch of given records will be: its size and timestamps, every
/// limit of the format checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    bytes: usize,
    count: usize,
    base_timestamp: i64,
    max_timestamp: i64,
    /// Magic 2 with these fields; magic 1 when `None`.
    producer: Option<BatchProducer>,
}

impl BatchPlan {
    /// Measures `records`.
    ///
    /// # Errors
    ///
    /// [`BatchError::Empty`] for no records, [`BatchError::Malformed`] for a
    /// header key longer than 65535 bytes, a batch larger than `i32::MAX`
    /// bytes, or timestamps so far apart that a delta does not fit an i64.
    pub fn of<'a>(records: impl Iterator<Item = RecordParts<'a>>) -> Result<BatchPlan, BatchError> {
        let (mut bytes, mut count) = (header_bytes(MAGIC_V1), 0usize);
        let (mut base_timestamp, mut max_timestamp) = (i64::MAX, i64::MIN);
        for record in records {
            if record.headers.iter().any(|(key, _)| key.len() > usize::from(u16::MAX)) {
                return Err(BatchError::Malformed("header key too long"));
            }
            bytes = bytes.saturating_add(record.encoded_bytes());
            count += 1;
            base_timestamp = base_timestamp.min(record.timestamp);
            max_timestamp = max_timestamp.max(record.timestamp);
        }
        if count == 0 {
            return Err(BatchError::Empty);
        }
        // The batch length bounds every record's length and the count.
        if i32::try_from(bytes - LOG_OVERHEAD).is_err() {
            return Err(BatchError::Malformed("length exceeds i32"));
        }
        if max_timestamp.checked_sub(base_timestamp).is_none() {
            return Err(BatchError::Malformed("timestamps too far apart for a delta"));
        }
        Ok(BatchPlan { bytes, count, base_timestamp, max_timestamp, producer: None })
    }

    /// The same records as a magic 2 batch carrying `producer`'s fields
    /// (`None`: as magic 1).
    ///
    /// # Errors
    ///
    /// [`BatchError::Malformed`] when the longer header takes the batch's
    /// length past `i32::MAX`.
    pub fn with_producer(mut self, producer: Option<BatchProducer>) -> Result<BatchPlan, BatchError> {
        let records = self.bytes - self.header_bytes();
        self.producer = producer;
        self.bytes = records + self.header_bytes();
        if i32::try_from(self.bytes - LOG_OVERHEAD).is_err() {
            return Err(BatchError::Malformed("length exceeds i32"));
        }
        Ok(self)
    }

    fn magic(&self) -> u8 {
        match self.producer {
            Some(_) => MAGIC_V2,
            None => MAGIC_V1,
        }
    }

    fn header_bytes(&self) -> usize {
        header_bytes(self.magic())
    }

    /// Bytes of the whole batch, header included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the batch of `records` (the same ones this plan measured) to
    /// `buf`, with base offset 0 and offset deltas 0..n.
    pub fn encode_into<'a>(&self, buf: &mut BytesMut, records: impl Iterator<Item = RecordParts<'a>>) {
        buf.reserve(self.bytes);
        let start = buf.len();
        self.put_header(buf);
        self.put_records(buf, records);
        debug_assert_eq!(buf.len() - start, self.bytes, "the records differ from the ones measured");
        reseal_at(&mut buf[start..]);
    }

    /// As [`BatchPlan::encode_into`], the records section compressed with
    /// `codec` (as is for [`Compression::None`]).
    ///
    /// # Errors
    ///
    /// [`BatchError::TooLarge`] when the records take more than
    /// [`MAX_DECOMPRESSED_BYTES`], or [`BatchError::Malformed`] when the
    /// compressed batch's length exceeds `i32::MAX`; `buf` is then as it was.
    pub fn encode_compressed_into<'a>(
        &self,
        buf: &mut BytesMut,
        records: impl Iterator<Item = RecordParts<'a>>,
        codec: Compression,
    ) -> Result<(), BatchError> {
        if codec == Compression::None {
            self.encode_into(buf, records);
            return Ok(());
        }
        if self.bytes - self.header_bytes() > MAX_DECOMPRESSED_BYTES {
            return Err(BatchError::TooLarge { limit: MAX_DECOMPRESSED_BYTES });
        }
        let mut plain = BytesMut::with_capacity(self.bytes - self.header_bytes());
        self.put_records(&mut plain, records);
        let start = buf.len();
        self.put_header(buf);
        if let Err(err) = compress_into(codec, &plain, buf) {
            buf.truncate(start);
            return Err(err);
        }
        let Ok(length) = i32::try_from(buf.len() - start - LOG_OVERHEAD) else {
            buf.truncate(start);
            return Err(BatchError::Malformed("length exceeds i32"));
        };
        let batch = &mut buf[start..];
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        batch[ATTRIBUTES_OFFSET] |= codec.attribute_bits();
        reseal_at(batch);
        Ok(())
    }

    /// The header of an uncompressed batch, checksum 0.
    fn put_header(&self, buf: &mut BytesMut) {
        buf.put_i64(0);
        buf.put_i32((self.bytes - LOG_OVERHEAD) as i32);
        buf.put_u32(0); // crc, sealed below
        buf.put_u8(self.magic());
        buf.put_u8(0);
        buf.put_u16(0);
        buf.put_i32(self.count as i32 - 1);
        buf.put_i64(self.base_timestamp);
        buf.put_i64(self.max_timestamp);
        buf.put_i32(self.count as i32);
        if let Some(producer) = self.producer {
            buf.put_i64(producer.producer_id);
            buf.put_i16(producer.producer_epoch);
            buf.put_i32(producer.base_sequence);
        }
    }

    /// The records section.
    fn put_records<'a>(&self, buf: &mut BytesMut, records: impl Iterator<Item = RecordParts<'a>>) {
        for (delta, record) in records.enumerate() {
            buf.put_i32((record.encoded_bytes() - 4) as i32);
            buf.put_i32(delta as i32);
            buf.put_i64(record.timestamp - self.base_timestamp);
            put_optional(buf, record.key);
            put_optional(buf, record.value);
            buf.put_i32(record.headers.len() as i32);
            for (key, value) in record.headers {
                buf.put_u16(key.len() as u16);
                buf.put_slice(key.as_bytes());
                buf.put_i32(value.len() as i32);
                buf.put_slice(value);
            }
        }
    }
}

fn put_optional(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => buf.put_i32(-1),
        Some(b) => {
            buf.put_i32(b.len() as i32);
            buf.put_slice(b);
        }
    }
}

/// Encodes `records` as one batch with base offset 0 and offset deltas 0..n.
///
/// Each record's `timestamp` is kept; its `offset` is ignored.
///
/// # Errors
///
/// As [`BatchPlan::of`].
///
/// ```
/// use bytes::Bytes;
/// use herald_wire::batch::{decode_all, encode, validate, Record};
///
/// let record = Record {
///     key: Some(Bytes::from_static(b"k")),
///     value: Some(Bytes::from_static(b"v")),
///     headers: vec![("trace".into(), Bytes::from_static(b"1"))],
///     timestamp: 1_700_000_000_000,
///     offset: 0,
/// };
/// let batch = encode(&[record.clone(), record.clone()]).unwrap();
/// let header = validate(&batch).unwrap();
/// assert_eq!(header.next_offset(), 2);
/// let decoded = decode_all(&batch).unwrap();
/// assert_eq!((decoded[1].offset, &decoded[1].value), (1, &record.value));
/// ```
pub fn encode(records: &[Record]) -> Result<BytesMut, BatchError> {
    let plan = BatchPlan::of(records.iter().map(RecordParts::from))?;
    let mut buf = BytesMut::with_capacity(plan.bytes());
    plan.encode_into(&mut buf, records.iter().map(RecordParts::from));
    Ok(buf)
}

/// As [`encode`], the records section compressed with `codec`.
///
/// # Errors
///
/// As [`BatchPlan::of`] and [`BatchPlan::encode_compressed_into`].
pub fn encode_with(records: &[Record], codec: Compression) -> Result<BytesMut, BatchError> {
    let plan = BatchPlan::of(records.iter().map(RecordParts::from))?;
    let mut buf = BytesMut::with_capacity(plan.bytes());
    plan.encode_compressed_into(&mut buf, records.iter().map(RecordParts::from), codec)?;
    Ok(buf)
}
