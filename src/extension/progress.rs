//! Durable progress: a custom actor commits the offsets it has processed as
//! a consumer group of its own, through the group coordinator's offset
//! commit (the wire's `commit_offsets` without a member), and reads them
//! back after a restart.
//!
//! In a cluster the group's coordinator may be another broker (the leader
//! of the group's partition of `__consumer_offsets`): the commit and the
//! read then go to it over the wire, on a connection the context keeps per
//! broker, as a client's would.

use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::group::assignor::TopicPartition;
use herald_actors::group::coordinator::{CommitOffsets, FetchOffsets, GroupCoordinator};
use herald_actors::group::LookupGroup;
use herald_client::{Client, ClientError};
use herald_wire::protocol::{
    group_op, CommitOffsetsRequest, CommitOffsetsResponse, FetchOffsetsRequest, FetchOffsetsResponse, OffsetCommit,
    TopicPartitions,
};

use crate::cluster::FindCoordinator;

use actix::prelude::*;

use super::context::from_peer;
use super::ExtensionContext;

impl ExtensionContext {
    /// Commits `offset` (the next offset to process) for `topic`'s
    /// `partition` in `group`, durably (answered once the group's log is
    /// fsynced), as a `commit_offsets` without a member. The group must have
    /// no members: an extension's group is its own, not a client's.
    ///
    /// # Errors
    ///
    /// As `commit_offsets`: `UNKNOWN_MEMBER_ID` (the group has members),
    /// `INVALID_GROUP_ID`, `INVALID_REQUEST` (a negative offset),
    /// `COORDINATOR_NOT_AVAILABLE` (restarting: retry), `KAFKA_STORAGE_ERROR`.
    pub async fn commit(&self, group: &str, topic: &str, partition: u32, offset: i64) -> Result<(), BrokerError> {
        self.commit_with(group, topic, partition, offset, None).await
    }

    /// [`ExtensionContext::commit`] with `metadata` (at most 4096 bytes)
    /// stored beside the offset, e.g. what else the actor needs to resume.
    ///
    /// # Errors
    ///
    /// As [`ExtensionContext::commit`]; `OFFSET_METADATA_TOO_LARGE`.
    pub async fn commit_with(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: i64,
        metadata: Option<String>,
    ) -> Result<(), BrokerError> {
        let coordinator = match self.coordinator_at(group, true).await? {
            At::Here(coordinator) => coordinator,
            At::There(client) => return remote_commit(client, group, topic, partition, offset, metadata).await,
        };
        let commit = CommitOffsets {
            member_id: None,
            generation_id: -1,
            offsets: vec![(TopicPartition::new(topic, partition), offset, metadata)],
        };
        let results = coordinator.send(commit).await.unwrap_or_else(|e| Err(e.into()))?;
        results.into_iter().try_for_each(|(_, result)| result)
    }

    /// The offset `group` committed for `topic`'s `partition`, if any (an
    /// offset committed to an earlier topic of that name is not answered).
    ///
    /// # Errors
    ///
    /// `INVALID_GROUP_ID`, `COORDINATOR_NOT_AVAILABLE` (restarting: retry).
    pub async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<i64>, BrokerError> {
        Ok(self.committed_with(group, topic, partition).await?.map(|(offset, _)| offset))
    }

