//! Decoding a frame into a typed [`Request`], and the one list of operations.
//!
//! [`operations!`] below names each operation once: its `Request` variant,
//! its request type, the constant of its wire name and the protocol versions
//! it is served in. From that list come the `Request` enum, the [`op`] name
//! constants, the decoding match, [`Request::op`] and the handshake's
//! [`OPERATIONS`]. A new operation is one line here plus its dispatch arm in
//! the frontend (an exhaustive match, so the compiler asks for it).
//!
//! Decoding never panics. The order of checks, each an error response, is
//! docs/protocol.md's "Errors and the connection": a map, a readable
//! `correlation_id` (not 0), an `op` that is a str and that the broker knows,
//! then the operation's fields with their exact types ([`strict`]).

use crate::error::{ErrorCode, WireError};
use bytes::Bytes;
use serde::Deserialize;

use super::handshake::{HandshakeRequest, Operation};
use super::messages::*;
use super::produce_in;
use super::scan::{self, Op};
use super::strict;

/// Declares the operations. Each line:
/// `Variant(RequestType) = CONSTANT "wire_name", versions MIN..=MAX;`, or
/// `Variant = CONSTANT "wire_name", versions MIN..=MAX;` for an operation
/// without fields. `, decoded by PATH` names a function that decodes the
/// request type from the shared frame (`fn(&Bytes) -> Result<T, rmp_serde
/// error>`) instead of [`strict::from_slice`].
macro_rules! operations {
    ($(
        $(#[$doc:meta])*
        $variant:ident $(($body:ty))? = $constant:ident $name:literal, versions $min:literal ..= $max:literal
            $(, decoded by $decoder:path)?;
    )*) => {
        /// A decoded request: one variant per operation.
        #[derive(Debug, Clone)]
        pub enum Request {
            $( $(#[$doc])* $variant $(($body))?, )*
            /// An extension's operation (`x.<extension>.<name>`): not in the
            /// list; the broker's extension registry says whether it is served.
            Custom(CustomCall),
        }

        /// Operation names, as in a request's `op` field.
        pub mod op {
            $( pub const $constant: &str = $name; )*
        }

        /// Every operation this broker serves, in the handshake's order.
        pub const OPERATIONS: &[Operation] = &[
            $( Operation { name: $name, min_version: $min, max_version: $max }, )*
        ];

        impl Request {
            /// The operation's name, as on the wire.
            pub fn op(&self) -> &str {
                match self {
                    $( Request::$variant { .. } => op::$constant, )*
                    Request::Custom(call) => &call.op,
                }
            }

            /// Decodes the operation's fields from the whole frame.
            fn decode_op(name: &str, frame: &Bytes, correlation_id: u32) -> Result<Request, DecodeError> {
                Ok(match name {
                    $( op::$constant => decode_variant!($variant $(($body))?, frame, correlation_id, name $(, $decoder)?), )*
                    other if other.starts_with(CUSTOM_OP_PREFIX) && valid_custom_op(other) => {
                        Request::Custom(decode_custom(other, frame, correlation_id)?)
                    }
                    other => {
                        return Err(DecodeError::new(
                            Some(correlation_id),
                            ErrorCode::UNKNOWN_OPERATION,
                            format!("unknown operation `{other}`"),
                        ))
                    }
                })
            }
        }
    };
}

/// One arm of the decoding match. An operation without fields is still
/// checked to be one well-formed map.
macro_rules! decode_variant {
    ($variant:ident($body:ty), $frame:ident, $id:ident, $name:ident) => {
        Request::$variant(body($frame, $id, $name, |f: &Bytes| strict::from_slice::<$body>(f))?)
    };
    ($variant:ident($body:ty), $frame:ident, $id:ident, $name:ident, $decoder:path) => {
        Request::$variant(body($frame, $id, $name, $decoder)?)
    };
    ($variant:ident, $frame:ident, $id:ident, $name:ident) => {{
        body($frame, $id, $name, |f: &Bytes| strict::from_slice::<Empty>(f))?;
        Request::$variant
    }};
}

operations! {
    Handshake(HandshakeRequest) = HANDSHAKE "handshake", versions 1..=1;
    CreateTopic(CreateTopicRequest) = CREATE_TOPIC "create_topic", versions 1..=1;
    DeleteTopic(TopicRequest) = DELETE_TOPIC "delete_topic", versions 1..=1;
    ListTopics = LIST_TOPICS "list_topics", versions 1..=1;
    DescribeTopic(TopicRequest) = DESCRIBE_TOPIC "describe_topic", versions 1..=1;
    AddPartitions(AddPartitionsRequest) = ADD_PARTITIONS "add_partitions", versions 1..=1;
    AlterTopicConfig(AlterTopicConfigRequest) = ALTER_TOPIC_CONFIG "alter_topic_config", versions 1..=1;
    DeleteRecords(DeleteRecordsRequest) = DELETE_RECORDS "delete_records", versions 1..=1;
    Produce(ProduceRequest) = PRODUCE "produce", versions 1..=1, decoded by produce_in::decode;
    Fetch(FetchRequest) = FETCH "fetch", versions 1..=1;
    ListOffsets(ListOffsetsRequest) = LIST_OFFSETS "list_offsets", versions 1..=1;
    JoinGroup(JoinGroupRequest) = JOIN_GROUP "join_group", versions 1..=1;
    Heartbeat(HeartbeatRequest) = HEARTBEAT "heartbeat", versions 1..=1;
    LeaveGroup(LeaveGroupRequest) = LEAVE_GROUP "leave_group", versions 1..=1;
    CommitOffsets(CommitOffsetsRequest) = COMMIT_OFFSETS "commit_offsets", versions 1..=1;
    FetchOffsets(FetchOffsetsRequest) = FETCH_OFFSETS "fetch_offsets", versions 1..=1;
    ListGroups = LIST_GROUPS "list_groups", versions 1..=1;
    DescribeGroup(GroupRequest) = DESCRIBE_GROUP "describe_group", versions 1..=1;
    ResetOffsets(ResetOffsetsRequest) = RESET_OFFSETS "reset_offsets", versions 1..=1;
    DeleteGroup(GroupRequest) = DELETE_GROUP "delete_group", versions 1..=1;
    FindCoordinator(GroupRequest) = FIND_COORDINATOR "find_coordinator", versions 1..=1;
    CreateAcls(CreateAclsRequest) = CREATE_ACLS "create_acls", versions 1..=1;
    DeleteAcls(DeleteAclsRequest) = DELETE_ACLS "delete_acls", versions 1..=1;
    ListAcls(ListAclsRequest) = LIST_ACLS "list_acls", versions 1..=1;
    AlterQuotas(AlterQuotasRequest) = ALTER_QUOTAS "alter_quotas", versions 1..=1;
    DescribeQuotas = DESCRIBE_QUOTAS "describe_quotas", versions 1..=1;
    Authenticate(AuthenticateRequest) = AUTHENTICATE "authenticate", versions 1..=1;
    CreateUser(CreateUserRequest) = CREATE_USER "create_user", versions 1..=1;
    DeleteUser(DeleteUserRequest) = DELETE_USER "delete_user", versions 1..=1;
    ListUsers = LIST_USERS "list_users", versions 1..=1;
    DescribeCluster = DESCRIBE_CLUSTER "describe_cluster", versions 1..=1;
    Metadata(MetadataRequest) = METADATA "metadata", versions 1..=1;
    ReplicaFetch(ReplicaFetchRequest) = REPLICA_FETCH "replica_fetch", versions 1..=1;
    EpochEnd(EpochEndRequest) = EPOCH_END "leader_epoch_end_offset", versions 1..=1;
    ControlledShutdown(ControlledShutdownRequest) = CONTROLLED_SHUTDOWN "controlled_shutdown", versions 1..=1;
    InitProducerId(InitProducerIdRequest) = INIT_PRODUCER_ID "init_producer_id", versions 1..=1;
}

/// The prefix of every extension's operation name.
pub const CUSTOM_OP_PREFIX: &str = "x.";

/// A request for an extension's operation: its name and its `body`, the raw
/// MessagePack bytes of any one value (nil when the request has none),
/// sharing the frame's memory.
#[derive(Debug, Clone)]
pub struct CustomCall {
    pub op: String,
    pub body: Bytes,
}

/// Whether `name` is a valid extension operation name: `x.` then at least two
/// dot-separated parts (the extension, the operation), each one or more of
/// lowercase ASCII letters, digits, `_` and `-`; at most 128 bytes.
pub fn valid_custom_op(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(CUSTOM_OP_PREFIX) else { return false };
    let part_ok = |part: &str| {
        !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    name.len() <= 128 && rest.split('.').count() >= 2 && rest.split('.').all(part_ok)
}

/// The raw MessagePack bytes of a custom operation's response `body` (as
/// the broker's handler wrote them), if the response frame has one.
pub fn custom_response_body(frame: &Bytes) -> Option<Bytes> {
    scan::field_span(frame, "body").map(|range| frame.slice(range))
}

/// A custom operation's request frame with `body` (the MessagePack bytes of
/// one value) copied in as it is.
pub fn encode_custom_request(correlation_id: u32, op: &str, body: &[u8]) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut frame = rmp_serde::to_vec_named(&RequestEnvelope { correlation_id, op, body: Empty {} })?;
    // Two entries, `correlation_id` and `op`: a fixmap, now of three.
    frame[0] = 0x83;
    frame.extend_from_slice(&[0xa4, b'b', b'o', b'd', b'y']);
    frame.extend_from_slice(body);
    Ok(frame)
}

/// The MessagePack encoding of nil: the body of a custom request without one.
const NIL: &[u8] = &[0xc0];

fn decode_custom(name: &str, frame: &Bytes, correlation_id: u32) -> Result<CustomCall, DecodeError> {
    let range = scan::custom_body(frame)
        .map_err(|err| invalid(Some(correlation_id), format!("invalid {name} request: {err}")))?;
    let body = match range {
        Some(range) => frame.slice(range),
        None => Bytes::from_static(NIL),
    };
    Ok(CustomCall { op: name.to_owned(), body })
}

/// The names of the consumer-group operations, for callers that import them
/// from here: the same constants as [`op`].
pub mod group_op {
    pub use super::op::*;
}

/// The fields every request has, decoded on their own only to explain why a
/// frame's head could not be read.
#[derive(Debug, Deserialize)]
pub struct RequestHeader {
    pub correlation_id: Option<u32>,
    pub op: Option<String>,
}

/// A request that could not be decoded.
#[derive(Debug, Clone)]
pub struct DecodeError {
    /// The request's correlation id, if it could be read.
    pub correlation_id: Option<u32>,
    pub error: WireError,
    /// The request asked for no response: a `produce` whose top-level `acks`
    /// is the integer 0. The error is logged, not sent.
    pub unanswered: bool,
}

impl DecodeError {
    fn new(correlation_id: Option<u32>, code: ErrorCode, message: String) -> DecodeError {
        DecodeError { correlation_id, error: WireError::new(code, message), unanswered: false }
    }
}

fn invalid(correlation_id: Option<u32>, message: String) -> DecodeError {
    DecodeError::new(correlation_id, ErrorCode::INVALID_REQUEST, message)
}

/// Decodes an operation's fields with `decode`; its error as the response's.
fn body<'f, T>(
    frame: &'f Bytes,
    correlation_id: u32,
    name: &str,
    decode: impl FnOnce(&'f Bytes) -> Result<T, rmp_serde::decode::Error>,
) -> Result<T, DecodeError> {
    decode(frame).map_err(|err| DecodeError {
        unanswered: name == op::PRODUCE && scan::int_field(frame, "acks") == Some(0),
        ..invalid(Some(correlation_id), format!("invalid {name} request: {err}"))
    })
}

/// Why the header of a frame whose scan found no usable `correlation_id` or
/// `op` is wrong: the precise error of decoding just those two fields.
fn header_error(frame: &[u8], correlation_id: Option<u32>, missing: &str) -> DecodeError {
    match strict::from_slice::<RequestHeader>(frame) {
        Err(err) => invalid(correlation_id, format!("invalid request: {err}")),
        Ok(_) => invalid(correlation_id, missing.into()),
    }
}

impl Request {
    /// Decodes one frame's payload into its correlation id and request.
    ///
    /// # Errors
    ///
    /// [`ErrorCode::INVALID_REQUEST`] for anything malformed,
    /// [`ErrorCode::UNKNOWN_OPERATION`] for an `op` this broker does not know.
    pub fn decode(frame: &[u8]) -> Result<(u32, Request), DecodeError> {
        Request::decode_bounded(&Bytes::copy_from_slice(frame), u64::MAX)
    }

    /// As [`Request::decode`], refusing a `produce` with more than
    /// `max_records` records before any record is decoded, so that decoding
    /// costs a bounded multiple of the frame's size (an empty record is one
    /// byte on the wire and a hundred in memory). A produce's record bytes
    /// share `frame`'s memory rather than being copied (see `produce_in`).
    ///
    /// # Errors
    ///
    /// As [`Request::decode`]; `INVALID_REQUEST` for too many records.
    pub fn decode_bounded(frame: &Bytes, max_records: u64) -> Result<(u32, Request), DecodeError> {
        // serde would also accept an array for a struct; the protocol says map.
        if !matches!(frame.first(), Some(0x80..=0x8f | 0xde | 0xdf)) {
            return Err(invalid(None, "a request must be a MessagePack map".into()));
        }
        let head = scan::head(frame);
        let Some(correlation_id) = head.correlation_id else {
            return Err(header_error(frame, None, "missing field `correlation_id`"));
        };
        if correlation_id == 0 {
            return Err(invalid(None, "correlation_id 0 is reserved for errors the broker cannot attribute".into()));
        }
        let name = match head.op {
            Op::Str(name) => name,
            Op::NotStr => return Err(invalid(Some(correlation_id), "`op` must be a MessagePack str".into())),
            Op::Missing => return Err(header_error(frame, Some(correlation_id), "missing field `op`")),
        };
        if name == op::PRODUCE {
            if let Some(records) = scan::array_len(frame, "records").filter(|n| *n > max_records) {
                return Err(DecodeError {
                    unanswered: scan::int_field(frame, "acks") == Some(0),
                    ..invalid(
                        Some(correlation_id),
                        format!("produce request of {records} records; a request may carry at most {max_records}"),
                    )
                });
            }
        }
        Ok((correlation_id, Request::decode_op(name, frame, correlation_id)?))
    }

    /// Whether the request is answered: all are but a `produce` with `acks` 0.
    pub fn answered(&self) -> bool {
        !matches!(self, Request::Produce(produce) if produce.acks == 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::protocol::RequestEnvelope;

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
    fn a_malformed_produce_with_acks_0_is_unanswered() {
        let produce = |acks: i64, records: &str| {
            let value = rmpv::Value::Map(vec![
                ("correlation_id".into(), 4.into()),
                ("op".into(), "produce".into()),
                ("acks".into(), acks.into()),
                ("records".into(), records.into()),
            ]);
            let mut frame = Vec::new();
            rmpv::encode::write_value(&mut frame, &value).unwrap();
            Request::decode(&frame).unwrap_err()
        };
        assert!(produce(0, "not records").unanswered);
        assert!(!produce(1, "not records").unanswered);
    }

    #[test]
    fn every_operation_has_one_name_and_decodes_to_its_own_variant() {
        let names: BTreeSet<&str> = OPERATIONS.iter().map(|o| o.name).collect();
        assert_eq!(names.len(), OPERATIONS.len(), "names are unique");
        for operation in OPERATIONS {
            assert!(operation.min_version <= operation.max_version);
            let frame =
                rmp_serde::to_vec_named(&RequestEnvelope { correlation_id: 1, op: operation.name, body: Empty {} })
                    .unwrap();
            // Most need fields; an error must not be "unknown operation".
            match Request::decode(&frame) {
                Ok((_, request)) => assert_eq!(request.op(), operation.name),
                Err(err) => assert_eq!(err.error.code, ErrorCode::INVALID_REQUEST, "{}", operation.name),
            }
        }
    }

    #[test]
    fn custom_operations_keep_their_body_bytes_and_refuse_other_fields() {
        let encode = |fields: Vec<(&str, rmpv::Value)>| {
            let value = rmpv::Value::Map(fields.into_iter().map(|(k, v)| (k.into(), v)).collect());
            let mut frame = Vec::new();
            rmpv::encode::write_value(&mut frame, &value).unwrap();
            frame
        };
        let body = rmpv::Value::Map(vec![("k".into(), rmpv::Value::Binary(vec![1, 2]))]);
        let mut body_bytes = Vec::new();
        rmpv::encode::write_value(&mut body_bytes, &body).unwrap();
        let frame = encode(vec![("correlation_id", 5.into()), ("op", "x.kv.get".into()), ("body", body)]);
        match Request::decode(&frame).unwrap() {
            (5, Request::Custom(call)) => assert_eq!((call.op.as_str(), &call.body[..]), ("x.kv.get", &body_bytes[..])),
            other => panic!("{other:?}"),
        }
        let without = encode(vec![("correlation_id", 5.into()), ("op", "x.kv.get".into())]);
        assert!(matches!(Request::decode(&without).unwrap().1, Request::Custom(c) if c.body[..] == [0xc0]));
        let extra = encode(vec![("correlation_id", 5.into()), ("op", "x.kv.get".into()), ("key", "a".into())]);
        assert_eq!(Request::decode(&extra).unwrap_err().error.code, ErrorCode::INVALID_REQUEST);
        for bad in ["x.kv", "x.KV.get", "x..get", "x.kv.", "y.kv.get"] {
            let frame = encode(vec![("correlation_id", 5.into()), ("op", bad.into())]);
            assert_eq!(Request::decode(&frame).unwrap_err().error.code, ErrorCode::UNKNOWN_OPERATION, "{bad}");
        }
        let built = encode_custom_request(5, "x.kv.get", &body_bytes).unwrap();
        assert!(matches!(Request::decode(&built).unwrap().1, Request::Custom(c) if c.body[..] == body_bytes[..]));
        assert!(valid_custom_op("x.kv.get") && valid_custom_op("x.my-ext.v2_scan.all"));
    }

    #[test]
    fn every_documented_operation_is_listed_and_every_listed_one_documented() {
        let spec = include_str!("../../../../docs/protocol.md");
        let documented: BTreeSet<&str> =
            spec.lines().filter_map(|line| line.strip_prefix("### `")?.strip_suffix('`')).collect();
        let listed: BTreeSet<&str> = OPERATIONS.iter().map(|o| o.name).collect();
        assert_eq!(documented, listed);
    }
}
