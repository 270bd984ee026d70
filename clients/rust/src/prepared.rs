//! A produce request built once and sent, perhaps again, to any broker: what
//! a producer resends when the partition's leader moved (docs/protocol.md,
//! "Idempotent retries": the batch goes again byte for byte).

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use herald_wire::batch::{BatchProducer, Compression};
use herald_wire::protocol::codec::LENGTH_BYTES;
use herald_wire::protocol::{op, ProducePartitionResponse, ProduceResponse, WireRecord};

use crate::operations::produce_request;
use crate::{decode_response, Client, ClientError};

/// A produce request ready to send (see the module documentation).
pub struct PreparedProduce {
    form: Form,
    acks: i64,
}

enum Form {
    /// The batch form: the whole frame, with the correlation id of the
    /// connection it was built for, until first sent there.
    Batch { frame: Bytes, correlation_id: u32, built_for: Option<Arc<AtomicU32>> },
    /// The `records` form (a broker without the batch form): encoded at each
    /// send.
    Records { topic: String, partition: Option<u32>, records: Vec<WireRecord> },
}

impl PreparedProduce {
    /// The request's `acks`.
    pub fn acks(&self) -> i64 {
        self.acks
    }
}

impl Client {
    /// Builds the produce request of `records` (as
    /// [`Client::start_produce_as`] would send it) without sending it.
    ///
    /// # Errors
    ///
    /// `MESSAGE_TOO_LARGE` when it cannot fit a frame of this broker; an
    /// idempotent batch that cannot go in the batch form (see
    /// [`Client::start_produce_as`]).
    pub fn prepare_produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<WireRecord>,
        acks: i64,
        compression: Compression,
        producer: Option<BatchProducer>,
    ) -> Result<PreparedProduce, ClientError> {
        let form = match self.produce_batch_frame(topic, partition, &records, acks, compression, producer)? {
            Some((correlation_id, frame)) => {
                Form::Batch { frame, correlation_id, built_for: Some(self.next_id.clone()) }
            }
            None if producer.is_some() => {
                return Err(ClientError::Protocol(
                    "an idempotent producer's records must go as one batch to one partition".into(),
                ))
            }
            None => Form::Records { topic: topic.to_string(), partition, records },
        };
        Ok(PreparedProduce { form, acks })
    }

    /// Sends `prepared` on this connection; the future resolves with the
    /// broker's answer (at once and empty with `acks` 0).
    ///
    /// # Errors
    ///
    /// The connection is closed; [`ClientError::Protocol`] for a frame that
    /// is not a request.
    pub fn start_prepared(
        &self,
        prepared: &mut PreparedProduce,
    ) -> Result<impl std::future::Future<Output = Result<Vec<ProducePartitionResponse>, ClientError>>, ClientError>
    {
        let acks = prepared.acks;
        let answer = match &mut prepared.form {
            Form::Batch { frame, correlation_id, built_for } => {
                self.check_offered(op::PRODUCE)?;
                let here = built_for.take().is_some_and(|b| Arc::ptr_eq(&b, &self.next_id));
                let (id, frame) = match here {
                    true => (*correlation_id, frame.clone()),
                    false => {
                        let id = self.next_correlation_id();
                        (id, with_correlation_id(frame, id)?)
                    }
                };
                if acks == 0 {
                    self.enqueue(id, frame)?;
                    self.forget(id);
                    None
                } else {
                    Some((id, self.enqueue(id, frame)?))
                }
            }
            Form::Records { topic, partition, records } => {
                let request = produce_request(topic, *partition, records.clone(), acks);
                if acks == 0 {
                    self.send_without_response(op::PRODUCE, &request)?;
                    None
                } else {
                    Some(self.send_frame(op::PRODUCE, &request)?)
                }
            }
        };
        let client = self.clone();
        Ok(async move {
            let Some((id, answer)) = answer else { return Ok(Vec::new()) };
            let frame = client.answer(op::PRODUCE, id, answer, std::time::Duration::ZERO).await?;
            let partitions = match crate::response::produce_partitions(&frame) {
                Some(partitions) => partitions,
                None => decode_response::<ProduceResponse>(&frame)?.partitions,
            };
            if let Some(failed) = partitions.iter().find(|p| p.error_code != 0) {
                return Err(ClientError::broker(failed.error_code, failed.error_message.clone()));
            }
            Ok(partitions)
        })
    }
}