    /// [`ExtensionContext::committed`] with the metadata committed beside
    /// the offset.
    ///
    /// # Errors
    ///
    /// As [`ExtensionContext::committed`].
    pub async fn committed_with(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(i64, Option<String>)>, BrokerError> {
        let coordinator = match self.coordinator_at(group, false).await {
            Ok(At::Here(coordinator)) => coordinator,
            Ok(At::There(client)) => return remote_committed(client, group, topic, partition).await,
            Err(err) if err.code == ErrorCode::GROUP_ID_NOT_FOUND => return Ok(None),
            Err(err) => return Err(err),
        };
        let wanted = TopicPartition::new(topic, partition);
        let fetch = FetchOffsets { partitions: Some(vec![wanted.clone()]), member: None };
        let found = coordinator.send(fetch).await.unwrap_or_else(|e| Err(e.into()))?;
        let committed = found.into_iter().find(|(tp, _)| *tp == wanted).and_then(|(_, committed)| committed);
        Ok(committed.map(|c| (c.offset, c.metadata)))
    }

    pub(super) async fn coordinator(&self, group: &str, create: bool) -> Result<Addr<GroupCoordinator>, BrokerError> {
        let lookup = LookupGroup { group_id: group.to_owned(), create };
        self.groups.send(lookup).await.unwrap_or_else(|e| Err(e.into()))
    }

    /// The group's coordinator: this broker's, or a connection to the
    /// broker that coordinates it in a cluster.
    async fn coordinator_at(&self, group: &str, create: bool) -> Result<At, BrokerError> {
        match (self.coordinator(group, create).await, &self.cluster) {
            (Err(err), Some(node)) if err.code == ErrorCode::NOT_COORDINATOR => {
                let found = node.send(FindCoordinator { group_id: group.to_owned() }).await;
                let found = found.unwrap_or_else(|e| Err(e.into()))?;
                let address = format!("{}:{}", found.host, found.port);
                let client = self.peer(node, found.id, &address).await.map_err(|err| looking_again(&err))?;
                Ok(At::There(client))
            }
            (found, _) => found.map(At::Here),
        }
    }
}

/// Where a group's coordinator is.
enum At {
    Here(Addr<GroupCoordinator>),
    There(Client),
}

/// A failed request to another broker's coordinator, as the caller sees
/// it: the broker's own error, or `COORDINATOR_NOT_AVAILABLE` (retry) when
/// it could not be reached.
fn looking_again(err: &ClientError) -> BrokerError {
    match err.code().and_then(ErrorCode::from_code) {
        Some(_) => from_peer(err),
        None => BrokerError::new(
            ErrorCode::COORDINATOR_NOT_AVAILABLE,
            format!("the group's coordinator could not be reached: {err}"),
        ),
    }
}

async fn remote_commit(
    client: Client,
    group: &str,
    topic: &str,
    partition: u32,
    offset: i64,
    metadata: Option<String>,
) -> Result<(), BrokerError> {
    let request = CommitOffsetsRequest {
        group_id: group.to_owned(),
        member_id: None,
        generation_id: -1,
        offsets: vec![OffsetCommit { topic: topic.to_owned(), partition: i64::from(partition), offset, metadata }],
    };
    let answer: CommitOffsetsResponse =
        client.request(group_op::COMMIT_OFFSETS, &request).await.map_err(|err| looking_again(&err))?;
    match answer.partitions.into_iter().find(|p| p.error_code != 0) {
        Some(failed) => {
            let code = ErrorCode::from_code(failed.error_code).unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR);
            Err(BrokerError::new(code, failed.error_message.unwrap_or_default()))
        }
        None => Ok(()),
    }
}

async fn remote_committed(
    client: Client,
    group: &str,
    topic: &str,
    partition: u32,
) -> Result<Option<(i64, Option<String>)>, BrokerError> {
    let request = FetchOffsetsRequest {
        group_id: group.to_owned(),
        partitions: Some(vec![TopicPartitions { topic: topic.to_owned(), partitions: vec![partition] }]),
        member_id: None,
        generation_id: None,
    };
    let answer: Result<FetchOffsetsResponse, _> = client.request(group_op::FETCH_OFFSETS, &request).await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(err) if err.code() == Some(ErrorCode::GROUP_ID_NOT_FOUND.code()) => return Ok(None),
        Err(err) => return Err(looking_again(&err)),
    };
    let found = answer.offsets.into_iter().find(|o| o.topic == topic && o.partition == partition);
    Ok(found.filter(|o| o.offset >= 0).map(|o| (o.offset, o.metadata)))
}
