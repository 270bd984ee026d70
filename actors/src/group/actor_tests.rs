//! Tests of the group actors themselves: a `GroupCoordinator` under its
//! supervisor and the `Session`s that speak for members, on a real broker
//! directory, driven by messages (no connection, no wire).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tempfile::TempDir;

use super::coordinator::{self, Assigned, CommitOffsets, FetchOffsets, GroupCoordinator, InjectPanic};
use super::session::{self, ConnectionClosed, Session, SessionHeartbeat, SessionJoin, SessionLeave};
use super::{GroupSettings, Groups, LookupGroup};
use crate::broker::{Broker, BrokerSettings, CreateTopic};
use crate::error::{BrokerError, ErrorCode};
use crate::group::assignor::TopicPartition;
use crate::partition::{FlushPolicy, PartitionSettings};
use crate::topic_config::TopicConfig;

const TOPIC: &str = "t";

struct Fixture {
    _dir: TempDir,
    groups: Addr<Groups>,
}

/// A broker directory in `data_dir` for the group actors' tests.
pub(super) fn broker_settings(data_dir: &std::path::Path) -> BrokerSettings {
    BrokerSettings {
        data_dir: data_dir.to_path_buf(),
        topic_defaults: TopicConfig::default(),
        max_message_ceiling: u64::MAX,
        partition: PartitionSettings {
            flush: FlushPolicy::Always,
            flush_interval_ms: 1000,
            retention_check_interval_ms: 300_000,
            scrub: crate::partition::scrub::ScrubBudget::new(0),
            replica_lag_time_max_ms: crate::partition::DEFAULT_REPLICA_LAG_TIME_MAX_MS,
            replicated: false,
            producer_id_expiration_ms: 86_400_000,
        },
        group_commit: true,
        arbiters: 1,
    }
}

async fn fixture(partitions: i64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let settings = broker_settings(dir.path());
    let broker = Broker::open(settings).unwrap();
    let placement = broker.placement();
    let broker = broker.start();
    broker
        .send(CreateTopic { name: TOPIC.into(), partitions, config: Default::default(), topic_id: None })
        .await
        .unwrap()
        .unwrap();
    let groups = Groups::open(dir.path(), GroupSettings::default(), placement, broker).unwrap().start();
    Fixture { _dir: dir, groups }
}

impl Fixture {
    async fn coordinator(&self, group_id: &str) -> Addr<GroupCoordinator> {
        self.groups.send(LookupGroup { group_id: group_id.into(), create: true }).await.unwrap().unwrap()
    }
}

fn join_message(session: &Addr<Session>, member_id: Option<String>, session_timeout_ms: u64) -> coordinator::Join {
    coordinator::Join {
        session: session.downgrade(),
        member_id,
        group_instance_id: None,
        client_id: "test".into(),
        host: "127.0.0.1".into(),
        topics: BTreeSet::from([TOPIC.to_string()]),
        session_timeout_ms: Some(session_timeout_ms),
        rebalance_timeout_ms: None,
        assignor: Some("range".into()),
    }
}

/// A member: its session, and what it applied last.
struct Member {
    session: Addr<Session>,
    assigned: Assigned,
}

async fn join(coordinator: &Addr<GroupCoordinator>, session_timeout_ms: u64) -> Member {
    let owner = coordinator.clone();
    let session = Supervisor::start(move |_| Session::new("g".into(), owner));
    let join = join_message(&session, None, session_timeout_ms);
    let assigned = session.send(SessionJoin { coordinator: coordinator.clone(), join }).await.unwrap().unwrap();
    Member { session, assigned }
}

impl Member {
    /// Reports owning its assignment; answered at once unless `max_wait_ms`.
    async fn heartbeat(&mut self, max_wait_ms: u64) -> Result<Assigned, BrokerError> {
        let beat = SessionHeartbeat {
            member_id: self.assigned.member_id.clone(),
            generation_id: self.assigned.generation_id,
            owned: self.assigned.assignment.clone(),
            topics: None,
            max_wait_ms,
        };
        let answer = self.session.send(beat).await.unwrap()?;
        self.assigned = answer.clone();
        Ok(answer)
    }
}

fn partitions(a: &Assigned) -> BTreeSet<u32> {
    a.assignment.iter().map(|tp| tp.partition).collect()
}

#[actix::test]
async fn a_held_heartbeat_is_answered_by_the_coordinators_push_when_another_member_joins() {
    let f = fixture(4).await;
    let coordinator = f.coordinator("g").await;
    let mut a = join(&coordinator, 10_000).await;
    assert_eq!(partitions(&a.assigned), BTreeSet::from([0, 1, 2, 3]));
    // Up to date: a long poll is held by the session...
    let held = {
        let session = a.session.clone();
        let beat = SessionHeartbeat {
            member_id: a.assigned.member_id.clone(),
            generation_id: a.assigned.generation_id,
            owned: a.assigned.assignment.clone(),
            topics: None,
            max_wait_ms: 4_000,
        };
        actix_rt::spawn(async move { session.send(beat).await })
    };
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    // ...until B joins and the coordinator pushes A's smaller assignment.
    let b = join(&coordinator, 10_000).await;
    let answer = held.await.unwrap().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "answered by the push, not the wait");
    assert_eq!(partitions(&answer), BTreeSet::from([0, 1]));
    assert!(answer.generation_id > a.assigned.generation_id);
    // B gets its partitions once A reports them released.
    a.assigned = answer;
    a.heartbeat(0).await.unwrap();
    let mut b = b;
    let b_answer = b.heartbeat(0).await.unwrap();
    assert_eq!(partitions(&b_answer), BTreeSet::from([2, 3]));
}

