//! A group consumer: joins a consumer group, consumes the partitions the
//! broker assigns it, commits offsets, and follows rebalances.
//!
//! The broker computes assignments; this consumer only reports what it owns
//! and applies what it is given. A background task keeps one heartbeat
//! outstanding (a long poll the broker answers as soon as the assignment
//! changes) and hands new assignments to [`GroupConsumer::poll`], which
//! applies them: revoked partitions are committed (with auto-commit) and
//! dropped, then reported to the broker as released, so their new owner can
//! start; added partitions start at their committed offset, or per
//! `auto_offset_reset`. Every change is also reported as a [`GroupEvent`].
//!
//! A consumer that has not had its membership confirmed for a session timeout
//! (its thread stalled, say: the heartbeat task stalls with it) may have been
//! removed, and its partitions given to other members: `poll` then hands out
//! no record, applies no assignment and commits nothing until the heartbeat
//! task has heard from the broker again, which confirms the membership or
//! reports it lost. A
//! membership is confirmed as of when a heartbeat (or the join) was sent that
//! the broker answered.
//!
//! When the connection closes (the broker restarted, say), the membership is
//! gone with it: the consumer reports its partitions [`GroupEvent::Lost`],
//! connects again (for up to a session timeout), joins again and resumes each
//! partition it is given from its committed offset.

mod config;
mod heartbeat;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use config::{AutoOffsetReset, GroupConsumerConfig, GroupEvent};
use heartbeat::{heartbeat_loop, Heard};

use crate::{Client, ClientError, Cluster, ConsumedRecord, ConsumerConfig};
use herald_wire::error::ErrorCode;
use herald_wire::protocol::*;

type TopicPartitionKey = (String, u32);

/// A member of a consumer group. See the module documentation.
pub struct GroupConsumer {
    client: Client,
    /// Where the fetches go: each partition's leader (the group's own
    /// requests go on `client`).
    cluster: Cluster,
    config: GroupConsumerConfig,
    member_id: String,
    generation_id: i64,
    /// Partitions owned, with the next offset to read.
    positions: BTreeMap<TopicPartitionKey, i64>,
    /// What was last committed, to skip commits that change nothing.
    committed: BTreeMap<TopicPartitionKey, i64>,
    /// Assignments from the heartbeat task.
    assignments: watch::Receiver<Option<Heard>>,
    /// When the membership was last confirmed (see the module documentation).
    confirmed: watch::Receiver<Instant>,
    /// What this consumer owns, for the heartbeat task to report.
    owned: watch::Sender<(i64, Vec<TopicPartitions>)>,
    heartbeats: Option<tokio::task::JoinHandle<()>>,
    events: VecDeque<GroupEvent>,
    last_commit: Instant,
    /// A fetch that met a damaged range while other partitions returned
    /// records: reported by the next poll, so that neither is lost.
    damaged: Option<ClientError>,
    /// Set once another consumer with the same `group_instance_id` replaced
    /// this one: every later call fails with it (Kafka's fatal
    /// `FENCED_INSTANCE_ID`), rather than the two replacing each other.
    fenced: Option<String>,
}

fn to_wire(set: &BTreeSet<TopicPartitionKey>) -> Vec<TopicPartitions> {
    TopicPartitions::group(set.iter().map(|(t, p)| (t.as_str(), *p)))
}

fn from_wire(list: &[TopicPartitions]) -> BTreeSet<TopicPartitionKey> {
    TopicPartitions::pairs(list).map(|(t, p)| (t.to_string(), p)).collect()
}

impl GroupConsumer {
    /// Joins the group.
    ///
    /// # Errors
    ///
    /// The broker refused the join (bad session timeout, unknown assignor, ...).
    pub async fn join(client: Client, config: GroupConsumerConfig) -> Result<GroupConsumer, ClientError> {
        let (owned, _) = watch::channel((0, Vec::new()));
        let (_, assignments) = watch::channel(None);
        let (_, confirmed) = watch::channel(Instant::now());
        let mut consumer = GroupConsumer {
            cluster: Cluster::of(client.clone()),
            client,
            config,
            member_id: String::new(),
            generation_id: 0,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            assignments,
            confirmed,
            owned,
            heartbeats: None,
            events: VecDeque::new(),
            last_commit: Instant::now(),
            damaged: None,
            fenced: None,
        };
        consumer.rejoin().await?;
        Ok(consumer)
    }

