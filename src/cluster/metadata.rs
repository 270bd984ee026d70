//! What every broker knows of the cluster's topics: each topic's
//! assignment, settings and partition states, kept from persistent
//! recursive watches on `/brokers/topics` and `/config/topics` (and re-read
//! whole after a reconnection, when ZooKeeper may have dropped events).

use std::collections::BTreeMap;

use zookeeper_client as zk;

use herald_wire::protocol::ConfigValue;

use super::topics::{
    config_path, state_path, topic_path, PartitionState, TopicAssignment, TopicConfigRecord, TOPICS, TOPIC_CONFIGS,
};

/// One partition as ZooKeeper holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub replicas: Vec<i32>,
    /// The state and its znode's version; `None` before the controller
    /// wrote the first.
    pub state: Option<(PartitionState, i32)>,
}

/// One topic as ZooKeeper holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub topic_id: String,
    pub partitions: Vec<PartitionView>,
    /// The settings the topic overrides.
    pub config: BTreeMap<String, ConfigValue>,
}

/// Every topic, by name.
pub type Topics = BTreeMap<String, TopicView>;

/// A change seen under `/brokers/topics`.
#[derive(Debug, Clone)]
pub enum TopicChange {
    /// Everything, read again.
    All(Topics),
    /// One topic, read again; `None` when it is gone.
    Topic(String, Option<TopicView>),
    /// One partition's state, read again.
    State { topic: String, partition: u32, state: Option<(PartitionState, i32)> },
    /// One topic's settings, read again.
    Config { topic: String, config: BTreeMap<String, ConfigValue> },
}

/// Where changes go.
pub trait OnTopics {
    fn changed(&self, change: TopicChange);
}

/// Watches `/brokers/topics` and `/config/topics` for as long as the
/// session lasts, reporting every change.
///
/// # Errors
///
/// The session ended, or ZooKeeper refused a read.
pub async fn watch_topics(client: &zk::Client, report: &impl OnTopics) -> Result<(), zk::Error> {
    ensure(client, TOPICS).await?;
    ensure(client, TOPIC_CONFIGS).await?;
    // Watch first, then read: nothing that changes after the read is missed.
    let mut watcher = client.watch(TOPICS, zk::AddWatchMode::PersistentRecursive).await?;
    let mut configs = client.watch(TOPIC_CONFIGS, zk::AddWatchMode::PersistentRecursive).await?;
    report.changed(TopicChange::All(read_all(client).await?));
    loop {
        let event = tokio::select! {
            event = watcher.changed() => event,
            event = configs.changed() => {
                if event.event_type == zk::EventType::Session {
                    // The watch on `/brokers/topics` sees the same and reads everything again.
                    if event.session_state.is_terminated() {
                        return Err(zk::Error::SessionExpired);
                    }
                    continue;
                }
                // Settings go with their topic, which the other watch sees go.
                if event.event_type == zk::EventType::NodeDeleted {
                    continue;
                }
                let Some(topic) = event.path.strip_prefix(TOPIC_CONFIGS).and_then(|r| r.strip_prefix('/')) else {
                    continue;
                };
                if !topic.contains('/') {
                    let config = read_config(client, topic).await?;
                    report.changed(TopicChange::Config { topic: topic.to_string(), config });
                }
                continue;
            }
        };
        match event.event_type {
            zk::EventType::Session => {
                if event.session_state.is_terminated() {
                    return Err(zk::Error::SessionExpired);
                }
                if event.session_state == zk::SessionState::SyncConnected {
                    report.changed(TopicChange::All(read_all(client).await?));
                }
            }
            _ => {
                let Some(rest) = event.path.strip_prefix(TOPICS).and_then(|r| r.strip_prefix('/')) else { continue };
                let parts: Vec<&str> = rest.split('/').collect();
                match parts.as_slice() {
                    [topic] => report.changed(TopicChange::Topic(topic.to_string(), read_topic(client, topic).await?)),
                    [topic, "partitions", p, "state"] => {
                        let Ok(partition) = p.parse() else { continue };
                        let state = read_state(client, topic, partition).await?;
                        report.changed(TopicChange::State { topic: topic.to_string(), partition, state });
                    }
                    _ => {}
                }
            }
        }
    }
}

async fn ensure(client: &zk::Client, path: &str) -> Result<(), zk::Error> {
    super::registry::ensure_path(client, path).await.map_err(|err| match err {
        super::registry::RegistryError::Refused { source, .. }
        | super::registry::RegistryError::Unreachable { source, .. } => source,
        super::registry::RegistryError::Taken { .. } => zk::Error::NodeExists,
    })
}

