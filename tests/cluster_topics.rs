//! Topics in a cluster against a real ZooKeeper: a topic created through
//! any broker is placed with its replicas spread and its leaders balanced,
//! every broker keeps it with the same id, the controller elects each
//! partition's leader and, when a leader's broker dies, a new one from the
//! in-sync replicas with the next leader epoch; a delete through any broker
//! removes it everywhere. Replication factors out of bounds are refused.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{describe_until, member, ZooKeeper, SESSION_TIMEOUT_MS};
use common::*;
use herald::cluster::metadata::{read_topic, TopicView};

const TAKEOVER: Duration = Duration::from_millis(SESSION_TIMEOUT_MS + 8_000);

/// Reads the topic from ZooKeeper until `done` holds of it.
async fn topic_until(
    zookeeper: &str,
    topic: &str,
    what: &str,
    done: impl Fn(&Option<TopicView>) -> bool,
) -> Option<TopicView> {
    let client = zookeeper_client::Client::connect(zookeeper).await.expect("connect to zookeeper");
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let view = read_topic(&client, topic).await.expect("read the topic");
        if done(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "{what}: not within {TAKEOVER:?}; last seen {view:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn led(view: &Option<TopicView>) -> bool {
    view.as_ref().is_some_and(|t| t.partitions.iter().all(|p| p.state.as_ref().is_some_and(|(s, _)| s.leader >= 0)))
}

#[tokio::test]
async fn topics_are_placed_led_failed_over_and_deleted_across_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let zk = ZooKeeper::start(&dir.path().join("zk"));
    let mut brokers: Vec<Option<BinaryBroker>> =
        (1..=3).map(|id| Some(member(&dir.path().join(format!("b{id}")), &zk.address, id))).collect();
    for broker in brokers.iter().flatten() {
        describe_until(broker, TAKEOVER, "three brokers", |d| d.brokers.len() == 3 && d.controller_id != -1).await;
    }

    // Created through broker 2, with the default factor (3 brokers: 3).
    let two = brokers[1].as_ref().unwrap().client().await;
    two.create_topic("orders", 6, BTreeMap::new()).await.expect("create in the cluster");
    let view = topic_until(&zk.address, "orders", "leaders elected", led).await.unwrap();
    let mut leaders = BTreeMap::new();
    for p in &view.partitions {
        let mut replicas = p.replicas.clone();
        replicas.sort();
        assert_eq!(replicas, [1, 2, 3]);
        let (state, _) = p.state.as_ref().unwrap();
        assert_eq!((state.leader, state.leader_epoch), (p.replicas[0], 0), "the preferred leader leads: {p:?}");
        assert_eq!(state.isr, p.replicas);
        *leaders.entry(state.leader).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), [2, 2, 2], "{leaders:?}");
    // Every broker keeps the topic, with the cluster's id.
    for broker in brokers.iter().flatten() {
        let described = broker.client().await.describe_topic("orders").await.expect("the topic is kept here");
        assert_eq!(described.topic_id, view.topic_id);
        assert_eq!(described.partitions.len(), 6);
    }

    // Every broker tells where each partition is led, as ZooKeeper says.
    for broker in brokers.iter().flatten() {
        let client = broker.client().await;
        let deadline = Instant::now() + TAKEOVER;
        loop {
            let m = client.metadata(Some(vec!["orders".into(), "nothing".into()])).await.unwrap();
            assert_eq!(m.brokers.len(), 3);
            assert_eq!(m.topics[1].error_code, 3, "{m:?}");
            let agrees = m.topics[0].partitions.iter().zip(&view.partitions).all(|(got, want)| {
                let (state, _) = want.state.as_ref().unwrap();
                (got.leader, got.leader_epoch, &got.replicas, &got.isr)
                    == (state.leader, state.leader_epoch, &want.replicas, &state.isr)
            });
            if agrees && m.topics[0].topic_id == view.topic_id {
                break;
            }
            assert!(Instant::now() < deadline, "metadata disagrees with ZooKeeper: {m:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Refusals: a taken name, more replicas than brokers.
    let err = two.create_topic("orders", 1, BTreeMap::new()).await.unwrap_err();
    assert_eq!(err.code(), Some(36), "{err}");
    let err = two.create_replicated_topic("wide", 1, Some(4), BTreeMap::new()).await.unwrap_err();
    assert_eq!(err.code(), Some(38), "{err}");
    // Compacted topics too (tests/cluster_compaction.rs has them replicated).
    let compact =
        BTreeMap::from([("cleanup_policy".to_string(), herald::protocol::ConfigValue::Str("compact".into()))]);
    two.create_topic("kv", 1, compact).await.expect("a compacted topic in a cluster");
    two.create_replicated_topic("narrow", 3, Some(1), BTreeMap::new()).await.expect("one replica each");
    let narrow = topic_until(&zk.address, "narrow", "narrow led", led).await.unwrap();
    assert!(narrow.partitions.iter().all(|p| p.replicas.len() == 1));

    // The leader of partition 0 dies: a replica in sync takes over, with the next epoch.
    let (old, _) = view.partitions[0].state.clone().unwrap();
    brokers[(old.leader - 1) as usize].take().unwrap().kill();
    let after = topic_until(&zk.address, "orders", "a new leader for partition 0", |v| {
        v.as_ref()
            .and_then(|t| t.partitions[0].state.as_ref())
            .is_some_and(|(s, _)| s.leader != old.leader && s.leader >= 0)
    })
    .await
    .unwrap();
    for (p, before) in after.partitions.iter().zip(&view.partitions) {
        let (state, _) = p.state.as_ref().unwrap();
        let (was, _) = before.state.as_ref().unwrap();
        assert!(!state.isr.contains(&old.leader), "the dead broker left every ISR: {state:?}");
        assert_ne!(state.leader, old.leader);
        assert_eq!(state.leader_epoch, was.leader_epoch + 1, "{state:?}");
    }
    // Under-replicated partitions are plain to see.
    let survivor = brokers.iter().flatten().next().unwrap();
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let (status, out) = herald_cli(&["topic", "describe", "orders", "-b", &survivor.addr().to_string()]);
        assert_eq!(status, Some(0), "{out}");
        if out.matches("under-replicated").count() == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = survivor.client().await.metadata(None).await.unwrap();
    let orders = m.topics.iter().find(|t| t.topic == "orders").unwrap();
    assert!(orders.partitions.iter().all(|p| p.offline_replicas == [old.leader]), "{orders:?}");

    // A partition of `narrow` on the dead broker goes offline, no other replica being in sync.
    let narrow_after = topic_until(&zk.address, "narrow", "narrow offline where it lived on the dead broker", |v| {
        v.as_ref().is_some_and(|t| {
            t.partitions.iter().all(|p| {
                let (s, _) = p.state.as_ref().unwrap();
                (p.replicas[0] == old.leader) == (s.leader == -1)
            })
        })
    })
    .await;
    assert!(narrow_after.is_some());

    // Deleted through a survivor: gone from ZooKeeper and from every live broker.
    let survivor = brokers.iter().flatten().next().unwrap();
    survivor.client().await.delete_topic("orders").await.expect("delete in the cluster");
    topic_until(&zk.address, "orders", "the topic deleted", Option::is_none).await;
    for broker in brokers.iter().flatten() {
        let err = broker.client().await.describe_topic("orders").await.unwrap_err();
        assert_eq!(err.code(), Some(3), "{err}");
    }
}

#[tokio::test]
async fn a_broker_alone_keeps_one_replica() {
    let broker = TestBroker::start();
    let client = herald::client::Client::connect(broker.addr(), "cluster-test").await.unwrap();
    let err = client.create_replicated_topic("t", 1, Some(2), BTreeMap::new()).await.unwrap_err();
    assert_eq!(err.code(), Some(38), "{err}");
    client.create_replicated_topic("t", 2, Some(1), BTreeMap::new()).await.unwrap();
    let m = client.metadata(None).await.unwrap();
    assert_eq!((m.controller_id, m.brokers.len()), (0, 1));
    assert_eq!(m.topics.len(), 1);
    let leaders: Vec<(i32, Vec<i32>, Vec<i32>)> =
        m.topics[0].partitions.iter().map(|p| (p.leader, p.replicas.clone(), p.isr.clone())).collect();
    assert_eq!(leaders, [(0, vec![0], vec![0]), (0, vec![0], vec![0])]);
}
