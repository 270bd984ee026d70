//! Unclean leader election, against a real ZooKeeper and the real binary:
//! off by default (a partition whose in-sync replicas are all dead stays
//! offline while an out-of-sync replica is alive), and, for a topic that
//! sets `unclean_leader_election_enable`, that replica is elected, with a
//! loud error in the controller's log.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, TAKEOVER};
use common::value;
use herald::protocol::{ConfigValue, PartitionMetadata};

/// The partition as broker `id` describes it.
async fn seen_by(cluster: &Cluster, id: i32, topic: &str) -> Option<PartitionMetadata> {
    let described = cluster.broker(id).client().await.metadata(Some(vec![topic.to_string()])).await.ok()?;
    described.topics.first()?.partitions.first().cloned()
}

#[tokio::test]
async fn only_a_topic_that_allows_it_elects_a_replica_outside_the_isr() {
    let mut cluster = Cluster::start(2).await;
    let admin = cluster.broker(1).client().await;
    let unclean = BTreeMap::from([("unclean_leader_election_enable".to_string(), ConfigValue::Str("true".into()))]);
    admin.create_replicated_topic("dirty", 1, Some(2), unclean).await.unwrap();
    admin.create_replicated_topic("clean", 1, Some(2), BTreeMap::new()).await.unwrap();
    let dirty = cluster.placement("dirty", 0, "the full ISR", |m| m.isr.len() == 2).await;
    cluster.placement("clean", 0, "the full ISR", |m| m.isr.len() == 2).await;
    let (leader, follower) = (dirty.leader, if dirty.leader == 1 { 2 } else { 1 });

    // The follower dies: the leader goes on alone in the ISR.
    cluster.kill(follower);
    cluster.placement_among(&[leader], "dirty", 0, "the ISR without the follower", |m| m.isr == [leader]).await;
    let written = cluster.broker(leader).client().await;
    written.produce_with_acks("dirty", Some(0), vec![value("only-on-the-old-leader")], -1).await.unwrap();
    // Then the leader dies, and the out-of-sync follower comes back alone.
    cluster.kill(leader);
    cluster.restart(follower);

    let deadline = Instant::now() + TAKEOVER;
    let (dirty, clean) = loop {
        let (dirty, clean) = (seen_by(&cluster, follower, "dirty").await, seen_by(&cluster, follower, "clean").await);
        if dirty.as_ref().is_some_and(|m| m.leader == follower) {
            break (dirty.unwrap(), clean);
        }
        assert!(Instant::now() < deadline, "no unclean election: dirty {dirty:?}, clean {clean:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dirty.isr, [follower]);
    // Without the setting the partition waits for its in-sync replica.
    let clean = clean.expect("the clean topic described");
    assert_eq!((clean.leader, clean.isr.clone()), (-1, vec![leader]), "{clean:?}");
    let logged = cluster.broker(follower).log_text();
    assert!(logged.contains("UNCLEAN LEADER ELECTION"), "no loud line in the controller's log:\n{logged}");
    // The new leader takes writes.
    let at = cluster.broker(follower).client().await;
    at.produce_with_acks("dirty", Some(0), vec![value("after")], -1).await.unwrap();

    // The old leader returns: the clean topic is led again by it, the
    // unclean one keeps its new leader.
    cluster.restart(leader);
    cluster.placement("clean", 0, "the clean topic led again", |m| m.leader == leader).await;
    let dirty = cluster.placement("dirty", 0, "both back in sync", |m| m.isr.len() == 2).await;
    assert_eq!(dirty.leader, follower);
}
