//! The group directory of a broker in a cluster: which partitions of
//! `__consumer_offsets` this broker leads, and so which groups it
//! coordinates (a group's coordinator is the leader of its partition,
//! placed by Kafka's hash: [`coordinator_partition`]).
//!
//! The cluster tells the directory each role a partition of the topic takes
//! here ([`OffsetsRole`]). On becoming leader, the directory reads the
//! partition back ([`replicated::load`]); meanwhile its groups answer
//! `COORDINATOR_LOAD_IN_PROGRESS`; then it starts a coordinator for each
//! group the partition holds. On losing the leadership it stops them
//! ([`Resign`]): their members are told `NOT_COORDINATOR` and look again.
//! A group of a partition led elsewhere is answered `NOT_COORDINATOR`.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use herald_wire::protocol::coordinator_partition;

use super::coordinator::{Origin, Resign};
use super::replicated::{self, Loaded};
use super::Groups;
use crate::error::{BrokerError, ErrorCode};
use crate::partition::Partition;

/// How long a failed read-back waits before it is tried again.
const RELOAD_AFTER: Duration = Duration::from_secs(1);

/// A word for the cluster's group registry (`/consumers` in ZooKeeper):
/// the group exists, coordinated from `partition` of `__consumer_offsets`,
/// or (`None`) it is gone.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct GroupRegistry {
    pub group_id: String,
    pub partition: Option<u32>,
}

/// Where the directory sends its [`GroupRegistry`] words (the cluster, once
/// it has joined).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseRegistry(pub Recipient<GroupRegistry>);

impl Handler<UseRegistry> for Groups {
    type Result = ();

    fn handle(&mut self, msg: UseRegistry, _: &mut Context<Self>) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.registry = Some(msg.0);
        }
    }
}

/// What a broker in a cluster knows of `__consumer_offsets`.
#[derive(Default)]
pub(super) struct OffsetsTopic {
    /// The topic's partition count; 0 until the cluster first told a role.
    partitions: u32,
    /// The partitions led here, by number.
    led: BTreeMap<u32, Led>,
    /// Numbers each leadership, so a read-back that completes after the
    /// leadership it was for ended is dropped.
    next_term: u64,
    /// The cluster's group registry.
    registry: Option<Recipient<GroupRegistry>>,
}

/// A partition this broker leads.
struct Led {
    term: u64,
    addr: Addr<Partition>,
    loaded: bool,
}

impl OffsetsTopic {
    /// The partition of `group_id`, if this broker coordinates the group.
    ///
    /// # Errors
    ///
    /// `NOT_COORDINATOR` when another broker leads the partition (or none
    /// does yet), `COORDINATOR_LOAD_IN_PROGRESS` while it is read back,
    /// `COORDINATOR_NOT_AVAILABLE` before the topic exists.
    pub(super) fn coordinates(&self, group_id: &str) -> Result<Addr<Partition>, BrokerError> {
        if self.partitions == 0 {
            return Err(BrokerError::new(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                "the cluster's __consumer_offsets is not here yet: ask find_coordinator",
            ));
        }
        let partition = coordinator_partition(group_id, self.partitions);
        match self.led.get(&partition) {
            Some(led) if led.loaded => Ok(led.addr.clone()),
            Some(_) => Err(BrokerError::new(
                ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
                format!("this broker is loading partition {partition} of __consumer_offsets; try again"),
            )),
            None => Err(BrokerError::new(
                ErrorCode::NOT_COORDINATOR,
                format!(
                    "this broker does not lead partition {partition} of __consumer_offsets: \
                     ask find_coordinator which broker coordinates group `{group_id}`"
                ),
            )),
        }
    }

    pub(super) fn partition_of(&self, group_id: &str) -> u32 {
        coordinator_partition(group_id, self.partitions)
    }

    /// Tells the registry the group exists (or, `exists` false, is gone).
    pub(super) fn register(&self, group_id: &str, exists: bool) {
        if let Some(registry) = &self.registry {
            let partition = exists.then(|| self.partition_of(group_id));
            registry.do_send(GroupRegistry { group_id: group_id.to_string(), partition });
        }
    }
}

