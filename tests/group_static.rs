//! Static membership (`group_instance_id`) against a real broker: a static
//! member whose connection closes keeps its partitions until its session
//! timeout; coming back in time gives it the same partitions under a new
//! member id with no rebalance, and fences the old id; not coming back frees
//! its partitions when the session times out.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{join_request, HandMember, TestBroker, PATIENCE};
use herald::client::{Client, ClientError};
use herald::protocol::*;

const TOPIC: &str = "orders";

type Member = HandMember;

/// Joins `group_id` by hand on `TOPIC`, static when `instance` is given.
async fn join_member(client: Client, group_id: &str, instance: Option<&str>, session_timeout_ms: u64) -> Member {
    let request = JoinGroupRequest {
        group_instance_id: instance.map(str::to_owned),
        session_timeout_ms: Some(session_timeout_ms),
        ..join_request(group_id, &[TOPIC])
    };
    HandMember::join(client, request).await.expect("join")
}

async fn join(
    client: &Client,
    group_id: &str,
    instance: Option<&str>,
    session_timeout_ms: u64,
) -> Result<AssignmentResponse, ClientError> {
    let request = JoinGroupRequest {
        group_id: group_id.into(),
        member_id: None,
        topics: vec![TOPIC.into()],
        group_instance_id: instance.map(str::to_owned),
        session_timeout_ms: Some(session_timeout_ms),
        rebalance_timeout_ms: None,
        assignor: None,
    };
    client.request(group_op::JOIN_GROUP, &request).await
}

fn partitions(list: &[TopicPartitions]) -> BTreeSet<u32> {
    list.iter().filter(|t| t.topic == TOPIC).flat_map(|t| t.partitions.iter().copied()).collect()
}

async fn describe(client: &Client, group_id: &str) -> DescribeGroupResponse {
    client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: group_id.into() }).await.expect("describe group")
}

fn member<'a>(d: &'a DescribeGroupResponse, member_id: &str) -> Option<&'a MemberDescription> {
    d.members.iter().find(|m| m.member_id == member_id)
}

/// Heartbeats every member until the group is stable.
async fn settle(admin: &Client, members: &mut [&mut Member]) -> DescribeGroupResponse {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for member in members.iter_mut() {
            member.heartbeat(0).await.expect("heartbeat");
        }
        let d = describe(admin, &members[0].group_id).await;
        if d.state == "Stable" {
            return d;
        }
        assert!(Instant::now() < deadline, "the group never settled: {d:?}");
    }
}

async fn commit(client: &Client, group_id: &str, member_id: &str, generation_id: i64, partition: u32) -> i16 {
    let request = CommitOffsetsRequest {
        group_id: group_id.into(),
        member_id: Some(member_id.into()),
        generation_id,
        offsets: vec![OffsetCommit { topic: TOPIC.into(), partition: i64::from(partition), offset: 1, metadata: None }],
    };
    let response: CommitOffsetsResponse = client.request(group_op::COMMIT_OFFSETS, &request).await.expect("commit");
    response.partitions[0].error_code
}

#[tokio::test]
async fn a_static_member_that_reconnects_in_time_gets_its_partitions_back_without_a_rebalance() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 4, Default::default()).await.unwrap();
    let group = "static-back";
    let session_timeout = Duration::from_millis(1_500);
    let mut stat = join_member(broker.client().await, group, Some("worker-1"), 1_500).await;
    let mut dynamic = join_member(broker.client().await, group, None, 4_000).await;
    let before = settle(&admin, &mut [&mut stat, &mut dynamic]).await;
    let (stat_partitions, dynamic_partitions) = (stat.partitions_of(TOPIC), dynamic.partitions_of(TOPIC));
    assert_eq!(stat_partitions.len() + dynamic_partitions.len(), 4);
    assert!(!stat_partitions.is_empty() && !dynamic_partitions.is_empty(), "{before:?}");
    let stat_generation = stat.generation_id;
    let old_member_id = stat.member_id.clone();

    // The static member's process dies: its only connection closes.
    let closed_at = Instant::now();
    drop(stat);
    // Nothing moves: the other member's heartbeat is held for its whole wait
    // (a rebalance would answer it at once).
    let answer = dynamic.heartbeat(600).await.expect("heartbeat");
    assert!(closed_at.elapsed() >= Duration::from_millis(500), "answered early: {answer:?}");
    assert_eq!(partitions(&answer.assignment), dynamic_partitions);
    let during = describe(&admin, group).await;
    assert_eq!(during.generation_id, before.generation_id, "{during:?}");
    let kept = member(&during, &old_member_id).expect("the static member is still a member");
    assert_eq!(partitions(&kept.assignment), stat_partitions);
    assert_eq!(kept.group_instance_id.as_deref(), Some("worker-1"));
    for row in during.offsets.iter().filter(|r| stat_partitions.contains(&r.partition)) {
        assert_eq!(row.member_id.as_deref(), Some(old_member_id.as_str()), "{row:?}");
    }

    // It comes back within its session timeout, with the same instance id.
    let client = broker.client().await;
    let rejoined = join(&client, group, Some("worker-1"), 1_500).await.expect("rejoin");
    assert!(closed_at.elapsed() < session_timeout, "the test was too slow to rejoin in time");
    assert_ne!(rejoined.member_id, old_member_id);
    assert_eq!(partitions(&rejoined.assignment), stat_partitions);
    assert_eq!(rejoined.generation_id, stat_generation);
    let after = describe(&admin, group).await;
    assert_eq!(after.generation_id, before.generation_id, "no rebalance: {after:?}");
    assert_eq!(after.members.len(), 2);
    assert!(member(&after, &old_member_id).is_none());
    let back = member(&after, &rejoined.member_id).expect("the new member id");
    assert_eq!(partitions(&back.assignment), stat_partitions);
    let other = member(&after, &dynamic.member_id).expect("the dynamic member");
    assert_eq!(
        (other.generation_id, partitions(&other.assignment)),
        (dynamic.generation_id, dynamic_partitions.clone())
    );

    // The old member id is fenced wherever it reaches the coordinator.
    let partition = *stat_partitions.first().unwrap();
    assert_eq!(commit(&client, group, &old_member_id, stat_generation, partition).await, 82);
    let fetch = FetchOffsetsRequest {
        group_id: group.into(),
        partitions: None,
        member_id: Some(old_member_id.clone()),
        generation_id: Some(stat_generation),
    };
    let fenced = client.request::<_, FetchOffsetsResponse>(group_op::FETCH_OFFSETS, &fetch).await;
    assert_eq!(fenced.err().and_then(|e| e.code()), Some(82));
    // The new one may commit, and heartbeats into a stable group.
    assert_eq!(commit(&client, group, &rejoined.member_id, rejoined.generation_id, partition).await, 0);
    let mut back = Member {
        client,
        group_id: group.into(),
        member_id: rejoined.member_id,
        generation_id: rejoined.generation_id,
        owned: rejoined.assignment,
    };
    let answer = back.heartbeat(0).await.expect("heartbeat");
    assert_eq!((answer.generation_id, partitions(&answer.assignment)), (stat_generation, stat_partitions.clone()));
    // The old member's session timer runs out meanwhile; it removes nothing.
    while closed_at.elapsed() < session_timeout + Duration::from_millis(500) {
        let (a, b) = tokio::join!(back.heartbeat(500), dynamic.heartbeat(500));
        assert_eq!(partitions(&a.expect("heartbeat").assignment), stat_partitions);
        assert_eq!(partitions(&b.expect("heartbeat").assignment), dynamic_partitions);
    }
    let settled = describe(&admin, group).await;
    assert_eq!((settled.state.as_str(), settled.generation_id), ("Stable", before.generation_id));
    broker.stop().await;
}

