use bytes::Bytes;

use super::*;
use crate::batch::{
    check_produced, decode_all, decode_all_shared, encode, encode_with, reseal, set_base_offset, set_log_append_time,
    validate, BatchHeader, ProducedError, Record, MIN_HEADER_BYTES,
};

const CODECS: [Compression; 2] = [Compression::Lz4, Compression::Zstd];

/// Log lines alike enough to compress well.
fn lines(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: (i % 3 == 0).then(|| Bytes::from(format!("host-{}", i % 7))),
            value: Some(Bytes::from(format!(
                r#"{{"level":"info","service":"checkout","msg":"order {i} paid","latency_ms":{}}}"#,
                i * 7 % 300
            ))),
            headers: vec![("trace".into(), Bytes::from(format!("{i:016x}")))],
            timestamp: 1_700_000_000_000 + (i as i64 % 50),
            offset: 0,
        })
        .collect()
}

#[test]
fn each_codec_round_trips_with_the_header_of_the_uncompressed_batch() {
    let records = lines(200);
    let plain = encode(&records).unwrap();
    for codec in CODECS {
        let mut batch = encode_with(&records, codec).unwrap();
        set_base_offset(&mut batch, 7);
        let header = validate(&batch).unwrap();
        let plain_header = BatchHeader::parse(&plain).unwrap();
        assert_eq!(header.compression(), Ok(codec));
        assert_eq!(
            (header.record_count, header.last_offset_delta, header.base_timestamp, header.max_timestamp),
            (
                plain_header.record_count,
                plain_header.last_offset_delta,
                plain_header.base_timestamp,
                plain_header.max_timestamp
            )
        );
        assert!(batch.len() < plain.len() / 3, "{codec:?}: {} of {} bytes", batch.len(), plain.len());
        assert_eq!(decompress(codec, &batch[MIN_HEADER_BYTES..]).unwrap(), plain[MIN_HEADER_BYTES..].to_vec());
        let decoded = decode_all(&batch).unwrap();
        assert_eq!(decoded.len(), 200);
        assert!(decoded.iter().zip(&records).enumerate().all(|(i, (d, r))| d.offset == 7 + i as i64
            && (&d.key, &d.value, &d.headers, d.timestamp) == (&r.key, &r.value, &r.headers, r.timestamp)));
        assert_eq!(decode_all_shared(&batch.freeze()).unwrap(), decoded);
    }
}

#[test]
fn no_codec_is_the_uncompressed_encoding_byte_for_byte() {
    assert_eq!(encode_with(&lines(20), Compression::None).unwrap(), encode(&lines(20)).unwrap());
}

#[test]
fn a_producer_may_send_a_compressed_batch_and_the_broker_may_stamp_it() {
    for codec in CODECS {
        let mut batch = encode_with(&lines(10), codec).unwrap();
        let header = check_produced(&batch, 10).unwrap();
        assert_eq!((header.record_count, header.compression()), (10, Ok(codec)));
        assert!(matches!(check_produced(&batch, 9), Err(ProducedError::Invalid(_))));
        set_log_append_time(&mut batch, 4242);
        validate(&batch).unwrap();
        assert_eq!(BatchHeader::parse(&batch).unwrap().compression(), Ok(codec));
        assert!(decode_all(&batch).unwrap().iter().all(|r| r.timestamp == 4242));
    }
}

#[test]
fn a_flipped_byte_of_a_compressed_batch_fails_the_checksum_and_a_damaged_frame_fails_decoding() {
    for codec in CODECS {
        let batch = encode_with(&lines(10), codec).unwrap();
        let mut flipped = batch.clone();
        flipped[MIN_HEADER_BYTES + 10] ^= 0x10;
        assert!(matches!(check_produced(&flipped, 10), Err(ProducedError::Corrupt(m)) if m.contains("checksum")));
        assert!(matches!(validate(&flipped), Err(BatchError::Checksum { .. })));
        reseal(&mut flipped);
        assert!(decode_all(&flipped).is_err(), "{codec:?}");
        let mut cut = batch.clone();
        cut.truncate(batch.len() - 20);
        let length = (cut.len() - 12) as i32;
        cut[8..12].copy_from_slice(&length.to_be_bytes());
        reseal(&mut cut);
        assert!(matches!(decode_all(&cut), Err(BatchError::Malformed(_))), "{codec:?}");
    }
}

#[test]
fn a_compressed_batch_whose_records_disagree_with_its_header_is_refused_on_decoding() {
    for codec in CODECS {
        let mut batch = encode_with(&lines(3), codec).unwrap();
        batch[20..24].copy_from_slice(&3i32.to_be_bytes());
        batch[40..44].copy_from_slice(&4i32.to_be_bytes());
        reseal(&mut batch);
        validate(&batch).unwrap();
        assert_eq!(decode_all(&batch), Err(BatchError::Malformed("record_count disagrees with the records")));
    }
}

#[test]
fn codec_three_is_refused() {
    let mut batch = encode(&lines(2)).unwrap();
    batch[17] = 0x06;
    reseal(&mut batch);
    assert_eq!(validate(&batch), Err(BatchError::UnknownCodec(3)));
    assert_eq!(decode_all(&batch), Err(BatchError::UnknownCodec(3)));
}

/// A batch whose frame is a few kilobytes and expands past the cap: refused
/// with a clear error, the output never grown past the cap.
#[test]
fn a_decompression_bomb_is_refused() {
    let zeros = vec![0u8; MAX_DECOMPRESSED_BYTES + 1];
    for codec in CODECS {
        let mut frame = BytesMut::new();
        compress_into(codec, &zeros, &mut frame).unwrap();
        assert!(frame.len() < MAX_DECOMPRESSED_BYTES / 100, "{codec:?}: {}", frame.len());
        let mut batch = encode(&lines(1)).unwrap();
        batch.truncate(MIN_HEADER_BYTES);
        batch.extend_from_slice(&frame);
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        batch[17] |= codec.attribute_bits();
        reseal(&mut batch);
        let err = decode_all(&batch).unwrap_err();
        assert_eq!(err, BatchError::TooLarge { limit: MAX_DECOMPRESSED_BYTES });
        assert!(err.to_string().contains("decompress to more than 67108864 bytes"), "{err}");
    }
}

#[test]
fn an_encoder_refuses_records_past_the_cap() {
    let big = Record { value: Some(Bytes::from(vec![1u8; MAX_DECOMPRESSED_BYTES])), ..Record::default() };
    assert_eq!(
        encode_with(&[big], Compression::Zstd).unwrap_err(),
        BatchError::TooLarge { limit: MAX_DECOMPRESSED_BYTES }
    );
}

#[test]
fn codec_names_parse() {
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        assert_eq!(codec.name().parse::<Compression>(), Ok(codec));
        assert_eq!(Compression::from_attributes(codec.attribute_bits() | 1), Ok(codec));
    }
    assert!("gzip".parse::<Compression>().is_err());
}