/// `frame` (length prefix, then a request map whose first entry is
/// `correlation_id`) with correlation id `id` instead.
fn with_correlation_id(frame: &Bytes, id: u32) -> Result<Bytes, ClientError> {
    const KEY: &[u8] = b"\xaecorrelation_id";
    let malformed = || ClientError::Protocol("a prepared request frame that does not start as a request".into());
    let body = frame.get(LENGTH_BYTES..).ok_or_else(malformed)?;
    let header = match body.first() {
        Some(0x80..=0x8f) => 1,
        Some(0xde) => 3,
        Some(0xdf) => 5,
        _ => return Err(malformed()),
    };
    if body.get(header..header + KEY.len()) != Some(KEY) {
        return Err(malformed());
    }
    let value = header + KEY.len();
    let width = match body.get(value) {
        Some(0x00..=0x7f) => 1,
        Some(0xcc) => 2,
        Some(0xcd) => 3,
        Some(0xce) => 5,
        Some(0xcf) => 9,
        _ => return Err(malformed()),
    };
    let rest = body.get(value + width..).ok_or_else(malformed)?;
    let mut out = BytesMut::with_capacity(frame.len() + 4);
    out.put_u32(0);
    out.put_slice(&body[..value]);
    out.put_u8(0xce);
    out.put_u32(id);
    out.put_slice(rest);
    let length = u32::try_from(out.len() - LENGTH_BYTES).map_err(|_| malformed())?;
    out[..LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_wire::protocol::{ProduceRequest, RequestEnvelope};

    /// The correlation id of a frame, as the broker reads it.
    fn id_of(frame: &Bytes) -> u32 {
        #[derive(serde::Deserialize)]
        struct Head {
            correlation_id: u32,
        }
        let head: Head = rmp_serde::from_slice(&frame[LENGTH_BYTES..]).unwrap();
        let length = u32::from_be_bytes(frame[..LENGTH_BYTES].try_into().unwrap()) as usize;
        assert_eq!(length, frame.len() - LENGTH_BYTES, "the length prefix");
        head.correlation_id
    }

    #[test]
    fn a_frame_gets_another_correlation_id_and_keeps_the_rest() {
        for first in [1u32, 200, 70_000, u32::MAX] {
            let request = ProduceRequest {
                topic: "t".into(),
                partition: Some(3),
                acks: -1,
                records: vec![WireRecord { value: Some(Bytes::from_static(b"v")), ..Default::default() }],
                batch: None,
            };
            let mut frame = vec![0u8; LENGTH_BYTES];
            rmp_serde::encode::write_named(
                &mut frame,
                &RequestEnvelope { correlation_id: first, op: op::PRODUCE, body: &request },
            )
            .unwrap();
            let length = (frame.len() - LENGTH_BYTES) as u32;
            frame[..LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
            let frame = Bytes::from(frame);
            assert_eq!(id_of(&frame), first);
            for next in [0u32, 5, 300, 1 << 20] {
                let again = with_correlation_id(&frame, next).unwrap();
                assert_eq!(id_of(&again), next);
                let tail = |f: &Bytes| f[f.len() - 20..].to_vec();
                assert_eq!(tail(&again), tail(&frame), "the rest of the request is unchanged");
            }
        }
        assert!(with_correlation_id(&Bytes::from_static(b"\0\0\0\x01\x90"), 1).is_err());
    }
}
