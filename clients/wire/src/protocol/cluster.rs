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
