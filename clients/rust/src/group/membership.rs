//! Joining, and joining again when the membership is lost: removed or
//! fenced (the coordinator said so), or gone with its coordinator (the
//! connection closed, or the broker is no longer, or not yet, the group's
//! coordinator).

use std::time::{Duration, Instant};

use herald_wire::error::ErrorCode;
use herald_wire::protocol::*;
use tokio::sync::watch;

use super::heartbeat::{heartbeat_loop, Heard};
use super::{GroupConsumer, GroupEvent, TopicPartitionKey};
use crate::coordinator::{Backoff, COORDINATOR_CODES};
use crate::leaders::answered_one_of;
use crate::ClientError;

/// Whether `err`, the outcome of a request to the group's coordinator, means
/// the membership is gone with the coordinator: the connection closed, or
/// the broker answered `COORDINATOR_LOAD_IN_PROGRESS` (14),
/// `COORDINATOR_NOT_AVAILABLE` (15), `NOT_COORDINATOR` (16) or
/// `BROKER_SHUTTING_DOWN` (1003: it closes the connection next). A timeout
/// is not: the connection, and the membership on it, may still be there.
pub(super) fn membership_gone(err: &ClientError) -> bool {
    matches!(err, ClientError::Closed | ClientError::Io(_))
        || answered_one_of(err, &COORDINATOR_CODES)
        || answered_one_of(err, &[ErrorCode::BROKER_SHUTTING_DOWN])
}

impl GroupConsumer {
    /// Joins the group, without a member id, at its coordinator as looked up
    /// now, and starts the heartbeat task. While the coordinator cannot be
    /// reached or answers that it is not (or not yet) the group's, looks it
    /// up again after a backoff, for up to a session timeout.
    pub(super) async fn rejoin(&mut self) -> Result<(), ClientError> {
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
        let request = JoinGroupRequest {
            group_id: self.config.group_id.clone(),
            member_id: None,
            topics: self.config.topics.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            session_timeout_ms: Some(self.config.session_timeout_ms),
            rebalance_timeout_ms: None,
            assignor: self.config.assignor.clone(),
        };
        let group_id = self.config.group_id.clone();
        let deadline = Instant::now() + Duration::from_millis(self.config.session_timeout_ms);
        let mut backoff = Backoff::until(deadline);
        let (client, joined, sent) = loop {
            let coordinator = self.cluster.coordinator(&group_id, deadline).await?;
            // The member's own connection to the coordinator: the broker
            // takes one member of a group per connection, and consumers may
            // share a `Cluster` (and so its connections).
            let joined = async {
                let client = coordinator.reconnect().await?;
                let sent = Instant::now();
                let joined = client.request::<_, AssignmentResponse>(group_op::JOIN_GROUP, &request).await?;
                Ok::<_, ClientError>((client, joined, sent))
            };
            match joined.await {
                Ok(joined) => break joined,
                Err(err) if membership_gone(&err) => {
                    self.cluster.forget_coordinator(&group_id);
                    tracing::debug!(group = %group_id, %err, "the coordinator moved; looking it up again");
                    if !backoff.wait().await {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        };
        self.client = client;
        self.moved = None;
        self.member_id = joined.member_id.clone();
        self.generation_id = 0;
        let (owned_tx, owned_rx) = watch::channel((0, Vec::new()));
        let (assign_tx, assign_rx) = watch::channel(Some(Heard::Assignment(joined.clone())));
        let (confirmed_tx, confirmed_rx) = watch::channel(sent);
        self.owned = owned_tx;
        self.assignments = assign_rx;
        self.confirmed = confirmed_rx;
        let task = heartbeat_loop(
            self.client.clone(),
            group_id,
            joined.member_id,
            joined.heartbeat_interval_ms.max(1),
            owned_rx,
            assign_tx,
            confirmed_tx,
        );
        self.heartbeats = Some(tokio::spawn(task));
        Ok(())
    }

    /// The error of a fenced consumer, if it is one.
    pub(super) fn check_fenced(&self) -> Result<(), ClientError> {
        match &self.fenced {
            Some(message) => Err(ClientError::broker(ErrorCode::FENCED_INSTANCE_ID.code(), Some(message.clone()))),
            None => Ok(()),
        }
    }

    /// Notes that `err`, the outcome of a request to the coordinator, says
    /// the membership is gone with it (see [`membership_gone`]): nothing is
    /// committed from now on, and the next poll joins again.
    pub(super) fn note_moved(&mut self, err: &ClientError) {
        if membership_gone(err) && self.moved.is_none() {
            tracing::info!(group = %self.config.group_id, %err, "the group's coordinator is gone; joining again");
            self.moved = Some(err.duplicate());
        }
    }

    /// Drops every partition without committing, reporting them lost.
    fn drop_partitions(&mut self) {
        let lost: Vec<TopicPartitionKey> = self.positions.keys().cloned().collect();
        self.positions.clear();
        if !lost.is_empty() {
            self.events.push_back(GroupEvent::Lost { partitions: lost });
        }
    }

    /// Membership lost (removed or fenced): drops everything without
    /// committing, joins again (a fenced consumer does not: it fails from
    /// now on).
    pub(super) async fn lose_membership(&mut self, code: i16, message: String) -> Result<(), ClientError> {
        self.drop_partitions();
        if code == ErrorCode::FENCED_INSTANCE_ID.code() {
            // Another consumer joined under this one's group_instance_id:
            // joining again would fence it in turn, and so on for ever.
            if let Some(task) = self.heartbeats.take() {
                task.abort();
            }
            let instance = self.config.group_instance_id.as_deref().unwrap_or_default();
            self.fenced = Some(format!(
                "another consumer joined group `{}` with group_instance_id `{instance}` and replaced this one ({message})",
                self.config.group_id
            ));
            tracing::warn!(group = %self.config.group_id, instance, "fenced by a newer member with the same instance id");
            return self.check_fenced();
        }
        tracing::info!(code, %message, group = %self.config.group_id, "membership lost; joining again");
        self.rejoin().await
    }

    /// The membership is gone with its coordinator (its connection closed,
    /// or it answered 14, 15, 16 or 1003): drops every partition without
    /// committing, looks the coordinator up again and joins it. If none can
    /// be reached within a session timeout, returns the error; the next poll
    /// tries again (nothing is committed meanwhile).
    pub(super) async fn reconnect(&mut self) -> Result<(), ClientError> {
        self.drop_partitions();
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
        tracing::info!(group = %self.config.group_id, "the group's coordinator is gone; looking it up again");
        self.moved.get_or_insert(ClientError::Closed);
        self.cluster.forget_coordinator(&self.config.group_id);
        self.committed.clear();
        self.rejoin().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_connection_and_the_coordinator_codes_end_the_membership() {
        assert!(membership_gone(&ClientError::Closed));
        assert!(membership_gone(&ClientError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset))));
        for code in [14, 15, 16, 1003] {
            assert!(membership_gone(&ClientError::broker(code, None)), "{code}");
        }
    }

    #[test]
    fn a_timeout_and_other_answers_do_not() {
        let timed_out = ClientError::TimedOut { peer: "a:1".into(), what: "answer".into(), after: Duration::ZERO };
        assert!(!membership_gone(&timed_out));
        // UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION and FENCED_INSTANCE_ID are
        // losses of another kind; the rest are errors of the request.
        for code in [25, 22, 82, 6, 24, 30, 5] {
            assert!(!membership_gone(&ClientError::broker(code, None)), "{code}");
        }
    }
}
