//! A log of compressed batches: appended, recovered and scrubbed by header and
//! CRC (the broker never decompresses them), read back as stored.

use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::log::tests::config;
use super::log::{Log, LogError};
use super::recovery_tests::flip;
use super::segment::tests::bases;
use super::segment::{file_name, LOG_SUFFIX};
use crate::batch::{self, BatchHeader, Compression, Record};

const CODECS: [Compression; 3] = [Compression::Lz4, Compression::Zstd, Compression::None];

/// Batch `n` of 5 log lines, compressed with codec `n % 3`.
fn batch_n(n: usize) -> BytesMut {
    let records: Vec<Record> = (0..5)
        .map(|i| Record {
            value: Some(Bytes::from(format!(r#"{{"batch":{n},"record":{i},"msg":"{}"}}"#, "lorem ipsum ".repeat(8)))),
            timestamp: 1000 + 10 * n as i64 + i,
            ..Record::default()
        })
        .collect();
    batch::encode_with(&records, CODECS[n % 3]).unwrap()
}

/// A log of 60 batches (offsets 0..300) in segments of 1024 bytes.
fn filled(dir: &Path) {
    let mut log = Log::open(dir, config(1024), true).unwrap();
    for n in 0..60 {
        assert_eq!(log.append(batch_n(n), 0).unwrap().base_offset, 5 * n as i64);
    }
    log.flush_all().unwrap();
}

/// Every record's offset, read from offset 0 and decoded.
fn read_all(log: &mut Log) -> Vec<i64> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 4096, i64::MAX).unwrap().bytes;
        let records = batch::decode_all(&bytes).unwrap();
        out.extend(records.iter().map(|r| r.offset));
        offset = records.last().unwrap().offset + 1;
    }
    out
}

#[test]
fn compressed_batches_are_stored_as_appended_and_recovered_whole() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    assert!(bases(dir.path()).len() > 3, "several segments");
    // An unclean start checks every batch of the active segment and the
    // indexes against the log: compressed ones by header and CRC.
    let mut log = Log::open(dir.path(), config(1024), false).unwrap();
    assert_eq!(log.log_end_offset(), 300);
    assert!(log.damaged().is_empty());
    assert_eq!(read_all(&mut log), (0..300).collect::<Vec<i64>>());
    let first = log.read(0, 1, i64::MAX).unwrap().bytes;
    let header = BatchHeader::parse(&first).unwrap();
    assert_eq!(header.compression(), Ok(Compression::Lz4));
    assert_eq!(&first[8..header.total_bytes()], &batch_n(0)[8..], "the bytes as appended");
    while !log.scrub(1000).unwrap() {}
    assert!(log.damaged().is_empty(), "{:?}", log.damaged());
    assert_eq!(log.offset_for_timestamp(1000 + 10 * 7 + 2).unwrap(), Some(35), "a compressed batch's first offset");
}

#[test]
fn a_flipped_byte_in_a_compressed_frame_is_found_by_the_scrub_and_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let all = bases(dir.path());
    let path = |base: i64| dir.path().join(file_name(base, LOG_SUFFIX));
    // Inside the first batch's frame (lz4) of the first sealed segment, and of
    // the active one's first batch.
    flip(&path(all[0]), batch::MIN_HEADER_BYTES as u64 + 20);
    let active = *all.last().unwrap();
    flip(&path(active), batch::MIN_HEADER_BYTES as u64 + 20);
    let mut log = Log::open(dir.path(), config(1024), false).unwrap();
    assert_eq!(log.log_end_offset(), 300);
    while !log.scrub(1000).unwrap() {}
    let found: Vec<(i64, i64)> = log.damaged().iter().map(|d| (d.first_offset, d.next_offset)).collect();
    assert_eq!(found, [(0, 5), (active, active + 5)]);
    assert!(matches!(log.read(0, 4096, i64::MAX), Err(LogError::Damaged(_))));
    assert!(fs::metadata(path(all[0])).unwrap().len() > 0, "nothing is deleted");
}
