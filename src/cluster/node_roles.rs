//! Roles on a [`ClusterNode`]: every local partition of a cluster topic
//! takes the role its ZooKeeper state gives it. The leader's broker makes
//! it leader at the state's leader epoch (with the replicas, the ISR and
//! the topic's min_insync_replicas); every other broker makes it a
//! follower of that leader, and a broker holding a replica has its fetcher
//! for that leader follow it. A state with the same epoch and a new ISR is
//! passed to the leader as such.
//!
//! A leader's ISR proposals come back here and are written to the state's
//! znode conditionally on the version this broker last read: a controller
//! decision since then wins, and the leader learns it as a new epoch.

use std::collections::HashMap;

use actix::prelude::*;
use herald_actors::broker;
use herald_actors::error::BrokerError;
use herald_actors::partition::{self as part, Partition};
use herald_actors::topic;
use zookeeper_client as zk;

use super::fetcher::{Follow, ReplicaFetcher, Unfollow};
use super::node::ClusterNode;
use super::topics::{state_path, PartitionState};
use herald_actors::group::OffsetsRole;
use herald_wire::protocol::{ConfigValue, OFFSETS_TOPIC};

/// The role last given to a local partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Given {
    pub leader_epoch: i32,
    pub leader: i32,
    pub isr: Vec<i32>,
}

impl ClusterNode {
    /// Gives each local partition of `names` the role its state says.
    pub(super) fn apply_roles(&mut self, names: &[String], ctx: &mut Context<Self>) {
        let me = self.settings.broker_id;
        let mut changes = Vec::new();
        for name in names {
            let Some(view) = self.topics.get(name) else {
                self.given.retain(|(topic, _), _| topic != name);
                self.giving.retain(|(topic, _), _| topic != name);
                continue;
            };
            // Only the cluster's own copy of the topic takes roles.
            if self.local.get(name) != Some(&view.topic_id) {
                continue;
            }
            let min_insync = match view.config.get("min_insync_replicas") {
                Some(ConfigValue::Int(n)) if *n >= 1 => *n as u32,
                _ => 1,
            };
            for (p, partition) in view.partitions.iter().enumerate() {
                let Some((state, _)) = &partition.state else { continue };
                let key = (name.clone(), p as u32);
                let wanted = Given { leader_epoch: state.leader_epoch, leader: state.leader, isr: state.isr.clone() };
                let given = self.given.get(&key);
                if given == Some(&wanted) {
                    continue;
                }
                let same_epoch =
                    given.is_some_and(|g| g.leader_epoch == state.leader_epoch && g.leader == state.leader);
                let change = match (state.leader == me, same_epoch) {
                    (true, true) => {
                        Change::Isr(part::IsrUpdated { leader_epoch: state.leader_epoch, isr: state.isr.clone() })
                    }
                    (true, false) => Change::Lead(part::BecomeLeader {
                        leader_epoch: state.leader_epoch,
                        replicas: partition.replicas.clone(),
                        isr: state.isr.clone(),
                        min_insync_replicas: min_insync,
                        my_id: me,
                        isr_sink: Some(ctx.address().recipient()),
                    }),
                    (false, true) => {
                        self.given.insert(key, wanted);
                        continue;
                    }
                    (false, false) => {
                        Change::Follow(part::BecomeFollower { leader_epoch: state.leader_epoch, leader: state.leader })
                    }
                };
                changes.push((key, wanted, change));
            }
        }
        for (key, wanted, change) in changes {
            self.give(key, wanted, change, ctx);
        }
    }

    /// Sends `change` to the local partition `key`; records it as given once
    /// taken, and points the fetchers at it. Changes to one partition run
    /// concurrently and may complete out of order: only the latest one sent
    /// records its role and points the fetchers (an older one completing
    /// after it would stop the fetcher it just started). An older change the
    /// partition takes after a newer one is refused as fenced.
    fn give(&mut self, key: (String, u32), wanted: Given, change: Change, ctx: &mut Context<Self>) {
        self.next_giving += 1;
        let number = self.next_giving;
        self.giving.insert(key.clone(), number);
        let broker = self.broker.clone();
        let (topic, p) = key.clone();
        let work = async move {
            let addr = local_partition(&broker, &topic, p).await?;
            match change {
                Change::Lead(lead) => addr.send(lead).await.map_err(BrokerError::from)??,
                Change::Isr(isr) => addr.send(isr).await.map_err(BrokerError::from)?,
                Change::Follow(follow) => addr.send(follow).await.map_err(BrokerError::from)??,
            }
            Ok::<_, BrokerError>(addr)
        };
        let follows = wanted.leader != self.settings.broker_id;
        ctx.spawn(work.into_actor(self).map(move |result, act, _| match result {
            _ if act.giving.get(&key) != Some(&number) => {}
            Ok(addr) => {
                act.tell_groups(&key, &wanted, &addr);
                // Not recorded when the leader's address is unknown yet: the
                // next change (the broker list) gives it again.
                if act.point_fetchers(&key, &wanted, follows && act.is_replica(&key), addr) {
                    act.given.insert(key, wanted);
                }
            }
            Err(err) => {
                tracing::warn!(topic = %key.0, partition = key.1, %err, "cannot give the partition its role yet");
            }
        }));
    }

