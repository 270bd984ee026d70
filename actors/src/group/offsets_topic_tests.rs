//! The group directory of a broker in a cluster, driven by the roles its
//! `__consumer_offsets` partitions take (as the cluster sends them): a group
//! is coordinated only while its partition leads here, answered
//! `COORDINATOR_LOAD_IN_PROGRESS` while the partition is read back, and a
//! new leadership reads back every commit and deletion.

use std::time::{Duration, Instant};

use actix::prelude::*;
use herald_wire::protocol::{coordinator_partition, OFFSETS_TOPIC};
use tempfile::TempDir;

use super::coordinator::{CommitOffsets, FetchOffsets, GroupCoordinator};
use super::{DeleteGroup, GroupSettings, Groups, LookupGroup, OffsetsRole};
use crate::broker::{Broker, CreateTopic, LookupTopic};
use crate::error::{BrokerError, ErrorCode};
use crate::group::assignor::TopicPartition;
use crate::partition::Partition;
use crate::topic::GetRoute;

const PARTITIONS: u32 = 3;

struct Fixture {
    _dir: TempDir,
    broker: Addr<Broker>,
    groups: Addr<Groups>,
    partitions: Vec<Addr<Partition>>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let settings = super::actor_tests::broker_settings(dir.path());
    let broker = Broker::open(settings).unwrap();
    let placement = broker.placement();
    let broker = broker.start();
    let create = CreateTopic {
        name: OFFSETS_TOPIC.into(),
        partitions: i64::from(PARTITIONS),
        config: Default::default(),
        topic_id: None,
    };
    broker.send(create).await.unwrap().unwrap();
    let topic = broker.send(LookupTopic { name: OFFSETS_TOPIC.into() }).await.unwrap().unwrap();
    let route = topic.send(GetRoute).await.unwrap();
    let partitions = (0..PARTITIONS).map(|p| route.partition(p).unwrap()).collect();
    let groups = Groups::in_cluster(GroupSettings::default(), placement, broker.clone()).start();
    Fixture { _dir: dir, broker, groups, partitions }
}

impl Fixture {
    /// A partition actor of another topic, closed: every read of it fails.
    async fn closed_partition(&self) -> Addr<Partition> {
        let create = CreateTopic { name: "gone".into(), partitions: 1, config: Default::default(), topic_id: None };
        self.broker.send(create).await.unwrap().unwrap();
        let topic = self.broker.send(LookupTopic { name: "gone".into() }).await.unwrap().unwrap();
        let partition = topic.send(GetRoute).await.unwrap().partition(0).unwrap();
        partition.send(crate::partition::Close).await.unwrap();
        partition
    }

    async fn lookup(&self, group_id: &str, create: bool) -> Result<Addr<GroupCoordinator>, BrokerError> {
        self.groups.send(LookupGroup { group_id: group_id.into(), create }).await.unwrap()
    }

    /// The coordinator of `group_id`, waiting out a read-back.
    async fn coordinator(&self, group_id: &str) -> Addr<GroupCoordinator> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.lookup(group_id, true).await {
                Ok(addr) => return addr,
                Err(err) if err.code == ErrorCode::COORDINATOR_LOAD_IN_PROGRESS && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(err) => panic!("no coordinator for `{group_id}`: {err}"),
            }
        }
    }

    fn role(&self, partition: u32, leads: bool) {
        let leader = leads.then(|| self.partitions[partition as usize].clone());
        self.groups.do_send(OffsetsRole { partition, partitions: PARTITIONS, leader });
    }
}

fn code<T>(result: Result<T, BrokerError>) -> ErrorCode {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(err) => err.code,
    }
}

async fn commit(coordinator: &Addr<GroupCoordinator>, offset: i64) -> Result<(), BrokerError> {
    let commit = CommitOffsets {
        member_id: None,
        generation_id: -1,
        offsets: vec![(TopicPartition::new("events", 0), offset, None)],
    };
    let results = coordinator.send(commit).await.unwrap()?;
    results.into_iter().try_for_each(|(_, result)| result)
}

async fn committed(coordinator: &Addr<GroupCoordinator>) -> Option<i64> {
    let fetch = FetchOffsets { partitions: Some(vec![TopicPartition::new("events", 0)]), member: None };
    let found = coordinator.send(fetch).await.unwrap().unwrap();
    found.into_iter().next().and_then(|(_, c)| c).map(|c| c.offset)
}

#[actix::test]
async fn a_group_is_coordinated_only_while_its_partition_leads_here() {
    let fixture = fixture().await;
    let group = "billing";
    let p = coordinator_partition(group, PARTITIONS);
    // Before the cluster told any role: the topic is not known here yet.
    assert_eq!(code(fixture.lookup(group, true).await), ErrorCode::COORDINATOR_NOT_AVAILABLE);
    // Another partition leads here: this group's coordinator is elsewhere.
    fixture.role((p + 1) % PARTITIONS, true);
    assert_eq!(code(fixture.lookup(group, true).await), ErrorCode::NOT_COORDINATOR);

    // Leading a partition whose read-back cannot complete (its actor is
    // gone): its groups wait, answered 14, and nothing is coordinated.
    let gone = fixture.closed_partition().await;
    fixture.groups.do_send(OffsetsRole { partition: p, partitions: PARTITIONS, leader: Some(gone) });
    assert_eq!(code(fixture.lookup(group, true).await), ErrorCode::COORDINATOR_LOAD_IN_PROGRESS);

    // The partition's actor: read back (empty), then coordinated.
    fixture.role(p, true);
    let coordinator = fixture.coordinator(group).await;
    commit(&coordinator, 42).await.unwrap();
    assert_eq!(committed(&coordinator).await, Some(42));

    // The leadership moves away: the coordinator stops and tells so.
    fixture.role(p, false);
    assert_eq!(code(fixture.lookup(group, true).await), ErrorCode::NOT_COORDINATOR);
    assert_eq!(code(commit(&coordinator, 43).await), ErrorCode::NOT_COORDINATOR);

    // And back: the commit is read back from the partition.
    fixture.role(p, true);
    let again = fixture.coordinator(group).await;
    assert_eq!(committed(&again).await, Some(42));

    // A deletion is stored too: read back, the group is gone.
    fixture.groups.send(DeleteGroup { group_id: group.into() }).await.unwrap().unwrap();
    fixture.role(p, false);
    fixture.role(p, true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fixture.lookup(group, false).await {
            Err(err) if err.code == ErrorCode::COORDINATOR_LOAD_IN_PROGRESS && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => {
                assert_eq!(code(other), ErrorCode::GROUP_ID_NOT_FOUND);
                break;
            }
        }
    }
}
