//! The controller's work on a [`ClusterNode`]: when this broker holds the
//! office, every change it sees (a broker gone or back, a topic created, a
//! state written) is met by [`control::decide`] for the partitions it
//! touches, and each decision is written to ZooKeeper in a transaction that
//! checks the controller epoch's version (a deposed controller's write
//! fails) and the state's version (a decision on a stale state fails; the
//! watch then brings the newer one and the partition is decided again).
//! Topic deletions asked under `/admin/delete_topics` are carried out here
//! too. Brokers in controlled shutdown (src/cluster/shutdown.rs) are
//! decided around.

use std::collections::BTreeSet;

use actix::prelude::*;
use futures::future::{FutureExt, LocalBoxFuture};
use herald_wire::protocol::ConfigValue;
use zookeeper_client as zk;

use super::control;
use super::controller::CONTROLLER_EPOCH;
use super::node::ClusterNode;
use super::topics::{
    config_path, partition_path, partitions_path, state_path, topic_path, PartitionState, DELETE_TOPICS,
};

/// This broker in office: its epoch and the version of `/controller_epoch`
/// its election wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Office {
    pub epoch: i32,
    pub epoch_version: i32,
}

/// A decision to write: the partition and the write, which yields the
/// state written.
pub(super) struct Decision {
    pub key: (String, u32),
    pub write: LocalBoxFuture<'static, Result<PartitionState, zk::Error>>,
}

impl ClusterNode {
    /// Decides every partition of `topics` (all when `None`), if in office.
    pub(super) fn control(&mut self, topics: Option<&[String]>, ctx: &mut Context<Self>) {
        for Decision { key, write } in self.decisions(topics, ctx) {
            ctx.spawn(write.into_actor(self).map(move |result, act, _| act.written(&key, &result)));
        }
    }

    /// The writes of [`control::decide`]'s decisions for every partition
    /// of `topics` (all when `None`) whose state must change and is not
    /// being written already, if in office; each partition is marked as
    /// being written until [`ClusterNode::written`].
    pub(super) fn decisions(&mut self, topics: Option<&[String]>, ctx: &mut Context<Self>) -> Vec<Decision> {
        let live: BTreeSet<i32> = self.brokers.iter().map(|b| b.id).collect();
        self.forget_shutting(&live, topics.is_none(), ctx);
        let Some(office) = self.office else { return Vec::new() };
        let Some(client) = self.client.clone() else { return Vec::new() };
        let shutting: BTreeSet<i32> = self.shutting.keys().copied().collect();
        let names: Vec<String> = match topics {
            Some(names) => names.to_vec(),
            None => self.topics.keys().cloned().collect(),
        };
        let mut decisions = Vec::new();
        for name in names {
            let Some(view) = self.topics.get(&name) else { continue };
            for (p, partition) in view.partitions.iter().enumerate() {
                let key = (name.clone(), p as u32);
                if self.writing.contains(&key) {
                    continue;
                }
                let current = partition.state.as_ref();
                let unclean = match view.config.get("unclean_leader_election_enable") {
                    Some(ConfigValue::Str(enabled)) => enabled == "true",
                    _ => self.unclean_default,
                };
                let before = current.map(|(s, _)| s);
                let decided = control::decide(&partition.replicas, before, &live, &shutting, office.epoch, unclean);
                let Some(decided) = decided else { continue };
                if control::unclean_election(before, &decided) {
                    tracing::error!(
                        topic = %name, partition = p, leader = decided.leader, isr_before = ?before.map(|b| &b.isr),
                        "UNCLEAN LEADER ELECTION: no in-sync replica is alive, so a replica outside the ISR leads \
                         (the topic sets unclean_leader_election_enable); records only the old ISR had are lost"
                    );
                }
                let version = current.map(|(_, v)| *v);
                self.writing.insert(key.clone());
                let client = client.clone();
                let (topic, partition) = key.clone();
                let write = async move { write_state(&client, office, &topic, partition, &decided, version).await };
                decisions.push(Decision { key, write: write.boxed_local() });
            }
        }
        decisions
    }

