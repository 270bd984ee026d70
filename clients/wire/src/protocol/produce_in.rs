//! Decoding a `produce` request without copying its records: each record's
//! key, value and header values become [`Bytes`] that share the frame's
//! memory ([`Bytes::slice_ref`]) instead of a buffer each.
//!
//! A produce frame is mostly record bytes, and the broker copies them once
//! more into the stored batch. Borrowing them from the frame keeps decoding
//! at the frame plus a fixed size per record and header (bounded by
//! `max_records_per_request` and the frame's length) rather than a second
//! copy of every payload; the frame's memory is freed once the batches are
//! built and the records dropped.
//!
//! The request is decoded strictly, as every other ([`strict`](super::strict)),
//! into borrowed mirrors of [`ProduceRequest`] and [`WireRecord`] with the
//! same fields, defaults and types on the wire, so that what is accepted and
//! every error message stay those of the owned types.

use bytes::Bytes;
use serde::Deserialize;

use super::messages::{default_acks, nil_is_default, nil_is_default_acks, ProduceRequest, WireRecord};
use super::strict;

/// [`ProduceRequest`], with its records borrowed from the frame.
#[derive(Deserialize)]
struct ProduceRequestIn<'a> {
    topic: String,
    #[serde(default)]
    partition: Option<i64>,
    #[serde(default = "default_acks", deserialize_with = "nil_is_default_acks")]
    acks: i64,
    #[serde(default, borrow)]
    records: Option<Vec<WireRecordIn<'a>>>,
    #[serde(default, borrow)]
    batch: Option<&'a [u8]>,
}

/// [`WireRecord`], borrowed from the frame.
#[derive(Deserialize)]
struct WireRecordIn<'a> {
    #[serde(default, borrow)]
    key: Option<&'a [u8]>,
    #[serde(default, borrow)]
    value: Option<&'a [u8]>,
    #[serde(default, borrow, deserialize_with = "nil_is_default")]
    headers: Vec<(&'a str, &'a [u8])>,
    #[serde(default)]
    timestamp: Option<i64>,
}

