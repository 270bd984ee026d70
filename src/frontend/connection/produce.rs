//! Produce requests of a [`Connection`]: the whole request is checked here
//! (acks, partition, record timestamps, header keys) before the topic routes
//! and appends its records, so a request refused here appends nothing. A
//! request with `acks` 0 is never answered, not even with an error.

use actix::prelude::*;

use super::budget::Admission;
use herald_actors::batch::Record;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::now_ms;
use herald_actors::topic;

use super::{flatten, partition_id, Connection};
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
        let checked = checked_produce(r.acks, r.partition, &r.topic, r.records);
        let produce = match checked {
            Ok(produce) => produce,
            Err(error) if acks == 0 => {
                let peer = self.peer;
                return tracing::debug!(client_id = self.client_id(), %peer, %error, correlation_id, "unanswered produce (acks 0) refused");
            }
            Err(error) => return self.send_error(correlation_id, &error),
        };
        self.with_topic(r.topic, ctx, move |act, topic, ctx| {
            let sent = topic.map(|t| t.send(produce));
            act.respond(
                correlation_id,
                permit,
                async move {
                    let result = sent.map(|s| async move { flatten(s.await) });
                    let partitions = match result {
                        Ok(pending) => pending.await,
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
        });
    }
}

/// The records of a produce request as the topic takes them, once the whole
/// request is checked: nothing of a request that fails here is appended.
fn checked_produce(
    acks: i64,
    partition: Option<i64>,
    topic: &str,
    records: Vec<WireRecord>,
) -> Result<topic::Produce, BrokerError> {
    if !(-1..=1).contains(&acks) {
        return Err(BrokerError::new(ErrorCode::INVALID_REQUIRED_ACKS, format!("acks must be 0, 1 or -1, got {acks}")));
    }
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
