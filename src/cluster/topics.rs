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
    assign_range(brokers, 0, partitions as usize, replication_factor, start)
}

/// Places the partitions `existing.len()..total` of a topic whose first
/// partitions are placed as `existing`, as Kafka's AdminUtils.addPartitions
/// does: the existing ones stay as they are, and the new ones go on round
/// the brokers from where partition 0's leader stands, with partition 0's
/// replication factor. Unlike Kafka, the followers' shift counts the rounds
/// of the existing partitions too, so that with the same brokers the topic
/// is placed exactly as if it had been created with `total` partitions.
///
/// `existing` must not be empty, and `brokers` must hold at least as many
/// brokers as partition 0 has replicas.
pub fn assign_more(brokers: &[Placeable], existing: &[Vec<i32>], total: usize) -> Vec<Vec<i32>> {
    let factor = existing.first().map_or(0, Vec::len);
    let leader = existing.first().and_then(|r| r.first()).copied();
    let start = rack_interleaved(brokers).iter().position(|&id| Some(id) == leader).unwrap_or(0);
    assign_range(brokers, existing.len(), total.saturating_sub(existing.len()), factor, start)
}

/// Kafka's assignReplicasToBrokers from partition `first` on: `count`
/// partitions, the shift starting at `start` and growing every time round.
fn assign_range(
    brokers: &[Placeable],
    first: usize,
    count: usize,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    let ordered = rack_interleaved(brokers);
    let n = ordered.len();
    if n == 0 || replication_factor == 0 {
        return Vec::new();
    }
    let rack_of = |id: i32| brokers.iter().find(|b| b.id == id).and_then(|b| b.rack.clone());
    let racks: BTreeSet<Option<String>> = ordered.iter().map(|&id| rack_of(id)).collect();
    let rack_aware = !racks.contains(&None);
    // The shift grows once a round: by the rounds before `first` already.
    let mut shift = start % n + first.saturating_sub(1) / n;
    let mut assignment = Vec::with_capacity(count);
    for p in first..first + count {
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
    #[error("topic `{topic}` has {current} partitions; the new count must be greater, and at most {max}")]
    Partitions { topic: String, current: usize, max: u32 },
    #[error("topic `{topic}` has {factor} replicas a partition: {live} brokers are alive")]
    Replication { topic: String, factor: usize, live: usize },
    #[error("topic `{0}` changed under every attempt to write it; try again")]
    Contended(String),
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

/// How many times a conditional write is tried again after losing to
/// another writer before giving up.
const WRITE_ATTEMPTS: usize = 10;

/// A topic's assignment and its znode's version.
///
/// # Errors
///
/// The topic does not exist, is being deleted, or its assignment does not
/// read; or ZooKeeper refused.
async fn read_assignment(client: &zk::Client, topic: &str) -> Result<(TopicAssignment, i32), TopicWriteError> {
    if client.check_stat(&format!("{DELETE_TOPICS}/{topic}")).await?.is_some() {
        return Err(TopicWriteError::Missing(topic.to_string()));
    }
    let (data, stat) = match client.get_data(&topic_path(topic)).await {
        Ok(found) => found,
        Err(zk::Error::NoNode) => return Err(TopicWriteError::Missing(topic.to_string())),
        Err(err) => return Err(err.into()),
    };
    let assignment: TopicAssignment =
        serde_json::from_slice(&data).map_err(|_| TopicWriteError::Missing(topic.to_string()))?;
    Ok((assignment, stat.version))
}

/// Grows `topic` to `total` partitions: the new ones are placed on
/// `brokers` (see [`assign_more`]) and written into the assignment
/// conditionally on the version read, read again after losing to another
/// writer (a concurrent add then makes this one fail if it grew the topic as
/// far). The existing partitions keep their replicas.
///
/// # Errors
///
/// The topic does not exist or is being deleted; `total` is not greater
/// than the partition count or above `max`; partition 0's replicas are
/// more than the live brokers; ZooKeeper refused.
pub async fn grow(
    client: &zk::Client,
    topic: &str,
    total: i64,
    max: u32,
    brokers: &[Placeable],
) -> Result<(), TopicWriteError> {
    for _ in 0..WRITE_ATTEMPTS {
        let (mut assignment, version) = read_assignment(client, topic).await?;
        let existing = assignment.replicas().ok_or_else(|| TopicWriteError::Missing(topic.to_string()))?;
        if total <= existing.len() as i64 || total > i64::from(max) {
            return Err(TopicWriteError::Partitions { topic: topic.to_string(), current: existing.len(), max });
        }
        let factor = existing.first().map_or(0, Vec::len);
        if factor == 0 || factor > brokers.len() {
            return Err(TopicWriteError::Replication { topic: topic.to_string(), factor, live: brokers.len() });
        }
        let first = existing.len();
        for (i, replicas) in assign_more(brokers, &existing, total as usize).into_iter().enumerate() {
            assignment.partitions.insert((first + i).to_string(), replicas);
        }
        let data = serde_json::to_vec(&assignment).unwrap_or_default();
        match client.set_data(&topic_path(topic), &data, Some(version)).await {
            Ok(_) => return Ok(()),
            Err(zk::Error::BadVersion) => continue,
            Err(zk::Error::NoNode) => return Err(TopicWriteError::Missing(topic.to_string())),
            Err(err) => return Err(err.into()),
        }
    }
    Err(TopicWriteError::Contended(topic.to_string()))
}

/// A topic's overrides as `/config/topics/<topic>` holds them, and the
/// znode's version (`None`: it has none, which is no overrides).
///
/// # Errors
///
/// The topic does not exist or is being deleted; ZooKeeper refused.
pub async fn read_config(
    client: &zk::Client,
    topic: &str,
) -> Result<(BTreeMap<String, ConfigValue>, Option<i32>), TopicWriteError> {
    read_assignment(client, topic).await?;
    match client.get_data(&config_path(topic)).await {
        Ok((data, stat)) => {
            let record: TopicConfigRecord =
                serde_json::from_slice(&data).unwrap_or(TopicConfigRecord { version: 1, config: BTreeMap::new() });
            Ok((record.config.iter().map(|(k, v)| (k.clone(), v.into())).collect(), Some(stat.version)))
        }
        Err(zk::Error::NoNode) => Ok((BTreeMap::new(), None)),
        Err(err) => Err(err.into()),
    }
}

/// Writes `config` as `topic`'s overrides, conditionally on `version` (as
/// [`read_config`] read it); false when another writer changed them since.
///
/// # Errors
///
/// ZooKeeper refused.
pub async fn write_config(
    client: &zk::Client,
    topic: &str,
    config: &BTreeMap<String, ConfigValue>,
    version: Option<i32>,
) -> Result<bool, TopicWriteError> {
    let record = TopicConfigRecord { version: 1, config: config.iter().map(|(k, v)| (k.clone(), v.into())).collect() };
    let data = serde_json::to_vec(&record).unwrap_or_default();
    let written = match version {
        Some(version) => client.set_data(&config_path(topic), &data, Some(version)).await.map(|_| ()),
        None => {
            let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
            client.create(&config_path(topic), &data, &persistent).await.map(|_| ())
        }
    };
    match written {
        Ok(()) => Ok(true),
        Err(zk::Error::BadVersion | zk::Error::NodeExists | zk::Error::NoNode) => Ok(false),
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
    fn added_partitions_go_on_round_the_brokers_and_keep_the_factor() {
        for (ids, factor, start) in [(&[1, 2, 3][..], 3, 0), (&[1, 2, 3, 4, 5][..], 2, 3), (&[4, 7, 9][..], 1, 2)] {
            let placed = brokers(ids);
            let whole = assign(&placed, 11, factor, start);
            for existing in 1..11 {
                let more = assign_more(&placed, &whole[..existing], 11);
                assert_eq!(more, whole[existing..], "{ids:?} from {existing}");
            }
        }
        // Fewer live brokers than before: the new ones go on the live ones only.
        let existing = assign(&brokers(&[1, 2, 3]), 2, 2, 0);
        for replicas in assign_more(&brokers(&[2, 3]), &existing, 6) {
            assert_eq!(replicas.len(), 2);
            assert!(replicas.iter().all(|id| [2, 3].contains(id)), "{replicas:?}");
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
