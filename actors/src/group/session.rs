//! The `Session` actor: one per group a connection takes part in, speaking
//! for that connection's member of the group to the group's coordinator.
//!
//! Contract:
//! - Created by the connection at its first `join_group` for the group, on
//!   the connection's arbiter, under an actix `Supervisor`, before the member
//!   exists: the join itself goes through it ([`SessionJoin`]), and so do the
//!   member's heartbeats ([`SessionHeartbeat`]), its leave ([`SessionLeave`])
//!   and the loss of its connection ([`ConnectionClosed`]).
//! - Holds the client's heartbeat while the coordinator says nothing changed
//!   (up to the heartbeat's `max_wait_ms`, at most half the session timeout),
//!   and answers it as soon as the coordinator pushes [`AssignmentChanged`] or
//!   [`MemberRemoved`]; then tells the coordinator `HeartbeatAnswered`, which
//!   restarts the member's session timer. Liveness is the coordinator's.
//! - One member at a time: a second join without the member's id is refused
//!   with `MEMBER_ID_REQUIRED`, so no ghost member outlives its client's
//!   knowledge of it.
//! - Handlers run through [`guard`]: a panic stops the session and its
//!   supervisor restarts it empty, after telling the coordinator the member's
//!   connection is gone; the client's next request gets `UNKNOWN_MEMBER_ID`
//!   and it joins again. Nothing durable lives here.
//! - Ends when the connection drops its address (the coordinator only keeps a
//!   weak one).

use std::collections::BTreeSet;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::assignor::TopicPartition;
use super::coordinator::{Assigned, GroupCoordinator, Heartbeat, HeartbeatAnswered, Join, Leave, MemberDisconnected};
use crate::error::{BrokerError, ErrorCode};
use crate::guard::guard;

/// One member's session. See the module documentation for its contract.
pub struct Session {
    group_id: String,
    coordinator: Addr<GroupCoordinator>,
    /// The member this session speaks for, once joined.
    member_id: Option<String>,
    /// The client's held heartbeat, if any.
    held: Option<Held>,
    /// The newest assignment the coordinator pushed for the member.
    latest: Option<Assigned>,
    /// The member removed last and why: its next request is told so (once),
    /// even if no heartbeat was held to carry the news.
    removed: Option<(String, BrokerError)>,
}

/// A heartbeat held until the assignment changes or its wait ends.
struct Held {
    reply: oneshot::Sender<Result<Assigned, BrokerError>>,
    /// The answer when the wait ends with nothing changed.
    unchanged: Assigned,
    timer: SpawnHandle,
}

type Answer = Result<Assigned, BrokerError>;

fn session_ended() -> BrokerError {
    BrokerError::new(ErrorCode::UNKNOWN_MEMBER_ID, "the member's session ended; join again")
}

impl Session {
    pub fn new(group_id: String, coordinator: Addr<GroupCoordinator>) -> Self {
        Session { group_id, coordinator, member_id: None, held: None, latest: None, removed: None }
    }

    /// Checks that `member_id` is the member this session speaks for.
    fn check_member(&mut self, member_id: &str) -> Result<(), BrokerError> {
        if self.member_id.as_deref() == Some(member_id) {
            return Ok(());
        }
        if self.removed.as_ref().is_some_and(|(id, _)| id == member_id) {
            if let Some((_, error)) = self.removed.take() {
                return Err(error);
            }
        }
        Err(BrokerError::new(
            ErrorCode::UNKNOWN_MEMBER_ID,
            format!("`{member_id}` is not a member of group `{}` on this connection; join again", self.group_id),
        ))
    }

    /// Answers the held heartbeat, if any. An assignment answered restarts
    /// the member's session timer at the coordinator.
    fn answer_held(&mut self, answer: Answer, ctx: &mut Context<Self>) {
        let Some(held) = self.held.take() else { return };
        ctx.cancel_future(held.timer);
        let answered = answer.is_ok();
        if held.reply.send(answer).is_ok() && answered {
            if let Some(member_id) = &self.member_id {
                self.coordinator.do_send(HeartbeatAnswered { member_id: member_id.clone() });
            }
        }
    }

