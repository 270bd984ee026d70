//! The batch format's round trip, checksum and malformed input.

use super::*;
use bytes::BytesMut;

fn sample() -> Vec<Record> {
    vec![
        Record {
            key: Some(Bytes::from_static(b"k1")),
            value: Some(Bytes::from_static(b"v1")),
            headers: vec![("h".into(), Bytes::from_static(b"x"))],
            timestamp: 1000,
            offset: 0,
        },
        Record { key: None, value: None, headers: vec![], timestamp: 990, offset: 0 },
        Record { key: None, value: Some(Bytes::from(vec![7u8; 300])), headers: vec![], timestamp: 1010, offset: 0 },
    ]
}

#[test]
fn round_trip_keeps_every_field() {
    let mut batch = encode(&sample()).unwrap();
    set_base_offset(&mut batch, 42);
    let header = validate(&batch).unwrap();
    assert_eq!(header.base_offset, 42);
    assert_eq!(header.record_count, 3);
    assert_eq!(header.base_timestamp, 990);
    assert_eq!(header.max_timestamp, 1010);
    assert_eq!(header.total_bytes(), batch.len());
    let records = decode_all(&batch).unwrap();
    let expected: Vec<Record> = sample()
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.offset = 42 + i as i64;
            r
        })
        .collect();
    assert_eq!(records, expected);
}

#[test]
fn a_flipped_bit_fails_the_checksum() {
    let mut batch = encode(&sample()).unwrap();
    let last = batch.len() - 1;
    batch[last] ^= 1;
    assert!(matches!(validate(&batch), Err(BatchError::Checksum { .. })));
}

#[test]
fn base_offset_is_outside_the_checksum() {
    let mut batch = encode(&sample()).unwrap();
    set_base_offset(&mut batch, 1 << 40);
    assert!(validate(&batch).is_ok());
}

#[test]
fn log_append_time_restamps_every_record() {
    let mut batch = encode(&sample()).unwrap();
    set_log_append_time(&mut batch, 5555);
    validate(&batch).unwrap();
    assert!(decode_all(&batch).unwrap().iter().all(|r| r.timestamp == 5555));
}

#[test]
fn truncated_and_garbage_input_is_an_error_not_a_panic() {
    let batch = encode(&sample()).unwrap();
    for cut in 0..batch.len() {
        assert!(validate(&batch[..cut]).is_err());
    }
    let mut garbage = batch.clone();
    garbage[MIN_HEADER_BYTES..].fill(0xff);
    reseal(&mut garbage);
    assert!(validate(&garbage).is_err());
}

#[test]
fn shared_decoding_gives_the_same_records_without_copying_them() {
    let mut both = encode(&sample()).unwrap();
    both.extend_from_slice(&encode(&sample()).unwrap());
    let both = both.freeze();
    let shared = decode_all_shared(&both).unwrap();
    assert_eq!(shared, decode_all(&both).unwrap());
    let inside = |b: &Bytes| both.as_ptr_range().contains(&b.as_ptr());
    assert!(shared.iter().flat_map(|r| r.value.iter().chain(r.key.iter())).all(|b| b.is_empty() || inside(b)));
    assert!(shared.iter().flat_map(|r| r.headers.iter()).all(|(_, v)| inside(v)));
}

#[test]
fn decode_all_skips_a_trailing_partial_batch() {
    let mut a = encode(&sample()).unwrap();
    let b = encode(&sample()).unwrap();
    a.extend_from_slice(&b[..b.len() - 5]);
    assert_eq!(decode_all(&a).unwrap().len(), 3);
}

#[test]
fn an_empty_batch_is_refused() {
    assert_eq!(encode(&[]).unwrap_err(), BatchError::Empty);
}

/// A batch of `n` records of 1,000 bytes.
fn large(n: usize) -> BytesMut {
    let record = Record { value: Some(Bytes::from(vec![3u8; 1000])), timestamp: 7, ..Record::default() };
    encode(&vec![record; n]).unwrap()
}

#[test]
fn decoding_checks_the_checksum_of_every_byte_of_a_large_batch() {
    let batch = large(40);
    assert_eq!(decode_all(&batch).unwrap().len(), 40);
    // The header's covered fields, a byte in every 4 KiB of the records,
    // and the last byte.
    let mut positions: Vec<usize> = (CRC_START..MIN_HEADER_BYTES).collect();
    positions.extend((MIN_HEADER_BYTES..batch.len()).step_by(4093));
    positions.push(batch.len() - 1);
    for at in positions.into_iter().filter(|&at| at < batch.len()) {
        let mut flipped = batch.clone();
        flipped[at] ^= 0x10;
        let err = decode_all(&flipped).unwrap_err();
        // A flipped header field may fail its own check first.
        if at >= MIN_HEADER_BYTES {
            assert!(matches!(err, BatchError::Checksum { .. }), "byte {at}: {err:?}");
        }
    }
}

#[test]
fn a_damaged_record_is_a_checksum_error_unless_the_checksum_was_made_over_it() {
    let mut batch = large(20);
    // The fifth record's length, made to point past the batch.
    let at = MIN_HEADER_BYTES + 4 * (batch.len() - MIN_HEADER_BYTES) / 20;
    batch[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(decode_all(&batch), Err(BatchError::Checksum { .. })));
    reseal(&mut batch);
    assert_eq!(decode_all(&batch), Err(BatchError::Malformed("record length out of bounds")));
}
