//! Wire types: one `…Request` and one `…Response` struct per operation.
//!
//! Every frame is one MessagePack map with named fields. A request map holds
//! `correlation_id`, `op` and the operation's fields side by side; a response
//! map holds `correlation_id`, `error_code`, `error_message` and the operation's
//! fields. docs/protocol.md is the normative description of these types.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

pub use super::acl::*;
pub use super::auth::*;
pub use super::cluster::*;
pub use super::config_value::ConfigValue;
pub use super::producer_id::*;
pub use super::quota::*;
pub use super::topic_admin::*;

// An optional field may be absent or nil. `Option` fields take nil as `None`;
// these take it as the field's default, as when it is absent.

pub(super) fn nil_is_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub(super) fn nil_is_default_acks<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_else(default_acks))
}

fn nil_is_default_fetch_max_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_else(default_fetch_max_bytes))
}

fn nil_is_no_generation<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_else(no_generation))
}

/// The fields every response has.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct ResponseHeader {
    pub correlation_id: u32,
    pub error_code: i16,
    #[serde(default)]
    pub error_message: Option<String>,
    /// With `CORRUPT_MESSAGE` for a fetch in a damaged range: its first offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_damaged_offset: Option<i64>,
    /// With `CORRUPT_MESSAGE` for a fetch in a damaged range: the first offset
    /// after it, where a fetch goes past the damage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_valid_offset: Option<i64>,
    /// How long the broker held the request because its principal or client
    /// id was over a quota, in ms; absent when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_time_ms: Option<u32>,
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

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct CreateTopicRequest {
    pub topic: String,
    pub partitions: i64,
    #[serde(default, deserialize_with = "nil_is_default")]
    pub config: BTreeMap<String, ConfigValue>,
    /// Replicas per partition; nil for the broker's default (1 alone; in a
    /// cluster `cluster.default_replication_factor`, at most the live brokers).
    #[serde(default)]
    pub replication_factor: Option<i32>,
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
    /// The topic's id (32 hex digits), another for a topic deleted and
    /// created again; absent for a damaged topic and from older brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    pub partitions: u32,
    /// `ok`, or `damaged` for a topic the broker found damaged at start and
    /// does not serve (absent from brokers before it: `ok`).
    #[serde(default)]
    pub state: TopicState,
    /// Why a damaged topic is not served; absent for an `ok` one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a listed topic is served.
#[derive(Debug, Serialize, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TopicState {
    #[default]
    Ok,
    Damaged,
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
    /// Damaged ranges of the log found so far.
    #[serde(default)]
    pub damaged: Vec<DamagedRangeDescription>,
}

/// Offsets of a log whose stored bytes are damaged or missing.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct DamagedRangeDescription {
    pub first_offset: i64,
    /// The first offset after the range.
    pub next_offset: i64,
    /// Base offset of the segment holding it (the name of its file).
    pub segment: i64,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct DescribeTopicResponse {
    pub topic: String,
    /// The topic's id (32 hex digits); empty from older brokers.
    #[serde(default)]
    pub topic_id: String,
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
    #[serde(default, deserialize_with = "nil_is_default")]
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
    #[serde(default = "default_acks", deserialize_with = "nil_is_default_acks")]
    pub acks: i64,
    /// The records as MessagePack maps; empty (and then not sent) when the
    /// request carries `batch` instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<WireRecord>,
    /// The records as one record batch in the stored format (see
    /// [`crate::batch`]), instead of `records`; for a broker whose handshake
    /// lists [`FEATURE_PRODUCE_BATCH`](super::handshake::FEATURE_PRODUCE_BATCH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Bytes>,
}

pub(super) fn default_acks() -> i64 {
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
    #[serde(default = "default_fetch_max_bytes", deserialize_with = "nil_is_default_fetch_max_bytes")]
    pub max_bytes: u64,
    #[serde(default, deserialize_with = "nil_is_default")]
    pub min_bytes: u64,
    #[serde(default, deserialize_with = "nil_is_default")]
    pub max_wait_ms: u64,
}

impl FetchRequest {
    /// A fetch of `partition` from `offset` that is answered at once (no
    /// long poll), with the default `max_bytes`.
    pub fn at_once(topic: &str, partition: u32, offset: i64) -> FetchRequest {
        FetchRequest {
            topic: topic.into(),
            partition: i64::from(partition),
            offset,
            max_bytes: default_fetch_max_bytes(),
            min_bytes: 0,
            max_wait_ms: 0,
        }
    }
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

/// The largest record timestamp accepted: 9999-12-31T23:59:59.999Z, in ms.
/// The smallest is 0, the Unix epoch.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

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

/// Partitions of one topic.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<u32>,
}

