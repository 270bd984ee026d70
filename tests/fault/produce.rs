//! The acknowledged producer of the process scenarios: batches of unique
//! values to one partition, a few requests in flight, until a request fails
//! (the broker died). Not every scenario uses it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use herald::client::Client;
use herald::protocol::ProducePartitionResponse;

use super::Ack;
use crate::common::value;

/// Records per produce request.
pub const BATCH: usize = 50;
/// Produce requests in flight at once.
pub const IN_FLIGHT: usize = 4;

/// Produces batches of values `c{cycle}-w{worker}-s{seq}-r{i}` to
/// `partition` of `topic` with acks all until a request fails; returns every
/// acknowledged record, counting them on `count` as they are acknowledged.
pub async fn produce_until_failure(
    client: Client,
    topic: &str,
    partition: u32,
    cycle: u64,
    worker: usize,
    count: Arc<AtomicUsize>,
) -> Vec<Ack> {
    let mut acked = Vec::new();
    let mut in_flight = VecDeque::new();
    let settle = |acked: &mut Vec<Ack>, values: Vec<String>, written: Vec<ProducePartitionResponse>| {
        let base = written[0].base_offset;
        count.fetch_add(values.len(), Ordering::Relaxed);
        acked.extend(values.into_iter().enumerate().map(|(i, value)| Ack {
            value,
            partition,
            offset: base + i as i64,
        }));
    };
    for seq in 0.. {
        let values: Vec<String> = (0..BATCH).map(|i| format!("c{cycle}-w{worker}-s{seq}-r{i}")).collect();
        match client.start_produce(topic, Some(partition), values.iter().map(value).collect(), -1) {
            Ok(answer) => in_flight.push_back((values, answer)),
            Err(_) => break,
        }
        if in_flight.len() < IN_FLIGHT {
            continue;
        }
        let (values, answer) = in_flight.pop_front().expect("one in flight");
        match answer.await {
            Ok(written) if written.first().is_some_and(|w| w.error_code == 0) => settle(&mut acked, values, written),
            _ => break,
        }
    }
    // Requests still in flight may or may not have been acknowledged.
    for (values, answer) in in_flight {
        if let Ok(written) = answer.await {
            if written.first().is_some_and(|w| w.error_code == 0) {
                settle(&mut acked, values, written);
            }
        }
    }
    acked
}
