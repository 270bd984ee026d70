//! The coordinator's side of the exchange with member sessions: join,
//! heartbeat, leave and connection loss. Split from the coordinator's state
//! and timers; the same actor.
//!
//! Every message here comes from a member's [`Session`]; the coordinator
//! answers it and pushes later changes to the session (see the coordinator's
//! module documentation).

use std::collections::BTreeSet;

use actix::prelude::*;
use actix::WeakAddr;

use super::{member_error, restarting, Assigned, GroupCoordinator, Liveness};
use crate::error::{BrokerError, ErrorCode};
use crate::group::assignor::{self, TopicPartition};
use crate::group::membership::MemberInfo;
use crate::group::session::{MemberRemoved, Session};
use crate::group::store::StoredRecord;
use crate::guard::guard;
use crate::now_ms;

/// A member joins through its session: a new member (a new member id is
/// chosen here), a static member coming back (its `group_instance_id`), or a
/// member joining again under its `member_id`.
#[derive(Message)]
#[rtype(result = "Result<Assigned, BrokerError>")]
pub struct Join {
    /// The session that speaks for the member from now on.
    pub session: WeakAddr<Session>,
    /// Join again as this existing member.
    pub member_id: Option<String>,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: Option<u64>,
    pub rebalance_timeout_ms: Option<u64>,
    pub assignor: Option<String>,
}

type Reply<T> = ResponseActFuture<GroupCoordinator, Result<T, BrokerError>>;

fn ready<T: 'static>(result: Result<T, BrokerError>) -> Reply<T> {
    Box::pin(fut::ready(result))
}

impl Handler<Join> for GroupCoordinator {
    type Result = Reply<Assigned>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "group coordinator", |act, _| act.join(msg)).unwrap_or_else(|| ready(Err(restarting())))
    }
}

impl GroupCoordinator {
    fn join(&mut self, msg: Join) -> Reply<Assigned> {
        if self.store.is_none() {
            return ready(Err(self.unavailable()));
        }
        let session_timeout_ms = msg.session_timeout_ms.unwrap_or(self.settings.default_session_timeout_ms);
        let (min, max) = (self.settings.min_session_timeout_ms, self.settings.max_session_timeout_ms);
        if !(min..=max).contains(&session_timeout_ms) {
            return ready(Err(BrokerError::new(
                ErrorCode::INVALID_SESSION_TIMEOUT,
                format!("session_timeout_ms {session_timeout_ms} is outside [{min}, {max}]"),
            )));
        }
        let assignor = match msg.assignor.as_deref().map(|name| (name, assignor::by_name(name))) {
            None => None,
            Some((_, Some(assignor))) => Some(assignor),
            Some((name, None)) => {
                return ready(Err(BrokerError::new(
                    ErrorCode::UNSUPPORTED_ASSIGNOR,
                    format!("assignor `{name}` is not one of {}", assignor::names().join(", ")),
                )))
            }
        };
        if msg.topics.is_empty() {
            return ready(Err(BrokerError::new(
                ErrorCode::INVALID_REQUEST,
                "a member must subscribe to at least one topic",
            )));
        }
        if let Some(member_id) = &msg.member_id {
            if let Err(err) = self.membership.assignment(member_id) {
                return ready(Err(member_error(err, member_id)));
            }
        }
        let rejoin = msg.member_id.is_some();
        let member_id = match msg.member_id {
            Some(member_id) => member_id,
            None => self.new_member_id(&msg.client_id),
        };
        let info = MemberInfo {
            member_id: member_id.clone(),
            group_instance_id: msg.group_instance_id,
            client_id: msg.client_id,
            host: msg.host,
            topics: msg.topics.clone(),
            session_timeout_ms,
            rebalance_timeout_ms: msg.rebalance_timeout_ms.unwrap_or(session_timeout_ms) as i64,
        };
        // Learn the partition counts of new topics before assigning.
        let unknown: BTreeSet<String> =
            msg.topics.iter().filter(|t| !self.partitions.contains_key(*t)).cloned().collect();
        let counts = self.partition_counts(unknown);
        let change_assignor = assignor.filter(|a| a.name() != self.membership.assignor().name());
        let session = msg.session;
        Box::pin(counts.into_actor(self).then(move |counts, act, ctx| {
            act.partitions.extend(counts);
            let mut changed = act.membership.set_partitions(act.partitions.clone());
            match act.admit(info, rejoin, session, ctx) {
                Ok(admitted) => changed.extend(admitted),
                Err(err) => return ready(Err(err)),
            }
            tracing::info!(group = %act.group_id, member_id, rejoin, epoch = act.membership.group_epoch(), "member joined");
            act.notify(changed, ctx);
            match change_assignor {
                Some(assignor) if act.membership.len() == 1 => {
                    let record = StoredRecord::Assignor { name: assignor.name().to_string() };
                    Box::pin(
                        act.persist(vec![record], move |act, ctx| {
                            let changed = act.membership.set_assignor(assignor);
                            act.notify(changed, ctx);
                            act.assigned(&member_id)
                        })
                        .map(|r, _, _| r.and_then(|a| a)),
                    )
                }
                _ => ready(act.assigned(&member_id)),
            }
        }))
    }