impl TopicPartitions {
    /// A partition list as the wire carries it, from (topic, partition) pairs
    /// in order: one entry per run of the same topic.
    pub fn group<'a>(pairs: impl IntoIterator<Item = (&'a str, u32)>) -> Vec<TopicPartitions> {
        let mut out: Vec<TopicPartitions> = Vec::new();
        for (topic, partition) in pairs {
            match out.last_mut() {
                Some(last) if last.topic == topic => last.partitions.push(partition),
                _ => out.push(TopicPartitions { topic: topic.to_string(), partitions: vec![partition] }),
            }
        }
        out
    }

    /// The (topic, partition) pairs of a partition list.
    pub fn pairs(list: &[TopicPartitions]) -> impl Iterator<Item = (&str, u32)> + '_ {
        list.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic.as_str(), *p)))
    }
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct JoinGroupRequest {
    pub group_id: String,
    /// Join again as this existing member (it keeps its id and assignment).
    #[serde(default)]
    pub member_id: Option<String>,
    pub topics: Vec<String>,
    #[serde(default)]
    pub group_instance_id: Option<String>,
    #[serde(default)]
    pub session_timeout_ms: Option<u64>,
    #[serde(default)]
    pub rebalance_timeout_ms: Option<u64>,
    #[serde(default)]
    pub assignor: Option<String>,
}

/// The answer to a join or a heartbeat: the member's current assignment.
#[derive(Debug, Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct AssignmentResponse {
    pub member_id: String,
    pub generation_id: i64,
    pub assignment: Vec<TopicPartitions>,
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub generation_id: i64,
    /// Every partition the member owns now.
    #[serde(default, deserialize_with = "nil_is_default")]
    pub owned: Vec<TopicPartitions>,
    /// A new subscription, when it changes.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Hold the heartbeat up to this long while nothing changes.
    #[serde(default, deserialize_with = "nil_is_default")]
    pub max_wait_ms: u64,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    pub member_id: String,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    #[serde(default)]
    pub metadata: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct CommitOffsetsRequest {
    pub group_id: String,
    #[serde(default)]
    pub member_id: Option<String>,
    #[serde(default = "no_generation", deserialize_with = "nil_is_no_generation")]
    pub generation_id: i64,
    pub offsets: Vec<OffsetCommit>,
}

fn no_generation() -> i64 {
    -1
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: u32,
    pub error_code: i16,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct CommitOffsetsResponse {
    pub partitions: Vec<PartitionResult>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct FetchOffsetsRequest {
    pub group_id: String,
    /// The partitions wanted; every committed one when absent.
    #[serde(default)]
    pub partitions: Option<Vec<TopicPartitions>>,
    #[serde(default)]
    pub member_id: Option<String>,
    #[serde(default)]
    pub generation_id: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    /// -1 when nothing is committed.
    pub offset: i64,
    #[serde(default)]
    pub metadata: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct FetchOffsetsResponse {
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct GroupRequest {
    pub group_id: String,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub state: String,
    pub members: u32,
    pub assignor: String,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct ListGroupsResponse {
    pub groups: Vec<GroupListing>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    #[serde(default)]
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub generation_id: i64,
    pub topics: Vec<String>,
    pub assignment: Vec<TopicPartitions>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: u32,
    /// The committed offset; nil when none.
    #[serde(default)]
    pub current_offset: Option<i64>,
    #[serde(default)]
    pub log_end_offset: Option<i64>,
    #[serde(default)]
    pub lag: Option<i64>,
    /// The member that owns the partition; nil when none.
    #[serde(default)]
    pub member_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct DescribeGroupResponse {
    pub group_id: String,
    pub state: String,
    pub generation_id: i64,
    pub assignor: String,
    pub members: Vec<MemberDescription>,
    pub offsets: Vec<PartitionOffsets>,
    /// Records of the group's log that could not be read when it was loaded:
    /// the commits they held are lost (each partition keeps its last readable
    /// commit).
    #[serde(default)]
    pub damaged: Vec<DamagedGroupRecords>,
}

/// Records of a group's log that could not be read.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct DamagedGroupRecords {
    /// First offset of the group's own log in the range.
    pub first_offset: i64,
    /// The offset after the range.
    pub next_offset: i64,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct ResetOffsetsRequest {
    pub group_id: String,
    pub topic: String,
    /// Only these partitions; every partition of the topic when absent.
    #[serde(default)]
    pub partitions: Option<Vec<u32>>,
    /// "earliest", "latest", "offset", "timestamp" or "shift".
    pub to: String,
    /// The offset, timestamp (ms) or shift, for those three.
    #[serde(default)]
    pub value: Option<i64>,
    /// Apply the plan; when false (the default) it is only reported.
    #[serde(default, deserialize_with = "nil_is_default")]
    pub execute: bool,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct OffsetReset {
    pub topic: String,
    pub partition: u32,
    #[serde(default)]
    pub previous_offset: Option<i64>,
    pub new_offset: i64,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct ResetOffsetsResponse {
    pub executed: bool,
    pub offsets: Vec<OffsetReset>,
}
