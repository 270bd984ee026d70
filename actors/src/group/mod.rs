//! Consumer groups.
//!
//! - [`assignor`]: range, roundrobin and sticky assignors (pure functions).
//! - [`membership`]: members, epochs and incremental reconciliation (pure).
//! - [`store`]: a group's durable log of committed offsets and settings.
//! - [`coordinator`]: the `GroupCoordinator` actor, one per group.
//! - [`session`]: the `Session` actor, one per member, between its connection
//!   and its coordinator.
//!
//! The `Groups` actor below is the directory of coordinators: one per broker,
//! on the system arbiter. It starts a coordinator for every group found on disk
//! at start and for a new group on first use, and handles list and delete.

pub mod assignor;
pub mod coordinator;
pub mod membership;
mod offsets_topic;
pub use offsets_topic::{GroupRegistry, OffsetsRole, UseRegistry};
pub mod replicated;
pub mod session;
pub mod store;

#[cfg(test)]
mod actor_tests;
#[cfg(test)]
mod offsets_topic_tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use actix::prelude::*;
use futures::future::join_all;

use crate::broker::{Broker, TopicDeleted, WatchDeletes};
use crate::error::{BrokerError, ErrorCode};
use crate::topic::Placement;
use coordinator::{CloseGroup, ExpireIfIdle, GroupCoordinator, Origin, ShutdownGroup, Summarize};
use offsets_topic::OffsetsTopic;

/// Broker-wide settings for groups (the `[groups]` section of the config).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    pub default_session_timeout_ms: u64,
    /// How often a coordinator re-reads the partition counts of its topics.
    pub metadata_refresh_ms: u64,
    /// A group with no member and no commit for this long is deleted with its
    /// offsets (Kafka's `offsets.retention.minutes`); -1 keeps groups for ever.
    pub empty_group_retention_ms: i64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            min_session_timeout_ms: 100,
            max_session_timeout_ms: 300_000,
            default_session_timeout_ms: 10_000,
            metadata_refresh_ms: 1000,
            empty_group_retention_ms: 7 * 24 * 3_600_000,
        }
    }
}

impl GroupSettings {
    /// How often groups are checked for expiry: a tenth of the retention,
    /// between 100 ms and a minute.
    pub fn expiry_check_interval(&self) -> Option<std::time::Duration> {
        let retention = u64::try_from(self.empty_group_retention_ms).ok()?;
        Some(std::time::Duration::from_millis((retention / 10).clamp(100, 60_000)))
    }
}

/// Checks a group id: 1–255 bytes.
///
/// # Errors
///
/// `INVALID_GROUP_ID`.
pub fn validate_group_id(group_id: &str) -> Result<(), BrokerError> {
    if group_id.is_empty() || group_id.len() > 255 {
        return Err(BrokerError::new(
            ErrorCode::INVALID_GROUP_ID,
            format!("group id must be 1 to 255 bytes, got {}", group_id.len()),
        ));
    }
    Ok(())
}

/// The directory of group coordinators. See the module documentation.
pub struct Groups {
    dir: PathBuf,
    settings: GroupSettings,
    placement: Placement,
    broker: Addr<Broker>,
    coordinators: BTreeMap<String, Addr<GroupCoordinator>>,
    /// In a cluster: the partitions of `__consumer_offsets` this broker
    /// leads, whose groups it coordinates (`offsets_topic.rs`); `None` for a
    /// broker alone, whose groups each have a log in `dir`.
    cluster: Option<OffsetsTopic>,
}