#[tokio::test]
async fn a_static_member_still_connected_is_fenced_by_a_newer_one_with_its_instance_id() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 2, Default::default()).await.unwrap();
    let group = "static-zombie";
    let mut old = join_member(broker.client().await, group, Some("worker-1"), 4_000).await;
    let before = settle(&admin, &mut [&mut old]).await;

    // A second process with the same instance id, while the first still runs.
    let new_client = broker.client().await;
    let new = join(&new_client, group, Some("worker-1"), 4_000).await.expect("join");
    assert_eq!(partitions(&new.assignment), old.partitions_of(TOPIC));
    assert_eq!(describe(&admin, group).await.generation_id, before.generation_id);
    let fenced = old.heartbeat(0).await.expect_err("the old member is fenced");
    assert_eq!(fenced.code(), Some(82), "{fenced}");
    // Its session ended with the fencing: the id is unknown on its connection now.
    let again = old.heartbeat(0).await.expect_err("still fenced");
    assert_eq!(again.code(), Some(25), "{again}");
    let d = describe(&admin, group).await;
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, new.member_id);
    broker.stop().await;
}

#[tokio::test]
async fn a_static_member_that_does_not_come_back_is_removed_after_its_session_timeout() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 4, Default::default()).await.unwrap();
    let group = "static-gone";
    let session_timeout = Duration::from_millis(800);
    let mut stat = join_member(broker.client().await, group, Some("worker-1"), 800).await;
    let mut dynamic = join_member(broker.client().await, group, None, 4_000).await;
    let before = settle(&admin, &mut [&mut stat, &mut dynamic]).await;
    let stat_partitions = stat.partitions_of(TOPIC);
    assert!(!stat_partitions.is_empty(), "{before:?}");
    let old_member_id = stat.member_id.clone();

    let closed_at = Instant::now();
    drop(stat);
    // The other member's held heartbeat is answered when the partitions move.
    let deadline = closed_at + PATIENCE;
    while dynamic.partitions_of(TOPIC).len() < 4 {
        dynamic.heartbeat(1_000).await.expect("heartbeat");
        if dynamic.partitions_of(TOPIC).len() < 4 {
            let d = describe(&admin, group).await;
            if closed_at.elapsed() < session_timeout {
                let kept = member(&d, &old_member_id).expect("kept until its session times out");
                assert_eq!(partitions(&kept.assignment), stat_partitions);
            }
        }
        assert!(Instant::now() < deadline, "the static member's partitions never moved");
    }
    assert!(closed_at.elapsed() >= session_timeout, "moved after {:?}", closed_at.elapsed());
    let after = describe(&admin, group).await;
    assert!(after.generation_id > before.generation_id, "{after:?}");
    assert_eq!(after.members.len(), 1);
    assert_eq!(partitions(&after.members[0].assignment), (0..4).collect());

    // Coming back now is a new member: a rebalance, not a return.
    let client = broker.client().await;
    let rejoined = join(&client, group, Some("worker-1"), 800).await.expect("rejoin");
    assert_ne!(rejoined.member_id, old_member_id);
    assert!(describe(&admin, group).await.generation_id > after.generation_id);
    assert_eq!(commit(&client, group, &old_member_id, 1, 0).await, 25);
    broker.stop().await;
}
