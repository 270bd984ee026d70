//! Topic ids: a topic deleted and created again under the same name is another
//! topic, and a group's offsets for the old one neither skip the new one's
//! records nor show in describe_group.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::{value, TestBroker, PATIENCE};
use herald::client::{AutoOffsetReset, Client, GroupConsumer, GroupConsumerConfig};
use herald::protocol::*;

async fn consume(consumer: &mut GroupConsumer, want: usize) -> Vec<String> {
    let mut values = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while values.len() < want {
        for r in consumer.poll().await.expect("poll") {
            values.push(String::from_utf8(r.record.value.unwrap().to_vec()).unwrap());
        }
        assert!(Instant::now() < deadline, "consumed {} of {want}: {values:?}", values.len());
    }
    values
}

async fn describe_group(client: &Client, group_id: &str) -> DescribeGroupResponse {
    client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: group_id.into() }).await.unwrap()
}

async fn topic_id(client: &Client, topic: &str) -> String {
    let described = client.describe_topic(topic).await.unwrap().topic_id;
    let listed = client.list_topics().await.unwrap().into_iter().find(|t| t.topic == topic).unwrap().topic_id;
    assert_eq!(Some(&described), listed.as_ref(), "describe_topic and list_topics agree");
    assert_eq!(described.len(), 32, "{described}");
    described
}

/// Produces five records, consumes them with the group and commits.
async fn commit_five(broker: &TestBroker, config: &GroupConsumerConfig) {
    let admin = broker.client().await;
    admin.produce("events", Some(0), (0..5).map(|i| value(format!("a{i}"))).collect()).await.unwrap();
    let mut consumer = GroupConsumer::join(broker.client().await, config.clone()).await.unwrap();
    assert_eq!(consume(&mut consumer, 5).await.len(), 5);
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    let offsets = describe_group(&admin, &config.group_id).await.offsets;
    assert_eq!(offsets.iter().map(|o| o.current_offset).collect::<Vec<_>>(), [Some(5)]);
}

/// The new topic's three records are all read, from the start, and describe
/// shows the new topic's offset only.
async fn read_the_new_topic(broker: &TestBroker, config: &GroupConsumerConfig) {
    let admin = broker.client().await;
    let before = describe_group(&admin, &config.group_id).await.offsets;
    assert!(before.iter().all(|o| o.current_offset.is_none() && o.lag.is_none()), "no stale offset: {before:?}");
    admin.produce("events", Some(0), (0..3).map(|i| value(format!("b{i}"))).collect()).await.unwrap();
    let mut consumer = GroupConsumer::join(broker.client().await, config.clone()).await.unwrap();
    assert_eq!(consume(&mut consumer, 3).await, ["b0", "b1", "b2"]);
    consumer.commit().await.unwrap();
    let after = describe_group(&admin, &config.group_id).await.offsets;
    let rows: Vec<(Option<i64>, Option<i64>)> = after.iter().map(|o| (o.current_offset, o.lag)).collect();
    assert_eq!(rows, [(Some(3), Some(0))]);
    consumer.close().await.unwrap();
}

fn config() -> GroupConsumerConfig {
    let mut config = GroupConsumerConfig::new("readers", &["events"]);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config
}

#[tokio::test]
async fn a_recreated_topic_is_read_from_the_reset_policy_not_the_old_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let admin = broker.client().await;
    admin.create_topic("events", 1, BTreeMap::new()).await.unwrap();
    let first = topic_id(&admin, "events").await;
    commit_five(&broker, &config()).await;

    admin.delete_topic("events").await.unwrap();
    // The delete drops the group's offsets for the topic: none is shown even
    // before the name is taken again.
    let deadline = Instant::now() + PATIENCE;
    while !describe_group(&admin, "readers").await.offsets.is_empty() {
        assert!(Instant::now() < deadline, "the deleted topic's offsets stay");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    admin.create_topic("events", 1, BTreeMap::new()).await.unwrap();
    let second = topic_id(&admin, "events").await;
    assert_ne!(first, second, "a re-created topic has a new id");
    read_the_new_topic(&broker, &config()).await;

    // The drop is durable, and the ids are kept across a restart.
    drop(admin);
    broker.stop().await;
    let broker = TestBroker::start_in(dir.path());
    let admin = broker.client().await;
    assert_eq!(topic_id(&admin, "events").await, second);
    let offsets = describe_group(&admin, "readers").await.offsets;
    assert_eq!(offsets.iter().map(|o| o.current_offset).collect::<Vec<_>>(), [Some(3)]);
    broker.stop().await;
}

#[tokio::test]
async fn offsets_of_another_topic_id_are_not_served_even_if_the_delete_was_missed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let admin = broker.client().await;
    admin.create_topic("events", 1, BTreeMap::new()).await.unwrap();
    commit_five(&broker, &config()).await;
    drop(admin);
    broker.stop().await;
    // The topic goes without the broker (and so without its groups) knowing,
    // as when it stops between a delete and telling the groups.
    std::fs::remove_dir_all(dir.path().join("topics/events")).unwrap();

    let broker = TestBroker::start_in(dir.path());
    let admin = broker.client().await;
    let fetched: FetchOffsetsResponse = admin
        .request(
            group_op::FETCH_OFFSETS,
            &FetchOffsetsRequest { group_id: "readers".into(), partitions: None, member_id: None, generation_id: None },
        )
        .await
        .unwrap();
    assert!(fetched.offsets.is_empty(), "{fetched:?}");
    admin.create_topic("events", 1, BTreeMap::new()).await.unwrap();
    read_the_new_topic(&broker, &config()).await;
    broker.stop().await;
}
