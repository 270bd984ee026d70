//! Consumer groups against a real broker: queue and pub/sub splits, moves on
//! leave and on a dropped connection, fencing of stale members, and committed
//! offsets across a restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{join_request, value, HandMember, TestBroker, PATIENCE};
use herald::client::{AutoOffsetReset, Client, GroupConsumer, GroupConsumerConfig};
use herald::protocol::*;

type Member = HandMember;

/// Joins `group_id` by hand, subscribed to `topics`, with a 5 s session.
async fn join(client: Client, group_id: &str, topics: &[&str], assignor: Option<&str>) -> Member {
    let request = JoinGroupRequest {
        session_timeout_ms: Some(5_000),
        assignor: assignor.map(str::to_owned),
        ..join_request(group_id, topics)
    };
    HandMember::join(client, request).await.expect("join")
}

async fn describe(client: &Client, group_id: &str) -> DescribeGroupResponse {
    client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: group_id.into() }).await.expect("describe group")
}

/// Heartbeats every member until the group is stable; returns each member's
/// partitions.
async fn settle(members: &mut [Member]) -> Vec<BTreeSet<(String, u32)>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for member in members.iter_mut() {
            member.heartbeat(0).await.expect("heartbeat");
        }
        let d = describe(&members[0].client, &members[0].group_id).await;
        if d.state == "Stable" {
            return members.iter().map(Member::partitions).collect();
        }
        assert!(Instant::now() < deadline, "group never settled: {d:?}");
    }
}

fn assert_exactly_once(owned: &[BTreeSet<(String, u32)>], topic: &str, partitions: u32) {
    let mut seen = BTreeMap::new();
    for (member, set) in owned.iter().enumerate() {
        for tp in set {
            assert!(seen.insert(tp.clone(), member).is_none(), "{tp:?} has two owners: {owned:?}");
        }
    }
    let expected: BTreeSet<(String, u32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), expected);
}

#[tokio::test]
async fn a_queue_splits_partitions_one_per_member_then_two_then_leaves_some_idle() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("jobs", 6, Default::default()).await.unwrap();

    for (members, expect) in [(6usize, vec![1usize; 6]), (3, vec![2; 3]), (8, vec![1, 1, 1, 1, 1, 1, 0, 0])] {
        let group = format!("queue-{members}");
        let mut group_members = Vec::new();
        for _ in 0..members {
            group_members.push(join(broker.client().await, &group, &["jobs"], None).await);
        }
        let owned = settle(&mut group_members).await;
        assert_exactly_once(&owned, "jobs", 6);
        let mut counts: Vec<usize> = owned.iter().map(BTreeSet::len).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(counts, expect, "{group}");
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_member_leaving_hands_its_partitions_to_the_others_at_once() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("work", 4, Default::default()).await.unwrap();
    let mut members = Vec::new();
    for _ in 0..2 {
        members.push(join(broker.client().await, "leavers", &["work"], None).await);
    }
    settle(&mut members).await;
    let leaver = members.pop().unwrap();
    let _: Empty = leaver
        .client
        .request(
            group_op::LEAVE_GROUP,
            &LeaveGroupRequest { group_id: "leavers".into(), member_id: leaver.member_id.clone() },
        )
        .await
        .unwrap();
    let owned = settle(&mut members).await;
    assert_exactly_once(&owned, "work", 4);
}