impl Groups {
    /// Opens `<data_dir>/groups` and starts a coordinator for every group in it.
    ///
    /// # Errors
    ///
    /// The directory cannot be created or read.
    pub fn open(
        data_dir: &std::path::Path,
        settings: GroupSettings,
        placement: Placement,
        broker: Addr<Broker>,
    ) -> std::io::Result<Groups> {
        let dir = data_dir.join("groups");
        std::fs::create_dir_all(&dir)?;
        let mut groups =
            Groups { dir: dir.clone(), settings, placement, broker, coordinators: BTreeMap::new(), cluster: None };
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.contains(&format!(".{GRAVEYARD}"))) {
                // A group deleted before a crash let its removal finish.
                if let Err(err) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), %err, "cannot remove a deleted group's directory");
                }
                continue;
            }
            let Some(group_id) = name.to_str().and_then(store::group_id_of) else { continue };
            if entry.path().is_dir() {
                groups.start_coordinator(&group_id);
            }
        }
        Ok(groups)
    }

    /// The directory of a broker in a cluster: groups are kept in
    /// `__consumer_offsets`, and coordinated where their partition is led
    /// (told by [`OffsetsRole`]). A `groups` directory a broker alone left
    /// in `data_dir` is not read.
    pub fn in_cluster(settings: GroupSettings, placement: Placement, broker: Addr<Broker>) -> Groups {
        let cluster = Some(OffsetsTopic::default());
        Groups { dir: PathBuf::new(), settings, placement, broker, coordinators: BTreeMap::new(), cluster }
    }

    fn start_coordinator(&mut self, group_id: &str) -> Addr<GroupCoordinator> {
        let origin = Origin::Dir(store::group_dir(&self.dir, group_id));
        self.start_coordinator_with(group_id, origin)
    }

    fn start_coordinator_with(&mut self, group_id: &str, origin: Origin) -> Addr<GroupCoordinator> {
        let (settings, broker) = (self.settings.clone(), self.broker.clone());
        let (writer, clean) = (self.placement.writer.clone(), self.placement.clean_shutdown);
        let id: std::sync::Arc<str> = group_id.into();
        let arbiter = self.placement.arbiter_for(&format!("group/{group_id}"));
        let addr = Supervisor::start_in_arbiter(&arbiter, move |_| {
            GroupCoordinator::new(id, origin, settings, broker, writer, clean)
        });
        self.coordinators.insert(group_id.to_string(), addr.clone());
        addr
    }
}

impl Actor for Groups {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.broker.do_send(WatchDeletes(ctx.address().recipient()));
        if let Some(every) = self.settings.expiry_check_interval() {
            ctx.run_interval(every, |act, ctx| act.expire_idle_groups(ctx));
        }
    }
}

impl Groups {
    /// Deletes the groups that have had no member and no commit for
    /// `empty_group_retention_ms`. Each coordinator decides for itself and
    /// closes when it expires, so a member or commit arriving meanwhile keeps
    /// its group.
    fn expire_idle_groups(&mut self, ctx: &mut Context<Self>) {
        let retention_ms = self.settings.empty_group_retention_ms;
        let local = self.cluster.is_none();
        for (group_id, addr) in self.coordinators.clone() {
            let dir = store::group_dir(&self.dir, &group_id);
            let expiry = addr.send(ExpireIfIdle { retention_ms }).into_actor(self).then(move |expired, act, _| {
                // Set aside before the coordinator leaves the directory, so a
                // group of the same id started next begins in a fresh one.
                let retired = match expired {
                    Ok(true) => {
                        if act.coordinators.get(&group_id).is_some_and(|a| a == &addr) {
                            act.coordinators.remove(&group_id);
                        }
                        if let Some(cluster) = &act.cluster {
                            cluster.register(&group_id, false);
                        }
                        Some(local.then(|| retire_group_dir(&dir)))
                    }
                    _ => None,
                };
                async move {
                    let Some(retired) = retired else { return };
                    let removed = match retired {
                        Some(retired) => remove_retired(retired).await,
                        None => Ok(()),
                    };
                    match removed {
                        Ok(()) => {
                            tracing::info!(group = %group_id, retention_ms, "expired empty group deleted with its offsets")
                        }
                        Err(err) => tracing::error!(group = %group_id, %err, "deleting an expired group failed"),
                    }
                }
                .into_actor(act)
            });
            ctx.spawn(expiry);
        }
    }
}

/// Renames a closed group's directory aside (`<dir>.deleted-<nanos>`) and
/// syncs the rename: from then on the group is gone, also across a restart.
fn retire_group_dir(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let graveyard = dir.with_extension(format!("{GRAVEYARD}{nanos:x}"));
    std::fs::rename(dir, &graveyard)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(graveyard)
}

/// A set-aside group directory's name carries this after the group's.
const GRAVEYARD: &str = "deleted-";

/// Deletes a directory [`retire_group_dir`] set aside, off the actor.
async fn remove_retired(retired: std::io::Result<PathBuf>) -> Result<(), BrokerError> {
    let graveyard = retired.map_err(|err| BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, err.to_string()))?;
    match actix_rt::task::spawn_blocking(move || std::fs::remove_dir_all(&graveyard)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, err.to_string())),
        Err(err) => Err(BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, err.to_string())),
    }
}

impl Handler<TopicDeleted> for Groups {
    type Result = ();

