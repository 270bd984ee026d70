//! The wire protocol: framing ([`codec`]), the request and response types
//! ([`messages`]), and decoding a frame into a typed [`Request`].
//!
//! docs/protocol.md is the specification; this module is its implementation.
//! Decoding never panics: malformed MessagePack, a missing field, a wrong type or
//! an unknown operation become a [`DecodeError`] that still carries the request's
//! correlation id whenever that much could be read.

pub mod codec;
pub mod messages;
mod scan;

use bytes::Bytes;
use herald_actors::error::{BrokerError, ErrorCode};
use serde::{de::DeserializeOwned, Serialize};

pub use messages::*;

/// A decoded request.
#[derive(Debug, Clone)]
pub enum Request {
    Handshake(HandshakeRequest),
    CreateTopic(CreateTopicRequest),
    DeleteTopic(TopicRequest),
    ListTopics,
    DescribeTopic(TopicRequest),
    AddPartitions(AddPartitionsRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    JoinGroup(JoinGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    CommitOffsets(CommitOffsetsRequest),
    FetchOffsets(FetchOffsetsRequest),
    ListGroups,
    DescribeGroup(GroupRequest),
    ResetOffsets(ResetOffsetsRequest),
    DeleteGroup(GroupRequest),
}

/// A request that could not be decoded.
#[derive(Debug, Clone)]
pub struct DecodeError {
    /// The request's correlation id, if it could be read.
    pub correlation_id: Option<u32>,
    pub error: BrokerError,
}

fn invalid(correlation_id: Option<u32>, message: String) -> DecodeError {
    DecodeError { correlation_id, error: BrokerError::new(ErrorCode::INVALID_REQUEST, message) }
}

fn body<T: DeserializeOwned>(frame: &[u8], correlation_id: u32, op: &str) -> Result<T, DecodeError> {
    rmp_serde::from_slice(frame).map_err(|err| invalid(Some(correlation_id), format!("invalid {op} request: {err}")))
}

impl Request {
    /// Decodes one frame's payload into its correlation id and request.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::INVALID_REQUEST`] for anything malformed,
    /// [`ErrorCode::UNKNOWN_OPERATION`] for an `op` this broker does not know.
    pub fn decode(frame: &[u8]) -> Result<(u32, Request), DecodeError> {
        // serde would also accept an array for a struct; the protocol says map.
        if !matches!(frame.first(), Some(0x80..=0x8f | 0xde | 0xdf)) {
            return Err(invalid(None, "a request must be a MessagePack map".into()));
        }
        let (correlation_id, op) = match scan::head(frame) {
            Some(head) => (head.correlation_id, head.op.to_owned()),
            // Not the usual shape: a full decode tells exactly what is wrong.
            None => {
                let header: RequestHeader = rmp_serde::from_slice(frame)
                    .map_err(|err| invalid(None, format!("a request must be a MessagePack map: {err}")))?;
                let correlation_id =
                    header.correlation_id.ok_or_else(|| invalid(None, "missing field `correlation_id`".into()))?;
                let op = header.op.ok_or_else(|| invalid(Some(correlation_id), "missing field `op`".into()))?;
                (correlation_id, op)
            }
        };
        let request = match op.as_str() {
            op::HANDSHAKE => Request::Handshake(body(frame, correlation_id, &op)?),
            op::CREATE_TOPIC => Request::CreateTopic(body(frame, correlation_id, &op)?),
            op::DELETE_TOPIC => Request::DeleteTopic(body(frame, correlation_id, &op)?),
            op::LIST_TOPICS => Request::ListTopics,
            op::DESCRIBE_TOPIC => Request::DescribeTopic(body(frame, correlation_id, &op)?),
            op::ADD_PARTITIONS => Request::AddPartitions(body(frame, correlation_id, &op)?),
            op::PRODUCE => Request::Produce(body(frame, correlation_id, &op)?),
            op::FETCH => Request::Fetch(body(frame, correlation_id, &op)?),
            op::LIST_OFFSETS => Request::ListOffsets(body(frame, correlation_id, &op)?),
            group_op::JOIN_GROUP => Request::JoinGroup(body(frame, correlation_id, &op)?),
            group_op::HEARTBEAT => Request::Heartbeat(body(frame, correlation_id, &op)?),
            group_op::LEAVE_GROUP => Request::LeaveGroup(body(frame, correlation_id, &op)?),
            group_op::COMMIT_OFFSETS => Request::CommitOffsets(body(frame, correlation_id, &op)?),
            group_op::FETCH_OFFSETS => Request::FetchOffsets(body(frame, correlation_id, &op)?),
            group_op::LIST_GROUPS => Request::ListGroups,
            group_op::DESCRIBE_GROUP => Request::DescribeGroup(body(frame, correlation_id, &op)?),
            group_op::RESET_OFFSETS => Request::ResetOffsets(body(frame, correlation_id, &op)?),
            group_op::DELETE_GROUP => Request::DeleteGroup(body(frame, correlation_id, &op)?),
            other => {
                return Err(DecodeError {
                    correlation_id: Some(correlation_id),
                    error: BrokerError::new(ErrorCode::UNKNOWN_OPERATION, format!("unknown operation `{other}`")),
                })
            }
        };
        Ok((correlation_id, request))
    }

    /// The operation's name, as on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Handshake(_) => op::HANDSHAKE,
            Request::CreateTopic(_) => op::CREATE_TOPIC,
            Request::DeleteTopic(_) => op::DELETE_TOPIC,
            Request::ListTopics => op::LIST_TOPICS,
            Request::DescribeTopic(_) => op::DESCRIBE_TOPIC,
            Request::AddPartitions(_) => op::ADD_PARTITIONS,
            Request::Produce(_) => op::PRODUCE,
            Request::Fetch(_) => op::FETCH,
            Request::ListOffsets(_) => op::LIST_OFFSETS,
            Request::JoinGroup(_) => group_op::JOIN_GROUP,
            Request::Heartbeat(_) => group_op::HEARTBEAT,
            Request::LeaveGroup(_) => group_op::LEAVE_GROUP,
            Request::CommitOffsets(_) => group_op::COMMIT_OFFSETS,
            Request::FetchOffsets(_) => group_op::FETCH_OFFSETS,
            Request::ListGroups => group_op::LIST_GROUPS,
            Request::DescribeGroup(_) => group_op::DESCRIBE_GROUP,
            Request::ResetOffsets(_) => group_op::RESET_OFFSETS,
            Request::DeleteGroup(_) => group_op::DELETE_GROUP,
        }
    }
}

