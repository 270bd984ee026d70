//! Topics on a [`ClusterNode`]: the admin requests any broker takes
//! (create and delete, written to ZooKeeper for the controller to carry
//! out), and the local copies: every broker keeps every topic of the
//! cluster in its own broker directory, created with the cluster's topic id
//! and settings (grown and given new settings in `node_admin.rs`), and
//! deleted when the cluster deletes it (or replaced when
//! the cluster's topic of that name has another id: the local one belongs
//! to a topic deleted while this broker was away). A local topic the
//! cluster never had is left alone, with a warning: nothing proves its data
//! is not wanted.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use herald_actors::broker;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::topic_config::ConfigValue as Setting;
use herald_wire::protocol::ConfigValue;
use tokio::sync::oneshot;

use super::node::ClusterNode;
use super::node_admin::LocalShape;
use super::topics::{self, Placeable, TopicAssignment, TopicConfigRecord, TopicWriteError};

/// How long a create or delete waits for the cluster to carry it out
/// before answering REQUEST_TIMED_OUT (the change still happens).
const CARRIED_OUT_WITHIN: Duration = Duration::from_secs(10);

/// Create a topic in the cluster.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct CreateClusterTopic {
    pub name: String,
    pub partitions: i64,
    pub replication_factor: Option<i32>,
    pub config: BTreeMap<String, ConfigValue>,
    /// Set by the broker itself for `__consumer_offsets`, which clients may
    /// not create.
    pub internal: bool,
}

/// Refuses a client's change to `__consumer_offsets`, which the brokers
/// keep themselves.
pub(super) fn refuse_internal(name: &str, what: &str) -> Result<(), BrokerError> {
    if name == herald_wire::protocol::OFFSETS_TOPIC {
        return Err(BrokerError::new(
            ErrorCode::INVALID_REQUEST,
            format!("{what} `{name}`: the brokers keep this internal topic themselves"),
        ));
    }
    Ok(())
}

/// Delete a topic from the cluster.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct DeleteClusterTopic {
    pub name: String,
}

/// What a waiting admin change waits for.
pub(super) enum Awaited {
    /// The topic exists here with every partition led.
    Ready(String),
    /// The topic is gone.
    Gone(String),
    /// The topic has at least this many partitions, each led, here too.
    Grown(String, u32),
    /// The local copy of the topic has these settings (the cluster's
    /// overrides), or the topic is gone.
    Configured(String, BTreeMap<String, ConfigValue>),
}

pub(super) fn settings(config: &BTreeMap<String, ConfigValue>) -> BTreeMap<String, Setting> {
    config
        .iter()
        .map(|(k, v)| {
            let v = match v {
                ConfigValue::Int(n) => Setting::Int(*n),
                ConfigValue::Str(s) => Setting::Str(s.clone()),
            };
            (k.clone(), v)
        })
        .collect()
}

pub(super) fn zookeeper_error(err: impl std::fmt::Display) -> BrokerError {
    BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, format!("ZooKeeper refused the change: {err}"))
}

pub(super) fn not_in_cluster() -> BrokerError {
    BrokerError::new(
        ErrorCode::LEADER_NOT_AVAILABLE,
        "this broker is between ZooKeeper sessions; try again or ask another broker",
    )
}

