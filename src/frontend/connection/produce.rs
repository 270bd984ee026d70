//! Produce requests of a [`Connection`]: the whole request is checked here
//! (acks, partition, record timestamps, header keys; a producer's `batch`
//! whole, in one pass over its bytes) before its records are routed to
//! partitions and appended, so a request refused here appends nothing. A
//! request with `acks` 0 is never answered, not even with an error. Batches
//! are encoded here and sent straight to the partitions' actors (the topic's
//! [`Route`]): a small request's on the arbiter, a large one's as bulk work
//! off the arbiters.

use actix::prelude::*;

use super::budget::Admission;
use futures::future::LocalBoxFuture;
use herald_actors::batch::{self, Record};
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::now_ms;
use herald_actors::topic;
use herald_actors::topic_route::{self, Route};

use super::reader::SMALL_FRAME_BYTES;
use super::{partition_id, Connection};
use crate::protocol::*;

impl Connection {
    pub(super) fn produce(
        &mut self,
        correlation_id: u32,
        r: ProduceRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let acks = r.acks;
        if let Err(error) = self.refuse_internal_write(&r.topic, "cannot produce to") {
            return self.refuse_produce(correlation_id, acks, &error);
        }
        if let Some(batch) = r.batch {
            let topic = r.topic;
            let max_records = self.limits.max_records_per_request;
            return match checked_batch(acks, r.partition, &topic, batch, max_records) {
                Ok(produce) => self.send_produce(correlation_id, topic, acks, ToTopic::Batch(produce), permit, ctx),
                Err(error) => self.refuse_produce(correlation_id, acks, &error),
            };
        }
        if wire_bytes(&r.records) <= SMALL_FRAME_BYTES {
            let topic = r.topic.clone();
            return match checked_produce(r.acks, r.partition, &r.topic, r.records) {
                Ok(produce) => self.send_produce(correlation_id, topic, acks, ToTopic::Records(produce), permit, ctx),
                Err(error) => self.refuse_produce(correlation_id, acks, &error),
            };
        }
        // A large request is checked and its batches encoded as bulk work
        // (see the `bulk` module), so that the arbiters' other actors are not
        // held up meanwhile; this connection handles nothing else until they
        // are sent, so requests keep their order.
        self.with_route(r.topic.clone(), ctx, move |act, route, ctx| {
            let preparing = super::bulk::run(move || prepare(r, route));
            ctx.wait(preparing.into_actor(act).map(move |prepared, act, ctx| {
                let prepared = prepared.unwrap_or_else(|err| {
                    Err(BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, format!("preparing the batch: {err}")))
                });
                match prepared {
                    Ok(routed) => {
                        let appends = topic::send_routed(routed, topic::Acks::from_wire(acks));
                        act.answer_produce(correlation_id, acks, Ok(Box::pin(appends)), permit, ctx);
                    }
                    Err(error) => act.refuse_produce(correlation_id, acks, &error),
                }
            }));
        });
    }

    /// Answers a produce refused before it reached its topic; a request with
    /// `acks` 0 only in the log.
    fn refuse_produce(&mut self, correlation_id: u32, acks: i64, error: &BrokerError) {
        crate::http::metrics::request_refused(op::PRODUCE, error.code);
        if acks == 0 {
            let peer = self.peer;
            return tracing::debug!(client_id = self.client_id(), %peer, %error, correlation_id, "unanswered produce (acks 0) refused");
        }
        self.send_error(correlation_id, error);
    }

    /// Sends a checked request's batches to their partitions, now.
    fn send_produce(
        &mut self,
        correlation_id: u32,
        topic: String,
        acks: i64,
        message: ToTopic,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        self.with_route(topic, ctx, move |act, route, ctx| {
            let sent = route.and_then(|route| -> Result<Appends, BrokerError> {
                Ok(match message {
                    ToTopic::Records(produce) => Box::pin(topic::send_routed(
                        route.route(produce.partition, produce.records)?,
                        topic::Acks::from_wire(acks),
                    )),
                    ToTopic::Batch(batch) => {
                        let append = topic::send_batch(&route, batch, topic::Acks::from_wire(acks))?;
                        Box::pin(async move { vec![append.await] })
                    }
                })
            });
            act.answer_produce(correlation_id, acks, sent, permit, ctx);
        });
    }

    /// Answers a produce request once its appends are done.
    fn answer_produce(
        &mut self,
        correlation_id: u32,
        acks: i64,
        sent: Result<Appends, BrokerError>,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        self.respond(
            correlation_id,
            permit,
            async move {
                let partitions = match sent {
                    Ok(pending) => Ok(pending.await),
                    Err(err) => Err(err),
                };
                if acks == 0 {
                    if let Err(error) = &partitions {
                        tracing::debug!(%error, "produce with acks=0 failed");
                    }
                    return Ok(None);
                }
                Ok(Some(ProduceResponse {
                    partitions: partitions?
                        .into_iter()
                        .map(|p| {
                            let (base_offset, error) = match p.result {
                                Ok(appended) => (appended.base_offset, None),
                                Err(error) => (-1, Some(error)),
                            };
                            ProducePartitionResponse {
                                partition: p.partition,
                                base_offset,
                                record_count: p.record_count,
                                error_code: error.as_ref().map_or(0, |e| e.code.code()),
                                error_message: error.map(|e| e.message),
                            }
                        })
                        .collect(),
                }))
            },
            ctx,
        );
    }
}

