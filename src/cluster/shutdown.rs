//! Controlled shutdown (Kafka's, adapted; docs/cluster.md): a broker told
//! to stop first asks the controller to move its leaderships away, so that
//! clients find new leaders at once instead of after its session ends.
//!
//! The stopping broker sends `controlled_shutdown` {broker_id} to the
//! controller, or hands it to its own node when it is the controller
//! itself (it keeps the office until it exits; the others elect a
//! successor once its session closes). The controller remembers the broker
//! as shutting down, keyed by its registration's session, until that
//! registration goes (see [`ClusterNode::forget_shutting`]); meanwhile
//! [`super::control::decide`] never elects it and takes it out of every ISR
//! it does not lead. The controller writes those decisions (the same
//! epoch-fenced conditional writes as a failover) and answers, once they
//! are written, with the partitions the broker still leads: those with no
//! other live in-sync replica. After the first answer the broker stops
//! fetching as a follower (it is out of those ISRs; a fetch that caught up
//! would have its leader propose it back in). It asks again, with a
//! backoff, until it leads nothing another replica could take (each
//! partition remaining comes with its live replicas not shutting down, which
//! could lead once in sync; none, as for a single replica or when every
//! broker stops at once, and waiting cannot help) or
//! `cluster.controlled_shutdown_timeout_ms` has passed, then goes on with
//! the rest of its shutdown.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_client::Client;
use herald_wire::protocol::{ControlledShutdownResponse, RemainingPartition};
use zookeeper_client as zk;

use super::fetcher::Unfollow;
use super::node::ClusterNode;
use super::node_control::Decision;
use super::registry::BROKER_IDS;
use super::Peers;

/// The first wait between two attempts; it doubles up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// `controlled_shutdown` at the controller: move broker `broker_id`'s
/// leaderships away and take it out of the ISRs; the partitions it still
/// leads once the decisions are written.
#[derive(Message)]
#[rtype(result = "Result<ControlledShutdownResponse, BrokerError>")]
pub struct ControlledShutdown {
    pub broker_id: i32,
}

impl Handler<ControlledShutdown> for ClusterNode {
    type Result = ResponseActFuture<Self, Result<ControlledShutdownResponse, BrokerError>>;

    fn handle(&mut self, msg: ControlledShutdown, _: &mut Context<Self>) -> Self::Result {
        let id = msg.broker_id;
        let client = match (self.office, self.client.clone()) {
            (Some(_), Some(client)) => client,
            _ => {
                let holder = self.controller_id();
                let error = BrokerError::new(
                    ErrorCode::NOT_CONTROLLER,
                    format!("broker {} is not the controller (the controller is {holder})", self.settings.broker_id),
                );
                return Box::pin(fut::ready(Err(error)));
            }
        };
        if !self.brokers.iter().any(|b| b.id == id) {
            return Box::pin(fut::ready(Err(not_available(id))));
        }
        // The registration's session: the broker is shutting down until
        // this registration goes, not a later one under the same id.
        let path = format!("{BROKER_IDS}/{id}");
        let registration = async move { client.check_stat(&path).await };
        Box::pin(registration.into_actor(self).then(move |stat, act, ctx| {
            let owner = match stat {
                Ok(Some(stat)) => stat.ephemeral_owner,
                Ok(None) => return fut::ready(Err(not_available(id))).boxed_local(),
                Err(err) => {
                    let error = BrokerError::new(
                        ErrorCode::NOT_CONTROLLER,
                        format!("the controller cannot read broker {id}'s registration: {err}"),
                    );
                    return fut::ready(Err(error)).boxed_local();
                }
            };
            // The office may have changed hands during the read.
            if act.office.is_none() {
                let error = BrokerError::new(ErrorCode::NOT_CONTROLLER, "this broker lost the controller's office");
                return fut::ready(Err(error)).boxed_local();
            }
            if act.shutting.insert(id, owner) != Some(owner) {
                tracing::info!(broker_id = id, "broker in controlled shutdown: moving its leaderships away");
            }
            let (keys, writes): (Vec<_>, Vec<_>) =
                act.decisions(None, ctx).into_iter().map(|Decision { key, write }| (key, write)).unzip();
            futures::future::join_all(writes)
                .into_actor(act)
                .map(move |results, act, _| {
                    let mut decided = HashMap::new();
                    for (key, result) in keys.into_iter().zip(results) {
                        act.written(&key, &result);
                        if let Ok(state) = result {
                            decided.insert(key, state.leader);
                        }
                    }
                    let partitions_remaining = act.led_by(id, &decided);
                    tracing::info!(
                        broker_id = id,
                        remaining = partitions_remaining.len(),
                        "answered a controlled shutdown"
                    );
                    Ok(ControlledShutdownResponse { partitions_remaining })
                })
                .boxed_local()
        }))
    }
}

