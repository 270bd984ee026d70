//! Group events for custom actors: the group's coordinator pushes a
//! [`GroupChanged`] each time the group's generation, state, members or
//! assignments change (every distinct membership, in order, never two equal
//! ones in a row), and the membership as it is when the watch starts.
//!
//! A relay actor of the watch's own stands between the coordinator and the
//! recipient, so that dropping the handle ends the deliveries at once. The
//! watch waits for a group that does not exist yet, and registers again
//! with a new coordinator when the group is deleted and made again, or its
//! coordinator restarted; a membership the watch could not see during that
//! moment is not replayed, but the next one (the coordinator's current
//! membership, sent on registration) is.

use std::time::Duration;

use actix::prelude::*;
use herald_actors::error::ErrorCode;
use herald_actors::group::coordinator::WatchGroup;
pub use herald_actors::group::coordinator::{GroupChanged, GroupMember};

use super::{ExtensionContext, SubscriptionHandle};

/// How often the watch looks for a group that does not exist yet, and
/// whether its coordinator is still the same.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// Passes the coordinator's events on to the watcher until stopped.
struct Relay {
    to: Recipient<GroupChanged>,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<GroupChanged> for Relay {
    type Result = ();

    fn handle(&mut self, changed: GroupChanged, ctx: &mut Context<Self>) {
        if self.to.connected() {
            self.to.do_send(changed);
        } else {
            ctx.stop();
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopRelay;

impl Handler<StopRelay> for Relay {
    type Result = ();

    fn handle(&mut self, _: StopRelay, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl ExtensionContext {
    /// Delivers `group`'s membership to `recipient` now (once the group
    /// exists) and each time it changes (see the module documentation).
    /// Ends when the handle is dropped or the recipient's actor stopped.
    pub fn watch_group(&self, group: &str, recipient: Recipient<GroupChanged>) -> SubscriptionHandle {
        let (handle, mut stopped) = SubscriptionHandle::new();
        let (context, group) = (self.clone(), group.to_owned());
        let relay = Relay { to: recipient.clone() }.start();
        let relayed = relay.clone().recipient();
        let watch = async move {
            while recipient.connected() {
                match context.coordinator(&group, false).await {
                    Ok(coordinator) => {
                        if coordinator.send(WatchGroup(relayed.clone())).await.is_ok() {
                            while coordinator.connected() && recipient.connected() {
                                tokio::time::sleep(LOOK_AGAIN).await;
                            }
                            continue;
                        }
                    }
                    Err(err) if err.code == ErrorCode::GROUP_ID_NOT_FOUND => {}
                    Err(err) => tracing::debug!(%group, %err, "group watch: no coordinator yet; trying again"),
                }
                tokio::time::sleep(LOOK_AGAIN).await;
            }
        };
        actix_rt::spawn(async move {
            tokio::select! {
                _ = stopped.changed() => {}
                () = watch => {}
            }
            relay.do_send(StopRelay);
        });
        handle
    }
}
