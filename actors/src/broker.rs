//! The `Broker` actor: the directory of topics, and admin operations.
//!
//! Contract:
//! - One per broker, on the system arbiter. Owns the set of topics (name →
//!   [`Topic`] address) and the data directory layout:
//!
//!   ```text
//!   <data_dir>/topics/<topic>/topic.json      metadata (name, partitions, settings)
//!   <data_dir>/topics/<topic>/<partition>/    the partition's log
//!   <data_dir>/deleted/                       deleted topics, removed in the background
//!   <data_dir>/clean_shutdown                 present only between a clean stop and the next start
//!   <data_dir>/.lock                          held by the running broker (taken by the server, not here)
//!   ```
//! - Takes [`CreateTopic`], [`DeleteTopic`], [`ListTopics`], [`LookupTopic`]
//!   and [`ShutdownBroker`]. Metadata is fsynced before a
//!   create is acknowledged; a delete renames the topic directory away (atomic)
//!   before it is acknowledged, and removes the files on a blocking thread. A
//!   delete that fails before that rename serves the topic again from its
//!   directory: a failed delete changes nothing.
//! - Not supervised: it holds only what it reads back from disk at start.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use actix::prelude::*;
use futures::future::join_all;

use crate::error::{BrokerError, ErrorCode};
use crate::partition::PartitionSettings;
use crate::topic::{self, Placement, Topic, TopicMeta};
use crate::topic_config::{ConfigValue, TopicConfig};
use crate::writer::SyncWriter;

/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;
/// The marker file of a clean shutdown.
const CLEAN_SHUTDOWN: &str = "clean_shutdown";

/// What the broker needs to open its data directory.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub data_dir: PathBuf,
    /// Defaults for every topic's settings.
    pub topic_defaults: TopicConfig,
    pub partition: PartitionSettings,
    /// Arbiters (event-loop threads) for partitions: usually one per core.
    pub arbiters: usize,
}

/// The topic directory actor. See the module documentation for its contract.
pub struct Broker {
    data_dir: PathBuf,
    defaults: TopicConfig,
    placement: Placement,
    topics: BTreeMap<String, Addr<Topic>>,
    /// Names whose creation or deletion is under way: refused to a create.
    busy: HashSet<String>,
    /// Topics found on disk at start, started with the actor.
    recovered: Vec<TopicMeta>,
    shutting_down: bool,
}

impl Broker {
    /// Opens the data directory: creates it if needed, notes and removes the
    /// clean-shutdown marker, purges deleted topics and unfinished creates,
    /// and reads every topic's metadata. Blocking; call it before the broker
    /// serves.
    ///
    /// # Errors
    ///
    /// The directory cannot be created or read, or a topic's metadata is damaged.
    pub fn open(settings: BrokerSettings) -> io::Result<Broker> {
        let data_dir = settings.data_dir;
        std::fs::create_dir_all(data_dir.join("topics"))?;
        std::fs::create_dir_all(data_dir.join("deleted"))?;
        let marker = data_dir.join(CLEAN_SHUTDOWN);
        let clean_shutdown = marker.exists();
        if clean_shutdown {
            std::fs::remove_file(&marker)?;
            std::fs::File::open(&data_dir)?.sync_all()?;
        }
        purge_deleted(&data_dir.join("deleted"));
        let mut recovered = Vec::new();
        for entry in std::fs::read_dir(data_dir.join("topics"))? {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            if unfinished_create(&path)? {
                tracing::warn!(path = %path.display(), "removing a topic whose creation did not finish");
                std::fs::remove_dir_all(&path)?;
                continue;
            }
            let meta = TopicMeta::load(&path)
                .map_err(|err| io::Error::new(err.kind(), format!("topic metadata in {}: {err}", path.display())))?;
            recovered.push(meta);
        }
        let arbiters = (0..settings.arbiters.max(1)).map(|_| Arbiter::new().handle()).collect();
        let writer = SyncWriter::start(&data_dir.display().to_string())?;
        tracing::info!(
            data_dir = %data_dir.display(),
            topics = recovered.len(),
            clean_shutdown,
            "opened data directory"
        );
        Ok(Broker {
            data_dir,
            defaults: settings.topic_defaults,
            placement: Placement { arbiters, settings: settings.partition, writer, clean_shutdown },
            topics: BTreeMap::new(),
            busy: HashSet::new(),
            recovered,
            shutting_down: false,
        })
    }

    /// Where partitions and coordinators run, shared with the group directory.
    pub fn placement(&self) -> Placement {
        self.placement.clone()
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("topics").join(name)
    }

    fn start_topic(&mut self, meta: TopicMeta) {
        let name = meta.name.clone();
        let dir = self.topic_dir(&name);
        let placement = self.placement.clone();
        let arbiter = placement.arbiter_for(&name);
        let addr = Topic::start_in_arbiter(&arbiter, move |_| Topic::new(meta, dir, placement));
        self.topics.insert(name, addr);
    }