/// Every topic.
///
/// # Errors
///
/// ZooKeeper refused a read.
pub async fn read_all(client: &zk::Client) -> Result<Topics, zk::Error> {
    let mut topics = Topics::new();
    let names = match client.list_children(TOPICS).await {
        Ok(names) => names,
        Err(zk::Error::NoNode) => return Ok(topics),
        Err(err) => return Err(err),
    };
    for name in names {
        if let Some(view) = read_topic(client, &name).await? {
            topics.insert(name, view);
        }
    }
    Ok(topics)
}

/// One topic; `None` when it does not exist (or its assignment does not
/// parse, which is logged).
///
/// # Errors
///
/// ZooKeeper refused a read.
pub async fn read_topic(client: &zk::Client, topic: &str) -> Result<Option<TopicView>, zk::Error> {
    let data = match client.get_data(&topic_path(topic)).await {
        Ok((data, _)) => data,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(err) => return Err(err),
    };
    let Some(assignment) = serde_json::from_slice::<TopicAssignment>(&data).ok() else {
        tracing::warn!(topic, "the topic's assignment in ZooKeeper does not parse; ignoring the topic");
        return Ok(None);
    };
    let Some(replicas) = assignment.replicas() else {
        tracing::warn!(topic, "the topic's partitions in ZooKeeper are not numbered 0, 1, 2, ...; ignoring the topic");
        return Ok(None);
    };
    let mut partitions = Vec::with_capacity(replicas.len());
    for (p, replicas) in replicas.into_iter().enumerate() {
        partitions.push(PartitionView { replicas, state: read_state(client, topic, p as u32).await? });
    }
    let config = read_config(client, topic).await?;
    Ok(Some(TopicView { topic_id: assignment.topic_id, partitions, config }))
}

/// The settings a topic overrides; none when it has no settings znode (or
/// it does not parse, which is logged).
///
/// # Errors
///
/// ZooKeeper refused the read.
async fn read_config(client: &zk::Client, topic: &str) -> Result<BTreeMap<String, ConfigValue>, zk::Error> {
    match client.get_data(&config_path(topic)).await {
        Ok((data, _)) => match serde_json::from_slice::<TopicConfigRecord>(&data) {
            Ok(record) => Ok(record.config.iter().map(|(k, v)| (k.clone(), v.into())).collect()),
            Err(err) => {
                tracing::warn!(topic, %err, "a topic's settings in ZooKeeper do not parse; taken as none");
                Ok(BTreeMap::new())
            }
        },
        Err(zk::Error::NoNode) => Ok(BTreeMap::new()),
        Err(err) => Err(err),
    }
}

/// One partition's state and its version; `None` when it has none (or it
/// does not parse, which is logged).
///
/// # Errors
///
/// ZooKeeper refused the read.
pub async fn read_state(
    client: &zk::Client,
    topic: &str,
    partition: u32,
) -> Result<Option<(PartitionState, i32)>, zk::Error> {
    match client.get_data(&state_path(topic, partition)).await {
        Ok((data, stat)) => match serde_json::from_slice(&data) {
            Ok(state) => Ok(Some((state, stat.version))),
            Err(err) => {
                tracing::warn!(topic, partition, %err, "a partition state in ZooKeeper does not parse");
                Ok(None)
            }
        },
        Err(zk::Error::NoNode) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Applies `change` to `topics`; the names of the topics it touched.
pub fn apply(topics: &mut Topics, change: TopicChange) -> Vec<String> {
    match change {
        TopicChange::All(all) => {
            let mut touched: Vec<String> = topics.keys().chain(all.keys()).cloned().collect();
            touched.sort();
            touched.dedup();
            *topics = all;
            touched
        }
        TopicChange::Topic(name, Some(view)) => {
            topics.insert(name.clone(), view);
            vec![name]
        }
        TopicChange::Topic(name, None) => {
            topics.remove(&name);
            vec![name]
        }
        TopicChange::State { topic, partition, state } => {
            let Some(view) = topics.get_mut(&topic) else { return Vec::new() };
            let Some(p) = view.partitions.get_mut(partition as usize) else { return Vec::new() };
            // A late read never replaces a newer version.
            let newer = match (&p.state, &state) {
                (Some((_, old)), Some((_, new))) => new > old,
                _ => true,
            };
            if newer {
                p.state = state;
            }
            vec![topic]
        }
        TopicChange::Config { topic, config } => {
            // A topic not known yet gets its settings when it is read.
            let Some(view) = topics.get_mut(&topic) else { return Vec::new() };
            if view.config == config {
                return Vec::new();
            }
            view.config = config;
            vec![topic]
        }
    }
}
