//! A follower's log start following its leader's, and a leader taking a
//! new `min_insync_replicas` from its topic's settings: partition actors on
//! temporary directories, the leader's answers carried to the follower as
//! the cluster layer's fetcher carries them.

use bytes::Bytes;

use super::replica_tests::{
    append, code, consume, describe, fetch_round, leader_msg, log_bytes, replica_fetch, start, values,
};
use super::*;

#[actix::test]
async fn a_follower_moves_its_log_start_to_its_leaders() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let (leader, follower) = (start(dirs[0].path(), &writer), start(dirs[1].path(), &writer));
    leader.send(leader_msg(1, &[1, 2], &[1, 2], 1, None)).await.unwrap().unwrap();
    follower.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();
    for v in ["a", "b", "c", "d"] {
        append(&leader, &[v], 1).await.unwrap();
    }
    fetch_round(&leader, &follower, 2, 1).await;
    fetch_round(&leader, &follower, 2, 1).await;
    assert_eq!(describe(&follower).await.high_watermark, 4);

    assert_eq!(leader.send(DeleteRecords { offset: 3 }).await.unwrap().unwrap(), 3);
    assert_eq!(describe(&follower).await.log_start_offset, 0, "not before the next fetch");
    fetch_round(&leader, &follower, 2, 1).await;
    assert_eq!(describe(&follower).await.log_start_offset, 3);
    // It holds across a restart of the follower, as the leader's does.
    drop(follower);
    let reopened = start(dirs[1].path(), &writer);
    assert_eq!(describe(&reopened).await.log_start_offset, 3);
    // The follower is now the leader: nothing below the start is served.
    reopened.send(leader_msg(2, &[2, 1], &[2], 1, None)).await.unwrap().unwrap();
    assert_eq!(code(consume(&reopened, 2).await), ErrorCode::OFFSET_OUT_OF_RANGE);
}

#[actix::test]
async fn a_leader_takes_min_insync_replicas_from_new_settings() {
    let dir = tempfile::tempdir().unwrap();
    let writer = SyncWriter::start("test").unwrap();
    let leader = start(dir.path(), &writer);
    leader.send(leader_msg(1, &[1], &[1], 1, None)).await.unwrap().unwrap();
    append(&leader, &["a"], -1).await.unwrap();
    let config = TopicConfig { min_insync_replicas: 2, ..TopicConfig::default() };
    leader.send(SetConfig(config)).await.unwrap();
    assert_eq!(code(append(&leader, &["b"], -1).await), ErrorCode::NOT_ENOUGH_REPLICAS);
    append(&leader, &["c"], 1).await.unwrap();
}

#[actix::test]
async fn a_follower_behind_its_leaders_start_starts_over_there() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let writer = SyncWriter::start("test").unwrap();
    let (leader, follower) = (start(dirs[0].path(), &writer), start(dirs[1].path(), &writer));
    append(&follower, &["stale"], 1).await.unwrap();
    // The follower is out of the ISR: the leader's high watermark is its own log end.
    leader.send(leader_msg(1, &[1, 2], &[1], 1, None)).await.unwrap().unwrap();
    follower.send(BecomeFollower { leader_epoch: 1, leader: 1 }).await.unwrap().unwrap();
    for v in ["a", "b", "c", "d"] {
        append(&leader, &[v], 1).await.unwrap();
    }
    assert_eq!(leader.send(DeleteRecords { offset: 3 }).await.unwrap().unwrap(), 3);

    // Below the start: nothing but the start, where the follower starts over, empty.
    let answer = leader.send(replica_fetch(2, 1, 1)).await.unwrap().unwrap();
    assert_eq!((answer.records.len(), answer.log_start_offset), (0, 3));
    assert_eq!(fetch_round(&leader, &follower, 2, 1).await, 3);
    let state = describe(&follower).await;
    assert_eq!((state.log_start_offset, state.log_end_offset), (3, 3));
    assert_eq!(fetch_round(&leader, &follower, 2, 1).await, 4);
    assert_eq!(values(&Bytes::from(log_bytes(dirs[1].path()))), [(3, "d".to_string())]);
}
