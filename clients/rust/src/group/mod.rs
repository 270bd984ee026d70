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
//! Every request about the group (join, heartbeats, commits, committed
//! offsets, leave) goes to the group's coordinator, which the [`Cluster`] the
//! consumer was built with finds ([`Cluster::coordinator`]); a broker alone
//! coordinates every group, so there they go on its one connection.
//!
//! When the connection to the coordinator closes (the broker restarted,
//! say), or the coordinator answers that it no longer is one or is not ready
//! (`NOT_COORDINATOR` 16, `COORDINATOR_LOAD_IN_PROGRESS` 14,
//! `COORDINATOR_NOT_AVAILABLE` 15) to a join, heartbeat, commit or offset
//! fetch, the membership is gone with it (a coordinator keeps no members of
//! another): the consumer reports its partitions [`GroupEvent::Lost`],
//! commits nothing more for them, looks the coordinator up again (with a
//! backoff of 100 ms doubling to 1 s, for up to a session timeout), joins it
//! without a member id (with its `group_instance_id`, if configured) and
//! resumes each partition it is given from its committed offset. An explicit
//! [`GroupConsumer::commit`] answered so fails with that answer (the offsets
//! were not stored); the next poll joins again.

mod commit;
mod config;
mod heartbeat;
mod membership;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use config::{AutoOffsetReset, GroupConsumerConfig, GroupEvent};
use heartbeat::Heard;
use membership::membership_gone;

use crate::coordinator::COORDINATOR_CODES;
use crate::leaders::answered_one_of;
use crate::{Client, ClientError, Cluster, ConsumedRecord, ConsumerConfig};
use herald_wire::protocol::*;

type TopicPartitionKey = (String, u32);

/// A member of a consumer group. See the module documentation.
pub struct GroupConsumer {
    /// The connection to the group's coordinator, where the group's own
    /// requests go.
    client: Client,
    /// Where the fetches go (each partition's leader), and where the
    /// coordinator is looked up.
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
    /// Why the membership is known gone with its coordinator, outside the
    /// heartbeat task (a commit or offset fetch answered 14, 15 or 16, or
    /// its connection closed): nothing is committed until the next poll has
    /// joined again.
    moved: Option<ClientError>,
}

fn to_wire(set: &BTreeSet<TopicPartitionKey>) -> Vec<TopicPartitions> {
    TopicPartitions::group(set.iter().map(|(t, p)| (t.as_str(), *p)))
}

fn from_wire(list: &[TopicPartitions]) -> BTreeSet<TopicPartitionKey> {
    TopicPartitions::pairs(list).map(|(t, p)| (t.to_string(), p)).collect()
}

impl GroupConsumer {
    /// Joins the group, starting from `client`'s connection (the group's
    /// coordinator is found from its broker, see [`Cluster::of`]).
    ///
    /// # Errors
    ///
    /// As [`GroupConsumer::join_with_cluster`].
    pub async fn join(client: Client, config: GroupConsumerConfig) -> Result<GroupConsumer, ClientError> {
        GroupConsumer::join_with_cluster(Cluster::of(client), config).await
    }

    /// Joins the group at its coordinator, which `cluster` finds, and reads
    /// the partitions given from their leaders.
    ///
    /// # Errors
    ///
    /// The broker refused the join (bad session timeout, unknown assignor,
    /// ...); no coordinator could be found or reached within a session
    /// timeout.
    pub async fn join_with_cluster(
        cluster: Cluster,
        config: GroupConsumerConfig,
    ) -> Result<GroupConsumer, ClientError> {
        let (owned, _) = watch::channel((0, Vec::new()));
        let (_, assignments) = watch::channel(None);
        let (_, confirmed) = watch::channel(Instant::now());
        let mut consumer = GroupConsumer {
            client: cluster.home(),
            cluster,
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
            moved: None,
        };
        consumer.rejoin().await?;
        Ok(consumer)
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
        if self.moved.is_some() {
            self.reconnect().await?;
            return Ok(Vec::new());
        }
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
        if self.moved.is_some() {
            self.reconnect().await?;
            return Ok(Vec::new());
        }
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
                // The coordinator moved or restarted: the membership is gone
                // with it (`commit` noted it).
                Err(err) if answered_one_of(&err, &COORDINATOR_CODES) => {
                    self.reconnect().await?;
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
            // Not once the membership is known gone: the partitions may be
            // another member's already.
            if self.config.auto_commit && self.moved.is_none() {
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
            let committed: FetchOffsetsResponse = match self.client.request(group_op::FETCH_OFFSETS, &request).await {
                Ok(committed) => committed,
                // The poll joins again at once.
                Err(err) if membership_gone(&err) => {
                    self.note_moved(&err);
                    return Ok(());
                }
                Err(err) => return Err(err),
            };
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
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeats.take() {
            task.abort();
        }
    }
}
