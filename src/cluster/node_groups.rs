//! Consumer groups on a [`ClusterNode`]: `find_coordinator`, and the group
//! registry in ZooKeeper. A group's coordinator is the leader of its
//! partition of `__consumer_offsets` (docs/cluster.md, "Consumer groups"),
//! which the first request creates; `/consumers` lists the groups that
//! exist, each with that partition (written when a coordinator makes or
//! loads a group, removed when the group is deleted or expires).

use std::collections::BTreeMap;

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::group::GroupRegistry;
use herald_wire::protocol::{coordinator_partition, BrokerInfo, ConfigValue, OFFSETS_TOPIC};
use zookeeper_client as zk;

use super::node::ClusterNode;
use super::node_topics::CreateClusterTopic;

/// The broker that coordinates a group.
#[derive(Message)]
#[rtype(result = "Result<BrokerInfo, BrokerError>")]
pub struct FindCoordinator {
    pub group_id: String,
}

fn not_available(why: impl Into<String>) -> BrokerError {
    BrokerError::new(ErrorCode::COORDINATOR_NOT_AVAILABLE, why)
}

impl Handler<FindCoordinator> for ClusterNode {
    type Result = Result<BrokerInfo, BrokerError>;

    fn handle(&mut self, msg: FindCoordinator, ctx: &mut Context<Self>) -> Self::Result {
        if self.client.is_none() {
            return Err(super::node_topics::not_in_cluster());
        }
        let Some(view) = self.topics.get(OFFSETS_TOPIC) else {
            self.create_offsets_topic(ctx);
            return Err(not_available(format!("{OFFSETS_TOPIC} is being created; ask again")));
        };
        let partition = coordinator_partition(&msg.group_id, view.partitions.len() as u32);
        let leader =
            view.partitions.get(partition as usize).and_then(|p| p.state.as_ref()).map_or(-1, |(s, _)| s.leader);
        self.brokers.iter().find(|b| b.id == leader).cloned().ok_or_else(|| {
            not_available(format!("partition {partition} of {OFFSETS_TOPIC} has no live leader yet; ask again"))
        })
    }
}

impl ClusterNode {
    /// Asks the controller for `__consumer_offsets` once at a time: compacted,
    /// `cluster.offsets_topic_partitions` partitions, and
    /// `cluster.offsets_topic_replication_factor` replicas (fewer when fewer
    /// brokers are alive).
    fn create_offsets_topic(&mut self, ctx: &mut Context<Self>) {
        if self.creating_offsets {
            return;
        }
        self.creating_offsets = true;
        let factor = self.settings.offsets_topic_replication_factor.min(self.brokers.len().max(1) as u32);
        let create = CreateClusterTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: i64::from(self.settings.offsets_topic_partitions),
            replication_factor: Some(factor as i32),
            config: BTreeMap::from([("cleanup_policy".to_string(), ConfigValue::Str("compact".into()))]),
            internal: true,
        };
        let sent = ctx.address().send(create);
        ctx.spawn(sent.into_actor(self).map(|created, act, _| {
            act.creating_offsets = false;
            match created.unwrap_or_else(|e| Err(e.into())) {
                Ok(()) => tracing::info!(topic = OFFSETS_TOPIC, "created the consumer groups' topic"),
                Err(err) if err.code == ErrorCode::TOPIC_ALREADY_EXISTS => {}
                Err(err) => tracing::warn!(topic = OFFSETS_TOPIC, %err, "cannot create the consumer groups' topic yet"),
            }
        }));
    }
}

/// Where ZooKeeper holds the cluster's consumer groups: one persistent node
/// per group, named by the hex of its id (any id is then a valid name).
pub const CONSUMERS: &str = "/consumers";

/// A group's node in the registry.
pub fn group_path(group_id: &str) -> String {
    let hex: String = group_id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{CONSUMERS}/{hex}")
}

/// A group's registration: the group, and its partition of
/// `__consumer_offsets`, whose leader (in that partition's state) is the
/// group's coordinator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupRegistration {
    pub version: u32,
    pub group: String,
    pub offsets_partition: u32,
}

impl Handler<GroupRegistry> for ClusterNode {
    type Result = ();

    /// Keeps `/consumers` as the directory says, one write at a time; the
    /// latest word on a group wins.
    fn handle(&mut self, msg: GroupRegistry, ctx: &mut Context<Self>) {
        self.registry_wanted.insert(msg.group_id, msg.partition);
        self.write_registry(ctx);
    }
}

impl ClusterNode {
    fn write_registry(&mut self, ctx: &mut Context<Self>) {
        if self.registry_busy {
            return;
        }
        let Some(client) = self.client.clone() else { return };
        let Some((group, wanted)) = self.registry_wanted.pop_first() else { return };
        self.registry_busy = true;
        let path = group_path(&group);
        let write = {
            let group = group.clone();
            async move {
                match wanted {
                    Some(offsets_partition) => {
                        super::registry::ensure_path(&client, CONSUMERS)
                            .await
                            .map_err(|_| zk::Error::ConnectionLoss)?;
                        let registration = GroupRegistration { version: 1, group, offsets_partition };
                        let data = serde_json::to_vec(&registration).unwrap_or_default();
                        let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                        match client.create(&path, &data, &persistent).await {
                            Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
                            Err(err) => Err(err),
                        }
                    }
                    None => match client.delete(&path, None).await {
                        Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                        Err(err) => Err(err),
                    },
                }
            }
        };
        ctx.spawn(write.into_actor(self).map(move |written, act, ctx| {
            act.registry_busy = false;
            if let Err(err) = written {
                tracing::warn!(%group, %err, "cannot update the group registry in ZooKeeper; trying again");
                // Unless a newer word on the group came meanwhile.
                act.registry_wanted.entry(group).or_insert(wanted);
                ctx.run_later(std::time::Duration::from_millis(500), |act, ctx| act.write_registry(ctx));
                return;
            }
            act.write_registry(ctx);
        }));
    }
}
