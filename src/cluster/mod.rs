//! A broker's place in a cluster coordinated by ZooKeeper (docs/cluster.md):
//! the broker registers itself under `/brokers/ids/<id>` as an ephemeral
//! node (a second broker with the same id refuses to start), runs for
//! controller (`/controller`, `/controller_epoch`), and rejoins by itself
//! when its session ends.

pub mod control;
pub mod controller;
mod fetcher;
pub mod metadata;
pub mod node;
mod node_admin;
mod node_control;
pub mod node_groups;
mod node_roles;
mod node_topics;
pub mod peers;
pub mod producer_ids;
pub mod registry;
pub mod shutdown;
pub mod topics;

pub use node::{ClusterNode, DescribeCluster, Metadata};
pub use node_admin::{AddClusterPartitions, AlterClusterTopicConfig};
pub use node_groups::FindCoordinator;
pub(crate) use node_roles::local_partition;
pub use node_topics::{CreateClusterTopic, DeleteClusterTopic};
pub use peers::{FindLeader, GetPeers, LeaderAt, Peers};
pub use producer_ids::AllocateProducerId;
pub use shutdown::ControlledShutdown;

use actix::Addr;
use herald_wire::protocol::{BrokerInfo, DescribeClusterResponse};

/// Whether this broker is alone or in a cluster, for the requests that ask.
#[derive(Clone)]
pub enum Membership {
    /// One broker with no ZooKeeper: it is the whole cluster and its
    /// controller (`cluster.broker_id`, 0 when unset).
    Single(BrokerInfo),
    /// A broker in a cluster coordinated by ZooKeeper.
    Cluster(Addr<ClusterNode>),
}

impl Membership {
    /// What `describe_cluster` answers; `None` when the cluster node is gone
    /// (the broker is shutting down).
    pub async fn describe(&self) -> Option<DescribeClusterResponse> {
        match self {
            Membership::Single(me) => Some(DescribeClusterResponse {
                mode: "single".into(),
                broker_id: me.id,
                controller_id: me.id,
                controller_epoch: 0,
                brokers: vec![me.clone()],
            }),
            Membership::Cluster(node) => node.send(DescribeCluster).await.ok(),
        }
    }
}
