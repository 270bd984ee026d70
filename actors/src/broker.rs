//! The `Broker` actor: the directory of topics, and admin operations.
//!
//! Contract:
//! - One per broker, on the system arbiter. Owns the set of topics (name →
//!   [`Topic`] address) and the data directory layout:
//!
//!   ```text
//!   <data_dir>/topics/<topic>/topic.json      metadata (name, id, partitions, settings)
//!   <data_dir>/topics/<topic>/<partition>/    the partition's log
//!   <data_dir>/creating/                      topics being created, renamed into topics/ when whole
//!   <data_dir>/deleted/                       deleted topics, removed in the background
//!   <data_dir>/clean_shutdown                 present only between a clean stop and the next start
//!   <data_dir>/.lock                          held by the running broker (taken by the server, not here)
//!   ```
//! - Takes [`CreateTopic`], [`DeleteTopic`], [`AlterTopicConfig`], [`ListTopics`], [`LookupTopic`],
//!   [`TopicIds`], [`WatchDeletes`] and [`ShutdownBroker`]. A create makes the topic's directory with its
//!   metadata aside and renames it into place, fsynced, before it is
//!   acknowledged: it happens whole or not at all (see `broker_disk.rs`). A
//!   delete renames the topic directory away (atomic) before it is
//!   acknowledged, and removes the files on a blocking thread. A delete that
//!   fails before that rename serves the topic again from its directory: a
//!   failed delete changes nothing.
//! - A topic found damaged at start (metadata missing, unreadable or naming
//!   another topic) is quarantined: listed as damaged with the reason, every
//!   request to it answered `KAFKA_STORAGE_ERROR`, its name taken until it is
//!   deleted. One damaged topic never stops the broker.
//! - Every topic has an id (see [`topic::new_topic_id`]); a deleted topic's
//!   name and id are sent as [`TopicDeleted`] to the watcher (the group
//!   directory, which drops the groups' offsets for it), after the delete is
//!   done. A watcher that misses it (a crash between the two) is covered by
//!   the id: offsets committed for another id than the topic's are not served.
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
use disk::Damage;

#[path = "broker_alter.rs"]
mod alter;
#[path = "broker_disk.rs"]
mod disk;

pub use alter::AlterTopicConfig;

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
    /// The largest `max_message_bytes` a topic may set: a batch must fit in
    /// one request frame with the request's own fields (`server.max_frame_bytes`
    /// less 1 KiB, as the broker's own `[log]` setting is checked).
    pub max_message_ceiling: u64,
    pub partition: PartitionSettings,
    /// Whether the fsync writer groups the requests queued during an fsync
    /// into one round (`storage.group_commit`); off, one fsync per request.
    pub group_commit: bool,
    /// Arbiters (event-loop threads) for partitions: usually one per core.
    pub arbiters: usize,
}

/// The topic directory actor. See the module documentation for its contract.
pub struct Broker {
    data_dir: PathBuf,
    defaults: TopicConfig,
    max_message_ceiling: u64,
    placement: Placement,
    topics: BTreeMap<String, Addr<Topic>>,
    /// The id of each topic in `topics`.
    ids: BTreeMap<String, String>,
    /// Told of every delete (see the module doc).
    delete_watcher: Option<Recipient<TopicDeleted>>,
    /// Names whose creation or deletion is under way: refused to a create.
    busy: HashSet<String>,
    /// Topics found damaged at start, not served (see the module doc).
    damaged: BTreeMap<String, Damage>,
    /// Topics found on disk at start, started with the actor.
    recovered: Vec<TopicMeta>,
    shutting_down: bool,
    /// Idempotent producer ids (`producer_ids.rs`), read at the first one.
    producer_ids: Option<crate::producer_ids::ProducerIds>,
}

impl Broker {
    pub(crate) fn producer_ids(&mut self) -> &mut crate::producer_ids::ProducerIds {
        let data_dir = &self.data_dir;
        self.producer_ids.get_or_insert_with(|| crate::producer_ids::ProducerIds::new(data_dir))
    }

