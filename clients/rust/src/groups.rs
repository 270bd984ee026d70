//! The consumer-group calls of a [`Client`] (sent on its connection, as
//! they are) and of a [`Cluster`] (sent to the group's coordinator, see
//! [`Cluster::coordinator`]; `list_groups` asked of every broker).
//!
//! The [`Cluster`] calls look the coordinator up again and resend while the
//! answer says it moved, for up to the connections' request timeout
//! ([`Timeouts::request`](crate::Timeouts)). `delete_group` and an executed
//! `reset_offsets` are not sent again after a closed connection or a
//! timeout, which may follow their being carried out: that error is
//! returned instead.

use std::collections::BTreeMap;
use std::time::Instant;

use herald_wire::protocol::{
    op, DescribeGroupResponse, Empty, FetchOffsetsRequest, FetchOffsetsResponse, FindCoordinatorResponse, GroupListing,
    GroupRequest, ListGroupsResponse, ResetOffsetsRequest, ResetOffsetsResponse, TopicPartitions,
};

use crate::{Client, ClientError, Cluster};

impl Client {
    /// `find_coordinator`: the broker that coordinates `group_id` (a broker
    /// alone answers itself).
    ///
    /// # Errors
    ///
    /// `COORDINATOR_NOT_AVAILABLE` while the group's partition of
    /// `__consumer_offsets` has no leader (ask again after a backoff),
    /// `INVALID_GROUP_ID`, `GROUP_AUTHORIZATION_FAILED`,
    /// `LEADER_NOT_AVAILABLE` (ask another broker); connection errors.
    pub async fn find_coordinator(&self, group_id: &str) -> Result<FindCoordinatorResponse, ClientError> {
        self.request(op::FIND_COORDINATOR, &GroupRequest { group_id: group_id.to_string() }).await
    }

    /// `list_groups`: the groups this broker coordinates (every group, for
    /// a broker alone), sorted by id.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let listed: ListGroupsResponse = self.request(op::LIST_GROUPS, &Empty {}).await?;
        Ok(listed.groups)
    }

    /// `describe_group`: its members, and per partition its committed
    /// offset and lag.
    ///
    /// # Errors
    ///
    /// `GROUP_ID_NOT_FOUND`; `NOT_COORDINATOR` from a broker of a cluster
    /// that does not coordinate it; connection errors.
    pub async fn describe_group(&self, group_id: &str) -> Result<DescribeGroupResponse, ClientError> {
        self.request(op::DESCRIBE_GROUP, &GroupRequest { group_id: group_id.to_string() }).await
    }

    /// `delete_group`: deletes a group without members, and its offsets.
    ///
    /// # Errors
    ///
    /// `GROUP_ID_NOT_FOUND`, `NON_EMPTY_GROUP`; as [`Client::describe_group`].
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ClientError> {
        let _: Empty = self.request(op::DELETE_GROUP, &GroupRequest { group_id: group_id.to_string() }).await?;
        Ok(())
    }

    /// `reset_offsets`: the plan to move a group's committed offsets of one
    /// topic, carried out when `request.execute`.
    ///
    /// # Errors
    ///
    /// As the broker refuses it (a group with members, an unknown topic);
    /// as [`Client::describe_group`].
    pub async fn reset_offsets(&self, request: &ResetOffsetsRequest) -> Result<ResetOffsetsResponse, ClientError> {
        self.request(op::RESET_OFFSETS, request).await
    }

    /// `fetch_offsets`: a group's committed offsets of `partitions` (every
    /// committed one when `None`); -1 where nothing is committed.
    ///
    /// # Errors
    ///
    /// As [`Client::describe_group`].
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<TopicPartitions>>,
    ) -> Result<FetchOffsetsResponse, ClientError> {
        self.request(op::FETCH_OFFSETS, &fetch_offsets_request(group_id, partitions)).await
    }
}

fn fetch_offsets_request(group_id: &str, partitions: Option<Vec<TopicPartitions>>) -> FetchOffsetsRequest {
    FetchOffsetsRequest { group_id: group_id.to_string(), partitions, member_id: None, generation_id: None }
}

impl Cluster {
    /// When the calls below give up looking for a coordinator.
    fn group_deadline(&self) -> Instant {
        Instant::now() + self.request_timeout()
    }

    /// [`Client::describe_group`], of the group's coordinator.
    ///
    /// # Errors
    ///
    /// As [`Client::describe_group`] and [`Cluster::coordinator`].
    pub async fn describe_group(&self, group_id: &str) -> Result<DescribeGroupResponse, ClientError> {
        let request = GroupRequest { group_id: group_id.to_string() };
        self.group_request(group_id, op::DESCRIBE_GROUP, &request, self.group_deadline(), true).await
    }

    /// [`Client::delete_group`], of the group's coordinator.
    ///
    /// # Errors
    ///
    /// As [`Client::delete_group`] and [`Cluster::coordinator`].
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ClientError> {
        let request = GroupRequest { group_id: group_id.to_string() };
        let _: Empty = self.group_request(group_id, op::DELETE_GROUP, &request, self.group_deadline(), false).await?;
        Ok(())
    }

    /// [`Client::reset_offsets`], of the group's coordinator.
    ///
    /// # Errors
    ///
    /// As [`Client::reset_offsets`] and [`Cluster::coordinator`].
    pub async fn reset_offsets(&self, request: &ResetOffsetsRequest) -> Result<ResetOffsetsResponse, ClientError> {
        let deadline = self.group_deadline();
        self.group_request(&request.group_id, op::RESET_OFFSETS, request, deadline, !request.execute).await
    }

    /// [`Client::fetch_offsets`], of the group's coordinator.
    ///
    /// # Errors
    ///
    /// As [`Client::fetch_offsets`] and [`Cluster::coordinator`].
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<TopicPartitions>>,
    ) -> Result<FetchOffsetsResponse, ClientError> {
        let request = fetch_offsets_request(group_id, partitions);
        self.group_request(group_id, op::FETCH_OFFSETS, &request, self.group_deadline(), true).await
    }

    /// Every group of the cluster, sorted by id: each broker `describe_cluster`
    /// lists is asked `list_groups` (it answers those it coordinates) and the
    /// answers are merged. A broker alone is asked once.
    ///
    /// # Errors
    ///
    /// A broker listed could not be reached or refused (its error: a list
    /// without its groups would look complete).
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let client = self.any().await?;
        if !client.features().offers(op::DESCRIBE_CLUSTER) {
            return client.list_groups().await;
        }
        let described = client.describe_cluster().await?;
        if described.mode == "single" {
            return client.list_groups().await;
        }
        let mut merged = BTreeMap::new();
        for broker in &described.brokers {
            let address = format!("{}:{}", broker.host, broker.port);
            let connection = if broker.id == described.broker_id {
                client.clone()
            } else {
                self.connect_broker(broker.id, &address).await?
            };
            for group in connection.list_groups().await? {
                // A group whose coordinator moved during the round may be
                // listed twice: keep one.
                merged.insert(group.group_id.clone(), group);
            }
        }
        Ok(merged.into_values().collect())
    }
}
