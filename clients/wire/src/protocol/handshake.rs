//! The handshake: protocol version negotiation and feature discovery.
//!
//! A client offers a range of protocol versions; the broker picks the highest
//! it shares, or refuses with `UNSUPPORTED_VERSION`. Its answer lists what it
//! serves: every operation with its versions ([`OPERATIONS`]), the group
//! assignors, and its limits, so that a client can refuse locally what this
//! broker would refuse, and size its requests. docs/protocol.md, "Handshake"
//! and "Compatibility", is the specification.

use std::ops::RangeInclusive;

use crate::error::{ErrorCode, WireError};
use serde::{Deserialize, Serialize};

use super::auth::AuthenticationInfo;
use super::request::OPERATIONS;

/// The feature a broker lists when its `produce` takes `batch`: the records
/// as one record batch in the stored format, instead of `records`.
pub const FEATURE_PRODUCE_BATCH: &str = "produce_batch";

/// The features this broker lists in its handshake answer: optional request
/// forms of protocol version 1 that an older broker does not take.
pub const FEATURES: &[&str] = &[FEATURE_PRODUCE_BATCH];

/// The codecs a `produce_batch` batch may be compressed with, as the
/// handshake names them (attribute bits 1–2 of a batch, docs/protocol.md).
pub const COMPRESSION: &[&str] = &["lz4", "zstd"];

/// The lowest protocol version this broker and client speak.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// The highest protocol version this broker and client speak.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct HandshakeRequest {
    pub client_id: String,
    /// The one version a client speaks, or the version for a broker that
    /// reads no range; each absent bound of the range defaults to it.
    #[serde(default)]
    pub protocol_version: Option<u32>,
    #[serde(default)]
    pub min_protocol_version: Option<u32>,
    #[serde(default)]
    pub max_protocol_version: Option<u32>,
}

impl HandshakeRequest {
    /// A handshake offering `versions`; its `protocol_version` is the lowest,
    /// which a broker that reads only that field accepts if it can.
    pub fn offering(client_id: &str, versions: RangeInclusive<u32>) -> HandshakeRequest {
        HandshakeRequest {
            client_id: client_id.into(),
            protocol_version: Some(*versions.start()),
            min_protocol_version: Some(*versions.start()),
            max_protocol_version: Some(*versions.end()),
        }
    }

    /// The protocol versions the client offers.
    ///
    /// # Errors
    ///
    /// `INVALID_REQUEST` when a bound is missing and there is no
    /// `protocol_version` to take it from, or the range is empty.
    pub fn offered(&self) -> Result<RangeInclusive<u32>, WireError> {
        let bound = |bound: Option<u32>, name: &str| {
            bound.or(self.protocol_version).ok_or_else(|| {
                WireError::new(
                    ErrorCode::INVALID_REQUEST,
                    format!("a handshake needs `protocol_version` or `{name}_protocol_version`"),
                )
            })
        };
        let (min, max) = (bound(self.min_protocol_version, "min")?, bound(self.max_protocol_version, "max")?);
        if min > max {
            return Err(WireError::new(
                ErrorCode::INVALID_REQUEST,
                format!("min_protocol_version {min} is above max_protocol_version {max}"),
            ));
        }
        Ok(min..=max)
    }
}

/// The highest protocol version in both `offered` and this broker's range.
///
/// # Errors
///
/// `UNSUPPORTED_VERSION` when they share none.
pub fn negotiate(offered: &RangeInclusive<u32>) -> Result<u32, WireError> {
    let highest = PROTOCOL_VERSION.min(*offered.end());
    if highest < MIN_PROTOCOL_VERSION.max(*offered.start()) {
        return Err(WireError::new(
            ErrorCode::UNSUPPORTED_VERSION,
            format!(
                "protocol versions {}..={} are not supported; this broker speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                offered.start(),
                offered.end()
            ),
        ));
    }
    Ok(highest)
}

/// An operation this broker serves, and the protocol versions it serves it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub name: &'static str,
    pub min_version: u32,
    pub max_version: u32,
}

/// One operation in the handshake answer.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct OperationVersions {
    pub op: String,
    pub min_version: u32,
    pub max_version: u32,
}

/// The broker settings a handshake announces besides the connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    pub default_session_timeout_ms: u64,
    /// A topic's default `max_message_bytes` (the broker's `[log]` setting).
    pub max_message_bytes: u64,
    /// Held requests per connection that do not count against `max_in_flight`.
    pub max_held_requests: u32,
    /// The group assignors the broker offers.
    pub assignors: &'static [&'static str],
}