    /// Opens the data directory: creates it if needed, notes and removes the
    /// clean-shutdown marker, purges deleted topics and unfinished creates,
    /// and reads every topic's metadata, quarantining damaged topics. Blocking;
    /// call it before the broker serves.
    ///
    /// # Errors
    ///
    /// The directory or its `topics/` cannot be created or read.
    pub fn open(settings: BrokerSettings) -> io::Result<Broker> {
        let data_dir = settings.data_dir;
        let doing = |what: &str| {
            let (what, dir) = (what.to_string(), data_dir.display().to_string());
            move |err: io::Error| io::Error::new(err.kind(), format!("{what} {dir}: {err}"))
        };
        let fresh = !data_dir.exists();
        std::fs::create_dir_all(&data_dir).map_err(doing("cannot create the data directory"))?;
        let marker = data_dir.join(CLEAN_SHUTDOWN);
        let clean_shutdown = marker.exists();
        if clean_shutdown {
            std::fs::remove_file(&marker).map_err(doing("cannot remove the clean-shutdown marker of"))?;
            std::fs::File::open(&data_dir)
                .and_then(|dir| dir.sync_all())
                .map_err(doing("cannot sync the data directory"))?;
        }
        let disk::Found { topics: recovered, damaged } =
            disk::scan(&data_dir).map_err(doing("cannot read the topics of the data directory"))?;
        let arbiters = (0..settings.arbiters.max(1)).map(|_| Arbiter::new().handle()).collect();
        let writer = SyncWriter::start_with(&data_dir.display().to_string(), settings.group_commit)?;
        // How this start follows the last one: a new directory must not read
        // like a crash.
        let start = match (clean_shutdown, fresh || (recovered.is_empty() && damaged.is_empty())) {
            (true, _) => "after_clean_shutdown",
            (false, true) => "new",
            (false, false) => "after_unclean_stop",
        };
        tracing::info!(
            data_dir = %data_dir.display(),
            topics = recovered.len(),
            damaged_topics = damaged.len(),
            start = %start,
            "opened data directory"
        );
        Ok(Broker {
            data_dir,
            defaults: settings.topic_defaults,
            max_message_ceiling: settings.max_message_ceiling,
            placement: Placement { arbiters, settings: settings.partition, writer, clean_shutdown },
            topics: BTreeMap::new(),
            ids: BTreeMap::new(),
            delete_watcher: None,
            busy: HashSet::new(),
            damaged,
            recovered,
            shutting_down: false,
            producer_ids: None,
        })
    }

    /// Where partitions and coordinators run, shared with the group directory.
    pub fn placement(&self) -> Placement {
        self.placement.clone()
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join(disk::TOPICS).join(name)
    }

    fn start_topic(&mut self, meta: TopicMeta) {
        let name = meta.name.clone();
        let dir = self.topic_dir(&name);
        let placement = self.placement.clone();
        let arbiter = placement.arbiter_for(&name);
        if let Some(id) = &meta.topic_id {
            self.ids.insert(name.clone(), id.clone());
        }
        let addr = Topic::start_in_arbiter(&arbiter, move |_| Topic::new(meta, dir, placement));
        self.topics.insert(name, addr);
    }