#[tokio::test]
async fn a_dropped_connection_frees_its_partitions_without_waiting_for_the_timeout() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("work", 4, Default::default()).await.unwrap();
    let mut members = vec![
        join(broker.client().await, "droppers", &["work"], None).await,
        join(broker.client().await, "droppers", &["work"], None).await,
    ];
    settle(&mut members).await;
    let dead = members.pop().unwrap();
    drop(dead); // closes its only connection
    let started = Instant::now();
    // The close reaches the broker a moment later: until then the group is
    // still Stable with both members.
    while describe(&members[0].client, "droppers").await.members.len() > 1 {
        assert!(started.elapsed() < Duration::from_secs(3), "the dropped member is still listed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let owned = settle(&mut members).await;
    assert_exactly_once(&owned, "work", 4);
    // The session timeout is 5 s; the move must not wait for it.
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_member_that_stops_heartbeating_is_removed_after_its_session_timeout() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("work", 2, Default::default()).await.unwrap();
    let mut live = join(broker.client().await, "silent", &["work"], None).await;
    let silent_client = broker.client().await;
    let request = JoinGroupRequest {
        group_id: "silent".into(),
        member_id: None,
        topics: vec!["work".into()],
        group_instance_id: None,
        session_timeout_ms: Some(300),
        rebalance_timeout_ms: None,
        assignor: None,
    };
    let silent: AssignmentResponse = silent_client.request(group_op::JOIN_GROUP, &request).await.unwrap();
    // The silent member never heartbeats again; its connection stays open.
    let deadline = Instant::now() + PATIENCE;
    loop {
        live.heartbeat(0).await.unwrap();
        let d = describe(&admin, "silent").await;
        if d.members.len() == 1 && live.partitions().len() == 2 {
            assert_eq!(d.members[0].member_id, live.member_id);
            break;
        }
        assert!(Instant::now() < deadline, "silent member was never removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its commits are refused from now on.
    let commit = CommitOffsetsRequest {
        group_id: "silent".into(),
        member_id: Some(silent.member_id),
        generation_id: silent.generation_id,
        offsets: vec![OffsetCommit { topic: "work".into(), partition: 0, offset: 1, metadata: None }],
    };
    let response: CommitOffsetsResponse = silent_client.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
    assert_eq!(response.partitions[0].error_code, 25, "{response:?}");
}

#[tokio::test]
async fn a_member_fenced_by_a_newer_generation_cannot_commit_the_partition_it_lost() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("fence", 2, Default::default()).await.unwrap();
    let mut first = join(broker.client().await, "fencing", &["fence"], None).await;
    settle(std::slice::from_mut(&mut first)).await;
    let old_generation = first.generation_id;
    assert_eq!(first.partitions().len(), 2);
    let mut members = vec![first, join(broker.client().await, "fencing", &["fence"], None).await];
    let owned = settle(&mut members).await;
    assert_exactly_once(&owned, "fence", 2);
    let lost = owned[1].iter().next().unwrap().clone();
    let commit = CommitOffsetsRequest {
        group_id: "fencing".into(),
        member_id: Some(members[0].member_id.clone()),
        generation_id: old_generation,
        offsets: vec![OffsetCommit { topic: lost.0.clone(), partition: lost.1 as i64, offset: 5, metadata: None }],
    };
    let response: CommitOffsetsResponse = members[0].client.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
    // It released the partition: whatever the generation, it is not its own.
    assert_eq!(response.partitions[0].error_code, 1004, "{response:?}");
    // Nor read committed offsets under its stale generation.
    let stale_fetch = FetchOffsetsRequest {
        group_id: "fencing".into(),
        partitions: None,
        member_id: Some(members[0].member_id.clone()),
        generation_id: Some(old_generation),
    };
    let refused =
        members[0].client.request::<_, FetchOffsetsResponse>(group_op::FETCH_OFFSETS, &stale_fetch).await.unwrap_err();
    assert_eq!(refused.code(), Some(22));
    // The owner may commit it.
    let commit = CommitOffsetsRequest {
        member_id: Some(members[1].member_id.clone()),
        generation_id: members[1].generation_id,
        ..commit
    };
    let response: CommitOffsetsResponse = members[1].client.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
    assert_eq!(response.partitions[0].error_code, 0, "{response:?}");
}

async fn consume_all(consumer: &mut GroupConsumer, want: usize) -> Vec<String> {
    let mut values = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while values.len() < want {
        for r in consumer.poll().await.expect("poll") {
            values.push(String::from_utf8(r.record.value.unwrap().to_vec()).unwrap());
        }
        assert!(Instant::now() < deadline, "consumed {} of {want}", values.len());
    }
    values
}

#[tokio::test]
async fn two_groups_on_one_topic_each_receive_every_record() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("news", 3, Default::default()).await.unwrap();
    for p in 0..3u32 {
        let records = (0..10).map(|i| value(format!("{p}-{i}"))).collect();
        admin.produce("news", Some(p), records).await.unwrap();
    }
    for group in ["readers-a", "readers-b"] {
        let mut consumer =
            GroupConsumer::join(broker.client().await, GroupConsumerConfig::new(group, &["news"])).await.unwrap();
        let mut values = consume_all(&mut consumer, 30).await;
        values.sort();
        let mut expected: Vec<String> = (0..3).flat_map(|p| (0..10).map(move |i| format!("{p}-{i}"))).collect();
        expected.sort();
        assert_eq!(values, expected, "{group}");
        consumer.close().await.unwrap();
    }
}

#[tokio::test]
async fn committed_offsets_survive_a_restart_and_members_resume_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let admin = broker.client().await;
    admin.create_topic("ledger", 2, Default::default()).await.unwrap();
    for p in 0..2u32 {
        admin.produce("ledger", Some(p), (0..5).map(|i| value(format!("a{p}-{i}"))).collect()).await.unwrap();
    }
    let mut config = GroupConsumerConfig::new("auditors", &["ledger"]);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut consumer = GroupConsumer::join(broker.client().await, config.clone()).await.unwrap();
    assert_eq!(consume_all(&mut consumer, 10).await.len(), 10);
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    drop(admin);
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path());
    let admin = broker.client().await;
    let fetched: FetchOffsetsResponse = admin
        .request(
            group_op::FETCH_OFFSETS,
            &FetchOffsetsRequest {
                group_id: "auditors".into(),
                partitions: None,
                member_id: None,
                generation_id: None,
            },
        )
        .await
        .unwrap();
    let offsets: BTreeMap<u32, i64> = fetched.offsets.iter().map(|o| (o.partition, o.offset)).collect();
    assert_eq!(offsets, BTreeMap::from([(0, 5), (1, 5)]));
    for p in 0..2u32 {
        admin.produce("ledger", Some(p), (0..3).map(|i| value(format!("b{p}-{i}"))).collect()).await.unwrap();
    }
    let mut consumer = GroupConsumer::join(broker.client().await, config).await.unwrap();
    let mut values = consume_all(&mut consumer, 6).await;
    values.sort();
    assert_eq!(values, ["b0-0", "b0-1", "b0-2", "b1-0", "b1-1", "b1-2"]);
    consumer.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn partitions_added_to_a_subscribed_topic_are_assigned() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("growing", 2, Default::default()).await.unwrap();
    let mut members = vec![join(broker.client().await, "growers", &["growing"], None).await];
    assert_exactly_once(&settle(&mut members).await, "growing", 2);
    admin.add_partitions("growing", 5).await.unwrap();
    // The coordinator notices within groups.metadata_refresh_ms (1 s).
    let deadline = Instant::now() + PATIENCE;
    while members[0].partitions().len() < 5 {
        members[0].heartbeat(500).await.unwrap();
        assert!(Instant::now() < deadline, "new partitions never assigned");
    }
    assert_exactly_once(&settle(&mut members).await, "growing", 5);
}

