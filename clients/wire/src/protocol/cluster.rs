//! Wire types of the cluster's own requests: `describe_cluster` (Kafka's
//! DescribeCluster): the live brokers and the controller. Re-exported by
//! [`messages`](super::messages); docs/protocol.md describes them.

use serde::{Deserialize, Serialize};

/// One live broker, as the cluster knows it.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker's id (`cluster.broker_id`).
    pub id: i32,
    /// The address clients reach it at.
    pub host: String,
    pub port: u16,
    /// Its rack, if it has one.
    #[serde(default)]
    pub rack: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct DescribeClusterResponse {
    /// `zookeeper` for a broker in a cluster, `single` for one alone.
    pub mode: String,
    /// The broker that answered.
    pub broker_id: i32,
    /// The controller's id; -1 while none is known (an election under way,
    /// or this broker between ZooKeeper sessions).
    pub controller_id: i32,
    /// The controller's epoch (`/controller_epoch`): bumped at every
    /// election; 0 for a single broker.
    pub controller_epoch: i32,
    /// The live brokers, by id.
    pub brokers: Vec<BrokerInfo>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct MetadataRequest {
    /// The topics to describe; nil for every topic.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
}

/// Where each partition of the topics asked for is led.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct MetadataResponse {
    /// The live brokers, by id.
    pub brokers: Vec<BrokerInfo>,
    /// The controller's id; -1 while none is known.
    pub controller_id: i32,
    /// By name.
    pub topics: Vec<TopicMetadata>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub topic: String,
    /// Empty when `error_code` is not 0.
    pub topic_id: String,
    /// 0; `UNKNOWN_TOPIC_OR_PARTITION` (3) for a topic that does not exist;
    /// `TOPIC_AUTHORIZATION_FAILED` (29) for one the principal may not describe.
    pub error_code: i16,
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: u32,
    /// The leader's broker id; -1 while the partition has none.
    pub leader: i32,
    pub leader_epoch: i32,
    /// Every replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The replicas in sync with the leader.
    pub isr: Vec<i32>,
    /// Replicas on brokers that are not alive.
    pub offline_replicas: Vec<i32>,
}

/// A follower broker's fetch from the leader of the partitions it follows
/// (Kafka's Fetch with a replica id). Broker to broker.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct ReplicaFetchRequest {
    /// The fetching broker's id.
    pub replica_id: i32,
    /// The longest the leader holds the request when no partition has data
    /// past its offset.
    pub max_wait_ms: u64,
    /// The most bytes of batches returned per partition.
    pub max_bytes: u32,
    pub partitions: Vec<ReplicaFetchPartition>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct ReplicaFetchPartition {
    pub topic: String,
    pub partition: u32,
    /// The follower's log end: it has every record below it.
    pub fetch_offset: i64,
    /// The leader epoch the follower follows.
    pub leader_epoch: i32,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct ReplicaFetchResponse {
    pub partitions: Vec<ReplicaFetched>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct ReplicaFetched {
    pub topic: String,
    pub partition: u32,
    /// 0, or why this partition was not served (6 not the leader, 74 the
    /// follower's epoch is older, 75 newer, 3 unknown).
    pub error_code: i16,
    #[serde(default)]
    pub error_message: Option<String>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub leader_epoch: i32,
    /// The leader epoch starts `[epoch, start_offset]` covering `records`.
    pub epochs: Vec<(i32, i64)>,
    /// Whole stored batches from `fetch_offset`, as stored.
    pub records: bytes::Bytes,
}

/// Kafka's OffsetsForLeaderEpoch: where each epoch a follower knows ended
/// in the leader's log. Broker to broker.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct EpochEndRequest {
    pub partitions: Vec<EpochEndPartition>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct EpochEndPartition {
    pub topic: String,
    pub partition: u32,
    /// The latest leader epoch in the follower's own log.
    pub leader_epoch: i32,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct EpochEndResponse {
    pub partitions: Vec<EpochEnd>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct EpochEnd {
    pub topic: String,
    pub partition: u32,
    pub error_code: i16,
    /// The largest epoch at or below the one asked that the leader knows,
    /// and the offset where it ended in the leader's log (its log end for
    /// the current epoch); -1 and -1 when the leader knows none.
    pub leader_epoch: i32,
    pub end_offset: i64,
}

/// Kafka's ControlledShutdown: a broker about to stop asks the controller
/// to move its leaderships away and take it out of every ISR. Broker to
/// broker.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct ControlledShutdownRequest {
    /// The id of the broker that is stopping.
    pub broker_id: i32,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct ControlledShutdownResponse {
    /// The partitions the broker still leads: none of their other replicas
    /// is a live in-sync one the controller could elect.
    pub partitions_remaining: Vec<RemainingPartition>,
}

/// A partition a stopping broker still leads.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemainingPartition {
    pub topic: String,
    pub partition: u32,
    /// Its other replicas that are alive and not shutting down: any of them
    /// can take over once back in the ISR. Empty: waiting cannot help.
    pub successors: Vec<i32>,
}

/// `find_coordinator`'s answer: the broker that coordinates the group
/// (Kafka's FindCoordinator). A broker alone answers itself.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct FindCoordinatorResponse {
    pub broker_id: i32,
    pub host: String,
    pub port: u16,
}

/// The name of the replicated topic that holds the groups' records in a
/// cluster (Kafka's).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The `__consumer_offsets` partition of a group, as Kafka places it:
/// `abs(hashCode(group_id)) % partitions`, with Java's `String.hashCode`
/// (over UTF-16 code units) and Kafka's `Utils.abs` (0 for `i32::MIN`).
/// `partitions` must be at least 1.
pub fn coordinator_partition(group_id: &str, partitions: u32) -> u32 {
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    (abs as u32) % partitions.max(1)
}

#[cfg(test)]
mod coordinator_tests {
    use super::coordinator_partition;

    /// Java's `"...".hashCode()` values, and Kafka's placement from them.
    #[test]
    fn places_groups_as_kafka_does() {
        // "hello".hashCode() == 99162322.
        assert_eq!(coordinator_partition("hello", 50), 99_162_322 % 50);
        // "my-group".hashCode() == -1906497762: the absolute value.
        assert_eq!(coordinator_partition("my-group", 50), 1_906_497_762 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Utils.abs gives 0.
        assert_eq!(coordinator_partition("polygenelubricants", 50), 0);
        // Java hashes UTF-16 units: a character outside the BMP counts twice
        // ("\uD83D\uDE00".hashCode() == 55357 * 31 + 56832).
        assert_eq!(coordinator_partition("\u{1F600}", 1_000_000), (55_357 * 31 + 56_832) % 1_000_000);
        assert_eq!(coordinator_partition("any", 1), 0);
    }
}
