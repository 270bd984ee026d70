//! Topics in ZooKeeper (Kafka's layout, docs/cluster.md):
//!
//! - `/brokers/topics/<topic>`: the replica assignment, partition → broker
//!   ids, the first being the preferred leader; and the topic's id;
//! - `/brokers/topics/<topic>/partitions/<p>/state`: the partition's leader,
//!   leader epoch and in-sync replicas, with the epoch of the controller that
//!   last decided them;
//! - `/config/topics/<topic>`: the settings the topic overrides;
//! - `/admin/delete_topics/<topic>`: a request to delete the topic, carried
//!   out by the controller.
//!
//! Any broker writes the first, third and fourth (what an admin request
//! asks for); only the controller and the partition's leader write a state,
//! each conditionally on the version it read.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use herald_wire::protocol::ConfigValue;

/// The topics' assignments.
pub const TOPICS: &str = "/brokers/topics";
/// The topics' settings.
pub const TOPIC_CONFIGS: &str = "/config/topics";
/// The topics asked to be deleted.
pub const DELETE_TOPICS: &str = "/admin/delete_topics";

/// `/brokers/topics/<topic>`.
pub fn topic_path(topic: &str) -> String {
    format!("{TOPICS}/{topic}")
}

/// `/brokers/topics/<topic>/partitions`.
pub fn partitions_path(topic: &str) -> String {
    format!("{TOPICS}/{topic}/partitions")
}

/// `/brokers/topics/<topic>/partitions/<p>`.
pub fn partition_path(topic: &str, partition: u32) -> String {
    format!("{TOPICS}/{topic}/partitions/{partition}")
}

/// `/brokers/topics/<topic>/partitions/<p>/state`.
pub fn state_path(topic: &str, partition: u32) -> String {
    format!("{TOPICS}/{topic}/partitions/{partition}/state")
}

/// `/config/topics/<topic>`.
pub fn config_path(topic: &str) -> String {
    format!("{TOPIC_CONFIGS}/{topic}")
}

/// What `/brokers/topics/<topic>` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicAssignment {
    pub version: u32,
    /// Partition number (as a string, as Kafka writes it) → replica broker ids.
    pub partitions: BTreeMap<String, Vec<i32>>,
    pub topic_id: String,
}

impl TopicAssignment {
    /// The replicas of each partition, in partition order; `None` when the
    /// partition numbers are not 0, 1, 2, ...
    pub fn replicas(&self) -> Option<Vec<Vec<i32>>> {
        let mut by_number: Vec<(u32, &Vec<i32>)> =
            self.partitions.iter().map(|(p, r)| p.parse().ok().map(|p| (p, r))).collect::<Option<_>>()?;
        by_number.sort_by_key(|(p, _)| *p);
        by_number
            .iter()
            .enumerate()
            .all(|(i, (p, _))| i as u32 == *p)
            .then(|| by_number.into_iter().map(|(_, r)| r.clone()).collect())
    }
}

/// What `/brokers/topics/<topic>/partitions/<p>/state` holds (Kafka's layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub controller_epoch: i32,
    /// The leader's broker id; -1 when the partition has none (offline).
    pub leader: i32,
    pub version: u32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// What `/config/topics/<topic>` holds: the settings the topic overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfigRecord {
    pub version: u32,
    pub config: BTreeMap<String, ConfigJson>,
}

/// A setting's value in JSON: a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfigJson {
    Int(i64),
    Str(String),
}

impl From<&ConfigValue> for ConfigJson {
    fn from(value: &ConfigValue) -> Self {
        match value {
            ConfigValue::Int(n) => ConfigJson::Int(*n),
            ConfigValue::Str(s) => ConfigJson::Str(s.clone()),
        }
    }
}

impl From<&ConfigJson> for ConfigValue {
    fn from(value: &ConfigJson) -> Self {
        match value {
            ConfigJson::Int(n) => ConfigValue::Int(*n),
            ConfigJson::Str(s) => ConfigValue::Str(s.clone()),
        }
    }
}

/// A broker replicas may be placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeable {
    pub id: i32,
    pub rack: Option<String>,
}

