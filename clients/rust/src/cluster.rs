//! The cluster calls of a [`Client`]: `describe_cluster`.

use herald_wire::protocol::{
    op, DescribeClusterResponse, Empty, EpochEndRequest, EpochEndResponse, MetadataRequest, MetadataResponse,
    ReplicaFetchRequest, ReplicaFetchResponse,
};

use crate::{Client, ClientError};

impl Client {
    /// The live brokers and the controller, as the broker connected to
    /// sees them (a single broker describes itself).
    ///
    /// # Errors
    ///
    /// `BROKER_SHUTTING_DOWN` while the broker leaves.
    pub async fn describe_cluster(&self) -> Result<DescribeClusterResponse, ClientError> {
        self.request(op::DESCRIBE_CLUSTER, &Empty {}).await
    }
}

impl Client {
    /// Where each partition of `topics` (every topic when `None`) is led:
    /// leader, leader epoch, replicas and in-sync replicas, and the live
    /// brokers.
    ///
    /// # Errors
    ///
    /// Connection errors; a topic that does not exist or may not be
    /// described has its `error_code` set instead.
    pub async fn metadata(&self, topics: Option<Vec<String>>) -> Result<MetadataResponse, ClientError> {
        self.request(op::METADATA, &MetadataRequest { topics }).await
    }
}

impl Client {
    /// `replica_fetch`: what a follower broker sends its leader (brokers use
    /// it; the broker may hold it up to `request.max_wait_ms`).
    ///
    /// # Errors
    ///
    /// `CLUSTER_AUTHORIZATION_FAILED` without `cluster_action`; connection
    /// errors. Per-partition errors are in the answer.
    pub async fn replica_fetch(&self, request: &ReplicaFetchRequest) -> Result<ReplicaFetchResponse, ClientError> {
        let held = std::time::Duration::from_millis(request.max_wait_ms);
        self.request_held(op::REPLICA_FETCH, request, held).await
    }

    /// `leader_epoch_end_offset`: where each epoch ended in the leader's log
    /// (brokers use it before following).
    ///
    /// # Errors
    ///
    /// As [`Client::replica_fetch`].
    pub async fn epoch_end(&self, request: &EpochEndRequest) -> Result<EpochEndResponse, ClientError> {
        self.request(op::EPOCH_END, request).await
    }
}
