//! Encoding a successful fetch response without copying its records.
//!
//! [`encode_fetch_head`] writes the response map up to and including the
//! `bin` header of `records`; the frame is that head followed by the stored
//! bytes as they are, so the broker can hand both to the socket without
//! concatenating them. `records` is the map's last field. The bytes are the
//! ones [`encode_ok`](super::encode_ok) gives for the same [`FetchResponse`]
//! (a property test compares them): the same field order, and the smallest
//! MessagePack encoding of each integer, as rmp_serde writes them.

use bytes::{Bytes, BytesMut};

use super::mp_out::{put_bin_len, put_int, put_map_len, put_nil, put_str, put_uint};
use super::FetchResponse;

/// The fields of a successful fetch response, in the order serde writes them:
/// the common header (`error_message` nil), then the fetch's own.
const FIELDS: u8 = 6;

/// The head of a successful fetch response frame: everything before the
/// bytes of `response.records`, which follow it unchanged and end the frame.
/// Records of 4 GiB or more cannot be framed (the writer refuses any frame
/// over `max_frame_bytes`, a `u32`); their length is written as `u32::MAX`.
pub fn encode_fetch_head(correlation_id: u32, response: &FetchResponse) -> Bytes {
    encode_fetch_head_throttled(correlation_id, None, response)
}

/// [`encode_fetch_head`] for a fetch held `throttle_time_ms` for a quota:
/// the header's `throttle_time_ms` follows `error_message`, as serde writes it.
pub fn encode_fetch_head_throttled(
    correlation_id: u32,
    throttle_time_ms: Option<u32>,
    response: &FetchResponse,
) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    put_map_len(&mut out, FIELDS + u8::from(throttle_time_ms.is_some()));
    put_str(&mut out, "correlation_id");
    put_uint(&mut out, u64::from(correlation_id));
    put_str(&mut out, "error_code");
    put_uint(&mut out, 0);
    put_str(&mut out, "error_message");
    put_nil(&mut out);
    if let Some(throttle) = throttle_time_ms {
        put_str(&mut out, "throttle_time_ms");
        put_uint(&mut out, u64::from(throttle));
    }
    put_str(&mut out, "high_watermark");
    put_int(&mut out, response.high_watermark);
    put_str(&mut out, "log_start_offset");
    put_int(&mut out, response.log_start_offset);
    put_str(&mut out, "records");
    put_bin_len(&mut out, response.records.len());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frame(correlation_id: u32, response: &FetchResponse) -> Vec<u8> {
        throttled_frame(correlation_id, None, response)
    }

    fn throttled_frame(correlation_id: u32, throttle: Option<u32>, response: &FetchResponse) -> Vec<u8> {
        let mut bytes = encode_fetch_head_throttled(correlation_id, throttle, response).to_vec();
        bytes.extend_from_slice(&response.records);
        bytes
    }

    /// Integers around every boundary of MessagePack's encodings.
    fn edgy_int() -> impl Strategy<Value = i64> {
        let edges: Vec<i64> = [0i64, 1 << 7, 1 << 8, 1 << 15, 1 << 16, 1 << 31, 1 << 32, 1 << 62]
            .iter()
            .flat_map(|&e| [e - 1, e, e + 1, -e - 1, -e, -e + 1])
            .chain([i64::MIN, i64::MAX, -32, -33])
            .collect();
        prop_oneof![proptest::sample::select(edges), any::<i64>()]
    }

    /// Lengths around the `bin` encodings' boundaries, and some in between.
    fn records_len() -> impl Strategy<Value = usize> {
        prop_oneof![
            proptest::sample::select(vec![0usize, 1, 255, 256, 257, 65_535, 65_536, 65_537, 300_000]),
            0usize..70_000,
        ]
    }

    proptest! {
        #[test]
        fn the_head_and_records_are_the_serde_encoding(
            correlation_id in prop_oneof![proptest::sample::select(vec![0u32, 127, 128, 255, 256, 65_535, 65_536, u32::MAX]), any::<u32>()],
            high_watermark in edgy_int(),
            log_start_offset in edgy_int(),
            len in records_len(),
            fill in any::<u8>(),
            throttle in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
        ) {
            let response = FetchResponse { high_watermark, log_start_offset, records: Bytes::from(vec![fill; len]) };
            prop_assert_eq!(
                throttled_frame(correlation_id, throttle, &response),
                super::super::encode_ok_throttled(correlation_id, throttle, &response).to_vec()
            );
        }
    }

    #[test]
    fn the_head_ends_with_the_records_bin_header() {
        let response = FetchResponse { high_watermark: 5, log_start_offset: 0, records: Bytes::from(vec![7; 300]) };
        let head = encode_fetch_head(9, &response);
        assert_eq!(&head[head.len() - 3..], &[0xc5, 0x01, 0x2c]);
        let value: rmpv::Value = rmp_serde::from_slice(&frame(9, &response)).unwrap();
        let records = value.as_map().unwrap().iter().find(|(k, _)| k.as_str() == Some("records")).unwrap();
        assert_eq!(records.1.as_slice(), Some(&[7u8; 300][..]));
    }
}
