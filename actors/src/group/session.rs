//! The `Session` actor: one per group member, between the member's connection
//! and its group's coordinator.
//!
//! Contract:
//! - Created by the connection that joined the member, on that connection's
//!   arbiter. Forwards the member's [`SessionHeartbeat`] and [`SessionLeave`]
//!   to the [`GroupCoordinator`] and watches the member's liveness: while a
//!   heartbeat is held by the coordinator the member is alive; otherwise it
//!   must send one within `session_timeout_ms` of the last answer.
//! - Tells the coordinator [`MemberGone`] when the connection closes
//!   ([`ConnectionClosed`]: at once, so a dead member's partitions move without
//!   waiting for a timeout) or when the session times out. A static member's
//!   session keeps its timer running after the connection closes, so the
//!   member can come back within its session timeout and find its partitions.
//! - Stops when the member leaves, is removed or fenced, or its session ends.
//!   Not supervised: the coordinator holds the truth; a lost session only
//!   means the member rejoins.

use std::collections::BTreeSet;
use std::time::Duration;

use actix::prelude::*;

use super::assignor::TopicPartition;
use super::coordinator::{Assigned, GroupCoordinator, Heartbeat, Leave, MemberGone};
use crate::error::{BrokerError, ErrorCode};

/// One member's session. See the module documentation for its contract.
pub struct Session {
    member_id: String,
    coordinator: Addr<GroupCoordinator>,
    session_timeout: Duration,
    /// Whether the member uses a `group_instance_id`.
    is_static: bool,
    /// The pending expiry; `None` while a heartbeat is held.
    expiry: Option<SpawnHandle>,
    connected: bool,
}

impl Session {
    pub fn new(
        member_id: String,
        coordinator: Addr<GroupCoordinator>,
        session_timeout_ms: u64,
        is_static: bool,
    ) -> Self {
        Session {
            member_id,
            coordinator,
            session_timeout: Duration::from_millis(session_timeout_ms),
            is_static,
            expiry: None,
            connected: true,
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        self.disarm(ctx);
        self.expiry = Some(ctx.run_later(self.session_timeout, |act, ctx| {
            tracing::info!(member_id = %act.member_id, "session timed out");
            act.coordinator.do_send(MemberGone { member_id: act.member_id.clone(), disconnected: false });
            ctx.stop();
        }));
    }

    fn disarm(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.expiry.take() {
            ctx.cancel_future(handle);
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.arm(ctx);
    }
}

/// A heartbeat of this session's member.
#[derive(Message)]
#[rtype(result = "Result<Assigned, BrokerError>")]
pub struct SessionHeartbeat {
    pub generation_id: i64,
    pub owned: BTreeSet<TopicPartition>,
    pub topics: Option<BTreeSet<String>>,
    pub max_wait_ms: u64,
}

impl Handler<SessionHeartbeat> for Session {
    type Result = ResponseActFuture<Self, Result<Assigned, BrokerError>>;

    fn handle(&mut self, msg: SessionHeartbeat, ctx: &mut Context<Self>) -> Self::Result {
        // Held by the coordinator: alive until it answers.
        self.disarm(ctx);
        let sent = self.coordinator.send(Heartbeat {
            member_id: self.member_id.clone(),
            generation_id: msg.generation_id,
            owned: msg.owned,
            topics: msg.topics,
            max_wait_ms: msg.max_wait_ms,
        });
        Box::pin(sent.into_actor(self).map(|answer, act, ctx| {
            let answer = answer.unwrap_or_else(|e| Err(e.into()));
            match &answer {
                Err(err) if matches!(err.code, ErrorCode::UNKNOWN_MEMBER_ID | ErrorCode::FENCED_INSTANCE_ID) => {
                    ctx.stop()
                }
                _ => act.arm(ctx),
            }
            answer
        }))
    }
}

/// This session's member leaves its group.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct SessionLeave;

impl Handler<SessionLeave> for Session {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, _: SessionLeave, ctx: &mut Context<Self>) -> Self::Result {
        // The answer does not depend on this actor, which ends now.
        let sent = self.coordinator.send(Leave { member_id: self.member_id.clone() });
        ctx.stop();
        Box::pin(async move { sent.await.unwrap_or_else(|e| Err(e.into())) })
    }
}

/// The member's connection closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectionClosed;

impl Handler<ConnectionClosed> for Session {
    type Result = ();

    fn handle(&mut self, _: ConnectionClosed, ctx: &mut Context<Self>) {
        if !self.connected {
            return;
        }
        self.connected = false;
        self.coordinator.do_send(MemberGone { member_id: self.member_id.clone(), disconnected: true });
        if self.is_static {
            // Its partitions wait for it until the session times out.
            self.arm(ctx);
        } else {
            ctx.stop();
        }
    }
}
