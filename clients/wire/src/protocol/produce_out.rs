//! Encoding a produce request whose records go as one batch, in one buffer:
//! the length prefix, the request map written by hand, the `batch` bin
//! header, then the batch encoded in place (each record's data copied once,
//! the checksum computed where it lies), and the length patched last. No
//! intermediate buffer holds the batch or the request.
//!
//! The bytes are those rmp_serde writes for a [`RequestEnvelope`] of the same
//! [`ProduceRequest`] (a property test compares them): the same fields in the
//! same order (`partition` nil when absent, no `records`), and the smallest
//! encoding of each integer, length and string.
//!
//! [`RequestEnvelope`]: super::RequestEnvelope
//! [`ProduceRequest`]: super::ProduceRequest

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::LENGTH_BYTES;
use super::mp_out::{bin_len_bytes, put_bin_len, put_int, put_map_len, put_nil, put_str, put_uint};
use super::op;
use crate::batch::{BatchError, BatchPlan, BatchProducer, Compression, RecordParts};

/// A produce request's fields besides its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceHead<'a> {
    pub correlation_id: u32,
    pub topic: &'a str,
    pub partition: Option<i64>,
    pub acks: i64,
    /// The idempotent producer's fields: the batch is magic 2 with them
    /// (magic 1 when `None`).
    pub producer: Option<BatchProducer>,
}

/// Why a produce frame was not built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProduceFrameError {
    /// The records cannot form a batch.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The request would be `bytes` long (without its length prefix), over
    /// the limit given.
    #[error("a produce request of {bytes} bytes exceeds max_frame_bytes {max}")]
    TooLarge { bytes: usize, max: usize },
}

/// The map's fields: correlation_id, op, topic, partition, acks, batch.
const FIELDS: u8 = 6;

/// A whole produce frame, length prefix included, carrying `records` (read
/// twice: measured, then written) as one batch with base offset 0.
///
/// # Errors
///
/// [`ProduceFrameError::Batch`] when the records cannot form a batch (see
/// [`BatchPlan::of`]); [`ProduceFrameError::TooLarge`], before the records
/// are written, when the request's bytes would exceed `max_frame_bytes`
/// (or `u32::MAX`).
pub fn encode_produce_batch<'a, I>(
    head: &ProduceHead<'_>,
    records: I,
    max_frame_bytes: usize,
) -> Result<Bytes, ProduceFrameError>
where
    I: Iterator<Item = RecordParts<'a>> + Clone,
{
    let plan = BatchPlan::of(records.clone())?.with_producer(head.producer)?;
    let mut out = BytesMut::with_capacity(LENGTH_BYTES + 96 + head.topic.len() + plan.bytes());
    put_head(&mut out, head);
    let bytes = out.len() - LENGTH_BYTES + bin_len_bytes(plan.bytes()) + plan.bytes();
    let max = max_frame_bytes.min(u32::MAX as usize);
    if bytes > max {
        return Err(ProduceFrameError::TooLarge { bytes, max });
    }
    put_bin_len(&mut out, plan.bytes());
    plan.encode_into(&mut out, records);
    out[..LENGTH_BYTES].copy_from_slice(&(bytes as u32).to_be_bytes());
    Ok(out.freeze())
}

/// As [`encode_produce_batch`], the batch's records compressed with `codec`
/// (docs/protocol.md, "Compression"). A compressed batch is built apart (its
/// size is known only once compressed) and copied into the frame.
///
/// # Errors
///
/// As [`encode_produce_batch`], the size being that of the compressed frame;
/// [`ProduceFrameError::Batch`] also for records over
/// [`crate::batch::MAX_DECOMPRESSED_BYTES`].
pub fn encode_produce_batch_with<'a, I>(
    head: &ProduceHead<'_>,
    records: I,
    max_frame_bytes: usize,
    codec: Compression,
) -> Result<Bytes, ProduceFrameError>
where
    I: Iterator<Item = RecordParts<'a>> + Clone,
{
    if codec == Compression::None {
        return encode_produce_batch(head, records, max_frame_bytes);
    }
    let plan = BatchPlan::of(records.clone())?.with_producer(head.producer)?;
    let mut batch = BytesMut::new();
    plan.encode_compressed_into(&mut batch, records, codec)?;
    let mut out = BytesMut::with_capacity(LENGTH_BYTES + 96 + head.topic.len() + batch.len());
    put_head(&mut out, head);
    let bytes = out.len() - LENGTH_BYTES + bin_len_bytes(batch.len()) + batch.len();
    let max = max_frame_bytes.min(u32::MAX as usize);
    if bytes > max {
        return Err(ProduceFrameError::TooLarge { bytes, max });
    }
    put_bin_len(&mut out, batch.len());
    out.put_slice(&batch);
    out[..LENGTH_BYTES].copy_from_slice(&(bytes as u32).to_be_bytes());
    Ok(out.freeze())
}

