//! Consumer groups in a cluster, against a real ZooKeeper and the real
//! binary: a group's coordinator is the leader of its partition of
//! `__consumer_offsets` (created by the first `find_coordinator`); other
//! brokers answer `NOT_COORDINATOR`; commits are replicated, so when the
//! coordinator's broker is SIGKILLed the new coordinator answers every
//! acknowledged commit; a deleted group stays deleted across a move.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, TAKEOVER};
use herald::client::{Client, ClientError};
use herald::protocol::{
    coordinator_partition, group_op, CommitOffsetsRequest, CommitOffsetsResponse, FetchOffsetsRequest,
    FetchOffsetsResponse, FindCoordinatorResponse, GroupRequest, JoinGroupRequest, OffsetCommit, OFFSETS_TOPIC,
};

/// Kept small so that a test's brokers start it quickly; the default (50)
/// is exercised by `the_default_offsets_topic_is_created_on_first_need`.
const PARTITIONS: &str = "6";

fn code(err: &ClientError) -> i16 {
    err.code().unwrap_or(-1)
}

/// Asks the live brokers, in turn, until one names a live coordinator.
async fn find(cluster: &Cluster, group: &str) -> FindCoordinatorResponse {
    let deadline = Instant::now() + TAKEOVER;
    let mut last = None;
    loop {
        for id in cluster.live_ids() {
            let client = cluster.broker(id).client().await;
            let asked = GroupRequest { group_id: group.to_string() };
            match client.request::<_, FindCoordinatorResponse>(group_op::FIND_COORDINATOR, &asked).await {
                Ok(found) if cluster.live_ids().contains(&found.broker_id) => return found,
                other => last = Some(format!("{other:?}")),
            }
        }
        assert!(Instant::now() < deadline, "no coordinator for `{group}` within {TAKEOVER:?}; last {last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `op` to the group's coordinator until it is answered with
/// something other than "look again" (14, 15, 16, a closed connection).
async fn at_coordinator<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    cluster: &Cluster,
    group: &str,
    op: &str,
    body: &Req,
) -> (i32, Result<Resp, ClientError>) {
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let found = find(cluster, group).await;
        let client = cluster.broker(found.broker_id).client().await;
        let answer = client.request::<_, Resp>(op, body).await;
        let again = match &answer {
            Err(err) => matches!(code(err), 14..=16) || err.code().is_none(),
            Ok(_) => false,
        };
        if !again || Instant::now() > deadline {
            return (found.broker_id, answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn commit(cluster: &Cluster, group: &str, topic: &str, offsets: &[(u32, i64)]) -> i32 {
    let request = CommitOffsetsRequest {
        group_id: group.to_string(),
        member_id: None,
        generation_id: -1,
        offsets: offsets
            .iter()
            .map(|(p, o)| OffsetCommit {
                topic: topic.to_string(),
                partition: i64::from(*p),
                offset: *o,
                metadata: None,
            })
            .collect(),
    };
    let (at, answer) =
        at_coordinator::<_, CommitOffsetsResponse>(cluster, group, group_op::COMMIT_OFFSETS, &request).await;
    let answer = answer.unwrap_or_else(|err| panic!("commit to broker {at}: {err}"));
    assert!(answer.partitions.iter().all(|p| p.error_code == 0), "{answer:?}");
    at
}

async fn committed(cluster: &Cluster, group: &str) -> (i32, BTreeMap<(String, u32), i64>) {
    let request =
        FetchOffsetsRequest { group_id: group.to_string(), partitions: None, member_id: None, generation_id: None };
    let (at, answer) =
        at_coordinator::<_, FetchOffsetsResponse>(cluster, group, group_op::FETCH_OFFSETS, &request).await;
    let answer = answer.unwrap_or_else(|err| panic!("fetch_offsets at broker {at}: {err}"));
    (at, answer.offsets.into_iter().map(|o| ((o.topic, o.partition), o.offset)).collect())
}

/// The group's registration in ZooKeeper (`/consumers`), if any.
async fn registration(cluster: &Cluster, group: &str) -> Option<herald::cluster::node_groups::GroupRegistration> {
    let client = zookeeper_client::Client::connect(&cluster.zk.address).await.unwrap();
    match client.get_data(&herald::cluster::node_groups::group_path(group)).await {
        Ok((data, _)) => Some(serde_json::from_slice(&data).unwrap()),
        Err(zookeeper_client::Error::NoNode) => None,
        Err(err) => panic!("reading the group registry: {err}"),
    }
}

/// Waits until the group's registration is `wanted`.
async fn registered(cluster: &Cluster, group: &str, wanted: Option<u32>) {
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let found = registration(cluster, group).await;
        if found.as_ref().map(|r| r.offsets_partition) == wanted {
            assert!(found.is_none_or(|r| r.group == group && r.version == 1));
            return;
        }
        assert!(Instant::now() < deadline, "`{group}` registered as {found:?}, not {wanted:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start() -> Cluster {
    let cluster = Cluster::start_with(3, &[("HERALD_CLUSTER__OFFSETS_TOPIC_PARTITIONS", PARTITIONS)]).await;
    cluster.broker(1).client().await.create_topic("events", 4, BTreeMap::new()).await.unwrap();
    cluster
}

#[tokio::test]
async fn only_the_coordinator_serves_a_group_and_commits_survive_its_sigkill() {
    let mut cluster = start().await;
    let group = "payments";
    let coordinator = find(&cluster, group).await;
    // Kafka's placement, over the topic's partitions.
    let partition = coordinator_partition(group, PARTITIONS.parse().unwrap());
    let described = cluster.broker(1).client().await.metadata(Some(vec![OFFSETS_TOPIC.to_string()])).await.unwrap();
    let leader = described.topics[0].partitions[partition as usize].leader;
    assert_eq!(leader, coordinator.broker_id, "the coordinator is the leader of partition {partition}");
    assert_eq!(described.topics[0].partitions.len(), 6);

    // Every other broker sends the group's members away.
    for id in cluster.live_ids().into_iter().filter(|id| *id != coordinator.broker_id) {
        let client = cluster.broker(id).client().await;
        let join = JoinGroupRequest {
            group_id: group.to_string(),
            member_id: None,
            topics: vec!["events".into()],
            group_instance_id: None,
            session_timeout_ms: None,
            rebalance_timeout_ms: None,
            assignor: None,
        };
        let refused = client.request::<_, herald::protocol::AssignmentResponse>(group_op::JOIN_GROUP, &join).await;
        assert_eq!(refused.as_ref().map_err(code).err(), Some(16), "broker {id}: {refused:?}");
        let fetch =
            FetchOffsetsRequest { group_id: group.into(), partitions: None, member_id: None, generation_id: None };
        let refused = client.request::<_, FetchOffsetsResponse>(group_op::FETCH_OFFSETS, &fetch).await;
        assert_eq!(refused.as_ref().map_err(code).err(), Some(16), "broker {id}: {refused:?}");
    }

    // Acknowledged commits, the last of each partition wins.
    let mut want = BTreeMap::new();
    for round in 0..20i64 {
        let offsets: Vec<(u32, i64)> = (0..4).map(|p| (p, round * 10 + i64::from(p))).collect();
        commit(&cluster, group, "events", &offsets).await;
        for (p, o) in offsets {
            want.insert(("events".to_string(), p), o);
        }
    }
    assert_eq!(committed(&cluster, group).await.1, want);
    // ZooKeeper's group registry names the group and its partition.
    registered(&cluster, group, Some(partition)).await;

    cluster.kill(coordinator.broker_id);
    let (moved_to, after) = committed(&cluster, group).await;
    assert_ne!(moved_to, coordinator.broker_id);
    assert_eq!(after, want, "the new coordinator (broker {moved_to}) lost acknowledged commits");

    // The old coordinator comes back as a follower of the partition: the
    // group stays where it moved, with everything committed since.
    commit(&cluster, group, "events", &[(0, 1_000)]).await;
    want.insert(("events".to_string(), 0), 1_000);
    cluster.restart(coordinator.broker_id);
    cluster.all_in(3).await;
    assert_eq!(committed(&cluster, group).await.1, want);
}

#[tokio::test]
async fn a_deleted_group_stays_deleted_when_its_coordinator_moves() {
    let mut cluster = start().await;
    let (gone, kept) = ("short-lived", "long-lived");
    commit(&cluster, gone, "events", &[(0, 5)]).await;
    commit(&cluster, kept, "events", &[(1, 7)]).await;
    let (at, deleted) = at_coordinator::<_, herald::protocol::Empty>(
        &cluster,
        gone,
        group_op::DELETE_GROUP,
        &GroupRequest { group_id: gone.into() },
    )
    .await;
    deleted.unwrap_or_else(|err| panic!("delete at broker {at}: {err}"));
    registered(&cluster, gone, None).await;
    registered(&cluster, kept, Some(coordinator_partition(kept, PARTITIONS.parse().unwrap()))).await;
    cluster.kill(at);
    let (_, after) = committed(&cluster, gone).await;
    assert!(after.is_empty(), "a deleted group came back: {after:?}");
    let (_, after) = committed(&cluster, kept).await;
    assert_eq!(after, BTreeMap::from([(("events".to_string(), 1), 7)]));
}

#[tokio::test]
async fn clients_may_not_write_the_groups_topic() {
    let cluster = start().await;
    find(&cluster, "any").await;
    let client = cluster.broker(1).client().await;
    let produced = client.produce_with_acks(OFFSETS_TOPIC, Some(0), vec![common::value("x")], 1).await;
    assert_eq!(produced.as_ref().map_err(code).err(), Some(42), "{produced:?}");
    let deleted = client.delete_topic(OFFSETS_TOPIC).await;
    assert_eq!(deleted.as_ref().map_err(code).err(), Some(42), "{deleted:?}");
    let grown = client.add_partitions(OFFSETS_TOPIC, 10).await;
    assert_eq!(grown.as_ref().map_err(code).err(), Some(42), "{grown:?}");
}

#[tokio::test]
async fn the_default_offsets_topic_is_created_on_first_need() {
    let cluster = Cluster::start(3).await;
    let client = cluster.broker(2).client().await;
    let asked = GroupRequest { group_id: "first".into() };
    let first = client.request::<_, FindCoordinatorResponse>(group_op::FIND_COORDINATOR, &asked).await;
    assert_eq!(first.as_ref().map_err(code).err(), Some(15), "{first:?}");
    let started = Instant::now();
    let found = find(&cluster, "first").await;
    println!("coordinator {} after {:?}", found.broker_id, started.elapsed());
    let described = client.metadata(Some(vec![OFFSETS_TOPIC.to_string()])).await.unwrap();
    let partitions = &described.topics[0].partitions;
    assert_eq!(partitions.len(), 50);
    assert!(partitions.iter().all(|p| p.replicas.len() == 3));
    let _: &Client = &client;
}

/// A custom actor that commits and reads progress through its context.
struct Progress {
    context: herald::extension::ExtensionContext,
}

impl actix::Actor for Progress {
    type Context = actix::Context<Self>;
}

type Commit = (String, String, u32, i64);

impl actix::Handler<herald::extension::CustomRequest> for Progress {
    type Result = actix::ResponseFuture<herald::extension::CustomResult>;

    fn handle(&mut self, request: herald::extension::CustomRequest, _: &mut actix::Context<Self>) -> Self::Result {
        use herald::extension::CustomError;
        let context = self.context.clone();
        Box::pin(async move {
            let (group, topic, partition, offset): Commit =
                rmp_serde::from_slice(&request.body).map_err(|e| CustomError::invalid_request(e.to_string()))?;
            let failed = |err: herald::extension::BrokerError| CustomError::new(err.code.code(), err.message);
            let answer = match request.op.as_str() {
                "x.progress.commit" => {
                    context.commit(&group, &topic, partition, offset).await.map_err(failed)?;
                    offset
                }
                _ => context.committed(&group, &topic, partition).await.map_err(failed)?.unwrap_or(-1),
            };
            Ok(bytes::Bytes::from(rmp_serde::to_vec(&answer).unwrap()))
        })
    }
}

impl actix::Handler<herald::extension::Stop> for Progress {
    type Result = ();

    fn handle(&mut self, _: herald::extension::Stop, _: &mut actix::Context<Self>) {}
}

/// An extension on one broker commits progress for a group another broker
/// coordinates: the commit reaches that coordinator, and reads back.
#[tokio::test]
async fn an_extensions_progress_reaches_a_coordinator_on_another_broker() {
    use herald::extension::OpHandler;
    let cluster = Cluster::start_with(2, &[("HERALD_CLUSTER__OFFSETS_TOPIC_PARTITIONS", PARTITIONS)]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::test_settings(dir.path());
    settings.cluster.zookeeper = cluster.zk.address.clone();
    settings.cluster.broker_id = 3;
    settings.cluster.zookeeper_session_timeout_ms = common::cluster::SESSION_TIMEOUT_MS;
    settings.cluster.offsets_topic_partitions = PARTITIONS.parse().unwrap();
    let here = common::TestBroker::start_built(settings, |builder| {
        builder
            .actor("progress", |context| Progress { context })
            .op("x.progress.commit", OpHandler::actor("progress"))
            .op("x.progress.committed", OpHandler::actor("progress"))
    });
    cluster.all_in(3).await;
    cluster.broker(1).client().await.create_topic("events", 2, BTreeMap::new()).await.unwrap();

    // A group another broker coordinates (once the topic has leaders).
    let client = cluster.broker(1).client().await;
    let deadline = Instant::now() + TAKEOVER;
    let (group, elsewhere) = 'found: loop {
        for n in 0..50 {
            let asked = GroupRequest { group_id: format!("progress-{n}") };
            match client.request::<_, FindCoordinatorResponse>(group_op::FIND_COORDINATOR, &asked).await {
                Ok(found) if found.broker_id != 3 => break 'found (asked.group_id, found.broker_id),
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "no group coordinated by broker 1 or 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let extension = here.client().await;
    let commit: Commit = (group.clone(), "events".into(), 1, 42);
    let deadline = Instant::now() + TAKEOVER;
    loop {
        match extension.call::<_, i64>("x.progress.commit", &commit).await {
            Ok(42) => break,
            other => assert!(Instant::now() < deadline, "commit through the extension: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(extension.call::<_, i64>("x.progress.committed", &commit).await.unwrap(), 42);
    let fetch = FetchOffsetsRequest { group_id: group.clone(), partitions: None, member_id: None, generation_id: None };
    let at = cluster.broker(elsewhere).client().await;
    let stored: FetchOffsetsResponse = at.request(group_op::FETCH_OFFSETS, &fetch).await.unwrap();
    assert_eq!(stored.offsets.iter().map(|o| (o.partition, o.offset)).collect::<Vec<_>>(), [(1, 42)]);
    here.stop().await;
}