    /// Records the end of a decision's write.
    pub(super) fn written(&mut self, key: &(String, u32), result: &Result<PartitionState, zk::Error>) {
        self.writing.remove(key);
        match result {
            Ok(state) => tracing::info!(
                topic = %key.0, partition = key.1, leader = state.leader,
                leader_epoch = state.leader_epoch, isr = ?state.isr, "partition state decided"
            ),
            Err(err) => {
                tracing::debug!(topic = %key.0, partition = key.1, %err, "a partition state write lost a race; deciding again on the next change")
            }
        }
    }

    /// Carries out the deletions asked for, if in office.
    pub(super) fn delete_asked(&mut self, ctx: &mut Context<Self>) {
        let Some(office) = self.office else { return };
        let Some(client) = self.client.clone() else { return };
        for name in self.deletions.clone() {
            if !self.deleting.insert(name.clone()) {
                continue;
            }
            let partitions = self.topics.get(&name).map_or(0, |t| t.partitions.len() as u32);
            let client = client.clone();
            let topic = name.clone();
            let delete = async move { delete_topic(&client, office, &topic, partitions).await };
            ctx.spawn(delete.into_actor(self).map(move |result, act, _| {
                act.deleting.remove(&name);
                match result {
                    Ok(()) => tracing::info!(topic = %name, "topic deleted from the cluster"),
                    Err(err) => tracing::warn!(topic = %name, %err, "cannot delete the topic yet; trying again on the next change"),
                }
            }));
        }
    }
}

/// Writes `state` as partition `partition`'s, if this controller is still
/// in office and the state is still at `version` (`None`: it has none).
async fn write_state(
    client: &zk::Client,
    office: Office,
    topic: &str,
    partition: u32,
    state: &PartitionState,
    version: Option<i32>,
) -> Result<PartitionState, zk::Error> {
    let data = serde_json::to_vec(state).unwrap_or_default();
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    if version.is_none() {
        for path in [partitions_path(topic), partition_path(topic, partition)] {
            match client.create(&path, &[], &persistent).await {
                Ok(_) | Err(zk::Error::NodeExists) => {}
                Err(err) => return Err(err),
            }
        }
    }
    let mut writes = client.new_multi_writer();
    writes.add_check_version(CONTROLLER_EPOCH, office.epoch_version)?;
    match version {
        Some(version) => writes.add_set_data(&state_path(topic, partition), &data, Some(version))?,
        None => writes.add_create(&state_path(topic, partition), &data, &persistent)?,
    }
    writes.commit().await.map_err(zk::Error::from)?;
    Ok(state.clone())
}

/// Removes every znode of `topic` (of `partitions` partitions) and the
/// request to delete it, in one transaction checked against the office.
async fn delete_topic(client: &zk::Client, office: Office, topic: &str, partitions: u32) -> Result<(), zk::Error> {
    let exists = |path: String| async move { client.check_stat(&path).await.map(|s| s.is_some()) };
    let mut writes = client.new_multi_writer();
    writes.add_check_version(CONTROLLER_EPOCH, office.epoch_version)?;
    for p in 0..partitions {
        if exists(state_path(topic, p)).await? {
            writes.add_delete(&state_path(topic, p), None)?;
        }
        if exists(partition_path(topic, p)).await? {
            writes.add_delete(&partition_path(topic, p), None)?;
        }
    }
    if exists(partitions_path(topic)).await? {
        writes.add_delete(&partitions_path(topic), None)?;
    }
    if exists(topic_path(topic)).await? {
        writes.add_delete(&topic_path(topic), None)?;
    }
    if exists(config_path(topic)).await? {
        writes.add_delete(&config_path(topic), None)?;
    }
    writes.add_delete(&format!("{DELETE_TOPICS}/{topic}"), None)?;
    writes.commit().await.map_err(zk::Error::from)?;
    Ok(())
}
