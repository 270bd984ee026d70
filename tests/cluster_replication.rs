//! Replication through the real binary against a real ZooKeeper: followers
//! fetch from the leader and keep byte-identical logs; acks=all is answered
//! once every in-sync replica has the batch; a follower refuses produce;
//! when the leader dies a follower takes over with every acknowledged
//! record; min_insync_replicas holds acks=all back while too few replicas
//! are alive and lets it through again when one returns.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{log_bytes, Cluster, TAKEOVER};
use common::*;
use herald::client::Client;
use herald::protocol::ConfigValue;

async fn produce_all(client: &Client, topic: &str, from: usize, n: usize) -> Vec<i64> {
    let mut offsets = Vec::new();
    for i in from..from + n {
        let answer = client.produce_with_acks(topic, Some(0), vec![value(format!("v{i}"))], -1).await;
        let answer = answer.unwrap_or_else(|err| panic!("acks=all produce of v{i}: {err}"));
        offsets.push(answer[0].base_offset);
    }
    offsets
}

#[tokio::test]
async fn replicas_stay_identical_and_a_follower_takes_over_with_everything_acknowledged() {
    let mut cluster = Cluster::start(3).await;
    let any = cluster.broker(1).client().await;
    any.create_topic("r", 1, BTreeMap::new()).await.unwrap();
    let placed = cluster.placement("r", 0, "leader and full ISR", |p| p.isr.len() == 3).await;
    let leader = cluster.broker(placed.leader).client().await;

    // A follower refuses produce.
    let follower_id = placed.replicas.iter().copied().find(|&id| id != placed.leader).unwrap();
    let follower = cluster.broker(follower_id).client().await;
    let err = follower.produce_with_acks("r", Some(0), vec![value("nope")], -1).await.unwrap_err();
    assert_eq!(err.code(), Some(6), "{err}");

    // Acknowledged with acks=all: every replica has it, byte for byte.
    let offsets = produce_all(&leader, "r", 0, 50).await;
    assert_eq!(offsets, (0..50).collect::<Vec<i64>>());
    let deadline = Instant::now() + TAKEOVER;
    let reference = log_bytes(&cluster.root(placed.leader), "r", 0);
    assert!(!reference.is_empty());
    for &id in &placed.replicas {
        loop {
            if log_bytes(&cluster.root(id), "r", 0) == reference {
                break;
            }
            assert!(Instant::now() < deadline, "broker {id}'s log differs from the leader's");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let read = read_partition(&leader, "r", 0, 0).await;
    assert_eq!(read.len(), 50);

    // The leader dies: a follower in sync takes over with all 50, and takes more.
    cluster.kill(placed.leader);
    let after = cluster.placement("r", 0, "a new leader", |p| p.leader != placed.leader).await;
    assert!(after.leader_epoch > placed.leader_epoch);
    let new_leader = cluster.broker(after.leader).client().await;
    let more = produce_all(&new_leader, "r", 50, 10).await;
    assert_eq!(more, (50..60).collect::<Vec<i64>>(), "no offset reused, none skipped");
    let read = read_partition(&new_leader, "r", 0, 0).await;
    let values: Vec<String> = read.iter().map(text).collect();
    assert_eq!(values, (0..60).map(|i| format!("v{i}")).collect::<Vec<_>>());
    drop(any);
}

#[tokio::test]
async fn min_insync_replicas_holds_acks_all_until_enough_replicas_are_back() {
    let mut cluster = Cluster::start(3).await;
    let any = cluster.broker(1).client().await;
    let config = BTreeMap::from([("min_insync_replicas".to_string(), ConfigValue::Int(2))]);
    any.create_topic("m", 1, config).await.unwrap();
    let placed = cluster.placement("m", 0, "leader and full ISR", |p| p.isr.len() == 3).await;
    let leader_client = cluster.broker(placed.leader).client().await;
    produce_all(&leader_client, "m", 0, 5).await;

    // Both followers die: acks=all is refused, acks=1 and reads still work.
    let followers: Vec<i32> = placed.replicas.iter().copied().filter(|&id| id != placed.leader).collect();
    for &id in &followers {
        cluster.kill(id);
    }
    cluster.placement("m", 0, "the ISR down to the leader", |p| p.isr == [placed.leader]).await;
    let err = leader_client.produce_with_acks("m", Some(0), vec![value("refused")], -1).await.unwrap_err();
    assert_eq!(err.code(), Some(19), "NOT_ENOUGH_REPLICAS: {err}");
    assert_eq!(read_partition(&leader_client, "m", 0, 0).await.len(), 5);

    // One returns, catches up, rejoins the ISR: acks=all goes through again.
    let back = followers[0];
    cluster.restart(back);
    cluster.placement("m", 0, "the returning follower back in the ISR", |p| p.isr.contains(&back)).await;
    produce_all(&leader_client, "m", 5, 5).await;
    let values: Vec<String> = read_partition(&leader_client, "m", 0, 0).await.iter().map(text).collect();
    assert_eq!(values, (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>());
    drop(any);
}

#[tokio::test]
async fn producer_ids_are_unique_across_the_brokers_of_a_cluster() {
    let mut cluster = Cluster::start(3).await;
    let mut ids = std::collections::BTreeSet::new();
    for round in 0..2 {
        for id in 1..=3 {
            let client = cluster.broker(id).client().await;
            for _ in 0..3 {
                let (producer_id, epoch) = client.init_producer_id().await.unwrap();
                assert_eq!(epoch, 0);
                assert!(ids.insert(producer_id), "round {round}: producer id {producer_id} handed out twice");
            }
        }
        // A broker restarted reserves a new block: none of its old ids again.
        cluster.kill(1);
        cluster.restart(1);
    }
}
