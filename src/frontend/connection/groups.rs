//! Consumer-group requests of a [`Connection`]: converted to messages for the
//! group directory, the group's coordinator, or the member's session.
//!
//! A connection has one `Session` per group it joins, created at its first
//! `join_group` for the group and supervised; the join, the member's
//! heartbeats and its leave go through it, so a member id belongs to the
//! connection that joined it. On another connection a member joins again:
//! with its `member_id` (it keeps its id and partitions while it is still a
//! member) or, for a static member, its `group_instance_id`.

use std::collections::BTreeSet;

use actix::prelude::*;

use super::budget::Admission;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::group::assignor::TopicPartition;
use herald_actors::group::coordinator::{self, Assigned, GroupCoordinator, ResetTo};
use herald_actors::group::session::{Session, SessionHeartbeat, SessionJoin, SessionLeave};
use herald_actors::group::{self, LookupGroup};
use std::sync::atomic::Ordering;

use super::{flatten, Connection};
use crate::protocol::Request;
use crate::protocol::*;
use crate::security::acl::{Operation, Resource};

/// A set of partitions as the wire lists them: by topic, partitions ascending.
fn to_wire(set: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    TopicPartitions::group(set.iter().map(|tp| (tp.topic.as_str(), tp.partition)))
}

fn from_wire(list: Vec<TopicPartitions>) -> BTreeSet<TopicPartition> {
    TopicPartitions::pairs(&list).map(|(topic, partition)| TopicPartition::new(topic, partition)).collect()
}

fn assignment_response(a: Assigned) -> AssignmentResponse {
    AssignmentResponse {
        member_id: a.member_id,
        generation_id: a.generation_id,
        assignment: to_wire(&a.assignment),
        heartbeat_interval_ms: a.heartbeat_interval_ms,
        session_timeout_ms: a.session_timeout_ms,
    }
}

fn parse_reset(to: &str, value: Option<i64>) -> Result<ResetTo, BrokerError> {
    let need = |what: &str| {
        value.ok_or_else(|| {
            BrokerError::new(ErrorCode::INVALID_REQUEST, format!("reset to `{to}` needs a `value` ({what})"))
        })
    };
    Ok(match to {
        "earliest" => ResetTo::Earliest,
        "latest" => ResetTo::Latest,
        "offset" => ResetTo::Offset(need("the offset")?),
        "timestamp" => match need("ms since the epoch")? {
            ms if ms < 0 => {
                return Err(BrokerError::new(
                    ErrorCode::INVALID_TIMESTAMP,
                    format!("reset to timestamp {ms}: a timestamp is ms since the epoch, not negative"),
                ))
            }
            ms => ResetTo::Timestamp(ms),
        },
        "shift" => ResetTo::ShiftBy(need("the number of records to move by")?),
        other => {
            return Err(BrokerError::new(
                ErrorCode::INVALID_REQUEST,
                format!("`to` must be earliest, latest, offset, timestamp or shift, got `{other}`"),
            ))
        }
    })
}

impl Connection {
    /// Runs `then` with the group's coordinator: from the cache, or after a
    /// lookup during which this connection handles nothing else (commits of
    /// one member keep their order).
    fn with_group<F>(&mut self, group_id: String, create: bool, ctx: &mut Context<Self>, then: F)
    where
        F: FnOnce(&mut Self, Result<Addr<GroupCoordinator>, BrokerError>, &mut Context<Self>) + 'static,
    {
        let cached = self.coordinators.get(&group_id).filter(|(_, closed)| !closed.load(Ordering::Acquire));
        if let Some(addr) = cached.and_then(|(addr, _)| addr.upgrade()) {
            return then(self, Ok(addr), ctx);
        }
        let groups = self.groups.clone();
        let lookup = async move {
            let addr = groups.send(LookupGroup { group_id: group_id.clone(), create }).await??;
            let closed = addr.send(coordinator::ClosedFlag).await?;
            Ok::<_, BrokerError>((group_id, addr, closed))
        };
        ctx.wait(lookup.into_actor(self).map(move |found, act, ctx| {
            let found = found.map(|(group_id, addr, closed)| {
                act.coordinators.insert(group_id, (addr.downgrade(), closed));
                addr
            });
            then(act, found, ctx)
        }));
    }

    /// The session of this connection's member of `group_id`.
    fn session(&self, group_id: &str, member_id: &str) -> Result<Addr<Session>, BrokerError> {
        self.sessions.get(group_id).cloned().ok_or_else(|| {
            BrokerError::new(
                ErrorCode::UNKNOWN_MEMBER_ID,
                format!("`{member_id}` did not join group `{group_id}` on this connection; join again"),
            )
        })
    }

