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

use std::time::Duration;

use actix::prelude::*;
use herald_wire::protocol::{BrokerInfo, DescribeClusterResponse};
use zookeeper_client as zk;

use super::controller::{campaign, ControllerSeen, OnController};
use super::registry::{self, read_brokers, RegistryError, BROKER_IDS};
use crate::config::ClusterSettings;

/// The longest wait between two attempts to open a new session.
const MAX_RETRY: Duration = Duration::from_secs(2);

pub struct ClusterNode {
    settings: ClusterSettings,
    host: String,
    port: u16,
    /// The current session's number; reports of older ones are dropped.
    session: u64,
    /// The session's tasks, cancelled when it ends.
    tasks: Vec<SpawnHandle>,
    controller: Option<ControllerSeen>,
    brokers: Vec<BrokerInfo>,
}

impl ClusterNode {
    /// Opens a session, registers this broker (reached at `host:port`) and
    /// starts the node; the start is refused when ZooKeeper cannot be
    /// reached or the id is taken.
    ///
    /// # Errors
    ///
    /// As [`registry::connect`] and [`registry::register`].
    pub async fn join(settings: ClusterSettings, host: String, port: u16) -> Result<Addr<ClusterNode>, RegistryError> {
        let client = registry::connect(&settings).await?;
        registry::register(&client, &settings, &host, port).await?;
        tracing::info!(broker_id = settings.broker_id, %host, port, "registered in the cluster");
        let node =
            ClusterNode { settings, host, port, session: 0, tasks: Vec::new(), controller: None, brokers: Vec::new() };
        Ok(ClusterNode::create(move |ctx| {
            let mut node = node;
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
                    if let Err(err) = campaign(&campaigner, id, &reporter).await {
                        tracing::debug!(%err, "the controller election stopped with the session");
                    }
                }
                .into_actor(self),
            ),
        );
        let watcher = client.clone();
        let node = me.clone();
        self.tasks.push(
            ctx.spawn(
                async move {
                    if let Err(err) = watch_brokers(&watcher, &node, session).await {
                        tracing::debug!(%err, "the broker watch stopped with the session");
                    }
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
        // The tasks hold the session's client; it closes when they end.
        drop(client);
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

    fn handle(&mut self, msg: ControllerChanged, _: &mut Context<Self>) {
        if msg.session == self.session {
            self.controller = Some(msg.controller);
        }
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

    fn handle(&mut self, msg: BrokersChanged, _: &mut Context<Self>) {
        if msg.session == self.session {
            self.brokers = msg.brokers;
        }
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