/// The length prefix (0, patched last) and every field of the map but the
/// batch's bytes, up to its key.
fn put_head(out: &mut BytesMut, head: &ProduceHead<'_>) {
    out.put_u32(0); // the length, patched below
    put_map_len(out, FIELDS);
    put_str(out, "correlation_id");
    put_uint(out, u64::from(head.correlation_id));
    put_str(out, "op");
    put_str(out, op::PRODUCE);
    put_str(out, "topic");
    put_str(out, head.topic);
    put_str(out, "partition");
    match head.partition {
        Some(partition) => put_int(out, partition),
        None => put_nil(out),
    }
    put_str(out, "acks");
    put_int(out, head.acks);
    put_str(out, "batch");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{ProduceRequest, Request, RequestEnvelope};
    use super::*;
    use crate::batch::{self, Record};

    /// The frame rmp_serde gives for the same request, length prefix included.
    fn serde_frame(head: &ProduceHead<'_>, records: &[Record]) -> Vec<u8> {
        let body = ProduceRequest {
            topic: head.topic.into(),
            partition: head.partition,
            acks: head.acks,
            records: Vec::new(),
            batch: Some(batch::encode(records).unwrap().freeze()),
        };
        let payload =
            rmp_serde::to_vec_named(&RequestEnvelope { correlation_id: head.correlation_id, op: op::PRODUCE, body })
                .unwrap();
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        frame
    }

    fn hand_frame(head: &ProduceHead<'_>, records: &[Record], max: usize) -> Result<Bytes, ProduceFrameError> {
        encode_produce_batch(head, records.iter().map(RecordParts::from), max)
    }

    /// Integers around every boundary of MessagePack's encodings.
    fn edgy_int() -> impl Strategy<Value = i64> {
        let edges: Vec<i64> = [0i64, 1 << 5, 1 << 7, 1 << 8, 1 << 15, 1 << 16, 1 << 31, 1 << 32, 1 << 62]
            .iter()
            .flat_map(|&e| [e - 1, e, e + 1, -e - 1, -e, -e + 1])
            .chain([i64::MIN, i64::MAX])
            .collect();
        prop_oneof![proptest::sample::select(edges), any::<i64>()]
    }

    /// Byte strings whose lengths straddle the batch's and MessagePack's
    /// length encodings.
    fn data() -> impl Strategy<Value = Option<Bytes>> {
        let len = prop_oneof![0usize..40, proptest::sample::select(vec![255usize, 256, 65_535, 65_536])];
        proptest::option::of((len, any::<u8>()).prop_map(|(n, b)| Bytes::from(vec![b; n])))
    }

    fn record() -> impl Strategy<Value = Record> {
        let headers = proptest::collection::vec(("[a-z]{0,40}", data()), 0..3)
            .prop_map(|h| h.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect());
        let timestamp = prop_oneof![1_700_000_000_000i64..1_700_000_100_000, -5i64..5];
        (data(), data(), headers, timestamp).prop_map(|(key, value, headers, timestamp)| Record {
            key,
            value,
            headers,
            timestamp,
            offset: 0,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn the_frame_is_the_serde_encoding(
            correlation_id in prop_oneof![proptest::sample::select(vec![1u32, 127, 128, 255, 256, 65_535, 65_536, u32::MAX]), any::<u32>()],
            topic in prop_oneof!["[a-z.]{1,31}", "[a-z]{32,40}", "[a-z]{250,300}"],
            partition in proptest::option::of(edgy_int()),
            acks in prop_oneof![proptest::sample::select(vec![-1i64, 0, 1]), edgy_int()],
            records in proptest::collection::vec(record(), 1..8),
        ) {
            let head = ProduceHead { correlation_id, topic: &topic, partition, acks, producer: None };
            let hand = hand_frame(&head, &records, usize::MAX).unwrap();
            prop_assert_eq!(hand.to_vec(), serde_frame(&head, &records));
        }
    }

    #[test]
    fn a_large_batch_takes_a_bin32_header_and_stays_the_serde_encoding() {
        let record = Record { value: Some(Bytes::from(vec![9u8; 1000])), timestamp: 7, ..Record::default() };
        let records = vec![record; 1000];
        let head = ProduceHead { correlation_id: 3, topic: "bench", partition: Some(0), acks: 1, producer: None };
        let hand = hand_frame(&head, &records, usize::MAX).unwrap();
        assert_eq!(hand.to_vec(), serde_frame(&head, &records));
    }

    #[test]
    fn the_broker_decodes_the_frame_into_the_batch() {
        let records = vec![Record { value: Some(Bytes::from_static(b"v")), timestamp: 5, ..Record::default() }; 3];
        let head = ProduceHead { correlation_id: 11, topic: "orders", partition: Some(2), acks: -1, producer: None };
        let frame = hand_frame(&head, &records, usize::MAX).unwrap();
        let (id, request) = Request::decode_bounded(&frame.slice(LENGTH_BYTES..), 100).unwrap();
        let Request::Produce(produce) = request else { panic!("decoded {request:?}") };
        assert_eq!((id, produce.topic.as_str(), produce.partition, produce.acks), (11, "orders", Some(2), -1));
        assert_eq!(produce.batch.unwrap(), batch::encode(&records).unwrap());
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_it_is_written() {
        let records = vec![Record { value: Some(Bytes::from(vec![1u8; 500])), ..Record::default() }; 4];
        let head = ProduceHead { correlation_id: 1, topic: "t", partition: None, acks: 1, producer: None };
        let exact = hand_frame(&head, &records, usize::MAX).unwrap().len() - LENGTH_BYTES;
        assert!(hand_frame(&head, &records, exact).is_ok());
        assert_eq!(
            hand_frame(&head, &records, exact - 1).unwrap_err(),
            ProduceFrameError::TooLarge { bytes: exact, max: exact - 1 }
        );
    }

    #[test]
    fn records_that_cannot_form_a_batch_are_the_batch_error() {
        let head = ProduceHead { correlation_id: 1, topic: "t", partition: None, acks: 1, producer: None };
        assert_eq!(hand_frame(&head, &[], usize::MAX).unwrap_err(), ProduceFrameError::Batch(BatchError::Empty));
        let far = [Record { timestamp: i64::MIN, ..Record::default() }, Record { timestamp: 1, ..Record::default() }];
        assert!(matches!(hand_frame(&head, &far, usize::MAX), Err(ProduceFrameError::Batch(BatchError::Malformed(_)))));
    }
}