    /// Holds a heartbeat the coordinator found up to date, unless a newer
    /// assignment was pushed meanwhile (the push and the heartbeat's answer
    /// travel separately).
    fn hold(&mut self, unchanged: Assigned, max_wait_ms: u64, ctx: &mut Context<Self>) -> oneshot::Receiver<Answer> {
        let (reply, wait) = oneshot::channel();
        // A heartbeat that came in while another was held supersedes it.
        self.answer_held(Ok(unchanged.clone()), ctx);
        let newer = self.latest.as_ref().filter(|l| l.generation_id > unchanged.generation_id).cloned();
        let max_wait = Duration::from_millis(max_wait_ms.min(unchanged.session_timeout_ms / 2));
        let timer = ctx.run_later(max_wait, |act, ctx| {
            if let Some(held) = &act.held {
                let unchanged = held.unchanged.clone();
                act.answer_held(Ok(unchanged), ctx);
            }
        });
        self.held = Some(Held { reply, unchanged, timer });
        if let Some(newer) = newer {
            self.answer_held(Ok(newer), ctx);
        }
        wait
    }

    /// The member is gone (removed, left, or this session restarted).
    fn forget_member(&mut self, error: BrokerError, ctx: &mut Context<Self>) {
        if self.held.is_some() {
            self.answer_held(Err(error), ctx);
        } else if let Some(member_id) = self.member_id.clone() {
            self.removed = Some((member_id, error));
        }
        self.member_id = None;
        self.latest = None;
    }
}

impl Actor for Session {
    type Context = Context<Self>;
}

impl Supervised for Session {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        if let Some(member_id) = self.member_id.clone() {
            tracing::warn!(group = %self.group_id, member_id, "session restarting; the member must join again");
            self.coordinator.do_send(MemberDisconnected { member_id });
        }
        self.forget_member(session_ended(), ctx);
    }
}

/// The connection's member joins (or joins again) through this session.
#[derive(Message)]
#[rtype(result = "Result<Assigned, BrokerError>")]
pub struct SessionJoin {
    /// The group's coordinator now (a deleted and re-created group has a new one).
    pub coordinator: Addr<GroupCoordinator>,
    /// `member_id` set: join again as that member.
    pub join: Join,
}

impl Handler<SessionJoin> for Session {
    type Result = ResponseActFuture<Self, Answer>;

    fn handle(&mut self, msg: SessionJoin, ctx: &mut Context<Self>) -> Self::Result {
        let checked = guard(self, ctx, "session", |act, ctx| {
            if let Some(current) = &act.member_id {
                if msg.join.member_id.as_deref() != Some(current) {
                    return Err(BrokerError::new(
                        ErrorCode::MEMBER_ID_REQUIRED,
                        format!(
                            "this connection is already member `{current}` of group `{}`: join again with that \
                             member_id, or leave first",
                            act.group_id
                        ),
                    ));
                }
            } else {
                act.coordinator = msg.coordinator.clone();
            }
            let mut join = msg.join;
            join.session = ctx.address().downgrade();
            Ok(act.coordinator.send(join))
        });
        let sent = match checked {
            Some(Ok(sent)) => sent,
            Some(Err(err)) => return Box::pin(fut::ready(Err(err))),
            None => return Box::pin(fut::ready(Err(session_ended()))),
        };
        Box::pin(sent.into_actor(self).map(|joined, act, ctx| {
            let joined = joined.unwrap_or_else(|e| Err(e.into()));
            if let Ok(assigned) = &joined {
                act.member_id = Some(assigned.member_id.clone());
                act.latest = Some(assigned.clone());
                // A heartbeat held from before the rejoin learns the answer.
                act.answer_held(Ok(assigned.clone()), ctx);
            }
            joined
        }))
    }
}

/// A heartbeat of this session's member.
#[derive(Message)]
#[rtype(result = "Result<Assigned, BrokerError>")]
pub struct SessionHeartbeat {
    pub member_id: String,
    pub generation_id: i64,
    pub owned: BTreeSet<TopicPartition>,
    pub topics: Option<BTreeSet<String>>,
    pub max_wait_ms: u64,
}

impl Handler<SessionHeartbeat> for Session {
    type Result = ResponseActFuture<Self, Answer>;

