//! The requests of a [`Connection`] that change a live topic:
//! `add_partitions` (to the topic; in a cluster, written to ZooKeeper by the
//! cluster node), `alter_topic_config` (to the broker, which hands the topic
//! its defaults and limits; in a cluster, to the cluster node) and
//! `delete_records` (to the partition, through its topic: in a cluster only
//! the leader takes it, and its followers follow its log start).

use actix::prelude::*;
use futures::future::Either;
use herald_actors::broker;
use herald_actors::partition;
use herald_actors::topic::{self, ForPartition};

use super::budget::Admission;
use super::{flatten, partition_id, settings_in, settings_out, Connection};
use crate::cluster::{AddClusterPartitions, AlterClusterTopicConfig, Membership};
use crate::protocol::*;

impl Connection {
    pub(super) fn add_partitions(
        &mut self,
        correlation_id: u32,
        r: AddPartitionsRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        if let Membership::Cluster(node) = &self.membership {
            let sent = node.send(AddClusterPartitions { name: r.topic, total: r.partitions });
            let work = async move { flatten(sent.await).map(|partitions| Some(AddPartitionsResponse { partitions })) };
            return self.respond(correlation_id, permit, work, ctx);
        }
        self.with_topic(r.topic, ctx, move |act, topic, ctx| {
            let sent = topic.map(|t| t.send(topic::AddPartitions { total: r.partitions }));
            act.respond(
                correlation_id,
                permit,
                async move { flatten(sent?.await).map(|partitions| Some(AddPartitionsResponse { partitions })) },
                ctx,
            );
        });
    }

    pub(super) fn alter_topic_config(
        &mut self,
        correlation_id: u32,
        r: AlterTopicConfigRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let validate_only = r.validate_only;
        let topic = r.topic.clone();
        let sent = match &self.membership {
            Membership::Single(_) => Either::Left(self.broker.send(broker::AlterTopicConfig {
                name: r.topic,
                set: settings_in(r.set),
                delete: r.delete,
                validate_only,
            })),
            Membership::Cluster(node) => Either::Right(node.send(AlterClusterTopicConfig {
                name: r.topic,
                set: r.set,
                delete: r.delete,
                validate_only,
            })),
        };
        let work = async move {
            let config = settings_out(flatten(sent.await)?);
            Ok(Some(AlterTopicConfigResponse { topic, config, validate_only }))
        };
        self.respond(correlation_id, permit, work, ctx);
    }

    pub(super) fn delete_records(
        &mut self,
        correlation_id: u32,
        r: DeleteRecordsRequest,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        if let Err(error) = self.refuse_internal_write(&r.topic, "cannot delete records of") {
            return self.send_error(correlation_id, &error);
        }
        let partition = partition_id(r.partition, &r.topic);
        let message = partition::DeleteRecords { offset: r.offset };
        self.with_topic(r.topic, ctx, move |act, topic, ctx| {
            let sent = topic.and_then(|t| Ok(t.send(ForPartition { partition: partition?, message })));
            let work = async move {
                flatten(sent?.await).map(|log_start_offset| Some(DeleteRecordsResponse { log_start_offset }))
            };
            act.respond(correlation_id, permit, work, ctx);
        });
    }
}
