//! What a custom actor gets at start: handles on the broker, used through
//! the same actor messages the frontend sends, with the same errors.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use herald_actors::broker::{self, Broker, ListedTopic};
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::group::Groups;
use herald_actors::topic::{self, TopicDescription};
use herald_actors::topic_route::{self, Route};
use herald_wire::batch::Record;
use herald_wire::protocol::{op, ProduceRequest, ProduceResponse};

use crate::cluster::{FindLeader, LeaderAt};

/// Handles on the running broker for a custom actor. Cheap to clone. The
/// extension API grows here; its fields are not public.
#[derive(Clone)]
pub struct ExtensionContext {
    broker: Addr<Broker>,
    pub(super) groups: Addr<Groups>,
    name: String,
    /// Topics' routes, as a connection keeps them: produce and fetch go
    /// straight to the partitions' actors.
    routes: Arc<Mutex<HashMap<String, Arc<Route>>>>,
    /// In a cluster: where to find a group's coordinator (`progress.rs`) or
    /// a partition's leader (`partition_feed.rs`) when it is another broker,
    /// and a connection to each such broker.
    pub(super) cluster: Option<Addr<crate::cluster::ClusterNode>>,
    peers: Arc<Mutex<HashMap<i32, herald_client::Client>>>,
}

/// Where a produced record batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub partition: u32,
    pub base_offset: i64,
    pub record_count: u32,
}

impl ExtensionContext {
    pub(crate) fn new(
        broker: Addr<Broker>,
        groups: Addr<Groups>,
        cluster: Option<Addr<crate::cluster::ClusterNode>>,
        name: &str,
    ) -> ExtensionContext {
        let (routes, peers) = (Arc::default(), Arc::default());
        ExtensionContext { broker, groups, name: name.to_owned(), routes, cluster, peers }
    }

    /// The name the custom actor was registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates a topic with `partitions` partitions and default settings.
    ///
    /// # Errors
    ///
    /// As `create_topic` on the wire: `TOPIC_ALREADY_EXISTS`,
    /// `INVALID_TOPIC_EXCEPTION`, `INVALID_PARTITIONS`, a storage error.
    pub async fn create_topic(&self, name: &str, partitions: u32) -> Result<(), BrokerError> {
        let sent = self.broker.send(broker::CreateTopic {
            name: name.into(),
            partitions: partitions.into(),
            config: BTreeMap::new(),
            topic_id: None,
        });
        sent.await.unwrap_or_else(|e| Err(e.into()))
    }

    /// Every topic, as `list_topics` reports it.
    ///
    /// # Errors
    ///
    /// The broker's actor is gone (shutting down).
    pub async fn list_topics(&self) -> Result<Vec<ListedTopic>, BrokerError> {
        self.broker.send(broker::ListTopics).await.map_err(BrokerError::from)
    }

