//! Wire types: one `…Request` and one `…Response` struct per operation.
//!
//! Every frame is one MessagePack map with named fields. A request map holds
//! `correlation_id`, `op` and the operation's fields side by side; a response
//! map holds `correlation_id`, `error_code`, `error_message` and the operation's
//! fields. docs/protocol.md is the normative description of these types.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use herald_actors::topic_config::ConfigValue;

/// The protocol version this broker and client speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// The fields every request has. Decoded first, to route the frame.
#[derive(Debug, Deserialize)]
pub struct RequestHeader {
    pub correlation_id: Option<u32>,
    pub op: Option<String>,
}

/// The fields every response has.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct ResponseHeader {
    pub correlation_id: u32,
    pub error_code: i16,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// A response frame: the common header and the operation's fields in one map.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    #[serde(flatten)]
    pub header: ResponseHeader,
    #[serde(flatten)]
    pub body: T,
}

/// A request frame as the client sends it.
#[derive(Debug, Serialize)]
pub struct RequestEnvelope<'a, T> {
    pub correlation_id: u32,
    pub op: &'a str,
    #[serde(flatten)]
    pub body: T,
}

/// Operation names, as they appear in a request's `op` field.
pub mod op {
    pub const HANDSHAKE: &str = "handshake";
    pub const CREATE_TOPIC: &str = "create_topic";
    pub const DELETE_TOPIC: &str = "delete_topic";
    pub const LIST_TOPICS: &str = "list_topics";
    pub const DESCRIBE_TOPIC: &str = "describe_topic";
    pub const ADD_PARTITIONS: &str = "add_partitions";
    pub const PRODUCE: &str = "produce";
    pub const FETCH: &str = "fetch";
    pub const LIST_OFFSETS: &str = "list_offsets";
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct HandshakeRequest {
    pub client_id: String,
    pub protocol_version: u32,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct HandshakeResponse {
    pub broker_version: String,
    pub protocol_version: u32,
    pub max_frame_bytes: u64,
    pub max_in_flight: u32,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct CreateTopicRequest {
    pub topic: String,
    pub partitions: i64,
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct TopicRequest {
    pub topic: String,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct Empty {}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct TopicSummary {
    pub topic: String,
    pub partitions: u32,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct ListTopicsResponse {
    pub topics: Vec<TopicSummary>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: u32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub segments: u64,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct DescribeTopicResponse {
    pub topic: String,
    pub config: BTreeMap<String, ConfigValue>,
    pub partitions: Vec<PartitionDescription>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct AddPartitionsRequest {
    pub topic: String,
    /// The new total partition count.
    pub partitions: i64,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct AddPartitionsResponse {
    pub partitions: u32,
}

/// One record in a produce request.
#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct WireRecord {
    #[serde(default)]
    pub key: Option<Bytes>,
    #[serde(default)]
    pub value: Option<Bytes>,
    /// Ordered `[key, value]` pairs.
    #[serde(default)]
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the epoch; the broker's time when absent.
    #[serde(default)]
    pub timestamp: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct ProduceRequest {
    pub topic: String,
    #[serde(default)]
    pub partition: Option<i64>,
    /// 0: no response; 1: respond once appended under the durability setting;
    /// -1 (all): the same as 1 on a single broker.
    #[serde(default = "default_acks")]
    pub acks: i64,
    pub records: Vec<WireRecord>,
}

fn default_acks() -> i64 {
    1
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct ProducePartitionResponse {
    pub partition: u32,
    /// Offset of the first record appended to this partition; -1 on error.
    pub base_offset: i64,
    pub record_count: u32,
    pub error_code: i16,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct ProduceResponse {
    pub partitions: Vec<ProducePartitionResponse>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    #[serde(default = "default_fetch_max_bytes")]
    pub max_bytes: u64,
    #[serde(default)]
    pub min_bytes: u64,
    #[serde(default)]
    pub max_wait_ms: u64,
}

fn default_fetch_max_bytes() -> u64 {
    1024 * 1024
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct FetchResponse {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole record batches, concatenated, exactly as stored.
    pub records: Bytes,
}

/// `timestamp` of a list-offsets request asking for the log end offset.
pub const LATEST_TIMESTAMP: i64 = -1;
/// `timestamp` of a list-offsets request asking for the log start offset.
pub const EARLIEST_TIMESTAMP: i64 = -2;

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct ListOffsetsRequest {
    pub topic: String,
    pub partition: i64,
    /// -2 earliest, -1 latest, otherwise ms since the epoch.
    pub timestamp: i64,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct ListOffsetsResponse {
    /// The offset found; -1 when no record has a timestamp at or after the one asked.
    pub offset: i64,
}

/// The body of an error response: no operation fields.
pub type ErrorBody = Empty;