    /// Tells the group directory the role a partition of
    /// `__consumer_offsets` took: its leader coordinates the partition's
    /// groups.
    fn tell_groups(&self, key: &(String, u32), given: &Given, addr: &Addr<Partition>) {
        if key.0 != OFFSETS_TOPIC {
            return;
        }
        let partitions = self.topics.get(OFFSETS_TOPIC).map_or(0, |t| t.partitions.len() as u32);
        let leader = (given.leader == self.settings.broker_id).then(|| addr.clone());
        self.groups.do_send(OffsetsRole { partition: key.1, partitions, leader });
    }

    fn is_replica(&self, key: &(String, u32)) -> bool {
        let me = self.settings.broker_id;
        self.topics.get(&key.0).and_then(|t| t.partitions.get(key.1 as usize)).is_some_and(|p| p.replicas.contains(&me))
    }

    /// Has the fetcher for the partition's leader follow it (when this
    /// broker holds a replica and the partition has a live leader), and
    /// every other fetcher drop it. False when the leader's address is not
    /// known.
    fn point_fetchers(&mut self, key: &(String, u32), given: &Given, follow: bool, addr: Addr<Partition>) -> bool {
        // A broker in controlled shutdown follows nothing (src/cluster/shutdown.rs).
        let leader = if follow && given.leader >= 0 && !self.leaving { Some(given.leader) } else { None };
        for (id, fetcher) in &self.fetchers {
            if Some(*id) != leader {
                fetcher.do_send(Unfollow { topic: key.0.clone(), partition: key.1 });
            }
        }
        let Some(leader) = leader else { return true };
        let Some(address) = self.brokers.iter().find(|b| b.id == leader).map(|b| format!("{}:{}", b.host, b.port))
        else {
            tracing::debug!(leader, topic = %key.0, partition = key.1, "the leader is not among the live brokers; not fetching yet");
            return false;
        };
        let me = self.settings.broker_id;
        let fetcher = self
            .fetchers
            .entry(leader)
            .or_insert_with(|| ReplicaFetcher::new(me, leader, address.clone(), self.peers.clone()).start());
        let follow = Follow { topic: key.0.clone(), partition: key.1, leader_epoch: given.leader_epoch, addr, address };
        fetcher.do_send(follow);
        true
    }
}

enum Change {
    Lead(part::BecomeLeader),
    Isr(part::IsrUpdated),
    Follow(part::BecomeFollower),
}

/// The actor of local partition `partition` of `topic`.
///
/// # Errors
///
/// The topic or partition does not exist here, or its actor is gone.
pub(crate) async fn local_partition(
    broker: &Addr<broker::Broker>,
    topic: &str,
    partition: u32,
) -> Result<Addr<Partition>, BrokerError> {
    let addr = broker.send(broker::LookupTopic { name: topic.to_string() }).await.map_err(BrokerError::from)??;
    let route = addr.send(topic::GetRoute).await.map_err(BrokerError::from)?;
    route.partition(partition)
}

impl Handler<part::IsrProposal> for ClusterNode {
    type Result = ();

    fn handle(&mut self, msg: part::IsrProposal, ctx: &mut Context<Self>) {
        let me = self.settings.broker_id;
        let Some(client) = self.client.clone() else { return };
        let current = self
            .topics
            .get(&*msg.topic)
            .and_then(|t| t.partitions.get(msg.partition as usize))
            .and_then(|p| p.state.clone());
        let Some((state, version)) = current else { return };
        if state.leader != me || state.leader_epoch != msg.leader_epoch || state.isr == msg.isr {
            return;
        }
        let next = PartitionState { isr: msg.isr.clone(), ..state };
        let path = state_path(&msg.topic, msg.partition);
        let write = async move {
            let data = serde_json::to_vec(&next).unwrap_or_default();
            client.set_data(&path, &data, Some(version)).await.map(|_| next)
        };
        let (topic, partition) = (msg.topic.clone(), msg.partition);
        ctx.spawn(write.into_actor(self).map(move |result: Result<PartitionState, zk::Error>, _, _| match result {
            Ok(state) => {
                tracing::info!(%topic, partition, isr = ?state.isr, leader_epoch = state.leader_epoch, "ISR changed")
            }
            Err(err) => {
                tracing::info!(%topic, partition, %err, "an ISR change lost to a newer state; the leader will be told")
            }
        }));
    }
}

/// The `Given` roles by partition.
pub(super) type GivenRoles = HashMap<(String, u32), Given>;
