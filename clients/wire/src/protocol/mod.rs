//! The wire protocol. docs/protocol.md is the specification; this module is
//! its implementation.
//!
//! - [`codec`]: framing (a length, then a MessagePack payload).
//! - [`messages`]: the request and response types of the operations (those
//!   that change a live topic from `topic_admin`, authentication and users
//!   from `auth`).
//! - [`request`] (re-exported): the one list of operations, and decoding a
//!   frame into a typed [`Request`]; malformed input becomes a
//!   [`DecodeError`] that carries the correlation id whenever it was readable.
//! - [`handshake`] (re-exported): version negotiation and feature discovery.
//! - `strict`: the serde adapter that gives each field exactly one MessagePack
//!   type family; `scan`: a quick look at a frame's top-level keys;
//!   `produce_in`: decoding a produce request's records without copying them.
//! - `fetch_out` ([`encode_fetch_head`]): a fetch response's head, so its
//!   records can follow it to the socket without being copied.
//! - `produce_out` ([`encode_produce_batch`]): a produce request built in one
//!   buffer around its batch; `mp_out`: the MessagePack writers of both.
//! - Below: encoding responses.

mod acl;
mod auth;
mod cluster;
pub mod codec;
mod config_value;
mod fetch_out;
pub mod handshake;
pub mod messages;
mod mp_out;
mod produce_in;
mod produce_out;
mod producer_id;
mod quota;
pub mod request;
mod scan;
mod strict;
mod topic_admin;

use crate::error::{DamagedRange, ErrorCode};
use bytes::Bytes;
use serde::Serialize;

pub use fetch_out::{encode_fetch_head, encode_fetch_head_throttled};
pub use handshake::*;
pub use messages::*;
pub use produce_out::{encode_produce_batch, encode_produce_batch_with, ProduceFrameError, ProduceHead};
pub use request::*;

/// Encodes a successful response.
pub fn encode_ok<T: Serialize>(correlation_id: u32, body: &T) -> Bytes {
    encode_ok_throttled(correlation_id, None, body)
}

/// Encodes a successful response of a request held `throttle_time_ms` for a quota.
pub fn encode_ok_throttled<T: Serialize>(correlation_id: u32, throttle_time_ms: Option<u32>, body: &T) -> Bytes {
    let header = ResponseHeader {
        correlation_id,
        error_code: 0,
        error_message: None,
        first_damaged_offset: None,
        next_valid_offset: None,
        throttle_time_ms,
    };
    encode(&Envelope { header, body })
}

/// Encodes an error response: `code` with a human-readable `message`, and
/// for a fetch in a damaged range of a log, the range.
pub fn encode_error(correlation_id: u32, code: ErrorCode, message: &str, damaged: Option<DamagedRange>) -> Bytes {
    encode_error_throttled(correlation_id, None, code, message, damaged)
}

/// [`encode_error`] for a request held `throttle_time_ms` for a quota.
pub fn encode_error_throttled(
    correlation_id: u32,
    throttle_time_ms: Option<u32>,
    code: ErrorCode,
    message: &str,
    damaged: Option<DamagedRange>,
) -> Bytes {
    let header = ResponseHeader {
        correlation_id,
        error_code: code.code(),
        error_message: Some(message.to_owned()),
        first_damaged_offset: damaged.map(|d| d.first_offset),
        next_valid_offset: damaged.map(|d| d.next_offset),
        throttle_time_ms,
    };
    encode(&Envelope { header, body: Empty {} })
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    match rmp_serde::to_vec_named(value) {
        Ok(bytes) => Bytes::from(bytes),
        // Serializing our own types into a Vec cannot fail; if it ever does, the
        // client still gets a well-formed error frame.
        Err(err) => {
            tracing::error!(%err, "response encoding failed");
            Bytes::from(
                rmp_serde::to_vec_named(&ResponseHeader {
                    correlation_id: 0,
                    error_code: ErrorCode::UNKNOWN_SERVER_ERROR.code(),
                    error_message: Some("response encoding failed".into()),
                    first_damaged_offset: None,
                    next_valid_offset: None,
                    throttle_time_ms: None,
                })
                .unwrap_or_default(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_one_flat_map() {
        let bytes = encode_ok(4, &ListOffsetsResponse { offset: 12 });
        let value: rmpv::Value = rmp_serde::from_slice(&bytes).unwrap();
        let map = value.as_map().unwrap();
        let keys: Vec<&str> = map.iter().map(|(k, _)| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["correlation_id", "error_code", "error_message", "offset"]);
    }

    #[test]
    fn the_spec_lists_every_error_code_exactly() {
        let spec = include_str!("../../../../docs/protocol.md");
        for &code in ErrorCode::ALL {
            let retriable = if code.retriable() { "yes" } else { "no" };
            let row = format!("| {} | `{}` | {} | {} |", code.code(), code.name(), retriable, code.description());
            assert!(spec.contains(&row), "docs/protocol.md lacks the row {row}");
        }
    }

    #[test]
    fn record_payloads_are_msgpack_bin() {
        let bytes =
            encode_ok(1, &FetchResponse { high_watermark: 0, log_start_offset: 0, records: Bytes::from_static(b"ab") });
        let value: rmpv::Value = rmp_serde::from_slice(&bytes).unwrap();
        let records = value.as_map().unwrap().iter().find(|(k, _)| k.as_str() == Some("records")).unwrap();
        assert!(matches!(records.1, rmpv::Value::Binary(_)));
    }
}