fn not_available(id: i32) -> BrokerError {
    BrokerError::new(ErrorCode::BROKER_NOT_AVAILABLE, format!("broker {id} is not among the live brokers"))
}

impl ClusterNode {
    fn controller_id(&self) -> String {
        match self.controller {
            Some(c) => c.id.to_string(),
            None => "not known".into(),
        }
    }

    /// The partitions broker `id` leads, by the states known and those
    /// just `decided` (their leaders).
    fn led_by(&self, id: i32, decided: &HashMap<(String, u32), i32>) -> Vec<RemainingPartition> {
        let live = |r: &i32| self.brokers.iter().any(|b| b.id == *r);
        let mut led = Vec::new();
        for (name, view) in &self.topics {
            for (p, partition) in view.partitions.iter().enumerate() {
                let key = (name.clone(), p as u32);
                let leader = decided.get(&key).copied().or(partition.state.as_ref().map(|(s, _)| s.leader));
                if leader == Some(id) {
                    let successors = partition
                        .replicas
                        .iter()
                        .copied()
                        .filter(|r| *r != id && live(r) && !self.shutting.contains_key(r))
                        .collect();
                    led.push(RemainingPartition { topic: key.0, partition: key.1, successors });
                }
            }
        }
        led
    }

    /// Forgets the brokers in controlled shutdown that are no longer
    /// `live` (all of them out of office); with `check`, also those whose
    /// registration is now another session's (the broker stopped and came
    /// back between two looks at the broker list), read from ZooKeeper, and
    /// then decides every partition again.
    pub(super) fn forget_shutting(
        &mut self,
        live: &std::collections::BTreeSet<i32>,
        check: bool,
        ctx: &mut Context<Self>,
    ) {
        if self.office.is_none() {
            self.shutting.clear();
            return;
        }
        self.shutting.retain(|id, _| {
            let stays = live.contains(id);
            if !stays {
                tracing::info!(broker_id = id, "a broker in controlled shutdown left the cluster");
            }
            stays
        });
        let Some(client) = self.client.clone() else { return };
        if !check || self.shutting.is_empty() {
            return;
        }
        let asked: BTreeMap<i32, i64> = self.shutting.clone();
        let look = async move {
            let mut gone = Vec::new();
            for (id, owner) in asked {
                match client.check_stat(&format!("{BROKER_IDS}/{id}")).await {
                    Ok(Some(stat)) if stat.ephemeral_owner == owner => {}
                    Ok(_) => gone.push((id, owner)),
                    Err(err) => return Err::<_, zk::Error>(err),
                }
            }
            Ok(gone)
        };
        ctx.spawn(look.into_actor(self).map(|gone, act, ctx| {
            let Ok(gone) = gone else { return };
            let mut changed = false;
            for (id, owner) in gone {
                if act.shutting.get(&id) == Some(&owner) {
                    act.shutting.remove(&id);
                    tracing::info!(broker_id = id, "a broker in controlled shutdown registered again");
                    changed = true;
                }
            }
            if changed {
                act.control(None, ctx);
            }
        }));
    }
}

/// Where this broker's `controlled_shutdown` goes.
#[derive(Message)]
#[rtype(result = "Target")]
struct ShutdownTarget;

enum Target {
    /// This broker is the controller.
    Myself,
    /// The controller, at this address, reached so.
    Controller(i32, String, Peers),
    /// No controller is known (an election under way, between sessions).
    Unknown,
}

