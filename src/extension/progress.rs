//! Durable progress: a custom actor commits the offsets it has processed as
//! a consumer group of its own, through the group coordinator's offset
//! commit (the wire's `commit_offsets` without a member), and reads them
//! back after a restart.

use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::group::assignor::TopicPartition;
use herald_actors::group::coordinator::{CommitOffsets, FetchOffsets, GroupCoordinator};
use herald_actors::group::LookupGroup;

use actix::prelude::*;

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
        let coordinator = self.coordinator(group, true).await?;
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
        let coordinator = match self.coordinator(group, false).await {
            Ok(coordinator) => coordinator,
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
}
