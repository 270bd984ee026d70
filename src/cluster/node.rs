//! This broker's place in the cluster, as an actor: it holds the ZooKeeper
//! session, keeps the broker registered and running for controller, and
//! knows the live brokers and the controller (what `describe_cluster`
//! answers).
//!
//! Each session's work runs in tasks that report to the actor by message,
//! tagged with the session's number; a report from an ended session is
//! dropped. When a session ends (expired after the broker was cut off or
//! paused past the timeout, or closed), the node forgets the controller,
//! opens a new session, registers again and runs again: the broker rejoins
//! the cluster by itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use herald_actors::broker::Broker;
use herald_wire::protocol::{BrokerInfo, DescribeClusterResponse};
use tokio::sync::oneshot;
use zookeeper_client as zk;

use super::controller::{campaign, ControllerSeen, OnController};
use super::fetcher::ReplicaFetcher;
use super::metadata::{self, watch_topics, OnTopics, TopicChange, Topics};
use super::node_admin::LocalShape;
use super::node_control::Office;
use super::node_roles::GivenRoles;
use super::node_topics::Awaited;
use super::registry::{self, read_brokers, RegistryError, BROKER_IDS};
use super::topics::DELETE_TOPICS;
use crate::config::ClusterSettings;

/// The longest wait between two attempts to open a new session.
const MAX_RETRY: Duration = Duration::from_secs(2);

pub struct ClusterNode {
    pub(super) settings: ClusterSettings,
    host: String,
    port: u16,
    /// This broker's own topics and partitions.
    pub(super) broker: Addr<Broker>,
    /// The group directory, told which partitions of `__consumer_offsets`
    /// lead here.
    pub(super) groups: Addr<herald_actors::group::Groups>,
    /// How to connect to the other brokers.
    pub(super) peers: super::Peers,
    /// The current session's number; reports of older ones are dropped.
    session: u64,
    /// The session's tasks, cancelled when it ends.
    tasks: Vec<SpawnHandle>,
    /// The current session; `None` between sessions.
    pub(super) client: Option<zk::Client>,
    pub(super) controller: Option<ControllerSeen>,
    /// Set while this broker is the controller.
    pub(super) office: Option<Office>,
    pub(super) brokers: Vec<BrokerInfo>,
    /// The cluster's topics, as ZooKeeper holds them.
    pub(super) topics: Topics,
    /// Every id each topic name had in the cluster while this broker
    /// watched: a local topic with one of them was the cluster's.
    pub(super) seen: BTreeMap<String, BTreeSet<String>>,
    /// Partitions whose state the controller is writing.
    pub(super) writing: HashSet<(String, u32)>,
    /// Topics asked to be deleted (`/admin/delete_topics`).
    pub(super) deletions: Vec<String>,
    /// Deletions the controller is carrying out.
    pub(super) deleting: HashSet<String>,
    /// The local topics, by name: their ids.
    pub(super) local: BTreeMap<String, String>,
    /// Whether `local` has been read from the broker.
    pub(super) local_loaded: bool,
    /// Local topics being created, deleted, grown or given new settings.
    pub(super) reconciling: HashSet<String>,
    /// Each local topic's partition count and the settings last applied to it.
    pub(super) shapes: HashMap<String, LocalShape>,
    /// Local topics the cluster never had, warned about once.
    pub(super) warned_stray: HashSet<String>,
    /// Admin changes waiting to be carried out.
    pub(super) awaiting: Vec<(Awaited, oneshot::Sender<()>)>,
    /// The role each local partition was last given.
    pub(super) given: GivenRoles,
    /// The latest role change sent to each local partition, by number: an
    /// older change that completes after it must not undo it.
    pub(super) giving: HashMap<(String, u32), u64>,
    pub(super) next_giving: u64,
    /// Whether this broker is asking for `__consumer_offsets` to be created.
    pub(super) creating_offsets: bool,
    /// `log.unclean_leader_election_enable`: for topics that do not set it.
    pub(super) unclean_default: bool,
    /// The group registry's writes still to make (`node_groups.rs`): per
    /// group, its partition when it exists, `None` when it is gone.
    pub(super) registry_wanted: BTreeMap<String, Option<u32>>,
    pub(super) registry_busy: bool,
    /// A fetcher per leader broker this one follows partitions from.
    pub(super) fetchers: HashMap<i32, Addr<ReplicaFetcher>>,
    /// The next producer id and the last of the block reserved.
    pub(super) producer_ids: Option<(i64, i64)>,
    /// In office: the brokers in controlled shutdown, each with the session
    /// of the registration it asked under (src/cluster/shutdown.rs).
    pub(super) shutting: BTreeMap<i32, i64>,
    /// Set once this broker's own controlled shutdown has been answered: it
    /// follows no partition any more.
    pub(super) leaving: bool,
}