impl Handler<ShutdownTarget> for ClusterNode {
    type Result = MessageResult<ShutdownTarget>;

    fn handle(&mut self, _: ShutdownTarget, _: &mut Context<Self>) -> Self::Result {
        if self.office.is_some() {
            return MessageResult(Target::Myself);
        }
        let Some(controller) = self.controller else { return MessageResult(Target::Unknown) };
        MessageResult(match self.brokers.iter().find(|b| b.id == controller.id) {
            Some(b) => Target::Controller(b.id, format!("{}:{}", b.host, b.port), self.peers.clone()),
            None => Target::Unknown,
        })
    }
}

/// Stops following: this broker fetches for no partition any more, and
/// starts no fetch for the roles it is given from now on.
#[derive(Message)]
#[rtype(result = "()")]
struct StopFollowing;

impl Handler<StopFollowing> for ClusterNode {
    type Result = ();

    fn handle(&mut self, _: StopFollowing, _: &mut Context<Self>) {
        if std::mem::replace(&mut self.leaving, true) {
            return;
        }
        for (topic, partition) in self.given.keys() {
            for fetcher in self.fetchers.values() {
                fetcher.do_send(Unfollow { topic: topic.clone(), partition: *partition });
            }
        }
    }
}

/// Runs this broker's controlled shutdown through `node`: asks the
/// controller to move its leaderships away until it leads nothing or
/// `timeout` has passed (then it stops anyway, its remaining partitions
/// left to the failover after its session ends).
pub async fn controlled_shutdown(node: &Addr<ClusterNode>, broker_id: i32, timeout: Duration) {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    let attempts = async {
        let mut connection: Option<(String, Client)> = None;
        let mut wait = BACKOFF;
        loop {
            let answer = match node.send(ShutdownTarget).await {
                Err(_) => return false,
                Ok(Target::Myself) => node
                    .send(ControlledShutdown { broker_id })
                    .await
                    .map_err(BrokerError::from)
                    .and_then(|r| r)
                    .map_err(|err| format!("as the controller: {err}")),
                Ok(Target::Controller(id, address, peers)) => {
                    let client = match connection.take() {
                        Some((at, client)) if at == address => Ok(client),
                        _ => peers
                            .connect(&address, &format!("herald-shutdown-{broker_id}"))
                            .await
                            .map_err(|err| format!("cannot reach the controller (broker {id}) at {address}: {err}")),
                    };
                    match client {
                        Ok(client) => {
                            let asked = client.controlled_shutdown(broker_id).await;
                            connection = Some((address, client));
                            asked.map_err(|err| format!("the controller (broker {id}): {err}"))
                        }
                        Err(err) => Err(err),
                    }
                }
                Ok(Target::Unknown) => Err("no controller known".to_string()),
            };
            match answer {
                Ok(answer) => {
                    node.do_send(StopFollowing);
                    let named: Vec<String> =
                        answer.partitions_remaining.iter().map(|p| format!("{}/{}", p.topic, p.partition)).collect();
                    if answer.partitions_remaining.iter().all(|p| p.successors.is_empty()) {
                        if !named.is_empty() {
                            tracing::warn!(
                                partitions = %named.join(", "),
                                "controlled shutdown: no other live replica can take over these partitions; \
                                 they fail over when this broker's session closes"
                            );
                        }
                        return true;
                    }
                    last = format!("still leads {}", named.join(", "));
                }
                Err(err) => last = err,
            }
            tracing::debug!(attempt = %last, "controlled shutdown not done yet; asking again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    };
    let outcome = tokio::time::timeout(timeout, attempts).await;
    match outcome {
        Ok(false) => tracing::warn!("controlled shutdown skipped: this broker's cluster node is gone"),
        Ok(true) => tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "controlled shutdown done: this broker leads no partition another could take"
        ),
        Err(_) => tracing::warn!(
            timeout_ms = timeout.as_millis() as u64,
            last = %last,
            "controlled shutdown incomplete within cluster.controlled_shutdown_timeout_ms; stopping anyway"
        ),
    }
}
