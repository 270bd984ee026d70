//! The Rust client and the command line find a group's coordinator
//! (docs/protocol.md, "Groups in a cluster") against a real broker alone,
//! which coordinates every group: `find_coordinator` names the broker
//! itself, a [`Cluster`] bootstrapped with a dead address first still finds
//! it, looking it up again waits out a broker that is down (until the
//! caller's deadline), and the group commands work through it.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{herald_bin, value, TestBroker, PATIENCE};
use herald::client::{
    coordinator_moved, AutoOffsetReset, Cluster, ConnectOptions, GroupConsumer, GroupConsumerConfig, GroupEvent,
    ResetOffsetsRequest,
};

/// An address nothing listens on (a port just freed).
fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

/// A cluster client given `dead` first, then the broker's address.
async fn cluster_through(dead: SocketAddr, broker: &TestBroker) -> Cluster {
    let bootstrap = [dead.to_string(), broker.addr().to_string()];
    Cluster::connect(&bootstrap, "coordinator-test", ConnectOptions::default()).await.expect("connect")
}

/// A broker alone with `topic` of 2 partitions holding `{p}-{i}` for i in
/// 0..5 in each partition p, and a client of it.
async fn broker_with(topic: &str) -> (TestBroker, herald::client::Client) {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(topic, 2, Default::default()).await.unwrap();
    for p in 0..2u32 {
        admin.produce(topic, Some(p), (0..5).map(|i| value(format!("{p}-{i}"))).collect()).await.unwrap();
    }
    (broker, admin)
}

#[tokio::test]
async fn find_coordinator_of_a_broker_alone_names_the_broker_itself() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    let me = client.describe_cluster().await.unwrap();
    let found = client.find_coordinator("billing").await.unwrap();
    assert_eq!(found.broker_id, me.broker_id);
    let listed = me.brokers.iter().find(|b| b.id == me.broker_id).expect("the broker lists itself");
    assert_eq!((found.host.as_str(), found.port), (listed.host.as_str(), listed.port));

    let invalid = client.find_coordinator("").await.unwrap_err();
    assert_eq!(invalid.code(), Some(herald::client::ErrorCode::INVALID_GROUP_ID.code()), "{invalid}");

    // The cluster client's coordinator is the broker it is connected to.
    let cluster = cluster_through(dead_address(), &broker).await;
    let coordinator = cluster.coordinator("billing", Instant::now() + PATIENCE).await.unwrap();
    assert_eq!(coordinator.describe_cluster().await.unwrap().broker_id, me.broker_id);
    broker.stop().await;
}

#[tokio::test]
async fn a_group_consumer_through_a_cluster_with_a_dead_bootstrap_address_joins_consumes_and_commits() {
    let (broker, _) = broker_with("ledger").await;
    let cluster = cluster_through(dead_address(), &broker).await;
    let mut config = GroupConsumerConfig::new("auditors", &["ledger"]);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.auto_commit = false;
    let mut consumer = GroupConsumer::join_with_cluster(cluster.clone(), config).await.unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while values.len() < 10 {
        assert!(Instant::now() < deadline, "consumed only {values:?}");
        for consumed in consumer.poll().await.unwrap() {
            values.push(String::from_utf8_lossy(consumed.record.value.as_deref().unwrap_or_default()).into_owned());
        }
    }
    values.sort();
    let expected: Vec<String> = (0..2).flat_map(|p| (0..5).map(move |i| format!("{p}-{i}"))).collect();
    assert_eq!(values, expected);
    let assigned: Vec<GroupEvent> = consumer.take_events();
    assert!(matches!(assigned.as_slice(), [GroupEvent::Assigned { .. }]), "{assigned:?}");
    consumer.commit().await.unwrap();

    // Committed, as the coordinator tells through the cluster client.
    let committed = cluster.fetch_offsets("auditors", None).await.unwrap();
    let offsets: BTreeMap<u32, i64> = committed.offsets.iter().map(|o| (o.partition, o.offset)).collect();
    assert_eq!(offsets, BTreeMap::from([(0, 5), (1, 5)]));
    let described = cluster.describe_group("auditors").await.unwrap();
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].member_id, consumer.member_id());
    consumer.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn group_admin_calls_through_a_cluster_list_reset_and_delete() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("jobs", 1, Default::default()).await.unwrap();
    admin.produce("jobs", Some(0), (0..8).map(|i| value(format!("job{i}"))).collect()).await.unwrap();
    let cluster = cluster_through(dead_address(), &broker).await;
    for group in ["workers", "archivers"] {
        let mut config = GroupConsumerConfig::new(group, &["jobs"]);
        config.auto_offset_reset = AutoOffsetReset::Earliest;
        let mut consumer = GroupConsumer::join_with_cluster(cluster.clone(), config).await.unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut consumed = 0;
        while consumed < 8 {
            assert!(Instant::now() < deadline, "consumed only {consumed}");
            consumed += consumer.poll().await.unwrap().len();
        }
        // Auto-commit commits on close.
        consumer.close().await.unwrap();
    }
    let listed: Vec<String> = cluster.list_groups().await.unwrap().into_iter().map(|g| g.group_id).collect();
    assert_eq!(listed, ["archivers", "workers"], "merged and sorted");

    let reset = ResetOffsetsRequest {
        group_id: "workers".into(),
        topic: "jobs".into(),
        partitions: None,
        to: "shift".into(),
        value: Some(-3),
        execute: true,
    };
    let plan = cluster.reset_offsets(&reset).await.unwrap();
    assert!(plan.executed);
    assert_eq!((plan.offsets[0].previous_offset, plan.offsets[0].new_offset), (Some(8), 5));
    assert_eq!(cluster.fetch_offsets("workers", None).await.unwrap().offsets[0].offset, 5);

    cluster.delete_group("workers").await.unwrap();
    let gone = cluster.describe_group("workers").await.unwrap_err();
    assert_eq!(gone.code(), Some(herald::client::ErrorCode::GROUP_ID_NOT_FOUND.code()), "{gone}");
    let listed: Vec<String> = cluster.list_groups().await.unwrap().into_iter().map(|g| g.group_id).collect();
    assert_eq!(listed, ["archivers"]);
    broker.stop().await;
}