#[tokio::test]
async fn a_subscription_change_rebalances() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("first", 2, Default::default()).await.unwrap();
    admin.create_topic("second", 2, Default::default()).await.unwrap();
    let mut member = join(broker.client().await, "switchers", &["first"], None).await;
    settle(std::slice::from_mut(&mut member)).await;
    let request = HeartbeatRequest {
        group_id: "switchers".into(),
        member_id: member.member_id.clone(),
        generation_id: member.generation_id,
        owned: member.owned.clone(),
        topics: Some(vec!["second".into()]),
        max_wait_ms: 0,
    };
    let before = member.generation_id;
    let answer: AssignmentResponse = member.client.request(group_op::HEARTBEAT, &request).await.unwrap();
    member.apply(&answer);
    // The coordinator looks the new topic up before it rebalances: until then
    // the group is still Stable in its old generation.
    let deadline = Instant::now() + PATIENCE;
    while member.generation_id == before {
        member.heartbeat(500).await.unwrap();
        assert!(Instant::now() < deadline, "the subscription change never started a rebalance");
    }
    let owned = settle(std::slice::from_mut(&mut member)).await;
    assert_exactly_once(&owned, "second", 2);
}

#[tokio::test]
async fn the_range_assignor_gives_kafkas_assignment() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("t1", 3, Default::default()).await.unwrap();
    admin.create_topic("t2", 3, Default::default()).await.unwrap();
    let mut members = Vec::new();
    for _ in 0..2 {
        members.push(join(broker.client().await, "ranged", &["t1", "t2"], Some("range")).await);
    }
    settle(&mut members).await;
    let d = describe(&admin, "ranged").await;
    assert_eq!(d.assignor, "range");
    // Kafka's RangeAssignor, members sorted by id: the first gets partitions 0
    // and 1 of each topic, the second partition 2 of each.
    let mut by_member: Vec<(String, BTreeSet<(String, u32)>)> =
        members.iter().map(|m| (m.member_id.clone(), m.partitions())).collect();
    by_member.sort();
    let expect = |ps: &[(&str, u32)]| ps.iter().map(|(t, p)| (t.to_string(), *p)).collect::<BTreeSet<_>>();
    assert_eq!(by_member[0].1, expect(&[("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]));
    assert_eq!(by_member[1].1, expect(&[("t1", 2), ("t2", 2)]));
}

#[tokio::test]
async fn admin_operations_refuse_a_group_with_members_and_report_lag() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("lagging", 1, Default::default()).await.unwrap();
    admin.produce("lagging", Some(0), (0..10).map(|i| value(format!("{i}"))).collect()).await.unwrap();
    let mut member = join(broker.client().await, "laggards", &["lagging"], None).await;
    settle(std::slice::from_mut(&mut member)).await;
    let commit = CommitOffsetsRequest {
        group_id: "laggards".into(),
        member_id: Some(member.member_id.clone()),
        generation_id: member.generation_id,
        offsets: vec![OffsetCommit { topic: "lagging".into(), partition: 0, offset: 4, metadata: Some("m".into()) }],
    };
    let response: CommitOffsetsResponse = member.client.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
    assert_eq!(response.partitions[0].error_code, 0);

    let d = describe(&admin, "laggards").await;
    let row = &d.offsets[0];
    assert_eq!((row.current_offset, row.log_end_offset, row.lag), (Some(4), Some(10), Some(6)));
    assert_eq!(row.member_id.as_deref(), Some(member.member_id.as_str()));
    assert_eq!(d.members[0].client_id, "integration-test");

    let reset = ResetOffsetsRequest {
        group_id: "laggards".into(),
        topic: "lagging".into(),
        partitions: None,
        to: "earliest".into(),
        value: None,
        execute: true,
    };
    let refused = admin.request::<_, ResetOffsetsResponse>(group_op::RESET_OFFSETS, &reset).await.unwrap_err();
    assert_eq!(refused.code(), Some(68));
    let refused = admin
        .request::<_, Empty>(group_op::DELETE_GROUP, &GroupRequest { group_id: "laggards".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(68));

    let _: Empty = member
        .client
        .request(group_op::LEAVE_GROUP, &LeaveGroupRequest { group_id: "laggards".into(), member_id: member.member_id })
        .await
        .unwrap();
    let dry: ResetOffsetsResponse =
        admin.request(group_op::RESET_OFFSETS, &ResetOffsetsRequest { execute: false, ..reset.clone() }).await.unwrap();
    assert_eq!((dry.executed, dry.offsets[0].previous_offset, dry.offsets[0].new_offset), (false, Some(4), 0));
    let fetch =
        FetchOffsetsRequest { group_id: "laggards".into(), partitions: None, member_id: None, generation_id: None };
    let still: FetchOffsetsResponse = admin.request(group_op::FETCH_OFFSETS, &fetch).await.unwrap();
    assert_eq!((still.offsets[0].offset, still.offsets[0].metadata.as_deref()), (4, Some("m")));
    let done: ResetOffsetsResponse = admin.request(group_op::RESET_OFFSETS, &reset).await.unwrap();
    assert!(done.executed);
    let moved: FetchOffsetsResponse = admin.request(group_op::FETCH_OFFSETS, &fetch).await.unwrap();
    assert_eq!(moved.offsets[0].offset, 0);
    let shift = ResetOffsetsRequest { to: "shift".into(), value: Some(3), ..reset.clone() };
    let shifted: ResetOffsetsResponse = admin.request(group_op::RESET_OFFSETS, &shift).await.unwrap();
    assert_eq!(shifted.offsets[0].new_offset, 3);

    let _: Empty = admin.request(group_op::DELETE_GROUP, &GroupRequest { group_id: "laggards".into() }).await.unwrap();
    let gone = admin
        .request::<_, DescribeGroupResponse>(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: "laggards".into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some(69));
}

#[tokio::test]
async fn a_group_consumer_carries_on_across_a_broker_restart_from_its_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let port = broker.addr().port();
    let admin = broker.client().await;
    admin.create_topic("steady", 2, Default::default()).await.unwrap();
    for p in 0..2u32 {
        admin.produce("steady", Some(p), (0..4).map(|i| value(format!("a{p}-{i}"))).collect()).await.unwrap();
    }
    let mut config = GroupConsumerConfig::new("steadfast", &["steady"]);
    config.auto_commit = false;
    let mut consumer = GroupConsumer::join(broker.client().await, config).await.unwrap();
    assert_eq!(consume_all(&mut consumer, 8).await.len(), 8);
    consumer.commit().await.unwrap();
    drop(admin);
    broker.stop().await;

    let broker = TestBroker::start_on(dir.path(), port);
    let admin = broker.client().await;
    for p in 0..2u32 {
        admin.produce("steady", Some(p), (0..2).map(|i| value(format!("b{p}-{i}"))).collect()).await.unwrap();
    }
    // The same consumer object: it notices the closed connection, connects
    // again, joins again and resumes from the committed offsets.
    let mut values = consume_all(&mut consumer, 4).await;
    values.sort();
    assert_eq!(values, ["b0-0", "b0-1", "b1-0", "b1-1"]);
    let lost = consumer.take_events().into_iter().any(|e| matches!(e, herald::client::GroupEvent::Lost { .. }));
    assert!(lost, "the restart is reported as a loss of the partitions");
    consumer.close().await.unwrap();
    broker.stop().await;
}

/// A connection that joined a group keeps serving it after another
/// connection deleted it: its next request reaches the group made anew,
/// not the closed coordinator it had looked up.
#[tokio::test]
async fn a_connection_reaches_a_group_made_again_after_another_deleted_it() {
    let broker = TestBroker::start();
    let admin = broker.client().await;
    admin.create_topic("t", 1, Default::default()).await.unwrap();
    let member = broker.client().await;
    let joined: AssignmentResponse =
        member.request(group_op::JOIN_GROUP, &join_request("again", &["t"])).await.unwrap();
    let leave = LeaveGroupRequest { group_id: "again".into(), member_id: joined.member_id };
    let _: Empty = member.request(group_op::LEAVE_GROUP, &leave).await.unwrap();
    let _: Empty = admin.request(group_op::DELETE_GROUP, &GroupRequest { group_id: "again".into() }).await.unwrap();

    let commit = CommitOffsetsRequest {
        group_id: "again".into(),
        member_id: None,
        generation_id: -1,
        offsets: vec![OffsetCommit { topic: "t".into(), partition: 0, offset: 1, metadata: None }],
    };
    let committed: CommitOffsetsResponse = member.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
    assert_eq!(committed.partitions[0].error_code, 0, "{committed:?}");
    let fetch =
        FetchOffsetsRequest { group_id: "again".into(), partitions: None, member_id: None, generation_id: None };
    let fetched: FetchOffsetsResponse = admin.request(group_op::FETCH_OFFSETS, &fetch).await.unwrap();
    assert_eq!(fetched.offsets.iter().map(|o| o.offset).collect::<Vec<_>>(), [1]);
}
