//! The cluster calls of a [`Client`]: `describe_cluster`.

use herald_wire::protocol::{op, DescribeClusterResponse, Empty, MetadataRequest, MetadataResponse};

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