impl ClusterNode {
    /// Opens a session, registers this broker (reached at `host:port`) and
    /// starts the node; the start is refused when ZooKeeper cannot be
    /// reached or the id is taken.
    ///
    /// # Errors
    ///
    /// As [`registry::connect`] and [`registry::register`].
    pub async fn join(
        settings: ClusterSettings,
        host: String,
        port: u16,
        broker: Addr<Broker>,
        groups: Addr<herald_actors::group::Groups>,
        unclean_default: bool,
        peers: super::Peers,
    ) -> Result<Addr<ClusterNode>, RegistryError> {
        let client = registry::connect(&settings).await?;
        registry::register(&client, &settings, &host, port).await?;
        tracing::info!(broker_id = settings.broker_id, %host, port, "registered in the cluster");
        let node = ClusterNode {
            settings,
            host,
            port,
            broker,
            groups,
            peers,
            session: 0,
            tasks: Vec::new(),
            client: None,
            controller: None,
            office: None,
            brokers: Vec::new(),
            topics: Topics::new(),
            seen: BTreeMap::new(),
            writing: HashSet::new(),
            deletions: Vec::new(),
            deleting: HashSet::new(),
            local: BTreeMap::new(),
            local_loaded: false,
            reconciling: HashSet::new(),
            shapes: HashMap::new(),
            warned_stray: HashSet::new(),
            awaiting: Vec::new(),
            given: GivenRoles::new(),
            giving: HashMap::new(),
            next_giving: 0,
            creating_offsets: false,
            unclean_default,
            registry_wanted: BTreeMap::new(),
            registry_busy: false,
            fetchers: HashMap::new(),
            producer_ids: None,
            shutting: BTreeMap::new(),
            leaving: false,
        };
        Ok(ClusterNode::create(move |ctx| {
            let mut node = node;
            // Before any role reaches the directory: the groups it loads
            // are registered too.
            node.groups.do_send(herald_actors::group::UseRegistry(ctx.address().recipient()));
            node.load_local(ctx);
            node.start_session(client, ctx);
            node
        }))
    }

    /// Starts the tasks of a new registered session.
    fn start_session(&mut self, client: zk::Client, ctx: &mut Context<Self>) {
        for task in self.tasks.drain(..) {
            ctx.cancel_future(task);
        }
        self.session += 1;
        let session = self.session;
        let me = ctx.address();
        let id = self.settings.broker_id;
        let reporter = Reporter { node: me.clone(), session };
        let campaigner = client.clone();
        self.tasks.push(
            ctx.spawn(
                async move {
                    let watching = || campaign(&campaigner, id, &reporter);
                    while_the_session_lives(&campaigner, "the controller election", watching).await;
                }
                .into_actor(self),
            ),
        );
        let watcher = client.clone();
        let node = me.clone();
        self.tasks.push(
            ctx.spawn(
                async move {
                    let watching = || watch_brokers(&watcher, &node, session);
                    while_the_session_lives(&watcher, "the broker watch", watching).await;
                }
                .into_actor(self),
            ),
        );
        let topics = client.clone();
        let reporter = Reporter { node: me.clone(), session };
        self.tasks.push(
            ctx.spawn(
                async move {
                    let watching = || watch_topics(&topics, &reporter);
                    while_the_session_lives(&topics, "the topic watch", watching).await;
                }
                .into_actor(self),
            ),
        );
        let deletions = client.clone();
        let node = me.clone();
        self.tasks.push(
            ctx.spawn(
                async move {
                    let watching = || watch_deletions(&deletions, &node, session);
                    while_the_session_lives(&deletions, "the deletion watch", watching).await;
                }
                .into_actor(self),
            ),
        );
        let mut states = client.state_watcher();
        self.tasks.push(
            ctx.spawn(
                async move {
                    loop {
                        let state = states.changed().await;
                        if state.is_terminated() {
                            me.do_send(SessionEnded { session, state });
                            return;
                        }
                        if state == zk::SessionState::Disconnected {
                            tracing::warn!("lost the connection to ZooKeeper; reconnecting");
                        }
                    }
                }
                .into_actor(self),
            ),
        );
        self.client = Some(client);
    }

