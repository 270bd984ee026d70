//! The admin changes of a live topic in a cluster, against a real
//! ZooKeeper and the real binary: `add_partitions` through a broker that
//! leads nothing of the topic grows it on every broker, with leaders and
//! full ISRs for the new partitions; `alter_topic_config` through any broker
//! reaches every broker's copy, `min_insync_replicas` the leader included;
//! `delete_records` at the leader moves every replica's log start, which a
//! new leader then keeps.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{log_bytes, Cluster, TAKEOVER};
use common::*;
use herald::client::Client;
use herald::cluster::metadata::read_topic;
use herald::protocol::ConfigValue;

fn int(key: &str, n: i64) -> BTreeMap<String, ConfigValue> {
    BTreeMap::from([(key.to_string(), ConfigValue::Int(n))])
}

/// Waits until broker `id`'s own copy of `topic` satisfies `done`.
async fn copy_until(
    cluster: &Cluster,
    id: i32,
    topic: &str,
    what: &str,
    done: impl Fn(&herald::protocol::DescribeTopicResponse) -> bool,
) {
    let client = cluster.broker(id).client().await;
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let described = client.describe_topic(topic).await;
        if described.as_ref().is_ok_and(&done) {
            return;
        }
        assert!(Instant::now() < deadline, "broker {id}, {what}: not within {TAKEOVER:?}; last {described:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn produce_at(client: &Client, topic: &str, partition: u32, v: &str, acks: i64) -> Result<i64, i16> {
    match client.produce_with_acks(topic, Some(partition), vec![value(v)], acks).await {
        Ok(answer) => Ok(answer[0].base_offset),
        Err(err) => Err(err.code().unwrap_or(-1)),
    }
}

#[tokio::test]
async fn partitions_added_and_settings_altered_through_any_broker_reach_every_broker() {
    let mut cluster = Cluster::start(3).await;
    cluster.broker(1).client().await.create_topic("grow", 2, BTreeMap::new()).await.unwrap();
    let mut before = Vec::new();
    for p in 0..2 {
        before.push(cluster.placement("grow", p, "leader and full ISR", |m| m.isr.len() == 3).await);
    }
    // Through a broker that leads neither partition when there is one.
    let through = (1..=3).find(|id| before.iter().all(|p| p.leader != *id)).unwrap_or(before[0].replicas[1]);
    let admin = cluster.broker(through).client().await;
    assert_eq!(admin.add_partitions("grow", 5).await.expect("add in the cluster"), 5);

    // The new partitions are led, fully in sync, on every broker; the old ones kept their replicas.
    let mut placed = Vec::new();
    for p in 0..5 {
        placed.push(cluster.placement("grow", p, "the grown topic led", |m| m.isr.len() == 3).await);
    }
    for (old, now) in before.iter().zip(&placed) {
        assert_eq!(old.replicas, now.replicas, "an existing assignment changed");
    }
    for p in &placed[2..] {
        let mut replicas = p.replicas.clone();
        replicas.sort();
        assert_eq!(replicas, [1, 2, 3], "{p:?}");
    }
    for id in 1..=3 {
        copy_until(&cluster, id, "grow", "five partitions here", |d| d.partitions.len() == 5).await;
    }
    let new_leader = cluster.broker(placed[4].leader).client().await;
    assert_eq!(produce_at(&new_leader, "grow", 4, "in a new partition", -1).await, Ok(0));
    let read: Vec<String> = read_partition(&new_leader, "grow", 4, 0).await.iter().map(text).collect();
    assert_eq!(read, ["in a new partition"]);

    // Refusals, as on a broker alone.
    for total in [5, 3] {
        let err = admin.add_partitions("grow", total).await.unwrap_err();
        assert_eq!(err.code(), Some(37), "{err}");
    }
    let err = admin.add_partitions("nothing", 2).await.unwrap_err();
    assert_eq!(err.code(), Some(3), "{err}");
    for bad in [int("min_insync_replicas", 0), int("no_such_key", 1)] {
        let err = admin.alter_topic_config("grow", bad, Vec::new(), false).await.unwrap_err();
        assert_eq!(err.code(), Some(40), "{err}");
    }
    // Checked only: compaction is taken in a cluster too.
    let compact = BTreeMap::from([("cleanup_policy".to_string(), ConfigValue::Str("compact".into()))]);
    let checked = admin.alter_topic_config("grow", compact, Vec::new(), true).await.unwrap();
    assert_eq!(checked["cleanup_policy"], ConfigValue::Str("compact".into()), "{checked:?}");
    let err = admin.alter_topic_config("nothing", int("retention_ms", 5), Vec::new(), false).await.unwrap_err();
    assert_eq!(err.code(), Some(3), "{err}");
    let checked = admin.alter_topic_config("grow", int("retention_ms", 60_000), Vec::new(), true).await.unwrap();
    assert_eq!(checked.get("retention_ms"), Some(&ConfigValue::Int(60_000)));

    // More in-sync replicas than there are: the leader refuses acks -1 at once.
    let altered = admin.alter_topic_config("grow", int("min_insync_replicas", 4), Vec::new(), false).await.unwrap();
    assert_eq!(altered.get("min_insync_replicas"), Some(&ConfigValue::Int(4)));
    let client = zookeeper_client::Client::connect(&cluster.zk.address).await.unwrap();
    let view = read_topic(&client, "grow").await.unwrap().unwrap();
    assert_eq!(view.config, int("min_insync_replicas", 4), "the override is in ZooKeeper");
    assert!(!view.config.contains_key("retention_ms"), "validate_only wrote nothing");
    for id in 1..=3 {
        let wanted = Some(&ConfigValue::Int(4));
        copy_until(&cluster, id, "grow", "min_insync_replicas 4", |d| d.config.get("min_insync_replicas") == wanted)
            .await;
    }
    assert_eq!(produce_at(&new_leader, "grow", 4, "refused", -1).await, Err(19));

    // Three, through another broker: through with three in sync, refused with one killed.
    let other = cluster.broker(through % 3 + 1).client().await;
    other.alter_topic_config("grow", int("min_insync_replicas", 3), Vec::new(), false).await.unwrap();
    let leader_id = placed[4].leader;
    copy_until(&cluster, leader_id, "grow", "min_insync_replicas 3", |d| {
        d.config.get("min_insync_replicas") == Some(&ConfigValue::Int(3))
    })
    .await;
    assert_eq!(produce_at(&new_leader, "grow", 4, "three in sync", -1).await, Ok(1));
    let victim = placed[4].replicas.iter().copied().find(|&id| id != leader_id).unwrap();
    cluster.kill(victim);
    cluster.placement("grow", 4, "the dead replica out of the ISR", |m| !m.isr.contains(&victim)).await;
    assert_eq!(produce_at(&new_leader, "grow", 4, "two in sync", -1).await, Err(19));
    assert_eq!(produce_at(&new_leader, "grow", 4, "acks 1", 1).await, Ok(2));

    // A change made while a broker is down reaches its copy when it is back.
    let live = cluster.live_ids()[0];
    let retention = int("retention_ms", 3_600_000);
    cluster.broker(live).client().await.alter_topic_config("grow", retention, Vec::new(), false).await.unwrap();
    cluster.restart(victim);
    let wanted = Some(&ConfigValue::Int(3_600_000));
    copy_until(&cluster, victim, "grow", "the change made while away", |d| {
        d.config.get("retention_ms") == wanted && d.config.get("min_insync_replicas") == Some(&ConfigValue::Int(3))
    })
    .await;
}

/// The log start offset a broker's copy of a partition checkpointed; 0
/// when none.
fn checkpointed_start(root: &Path, topic: &str, partition: u32) -> i64 {
    let path = root.join("data").join("topics").join(topic).join(partition.to_string()).join("log-start-offset");
    std::fs::read_to_string(path).ok().and_then(|text| text.split(' ').nth(1).and_then(|n| n.parse().ok())).unwrap_or(0)
}

#[tokio::test]
async fn deleted_records_move_every_replica_start_and_a_new_leader_keeps_it() {
    let mut cluster = Cluster::start(3).await;
    let small = BTreeMap::from([
        ("segment_max_bytes".to_string(), ConfigValue::Int(1024)),
        ("max_message_bytes".to_string(), ConfigValue::Int(1024)),
    ]);
    cluster.broker(2).client().await.create_topic("trim", 1, small).await.unwrap();
    let placed = cluster.placement("trim", 0, "leader and full ISR", |m| m.isr.len() == 3).await;
    let leader = cluster.broker(placed.leader).client().await;
    for i in 0..40 {
        let v = format!("record {i:03} {}", "x".repeat(100));
        assert_eq!(produce_at(&leader, "trim", 0, &v, -1).await, Ok(i));
    }
    cluster.settled("trim", 1).await;
    let before = log_bytes(&cluster.root(placed.leader), "trim", 0).len();

    // A follower does not take it; the leader does, up to its high watermark.
    let follower = placed.replicas.iter().copied().find(|&id| id != placed.leader).unwrap();
    let err = cluster.broker(follower).client().await.delete_records("trim", 0, 10).await.unwrap_err();
    assert_eq!(err.code(), Some(6), "{err}");
    let err = leader.delete_records("trim", 0, 41).await.unwrap_err();
    assert_eq!(err.code(), Some(1), "{err}");
    assert_eq!(leader.delete_records("trim", 0, 25).await.unwrap(), 25);

    // Every replica moves its start there, and drops the same whole segments.
    replicas_start_at(&cluster, placed.leader, 25, before).await;
    let read = read_partition(&leader, "trim", 0, 25).await;
    assert_eq!(read.first().map(|r| (r.offset, text(r).starts_with("record 025"))), Some((25, true)));

    // A replica away while the leader deletes past its log end starts over at the leader's start.
    cluster.kill(follower);
    cluster.placement("trim", 0, "the dead follower out of the ISR", |m| !m.isr.contains(&follower)).await;
    for i in 40..80 {
        let v = format!("record {i:03} {}", "x".repeat(100));
        assert_eq!(produce_at(&leader, "trim", 0, &v, -1).await, Ok(i));
    }
    assert_eq!(leader.delete_records("trim", 0, 70).await.unwrap(), 70);
    let before = log_bytes(&cluster.root(placed.leader), "trim", 0).len() + 1;
    cluster.restart(follower);
    cluster.placement("trim", 0, "the follower back in the ISR", |m| m.isr.len() == 3).await;
    replicas_start_at(&cluster, placed.leader, 70, before).await;

    // The leader dies: the new one serves from the same start.
    cluster.kill(placed.leader);
    let after = cluster.placement("trim", 0, "a new leader", |m| m.leader != placed.leader).await;
    let successor = cluster.broker(after.leader).client().await;
    assert_eq!(successor.list_offsets("trim", 0, -2).await.unwrap(), 70);
    let err = successor.fetch(&fetch_at("trim", 0, 60)).await.unwrap_err();
    assert_eq!(err.code(), Some(1), "below the start: {err}");
    let read: Vec<String> = read_partition(&successor, "trim", 0, 70).await.iter().map(text).collect();
    assert_eq!(read.len(), 10);
    assert!(read[0].starts_with("record 070"), "{}", read[0]);
}

/// Waits until every live replica has checkpointed `start` and holds the
/// same log files as `leader`, fewer bytes of them than `before`.
async fn replicas_start_at(cluster: &Cluster, leader: i32, start: i64, before: usize) {
    let live = cluster.live_ids();
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let starts: Vec<i64> = live.iter().map(|&id| checkpointed_start(&cluster.root(id), "trim", 0)).collect();
        let logs: Vec<Vec<u8>> = live.iter().map(|&id| log_bytes(&cluster.root(id), "trim", 0)).collect();
        let whole = log_bytes(&cluster.root(leader), "trim", 0).len();
        if starts.iter().all(|&s| s == start) && logs.windows(2).all(|w| w[0] == w[1]) {
            assert!(whole < before, "no whole segment was deleted: {whole} bytes of {before}");
            return;
        }
        let sizes: Vec<usize> = logs.iter().map(Vec::len).collect();
        assert!(Instant::now() < deadline, "brokers {live:?}: starts {starts:?}, log sizes {sizes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