/// Places `partitions` partitions of `replication_factor` replicas each on
/// `brokers`, as Kafka's AdminUtils does: leaders go round the brokers from
/// `start`, each partition's followers follow its leader at a shift that
/// grows every time round, so that replicas and leaders are spread evenly.
/// With racks on every broker, the brokers are first interleaved rack by
/// rack, so that consecutive brokers (a partition's replicas) sit on
/// different racks where there are enough racks.
///
/// `brokers` must hold at least `replication_factor` brokers.
pub fn assign(brokers: &[Placeable], partitions: u32, replication_factor: usize, start: usize) -> Vec<Vec<i32>> {
    let ordered = rack_interleaved(brokers);
    let n = ordered.len();
    if n == 0 || replication_factor == 0 {
        return Vec::new();
    }
    let rack_of = |id: i32| brokers.iter().find(|b| b.id == id).and_then(|b| b.rack.clone());
    let racks: BTreeSet<Option<String>> = ordered.iter().map(|&id| rack_of(id)).collect();
    let rack_aware = !racks.contains(&None);
    let mut shift = start % n;
    let mut assignment = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (p + start) % n;
        let mut replicas = vec![ordered[first]];
        let mut used_racks = BTreeSet::from([rack_of(ordered[first])]);
        let mut k = 0;
        while replicas.len() < replication_factor.min(n) {
            // Kafka's replicaIndex: followers at 1 + (shift + k) % (n - 1) after the leader.
            let candidate = ordered[(first + 1 + (shift + k) % (n - 1).max(1)) % n];
            k += 1;
            if replicas.contains(&candidate) {
                continue;
            }
            // With racks, a rack already holding a replica is skipped until
            // every rack holds one (Kafka's rack-aware rule).
            let rack = rack_of(candidate);
            if rack_aware && used_racks.contains(&rack) && used_racks.len() < racks.len() && k <= 2 * n {
                continue;
            }
            used_racks.insert(rack);
            replicas.push(candidate);
        }
        assignment.push(replicas);
    }
    assignment
}

/// The brokers' ids ordered so that racks alternate (Kafka's
/// getRackAlternatedBrokerList); by id when any broker has no rack.
fn rack_interleaved(brokers: &[Placeable]) -> Vec<i32> {
    let mut sorted: Vec<&Placeable> = brokers.iter().collect();
    sorted.sort_by_key(|b| b.id);
    if sorted.iter().any(|b| b.rack.is_none()) {
        return sorted.iter().map(|b| b.id).collect();
    }
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for b in &sorted {
        by_rack.entry(b.rack.as_deref().unwrap_or_default()).or_default().push(b.id);
    }
    let mut ordered = Vec::with_capacity(sorted.len());
    let mut round = 0;
    while ordered.len() < sorted.len() {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(round) {
                ordered.push(*id);
            }
        }
        round += 1;
    }
    ordered
}

/// Why a topic could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TopicWriteError {
    #[error("topic `{0}` already exists")]
    Exists(String),
    #[error("topic `{0}` does not exist")]
    Missing(String),
    #[error("ZooKeeper refused the write: {0}")]
    ZooKeeper(#[from] zk::Error),
}

