//! The check of a batch a producer sends (`produce` with `batch`): the
//! broker stores its bytes as they are, so everything it would have checked
//! of the records is checked here, in one pass over them and without copying
//! any (docs/protocol.md, `produce`).

use thiserror::Error;

use super::{
    walk_records, BatchError, BatchHeader, Compression, RecordSink, ATTR_KNOWN, ATTR_LOG_APPEND_TIME, CRC_START,
};
use crate::protocol::MAX_TIMESTAMP_MS;

/// Why a producer's batch was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProducedError {
    /// Its checksum does not match its bytes, or its structure is broken:
    /// lengths, counts or header fields that disagree with its records
    /// (`CORRUPT_MESSAGE`).
    #[error("{0}")]
    Corrupt(String),
    /// A record's timestamp is outside 0 ..= [`MAX_TIMESTAMP_MS`] (`INVALID_TIMESTAMP`).
    #[error("record {record} has timestamp {timestamp}; timestamps are 0 to {MAX_TIMESTAMP_MS} (ms since the epoch)")]
    Timestamp { record: usize, timestamp: i64 },
    /// A well-formed batch the broker does not take: attribute bits, too
    /// many records (`INVALID_REQUEST`).
    #[error("{0}")]
    Invalid(String),
}

impl From<BatchError> for ProducedError {
    fn from(err: BatchError) -> Self {
        ProducedError::Corrupt(err.to_string())
    }
}

/// Checks that `buf` is exactly one batch a producer may send: magic 1 or 2, no
/// attribute bit set but a known codec in bits 1–2 (the broker sets bit 0
/// itself on a LogAppendTime topic), lengths that add up to `buf`,
/// `record_count` records that parse in place with offset deltas 0, 1, ...,
/// the checksum, every record's timestamp within 0 ..= [`MAX_TIMESTAMP_MS`],
/// and `base_timestamp` and `max_timestamp` the smallest and largest of them.
/// The base offset is not looked at: the broker overwrites it.
///
/// `max_records` is checked from the header, before the records are walked.
///
/// A compressed batch is not decompressed: its header is checked (the counts,
/// both timestamps within 0 ..= [`MAX_TIMESTAMP_MS`] and `base_timestamp` ≤
/// `max_timestamp`) with its checksum, and its records are the consumer's to
/// check when it decodes them.
///
/// # Errors
///
/// [`ProducedError`] for the first rule the batch breaks.
pub fn check_produced(buf: &[u8], max_records: u64) -> Result<BatchHeader, ProducedError> {
    let header = BatchHeader::parse(buf)?;
    if header.record_count as u64 > max_records {
        return Err(ProducedError::Invalid(format!(
            "batch of {} records; a request may carry at most {max_records}",
            header.record_count
        )));
    }
    let codec = header.compression();
    if header.attributes & !ATTR_KNOWN != 0 || header.attributes & ATTR_LOG_APPEND_TIME != 0 || codec.is_err() {
        let what = if header.attributes & ATTR_LOG_APPEND_TIME != 0 {
            "bit 0 (LogAppendTime) is set by the broker, not by producers"
        } else if codec.is_err() {
            "codec 3 is not one (bits 1-2: 0 none, 1 lz4, 2 zstd)"
        } else {
            "bits 3-7 are not used and must be 0"
        };
        return Err(ProducedError::Invalid(format!("batch attributes {:#04x}: {what}", header.attributes)));
    }
    if header.total_bytes() != buf.len() {
        return Err(ProducedError::Corrupt(format!(
            "batch_length says {} bytes in all, the batch field has {}",
            header.total_bytes(),
            buf.len()
        )));
    }
    let computed = crc32c::crc32c(&buf[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::Checksum { stored: header.crc, computed }.into());
    }
    if codec != Ok(Compression::None) {
        return check_compressed(header);
    }
    let mut times = Times { base: header.base_timestamp, count: 0, min: i64::MAX, max: i64::MIN, bad: None };
    let count = walk_records(&buf[header.header_bytes()..], &mut times)?;
    if let Some((record, timestamp)) = times.bad {
        return Err(ProducedError::Timestamp { record, timestamp });
    }
    if count != header.record_count as usize {
        return Err(ProducedError::Corrupt(format!(
            "batch says record_count {} and holds {count} records",
            header.record_count
        )));
    }
    if (header.base_timestamp, header.max_timestamp) != (times.min, times.max) {
        return Err(ProducedError::Corrupt(format!(
            "batch says base_timestamp {} and max_timestamp {}; its records' smallest and largest are {} and {}",
            header.base_timestamp, header.max_timestamp, times.min, times.max
        )));
    }
    Ok(header)
}