    fn refuse_if_shutting_down(&self) -> Result<(), BrokerError> {
        if self.shutting_down {
            return Err(BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is shutting down"));
        }
        Ok(())
    }

    fn unknown(name: &str) -> BrokerError {
        BrokerError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{name}` does not exist"))
    }
}

fn purge_deleted(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if let Err(err) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(%err, path = %entry.path().display(), "cannot remove a deleted topic");
        }
    }
}

/// Whether `dir` is what a create leaves when it stops before its metadata is
/// in place: no `topic.json` and no partition directory (those are created
/// only after the metadata). Anything else without metadata is damage, and
/// the broker refuses to start rather than guess.
fn unfinished_create(dir: &Path) -> io::Result<bool> {
    if dir.join(topic::META_FILE).exists() {
        return Ok(false);
    }
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_type()?.is_dir() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Checks a topic name by Kafka's rules: 1–249 characters of `[a-zA-Z0-9._-]`,
/// and not `.` or `..`.
///
/// # Errors
///
/// `INVALID_TOPIC_EXCEPTION` saying which rule the name breaks.
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    let invalid = |why: String| BrokerError::new(ErrorCode::INVALID_TOPIC_EXCEPTION, why);
    if name.is_empty() {
        return Err(invalid("topic name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(invalid(format!("topic name cannot be `{name}`")));
    }
    if name.len() > 249 {
        return Err(invalid(format!("topic name is {} characters; the limit is 249", name.len())));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(invalid(format!("topic name `{name}` has `{c}`; only [a-zA-Z0-9._-] are allowed")));
    }
    Ok(())
}

impl Actor for Broker {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        for meta in std::mem::take(&mut self.recovered) {
            self.start_topic(meta);
        }
    }
}

/// Create a topic.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct CreateTopic {
    pub name: String,
    pub partitions: i64,
    pub config: BTreeMap<String, ConfigValue>,
}

impl Handler<CreateTopic> for Broker {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: CreateTopic, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            self.refuse_if_shutting_down()?;
            validate_topic_name(&msg.name)?;
            if msg.partitions < 1 || msg.partitions > MAX_PARTITIONS as i64 {
                return Err(BrokerError::new(
                    ErrorCode::INVALID_PARTITIONS,
                    format!("partitions must be between 1 and {MAX_PARTITIONS}, got {}", msg.partitions),
                ));
            }
            if self.topics.contains_key(&msg.name) || self.busy.contains(&msg.name) {
                return Err(BrokerError::new(
                    ErrorCode::TOPIC_ALREADY_EXISTS,
                    format!("topic `{}` already exists", msg.name),
                ));
            }
            let config = self.defaults.with_overrides(&msg.config)?;
            Ok(TopicMeta { name: msg.name.clone(), partitions: msg.partitions as u32, config })
        })();
        let meta = match checked {
            Ok(meta) => meta,
            Err(err) => return Box::pin(fut::ready(Err(err))),
        };
        self.busy.insert(meta.name.clone());
        let dir = self.topic_dir(&meta.name);
        let to_store = meta.clone();
        let stored = actix_rt::task::spawn_blocking(move || to_store.store(&dir));
        Box::pin(stored.into_actor(self).map(move |stored, act, _| {
            act.busy.remove(&meta.name);
            match stored {
                Ok(Ok(())) => {
                    tracing::info!(topic = %meta.name, partitions = meta.partitions, "created topic");
                    act.start_topic(meta);
                    Ok(())
                }
                Ok(Err(err)) => Err(BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, err.to_string())),
                Err(err) => Err(BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, err.to_string())),
            }
        }))
    }
}

/// Delete a topic and its data.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct DeleteTopic {
    pub name: String,
}

impl Handler<DeleteTopic> for Broker {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: DeleteTopic, _: &mut Context<Self>) -> Self::Result {
        if let Err(err) = self.refuse_if_shutting_down() {
            return Box::pin(fut::ready(Err(err)));
        }
        let Some(topic) = self.topics.remove(&msg.name) else {
            return Box::pin(fut::ready(Err(Broker::unknown(&msg.name))));
        };
        self.busy.insert(msg.name.clone());
        let name = msg.name.clone();
        let dir = self.topic_dir(&msg.name);
        let stamp = crate::now_ms();
        let graveyard = self.data_dir.join("deleted").join(format!("{}-{stamp}", msg.name));
        Box::pin(
            async move {
                // Close first so no partition writes into the directory being moved.
                let closed = topic.send(topic::CloseTopic).await.map_err(BrokerError::from);
                let moved = actix_rt::task::spawn_blocking(move || move_away(closed, &dir, &graveyard)).await;
                moved.unwrap_or_else(|err| {
                    Err((BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, err.to_string()), None))
                })
            }
            .into_actor(self)
            .map(move |result, act, _| {
                act.busy.remove(&name);
                match result {
                    Ok(()) => {
                        tracing::info!(topic = %name, "deleted topic");
                        Ok(())
                    }
                    Err((err, reopen)) => {
                        tracing::error!(%err, topic = %name, "delete failed");
                        // The directory is still in place: serve the topic
                        // from it again, so that a failed delete changes nothing.
                        if let Some(meta) = reopen {
                            act.start_topic(meta);
                        }
                        Err(err)
                    }
                }
            }),
        )
    }
}

/// A failed delete, with the topic's metadata when its directory is still in
/// place (the topic is then reopened from it).
type DeleteFailure = (BrokerError, Option<TopicMeta>);

/// Renames a closed topic's directory into the graveyard (the atomic step that
/// deletes it), fsyncs the parent, then removes the files. Blocking.
fn move_away(closed: Result<(), BrokerError>, dir: &Path, graveyard: &Path) -> Result<(), DeleteFailure> {
    let kept = |err: BrokerError| Err((err, TopicMeta::load(dir).ok()));
    if let Err(err) = closed {
        return kept(err);
    }
    if let Err(err) = std::fs::rename(dir, graveyard) {
        return kept(BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("cannot move {}: {err}", dir.display())));
    }
    // From here on the topic is gone: what fails is only its durability or
    // the disk space it still takes.
    if let Some(parent) = dir.parent() {
        if let Err(err) = std::fs::File::open(parent).and_then(|f| f.sync_all()) {
            return Err((
                BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("fsync of the topics directory: {err}")),
                None,
            ));
        }
    }
    if let Err(err) = std::fs::remove_dir_all(graveyard) {
        tracing::warn!(%err, path = %graveyard.display(), "cannot remove a deleted topic's files; the next start will");
    }
    Ok(())
}

/// List every topic with its partition count, sorted by name.
#[derive(Message)]
#[rtype(result = "Vec<(String, u32)>")]
pub struct ListTopics;

impl Handler<ListTopics> for Broker {
    type Result = ResponseFuture<Vec<(String, u32)>>;

    fn handle(&mut self, _: ListTopics, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self
            .topics
            .iter()
            .map(|(name, addr)| {
                let (name, count) = (name.clone(), addr.send(topic::PartitionCount));
                async move { count.await.ok().map(|count| (name, count)) }
            })
            .collect();
        Box::pin(async move { join_all(asks).await.into_iter().flatten().collect() })
    }
}

/// The address of a topic's actor.
#[derive(Message)]
#[rtype(result = "Result<Addr<Topic>, BrokerError>")]
pub struct LookupTopic {
    pub name: String,
}

impl Handler<LookupTopic> for Broker {
    type Result = Result<Addr<Topic>, BrokerError>;

    fn handle(&mut self, msg: LookupTopic, _: &mut Context<Self>) -> Self::Result {
        self.topics.get(&msg.name).cloned().ok_or_else(|| Broker::unknown(&msg.name))
    }
}

/// Refuse further admin work, flush and fsync every partition, and leave the
/// clean-shutdown marker so the next start needs no recovery.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct ShutdownBroker;

impl Handler<ShutdownBroker> for Broker {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, _: ShutdownBroker, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let flushes: Vec<_> = self.topics.values().map(|t| t.send(topic::ShutdownTopic)).collect();
        let marker = self.data_dir.join(CLEAN_SHUTDOWN);
        let data_dir = self.data_dir.clone();
        Box::pin(async move {
            let mut clean = true;
            for result in join_all(flushes).await {
                if let Err(err) = result.unwrap_or_else(|e| Err(e.into())) {
                    tracing::error!(%err, "a partition failed to flush at shutdown");
                    clean = false;
                }
            }
            if clean {
                let written = actix_rt::task::spawn_blocking(move || -> io::Result<()> {
                    std::fs::File::create(&marker)?.sync_all()?;
                    std::fs::File::open(&data_dir)?.sync_all()
                })
                .await;
                if !matches!(written, Ok(Ok(()))) {
                    tracing::error!("cannot write the clean-shutdown marker; the next start will recover");
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_directory_without_metadata_nor_partitions_is_an_unfinished_create() {
        let dir = tempfile::tempdir().unwrap();
        let topic = dir.path().join("t");
        std::fs::create_dir(&topic).unwrap();
        assert!(unfinished_create(&topic).unwrap(), "empty");
        std::fs::write(topic.join("topic.json.tmp"), b"{").unwrap();
        assert!(unfinished_create(&topic).unwrap(), "a temporary file only");
        std::fs::create_dir(topic.join("0")).unwrap();
        assert!(!unfinished_create(&topic).unwrap(), "a partition without metadata is damage, not a leftover");
        std::fs::remove_dir(topic.join("0")).unwrap();
        std::fs::write(topic.join(topic::META_FILE), b"{").unwrap();
        assert!(!unfinished_create(&topic).unwrap(), "metadata, even damaged, is a topic");
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for ok in ["orders", "a.b_c-D9", &"x".repeat(249), "..."] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            let err = validate_topic_name(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::INVALID_TOPIC_EXCEPTION, "{bad}");
        }
    }
}
