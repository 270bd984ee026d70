//! The cluster calls of a [`Client`]: `describe_cluster`, `metadata`, and
//! the brokers' own `replica_fetch`, `leader_epoch_end_offset` and
//! `controlled_shutdown`.

use herald_wire::protocol::{
    op, ControlledShutdownRequest, ControlledShutdownResponse, DescribeClusterResponse, Empty, EpochEndRequest,
    EpochEndResponse, MetadataRequest, MetadataResponse, ReplicaFetchRequest, ReplicaFetchResponse,
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

    /// `controlled_shutdown`: asks the controller to move broker
    /// `broker_id`'s leaderships away before it stops (brokers use it);
    /// the answer lists the partitions it still leads.
    ///
    /// # Errors
    ///
    /// `NOT_CONTROLLER` from a broker that is not the controller,
    /// `BROKER_NOT_AVAILABLE` for a broker the controller does not see
    /// alive, `INVALID_REQUEST` from a broker alone; as
    /// [`Client::replica_fetch`].
    pub async fn controlled_shutdown(&self, broker_id: i32) -> Result<ControlledShutdownResponse, ClientError> {
        self.request(op::CONTROLLED_SHUTDOWN, &ControlledShutdownRequest { broker_id }).await
    }
}