/// The timestamps of a compressed batch's header, the rest checked already.
fn check_compressed(header: BatchHeader) -> Result<BatchHeader, ProducedError> {
    for (record, timestamp) in [(0, header.base_timestamp), (header.last_offset_delta as usize, header.max_timestamp)] {
        if !(0..=MAX_TIMESTAMP_MS).contains(&timestamp) {
            return Err(ProducedError::Timestamp { record, timestamp });
        }
    }
    if header.base_timestamp > header.max_timestamp {
        return Err(ProducedError::Corrupt(format!(
            "batch says base_timestamp {} after max_timestamp {}",
            header.base_timestamp, header.max_timestamp
        )));
    }
    Ok(header)
}

/// Each record's timestamp, checked and folded into the smallest and largest.
struct Times {
    base: i64,
    count: usize,
    min: i64,
    max: i64,
    /// The first record whose timestamp is out of range, and that timestamp.
    bad: Option<(usize, i64)>,
}

impl<'a> RecordSink<'a> for Times {
    fn record(&mut self, _: i32, delta: i64, _: Option<&'a [u8]>, _: Option<&'a [u8]>) -> Result<(), BatchError> {
        let timestamp = self.base.checked_add(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
        if self.bad.is_none() && !(0..=MAX_TIMESTAMP_MS).contains(&timestamp) {
            self.bad = Some((self.count, timestamp));
        }
        self.min = self.min.min(timestamp);
        self.max = self.max.max(timestamp);
        self.count += 1;
        Ok(())
    }
    fn header(&mut self, _: &'a str, _: &'a [u8]) {}
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::batch::{encode, Record};

    fn batch(timestamps: &[i64]) -> bytes::BytesMut {
        let records: Vec<Record> = timestamps
            .iter()
            .map(|&timestamp| Record { value: Some(Bytes::from_static(b"v")), timestamp, ..Default::default() })
            .collect();
        encode(&records).unwrap()
    }

    #[test]
    fn an_encoded_batch_passes() {
        let header = check_produced(&batch(&[5, 3, 9]), 3).unwrap();
        assert_eq!((header.record_count, header.base_timestamp, header.max_timestamp), (3, 3, 9));
    }

    #[test]
    fn each_rule_refuses() {
        assert!(
            matches!(check_produced(&batch(&[1, 2]), 1), Err(ProducedError::Invalid(m)) if m.contains("at most 1"))
        );
        let mut flipped = batch(&[1]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(check_produced(&flipped, 10), Err(ProducedError::Corrupt(m)) if m.contains("checksum")));
        let mut compressed = batch(&[1]);
        compressed[17] = 0x08;
        crate::batch::reseal(&mut compressed);
        assert!(matches!(check_produced(&compressed, 10), Err(ProducedError::Invalid(m)) if m.contains("bits 3-7")));
        compressed[17] = 0x06;
        crate::batch::reseal(&mut compressed);
        assert!(matches!(check_produced(&compressed, 10), Err(ProducedError::Invalid(m)) if m.contains("codec 3")));
        let mut longer = batch(&[1]).to_vec();
        longer.push(0);
        assert!(matches!(check_produced(&longer, 10), Err(ProducedError::Corrupt(m)) if m.contains("batch_length")));
        let ok = batch(&[1]);
        assert!(matches!(check_produced(&ok[..ok.len() - 1], 10), Err(ProducedError::Corrupt(_))));
        let too_late = batch(&[1, MAX_TIMESTAMP_MS + 1]);
        assert_eq!(
            check_produced(&too_late, 10),
            Err(ProducedError::Timestamp { record: 1, timestamp: MAX_TIMESTAMP_MS + 1 })
        );
        let mut lying = batch(&[1, 2]);
        lying[32..40].copy_from_slice(&7i64.to_be_bytes());
        crate::batch::reseal(&mut lying);
        assert!(matches!(check_produced(&lying, 10), Err(ProducedError::Corrupt(m)) if m.contains("max_timestamp 7")));
    }
}