    async fn rejoin(&mut self) -> Result<(), ClientError> {
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
        let sent = Instant::now();
        let joined: AssignmentResponse = self.client.request(group_op::JOIN_GROUP, &request).await?;
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
            self.config.group_id.clone(),
            joined.member_id,
            joined.heartbeat_interval_ms.max(1),
            owned_rx,
            assign_tx,
            confirmed_tx,
        );
        self.heartbeats = Some(tokio::spawn(task));
        Ok(())
    }

    /// This consumer's member id.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation of the assignment this consumer applied last.
    pub fn generation_id(&self) -> i64 {
        self.generation_id
    }

    /// The partitions this consumer owns now.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.positions.keys().cloned().collect()
    }

    /// The next offset to read of an owned partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.positions.get(&(topic.to_string(), partition)).copied()
    }

    /// Moves the next offset to read of an owned partition (for example back to
    /// the first record the application did not process); committed by the
    /// next commit. Returns false if the partition is not owned.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: i64) -> bool {
        crate::consumer::seek_in(&mut self.positions, topic, partition, offset)
    }

    /// Assignment changes since the last call.
    pub fn take_events(&mut self) -> Vec<GroupEvent> {
        self.events.drain(..).collect()
    }

    /// Applies any new assignment, fetches from the owned partitions, and
    /// commits when the auto-commit interval has passed.
    ///
    /// # Errors
    ///
    /// A fetch, commit or join error that cannot be recovered here. A fetch at
    /// an offset in a damaged range of the broker's log is `CORRUPT_MESSAGE`
    /// with [`ClientError::damaged`] naming it: the position stays there until
    /// the application [seeks](GroupConsumer::seek) past it.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        self.check_fenced()?;
        if let Some(err) = self.damaged.take() {
            return Err(err);
        }
        if self.unconfirmed() {
            // Possibly removed. News of the loss is applied (the consumer
            // joins again); an assignment is not (it may be stale: others may
            // own its partitions now): wait for the heartbeat task to hear
            // from the broker, and let the next poll apply what it heard.
            if matches!(self.assignments.borrow().as_ref(), Some(Heard::Lost(..) | Heard::Disconnected)) {
                self.apply_assignment().await?;
            } else {
                let wait = Duration::from_millis(self.config.max_wait_ms);
                let _ = tokio::time::timeout(wait, self.assignments.changed()).await;
            }
            return Ok(Vec::new());
        }
        self.apply_assignment().await?;
        if self.config.auto_commit
            && self.last_commit.elapsed() >= Duration::from_millis(self.config.auto_commit_interval_ms)
        {
            match self.commit().await {
                // Removed (a stall past the session timeout) or fenced before
                // the heartbeat task could say so: the same loss, recovered
                // the same way rather than failing the poll.
                Err(ClientError::Broker { code, message, .. }) if matches!(code, 25 | 82) => {
                    self.lose_membership(code, message).await?;
                    return Ok(Vec::new());
                }
                // The connection is gone: the heartbeat task reports it, and
                // the next poll connects again.
                Err(ClientError::Closed | ClientError::Io(_)) => {}
                committed => committed?,
            }
        }
        if self.positions.is_empty() {
            // Nothing to read: wait for an assignment instead of spinning.
            let _ =
                tokio::time::timeout(Duration::from_millis(self.config.max_wait_ms), self.assignments.changed()).await;
            return Ok(Vec::new());
        }
        let fetch =
            ConsumerConfig { max_bytes: self.config.max_bytes, min_bytes: 1, max_wait_ms: self.config.max_wait_ms };
        let fetched = crate::consumer::fetch_positions(&self.cluster, &self.positions, &fetch).await;
        let mut out = Vec::new();
        let mut disconnected = false;
        let mut damaged = None;
        for (topic, partition, fetched) in fetched {
            let key = (topic.clone(), partition);
            match fetched {
                Ok(fetched) => {
                    // The partition may have been revoked meanwhile; positions
                    // of owned ones only.
                    if let (Some(position), Some(last)) = (self.positions.get_mut(&key), fetched.records.last()) {
                        *position = last.offset + 1;
                        out.extend(fetched.records.into_iter().map(|record| ConsumedRecord {
                            topic: topic.clone(),
                            partition,
                            record,
                        }));
                    }
                }
                Err(err) if err.code() == Some(1) => {
                    // OFFSET_OUT_OF_RANGE: reset as for a new partition.
                    let reset = self.reset_position(&topic, partition).await?;
                    self.positions.insert(key, reset);
                }
                // The group's connection is gone: every later request would
                // fail at once too, so connect again now rather than spin
                // until the heartbeat task reports it.
                Err(ClientError::Closed | ClientError::Io(_)) if self.client.is_closed() => disconnected = true,
                // Another broker led it: fetch from the leader as looked up
                // again, next poll.
                Err(err) if crate::consumer::fetch_leader_moved(&err) => self.cluster.forget(&topic, partition),
                Err(err) if err.damaged().is_some() => {
                    damaged.get_or_insert(err);
                }
                Err(err) if err.retriable() => {}
                Err(err) => return Err(err),
            }
        }
        if disconnected {
            self.reconnect().await?;
        }
        if self.unconfirmed() && !out.is_empty() {
            // The consumer stalled while it fetched: the records may be
            // another member's now. They are read again from here.
            for record in out.iter().rev() {
                if let Some(position) = self.positions.get_mut(&(record.topic.clone(), record.partition)) {
                    *position = record.record.offset;
                }
            }
            return Ok(Vec::new());
        }
        match damaged {
            Some(err) if out.is_empty() => Err(err),
            damaged => {
                self.damaged = damaged;
                Ok(out)
            }
        }
    }

    /// Whether the membership has gone unconfirmed for a session timeout.
    fn unconfirmed(&self) -> bool {
        self.confirmed.borrow().elapsed() >= Duration::from_millis(self.config.session_timeout_ms)
    }

    async fn reset_position(&self, topic: &str, partition: u32) -> Result<i64, ClientError> {
        match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => {
                self.cluster.leader(topic, partition).await?.list_offsets(topic, partition, EARLIEST_TIMESTAMP).await
            }
            AutoOffsetReset::Latest => {
                self.cluster.leader(topic, partition).await?.list_offsets(topic, partition, LATEST_TIMESTAMP).await
            }
            AutoOffsetReset::None => Err(ClientError::Protocol(format!(
                "no valid committed offset for {topic}/{partition} and auto_offset_reset is none"
            ))),
        }
    }

    /// Membership lost: drops everything without committing, joins again.
    /// The error of a fenced consumer, if it is one.
    fn check_fenced(&self) -> Result<(), ClientError> {
        match &self.fenced {
            Some(message) => Err(ClientError::broker(ErrorCode::FENCED_INSTANCE_ID.code(), Some(message.clone()))),
            None => Ok(()),
        }
    }

    async fn lose_membership(&mut self, code: i16, message: String) -> Result<(), ClientError> {
        let lost: Vec<TopicPartitionKey> = self.positions.keys().cloned().collect();
        self.positions.clear();
        if !lost.is_empty() {
            self.events.push_back(GroupEvent::Lost { partitions: lost });
        }
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

    /// The connection closed: the membership is gone with it. Drops every
    /// partition without committing, connects again and joins again. If the
    /// broker cannot be reached yet, returns the error; the next poll retries.
    async fn reconnect(&mut self) -> Result<(), ClientError> {
        let lost: Vec<TopicPartitionKey> = self.positions.keys().cloned().collect();
        self.positions.clear();
        if !lost.is_empty() {
            self.events.push_back(GroupEvent::Lost { partitions: lost });
        }
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
        tracing::info!(group = %self.config.group_id, "connection closed; connecting again");
        // A restarting broker is back within moments; give it a session timeout.
        let deadline = Instant::now() + Duration::from_millis(self.config.session_timeout_ms);
        self.client = loop {
            match self.client.reconnect().await {
                Ok(client) => break client,
                Err(err) if Instant::now() < deadline => {
                    tracing::debug!(%err, "broker not reachable yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => return Err(err),
            }
        };
        self.cluster = Cluster::of(self.client.clone());
        self.committed.clear();
        self.rejoin().await
    }

    async fn apply_assignment(&mut self) -> Result<(), ClientError> {
        let latest = self.assignments.borrow_and_update().clone();
        let assignment = match latest {
            None => return Ok(()),
            Some(Heard::Assignment(assignment)) => assignment,
            Some(Heard::Lost(code, message)) => return self.lose_membership(code, message).await,
            Some(Heard::Disconnected) => {
                // Keep the state so that a failed attempt is retried.
                self.assignments.mark_changed();
                return self.reconnect().await;
            }
        };
        if assignment.generation_id == self.generation_id && assignment.member_id == self.member_id {
            return Ok(());
        }
        let target = from_wire(&assignment.assignment);
        let owned: BTreeSet<TopicPartitionKey> = self.positions.keys().cloned().collect();
        let revoked: Vec<TopicPartitionKey> = owned.difference(&target).cloned().collect();
        let added: Vec<TopicPartitionKey> = target.difference(&owned).cloned().collect();
        if !revoked.is_empty() {
            if self.config.auto_commit {
                let offsets: Vec<(TopicPartitionKey, i64)> =
                    revoked.iter().filter_map(|k| self.positions.get(k).map(|o| (k.clone(), *o))).collect();
                // A failed commit here only means the next owner re-reads.
                if let Err(err) = self.commit_positions(offsets, assignment.generation_id).await {
                    tracing::warn!(%err, "commit of revoked partitions failed");
                }
            }
            for key in &revoked {
                self.positions.remove(key);
            }
            self.events.push_back(GroupEvent::Revoked { generation_id: assignment.generation_id, partitions: revoked });
        }
        if !added.is_empty() {
            let request = FetchOffsetsRequest {
                group_id: self.config.group_id.clone(),
                partitions: Some(to_wire(&added.iter().cloned().collect())),
                member_id: None,
                generation_id: None,
            };
            let committed: FetchOffsetsResponse = self.client.request(group_op::FETCH_OFFSETS, &request).await?;
            let committed: BTreeMap<TopicPartitionKey, i64> =
                committed.offsets.into_iter().map(|c| ((c.topic, c.partition), c.offset)).collect();
            for key in &added {
                let position = match committed.get(key) {
                    Some(offset) if *offset >= 0 => *offset,
                    _ => self.reset_position(&key.0, key.1).await?,
                };
                self.positions.insert(key.clone(), position);
                if let Some(offset) = committed.get(key) {
                    self.committed.insert(key.clone(), *offset);
                }
            }
            self.events.push_back(GroupEvent::Assigned { generation_id: assignment.generation_id, partitions: added });
        }
        self.generation_id = assignment.generation_id;
        let owned: BTreeSet<TopicPartitionKey> = self.positions.keys().cloned().collect();
        // Tell the heartbeat task: it reports the release at once.
        let _ = self.owned.send((self.generation_id, to_wire(&owned)));
        Ok(())
    }

    /// Commits the position of every owned partition.
    ///
    /// # Errors
    ///
    /// The commit was refused (for example `PARTITION_NOT_OWNED` after the
    /// partition moved away, `ILLEGAL_GENERATION` for a stale generation).
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.check_fenced()?;
        let offsets: Vec<(TopicPartitionKey, i64)> = self
            .positions
            .iter()
            .filter(|(k, o)| self.committed.get(*k) != Some(*o))
            .map(|(k, o)| (k.clone(), *o))
            .collect();
        let generation_id = self.generation_id;
        self.commit_positions(offsets, generation_id).await?;
        self.last_commit = Instant::now();
        Ok(())
    }

    async fn commit_positions(
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
        let response: CommitOffsetsResponse = self.client.request(group_op::COMMIT_OFFSETS, &request).await?;
        if let Some(failed) = response.partitions.iter().find(|p| p.error_code != 0) {
            return Err(ClientError::broker(failed.error_code, failed.error_message.clone()));
        }
        for (key, offset) in offsets {
            self.committed.insert(key, offset);
        }
        Ok(())
    }

    /// Commits (with auto-commit) and leaves the group: its partitions move to
    /// the other members at once.
    ///
    /// # Errors
    ///
    /// The leave was refused.
    pub async fn close(mut self) -> Result<(), ClientError> {
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
        if self.config.auto_commit {
            if let Err(err) = self.commit().await {
                tracing::warn!(%err, "final commit failed");
            }
        }
        let request = LeaveGroupRequest { group_id: self.config.group_id.clone(), member_id: self.member_id.clone() };
        let _: Empty = self.client.request(group_op::LEAVE_GROUP, &request).await?;
        Ok(())
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
    }
}