    /// Enters the member into the membership and binds it to its session.
    /// A static member's previous member id, and a rejoining member's
    /// previous session, are told they are gone. Returns the members whose
    /// assignment changed.
    fn admit(
        &mut self,
        info: MemberInfo,
        rejoin: bool,
        session: WeakAddr<Session>,
        ctx: &mut Context<Self>,
    ) -> Result<Vec<String>, BrokerError> {
        let member_id = info.member_id.clone();
        let changed = if rejoin {
            let changed = self.membership.rejoin(info, now_ms()).map_err(|e| member_error(e, &member_id))?;
            let previous = self.live.get(&member_id).and_then(|l| l.session.upgrade());
            if let Some(previous) = previous.filter(|p| session.upgrade().as_ref() != Some(p)) {
                let error = BrokerError::new(
                    ErrorCode::UNKNOWN_MEMBER_ID,
                    format!("`{member_id}` joined again on another connection"),
                );
                previous.do_send(MemberRemoved { member_id: member_id.clone(), error });
            }
            changed
        } else {
            let replaced = info.group_instance_id.as_deref().and_then(|i| self.membership.member_with_instance(i));
            if let Some(replaced) = replaced.map(str::to_owned) {
                if let Some(live) = self.live.remove(&replaced) {
                    for handle in live.expiry.into_iter().chain(live.rebalance.map(|(_, h)| h)) {
                        ctx.cancel_future(handle);
                    }
                    if let Some(previous) = live.session.upgrade() {
                        let error = BrokerError::new(
                            ErrorCode::FENCED_INSTANCE_ID,
                            format!("`{replaced}` was replaced by `{member_id}` with the same group_instance_id"),
                        );
                        previous.do_send(MemberRemoved { member_id: replaced, error });
                    }
                }
            }
            self.membership.join(info)
        };
        let live = Liveness { session, expiry: None, rebalance: None, disconnected: false };
        if let Some(old) = self.live.insert(member_id.clone(), live) {
            for handle in old.expiry.into_iter().chain(old.rebalance.map(|(_, h)| h)) {
                ctx.cancel_future(handle);
            }
        }
        // The member must heartbeat within its session timeout of this answer.
        self.arm_expiry(&member_id, ctx);
        Ok(changed)
    }
}

/// A member's heartbeat, from its session: what it owns now.
#[derive(Message)]
#[rtype(result = "Result<Beat, BrokerError>")]
pub struct Heartbeat {
    pub member_id: String,
    pub generation_id: i64,
    pub owned: BTreeSet<TopicPartition>,
    pub topics: Option<BTreeSet<String>>,
    pub max_wait_ms: u64,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// Where the member stands now.
    pub assigned: Assigned,
    /// The member is where it should be and asked to wait: the session holds
    /// the heartbeat (up to half the session timeout) and answers it when an
    /// [`AssignmentChanged`](crate::group::session::AssignmentChanged) comes,
    /// then reports [`HeartbeatAnswered`]. Until then the member is alive.
    pub hold: bool,
}

impl Handler<Heartbeat> for GroupCoordinator {
    type Result = Result<Beat, BrokerError>;

    fn handle(&mut self, msg: Heartbeat, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "group coordinator", |act, ctx| act.heartbeat(msg, ctx)).unwrap_or_else(|| Err(restarting()))
    }
}

impl GroupCoordinator {
    fn heartbeat(&mut self, msg: Heartbeat, ctx: &mut Context<Self>) -> Result<Beat, BrokerError> {
        let new_topics = msg.topics.as_ref().is_some_and(|t| t.iter().any(|t| !self.partitions.contains_key(t)));
        let changed = self
            .membership
            .heartbeat(&msg.member_id, msg.generation_id, msg.owned.clone(), msg.topics, now_ms())
            .map_err(|err| member_error(err, &msg.member_id))?;
        if new_topics {
            self.refresh_partitions(ctx);
        }
        self.notify(changed, ctx);
        self.watch_revocation(&msg.member_id, ctx);
        let assigned = self.assigned(&msg.member_id)?;
        let hold =
            msg.max_wait_ms > 0 && assigned.generation_id == msg.generation_id && assigned.assignment == msg.owned;
        if hold {
            // Alive while held: the session reports when it answers.
            self.disarm_expiry(&msg.member_id, ctx);
        } else {
            self.arm_expiry(&msg.member_id, ctx);
        }
        Ok(Beat { assigned, hold })
    }
}

/// A session answered its member's held heartbeat: the member's session
/// timer runs from now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HeartbeatAnswered {
    pub member_id: String,
}

impl Handler<HeartbeatAnswered> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: HeartbeatAnswered, ctx: &mut Context<Self>) {
        guard(self, ctx, "group coordinator", |act, ctx| {
            // A closed connection's timer runs from the close, whatever its
            // held heartbeat did after.
            if act.live.get(&msg.member_id).is_some_and(|l| !l.disconnected) {
                act.arm_expiry(&msg.member_id, ctx);
            }
        });
    }
}

/// A member leaves the group (its partitions move at once).
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Leave {
    pub member_id: String,
}

impl Handler<Leave> for GroupCoordinator {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) -> Self::Result {
        guard(self, ctx, "group coordinator", |act, ctx| {
            act.membership.assignment(&msg.member_id).map_err(|e| member_error(e, &msg.member_id))?;
            act.remove_member(&msg.member_id, "left the group", None, ctx);
            Ok(())
        })
        .unwrap_or_else(|| Err(restarting()))
    }
}

/// A member's connection closed (or its session stopped). A dynamic member
/// is removed at once; a static member keeps its partitions for its session
/// timeout, counted from now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberDisconnected {
    pub member_id: String,
}

impl Handler<MemberDisconnected> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, msg: MemberDisconnected, ctx: &mut Context<Self>) {
        guard(self, ctx, "group coordinator", |act, ctx| {
            let is_static = act.membership.info(&msg.member_id).is_some_and(|i| i.group_instance_id.is_some());
            if !is_static {
                act.remove_member(&msg.member_id, "connection closed", None, ctx);
                return;
            }
            if let Some(live) = act.live.get_mut(&msg.member_id) {
                live.disconnected = true;
            }
            act.arm_expiry(&msg.member_id, ctx);
        });
    }
}
