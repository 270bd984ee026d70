//! Consumer groups on a [`ClusterNode`]: `find_coordinator`. A group's
//! coordinator is the leader of its partition of `__consumer_offsets`
//! (docs/cluster.md, "Consumer groups"), which the first request creates.

use std::collections::BTreeMap;

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_wire::protocol::{coordinator_partition, BrokerInfo, ConfigValue, OFFSETS_TOPIC};

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
