//! Changes to a live topic of the cluster on a [`ClusterNode`]:
//! `add_partitions` and `alter_topic_config` through any broker, written to
//! ZooKeeper conditionally on the version read (the assignment in
//! `/brokers/topics/<topic>`, the overrides in `/config/topics/<topic>`),
//! and the local copies following them: every broker grows its copy of a
//! topic to the cluster's partition count and gives it the cluster's
//! settings as it learns of them. The controller elects the new partitions'
//! leaders as it does a new topic's.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use herald_actors::broker::{self, MAX_PARTITIONS};
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::topic;
use herald_actors::topic_config::{ConfigValue as Setting, TOPIC_KEYS};
use herald_wire::protocol::ConfigValue;

use super::node::ClusterNode;
use super::node_topics::{not_in_cluster, settings, wait, zookeeper_error, Awaited};
use super::topics::{self, Placeable, TopicWriteError};

/// How many times an alter is tried again after another writer changed the
/// topic's settings between its read and its write.
const ALTER_ATTEMPTS: usize = 10;

/// A local topic as this broker made it: its partition count and the
/// overrides last applied (`None`: not known since the broker started,
/// applied again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalShape {
    pub partitions: u32,
    pub config: Option<BTreeMap<String, ConfigValue>>,
}

/// Grow a topic of the cluster to `total` partitions.
#[derive(Message)]
#[rtype(result = "Result<u32, BrokerError>")]
pub struct AddClusterPartitions {
    pub name: String,
    pub total: i64,
}

/// Change a topic's settings in the cluster; answers every setting after
/// the change, as the answering broker's copy has them.
#[derive(Message)]
#[rtype(result = "Result<BTreeMap<String, Setting>, BrokerError>")]
pub struct AlterClusterTopicConfig {
    pub name: String,
    pub set: BTreeMap<String, ConfigValue>,
    pub delete: Vec<String>,
    pub validate_only: bool,
}