impl Handler<CreateClusterTopic> for ClusterNode {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: CreateClusterTopic, _: &mut Context<Self>) -> Self::Result {
        if !msg.internal {
            if let Err(err) = refuse_internal(&msg.name, "cannot create") {
                return Box::pin(fut::ready(Err(err)));
            }
        }
        let Some(client) = self.client.clone() else { return Box::pin(fut::ready(Err(not_in_cluster()))) };
        let live: Vec<Placeable> = self.brokers.iter().map(|b| Placeable { id: b.id, rack: b.rack.clone() }).collect();
        let factor = match msg.replication_factor {
            Some(f) => f,
            None => (self.settings.default_replication_factor as i32).min(live.len() as i32),
        };
        if factor < 1 || factor as usize > live.len() {
            return Box::pin(fut::ready(Err(BrokerError::new(
                ErrorCode::INVALID_REPLICATION_FACTOR,
                format!("replication factor {factor} for topic `{}`: {} brokers are alive", msg.name, live.len()),
            ))));
        }
        let validated = self.broker.send(broker::ValidateTopic {
            name: msg.name.clone(),
            partitions: msg.partitions,
            config: settings(&msg.config),
        });
        let name = msg.name.clone();
        let write = async move {
            validated.await.map_err(BrokerError::from)??;
            let topic_id = herald_actors::topic::new_topic_id()
                .map_err(|err| BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, err.to_string()))?;
            let start = topic_id.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            let placed = topics::assign(&live, msg.partitions as u32, factor as usize, start);
            let assignment = TopicAssignment {
                version: 2,
                partitions: placed.into_iter().enumerate().map(|(p, r)| (p.to_string(), r)).collect(),
                topic_id,
            };
            let config = TopicConfigRecord {
                version: 1,
                config: msg.config.iter().map(|(k, v)| (k.clone(), v.into())).collect(),
            };
            topics::create(&client, &msg.name, &assignment, &config).await.map_err(|err| match err {
                TopicWriteError::Exists(name) => {
                    BrokerError::new(ErrorCode::TOPIC_ALREADY_EXISTS, format!("topic `{name}` already exists"))
                }
                other => zookeeper_error(other),
            })
        };
        Box::pin(write.into_actor(self).then(move |written, act, ctx| {
            let waited = written.map(|()| act.await_change(Awaited::Ready(name), ctx));
            async move { wait(waited?).await }.into_actor(act)
        }))
    }
}