/// Encodes a successful response.
pub fn encode_ok<T: Serialize>(correlation_id: u32, body: &T) -> Bytes {
    let header = ResponseHeader {
        correlation_id,
        error_code: 0,
        error_message: None,
        first_damaged_offset: None,
        next_valid_offset: None,
    };
    encode(&Envelope { header, body })
}

/// Encodes an error response.
pub fn encode_error(correlation_id: u32, error: &BrokerError) -> Bytes {
    let header = ResponseHeader {
        correlation_id,
        error_code: error.code.code(),
        error_message: Some(error.message.clone()),
        first_damaged_offset: error.damaged.as_ref().map(|d| d.first_offset),
        next_valid_offset: error.damaged.as_ref().map(|d| d.next_offset),
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
    fn requests_decode_with_fields_in_any_order() {
        let frame = rmp_serde::to_vec_named(&RequestEnvelope {
            correlation_id: 7,
            op: op::FETCH,
            body: FetchRequest {
                topic: "t".into(),
                partition: 2,
                offset: 5,
                max_bytes: 10,
                min_bytes: 1,
                max_wait_ms: 100,
            },
        })
        .unwrap();
        let (id, request) = Request::decode(&frame).unwrap();
        assert_eq!(id, 7);
        assert!(matches!(request, Request::Fetch(f) if f.partition == 2 && f.offset == 5));
    }

    #[test]
    fn malformed_requests_are_errors_with_the_correlation_id_when_known() {
        assert!(Request::decode(&[0xc1]).unwrap_err().correlation_id.is_none());
        let missing = rmp_serde::to_vec_named(&RequestEnvelope {
            correlation_id: 9,
            op: op::FETCH,
            body: TopicRequest { topic: "t".into() },
        })
        .unwrap();
        let err = Request::decode(&missing).unwrap_err();
        assert_eq!(err.correlation_id, Some(9));
        assert_eq!(err.error.code, ErrorCode::INVALID_REQUEST);
        let unknown =
            rmp_serde::to_vec_named(&RequestEnvelope { correlation_id: 3, op: "launch_rockets", body: Empty {} })
                .unwrap();
        assert_eq!(Request::decode(&unknown).unwrap_err().error.code, ErrorCode::UNKNOWN_OPERATION);
    }

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
        let spec = include_str!("../../docs/protocol.md");
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