    fn handle(&mut self, msg: SessionHeartbeat, ctx: &mut Context<Self>) -> Self::Result {
        let checked = guard(self, ctx, "session", |act, _| {
            act.check_member(&msg.member_id)?;
            let max_wait_ms = msg.max_wait_ms;
            let sent = act.coordinator.send(Heartbeat {
                member_id: msg.member_id,
                generation_id: msg.generation_id,
                owned: msg.owned,
                topics: msg.topics,
                max_wait_ms,
            });
            Ok((sent, max_wait_ms))
        });
        let (sent, max_wait_ms) = match checked {
            Some(Ok(sent)) => sent,
            Some(Err(err)) => return Box::pin(fut::ready(Err(err))),
            None => return Box::pin(fut::ready(Err(session_ended()))),
        };
        Box::pin(sent.into_actor(self).then(move |beat, act, ctx| -> ResponseActFuture<Self, Answer> {
            let beat = beat.unwrap_or_else(|e| Err(e.into()));
            let wait = match beat {
                Ok(beat) if beat.hold && act.member_id.is_some() => act.hold(beat.assigned, max_wait_ms, ctx),
                Ok(beat) => return Box::pin(fut::ready(Ok(beat.assigned))),
                Err(err) => {
                    if matches!(err.code, ErrorCode::UNKNOWN_MEMBER_ID | ErrorCode::FENCED_INSTANCE_ID) {
                        act.forget_member(err.clone(), ctx);
                    }
                    return Box::pin(fut::ready(Err(err)));
                }
            };
            Box::pin(async move { wait.await.unwrap_or_else(|_| Err(session_ended())) }.into_actor(act))
        }))
    }
}

/// This session's member leaves its group.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct SessionLeave {
    pub member_id: String,
}

impl Handler<SessionLeave> for Session {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: SessionLeave, ctx: &mut Context<Self>) -> Self::Result {
        let sent = guard(self, ctx, "session", |act, ctx| {
            act.check_member(&msg.member_id)?;
            let sent = act.coordinator.send(Leave { member_id: msg.member_id });
            act.forget_member(BrokerError::new(ErrorCode::UNKNOWN_MEMBER_ID, "the member left the group"), ctx);
            Ok(sent)
        })
        .unwrap_or_else(|| Err(session_ended()));
        Box::pin(async move { sent?.await.unwrap_or_else(|e| Err(e.into())) })
    }
}

/// The connection closed: the member is gone (a static one gets its session
/// timeout to come back on another connection).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectionClosed;

impl Handler<ConnectionClosed> for Session {
    type Result = ();

    fn handle(&mut self, _: ConnectionClosed, ctx: &mut Context<Self>) {
        guard(self, ctx, "session", |act, ctx| {
            if let Some(member_id) = act.member_id.clone() {
                act.coordinator.do_send(MemberDisconnected { member_id });
            }
            act.forget_member(session_ended(), ctx);
        });
    }
}

/// Pushed by the coordinator: the member's assignment changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AssignmentChanged(pub Assigned);

impl Handler<AssignmentChanged> for Session {
    type Result = ();

    fn handle(&mut self, msg: AssignmentChanged, ctx: &mut Context<Self>) {
        guard(self, ctx, "session", |act, ctx| {
            if act.member_id.as_deref() != Some(msg.0.member_id.as_str()) {
                return;
            }
            if act.latest.as_ref().is_some_and(|l| l.generation_id > msg.0.generation_id) {
                return;
            }
            act.latest = Some(msg.0.clone());
            act.answer_held(Ok(msg.0), ctx);
        });
    }
}

/// Pushed by the coordinator: the member was removed (timed out, fenced,
/// joined again elsewhere, or the coordinator restarted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberRemoved {
    pub member_id: String,
    /// What the member's held or next heartbeat is answered with.
    pub error: BrokerError,
}

impl Handler<MemberRemoved> for Session {
    type Result = ();

    fn handle(&mut self, msg: MemberRemoved, ctx: &mut Context<Self>) {
        guard(self, ctx, "session", |act, ctx| {
            if act.member_id.as_deref() == Some(msg.member_id.as_str()) {
                act.forget_member(msg.error, ctx);
            }
        });
    }
}

/// Makes the next handler panic (tests of supervision).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

#[cfg(test)]
impl Handler<InjectPanic> for Session {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        guard(self, ctx, "session", |_, _| panic!("injected failure"));
    }
}
