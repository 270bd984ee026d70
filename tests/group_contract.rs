//! The group contract of docs/protocol.md through a real broker: joining
//! again on one connection, rejoining under a member id, and the exact
//! session and rebalance timers.

mod common;

use std::time::{Duration, Instant};

use common::{join_request, HandMember, TestBroker, PATIENCE};
use herald::client::{Client, ClientError};
use herald::protocol::*;

const TOPIC: &str = "orders";

async fn join(client: &Client, request: &JoinGroupRequest) -> Result<AssignmentResponse, ClientError> {
    client.request(group_op::JOIN_GROUP, request).await
}

async fn members(client: &Client, group_id: &str) -> Vec<String> {
    let d: DescribeGroupResponse =
        client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: group_id.into() }).await.unwrap();
    d.members.into_iter().map(|m| m.member_id).collect()
}

/// Polls until `member_id` is no longer in the group; returns when that was.
async fn removed_at(admin: &Client, group_id: &str, member_id: &str) -> Instant {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if !members(admin, group_id).await.iter().any(|m| m == member_id) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{member_id} was never removed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_second_join_on_one_connection_needs_the_member_id_and_keeps_the_member() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 2, Default::default()).await.unwrap();
    let client = broker.client().await;
    let request = join_request("twice", &[TOPIC]);
    let first = join(&client, &request).await.unwrap();

    let refused = join(&client, &request).await.unwrap_err();
    assert_eq!(refused.code(), Some(79), "{refused}");
    assert!(refused.to_string().contains(&first.member_id), "{refused}");

    let again = join(&client, &JoinGroupRequest { member_id: Some(first.member_id.clone()), ..request }).await.unwrap();
    assert_eq!(again.member_id, first.member_id);
    assert_eq!(again.assignment, first.assignment);
    assert_eq!(members(&admin, "twice").await, [first.member_id]);
    broker.stop().await;
}

#[tokio::test]
async fn a_dropped_dynamic_member_is_gone_and_its_id_cannot_rejoin() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 2, Default::default()).await.unwrap();
    let request = join_request("dropped", &[TOPIC]);
    let client = broker.client().await;
    let first = join(&client, &request).await.unwrap();
    drop(client);
    removed_at(&admin, "dropped", &first.member_id).await;
    let other = broker.client().await;
    let refused =
        join(&other, &JoinGroupRequest { member_id: Some(first.member_id.clone()), ..request }).await.unwrap_err();
    assert_eq!(refused.code(), Some(25), "{refused}");
    broker.stop().await;
}

#[tokio::test]
async fn a_static_member_rejoins_under_its_member_id_on_a_new_connection() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 2, Default::default()).await.unwrap();
    let request = JoinGroupRequest {
        group_instance_id: Some("worker-1".into()),
        session_timeout_ms: Some(5_000),
        ..join_request("static-rejoin", &[TOPIC])
    };
    let client = broker.client().await;
    let first = join(&client, &request).await.unwrap();
    drop(client);
    let other = broker.client().await;
    let again = join(&other, &JoinGroupRequest { member_id: Some(first.member_id.clone()), ..request }).await.unwrap();
    assert_eq!((again.member_id.as_str(), &again.assignment), (first.member_id.as_str(), &first.assignment));
    assert_eq!(members(&admin, "static-rejoin").await, [first.member_id]);
    broker.stop().await;
}

#[tokio::test]
async fn a_static_members_session_timeout_runs_from_its_connection_close_not_its_held_heartbeat() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 2, Default::default()).await.unwrap();
    let session_timeout = Duration::from_millis(1_000);
    let request = JoinGroupRequest {
        group_instance_id: Some("worker-1".into()),
        session_timeout_ms: Some(session_timeout.as_millis() as u64),
        ..join_request("static-timer", &[TOPIC])
    };
    let mut member = HandMember::join(broker.client().await, request).await.unwrap();
    member.heartbeat(0).await.unwrap();
    let member_id = member.member_id.clone();
    // A heartbeat held for half the session timeout, then the connection drops.
    let held = tokio::spawn(async move { member.heartbeat(500).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.abort();
    let _ = held.await;
    let closed = Instant::now();
    let gone = removed_at(&admin, "static-timer", &member_id).await.duration_since(closed);
    // The session timeout from the close: not restarted when the dead
    // connection's held heartbeat would have been answered (500 ms later).
    assert!(gone >= session_timeout - Duration::from_millis(50), "removed after {gone:?}");
    assert!(gone < session_timeout + Duration::from_millis(300), "removed after {gone:?}");
    broker.stop().await;
}

#[tokio::test]
async fn a_member_that_keeps_revoked_partitions_is_removed_at_its_rebalance_timeout() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 2, Default::default()).await.unwrap();
    let rebalance_timeout = Duration::from_millis(400);
    let request = JoinGroupRequest {
        rebalance_timeout_ms: Some(rebalance_timeout.as_millis() as u64),
        assignor: Some("range".into()),
        ..join_request("slow-release", &[TOPIC])
    };
    let mut slow = HandMember::join(broker.client().await, request.clone()).await.unwrap();
    slow.heartbeat(0).await.unwrap();
    let keeps = slow.owned.clone();
    let started = Instant::now();
    let other = broker.client().await;
    join(&other, &request).await.unwrap();
    // Asked to give one partition up, it keeps reporting both.
    let answer = slow.heartbeat(0).await.unwrap();
    assert_eq!(
        answer.assignment.iter().map(|t| t.partitions.len()).sum::<usize>(),
        1,
        "{answer:?} {:?}",
        members(&admin, "slow-release").await
    );
    slow.owned = keeps;
    let _ = slow.heartbeat(0).await;
    let gone = removed_at(&admin, "slow-release", &slow.member_id).await.duration_since(started);
    assert!(gone >= rebalance_timeout - Duration::from_millis(20), "removed after {gone:?}");
    assert!(gone < rebalance_timeout + Duration::from_millis(300), "removed after {gone:?}");
    broker.stop().await;
}

#[tokio::test]
async fn a_reset_to_a_negative_timestamp_is_an_invalid_timestamp() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic(TOPIC, 1, Default::default()).await.unwrap();
    let reset = ResetOffsetsRequest {
        group_id: "resets".into(),
        topic: TOPIC.into(),
        partitions: None,
        to: "timestamp".into(),
        value: Some(-1),
        execute: true,
    };
    let refused = admin.request::<_, ResetOffsetsResponse>(group_op::RESET_OFFSETS, &reset).await.unwrap_err();
    assert_eq!(refused.code(), Some(32), "{refused}");
    broker.stop().await;
}