#[actix::test]
async fn a_second_join_on_one_session_needs_the_member_id_and_a_rejoin_keeps_the_member() {
    let f = fixture(2).await;
    let coordinator = f.coordinator("g").await;
    let a = join(&coordinator, 10_000).await;
    let again = a
        .session
        .send(SessionJoin { coordinator: coordinator.clone(), join: join_message(&a.session, None, 10_000) })
        .await
        .unwrap();
    assert_eq!(again.unwrap_err().code, ErrorCode::MEMBER_ID_REQUIRED);
    let rejoin = join_message(&a.session, Some(a.assigned.member_id.clone()), 10_000);
    let rejoined =
        a.session.send(SessionJoin { coordinator: coordinator.clone(), join: rejoin }).await.unwrap().unwrap();
    assert_eq!(rejoined.member_id, a.assigned.member_id);
    assert_eq!(rejoined.assignment, a.assigned.assignment);
    // Leaving ends the member; the session is free for a new one.
    a.session.send(SessionLeave { member_id: a.assigned.member_id.clone() }).await.unwrap().unwrap();
    let next = a
        .session
        .send(SessionJoin { coordinator: coordinator.clone(), join: join_message(&a.session, None, 10_000) })
        .await
        .unwrap()
        .unwrap();
    assert_ne!(next.member_id, a.assigned.member_id);
}

#[actix::test]
async fn the_coordinator_removes_a_silent_member_when_its_session_timeout_ends() {
    let f = fixture(2).await;
    let coordinator = f.coordinator("g").await;
    // Started before the join, so before the coordinator armed A's timer.
    let started = Instant::now();
    let mut a = join(&coordinator, 200).await;
    let mut b = join(&coordinator, 10_000).await;
    // A says nothing: at 200 ms it is removed and B gets everything.
    loop {
        let answer = b.heartbeat(0).await.unwrap();
        if answer.assignment.len() == 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "the silent member was never removed");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(a.heartbeat(0).await.unwrap_err().code, ErrorCode::UNKNOWN_MEMBER_ID);
}

#[actix::test]
async fn a_closed_connection_removes_a_dynamic_member_at_once() {
    let f = fixture(2).await;
    let coordinator = f.coordinator("g").await;
    let a = join(&coordinator, 10_000).await;
    let mut b = join(&coordinator, 10_000).await;
    a.session.do_send(ConnectionClosed);
    let started = Instant::now();
    while b.heartbeat(0).await.unwrap().assignment.len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(2), "the member of a closed connection stayed");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

#[actix::test]
async fn a_panicking_coordinator_is_restarted_from_its_log_and_its_members_told_to_join_again() {
    let f = fixture(2).await;
    let coordinator = f.coordinator("g").await;
    let mut a = join(&coordinator, 10_000).await;
    a.heartbeat(0).await.unwrap();
    let tp = TopicPartition::new(TOPIC, 0);
    let commit = CommitOffsets {
        member_id: Some(a.assigned.member_id.clone()),
        generation_id: a.assigned.generation_id,
        offsets: vec![(tp.clone(), 42, None)],
    };
    let results = coordinator.send(commit).await.unwrap().unwrap();
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");

    coordinator.send(InjectPanic).await.unwrap();
    // The same address answers again, rebuilt from disk: the commit is there,
    // the member is not (it joins again).
    let fetched = coordinator.send(FetchOffsets { partitions: Some(vec![tp]), member: None }).await.unwrap().unwrap();
    assert_eq!(fetched[0].1.as_ref().map(|c| c.offset), Some(42));
    let err = a.heartbeat(0).await.unwrap_err();
    assert!(matches!(err.code, ErrorCode::COORDINATOR_NOT_AVAILABLE | ErrorCode::UNKNOWN_MEMBER_ID), "{err}");
    let mut again = join(&coordinator, 10_000).await;
    assert_eq!(partitions(&again.heartbeat(0).await.unwrap()), BTreeSet::from([0, 1]));
}

#[actix::test]
async fn a_panicking_session_is_restarted_empty_and_its_member_leaves_the_group() {
    let f = fixture(2).await;
    let coordinator = f.coordinator("g").await;
    let mut a = join(&coordinator, 10_000).await;
    let mut b = join(&coordinator, 10_000).await;
    a.session.send(session::InjectPanic).await.unwrap();
    // The restarted session has no member: A must join again.
    assert_eq!(a.heartbeat(0).await.unwrap_err().code, ErrorCode::UNKNOWN_MEMBER_ID);
    // A's partitions went to B; the coordinator is unaffected.
    let started = Instant::now();
    while b.heartbeat(0).await.unwrap().assignment.len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(2), "the restarted session's member stayed");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    let rejoin = join_message(&a.session, None, 10_000);
    a.session.send(SessionJoin { coordinator: coordinator.clone(), join: rejoin }).await.unwrap().unwrap();
}