#[tokio::test]
async fn looking_for_the_coordinator_backs_off_until_the_callers_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let port = broker.addr().port();
    let cluster = cluster_through(dead_address(), &broker).await;
    cluster.coordinator("g", Instant::now() + PATIENCE).await.unwrap();
    broker.stop().await;
    let closed_by = Instant::now() + PATIENCE;
    while !cluster.home().is_closed() {
        assert!(Instant::now() < closed_by, "the connection to a stopped broker stays open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Nothing answers: asked again after 100, 200, 400 ms, then given up at
    // the deadline.
    let started = Instant::now();
    let Err(err) = cluster.coordinator("g", started + Duration::from_millis(700)).await else {
        panic!("a coordinator was found with no broker up");
    };
    let took = started.elapsed();
    assert!(coordinator_moved(&err), "{err}");
    assert!(took >= Duration::from_millis(650), "gave up after {took:?}, before the deadline");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}, long past the deadline");

    // A broker back within the deadline is found.
    let back = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            std::thread::sleep(Duration::from_millis(500));
            TestBroker::start_on(&dir, port)
        }
    });
    let coordinator = cluster.coordinator("g", Instant::now() + PATIENCE).await.unwrap();
    let broker = back.await.unwrap();
    coordinator.describe_cluster().await.unwrap();
    broker.stop().await;
}

/// Runs `herald ARGS --bootstrap DEAD,BROKER`.
fn herald(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(herald_bin()).args(args).args(["--bootstrap", bootstrap]).output().expect("run herald")
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[tokio::test]
async fn the_group_commands_work_with_a_bootstrap_list() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("jobs", 2, Default::default()).await.unwrap();
    admin.produce("jobs", Some(0), (0..10).map(|i| value(format!("job{i}"))).collect()).await.unwrap();
    let bootstrap = format!("{},{}", dead_address(), broker.addr());
    let run = move |args: Vec<&'static str>| {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || ok(herald(&bootstrap, &args)))
    };

    let out = run(vec!["consume", "jobs", "--group", "workers", "--from-beginning", "--count", "6"]).await.unwrap();
    assert_eq!(out.lines().count(), 6);
    let listed: serde_json::Value = serde_json::from_str(&run(vec!["group", "list", "--json"]).await.unwrap()).unwrap();
    assert_eq!(listed[0]["group"], "workers", "{listed}");
    let described: serde_json::Value =
        serde_json::from_str(&run(vec!["group", "describe", "workers", "--json"]).await.unwrap()).unwrap();
    let partition_0 = described["partitions"].as_array().unwrap().iter().find(|p| p["partition"] == 0).cloned();
    assert_eq!(partition_0.expect("partition 0 described")["current_offset"], 6, "{described}");
    let reset =
        run(vec!["group", "reset-offsets", "workers", "--topic", "jobs", "--to-earliest", "--execute", "--json"])
            .await
            .unwrap();
    let reset: serde_json::Value = serde_json::from_str(&reset).unwrap();
    assert_eq!(reset["executed"], true, "{reset}");
    let out = run(vec!["consume", "jobs", "--group", "workers", "--count", "10"]).await.unwrap();
    assert_eq!(out.lines().count(), 10, "read again from the start");
    assert_eq!(run(vec!["group", "delete", "workers"]).await.unwrap(), "deleted group workers\n");
    assert_eq!(run(vec!["group", "list"]).await.unwrap().lines().count(), 1, "only the header is left");
    broker.stop().await;
}

