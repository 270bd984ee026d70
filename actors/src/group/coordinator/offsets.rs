//! The coordinator's committed-offset operations: commit, fetch, describe
//! (with lag) and reset. Split from the coordinator's membership handlers;
//! the same actor.
//!
//! Each asks the broker for the current ids of the topics involved first: a
//! commit stores the id with the offset, and fetch, describe and reset show
//! only offsets that belong to the topic's current id (an offset committed
//! before the topic was deleted and created again is not shown).

use std::collections::{BTreeMap, BTreeSet};

use actix::prelude::*;
use futures::future::join_all;

use super::{member_error, restarting, GroupCoordinator};
use crate::broker::{Broker, LookupTopic, TopicDeleted, TopicIds};
use crate::error::{BrokerError, ErrorCode};
use crate::group::assignor::TopicPartition;
use crate::group::membership::MemberView;
use crate::group::store::{Committed, DamagedRecords, StoredRecord};
use crate::guard::guard;
use crate::now_ms;
use crate::partition::ListOffsets;
use crate::topic::{ForPartition, PartitionCount};

/// Commit offsets: by a member (checked against its generation and
/// assignment) or, for an empty group, by anyone (`member_id` absent).
#[derive(Message)]
#[rtype(result = "Result<Vec<(TopicPartition, Result<(), BrokerError>)>, BrokerError>")]
pub struct CommitOffsets {
    pub member_id: Option<String>,
    pub generation_id: i64,
    pub offsets: Vec<(TopicPartition, i64, Option<String>)>,
}

/// Longest metadata string stored with a committed offset, in bytes.
pub const MAX_METADATA_BYTES: usize = 4096;

impl Handler<CommitOffsets> for GroupCoordinator {
    type Result = ResponseActFuture<Self, Result<Vec<(TopicPartition, Result<(), BrokerError>)>, BrokerError>>;

    fn handle(&mut self, msg: CommitOffsets, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "group coordinator", |act, _| act.commit_offsets(msg))
            .unwrap_or_else(|| Box::pin(fut::ready(Err(restarting()))))
    }
}

/// The current ids of `topics` (those that exist).
async fn topic_ids(broker: Addr<Broker>, topics: BTreeSet<String>) -> Result<BTreeMap<String, String>, BrokerError> {
    Ok(broker.send(TopicIds { names: topics.into_iter().collect() }).await?)
}

impl GroupCoordinator {
    fn commit_offsets(&mut self, msg: CommitOffsets) -> <Self as Handler<CommitOffsets>>::Result {
        let topics = msg.offsets.iter().map(|(tp, _, _)| tp.topic.clone()).collect();
        // The member and its generation are checked after the ids are known,
        // against the state the commit is then applied to.
        Box::pin(topic_ids(self.broker.clone(), topics).into_actor(self).then(move |ids, act, _| match ids {
            Ok(ids) => act.commit_with_ids(msg, ids),
            Err(err) => Box::pin(fut::ready(Err(err))),
        }))
    }

    fn commit_with_ids(
        &mut self,
        msg: CommitOffsets,
        ids: BTreeMap<String, String>,
    ) -> <Self as Handler<CommitOffsets>>::Result {
        if msg.member_id.is_none() && !self.membership.is_empty() {
            return Box::pin(fut::ready(Err(BrokerError::new(
                ErrorCode::UNKNOWN_MEMBER_ID,
                "the group has members: commits must name a member_id and generation_id",
            ))));
        }
        let now = now_ms();
        let mut results = Vec::new();
        let mut records = Vec::new();
        for (tp, offset, metadata) in msg.offsets {
            let checked = match &msg.member_id {
                Some(member_id) => self
                    .membership
                    .check_commit(member_id, msg.generation_id, &tp)
                    .map_err(|e| member_error(e, member_id)),
                None => Ok(()),
            }
            .and_then(|()| {
                if offset < 0 {
                    return Err(BrokerError::new(ErrorCode::INVALID_REQUEST, format!("offset {offset} is negative")));
                }
                if metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA_BYTES) {
                    return Err(BrokerError::new(
                        ErrorCode::OFFSET_METADATA_TOO_LARGE,
                        format!("metadata is over {MAX_METADATA_BYTES} bytes"),
                    ));
                }
                Ok(())
            });
            if checked.is_ok() {
                records.push(StoredRecord::Offset {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset,
                    metadata,
                    commit_timestamp: now,
                    topic_id: ids.get(&tp.topic).cloned(),
                });
            }
            results.push((tp, checked));
        }
        self.persist(records, move |_, _| results)
    }
}

/// The committed offsets of some partitions, or of all.
#[derive(Message)]
#[rtype(result = "Result<Vec<(TopicPartition, Option<Committed>)>, BrokerError>")]
pub struct FetchOffsets {
    pub partitions: Option<Vec<TopicPartition>>,
    /// When given, the member and generation are checked first.
    pub member: Option<(String, i64)>,
}

impl Handler<FetchOffsets> for GroupCoordinator {
    type Result = ResponseActFuture<Self, Result<Vec<(TopicPartition, Option<Committed>)>, BrokerError>>;