fn unknown_topic(name: &str) -> BrokerError {
    BrokerError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{name}` does not exist"))
}

fn write_error(err: TopicWriteError) -> BrokerError {
    match err {
        TopicWriteError::Missing(name) => unknown_topic(&name),
        err @ TopicWriteError::Partitions { .. } => BrokerError::new(ErrorCode::INVALID_PARTITIONS, err.to_string()),
        err @ TopicWriteError::Replication { .. } => {
            BrokerError::new(ErrorCode::INVALID_REPLICATION_FACTOR, err.to_string())
        }
        other => zookeeper_error(other),
    }
}

/// The change that makes a local copy's settings the broker's defaults with
/// `overrides` on top: every override set, every other key deleted.
fn whole(name: &str, overrides: &BTreeMap<String, ConfigValue>, validate_only: bool) -> broker::AlterTopicConfig {
    broker::AlterTopicConfig {
        name: name.to_string(),
        set: settings(overrides),
        delete: TOPIC_KEYS.iter().filter(|k| !overrides.contains_key(**k)).map(|k| k.to_string()).collect(),
        validate_only,
    }
}

impl Handler<AddClusterPartitions> for ClusterNode {
    type Result = ResponseActFuture<Self, Result<u32, BrokerError>>;

    fn handle(&mut self, msg: AddClusterPartitions, _: &mut Context<Self>) -> Self::Result {
        // A group's coordinator is placed by the partition count.
        if let Err(err) = super::node_topics::refuse_internal(&msg.name, "cannot add partitions to") {
            return Box::pin(fut::ready(Err(err)));
        }
        let Some(client) = self.client.clone() else { return Box::pin(fut::ready(Err(not_in_cluster()))) };
        let live: Vec<Placeable> = self.brokers.iter().map(|b| Placeable { id: b.id, rack: b.rack.clone() }).collect();
        let name = msg.name.clone();
        let total = msg.total;
        let write = async move {
            topics::grow(&client, &msg.name, msg.total, MAX_PARTITIONS, &live).await.map_err(write_error)
        };
        Box::pin(write.into_actor(self).then(move |written, act, ctx| {
            let waited = written.map(|()| act.await_change(Awaited::Grown(name, total as u32), ctx));
            async move { wait(waited?).await.map(|()| total as u32) }.into_actor(act)
        }))
    }
}

impl Handler<AlterClusterTopicConfig> for ClusterNode {
    type Result = ResponseActFuture<Self, Result<BTreeMap<String, Setting>, BrokerError>>;

    fn handle(&mut self, msg: AlterClusterTopicConfig, _: &mut Context<Self>) -> Self::Result {
        let Some(client) = self.client.clone() else { return Box::pin(fut::ready(Err(not_in_cluster()))) };
        if !self.topics.contains_key(&msg.name) {
            return Box::pin(fut::ready(Err(unknown_topic(&msg.name))));
        }
        // The change alone, checked as a broker alone checks it (keys, types,
        // ranges, a key both set and deleted) against this broker's copy.
        let checked = self.broker.send(broker::AlterTopicConfig {
            name: msg.name.clone(),
            set: settings(&msg.set),
            delete: msg.delete.clone(),
            validate_only: true,
        });
        let broker = self.broker.clone();
        let name = msg.name.clone();
        let write = async move {
            checked.await.map_err(BrokerError::from)??;
            for _ in 0..ALTER_ATTEMPTS {
                let (current, version) = topics::read_config(&client, &msg.name).await.map_err(write_error)?;
                let mut merged = current.clone();
                for key in &msg.delete {
                    merged.remove(key);
                }
                merged.extend(msg.set.iter().map(|(k, v)| (k.clone(), v.clone())));
                // The settings as they will be, checked whole: what another
                // broker changed meanwhile counts.
                let answer = broker.send(whole(&msg.name, &merged, true)).await.map_err(BrokerError::from)??;
                if msg.validate_only || merged == current {
                    return Ok((answer, None));
                }
                if topics::write_config(&client, &msg.name, &merged, version).await.map_err(write_error)? {
                    return Ok((answer, Some(merged)));
                }
            }
            Err(zookeeper_error(TopicWriteError::Contended(msg.name)))
        };
        Box::pin(write.into_actor(self).then(move |written, act, ctx| {
            let waited = written.map(|(answer, merged)| {
                let waited = merged.map(|merged| act.await_change(Awaited::Configured(name, merged), ctx));
                (answer, waited)
            });
            async move {
                let (answer, waited) = waited?;
                if let Some(waited) = waited {
                    wait(waited).await?;
                }
                Ok(answer)
            }
            .into_actor(act)
        }))
    }
}

impl ClusterNode {
    /// Whether `name` has at least `total` partitions in the cluster, each
    /// led, and as many here.
    pub(super) fn grown(&self, name: &str, total: u32) -> bool {
        let Some(view) = self.topics.get(name) else { return false };
        let led = view.partitions.len() >= total as usize
            && view.partitions.iter().all(|p| p.state.as_ref().is_some_and(|(s, _)| s.leader >= 0));
        led && self.local.get(name) == Some(&view.topic_id)
            && self.shapes.get(name).is_some_and(|s| s.partitions >= total)
    }

    /// Whether the local copy of `name` has `config` applied, or the topic
    /// is gone.
    pub(super) fn configured(&self, name: &str, config: &BTreeMap<String, ConfigValue>) -> bool {
        !self.topics.contains_key(name) || self.shapes.get(name).and_then(|s| s.config.as_ref()) == Some(config)
    }

    /// Brings a local copy that has the cluster's topic id in line with the
    /// cluster's partition count, then its settings (called by
    /// `reconcile_local`, which skips topics already being changed).
    pub(super) fn adjust_local(&mut self, name: &str, ctx: &mut Context<Self>) {
        let Some(view) = self.topics.get(name) else { return };
        let wanted = view.partitions.len() as u32;
        let config = view.config.clone();
        let shape = self.shapes.get(name).cloned().unwrap_or(LocalShape { partitions: 0, config: None });
        let broker = self.broker.clone();
        let topic = name.to_string();
        let work: LocalBoxFuture<'static, Result<LocalShape, BrokerError>> = if shape.partitions < wanted {
            Box::pin(async move {
                let addr = broker.send(broker::LookupTopic { name: topic }).await.map_err(BrokerError::from)??;
                let partitions = match addr.send(topic::AddPartitions { total: i64::from(wanted) }).await {
                    Ok(Ok(total)) => total,
                    // Grown meanwhile (or before this broker knew it): as far as it is.
                    Ok(Err(err)) if err.code == ErrorCode::INVALID_PARTITIONS => {
                        addr.send(topic::PartitionCount).await.map_err(BrokerError::from)?
                    }
                    Ok(Err(err)) => return Err(err),
                    Err(err) => return Err(err.into()),
                };
                Ok(LocalShape { partitions, ..shape })
            })
        } else if shape.config.as_ref() != Some(&config) {
            Box::pin(async move {
                match broker.send(whole(&topic, &config, false)).await.map_err(BrokerError::from)? {
                    Ok(_) => {}
                    // This broker's limits refuse what the cluster asks:
                    // its copy keeps its settings, and it is not tried again.
                    Err(err) if err.code == ErrorCode::INVALID_CONFIG => {
                        tracing::error!(%topic, %err, "cannot give the local copy the cluster's settings");
                    }
                    Err(err) => return Err(err),
                }
                Ok(LocalShape { config: Some(config), ..shape })
            })
        } else {
            return;
        };
        self.reconciling.insert(name.to_string());
        let name = name.to_string();
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.reconciling.remove(&name);
            match result {
                Ok(shape) => {
                    tracing::info!(topic = %name, partitions = shape.partitions, "the local copy follows the cluster's topic");
                    act.shapes.insert(name.clone(), shape);
                }
                Err(err) => {
                    tracing::warn!(topic = %name, %err, "cannot bring the local topic in line with the cluster; retrying");
                    ctx.run_later(Duration::from_secs(1), move |act, ctx| act.reconcile_local(&[name], ctx));
                    return;
                }
            }
            act.reconcile_local(std::slice::from_ref(&name), ctx);
            act.apply_roles(std::slice::from_ref(&name), ctx);
            act.answer_waits();
        }));
    }
}
