//! Closing a coordinator: deleting its group ([`CloseGroup`]), expiring
//! an idle one ([`ExpireIfIdle`]), handing it to another broker
//! ([`Resign`]) and the broker's shutdown ([`ShutdownGroup`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use super::{restarting, GroupCoordinator, Store};
use crate::error::{BrokerError, ErrorCode};
use crate::group::session::MemberRemoved;
use crate::group::store::StoredRecord;
use crate::guard::guard;
use crate::now_ms;

/// Close the group for good (it is being deleted); refused while it has members.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct CloseGroup;

impl Handler<CloseGroup> for GroupCoordinator {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, _: CloseGroup, ctx: &mut Context<Self>) -> Self::Result {
        let checked = guard(self, ctx, "group coordinator", |act, _| {
            if !act.membership.is_empty() {
                return Err(BrokerError::new(
                    ErrorCode::NON_EMPTY_GROUP,
                    format!("group `{}` has {} active members", act.group_id, act.membership.len()),
                ));
            }
            Ok(())
        })
        .unwrap_or_else(|| Err(restarting()));
        if let Err(err) = checked {
            return Box::pin(fut::ready(Err(err)));
        }
        self.close_for_good()
    }
}

impl GroupCoordinator {
    /// Closes the group for good (deleted, or expired). A replicated group
    /// first stores its deletion (tombstones of every key it has); a
    /// group's own log is set aside by the directory.
    fn close_for_good(&mut self) -> ResponseActFuture<Self, Result<(), BrokerError>> {
        // Stopped once the answer is ready: a context that stops drops the
        // futures it has not run yet, and the answer with them.
        let close = |act: &mut Self, ctx: &mut Context<Self>| {
            act.closed = true;
            act.closed_flag.store(true, Ordering::Release);
            act.store = None;
            ctx.stop();
        };
        if !matches!(self.store, Some(Store::Replicated { .. })) {
            return Box::pin(fut::ready(()).map(move |(), act, ctx| {
                close(act, ctx);
                Ok(())
            }));
        }
        Box::pin(self.persist(vec![StoredRecord::Deleted], close))
    }
}

/// This broker no longer coordinates the group (in a cluster, another
/// broker leads its partition of `__consumer_offsets` now): its members
/// are told `NOT_COORDINATOR` and the coordinator stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resign;

impl Handler<Resign> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, _: Resign, ctx: &mut Context<Self>) {
        for (member_id, live) in self.live.drain() {
            if let Some(session) = live.session.upgrade() {
                let error = BrokerError::new(
                    ErrorCode::NOT_COORDINATOR,
                    "this broker no longer coordinates the group: find the coordinator and join it",
                );
                session.do_send(MemberRemoved { member_id, error });
            }
        }
        self.closed = true;
        self.resigned = true;
        self.closed_flag.store(true, Ordering::Release);
        self.store = None;
        ctx.stop();
    }
}

/// Close the group for good if it has had no member and no commit for
/// `retention_ms` (see [`super::GroupSettings::empty_group_retention_ms`]);
/// true if it closed.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct ExpireIfIdle {
    pub retention_ms: i64,
}

impl Handler<ExpireIfIdle> for GroupCoordinator {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: ExpireIfIdle, ctx: &mut Context<Self>) -> Self::Result {
        let expired = guard(self, ctx, "group coordinator", |act, _| {
            let now = now_ms();
            if !act.membership.is_empty() {
                act.last_active_ms = now;
                return false;
            }
            let last_commit = act.state.offsets.values().map(|c| c.commit_timestamp).max().unwrap_or(i64::MIN);
            let idle_since = act.last_active_ms.max(last_commit);
            msg.retention_ms >= 0 && now.saturating_sub(idle_since) >= msg.retention_ms && act.store.is_some()
        })
        .unwrap_or(false);
        if !expired {
            return Box::pin(fut::ready(false));
        }
        Box::pin(self.close_for_good().map(|closed, _, _| closed.is_ok()))
    }
}

/// Fsync the group's log (broker shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct ShutdownGroup;

impl Handler<ShutdownGroup> for GroupCoordinator {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, _: ShutdownGroup, _: &mut Context<Self>) -> Self::Result {
        for (member_id, live) in self.live.drain() {
            if let Some(session) = live.session.upgrade() {
                let error = BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is shutting down");
                session.do_send(MemberRemoved { member_id, error });
            }
        }
        self.closed = true;
        match self.store.take() {
            Some(Store::Local(mut store)) => {
                store.flush_all().map_err(|e| BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, e.to_string()))
            }
            // The partition flushes its own log.
            Some(Store::Replicated { .. }) | None => Ok(()),
        }
    }
}

/// The flag the coordinator sets when it closes for good: whoever keeps its
/// address checks it before using it, and looks the group up again once set.
#[derive(Message)]
#[rtype(result = "Arc<AtomicBool>")]
pub struct ClosedFlag;

impl Handler<ClosedFlag> for GroupCoordinator {
    type Result = MessageResult<ClosedFlag>;

    fn handle(&mut self, _: ClosedFlag, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.closed_flag.clone())
    }
}
