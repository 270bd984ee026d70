//! A follower of a compacted topic takes its leader's batches across the
//! gaps the leader's cleaner left, keeps them across a reopen and serves
//! them when it leads; a follower of any other topic refuses a gap.

use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};

use super::*;
use crate::batch::{self, Record};
use crate::topic_config::CleanupPolicy;

fn start(dir: &Path, writer: &SyncWriter, config: TopicConfig) -> Addr<Partition> {
    let (dir, writer) = (dir.to_path_buf(), writer.clone());
    Supervisor::start(move |_| {
        Partition::new("t".into(), 0, dir.clone(), config.clone(), super::tests::settings(), writer.clone(), false)
    })
}

/// One stored batch of keyed records at `base` (as a leader's log holds it
/// after cleaning: the records between batches removed).
fn batch_at(base: i64, keys: &[&str]) -> Bytes {
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Record {
            offset: i as i64,
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::from(format!("v-{k}"))),
            timestamp: crate::now_ms(),
            ..Record::default()
        })
        .collect();
    let mut encoded: BytesMut = batch::encode(&records).unwrap();
    batch::set_base_offset(&mut encoded, base);
    encoded.freeze()
}

fn taking(records: Bytes) -> AppendAsFollower {
    AppendAsFollower {
        leader_epoch: 1,
        records,
        epochs: vec![(1, 0)],
        leader_high_watermark: 0,
        leader_log_start_offset: 0,
    }
}

/// (offset, key) of every record `addr` serves from `offset`, as leader.
async fn keys_from(addr: &Addr<Partition>, offset: i64) -> Vec<(i64, String)> {
    let fetched = addr.send(Fetch { offset, max_bytes: 1 << 20, min_bytes: 0, max_wait_ms: 0 }).await.unwrap().unwrap();
    batch::decode_all(&fetched.records)
        .unwrap()
        .into_iter()
        .filter(|r| r.offset >= offset)
        .map(|r| (r.offset, String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned()))
        .collect()
}

#[actix::test]
async fn a_compacted_topics_follower_takes_the_leaders_gaps_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let config = TopicConfig { cleanup_policy: CleanupPolicy::Compact, ..TopicConfig::default() };
    let follower = start(dir.path(), &writer, config.clone());
    follower.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();

    // Offsets 0-1, then 5-6 (2-4 cleaned away on the leader), then 9 (7-8).
    let answer = [batch_at(0, &["a", "b"]), batch_at(5, &["c", "d"])].concat();
    assert_eq!(follower.send(taking(answer.into())).await.unwrap().unwrap(), 7);
    assert_eq!(follower.send(taking(batch_at(9, &["e"]))).await.unwrap().unwrap(), 10);
    // Behind the log end is still an overwrite.
    let overwrite = follower.send(taking(batch_at(8, &["x"]))).await.unwrap();
    assert_eq!(overwrite.unwrap_err().code, ErrorCode::OFFSET_OUT_OF_RANGE);
    follower.send(Shutdown).await.unwrap().unwrap();

    // Reopened (recovery sees gaps, not damage), it leads and serves them.
    let reopened = start(dir.path(), &writer, config);
    leads_and_serves(&reopened, &[(0, "a"), (1, "b"), (5, "c"), (6, "d"), (9, "e")]).await;
    // A fetch inside a gap starts at the next batch.
    assert_eq!(keys_from(&reopened, 3).await[0], (5, "c".to_string()));
}

/// A topic altered from compact back to delete keeps the gaps its cleaner
/// left: a follower that fetches across them takes them too (it may never
/// have compacted itself), keeps them across a reopen, and serves them.
#[actix::test]
async fn a_follower_of_a_topic_that_no_longer_compacts_takes_the_leaders_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let follower = start(dir.path(), &writer, TopicConfig::default());
    follower.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();
    assert_eq!(follower.send(taking(batch_at(0, &["a"]))).await.unwrap().unwrap(), 1);
    assert_eq!(follower.send(taking(batch_at(3, &["b"]))).await.unwrap().unwrap(), 4);
    let overwrite = follower.send(taking(batch_at(2, &["x"]))).await.unwrap();
    assert_eq!(overwrite.unwrap_err().code, ErrorCode::OFFSET_OUT_OF_RANGE);
    follower.send(Shutdown).await.unwrap().unwrap();

    let reopened = start(dir.path(), &writer, TopicConfig::default());
    leads_and_serves(&reopened, &[(0, "a"), (3, "b")]).await;
}

/// Makes a reopened replica the leader and checks it serves `expected`
/// (offset, key) from offset 0, gaps and all, with no damaged range.
async fn leads_and_serves(reopened: &Addr<Partition>, expected: &[(i64, &str)]) {
    let leader = BecomeLeader {
        leader_epoch: 2,
        replicas: vec![2],
        isr: vec![2],
        min_insync_replicas: 1,
        my_id: 2,
        isr_sink: None,
    };
    reopened.send(leader).await.unwrap().unwrap();
    let expected: Vec<(i64, String)> = expected.iter().map(|(o, k)| (*o, k.to_string())).collect();
    let mut served = Vec::new();
    for _ in 0..50 {
        served = keys_from(reopened, 0).await;
        if served.len() == expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served, expected);
    assert!(describe_damage_free(reopened).await, "no damaged range recorded");
}

async fn describe_damage_free(addr: &Addr<Partition>) -> bool {
    addr.send(Describe).await.unwrap().unwrap().damaged.is_empty()
}