/// The cluster tests run one at a time: each runs a cluster of its own.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three brokers (`__consumer_offsets` of 3 partitions) with topic `ledger`
/// of 2 partitions of 3 replicas holding `{p}-{i}` for i in 0..5 in each
/// partition p, and a client of them bootstrapped with a dead address first.
async fn cluster_with_a_ledger() -> (common::cluster::Cluster, Cluster) {
    common::init_logging();
    let cluster = common::cluster::Cluster::start_with(3, &[("HERALD_CLUSTER__OFFSETS_TOPIC_PARTITIONS", "3")]).await;
    let any = cluster.live().next().unwrap().client().await;
    any.create_replicated_topic("ledger", 2, Some(3), BTreeMap::new()).await.unwrap();
    for p in 0..2 {
        cluster.placement("ledger", p, "the full ISR", |m| m.isr.len() == 3).await;
    }
    let dead = dead_address().to_string();
    let bootstrap: Vec<String> = std::iter::once(dead).chain(cluster.live().map(|b| b.addr().to_string())).collect();
    let brokers = Cluster::connect(&bootstrap, "coordinator-test", ConnectOptions::default()).await.unwrap();
    for p in 0..2u32 {
        let leader = brokers.leader("ledger", p).await.unwrap();
        leader.produce("ledger", Some(p), (0..5).map(|i| value(format!("{p}-{i}"))).collect()).await.unwrap();
    }
    (cluster, brokers)
}

/// A member of group `auditors` that read the ten records of `ledger` and
/// committed.
async fn auditor_that_read_the_ledger(brokers: &Cluster) -> GroupConsumer {
    let mut config = GroupConsumerConfig::new("auditors", &["ledger"]);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.auto_commit = false;
    let mut consumer = GroupConsumer::join_with_cluster(brokers.clone(), config).await.unwrap();
    let mut consumed = 0;
    let deadline = Instant::now() + PATIENCE;
    while consumed < 10 {
        assert!(Instant::now() < deadline, "consumed only {consumed}");
        consumed += consumer.poll().await.unwrap().len();
    }
    consumer.commit().await.unwrap();
    consumer
}

/// In a real cluster (three brokers and ZooKeeper): the coordinator found is
/// the leader of the group's partition of `__consumer_offsets` (created by
/// the first `find_coordinator`, answered 15 meanwhile, which the lookup
/// waits out), every broker names it, and a member joins there, consumes
/// and commits, and the merged `list_groups` shows its group once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_member_joins_the_leader_of_its_offsets_partition() {
    use herald::protocol::{coordinator_partition, OFFSETS_TOPIC};
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let (cluster, brokers) = cluster_with_a_ledger().await;

    let coordinator = brokers.coordinator("auditors", Instant::now() + common::cluster::TAKEOVER).await.unwrap();
    let coordinator_id = coordinator.describe_cluster().await.unwrap().broker_id;
    let partition = coordinator_partition("auditors", 3);
    let placed = cluster.placement(OFFSETS_TOPIC, partition, "a leader", |_| true).await;
    assert_eq!(coordinator_id, placed.leader, "the coordinator leads __consumer_offsets/{partition}");
    for id in cluster.live_ids() {
        let named = cluster.broker(id).client().await.find_coordinator("auditors").await.unwrap();
        assert_eq!(named.broker_id, coordinator_id, "broker {id} names another coordinator");
    }

    let consumer = auditor_that_read_the_ledger(&brokers).await;
    let described = cluster.broker(coordinator_id).client().await.describe_group("auditors").await.unwrap();
    assert_eq!(described.members.len(), 1, "the member joined at the coordinator");
    let committed = brokers.fetch_offsets("auditors", None).await.unwrap();
    let offsets: BTreeMap<u32, i64> = committed.offsets.iter().map(|o| (o.partition, o.offset)).collect();
    assert_eq!(offsets, BTreeMap::from([(0, 5), (1, 5)]));
    let listed: Vec<String> = brokers.list_groups().await.unwrap().into_iter().map(|g| g.group_id).collect();
    assert_eq!(listed, ["auditors"]);

    // The command line, given another broker, finds the coordinator too
    // (that broker does not know the group as a member's).
    let other = cluster.live_ids().into_iter().find(|id| *id != coordinator_id).unwrap();
    let elsewhere = cluster.broker(other).client().await.describe_group("auditors").await;
    assert!(elsewhere.as_ref().map_or(true, |d| d.members.is_empty()), "broker {other} has the member: {elsewhere:?}");
    let bootstrap = format!("{},{}", dead_address(), cluster.broker(other).addr());
    let (described, listed) = tokio::task::spawn_blocking(move || {
        let described = ok(herald(&bootstrap, &["group", "describe", "auditors", "--json"]));
        (described, ok(herald(&bootstrap, &["group", "list", "--json"])))
    })
    .await
    .unwrap();
    let described: serde_json::Value = serde_json::from_str(&described).unwrap();
    assert_eq!(described["members"].as_array().map(Vec::len), Some(1), "{described}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["group"], "auditors");
    consumer.close().await.unwrap();
}

