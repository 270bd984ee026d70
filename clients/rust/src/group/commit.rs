//! Committing positions, and leaving the group.

use std::time::Instant;

use herald_wire::protocol::*;

use super::membership::membership_gone;
use super::{GroupConsumer, TopicPartitionKey};
use crate::ClientError;

impl GroupConsumer {
    /// Commits the position of every owned partition.
    ///
    /// # Errors
    ///
    /// The commit was refused (for example `PARTITION_NOT_OWNED` after the
    /// partition moved away, `ILLEGAL_GENERATION` for a stale generation).
    /// `NOT_COORDINATOR` (16), `COORDINATOR_LOAD_IN_PROGRESS` (14),
    /// `COORDINATOR_NOT_AVAILABLE` (15) or a closed connection: nothing was
    /// stored, and the membership is gone with the coordinator (the next
    /// poll reports the partitions lost and joins again); until then every
    /// commit with something to commit fails with the same error.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.check_fenced()?;
        let offsets: Vec<(TopicPartitionKey, i64)> = self
            .positions
            .iter()
            .filter(|(k, o)| self.committed.get(*k) != Some(*o))
            .map(|(k, o)| (k.clone(), *o))
            .collect();
        if let (Some(moved), false) = (&self.moved, offsets.is_empty()) {
            return Err(moved.duplicate());
        }
        let generation_id = self.generation_id;
        self.commit_positions(offsets, generation_id).await?;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Commits `offsets` under `generation_id`; an answer or a closed
    /// connection that says the coordinator is gone is noted (see
    /// [`GroupConsumer::note_moved`]).
    pub(super) async fn commit_positions(
        &mut self,
        offsets: Vec<(TopicPartitionKey, i64)>,
        generation_id: i64,
    ) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let request = CommitOffsetsRequest {
            group_id: self.config.group_id.clone(),
            member_id: Some(self.member_id.clone()),
            generation_id,
            offsets: offsets
                .iter()
                .map(|((topic, partition), offset)| OffsetCommit {
                    topic: topic.clone(),
                    partition: i64::from(*partition),
                    offset: *offset,
                    metadata: None,
                })
                .collect(),
        };
        let answered = self.client.request::<_, CommitOffsetsResponse>(group_op::COMMIT_OFFSETS, &request).await;
        let failed = match answered {
            Ok(response) => response
                .partitions
                .iter()
                .find(|p| p.error_code != 0)
                .map(|failed| ClientError::broker(failed.error_code, failed.error_message.clone())),
            Err(err) => Some(err),
        };
        if let Some(err) = failed {
            self.note_moved(&err);
            return Err(err);
        }
        for (key, offset) in offsets {
            self.committed.insert(key, offset);
        }
        Ok(())
    }

    /// Commits (with auto-commit) and leaves the group: its partitions move to
    /// the other members at once. A consumer whose membership is already
    /// gone with its coordinator commits nothing and has nothing to leave.
    ///
    /// # Errors
    ///
    /// The leave was refused.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
        if self.moved.is_some() {
            return Ok(());
        }
        if self.config.auto_commit {
            if let Err(err) = self.commit().await {
                tracing::warn!(%err, "final commit failed");
            }
        }
        let request = LeaveGroupRequest { group_id: self.config.group_id.clone(), member_id: self.member_id.clone() };
        match self.client.request::<_, Empty>(group_op::LEAVE_GROUP, &request).await {
            // Not a member there any more: nothing is left to leave.
            Err(err) if membership_gone(&err) && err.code().is_some() => {
                tracing::debug!(%err, "the coordinator had already dropped the member");
                Ok(())
            }
            left => left.map(|_| ()),
        }
    }
}