    /// A topic's settings and partitions, as `describe_topic` reports them.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION`, or the topic's actor is gone.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, BrokerError> {
        let topic = self.topic(name).await?;
        topic.send(topic::DescribeTopic).await.unwrap_or_else(|e| Err(e.into()))
    }

    /// Appends `records` to `partition`, or to partitions chosen by key (the
    /// client's partitioner) when `None`; answers once they are durable as
    /// `storage.flush` promises, like a `produce` with `acks` -1: in a
    /// cluster, once every in-sync replica has them. A partition another
    /// broker leads gets its batch from here over the wire.
    ///
    /// # Errors
    ///
    /// As `produce` on the wire; the first partition's error when several
    /// partitions were written and one failed (the others' records stand).
    /// In a cluster, `NOT_LEADER_OR_FOLLOWER` while a partition's leader
    /// moves, and `LEADER_NOT_AVAILABLE` when it cannot be reached: retry.
    pub async fn produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<Record>,
    ) -> Result<Vec<Produced>, BrokerError> {
        let route = self.route(topic).await?;
        let routed = route.route(partition, records)?;
        let Some(node) = &self.cluster else {
            return topic::send_routed(routed, topic::Acks::ALL).await.into_iter().map(produced).collect();
        };
        let (mut here, mut there) = (Vec::new(), Vec::new());
        for one in routed {
            let found = node.send(FindLeader { topic: topic.to_owned(), partition: one.partition }).await;
            match found {
                Ok(LeaderAt::There(id, address)) => there.push((one, id, address)),
                _ => here.push(one),
            }
        }
        let remote = there.into_iter().map(|(one, id, address)| self.produce_there(node, topic, one, id, address));
        let (local, remote) =
            futures::future::join(topic::send_routed(here, topic::Acks::ALL), futures::future::join_all(remote)).await;
        let mut all: Vec<Result<Produced, BrokerError>> = local.into_iter().map(produced).chain(remote).collect();
        all.sort_by_key(|one| one.as_ref().map_or(0, |p| p.partition));
        match all.iter().position(Result::is_err) {
            Some(failed) => Err(all.swap_remove(failed).unwrap_err()),
            None => all.into_iter().collect(),
        }
    }

    /// Sends one partition's batch to its leader, broker `id` at `address`,
    /// as a client's `produce` with `acks` -1.
    async fn produce_there(
        &self,
        node: &Addr<crate::cluster::ClusterNode>,
        topic: &str,
        routed: topic_route::Routed,
        id: i32,
        address: String,
    ) -> Result<Produced, BrokerError> {
        let batch = routed.batch?.freeze();
        let client = self.peer(node, id, &address).await.map_err(|err| from_peer(&err))?;
        let request = ProduceRequest {
            topic: topic.to_owned(),
            partition: Some(i64::from(routed.partition)),
            acks: -1,
            records: Vec::new(),
            batch: Some(batch),
        };
        let answer: ProduceResponse = client.request(op::PRODUCE, &request).await.map_err(|err| from_peer(&err))?;
        let Some(one) = answer.partitions.into_iter().next() else {
            return Err(BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, "the leader answered no partition"));
        };
        if one.error_code != 0 {
            let code = ErrorCode::from_code(one.error_code).unwrap_or(ErrorCode::UNKNOWN_SERVER_ERROR);
            return Err(BrokerError::new(code, one.error_message.unwrap_or_default()));
        }
        Ok(Produced { partition: one.partition, base_offset: one.base_offset, record_count: one.record_count })
    }

    /// The topic's route: cached while it is open (a closed one may have
    /// been deleted and created anew), else looked up.
    pub(crate) async fn route(&self, topic: &str) -> Result<Arc<Route>, BrokerError> {
        let cached = lock(&self.routes).get(topic).filter(|route| !route.is_closed()).cloned();
        if let Some(route) = cached {
            return Ok(route);
        }
        let addr = self.topic(topic).await?;
        let route = addr.send(topic::GetRoute).await.map_err(BrokerError::from)?;
        lock(&self.routes).insert(topic.to_owned(), route.clone());
        Ok(route)
    }

    /// A connection to broker `id` of the cluster of `node`, at `address`:
    /// the one kept for it while open, else a new one, made as this broker
    /// reaches the others (docs/security.md, "Between brokers").
    pub(super) async fn peer(
        &self,
        node: &Addr<crate::cluster::ClusterNode>,
        id: i32,
        address: &str,
    ) -> Result<herald_client::Client, herald_client::ClientError> {
        let kept = lock(&self.peers).get(&id).filter(|c| !c.is_closed()).cloned();
        if let Some(client) = kept {
            return Ok(client);
        }
        let peers = node.send(crate::cluster::GetPeers).await.map_err(|_| herald_client::ClientError::Closed)?;
        let client = peers.connect(address, &format!("herald-extension-{}", self.name)).await?;
        lock(&self.peers).insert(id, client.clone());
        Ok(client)
    }

    pub(super) async fn topic(&self, name: &str) -> Result<Addr<topic::Topic>, BrokerError> {
        self.broker.send(broker::LookupTopic { name: name.into() }).await.unwrap_or_else(|e| Err(e.into()))
    }
}

/// One partition's append as the extension sees it.
fn produced(append: topic::PartitionAppend) -> Result<Produced, BrokerError> {
    let appended = append.result?;
    Ok(Produced { partition: append.partition, base_offset: appended.base_offset, record_count: append.record_count })
}

/// Another broker's answer (or the failure to reach it) as this broker's
/// own error: its code and damaged range, or `LEADER_NOT_AVAILABLE` (retry)
/// when it could not be reached.
pub(super) fn from_peer(err: &herald_client::ClientError) -> BrokerError {
    match err.code().and_then(ErrorCode::from_code) {
        Some(code) => BrokerError { code, message: err.to_string(), damaged: err.damaged().map(Box::new) },
        None => {
            BrokerError::new(ErrorCode::LEADER_NOT_AVAILABLE, format!("another broker could not be reached: {err}"))
        }
    }
}

/// Nothing that holds these locks can panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
