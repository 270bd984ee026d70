//! A compacted topic in a cluster, through the real binary against a real
//! ZooKeeper: a follower that was down while its leader's cleaner removed
//! old records catches up across the gaps, and, leading, serves the latest
//! record of every key at its offset.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{describe_until, member_with, ZooKeeper, SESSION_TIMEOUT_MS};
use common::*;
use herald::client::Client;
use herald::protocol::ConfigValue::{Int, Str};
use herald::protocol::PartitionMetadata;

const TAKEOVER: Duration = Duration::from_millis(SESSION_TIMEOUT_MS + 8_000);
/// Every broker's cleaner runs on this tick.
fn env() -> Vec<(String, String)> {
    vec![("HERALD_STORAGE__RETENTION_CHECK_INTERVAL_MS".into(), "50".into())]
}

/// (offset, key, value) of every record `client` serves of partition 0 of `topic`.
async fn rows(client: &Client, topic: &str) -> Vec<(i64, String, String)> {
    read_partition(client, topic, 0, 0)
        .await
        .iter()
        .map(|r| (r.offset, String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(), text(r)))
        .collect()
}

/// Per key, its latest (offset, key, value), by offset.
fn latest(rows: &[(i64, String, String)]) -> Vec<(i64, String, String)> {
    let by_key: BTreeMap<&str, &(i64, String, String)> = rows.iter().map(|r| (r.1.as_str(), r)).collect();
    let mut out: Vec<_> = by_key.into_values().cloned().collect();
    out.sort();
    out
}

/// Partition 0 of `topic` as broker `from` describes it, once `done` holds.
async fn placement(
    from: &BinaryBroker,
    topic: &str,
    what: &str,
    done: impl Fn(&PartitionMetadata) -> bool,
) -> PartitionMetadata {
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let m = from.client().await.metadata(Some(vec![topic.into()])).await.unwrap();
        if let Some(p) = m.topics[0].partitions.first().filter(|p| p.leader >= 0 && done(p)) {
            return p.clone();
        }
        assert!(Instant::now() < deadline, "{what}: not within {TAKEOVER:?}: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_across_its_leaders_gaps_and_serves_the_latest_of_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let zk = ZooKeeper::start(&dir.path().join("zk"));
    let root = |id: i32| dir.path().join(format!("b{id}"));
    let mut brokers: Vec<Option<BinaryBroker>> =
        (1..=3).map(|id| Some(member_with(&root(id), &zk.address, id, &env()))).collect();
    for b in brokers.iter().flatten() {
        describe_until(b, TAKEOVER, "three brokers", |d| d.brokers.len() == 3 && d.controller_id != -1).await;
    }
    let config = config(&[
        ("cleanup_policy", Str("compact".into())),
        ("segment_max_bytes", Int(1024)),
        ("max_message_bytes", Int(1024)),
        ("min_cleanable_dirty_ratio", Str("0.01".into())),
    ]);
    let any = brokers[0].as_ref().unwrap().client().await;
    any.create_replicated_topic("kv", 1, Some(3), config).await.unwrap();
    let placed = placement(brokers[0].as_ref().unwrap(), "kv", "the full ISR", |p| p.isr.len() == 3).await;
    let leader = placed.leader;
    let (follower, third) = {
        let others: Vec<i32> = placed.replicas.iter().copied().filter(|&r| r != leader).collect();
        (others[0], others[1])
    };

    // The follower is down while the leader takes updates and cleans them.
    brokers[(follower - 1) as usize].take().unwrap().kill();
    placement(brokers[(leader - 1) as usize].as_ref().unwrap(), "kv", "the follower out of the ISR", |p| {
        !p.isr.contains(&follower)
    })
    .await;
    let to_leader = brokers[(leader - 1) as usize].as_ref().unwrap().client().await;
    let mut produced = Vec::new();
    for round in 0..10 {
        for k in 0..10 {
            let (key, v) = (format!("k{k}"), format!("r{round}"));
            let offset = to_leader.produce("kv", Some(0), vec![keyed(&key, &v)]).await.unwrap()[0].base_offset;
            produced.push((offset, key, v));
        }
    }
    // A large record of its own key seals what came before it.
    let filler = "f".repeat(900);
    let offset = to_leader.produce("kv", Some(0), vec![keyed("filler", &filler)]).await.unwrap()[0].base_offset;
    produced.push((offset, "filler".into(), filler));
    let expected = latest(&produced);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Cleaned: every record up to the end visible, fewer than were produced.
    loop {
        let now = rows(&to_leader, "kv").await;
        if latest(&now) == expected && now.len() < produced.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the leader did not clean within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Back, it fetches from its log end across the gaps, into the ISR.
    brokers[(follower - 1) as usize] = Some(member_with(&root(follower), &zk.address, follower, &env()));
    placement(brokers[(leader - 1) as usize].as_ref().unwrap(), "kv", "the follower back in sync", |p| {
        p.isr.contains(&follower)
    })
    .await;

    // The others die: it leads, with what its leader had.
    brokers[(leader - 1) as usize].take().unwrap().kill();
    brokers[(third - 1) as usize].take().unwrap().kill();
    let survivor = brokers[(follower - 1) as usize].as_ref().unwrap();
    placement(survivor, "kv", "the follower leading", |p| p.leader == follower).await;
    // Served once its high watermark, unknown at a first role, has risen.
    let client = survivor.client().await;
    let deadline = Instant::now() + TAKEOVER;
    let mut served = rows(&client, "kv").await;
    while latest(&served) != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        served = rows(&client, "kv").await;
    }
    if latest(&served) != expected {
        let described = client.describe_topic("kv").await;
        let log = survivor.log_text();
        let lines: Vec<&str> =
            log.lines().filter(|l| l.contains("kv") || l.contains("WARN") || l.contains("ERROR")).collect();
        panic!("served {served:?}\n{described:?}\n{}", lines.join("\n"));
    }
    assert!(served.len() < produced.len(), "the gaps were copied, not refilled: {} records", served.len());
    assert!(served.iter().all(|r| produced.contains(r)), "only records produced, at their offsets");
    assert_eq!(latest(&served), expected, "the latest record of every key, at its offset");
}
