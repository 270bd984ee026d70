//! What a custom actor gets at start: handles on the broker, used through
//! the same actor messages the frontend sends, with the same errors.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use herald_actors::broker::{self, Broker, ListedTopic};
use herald_actors::error::BrokerError;
use herald_actors::group::Groups;
use herald_actors::topic::{self, TopicDescription};
use herald_actors::topic_route::Route;
use herald_wire::batch::Record;

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
    /// In a cluster: where to find a group's coordinator when it is another
    /// broker (`progress.rs`), and a connection to each such broker.
    pub(super) cluster: Option<Addr<crate::cluster::ClusterNode>>,
    pub(super) coordinators: Arc<Mutex<HashMap<i32, herald_client::Client>>>,
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
        let (routes, coordinators) = (Arc::default(), Arc::default());
        ExtensionContext { broker, groups, name: name.to_owned(), routes, cluster, coordinators }
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
    /// `storage.flush` promises, like a `produce` with `acks` -1.
    ///
    /// # Errors
    ///
    /// As `produce` on the wire; the first partition's error when several
    /// partitions were written and one failed (the others' records stand).
    pub async fn produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<Record>,
    ) -> Result<Vec<Produced>, BrokerError> {
        let route = self.route(topic).await?;
        let appends = topic::send_routed(route.route(partition, records)?, topic::Acks::LEADER).await;
        appends
            .into_iter()
            .map(|append| {
                let appended = append.result?;
                Ok(Produced {
                    partition: append.partition,
                    base_offset: appended.base_offset,
                    record_count: append.record_count,
                })
            })
            .collect()
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

    pub(super) async fn topic(&self, name: &str) -> Result<Addr<topic::Topic>, BrokerError> {
        self.broker.send(broker::LookupTopic { name: name.into() }).await.unwrap_or_else(|e| Err(e.into()))
    }
}

/// Nothing that holds these locks can panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