    fn handle(&mut self, msg: FetchOffsets, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "group coordinator", |act, _| act.fetch_offsets(msg))
            .unwrap_or_else(|| Box::pin(fut::ready(Err(restarting()))))
    }
}

impl GroupCoordinator {
    fn fetch_offsets(&mut self, msg: FetchOffsets) -> <Self as Handler<FetchOffsets>>::Result {
        let checked = (|| {
            if self.store.is_none() {
                return Err(self.unavailable());
            }
            if let Some((member_id, generation_id)) = &msg.member {
                self.membership.check_generation(member_id, *generation_id).map_err(|e| member_error(e, member_id))?;
            }
            Ok(())
        })();
        if let Err(err) = checked {
            return Box::pin(fut::ready(Err(err)));
        }
        let topics = match &msg.partitions {
            Some(partitions) => partitions.iter().map(|tp| tp.topic.clone()).collect(),
            None => self.state.offsets.keys().map(|tp| tp.topic.clone()).collect(),
        };
        Box::pin(topic_ids(self.broker.clone(), topics).into_actor(self).map(move |ids, act, _| {
            let ids = ids?;
            let current = |tp: &TopicPartition| act.state.current(tp, &ids).cloned();
            Ok(match msg.partitions {
                Some(partitions) => partitions
                    .into_iter()
                    .map(|tp| {
                        let committed = current(&tp);
                        (tp, committed)
                    })
                    .collect(),
                None => act.state.offsets.keys().filter_map(|tp| Some((tp.clone(), Some(current(tp)?)))).collect(),
            })
        }))
    }
}

impl Handler<TopicDeleted> for GroupCoordinator {
    type Result = ();

    /// Drops the group's offsets for the deleted topic, durably.
    fn handle(&mut self, msg: TopicDeleted, ctx: &mut Context<Self>) {
        let record = StoredRecord::TopicDeleted { topic: msg.name, topic_id: msg.topic_id };
        let mut after = self.state.clone();
        after.apply(&record);
        if after.offsets.len() == self.state.offsets.len() || self.store.is_none() {
            return;
        }
        let group = self.group_id.clone();
        ctx.spawn(self.persist(vec![record], |_, _| ()).map(move |done, _, _| {
            if let Err(err) = done {
                tracing::warn!(%err, %group, "cannot store the drop of a deleted topic's offsets; they stay hidden");
            }
        }));
    }
}

/// The group's state, members and, per partition, committed offset and lag.
#[derive(Message)]
#[rtype(result = "Result<GroupDescription, BrokerError>")]
pub struct DescribeGroup;

/// A group as describe reports it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub generation_id: i64,
    pub assignor: &'static str,
    pub members: Vec<MemberView>,
    pub partitions: Vec<PartitionLag>,
    /// Records of the group's log that could not be read when it was loaded.
    pub damaged: Vec<DamagedRecords>,
}

/// One partition's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: TopicPartition,
    pub current_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub lag: Option<i64>,
    pub member_id: Option<String>,
}

/// Asks a partition for an offset (list-offsets semantics).
async fn list_offset(broker: Addr<Broker>, tp: TopicPartition, timestamp: i64) -> Result<i64, BrokerError> {
    let topic = broker.send(LookupTopic { name: tp.topic.clone() }).await??;
    topic.send(ForPartition { partition: tp.partition, message: ListOffsets { timestamp } }).await?
}

impl Handler<DescribeGroup> for GroupCoordinator {
    type Result = ResponseFuture<Result<GroupDescription, BrokerError>>;

    fn handle(&mut self, _: DescribeGroup, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "group coordinator", |act, _| act.describe_group())
            .unwrap_or_else(|| Box::pin(async { Err(restarting()) }))
    }
}

impl GroupCoordinator {
    fn describe_group(&mut self) -> <Self as Handler<DescribeGroup>>::Result {
        let members = self.membership.members();
        let mut partitions: BTreeSet<TopicPartition> = self.state.offsets.keys().cloned().collect();
        let subscribed = self.membership.subscribed_topics();
        for (topic, count) in &self.partitions {
            if subscribed.contains(topic) {
                partitions.extend((0..*count).map(|p| TopicPartition { topic: topic.clone(), partition: p }));
            }
        }
        let owners: BTreeMap<TopicPartition, String> =
            self.membership.owners().into_iter().map(|(tp, m)| (tp.clone(), m.to_string())).collect();
        let topics: BTreeSet<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
        let ids = topic_ids(self.broker.clone(), topics);
        let group_state = self.state.clone();
        let subscribed: BTreeSet<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(topic, _)| subscribed.contains(*topic))
            .flat_map(|(topic, count)| (0..*count).map(|p| TopicPartition { topic: topic.clone(), partition: p }))
            .collect();
        let (group_id, state) = (self.group_id.to_string(), self.membership.state());
        let (generation_id, assignor) = (self.membership.group_epoch(), self.membership.assignor().name());
        let broker = self.broker.clone();
        let damaged = self.store.as_ref().map(|store| store.damaged().to_vec()).unwrap_or_default();
        Box::pin(async move {
            // A partition shows when it is subscribed to or has an offset of
            // the topic's current id.
            let ids = ids.await?;
            let rows: Vec<(TopicPartition, Option<i64>, Option<String>)> = partitions
                .into_iter()
                .filter_map(|tp| {
                    let current = group_state.current(&tp, &ids).map(|c| c.offset);
                    let owner = owners.get(&tp).cloned();
                    (current.is_some() || subscribed.contains(&tp)).then_some((tp, current, owner))
                })
                .collect();
            let ends = join_all(rows.iter().map(|(tp, _, _)| list_offset(broker.clone(), tp.clone(), -1))).await;
            let partitions = rows
                .into_iter()
                .zip(ends)
                .map(|((partition, current_offset, member_id), end)| {
                    let log_end_offset = end.ok();
                    let lag = match (current_offset, log_end_offset) {
                        (Some(c), Some(e)) => Some((e - c).max(0)),
                        _ => None,
                    };
                    PartitionLag { partition, current_offset, log_end_offset, lag, member_id }
                })
                .collect();
            Ok(GroupDescription { group_id, state, generation_id, assignor, members, partitions, damaged })
        })
    }
}