    /// Opens a new session and registers again, retrying until it works.
    fn rejoin(&mut self, ctx: &mut Context<Self>) {
        let settings = self.settings.clone();
        let (host, port) = (self.host.clone(), self.port);
        let rejoin = async move {
            let mut wait = Duration::from_millis(100);
            loop {
                let attempt = async {
                    let client = registry::connect(&settings).await?;
                    registry::register(&client, &settings, &host, port).await?;
                    Ok::<_, RegistryError>(client)
                };
                match attempt.await {
                    Ok(client) => return client,
                    Err(err) => tracing::warn!(%err, "cannot rejoin the cluster yet; retrying"),
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY);
            }
        };
        let handle = ctx.spawn(rejoin.into_actor(self).map(|client, act, ctx| {
            tracing::info!(broker_id = act.settings.broker_id, "rejoined the cluster with a new ZooKeeper session");
            act.start_session(client, ctx);
        }));
        self.tasks.push(handle);
    }
}

impl Actor for ClusterNode {
    type Context = Context<Self>;
}

/// Reports the controller changes of one session to the node.
struct Reporter {
    node: Addr<ClusterNode>,
    session: u64,
}

impl OnController for Reporter {
    fn seen(&self, controller: ControllerSeen) {
        self.node.do_send(ControllerChanged { session: self.session, controller });
    }
}

impl OnTopics for Reporter {
    fn changed(&self, change: TopicChange) {
        self.node.do_send(TopicsChanged { session: self.session, change });
    }
}