/// The appends of a produce request, sent; resolves to each partition's
/// outcome.
type Appends = LocalBoxFuture<'static, Vec<topic::PartitionAppend>>;

/// What a produce request sends its topic: records for it to route and
/// encode, or one partition's batch, already encoded.
enum ToTopic {
    Records(topic::Produce),
    Batch(topic::ProduceBatch),
}

/// The bytes of records' keys, values and headers.
fn wire_bytes(records: &[WireRecord]) -> usize {
    let headers = |r: &WireRecord| r.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let payload = |r: &WireRecord| r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len());
    records.iter().map(|r| payload(r) + headers(r)).sum()
}

/// Checks a large request, then routes its records and encodes their
/// batches; its records (which share the request's frame) are dropped here
/// with it. The request is checked before the topic's lookup counts, so
/// that errors come in the order of a small request's.
fn prepare(
    r: ProduceRequest,
    route: Result<std::sync::Arc<Route>, BrokerError>,
) -> Result<Vec<topic_route::Routed>, BrokerError> {
    let produce = checked_produce(r.acks, r.partition, &r.topic, r.records)?;
    route?.route(produce.partition, produce.records)
}

/// A producer's batch as the topic takes it, once checked whole (see
/// [`batch::check_produced`]): nothing of a batch that fails here is
/// appended. Its bytes are appended as they are, without a copy when the
/// request's frame holds nothing else still in use.
fn checked_batch(
    acks: i64,
    partition: Option<i64>,
    topic: &str,
    batch: bytes::Bytes,
    max_records: u64,
) -> Result<topic::ProduceBatch, BrokerError> {
    check_acks(acks)?;
    let partition = partition.map(|p| partition_id(p, topic)).transpose()?;
    let header = batch::check_produced(&batch, max_records).map_err(|err| match err {
        batch::ProducedError::Corrupt(message) => BrokerError::new(ErrorCode::CORRUPT_MESSAGE, message),
        err @ batch::ProducedError::Timestamp { .. } => BrokerError::new(ErrorCode::INVALID_TIMESTAMP, err.to_string()),
        batch::ProducedError::Invalid(message) => BrokerError::new(ErrorCode::INVALID_REQUEST, message),
    })?;
    let batch = batch.try_into_mut().unwrap_or_else(|shared| bytes::BytesMut::from(&shared[..]));
    Ok(topic::ProduceBatch { partition, record_count: header.record_count as u32, batch })
}

fn check_acks(acks: i64) -> Result<(), BrokerError> {
    if !(-1..=1).contains(&acks) {
        return Err(BrokerError::new(ErrorCode::INVALID_REQUIRED_ACKS, format!("acks must be 0, 1 or -1, got {acks}")));
    }
    Ok(())
}

/// The records of a produce request as the topic takes them, once the whole
/// request is checked: nothing of a request that fails here is appended.
fn checked_produce(
    acks: i64,
    partition: Option<i64>,
    topic: &str,
    records: Vec<WireRecord>,
) -> Result<topic::Produce, BrokerError> {
    check_acks(acks)?;
    let partition = partition.map(|p| partition_id(p, topic)).transpose()?;
    let now = now_ms();
    let records = records
        .into_iter()
        .enumerate()
        .map(|(n, w)| {
            let timestamp = w.timestamp.unwrap_or(now);
            if !(0..=MAX_TIMESTAMP_MS).contains(&timestamp) {
                return Err(BrokerError::new(
                    ErrorCode::INVALID_TIMESTAMP,
                    format!("record {n} has timestamp {timestamp}; timestamps are 0 to {MAX_TIMESTAMP_MS} (ms since the epoch)"),
                ));
            }
            if let Some((key, _)) = w.headers.iter().find(|(key, _)| key.len() > usize::from(u16::MAX)) {
                return Err(BrokerError::new(
                    ErrorCode::INVALID_REQUEST,
                    format!("record {n} has a header key of {} bytes; the limit is 65535", key.len()),
                ));
            }
            Ok(Record { key: w.key, value: w.value, headers: w.headers, timestamp, offset: 0 })
        })
        .collect::<Result<_, _>>()?;
    Ok(topic::Produce { partition, records })
}