    fn refuse_if_shutting_down(&self) -> Result<(), BrokerError> {
        if self.shutting_down {
            return Err(BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is shutting down"));
        }
        Ok(())
    }

    /// The answer to a topic that does not exist or is quarantined.
    fn not_served(&self, name: &str) -> BrokerError {
        match self.damaged.get(name) {
            Some(damage) => BrokerError::new(
                ErrorCode::KAFKA_STORAGE_ERROR,
                format!("topic `{name}` is damaged and not served: {}; delete it to free the name", damage.reason),
            ),
            None => BrokerError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{name}` does not exist")),
        }
    }
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
    /// The topic's id when it is given (a cluster's topic has the id its
    /// creator chose); a new one otherwise.
    pub topic_id: Option<String>,
}

/// Checks a topic as [`CreateTopic`] would (name, partition count,
/// settings), without creating anything: for a cluster, where the topic is
/// written to ZooKeeper first.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct ValidateTopic {
    pub name: String,
    pub partitions: i64,
    pub config: BTreeMap<String, ConfigValue>,
}

impl Handler<ValidateTopic> for Broker {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, msg: ValidateTopic, _: &mut Context<Self>) -> Self::Result {
        self.refuse_if_shutting_down()?;
        validate_topic_name(&msg.name)?;
        check_partition_count(msg.partitions)?;
        let config = self.defaults.with_overrides(&msg.config)?;
        config.check_ceiling(self.max_message_ceiling)
    }
}

fn check_partition_count(partitions: i64) -> Result<(), BrokerError> {
    if partitions < 1 || partitions > MAX_PARTITIONS as i64 {
        return Err(BrokerError::new(
            ErrorCode::INVALID_PARTITIONS,
            format!("partitions must be between 1 and {MAX_PARTITIONS}, got {partitions}"),
        ));
    }
    Ok(())
}

impl Handler<CreateTopic> for Broker {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: CreateTopic, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            self.refuse_if_shutting_down()?;
            validate_topic_name(&msg.name)?;
            check_partition_count(msg.partitions)?;
            if self.topics.contains_key(&msg.name) || self.busy.contains(&msg.name) {
                return Err(BrokerError::new(
                    ErrorCode::TOPIC_ALREADY_EXISTS,
                    format!("topic `{}` already exists", msg.name),
                ));
            }
            if let Some(damage) = self.damaged.get(&msg.name) {
                return Err(BrokerError::new(
                    ErrorCode::TOPIC_ALREADY_EXISTS,
                    format!("topic `{}` exists but is damaged ({}); delete it first", msg.name, damage.reason),
                ));
            }
            let config = self.defaults.with_overrides(&msg.config)?;
            config.check_ceiling(self.max_message_ceiling)?;
            Ok(TopicMeta {
                name: msg.name.clone(),
                topic_id: msg.topic_id.clone(),
                partitions: msg.partitions as u32,
                config,
            })
        })();
        let meta = match checked {
            Ok(meta) => meta,
            Err(err) => return Box::pin(fut::ready(Err(err))),
        };
        self.busy.insert(meta.name.clone());
        let (data_dir, to_store) = (self.data_dir.clone(), meta.clone());
        let stored = actix_rt::task::spawn_blocking(move || disk::create(&data_dir, &to_store));
        Box::pin(stored.into_actor(self).map(move |stored, act, _| {
            act.busy.remove(&meta.name);
            match stored {
                Ok(Ok(meta)) => {
                    let topic_id = meta.topic_id.as_deref().unwrap_or_default();
                    tracing::info!(topic = %meta.name, topic_id, partitions = meta.partitions, "created topic");
                    act.start_topic(meta);
                    Ok(())
                }
                Ok(Err(err)) => {
                    tracing::error!(%err, topic = %meta.name, "create failed");
                    Err(BrokerError::new(
                        ErrorCode::KAFKA_STORAGE_ERROR,
                        format!("cannot create topic `{}`: {err}", meta.name),
                    ))
                }
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
        let topic = self.topics.remove(&msg.name);
        let topic_id = self.ids.remove(&msg.name);
        let damage = self.damaged.remove(&msg.name);
        if topic.is_none() && damage.is_none() {
            return Box::pin(fut::ready(Err(self.not_served(&msg.name))));
        }
        self.busy.insert(msg.name.clone());
        let name = msg.name.clone();
        let dir = self.topic_dir(&msg.name);
        let graveyard = disk::graveyard(&self.data_dir, &msg.name);
        Box::pin(
            async move {
                // Close first so no partition writes into the directory being
                // moved. A quarantined topic has no actor to close.
                let closed = match topic {
                    Some(topic) => topic.send(topic::CloseTopic).await.map_err(BrokerError::from),
                    None => Ok(()),
                };
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
                        tracing::info!(topic = %name, topic_id = topic_id.as_deref(), "deleted topic");
                        if let Some(watcher) = &act.delete_watcher {
                            watcher.do_send(TopicDeleted { name, topic_id });
                        }
                        Ok(())
                    }
                    Err((err, reopen)) => {
                        tracing::error!(%err, topic = %name, "delete failed");
                        // The directory is still in place: serve the topic
                        // from it again (or keep it quarantined), so that a
                        // failed delete changes nothing.
                        match (damage, reopen) {
                            (Some(damage), _) => {
                                act.damaged.insert(name, damage);
                            }
                            (None, Some(meta)) => act.start_topic(*meta),
                            (None, None) => {}
                        }
                        Err(err)
                    }
                }
            }),
        )
    }
}

/// A topic was deleted (sent to the [`WatchDeletes`] watcher).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct TopicDeleted {
    pub name: String,
    /// `None` for a quarantined topic, whose id could not be read.
    pub topic_id: Option<String>,
}

/// Send every [`TopicDeleted`] to this recipient from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchDeletes(pub Recipient<TopicDeleted>);

impl Handler<WatchDeletes> for Broker {
    type Result = ();

    fn handle(&mut self, msg: WatchDeletes, _: &mut Context<Self>) {
        self.delete_watcher = Some(msg.0);
    }
}

/// The current ids of the named topics that exist (and are served).
#[derive(Message)]
#[rtype(result = "BTreeMap<String, String>")]
pub struct TopicIds {
    pub names: Vec<String>,
}

impl Handler<TopicIds> for Broker {
    type Result = MessageResult<TopicIds>;

    fn handle(&mut self, msg: TopicIds, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            msg.names.into_iter().filter_map(|name| self.ids.get(&name).cloned().map(|id| (name, id))).collect(),
        )
    }
}

/// A failed delete, with the topic's metadata when its directory is still in
/// place (the topic is then reopened from it).
type DeleteFailure = (BrokerError, Option<Box<TopicMeta>>);

/// Renames a closed topic's directory into the graveyard (the atomic step that
/// deletes it), fsyncs the parent, then removes the files. Blocking.
fn move_away(closed: Result<(), BrokerError>, dir: &Path, graveyard: &Path) -> Result<(), DeleteFailure> {
    let kept = |err: BrokerError| Err((err, TopicMeta::load(dir).ok().map(Box::new)));
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

/// List every topic, damaged ones included, sorted by name.
#[derive(Message)]
#[rtype(result = "Vec<ListedTopic>")]
pub struct ListTopics;

/// A topic as [`ListTopics`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTopic {
    pub name: String,
    /// `None` for a damaged topic.
    pub topic_id: Option<String>,
    /// The partition count; for a damaged topic, the partition directories found.
    pub partitions: u32,
    /// Why the topic is quarantined, if it is.
    pub damaged: Option<String>,
}

impl Handler<ListTopics> for Broker {
    type Result = ResponseFuture<Vec<ListedTopic>>;

    fn handle(&mut self, _: ListTopics, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> =
            self.topics
                .iter()
                .map(|(name, addr)| {
                    let (name, count) = (name.clone(), addr.send(topic::PartitionCount));
                    let topic_id = self.ids.get(&name).cloned();
                    async move {
                        count.await.ok().map(|partitions| ListedTopic { name, topic_id, partitions, damaged: None })
                    }
                })
                .collect();
        let damaged: Vec<ListedTopic> = self
            .damaged
            .iter()
            .map(|(name, damage)| ListedTopic {
                name: name.clone(),
                topic_id: None,
                partitions: damage.partitions,
                damaged: Some(damage.reason.clone()),
            })
            .collect();
        Box::pin(async move {
            let mut all: Vec<ListedTopic> = join_all(asks).await.into_iter().flatten().chain(damaged).collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all
        })
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
        self.topics.get(&msg.name).cloned().ok_or_else(|| self.not_served(&msg.name))
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
