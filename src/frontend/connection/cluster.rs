//! The requests whose answer depends on whether the broker is alone or in
//! a cluster: `describe_cluster`, and `create_topic` and `delete_topic`,
//! which a broker alone carries out itself and a broker in a cluster writes
//! to ZooKeeper for the controller (`add_partitions` and
//! `alter_topic_config` are in `topic_ops.rs`).

use actix::prelude::*;
use herald_actors::broker;
use herald_actors::error::{BrokerError, ErrorCode};

use super::budget::Admission;
use super::{flatten, settings_in, Connection};
use crate::cluster::{
    AllocateProducerId, CreateClusterTopic, DeleteClusterTopic, FindCoordinator, Membership, Metadata,
};
use crate::protocol::{
    BrokerInfo, CreateTopicRequest, Empty, FindCoordinatorResponse, GroupRequest, InitProducerIdRequest,
    InitProducerIdResponse, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata, TopicRequest,
};
use crate::security::acl::{Operation, Resource};

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
    /// `find_coordinator`: a broker alone coordinates every group; in a
    /// cluster, the leader of the group's `__consumer_offsets` partition.
    pub(super) fn find_coordinator(
        &mut self,
        correlation_id: u32,
        r: GroupRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        if let Err(err) = herald_actors::group::validate_group_id(&r.group_id) {
            return self.send_error(correlation_id, &err);
        }
        let membership = self.membership.clone();
        let answer = async move {
            let me = match &membership {
                Membership::Single(me) => me.clone(),
                Membership::Cluster(node) => flatten(node.send(FindCoordinator { group_id: r.group_id }).await)?,
            };
            Ok(Some(FindCoordinatorResponse { broker_id: me.id, host: me.host, port: me.port }))
        };
        self.respond(correlation_id, permit, answer, ctx);
    }
}

impl Connection {
    /// In a cluster, `__consumer_offsets` holds the groups' records, which
    /// only the brokers write.
    pub(super) fn refuse_internal_write(&self, topic: &str, what: &str) -> Result<(), BrokerError> {
        if matches!(self.membership, Membership::Cluster(_)) && topic == herald_wire::protocol::OFFSETS_TOPIC {
            return Err(BrokerError::new(
                ErrorCode::INVALID_REQUEST,
                format!("{what} `{topic}`: the brokers keep the consumer groups' records there themselves"),
            ));
        }
        Ok(())
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
                    internal: false,
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

impl Connection {
    /// `metadata`: where each partition is led; topics the principal may
    /// not describe are left out of a listing of all, and answered with
    /// `TOPIC_AUTHORIZATION_FAILED` when named.
    pub(super) fn metadata(
        &mut self,
        correlation_id: u32,
        r: MetadataRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let access = self.access();
        let membership = self.membership.clone();
        let broker = self.broker.clone();
        let named = r.topics.is_some();
        let answer = async move {
            let mut response = match &membership {
                Membership::Cluster(node) => {
                    node.send(Metadata { topics: r.topics }).await.map_err(BrokerError::from)?
                }
                Membership::Single(me) => single_metadata(me, &broker, r.topics).await?,
            };
            let may = |topic: &str| access.may(Operation::Describe, &Resource::topic(topic));
            if named {
                for t in &mut response.topics {
                    if !may(&t.topic) {
                        *t = TopicMetadata {
                            topic: std::mem::take(&mut t.topic),
                            topic_id: String::new(),
                            error_code: ErrorCode::TOPIC_AUTHORIZATION_FAILED.code(),
                            partitions: Vec::new(),
                        };
                    }
                }
            } else {
                response.topics.retain(|t| may(&t.topic));
            }
            Ok(Some(response))
        };
        self.respond(correlation_id, permit, answer, ctx);
    }
}

/// A broker alone: it leads every partition of its topics, the one replica.
async fn single_metadata(
    me: &BrokerInfo,
    broker: &Addr<broker::Broker>,
    topics: Option<Vec<String>>,
) -> Result<MetadataResponse, BrokerError> {
    let listed = broker.send(broker::ListTopics).await.map_err(BrokerError::from)?;
    let local: std::collections::BTreeMap<String, broker::ListedTopic> =
        listed.into_iter().filter(|t| t.damaged.is_none()).map(|t| (t.name.clone(), t)).collect();
    let names = topics.unwrap_or_else(|| local.keys().cloned().collect());
    let topics = names
        .into_iter()
        .map(|name| match local.get(&name) {
            Some(t) => TopicMetadata {
                topic: name,
                topic_id: t.topic_id.clone().unwrap_or_default(),
                error_code: 0,
                partitions: (0..t.partitions)
                    .map(|partition| PartitionMetadata {
                        partition,
                        leader: me.id,
                        leader_epoch: 0,
                        replicas: vec![me.id],
                        isr: vec![me.id],
                        offline_replicas: Vec::new(),
                    })
                    .collect(),
            },
            None => TopicMetadata {
                topic: name,
                topic_id: String::new(),
                error_code: ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
                partitions: Vec::new(),
            },
        })
        .collect();
    Ok(MetadataResponse { brokers: vec![me.clone()], controller_id: me.id, topics })
}

impl Connection {
    /// `init_producer_id`: an id unique for the life of the data directory
    /// (a broker alone) or of the cluster (from a block reserved in
    /// ZooKeeper).
    pub(super) fn init_producer_id(
        &mut self,
        correlation_id: u32,
        r: InitProducerIdRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        if r.transactional_id.is_some() {
            let message = "transactions are not supported: transactional_id must be nil";
            return self.send_error(correlation_id, &BrokerError::new(ErrorCode::INVALID_REQUEST, message));
        }
        let allocated = match &self.membership {
            Membership::Single(_) => {
                let sent = self.broker.send(herald_actors::producer_ids::InitProducerId);
                futures::future::Either::Left(async move { flatten(sent.await) })
            }
            Membership::Cluster(node) => {
                let sent = node.send(AllocateProducerId);
                futures::future::Either::Right(async move { flatten(sent.await) })
            }
        };
        let answer = async move {
            let producer_id = allocated.await?;
            Ok(Some(InitProducerIdResponse { producer_id, producer_epoch: 0 }))
        };
        self.respond(correlation_id, permit, answer, ctx);
    }
}