/// The role a local partition of `__consumer_offsets` took: sent by the
/// cluster each time one changes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OffsetsRole {
    pub partition: u32,
    /// The topic's partition count.
    pub partitions: u32,
    /// The partition's actor when it leads here; `None` when it does not.
    pub leader: Option<Addr<Partition>>,
}

impl Handler<OffsetsRole> for Groups {
    type Result = ();

    fn handle(&mut self, msg: OffsetsRole, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster.as_mut() else { return };
        cluster.partitions = msg.partitions;
        match msg.leader {
            Some(addr) => {
                if cluster.led.get(&msg.partition).is_some_and(|led| led.addr == addr) {
                    return;
                }
                self.resign(msg.partition);
                let Some(cluster) = self.cluster.as_mut() else { return };
                cluster.next_term += 1;
                let term = cluster.next_term;
                cluster.led.insert(msg.partition, Led { term, addr: addr.clone(), loaded: false });
                tracing::info!(
                    partition = msg.partition,
                    "leading a partition of __consumer_offsets: loading its groups"
                );
                self.load(msg.partition, term, addr, ctx);
            }
            None => {
                if self.cluster.as_mut().and_then(|c| c.led.remove(&msg.partition)).is_some() {
                    tracing::info!(partition = msg.partition, "no longer leading a partition of __consumer_offsets");
                }
                self.resign(msg.partition);
            }
        }
    }
}

impl Groups {
    /// Reads the partition back and starts its groups' coordinators, unless
    /// the leadership ended meanwhile; tried again after a failure.
    fn load(&mut self, partition: u32, term: u64, addr: Addr<Partition>, ctx: &mut Context<Self>) {
        let read = replicated::load(addr.clone());
        ctx.spawn(read.into_actor(self).map(move |loaded, act, ctx| {
            let current = act.cluster.as_ref().and_then(|c| c.led.get(&partition)).is_some_and(|l| l.term == term);
            if !current {
                return;
            }
            match loaded {
                Ok(loaded) => act.start_loaded(partition, term, addr, loaded),
                Err(err) => {
                    tracing::warn!(partition, %err, "cannot read back a partition of __consumer_offsets; trying again");
                    ctx.run_later(RELOAD_AFTER, move |act, ctx| {
                        let current =
                            act.cluster.as_ref().and_then(|c| c.led.get(&partition)).is_some_and(|l| l.term == term);
                        if current {
                            act.load(partition, term, addr, ctx);
                        }
                    });
                }
            }
        }));
    }

    fn start_loaded(&mut self, partition: u32, term: u64, addr: Addr<Partition>, loaded: Loaded) {
        let Loaded { groups, damaged } = loaded;
        let count = groups.len();
        for (group_id, state) in groups {
            // A group whose every key was removed (deleted, or expired).
            if state == super::store::GroupState::default() {
                continue;
            }
            let origin = Origin::Partition { addr: addr.clone(), state: Some(state), damaged: damaged.clone() };
            self.start_coordinator_with(&group_id, origin);
            if let Some(cluster) = &self.cluster {
                cluster.register(&group_id, true);
            }
        }
        if let Some(led) = self.cluster.as_mut().and_then(|c| c.led.get_mut(&partition)).filter(|l| l.term == term) {
            led.loaded = true;
        }
        tracing::info!(partition, groups = count, "loaded a partition of __consumer_offsets: coordinating its groups");
    }

    /// Stops the coordinators of the groups of `partition`.
    fn resign(&mut self, partition: u32) {
        let Some(cluster) = self.cluster.as_ref() else { return };
        let leaving: Vec<String> =
            self.coordinators.keys().filter(|g| cluster.partition_of(g) == partition).cloned().collect();
        for group_id in leaving {
            if let Some(addr) = self.coordinators.remove(&group_id) {
                addr.do_send(Resign);
            }
        }
    }
}