    pub(super) fn dispatch_group(
        &mut self,
        correlation_id: u32,
        request: Request,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        match request {
            Request::JoinGroup(r) => self.join(correlation_id, r, permit, ctx),
            Request::Heartbeat(r) => {
                let sent = self.session(&r.group_id, &r.member_id).map(|s| {
                    s.send(SessionHeartbeat {
                        member_id: r.member_id,
                        generation_id: r.generation_id,
                        owned: from_wire(r.owned),
                        topics: r.topics.map(|t| t.into_iter().collect()),
                        max_wait_ms: r.max_wait_ms,
                    })
                });
                self.respond(
                    correlation_id,
                    permit,
                    async move {
                        // A session gone while this was on its way means the
                        // member is gone.
                        let answer = sent?.await.unwrap_or_else(|_| {
                            Err(BrokerError::new(
                                ErrorCode::UNKNOWN_MEMBER_ID,
                                "the member's session ended; join again",
                            ))
                        });
                        answer.map(|assigned| Some(assignment_response(assigned)))
                    },
                    ctx,
                );
            }
            Request::LeaveGroup(r) => {
                let sent =
                    self.session(&r.group_id, &r.member_id).map(|s| s.send(SessionLeave { member_id: r.member_id }));
                self.respond(correlation_id, permit, async move { flatten(sent?.await).map(|()| Some(Empty {})) }, ctx);
            }
            Request::CommitOffsets(r) => self.commit(correlation_id, r, permit, ctx),
            Request::FetchOffsets(r) => {
                let partitions = r.partitions.map(|p| from_wire(p).into_iter().collect());
                let member = r.member_id.zip(r.generation_id);
                let access = self.access();
                self.with_group(r.group_id, false, ctx, move |act, coordinator, ctx| {
                    let sent = coordinator
                        .map(|c| c.send(coordinator::FetchOffsets { partitions: partitions.clone(), member }));
                    act.respond(
                        correlation_id,
                        permit,
                        async move {
                            let found = match sent {
                                Ok(sent) => flatten(sent.await)?,
                                // A group that never committed has no offsets.
                                Err(err) if err.code == ErrorCode::GROUP_ID_NOT_FOUND => {
                                    partitions.unwrap_or_default().into_iter().map(|tp| (tp, None)).collect()
                                }
                                Err(err) => return Err(err),
                            };
                            // Every committed offset of the group: only those of
                            // topics the principal may describe.
                            let offsets = found
                                .into_iter()
                                .filter(|(tp, _)| access.may(Operation::Describe, &Resource::topic(tp.topic.as_str())))
                                .map(|(tp, committed)| CommittedOffset {
                                    topic: tp.topic,
                                    partition: tp.partition,
                                    offset: committed.as_ref().map_or(-1, |c| c.offset),
                                    metadata: committed.and_then(|c| c.metadata),
                                })
                                .collect();
                            Ok(Some(FetchOffsetsResponse { offsets }))
                        },
                        ctx,
                    );
                });
            }
            Request::ListGroups => {
                let sent = self.groups.send(group::ListGroups);
                let access = self.access();
                self.respond(
                    correlation_id,
                    permit,
                    async move {
                        let mut groups = sent.await.map_err(BrokerError::from)?;
                        groups.retain(|g| access.may(Operation::Describe, &Resource::group(g.group_id.as_str())));
                        Ok(Some(list_groups_response(groups)))
                    },
                    ctx,
                );
            }
            Request::DescribeGroup(r) => self.with_group(r.group_id, false, ctx, move |act, coordinator, ctx| {
                let sent = coordinator.map(|c| c.send(coordinator::DescribeGroup));
                act.respond(correlation_id, permit, async move { Ok(Some(describe(flatten(sent?.await)?))) }, ctx);
            }),
            Request::ResetOffsets(r) => {
                let to = match parse_reset(&r.to, r.value) {
                    Ok(to) => to,
                    Err(err) => return self.send_error(correlation_id, &err),
                };
                let message =
                    coordinator::ResetOffsets { topic: r.topic, partitions: r.partitions, to, execute: r.execute };
                let execute = r.execute;
                // A dry run reports; only an executed reset may create the group.
                self.with_group(r.group_id, execute, ctx, move |act, coordinator, ctx| {
                    let sent = coordinator.map(|c| c.send(message));
                    act.respond(
                        correlation_id,
                        permit,
                        async move {
                            let plan = flatten(sent?.await)?;
                            let offsets = plan
                                .into_iter()
                                .map(|(tp, previous_offset, new_offset)| OffsetReset {
                                    topic: tp.topic,
                                    partition: tp.partition,
                                    previous_offset,
                                    new_offset,
                                })
                                .collect();
                            Ok(Some(ResetOffsetsResponse { executed: execute, offsets }))
                        },
                        ctx,
                    );
                });
            }
            Request::DeleteGroup(r) => {
                self.coordinators.remove(&r.group_id);
                let sent = self.groups.send(group::DeleteGroup { group_id: r.group_id });
                self.respond(correlation_id, permit, async move { flatten(sent.await).map(|()| Some(Empty {})) }, ctx);
            }
            other => {
                let err = BrokerError::new(
                    ErrorCode::UNKNOWN_OPERATION,
                    format!("`{}` is not a group operation", other.op()),
                );
                self.send_error(correlation_id, &err);
            }
        }
    }

