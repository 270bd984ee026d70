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