    /// A deleted topic's offsets are dropped from every group.
    fn handle(&mut self, msg: TopicDeleted, _: &mut Context<Self>) {
        for coordinator in self.coordinators.values() {
            coordinator.do_send(msg.clone());
        }
    }
}

/// The coordinator of a group, started if `create` and it does not exist.
#[derive(Message)]
#[rtype(result = "Result<Addr<GroupCoordinator>, BrokerError>")]
pub struct LookupGroup {
    pub group_id: String,
    pub create: bool,
}

impl Handler<LookupGroup> for Groups {
    type Result = Result<Addr<GroupCoordinator>, BrokerError>;

    fn handle(&mut self, msg: LookupGroup, _: &mut Context<Self>) -> Self::Result {
        validate_group_id(&msg.group_id)?;
        let partition = match &self.cluster {
            Some(cluster) => Some(cluster.coordinates(&msg.group_id)?),
            None => None,
        };
        if let Some(addr) = self.coordinators.get(&msg.group_id) {
            return Ok(addr.clone());
        }
        if !msg.create {
            return Err(BrokerError::new(
                ErrorCode::GROUP_ID_NOT_FOUND,
                format!("group `{}` does not exist", msg.group_id),
            ));
        }
        Ok(match partition {
            Some(addr) => {
                let origin = Origin::Partition { addr, state: None, damaged: Vec::new() };
                if let Some(cluster) = &self.cluster {
                    cluster.register(&msg.group_id, true);
                }
                self.start_coordinator_with(&msg.group_id, origin)
            }
            None => self.start_coordinator(&msg.group_id),
        })
    }
}

/// One line of list-groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: &'static str,
    pub members: usize,
    pub assignor: &'static str,
}

/// Every group, sorted by id.
#[derive(Message)]
#[rtype(result = "Vec<GroupSummary>")]
pub struct ListGroups;

impl Handler<ListGroups> for Groups {
    type Result = ResponseFuture<Vec<GroupSummary>>;

    fn handle(&mut self, _: ListGroups, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self.coordinators.values().map(|c| c.send(Summarize)).collect();
        Box::pin(async move { join_all(asks).await.into_iter().flatten().collect() })
    }
}

/// Delete a group (refused while it has members) and its committed offsets.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct DeleteGroup {
    pub group_id: String,
}

impl Handler<DeleteGroup> for Groups {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: DeleteGroup, _: &mut Context<Self>) -> Self::Result {
        if let Some(Err(err)) = self.cluster.as_ref().map(|c| c.coordinates(&msg.group_id)) {
            return Box::pin(fut::ready(Err(err)));
        }
        let Some(addr) = self.coordinators.get(&msg.group_id).cloned() else {
            let err =
                BrokerError::new(ErrorCode::GROUP_ID_NOT_FOUND, format!("group `{}` does not exist", msg.group_id));
            return Box::pin(fut::ready(Err(err)));
        };
        let dir = store::group_dir(&self.dir, &msg.group_id);
        let local = self.cluster.is_none();
        let group_id = msg.group_id;
        Box::pin(addr.send(CloseGroup).into_actor(self).then(move |closed, act, _| {
            let outcome = closed.unwrap_or_else(|e| Err(e.into()));
            let retired = match outcome {
                Ok(()) => {
                    act.coordinators.remove(&group_id);
                    if let Some(cluster) = &act.cluster {
                        cluster.register(&group_id, false);
                    }
                    Ok(local.then(|| retire_group_dir(&dir)))
                }
                Err(err) => Err(err),
            };
            let group_id = group_id.clone();
            let removed = async move {
                if let Some(retired) = retired? {
                    remove_retired(retired).await?;
                }
                tracing::info!(group = %group_id, "deleted group and its committed offsets");
                Ok(())
            };
            removed.into_actor(act)
        }))
    }
}

/// Fsync every group's log (broker shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShutdownGroups;

impl Handler<ShutdownGroups> for Groups {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: ShutdownGroups, _: &mut Context<Self>) -> Self::Result {
        let flushes: Vec<_> = self.coordinators.values().map(|c| c.send(ShutdownGroup)).collect();
        Box::pin(async move {
            for result in join_all(flushes).await {
                if let Err(err) = result.unwrap_or_else(|e| Err(e.into())) {
                    tracing::error!(%err, "a group failed to flush at shutdown");
                }
            }
        })
    }
}