    fn join(&mut self, correlation_id: u32, r: JoinGroupRequest, permit: Admission, ctx: &mut Context<Self>) {
        let group_id = r.group_id;
        self.with_group(group_id.clone(), true, ctx, move |act, coordinator, ctx| {
            let sent = coordinator.map(|coordinator| {
                let session = act
                    .sessions
                    .entry(group_id.clone())
                    .or_insert_with(|| {
                        let (group_id, coordinator) = (group_id, coordinator.clone());
                        Supervisor::start(move |_| Session::new(group_id, coordinator))
                    })
                    .clone();
                let join = coordinator::Join {
                    session: session.downgrade(),
                    member_id: r.member_id,
                    group_instance_id: r.group_instance_id,
                    client_id: act.client_id.clone().unwrap_or_default(),
                    host: act.peer.ip().to_string(),
                    topics: r.topics.into_iter().collect(),
                    session_timeout_ms: r.session_timeout_ms,
                    rebalance_timeout_ms: r.rebalance_timeout_ms,
                    assignor: r.assignor,
                };
                session.send(SessionJoin { coordinator, join })
            });
            act.respond(
                correlation_id,
                permit,
                async move { flatten(sent?.await).map(|assigned| Some(assignment_response(assigned))) },
                ctx,
            );
        });
    }

    fn commit(&mut self, correlation_id: u32, r: CommitOffsetsRequest, permit: Admission, ctx: &mut Context<Self>) {
        let mut refused = Vec::new();
        let mut offsets = Vec::new();
        for c in r.offsets {
            match u32::try_from(c.partition) {
                Ok(partition) => offsets.push((TopicPartition { topic: c.topic, partition }, c.offset, c.metadata)),
                Err(_) => refused.push(PartitionResult {
                    error_code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
                    error_message: Some(format!("topic `{}` has no partition {}", c.topic, c.partition)),
                    topic: c.topic,
                    partition: 0,
                }),
            }
        }
        let message = coordinator::CommitOffsets { member_id: r.member_id, generation_id: r.generation_id, offsets };
        self.with_group(r.group_id, true, ctx, move |act, coordinator, ctx| {
            let sent = coordinator.map(|c| c.send(message));
            act.respond(
                correlation_id,
                permit,
                async move {
                    let results = flatten(sent?.await)?;
                    let mut partitions: Vec<PartitionResult> = results
                        .into_iter()
                        .map(|(tp, result)| {
                            let error = result.err();
                            PartitionResult {
                                topic: tp.topic,
                                partition: tp.partition,
                                error_code: error.as_ref().map_or(0, |e| e.code.code()),
                                error_message: error.map(|e| e.message),
                            }
                        })
                        .collect();
                    partitions.extend(refused);
                    Ok(Some(CommitOffsetsResponse { partitions }))
                },
                ctx,
            );
        });
    }
}

/// A group's description, for the wire (and the HTTP admin API).
pub(crate) fn describe(d: coordinator::GroupDescription) -> DescribeGroupResponse {
    DescribeGroupResponse {
        group_id: d.group_id,
        state: d.state.into(),
        generation_id: d.generation_id,
        assignor: d.assignor.into(),
        members: d
            .members
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.info.member_id,
                group_instance_id: m.info.group_instance_id,
                client_id: m.info.client_id,
                host: m.info.host,
                generation_id: m.epoch,
                topics: m.info.topics.into_iter().collect(),
                assignment: to_wire(&m.assigned),
            })
            .collect(),
        offsets: d
            .partitions
            .into_iter()
            .map(|p| PartitionOffsets {
                topic: p.partition.topic,
                partition: p.partition.partition,
                current_offset: p.current_offset,
                log_end_offset: p.log_end_offset,
                lag: p.lag,
                member_id: p.member_id,
            })
            .collect(),
        damaged: d
            .damaged
            .into_iter()
            .map(|r| DamagedGroupRecords { first_offset: r.first_offset, next_offset: r.next_offset, reason: r.reason })
            .collect(),
    }
}

/// The wire's `list_groups` answer for the groups' list.
pub(crate) fn list_groups_response(groups: Vec<group::GroupSummary>) -> ListGroupsResponse {
    let groups = groups
        .into_iter()
        .map(|g| GroupListing {
            group_id: g.group_id,
            state: g.state.into(),
            members: g.members as u32,
            assignor: g.assignor.into(),
        })
        .collect();
    ListGroupsResponse { groups }
}
