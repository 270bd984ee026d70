//! Group events for custom actors: a watcher task describes the group (the
//! coordinator's `DescribeGroup`, as `describe_group` on the wire) every
//! interval and delivers a [`GroupChanged`] whenever its generation, state,
//! members or assignments differ from the last one delivered. It describes
//! again only after the recipient answered, so changes within one interval
//! (or while the recipient is busy) arrive coalesced: the recipient always
//! gets the latest state, not necessarily every generation in between.

use std::collections::BTreeSet;
use std::time::Duration;

use actix::prelude::*;
use herald_actors::error::ErrorCode;
use herald_actors::group::assignor::TopicPartition;
use herald_actors::group::coordinator::{DescribeGroup, GroupDescription};

use super::{ExtensionContext, SubscriptionHandle};

/// A group's membership as it is now: delivered when it changed.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct GroupChanged {
    pub group: String,
    /// The group's epoch: rises with every rebalance.
    pub generation_id: i64,
    /// `Empty`, `Reconciling` (assignments still moving) or `Stable`.
    pub state: &'static str,
    pub assignor: &'static str,
    /// By member id.
    pub members: Vec<GroupMember>,
}

/// One member of a [`GroupChanged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    /// The member's own generation (the group epoch it last caught up to).
    pub generation_id: i64,
    pub topics: BTreeSet<String>,
    pub assignment: BTreeSet<TopicPartition>,
}

fn changed(group: &str, d: GroupDescription) -> GroupChanged {
    let mut members: Vec<GroupMember> = d
        .members
        .into_iter()
        .map(|m| GroupMember {
            member_id: m.info.member_id,
            group_instance_id: m.info.group_instance_id,
            client_id: m.info.client_id,
            generation_id: m.epoch,
            topics: m.info.topics,
            assignment: m.assigned,
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    GroupChanged {
        group: group.to_owned(),
        generation_id: d.generation_id,
        state: d.state,
        assignor: d.assignor,
        members,
    }
}

impl ExtensionContext {
    /// Delivers `group`'s membership to `recipient` now (once the group
    /// exists) and each time it changed, looked at every `every` (see the
    /// module documentation). Ends when the handle is dropped or the
    /// recipient's actor stopped. A group that does not exist (yet, or any
    /// more) delivers nothing until it does.
    pub fn watch_group(&self, group: &str, every: Duration, recipient: Recipient<GroupChanged>) -> SubscriptionHandle {
        let (handle, mut stopped) = SubscriptionHandle::new();
        let (context, group) = (self.clone(), group.to_owned());
        let watch = async move {
            let mut last: Option<GroupChanged> = None;
            while recipient.connected() {
                let described = match context.coordinator(&group, false).await {
                    Ok(coordinator) => coordinator.send(DescribeGroup).await.unwrap_or_else(|e| Err(e.into())),
                    Err(err) => Err(err),
                };
                match described {
                    Ok(description) => {
                        let now = changed(&group, description);
                        if last.as_ref() != Some(&now) {
                            if recipient.send(now.clone()).await.is_err() {
                                return;
                            }
                            last = Some(now);
                        }
                    }
                    Err(err) if err.code == ErrorCode::GROUP_ID_NOT_FOUND => {}
                    Err(err) => tracing::debug!(%group, %err, "group watch: describe failed; trying again"),
                }
                tokio::time::sleep(every).await;
            }
        };
        actix_rt::spawn(async move {
            tokio::select! {
                _ = stopped.changed() => {}
                () = watch => {}
            }
        });
        handle
    }
}