/// Where to move a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
    ShiftBy(i64),
}

/// Move committed offsets (only while the group has no members); a dry run
/// unless `execute`.
#[derive(Message)]
#[rtype(result = "Result<Vec<(TopicPartition, Option<i64>, i64)>, BrokerError>")]
pub struct ResetOffsets {
    pub topic: String,
    pub partitions: Option<Vec<u32>>,
    pub to: ResetTo,
    pub execute: bool,
}

impl Handler<ResetOffsets> for GroupCoordinator {
    type Result = ResponseActFuture<Self, Result<Vec<(TopicPartition, Option<i64>, i64)>, BrokerError>>;

    fn handle(&mut self, msg: ResetOffsets, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "group coordinator", |act, _| act.reset_offsets(msg))
            .unwrap_or_else(|| Box::pin(fut::ready(Err(restarting()))))
    }
}

impl GroupCoordinator {
    fn reset_offsets(&mut self, msg: ResetOffsets) -> <Self as Handler<ResetOffsets>>::Result {
        if !self.membership.is_empty() {
            return Box::pin(fut::ready(Err(BrokerError::new(
                ErrorCode::NON_EMPTY_GROUP,
                format!("group `{}` has {} active members; stop them first", self.group_id, self.membership.len()),
            ))));
        }
        let broker = self.broker.clone();
        let offsets = self.offsets_snapshot();
        let topic = msg.topic.clone();
        let plan = async move {
            let addr = broker.send(LookupTopic { name: topic.clone() }).await??;
            let ids = topic_ids(broker.clone(), BTreeSet::from([topic.clone()])).await?;
            let topic_id = ids.get(&topic).cloned();
            let count = addr.send(PartitionCount).await?;
            let partitions = msg.partitions.unwrap_or_else(|| (0..count).collect());
            let mut plan = Vec::new();
            for p in partitions {
                if p >= count {
                    return Err(BrokerError::new(
                        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("topic `{topic}` has no partition {p}"),
                    ));
                }
                let tp = TopicPartition { topic: topic.clone(), partition: p };
                let current = offsets.get(&tp).filter(|c| c.belongs_to(topic_id.as_deref())).map(|c| c.offset);
                let start = list_offset(broker.clone(), tp.clone(), -2).await?;
                let end = list_offset(broker.clone(), tp.clone(), -1).await?;
                let target = match msg.to {
                    ResetTo::Earliest => start,
                    ResetTo::Latest => end,
                    ResetTo::Offset(o) => o,
                    ResetTo::Timestamp(ts) => match list_offset(broker.clone(), tp.clone(), ts).await? {
                        -1 => end,
                        o => o,
                    },
                    ResetTo::ShiftBy(n) => current.unwrap_or(start).saturating_add(n),
                };
                plan.push((tp, current, target.clamp(start, end)));
            }
            Ok((topic_id, plan))
        };
        let execute = msg.execute;
        type Plan = (Option<String>, Vec<(TopicPartition, Option<i64>, i64)>);
        Box::pin(plan.into_actor(self).then(move |plan: Result<Plan, BrokerError>, act, _| match plan {
            Ok((topic_id, plan)) if execute => {
                let now = now_ms();
                let records = plan
                    .iter()
                    .map(|(tp, _, offset)| StoredRecord::Offset {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: *offset,
                        metadata: None,
                        commit_timestamp: now,
                        topic_id: topic_id.clone(),
                    })
                    .collect();
                let group_id = act.group_id.clone();
                act.persist(records, move |_, _| {
                    for (tp, from, to) in &plan {
                        tracing::info!(
                            group = %group_id,
                            topic = %tp.topic,
                            partition = tp.partition,
                            from = from.map_or_else(|| "none".to_string(), |o| o.to_string()),
                            to,
                            "reset committed offset"
                        );
                    }
                    plan
                })
            }
            other => Box::pin(fut::ready(other.map(|(_, plan)| plan))),
        }))
    }
}