/// Writes a new topic: its settings, then its assignment, in one transaction
/// (so a topic never exists without its settings).
///
/// # Errors
///
/// The topic exists (or is still being deleted), or ZooKeeper refused.
pub async fn create(
    client: &zk::Client,
    topic: &str,
    assignment: &TopicAssignment,
    config: &TopicConfigRecord,
) -> Result<(), TopicWriteError> {
    for parent in [TOPICS, TOPIC_CONFIGS] {
        super::registry::ensure_path(client, parent).await.map_err(|err| match err {
            super::registry::RegistryError::Refused { source, .. }
            | super::registry::RegistryError::Unreachable { source, .. } => TopicWriteError::ZooKeeper(source),
            super::registry::RegistryError::Taken { .. } => TopicWriteError::ZooKeeper(zk::Error::NodeExists),
        })?;
    }
    if client.check_stat(&format!("{DELETE_TOPICS}/{topic}")).await?.is_some() {
        return Err(TopicWriteError::Exists(format!("{topic}` is being deleted; `{topic}")));
    }
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let config_data = serde_json::to_vec(config).unwrap_or_default();
    let assignment_data = serde_json::to_vec(assignment).unwrap_or_default();
    let mut writes = client.new_multi_writer();
    // A topic's settings may outlive a failed create: replaced below only if
    // the assignment does not exist.
    match client.check_stat(&config_path(topic)).await? {
        Some(stat) => writes.add_set_data(&config_path(topic), &config_data, Some(stat.version))?,
        None => writes.add_create(&config_path(topic), &config_data, &persistent)?,
    }
    writes.add_create(&topic_path(topic), &assignment_data, &persistent)?;
    match writes.commit().await {
        Ok(_) => Ok(()),
        Err(zk::MultiWriteError::OperationFailed { index: 1, source: zk::Error::NodeExists }) => {
            Err(TopicWriteError::Exists(topic.to_string()))
        }
        Err(err) => Err(TopicWriteError::ZooKeeper(err.into())),
    }
}

/// Asks the controller to delete `topic`.
///
/// # Errors
///
/// The topic does not exist, or ZooKeeper refused.
pub async fn request_delete(client: &zk::Client, topic: &str) -> Result<(), TopicWriteError> {
    if client.check_stat(&topic_path(topic)).await?.is_none() {
        return Err(TopicWriteError::Missing(topic.to_string()));
    }
    super::registry::ensure_path(client, DELETE_TOPICS)
        .await
        .map_err(|_| TopicWriteError::ZooKeeper(zk::Error::NoNode))?;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    match client.create(&format!("{DELETE_TOPICS}/{topic}"), &[], &persistent).await {
        Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// The ids of `brokers`, as a set.
pub fn ids(brokers: &[Placeable]) -> BTreeSet<i32> {
    brokers.iter().map(|b| b.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> Vec<Placeable> {
        ids.iter().map(|&id| Placeable { id, rack: None }).collect()
    }

    #[test]
    fn replicas_and_leaders_are_spread_evenly() {
        let assignment = assign(&brokers(&[1, 2, 3]), 6, 3, 0);
        assert_eq!(assignment.len(), 6);
        for replicas in &assignment {
            let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
            assert_eq!(distinct.len(), 3, "{assignment:?}");
        }
        let mut leaders = BTreeMap::new();
        for replicas in &assignment {
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), [2, 2, 2], "{assignment:?}");
        // Kafka's vector for 5 brokers, 10 partitions, 3 replicas, start 0 and shift 0.
        let kafka = assign(&brokers(&[0, 1, 2, 3, 4]), 10, 3, 0);
        assert_eq!(kafka[0], [0, 1, 2]);
        assert_eq!(kafka[1], [1, 2, 3]);
        assert_eq!(kafka[4], [4, 0, 1]);
        assert_eq!(kafka[5], [0, 2, 3]);
        assert_eq!(kafka[9], [4, 1, 2]);
    }

    #[test]
    fn replicas_of_a_partition_sit_on_different_racks() {
        let placed = vec![
            Placeable { id: 1, rack: Some("a".into()) },
            Placeable { id: 2, rack: Some("a".into()) },
            Placeable { id: 3, rack: Some("b".into()) },
            Placeable { id: 4, rack: Some("b".into()) },
        ];
        let rack = |id: i32| placed.iter().find(|b| b.id == id).unwrap().rack.clone().unwrap();
        for replicas in assign(&placed, 8, 2, 1) {
            assert_ne!(rack(replicas[0]), rack(replicas[1]), "{replicas:?}");
        }
    }

    #[test]
    fn assignments_read_back_in_partition_order() {
        let mut partitions = BTreeMap::new();
        for p in 0..12 {
            partitions.insert(p.to_string(), vec![p]);
        }
        let assignment = TopicAssignment { version: 2, partitions, topic_id: "x".into() };
        let replicas = assignment.replicas().unwrap();
        assert_eq!(replicas[10], [10]);
        assert_eq!(replicas[2], [2]);
        let mut gap = assignment.clone();
        gap.partitions.remove("3");
        assert!(gap.replicas().is_none());
    }
}
