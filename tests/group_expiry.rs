//! Groups over time ([operate] item 7): a group with no member and no
//! commit for `groups.empty_group_retention_ms` is deleted with its offsets,
//! a group with a member never is, and a broker start counts as activity; a
//! group's generation goes on across restarts.

mod common;

use std::time::{Duration, Instant};

use common::{test_settings, value, TestBroker};
use herald::client::{AutoOffsetReset, Client, GroupConsumer, GroupConsumerConfig};
use herald::protocol::*;

const RETENTION_MS: i64 = 600;

fn broker_in(dir: &std::path::Path) -> TestBroker {
    let mut settings = test_settings(dir);
    settings.groups.empty_group_retention_ms = RETENTION_MS;
    TestBroker::start_with(settings)
}

async fn groups(client: &Client) -> Vec<String> {
    let listed: ListGroupsResponse = client.request(group_op::LIST_GROUPS, &Empty {}).await.unwrap();
    listed.groups.into_iter().map(|g| g.group_id).collect()
}

async fn commit_and_leave(client: Client, group: &str) {
    let mut config = GroupConsumerConfig::new(group, &["t"]);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    let mut consumer = GroupConsumer::join(client, config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut read = 0;
    while read < 3 {
        read += consumer.poll().await.unwrap().len();
        assert!(Instant::now() < deadline, "the group never read the topic");
    }
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
}

#[actix_rt::test]
async fn an_idle_empty_group_expires_with_its_offsets_and_a_busy_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_in(dir.path());
    let admin = broker.client().await;
    admin.create_topic("t", 1, Default::default()).await.unwrap();
    admin.produce("t", Some(0), (0..3).map(|i| value(format!("r{i}"))).collect()).await.unwrap();

    commit_and_leave(broker.client().await, "idle").await;
    let mut busy = GroupConsumer::join(broker.client().await, GroupConsumerConfig::new("busy", &["t"])).await.unwrap();
    assert_eq!(groups(&admin).await, ["busy", "idle"]);

    // Idle for the retention (and a check interval): deleted; busy polls on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while groups(&admin).await.contains(&"idle".to_string()) {
        busy.poll().await.unwrap();
        assert!(Instant::now() < deadline, "the idle group never expired");
    }
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_millis(3 * RETENTION_MS as u64) {
        busy.poll().await.unwrap();
    }
    assert_eq!(groups(&admin).await, ["busy"], "a group with a member never expires");
    let offsets: FetchOffsetsResponse = admin
        .request(
            group_op::FETCH_OFFSETS,
            &FetchOffsetsRequest { group_id: "idle".into(), partitions: None, member_id: None, generation_id: None },
        )
        .await
        .unwrap_or(FetchOffsetsResponse { offsets: Vec::new() });
    assert!(offsets.offsets.is_empty(), "the expired group's offsets went with it: {:?}", offsets.offsets);
    busy.close().await.unwrap();
    drop(admin);
    broker.stop().await;
    assert!(
        std::fs::read_dir(dir.path().join("groups")).map_or(true, |d| d.count() == 1),
        "the expired group's directory is gone"
    );
}

#[actix_rt::test]
async fn a_broker_start_gives_every_group_a_full_retention() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_in(dir.path());
    let admin = broker.client().await;
    admin.create_topic("t", 1, Default::default()).await.unwrap();
    admin.produce("t", Some(0), (0..3).map(|i| value(format!("r{i}"))).collect()).await.unwrap();
    commit_and_leave(broker.client().await, "g").await;
    drop(admin);
    broker.stop().await;
    // Down for longer than the retention: the group's last commit is old.
    std::thread::sleep(Duration::from_millis(2 * RETENTION_MS as u64));

    let broker = broker_in(dir.path());
    let admin = broker.client().await;
    let started = Instant::now();
    assert_eq!(groups(&admin).await, ["g"], "not expired at once after a start");
    while groups(&admin).await.contains(&"g".to_string()) {
        assert!(started.elapsed() < Duration::from_secs(10), "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(RETENTION_MS as u64 - 50), "{:?}", started.elapsed());
}

async fn generation(client: &Client, group: &str) -> i64 {
    let described: DescribeGroupResponse =
        client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: group.into() }).await.unwrap();
    described.generation_id
}

#[actix_rt::test]
async fn a_groups_generation_goes_on_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let admin = broker.client().await;
    admin.create_topic("t", 2, Default::default()).await.unwrap();
    // Members come and go: each join and leave is a new generation.
    for _ in 0..3 {
        let member = GroupConsumer::join(broker.client().await, GroupConsumerConfig::new("g", &["t"])).await.unwrap();
        member.close().await.unwrap();
    }
    let before = generation(&admin, "g").await;
    assert!(before >= 6, "{before}");
    drop(admin);
    broker.stop().await;

    let broker = TestBroker::start_in(dir.path());
    let admin = broker.client().await;
    assert_eq!(generation(&admin, "g").await, before, "the generation survives the restart");
    let member = GroupConsumer::join(broker.client().await, GroupConsumerConfig::new("g", &["t"])).await.unwrap();
    assert!(generation(&admin, "g").await > before, "and goes on from there");
    member.close().await.unwrap();
}