/// Decodes a produce request from `frame`, its record bytes sharing the
/// frame's memory.
///
/// # Errors
///
/// As [`strict::from_slice`] for [`ProduceRequest`].
pub(super) fn decode(frame: &Bytes) -> Result<ProduceRequest, rmp_serde::decode::Error> {
    let request: ProduceRequestIn<'_> = strict::from_slice(frame)?;
    let share = |slice: &[u8]| frame.slice_ref(slice);
    let records = match (request.records, request.batch) {
        (Some(_), Some(_)) => {
            return Err(serde::de::Error::custom("a produce request carries `records` or `batch`, not both"))
        }
        (None, None) => return Err(serde::de::Error::custom("a produce request needs `records` or `batch`")),
        (None, Some(batch)) => {
            return Ok(ProduceRequest {
                topic: request.topic,
                partition: request.partition,
                acks: request.acks,
                records: Vec::new(),
                batch: Some(share(batch)),
            })
        }
        (Some(records), None) => records,
    };
    let records = records
        .into_iter()
        .map(|r| WireRecord {
            key: r.key.map(share),
            value: r.value.map(share),
            headers: r.headers.into_iter().map(|(key, value)| (key.to_owned(), share(value))).collect(),
            timestamp: r.timestamp,
        })
        .collect();
    Ok(ProduceRequest { topic: request.topic, partition: request.partition, acks: request.acks, records, batch: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{op, RequestEnvelope};

    fn frame(body: &ProduceRequest) -> Bytes {
        Bytes::from(rmp_serde::to_vec_named(&RequestEnvelope { correlation_id: 2, op: op::PRODUCE, body }).unwrap())
    }

    fn within(frame: &Bytes, part: &Bytes) -> bool {
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        range.contains(&(part.as_ptr() as usize)) && part.as_ptr() as usize + part.len() <= range.end
    }

    #[test]
    fn record_bytes_share_the_frame() {
        let record = WireRecord {
            key: Some(Bytes::from_static(b"key")),
            value: Some(Bytes::from(vec![7u8; 1000])),
            headers: vec![("trace".into(), Bytes::from_static(b"abc"))],
            timestamp: Some(5),
        };
        let request = ProduceRequest {
            topic: "t".into(),
            partition: Some(1),
            acks: -1,
            records: vec![record.clone(); 3],
            batch: None,
        };
        let frame = frame(&request);
        let decoded = decode(&frame).unwrap();
        assert_eq!((decoded.topic.as_str(), decoded.partition, decoded.acks), ("t", Some(1), -1));
        assert_eq!(decoded.records.len(), 3);
        for r in &decoded.records {
            assert_eq!(
                (&r.key, &r.value, &r.headers, r.timestamp),
                (&record.key, &record.value, &record.headers, Some(5))
            );
            assert!(within(&frame, r.key.as_ref().unwrap()) && within(&frame, r.value.as_ref().unwrap()));
            assert!(within(&frame, &r.headers[0].1));
        }
    }

    #[test]
    fn defaults_and_errors_are_those_of_the_owned_types() {
        let decoded = decode(&frame(&ProduceRequest {
            topic: "t".into(),
            partition: None,
            acks: 1,
            records: vec![WireRecord::default()],
            batch: None,
        }))
        .unwrap();
        let record = &decoded.records[0];
        assert!(record.key.is_none() && record.value.is_none() && record.headers.is_empty());
        assert_eq!(record.timestamp, None);

        // Each malformed request gets the error the owned type would give.
        let cases: Vec<rmpv::Value> = vec![
            rmpv::Value::Map(vec![("topic".into(), "t".into()), ("records".into(), rmpv::Value::Binary(vec![1]))]),
            rmpv::Value::Map(vec![
                ("topic".into(), "t".into()),
                ("records".into(), rmpv::Value::Array(vec![rmpv::Value::Map(vec![("value".into(), "text".into())])])),
            ]),
            rmpv::Value::Map(vec![
                ("topic".into(), "t".into()),
                (
                    "records".into(),
                    rmpv::Value::Array(vec![rmpv::Value::Map(vec![(
                        "headers".into(),
                        rmpv::Value::Array(vec![rmpv::Value::Array(vec![
                            rmpv::Value::Binary(b"k".to_vec()),
                            rmpv::Value::Binary(vec![]),
                        ])]),
                    )])]),
                ),
            ]),
            rmpv::Value::Map(vec![
                ("topic".into(), "t".into()),
                ("acks".into(), rmpv::Value::Nil),
                ("records".into(), rmpv::Value::Array(vec![rmpv::Value::Map(vec![("key".into(), rmpv::Value::Nil)])])),
            ]),
        ];
        let last = cases.len() - 1;
        for (n, case) in cases.into_iter().enumerate() {
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &case).unwrap();
            let owned = strict::from_slice::<ProduceRequest>(&bytes).map(|r| (r.acks, r.records.len()));
            assert_eq!(owned.is_ok(), n == last, "{case}: {owned:?}");
            let borrowed = decode(&Bytes::from(bytes)).map(|r| (r.acks, r.records.len()));
            assert_eq!(owned.map_err(|e| e.to_string()), borrowed.map_err(|e| e.to_string()), "{case}");
        }
    }

    #[test]
    fn a_request_carries_records_or_a_batch() {
        let map = |fields: Vec<(&str, rmpv::Value)>| {
            let mut bytes = Vec::new();
            let fields = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
            rmpv::encode::write_value(&mut bytes, &rmpv::Value::Map(fields)).unwrap();
            Bytes::from(bytes)
        };
        let records = || ("records", rmpv::Value::Array(vec![rmpv::Value::Map(vec![])]));
        let batch = || ("batch", rmpv::Value::Binary(vec![1, 2, 3]));
        let both = decode(&map(vec![("topic", "t".into()), records(), batch()])).map(|_| ()).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let neither = decode(&map(vec![("topic", "t".into())])).map(|_| ()).unwrap_err();
        assert!(neither.to_string().contains("needs `records` or `batch`"), "{neither}");
        let frame = map(vec![("topic", "t".into()), ("partition", 2.into()), batch()]);
        let decoded = decode(&frame).unwrap();
        assert!(decoded.records.is_empty());
        let bytes = decoded.batch.unwrap();
        assert_eq!(&bytes[..], &[1, 2, 3]);
        assert!(within(&frame, &bytes), "the batch shares the frame");
        assert_eq!(decode(&map(vec![("topic", "t".into()), records()])).unwrap().records.len(), 1);
    }
}
