//! The cluster calls of a [`Client`]: `describe_cluster`.

use herald_wire::protocol::{op, DescribeClusterResponse, Empty};

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
