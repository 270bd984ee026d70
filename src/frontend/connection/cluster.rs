//! The requests whose answer depends on whether the broker is alone or in
//! a cluster: `describe_cluster`, and `create_topic` and `delete_topic`,
//! which a broker alone carries out itself and a broker in a cluster writes
//! to ZooKeeper for the controller.

use actix::prelude::*;
use herald_actors::broker;
use herald_actors::error::{BrokerError, ErrorCode};

use super::budget::Admission;
use super::{flatten, settings_in, Connection};
use crate::cluster::{CreateClusterTopic, DeleteClusterTopic, Membership};
use crate::protocol::{CreateTopicRequest, Empty, TopicRequest};

impl Connection {
    /// `describe_cluster`: the live brokers and the controller.
    pub(super) fn describe_cluster(&mut self, correlation_id: u32, permit: Admission, ctx: &mut Context<Self>) {
        let membership = self.membership.clone();
        self.respond(
            correlation_id,
            permit,
            async move {
                membership.describe().await.map(Some).ok_or_else(|| {
                    BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is leaving the cluster")
                })
            },
            ctx,
        );
    }
}

impl Connection {
    /// `create_topic`.
    pub(super) fn create_topic(
        &mut self,
        correlation_id: u32,
        r: CreateTopicRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let created = match &self.membership {
            Membership::Single(_) => {
                if let Some(factor) = r.replication_factor.filter(|f| *f != 1) {
                    let error = BrokerError::new(
                        ErrorCode::INVALID_REPLICATION_FACTOR,
                        format!("replication factor {factor}: a broker alone keeps one replica of each partition"),
                    );
                    return self.send_error(correlation_id, &error);
                }
                let sent = self.broker.send(broker::CreateTopic {
                    name: r.topic,
                    partitions: r.partitions,
                    config: settings_in(r.config),
                    topic_id: None,
                });
                futures::future::Either::Left(async move { flatten(sent.await) })
            }
            Membership::Cluster(node) => {
                let sent = node.send(CreateClusterTopic {
                    name: r.topic,
                    partitions: r.partitions,
                    replication_factor: r.replication_factor,
                    config: r.config,
                });
                futures::future::Either::Right(async move { flatten(sent.await) })
            }
        };
        self.respond(correlation_id, permit, async move { created.await.map(|()| Some(Empty {})) }, ctx);
    }

    /// `delete_topic`.
    pub(super) fn delete_topic(
        &mut self,
        correlation_id: u32,
        r: TopicRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let deleted = match &self.membership {
            Membership::Single(_) => {
                let sent = self.broker.send(broker::DeleteTopic { name: r.topic });
                futures::future::Either::Left(async move { flatten(sent.await) })
            }
            Membership::Cluster(node) => {
                let sent = node.send(DeleteClusterTopic { name: r.topic });
                futures::future::Either::Right(async move { flatten(sent.await) })
            }
        };
        self.respond(correlation_id, permit, async move { deleted.await.map(|()| Some(Empty {})) }, ctx);
    }
}