/// Runs `watching` (a watch or the election, which return only on an
/// error) again after each failure while the session lives: a connection
/// lost and re-established within the session fails the requests in flight,
/// not the session, and the watch must go on. Returns once the session has
/// ended (the node then starts everything again with a new one).
async fn while_the_session_lives<F, W>(client: &zk::Client, what: &str, mut watching: F)
where
    F: FnMut() -> W,
    W: std::future::Future<Output = Result<(), zk::Error>>,
{
    let mut wait = Duration::from_millis(50);
    loop {
        let Err(err) = watching().await else { return };
        if client.state().is_terminated() {
            tracing::debug!(%err, what, "stopped with the ZooKeeper session");
            return;
        }
        tracing::warn!(%err, what, "failed while the ZooKeeper session lives; starting it again");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
}

/// Watches `/admin/delete_topics` and reports the topics asked to be
/// deleted at every change.
async fn watch_deletions(client: &zk::Client, node: &Addr<ClusterNode>, session: u64) -> Result<(), zk::Error> {
    registry::ensure_path(client, DELETE_TOPICS).await.map_err(|_| zk::Error::ConnectionLoss)?;
    loop {
        let (topics, _, watcher) = client.get_and_watch_children(DELETE_TOPICS).await?;
        node.do_send(DeletionsChanged { session, topics });
        if watcher.changed().await.event_type == zk::EventType::Session {
            return Err(zk::Error::SessionExpired);
        }
    }
}

/// Watches `/brokers/ids` and reports the live brokers at every change.
async fn watch_brokers(client: &zk::Client, node: &Addr<ClusterNode>, session: u64) -> Result<(), zk::Error> {
    loop {
        let (children, _, watcher) = client.get_and_watch_children(BROKER_IDS).await?;
        let brokers = read_brokers(client, &children)
            .await?
            .into_iter()
            .map(|(id, r)| BrokerInfo { id, host: r.host, port: r.port, rack: r.rack })
            .collect();
        node.do_send(BrokersChanged { session, brokers });
        if watcher.changed().await.event_type == zk::EventType::Session {
            return Err(zk::Error::SessionExpired);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ControllerChanged {
    session: u64,
    controller: ControllerSeen,
}

impl Handler<ControllerChanged> for ClusterNode {
    type Result = ();

    fn handle(&mut self, msg: ControllerChanged, ctx: &mut Context<Self>) {
        if msg.session != self.session {
            return;
        }
        self.controller = Some(msg.controller);
        let me = self.settings.broker_id;
        self.office = (msg.controller.id == me && msg.controller.epoch_version >= 0)
            .then_some(Office { epoch: msg.controller.epoch, epoch_version: msg.controller.epoch_version });
        self.control(None, ctx);
        self.delete_asked(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct BrokersChanged {
    session: u64,
    brokers: Vec<BrokerInfo>,
}

impl Handler<BrokersChanged> for ClusterNode {
    type Result = ();

    fn handle(&mut self, msg: BrokersChanged, ctx: &mut Context<Self>) {
        if msg.session != self.session {
            return;
        }
        self.brokers = msg.brokers;
        self.control(None, ctx);
        let names: Vec<String> = self.topics.keys().cloned().collect();
        self.apply_roles(&names, ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct TopicsChanged {
    session: u64,
    change: TopicChange,
}

impl Handler<TopicsChanged> for ClusterNode {
    type Result = ();

    fn handle(&mut self, msg: TopicsChanged, ctx: &mut Context<Self>) {
        if msg.session != self.session {
            return;
        }
        let touched = metadata::apply(&mut self.topics, msg.change);
        for (name, topic) in &self.topics {
            self.seen.entry(name.clone()).or_default().insert(topic.topic_id.clone());
        }
        self.control(Some(&touched), ctx);
        self.delete_asked(ctx);
        self.reconcile_local(&touched, ctx);
        self.apply_roles(&touched, ctx);
        self.answer_waits();
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct DeletionsChanged {
    session: u64,
    topics: Vec<String>,
}

impl Handler<DeletionsChanged> for ClusterNode {
    type Result = ();

    fn handle(&mut self, msg: DeletionsChanged, ctx: &mut Context<Self>) {
        if msg.session != self.session {
            return;
        }
        self.deletions = msg.topics;
        self.delete_asked(ctx);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct SessionEnded {
    session: u64,
    state: zk::SessionState,
}

impl Handler<SessionEnded> for ClusterNode {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, ctx: &mut Context<Self>) {
        if msg.session != self.session {
            return;
        }
        tracing::warn!(state = ?msg.state, "the ZooKeeper session ended: this broker left the cluster; rejoining");
        self.controller = None;
        self.office = None;
        self.client = None;
        self.brokers.clear();
        for task in self.tasks.drain(..) {
            ctx.cancel_future(task);
        }
        self.rejoin(ctx);
    }
}

/// What `describe_cluster` answers.
#[derive(Message)]
#[rtype(result = "DescribeClusterResponse")]
pub struct DescribeCluster;

impl Handler<DescribeCluster> for ClusterNode {
    type Result = MessageResult<DescribeCluster>;

    fn handle(&mut self, _: DescribeCluster, _: &mut Context<Self>) -> Self::Result {
        let (controller_id, controller_epoch) = self.controller.map_or((-1, 0), |c| (c.id, c.epoch));
        MessageResult(DescribeClusterResponse {
            mode: "zookeeper".into(),
            broker_id: self.settings.broker_id,
            controller_id,
            controller_epoch,
            brokers: self.brokers.clone(),
        })
    }
}

/// What `metadata` answers, for the topics named (all when `None`).
#[derive(Message)]
#[rtype(result = "herald_wire::protocol::MetadataResponse")]
pub struct Metadata {
    pub topics: Option<Vec<String>>,
}

impl Handler<Metadata> for ClusterNode {
    type Result = MessageResult<Metadata>;

    fn handle(&mut self, msg: Metadata, _: &mut Context<Self>) -> Self::Result {
        use herald_wire::protocol::{MetadataResponse, PartitionMetadata, TopicMetadata};
        let live: BTreeSet<i32> = self.brokers.iter().map(|b| b.id).collect();
        let names: Vec<String> = msg.topics.unwrap_or_else(|| self.topics.keys().cloned().collect());
        let topics = names
            .into_iter()
            .map(|name| match self.topics.get(&name) {
                Some(view) => TopicMetadata {
                    topic: name,
                    topic_id: view.topic_id.clone(),
                    error_code: 0,
                    partitions: view
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(p, partition)| {
                            let (leader, leader_epoch, isr) = match &partition.state {
                                Some((s, _)) => (s.leader, s.leader_epoch, s.isr.clone()),
                                None => (-1, -1, Vec::new()),
                            };
                            PartitionMetadata {
                                partition: p as u32,
                                leader,
                                leader_epoch,
                                replicas: partition.replicas.clone(),
                                isr,
                                offline_replicas: partition
                                    .replicas
                                    .iter()
                                    .copied()
                                    .filter(|r| !live.contains(r))
                                    .collect(),
                            }
                        })
                        .collect(),
                },
                None => TopicMetadata { topic: name, topic_id: String::new(), error_code: 3, partitions: Vec::new() },
            })
            .collect();
        MessageResult(MetadataResponse {
            brokers: self.brokers.clone(),
            controller_id: self.controller.map_or(-1, |c| c.id),
            topics,
        })
    }
}