impl Handler<DeleteClusterTopic> for ClusterNode {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: DeleteClusterTopic, _: &mut Context<Self>) -> Self::Result {
        if let Err(err) = refuse_internal(&msg.name, "cannot delete") {
            return Box::pin(fut::ready(Err(err)));
        }
        let Some(client) = self.client.clone() else { return Box::pin(fut::ready(Err(not_in_cluster()))) };
        let name = msg.name.clone();
        let write = async move {
            topics::request_delete(&client, &msg.name).await.map_err(|err| match err {
                TopicWriteError::Missing(name) => {
                    BrokerError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{name}` does not exist"))
                }
                other => zookeeper_error(other),
            })
        };
        Box::pin(write.into_actor(self).then(move |written, act, ctx| {
            let waited = written.map(|()| act.await_change(Awaited::Gone(name), ctx));
            async move { wait(waited?).await }.into_actor(act)
        }))
    }
}

pub(super) async fn wait(waited: oneshot::Receiver<()>) -> Result<(), BrokerError> {
    match tokio::time::timeout(CARRIED_OUT_WITHIN, waited).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(BrokerError::new(
            ErrorCode::REQUEST_TIMED_OUT,
            "the change is written; the cluster has not carried it out yet (describe the topic to follow it)",
        )),
    }
}

impl ClusterNode {
    /// A receiver answered once `awaited` holds (at once if it does).
    pub(super) fn await_change(&mut self, awaited: Awaited, _: &mut Context<Self>) -> oneshot::Receiver<()> {
        let (done, waited) = oneshot::channel();
        if self.holds(&awaited) {
            let _ = done.send(());
        } else {
            self.awaiting.push((awaited, done));
        }
        waited
    }

    fn holds(&self, awaited: &Awaited) -> bool {
        match awaited {
            Awaited::Ready(name) => {
                let led = self
                    .topics
                    .get(name)
                    .is_some_and(|t| t.partitions.iter().all(|p| p.state.as_ref().is_some_and(|(s, _)| s.leader >= 0)));
                led && self.topics.get(name).map(|t| &t.topic_id) == self.local.get(name)
            }
            Awaited::Gone(name) => !self.topics.contains_key(name) && !self.local.contains_key(name),
            Awaited::Grown(name, total) => self.grown(name, *total),
            Awaited::Configured(name, config) => self.configured(name, config),
        }
    }

    /// Answers the waits that now hold.
    pub(super) fn answer_waits(&mut self) {
        let waiting = std::mem::take(&mut self.awaiting);
        for (awaited, done) in waiting {
            if self.holds(&awaited) {
                let _ = done.send(());
            } else if !done.is_closed() {
                self.awaiting.push((awaited, done));
            }
        }
    }

    /// Brings the local copies of `names` in line with the cluster's topics.
    pub(super) fn reconcile_local(&mut self, names: &[String], ctx: &mut Context<Self>) {
        if !self.local_loaded {
            return;
        }
        for name in names {
            if self.reconciling.contains(name) {
                continue;
            }
            let cluster = self.topics.get(name).map(|t| (t.topic_id.clone(), t.partitions.len(), t.config.clone()));
            let local = self.local.get(name).cloned();
            let step = match (&cluster, &local) {
                (Some((id, ..)), Some(local_id)) if id == local_id => {
                    self.adjust_local(name, ctx);
                    continue;
                }
                (Some(_), Some(_)) => Step::Replace,
                (Some(_), None) => Step::Create,
                (None, Some(local_id)) if self.seen.get(name).is_some_and(|ids| ids.contains(local_id)) => Step::Delete,
                (None, Some(_)) => {
                    if self.warned_stray.insert(name.clone()) {
                        tracing::warn!(topic = %name, "a local topic the cluster does not have: left as it is, not served");
                    }
                    continue;
                }
                (None, None) => continue,
            };
            self.reconciling.insert(name.clone());
            let broker = self.broker.clone();
            let topic = name.clone();
            let work = async move {
                if matches!(step, Step::Delete | Step::Replace) {
                    match broker.send(broker::DeleteTopic { name: topic.clone() }).await.map_err(BrokerError::from)? {
                        Ok(()) => {}
                        Err(err) if err.code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => {}
                        Err(err) => return Err(err),
                    }
                }
                let Some((topic_id, partitions, config)) = cluster.filter(|_| !matches!(step, Step::Delete)) else {
                    return Ok(None);
                };
                let created = broker
                    .send(broker::CreateTopic {
                        name: topic.clone(),
                        partitions: partitions as i64,
                        config: settings(&config),
                        topic_id: Some(topic_id.clone()),
                    })
                    .await
                    .map_err(BrokerError::from)?;
                let shape = LocalShape { partitions: partitions as u32, config: Some(config) };
                created.map(|()| Some((topic_id, shape)))
            };
            let name = name.clone();
            ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
                act.reconciling.remove(&name);
                match result {
                    Ok(Some((topic_id, shape))) => {
                        tracing::info!(topic = %name, %topic_id, "the cluster's topic is kept here");
                        act.local.insert(name.clone(), topic_id);
                        act.shapes.insert(name.clone(), shape);
                    }
                    Ok(None) => {
                        tracing::info!(topic = %name, "the cluster deleted the topic; deleted here");
                        act.local.remove(&name);
                        act.shapes.remove(&name);
                    }
                    Err(err) => {
                        tracing::warn!(topic = %name, %err, "cannot bring the local topic in line with the cluster; retrying");
                        ctx.run_later(Duration::from_secs(1), move |act, ctx| act.reconcile_local(&[name], ctx));
                        return;
                    }
                }
                // The cluster may have moved on meanwhile.
                act.reconcile_local(std::slice::from_ref(&name), ctx);
                act.apply_roles(&[name], ctx);
                act.answer_waits();
            }));
        }
    }

    /// Reads the local topics once, then reconciles them all.
    pub(super) fn load_local(&mut self, ctx: &mut Context<Self>) {
        let listed = self.broker.send(broker::ListTopics);
        ctx.spawn(listed.into_actor(self).map(|listed, act, ctx| match listed {
            Ok(listed) => {
                let listed: Vec<_> = listed.into_iter().filter(|t| t.topic_id.is_some()).collect();
                act.shapes = listed
                    .iter()
                    .map(|t| (t.name.clone(), LocalShape { partitions: t.partitions, config: None }))
                    .collect();
                act.local = listed.into_iter().filter_map(|t| t.topic_id.map(|id| (t.name, id))).collect();
                act.local_loaded = true;
                let names: Vec<String> = act.topics.keys().chain(act.local.keys()).cloned().collect();
                act.reconcile_local(&names, ctx);
                act.apply_roles(&names, ctx);
                act.answer_waits();
            }
            Err(err) => tracing::error!(%err, "cannot list the local topics"),
        }));
    }
}

#[derive(Clone, Copy)]
enum Step {
    Create,
    Delete,
    Replace,
}
