//! Fetch on a connection: reserving the response's room, asking the
//! partition, and answering with a frame whose body is the stored batches as
//! the partition read them — the MessagePack head is built by hand
//! ([`protocol::encode_fetch_head`]) and the batches are never copied into a
//! serialized response (see the `writer` module).

use actix::prelude::*;
use herald_actors::partition;

use super::budget::Admission;
use super::writer::Frame;
use super::{flatten, in_flight, partition_id, Connection};
use crate::protocol::{self, FetchRequest, FetchResponse};

/// What a response body turns into on the wire.
pub(super) trait ResponseBody {
    /// The response frame; `throttle_time_ms` when the request was held for
    /// a quota.
    fn frame(self, correlation_id: u32, throttle_time_ms: Option<u32>) -> Frame;

    /// Bytes the response carries that count against a fetch quota.
    fn fetched_bytes(&self) -> usize {
        0
    }
}

impl<T: serde::Serialize> ResponseBody for T {
    fn frame(self, correlation_id: u32, throttle_time_ms: Option<u32>) -> Frame {
        protocol::encode_ok_throttled(correlation_id, throttle_time_ms, &self).into()
    }
}

/// A successful fetch's response: its records become the frame's body as
/// they are.
pub(super) struct FetchAnswer(pub FetchResponse);

impl ResponseBody for FetchAnswer {
    fn frame(self, correlation_id: u32, throttle_time_ms: Option<u32>) -> Frame {
        let head = protocol::encode_fetch_head_throttled(correlation_id, throttle_time_ms, &self.0);
        Frame { head, body: self.0.records }
    }

    fn fetched_bytes(&self) -> usize {
        self.0.records.len()
    }
}

impl Connection {
    pub(super) fn fetch(&mut self, correlation_id: u32, r: FetchRequest, permit: Admission, ctx: &mut Context<Self>) {
        let partition = partition_id(r.partition, &r.topic);
        let max_bytes = self.fetch_room(&r);
        // Room for the response, counted from now until it is queued
        // (then the response itself counts until written); a long
        // poll's also in the held share while it is parked.
        let reserved = self.writer.bytes().charge(max_bytes);
        let held_share = in_flight::fetch_may_be_held(&r).then(|| self.held_room.charge(max_bytes));
        let fetch = partition::Fetch {
            offset: r.offset,
            max_bytes,
            min_bytes: r.min_bytes as usize,
            max_wait_ms: r.max_wait_ms.min(300_000),
        };
        self.with_route(r.topic, ctx, move |act, route, ctx| {
            let sent = route.and_then(|route| Ok(route.partition(partition?)?.send(fetch)));
            act.respond(
                correlation_id,
                permit,
                async move {
                    let result = flatten(sent?.await);
                    drop((reserved, held_share));
                    let result = result?;
                    Ok(Some(FetchAnswer(FetchResponse {
                        high_watermark: result.high_watermark,
                        log_start_offset: result.log_start_offset,
                        records: result.records,
                    })))
                },
                ctx,
            );
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_fetch_frame_carries_the_stored_bytes_themselves() {
        let records = Bytes::from(vec![5u8; 1 << 20]);
        let stored = records.as_ptr();
        let response = FetchResponse { high_watermark: 1_000, log_start_offset: 0, records };
        let serde = protocol::encode_ok(42, &response);
        let frame = FetchAnswer(response).frame(42, None);
        assert_eq!(frame.body.as_ptr(), stored, "the records were copied");
        assert_eq!([&frame.head[..], &frame.body[..]].concat(), serde.to_vec());
    }
}
