//! Watchers of a group's membership: actors (the broker's extensions) that
//! get a [`GroupChanged`] each time the group's generation, state, members
//! or assignments change, pushed by the coordinator as the change happens.
//!
//! Every distinct membership is delivered, in order: the coordinator sends
//! one after each message that changed it (a join, a leave, a heartbeat
//! that moved partitions, an expiry), never two equal ones in a row. A
//! watcher registers with [`WatchGroup`] and gets the membership as it is at
//! once; it is dropped when its actor stops. Events are small and rare
//! (one per rebalance step), so a watcher's mailbox holds them unbounded.

use std::collections::BTreeSet;

use actix::prelude::*;

use super::GroupCoordinator;
use crate::group::assignor::TopicPartition;

/// A group's membership as it is now.
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

/// Registers a watcher of the group's membership.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchGroup(pub Recipient<GroupChanged>);

impl Handler<WatchGroup> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, WatchGroup(watcher): WatchGroup, _: &mut Context<Self>) {
        let now = self.membership_now();
        if self.published.as_ref() == Some(&now) {
            watcher.do_send(now);
            self.watchers.push(watcher);
        } else {
            // The others have not had this one either.
            self.watchers.push(watcher);
            self.publish_membership();
        }
    }
}

impl GroupCoordinator {
    fn membership_now(&self) -> GroupChanged {
        let mut members: Vec<GroupMember> = self
            .membership
            .members()
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
            group: self.group_id.to_string(),
            generation_id: self.membership.group_epoch(),
            state: self.membership.state(),
            assignor: self.membership.assignor().name(),
            members,
        }
    }

    /// Sends the membership to every watcher if it changed since the last
    /// one sent. Called after each message that may have changed it.
    pub(super) fn publish_membership(&mut self) {
        self.watchers.retain(Recipient::connected);
        if self.watchers.is_empty() {
            self.published = None;
            return;
        }
        let now = self.membership_now();
        if self.published.as_ref() == Some(&now) {
            return;
        }
        for watcher in &self.watchers {
            watcher.do_send(now.clone());
        }
        self.published = Some(now);
    }
}
