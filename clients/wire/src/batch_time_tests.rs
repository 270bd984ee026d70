//! Time arithmetic of batches at the edges of the timestamp range and beyond.

use super::*;
use bytes::BytesMut;

/// The largest timestamp a produce accepts: 9999-12-31T23:59:59.999Z.
const MAX_ACCEPTED: i64 = 253_402_300_799_999;

fn at(timestamp: i64) -> Record {
    Record { key: None, value: Some(Bytes::from_static(b"v")), headers: vec![], timestamp, offset: 0 }
}

/// A one-record batch with the given header timestamps and record delta,
/// written as an older writer (or damage) could have left it.
fn crafted(base_timestamp: i64, max_timestamp: i64, timestamp_delta: i64) -> BytesMut {
    let mut batch = encode(&[at(0)]).unwrap();
    batch[BASE_TIMESTAMP_OFFSET..BASE_TIMESTAMP_OFFSET + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    // The record's timestamp delta follows its length and offset delta.
    let delta_at = MIN_HEADER_BYTES + 4 + 4;
    batch[delta_at..delta_at + 8].copy_from_slice(&timestamp_delta.to_be_bytes());
    reseal(&mut batch);
    batch
}

#[test]
fn the_edges_of_the_accepted_range_round_trip() {
    let batch = encode(&[at(MAX_ACCEPTED), at(0), at(MAX_ACCEPTED - 1), at(1)]).unwrap();
    let header = validate(&batch).unwrap();
    assert_eq!((header.base_timestamp, header.max_timestamp), (0, MAX_ACCEPTED));
    let times: Vec<i64> = decode_all(&batch).unwrap().iter().map(|r| r.timestamp).collect();
    assert_eq!(times, [MAX_ACCEPTED, 0, MAX_ACCEPTED - 1, 1]);
}

#[test]
fn the_extremes_of_i64_alone_round_trip() {
    for timestamp in [i64::MIN, i64::MAX, -1] {
        let batch = encode(&[at(timestamp), at(timestamp)]).unwrap();
        assert!(decode_all(&batch).unwrap().iter().all(|r| r.timestamp == timestamp), "{timestamp}");
    }
}

#[test]
fn a_delta_that_overflows_is_refused_on_encode_not_wrapped() {
    for (a, b) in [(i64::MAX, i64::MIN), (i64::MIN, 1), (i64::MAX, -1)] {
        let err = encode(&[at(a), at(b)]).unwrap_err();
        assert!(matches!(err, BatchError::Malformed(m) if m.contains("timestamps")), "{a} {b}: {err}");
    }
    // The widest pair that still fits.
    let batch = encode(&[at(i64::MAX), at(0)]).unwrap();
    let times: Vec<i64> = decode_all(&batch).unwrap().iter().map(|r| r.timestamp).collect();
    assert_eq!(times, [i64::MAX, 0]);
}

#[test]
fn a_stored_delta_that_overflows_is_malformed_on_decode_not_wrapped() {
    // What a wrapping encoder wrote for i64::MAX beside i64::MIN: base i64::MIN,
    // delta -1, which a wrapping decoder reads back as i64::MAX.
    for (base, delta) in [(i64::MIN, -1), (i64::MAX, 1), (MAX_ACCEPTED, i64::MAX), (-1, i64::MIN)] {
        let batch = crafted(base, i64::MAX, delta);
        validate(&batch).expect("validation does not look at timestamps");
        let err = decode_all(&batch).unwrap_err();
        assert!(matches!(err, BatchError::Malformed(m) if m.contains("timestamp")), "{base} {delta}: {err}");
    }
    // In range: the sum is the timestamp.
    let batch = crafted(MAX_ACCEPTED - 5, MAX_ACCEPTED, 5);
    assert_eq!(decode_all(&batch).unwrap()[0].timestamp, MAX_ACCEPTED);
}

#[test]
fn log_append_time_ignores_a_stored_delta_that_would_overflow() {
    let mut batch = crafted(i64::MIN, i64::MAX, -1);
    set_log_append_time(&mut batch, MAX_ACCEPTED);
    assert_eq!(decode_all(&batch).unwrap()[0].timestamp, MAX_ACCEPTED);
}

#[test]
fn an_offset_past_i64_is_malformed() {
    let mut batch = encode(&[at(1), at(2)]).unwrap();
    set_base_offset(&mut batch, i64::MAX);
    let err = decode_all(&batch).unwrap_err();
    assert!(matches!(err, BatchError::Malformed(m) if m.contains("offset")), "{err}");
}