/// The coordinator's broker is killed: the member reports its partitions
/// lost, finds the new leader of the group's `__consumer_offsets`
/// partition, joins it afresh (a new member id) and consumes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_a_member_whose_coordinator_dies_joins_the_next_one() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let (mut cluster, brokers) = cluster_with_a_ledger().await;
    let mut consumer = auditor_that_read_the_ledger(&brokers).await;
    consumer.take_events();
    let first_member = consumer.member_id().to_string();
    let deadline = Instant::now() + common::cluster::TAKEOVER;
    let old = brokers.coordinator("auditors", deadline).await.unwrap().describe_cluster().await.unwrap().broker_id;
    cluster.kill(old);

    // Lost, then given the partitions again by the next coordinator.
    let deadline = Instant::now() + common::cluster::TAKEOVER + PATIENCE;
    let mut events = Vec::new();
    while !events.iter().any(|e| matches!(e, GroupEvent::Assigned { .. })) {
        assert!(Instant::now() < deadline, "not assigned again; events {events:?}");
        // A poll may fail while the cluster elects new leaders: poll again.
        if let Err(err) = consumer.poll().await {
            tracing::info!(%err, "poll failed during the takeover");
        }
        events.extend(consumer.take_events());
    }
    assert!(matches!(events.first(), Some(GroupEvent::Lost { partitions }) if partitions.len() == 2), "{events:?}");
    assert_ne!(consumer.member_id(), first_member, "joined afresh, without the old member id");
    let new = brokers.coordinator("auditors", deadline).await.unwrap().describe_cluster().await.unwrap().broker_id;
    assert_ne!(new, old, "the dead broker cannot coordinate");
    let described = brokers.describe_group("auditors").await.unwrap();
    let members: Vec<&str> = described.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(members, [consumer.member_id()], "the member is the new coordinator's");
    consumer.close().await.unwrap();
}

/// Consumers that share one [`Cluster`] are members each on a connection of
/// its own (the broker takes one member of a group per connection): both
/// stay members, split the partitions, and read every record once.
#[tokio::test]
async fn group_consumers_sharing_a_cluster_are_each_a_member() {
    let (broker, admin) = broker_with("shared").await;
    let cluster = cluster_through(dead_address(), &broker).await;
    let mut config = GroupConsumerConfig::new("sharers", &["shared"]);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut members = Vec::new();
    for _ in 0..2 {
        members.push(GroupConsumer::join_with_cluster(cluster.clone(), config.clone()).await.unwrap());
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        for member in &mut members {
            member.poll().await.unwrap();
        }
        let owned: Vec<usize> = members.iter().map(|m| m.assignment().len()).collect();
        if owned == [1, 1] {
            break;
        }
        assert!(Instant::now() < deadline, "the two members own {owned:?} partitions");
    }
    let described = admin.describe_group("sharers").await.unwrap();
    assert_eq!(described.members.len(), 2, "{described:?}");
    for member in members {
        member.close().await.unwrap();
    }
    broker.stop().await;
}