/// The handshake answer. Fields after `max_in_flight` came with feature
/// discovery: a client reading an older broker's answer finds them empty.
#[derive(Debug, Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub broker_version: String,
    /// The version negotiated: the one this connection speaks.
    pub protocol_version: u32,
    pub max_frame_bytes: u64,
    pub max_in_flight: u32,
    /// The broker's own range of protocol versions.
    #[serde(default)]
    pub min_protocol_version: u32,
    #[serde(default)]
    pub max_protocol_version: u32,
    #[serde(default)]
    pub operations: Vec<OperationVersions>,
    #[serde(default)]
    pub assignors: Vec<String>,
    #[serde(default)]
    pub min_session_timeout_ms: u64,
    #[serde(default)]
    pub max_session_timeout_ms: u64,
    #[serde(default)]
    pub default_session_timeout_ms: u64,
    #[serde(default)]
    pub max_message_bytes: u64,
    #[serde(default)]
    pub max_held_requests: u32,
    /// Optional request forms the broker takes ([`FEATURES`]).
    #[serde(default)]
    pub features: Vec<String>,
    /// The codecs a batch may be compressed with ([`COMPRESSION`]); none
    /// from a broker older than compression.
    #[serde(default)]
    pub compression: Vec<String>,
    /// Whether the broker requires authentication, and with what; nothing
    /// required and no mechanism from a broker older than authentication.
    #[serde(default)]
    pub authentication: AuthenticationInfo,
    /// Who the broker takes this connection to be, as Kafka writes a
    /// principal: `User:CN=alice,O=Example` for a verified TLS client
    /// certificate, `User:ANONYMOUS` otherwise. Absent from a broker older
    /// than TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

impl HandshakeResponse {
    /// This broker's answer for a connection speaking `protocol_version`.
    pub fn new(protocol_version: u32, max_frame_bytes: u64, max_in_flight: u32, features: &Features) -> Self {
        HandshakeResponse {
            broker_version: env!("CARGO_PKG_VERSION").into(),
            protocol_version,
            max_frame_bytes,
            max_in_flight,
            min_protocol_version: MIN_PROTOCOL_VERSION,
            max_protocol_version: PROTOCOL_VERSION,
            operations: OPERATIONS
                .iter()
                .map(|o| OperationVersions {
                    op: o.name.into(),
                    min_version: o.min_version,
                    max_version: o.max_version,
                })
                .collect(),
            assignors: features.assignors.iter().map(|&a| a.into()).collect(),
            min_session_timeout_ms: features.min_session_timeout_ms,
            max_session_timeout_ms: features.max_session_timeout_ms,
            default_session_timeout_ms: features.default_session_timeout_ms,
            max_message_bytes: features.max_message_bytes,
            max_held_requests: features.max_held_requests,
            features: FEATURES.iter().map(|&f| f.into()).collect(),
            compression: COMPRESSION.iter().map(|&c| c.into()).collect(),
            authentication: AuthenticationInfo::default(),
            principal: None,
        }
    }

    /// Whether the broker takes batches compressed with `codec` ("lz4",
    /// "zstd"); a broker older than compression takes none.
    pub fn has_compression(&self, codec: &str) -> bool {
        self.compression.iter().any(|c| c == codec)
    }

    /// Whether the broker lists `feature` (one of [`FEATURES`]); a broker
    /// older than the list has none.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    /// Whether the broker serves `op` in the negotiated protocol version. A
    /// broker that lists no operations (one older than the list) is taken to
    /// serve every one.
    pub fn offers(&self, op: &str) -> bool {
        self.operations.is_empty()
            || self
                .operations
                .iter()
                .any(|o| o.op == op && (o.min_version..=o.max_version).contains(&self.protocol_version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(protocol_version: Option<u32>, min: Option<u32>, max: Option<u32>) -> HandshakeRequest {
        HandshakeRequest {
            client_id: "c".into(),
            protocol_version,
            min_protocol_version: min,
            max_protocol_version: max,
        }
    }

    #[test]
    fn the_offered_range_takes_missing_bounds_from_protocol_version() {
        assert_eq!(request(Some(1), None, None).offered().unwrap(), 1..=1);
        assert_eq!(request(Some(1), None, Some(4)).offered().unwrap(), 1..=4);
        assert_eq!(request(None, Some(2), Some(3)).offered().unwrap(), 2..=3);
        for bad in [request(None, None, None), request(None, Some(1), None), request(Some(1), Some(3), Some(2))] {
            assert_eq!(bad.offered().unwrap_err().code, ErrorCode::INVALID_REQUEST);
        }
        assert_eq!(HandshakeRequest::offering("c", 1..=3).offered().unwrap(), 1..=3);
    }

    #[test]
    fn the_highest_shared_version_wins() {
        assert_eq!(negotiate(&(1..=1)).unwrap(), 1);
        assert_eq!(negotiate(&(0..=9)).unwrap(), PROTOCOL_VERSION);
        for none in [0..=0, PROTOCOL_VERSION + 1..=PROTOCOL_VERSION + 5] {
            assert_eq!(negotiate(&none).unwrap_err().code, ErrorCode::UNSUPPORTED_VERSION);
        }
    }

    #[test]
    fn an_operation_is_offered_only_in_its_versions() {
        let features = Features {
            min_session_timeout_ms: 1,
            max_session_timeout_ms: 2,
            default_session_timeout_ms: 1,
            max_message_bytes: 3,
            max_held_requests: 5,
            assignors: &["range"],
        };
        let mut answer = HandshakeResponse::new(1, 1024, 4, &features);
        assert!(answer.offers("produce") && !answer.offers("launch_rockets"));
        answer.operations[0].min_version = 2;
        let first = answer.operations[0].op.clone();
        assert!(!answer.offers(&first), "an operation from a later version");
        assert!(HandshakeResponse::default().offers("anything"), "an older broker lists nothing");
        assert!(answer.has_feature(FEATURE_PRODUCE_BATCH) && !answer.has_feature("teleport"));
        assert!(!HandshakeResponse::default().has_feature(FEATURE_PRODUCE_BATCH), "an older broker has none");
    }
}
