//! Magic 2: the idempotent producer's fields, next to magic 1 batches.

use super::*;
use bytes::BytesMut;

fn records() -> Vec<Record> {
    (0..3)
        .map(|i| Record { value: Some(Bytes::from(vec![i as u8; 10])), timestamp: 1_000 + i, ..Default::default() })
        .collect()
}

fn producer(base_sequence: i32) -> BatchProducer {
    BatchProducer { producer_id: 7, producer_epoch: 2, base_sequence }
}

fn encode_v2(records: &[Record], fields: BatchProducer, codec: Compression) -> BytesMut {
    let plan = BatchPlan::of(records.iter().map(RecordParts::from)).unwrap().with_producer(Some(fields)).unwrap();
    let mut buf = BytesMut::new();
    plan.encode_compressed_into(&mut buf, records.iter().map(RecordParts::from), codec).unwrap();
    buf
}

#[test]
fn magic_2_round_trips_its_producer_fields_and_records() {
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let mut batch = encode_v2(&records(), producer(41), codec);
        set_base_offset(&mut batch, 100);
        let header = validate(&batch).unwrap();
        assert_eq!(header.magic, MAGIC_V2);
        assert_eq!(header.header_bytes(), 58);
        assert_eq!(header.producer(), Some(producer(41)));
        assert_eq!((header.base_sequence, header.last_sequence()), (41, 43));
        let decoded = decode_all(&batch).unwrap();
        let expected: Vec<_> =
            records().into_iter().enumerate().map(|(i, r)| Record { offset: 100 + i as i64, ..r }).collect();
        assert_eq!(decoded, expected, "{codec:?}");
        assert_eq!(check_produced(&batch, 10).unwrap(), header);
    }
}

#[test]
fn magic_1_still_decodes_without_a_producer() {
    let batch = encode(&records()).unwrap();
    let header = validate(&batch).unwrap();
    assert_eq!((header.magic, header.header_bytes()), (MAGIC_V1, 44));
    assert_eq!(header.producer(), None);
    assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (-1, -1, -1));
    assert_eq!(header.last_sequence(), -1);
    assert_eq!(decode_all(&batch).unwrap().len(), 3);
}

#[test]
fn the_two_versions_decode_side_by_side() {
    let mut both = BytesMut::from(&encode(&records()).unwrap()[..]);
    let mut second = encode_v2(&records(), producer(0), Compression::None);
    set_base_offset(&mut second, 3);
    both.extend_from_slice(&second);
    let decoded = decode_all(&both).unwrap();
    assert_eq!(decoded.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
    // A fetch cut inside the second batch's producer fields.
    let cut = decode_all(&both[..both.len() - second.len() + 50]).unwrap();
    assert_eq!(cut.len(), 3);
}

#[test]
fn a_damaged_magic_2_header_is_refused() {
    let batch = encode_v2(&records(), producer(5), Compression::None);
    for at in 44..58 {
        let mut flipped = batch.clone();
        flipped[at] ^= 0x01;
        assert!(matches!(validate(&flipped), Err(BatchError::Checksum { .. })), "byte {at}");
    }
    // Fields that cannot be, resealed so only they are wrong.
    for (id, epoch, sequence) in [(-1, 0, 0), (-2, -1, -1), (7, -1, 0), (7, 0, -5)] {
        let mut bad = batch.clone();
        bad[44..52].copy_from_slice(&i64::to_be_bytes(id));
        bad[52..54].copy_from_slice(&i16::to_be_bytes(epoch));
        bad[54..58].copy_from_slice(&i32::to_be_bytes(sequence));
        reseal(&mut bad);
        assert!(matches!(validate(&bad), Err(BatchError::Malformed(_))), "{id} {epoch} {sequence}");
    }
    // A header cut before its producer fields.
    assert!(matches!(BatchHeader::parse(&batch[..50]), Err(BatchError::Truncated { needed: 58, .. })));
    // A batch_length that leaves no room for them.
    let mut short = batch.clone();
    short[8..12].copy_from_slice(&40i32.to_be_bytes());
    assert!(matches!(BatchHeader::parse(&short), Err(BatchError::Malformed(_))));
    let mut magic = batch.clone();
    magic[MAGIC_OFFSET] = 3;
    assert_eq!(BatchHeader::parse(&magic), Err(BatchError::BadMagic(3)));
}

#[test]
fn sequences_wrap_from_the_largest_to_0() {
    assert_eq!(add_sequence(5, 3), 8);
    assert_eq!(add_sequence(i32::MAX, 1), 0);
    assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
    let header = BatchHeader::parse(&encode_v2(&records(), producer(i32::MAX - 1), Compression::None)).unwrap();
    assert_eq!(header.last_sequence(), 0);
}
