//! An assignor registered with `Server::builder().assignor(...)`: listed in
//! the handshake, used by a group whose members ask for it by name (the
//! Rust group consumer), refused by name when not registered.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{test_settings, TestBroker};
use herald::client::{Client, GroupConsumer, GroupConsumerConfig};
use herald::extension::{Assignment, Assignor, Member, TopicPartition};
use herald::protocol::{group_op, DescribeGroupResponse, GroupRequest};

/// Every partition to the subscribed member whose id sorts first.
struct AllToFirst;

impl Assignor for AllToFirst {
    fn name(&self) -> &'static str {
        "all-to-first"
    }

    fn assign(&self, partitions: &std::collections::BTreeMap<String, u32>, members: &[Member]) -> Assignment {
        let mut out: Assignment = members.iter().map(|m| (m.member_id.clone(), BTreeSet::new())).collect();
        for (topic, count) in partitions {
            let first = members.iter().filter(|m| m.topics.contains(topic)).map(|m| &m.member_id).min();
            if let Some(set) = first.and_then(|id| out.get_mut(id)) {
                set.extend((0..*count).map(|p| TopicPartition::new(topic.clone(), p)));
            }
        }
        out
    }
}

async fn describe(client: &Client, group_id: &str) -> DescribeGroupResponse {
    client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: group_id.into() }).await.expect("describe")
}

fn config(assignor: &str) -> GroupConsumerConfig {
    GroupConsumerConfig { assignor: Some(assignor.into()), max_wait_ms: 20, ..GroupConsumerConfig::new("g", &["t"]) }
}

#[tokio::test]
async fn a_registered_assignor_is_offered_and_used_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_built(test_settings(dir.path()), |b| b.assignor("all-to-first", AllToFirst));
    let client = broker.client().await;
    let offered = &client.features().assignors;
    assert!(offered.iter().any(|a| a == "all-to-first"), "{offered:?}");
    assert!(offered.iter().any(|a| a == "sticky"), "{offered:?}");
    client.create_topic("t", 4, Default::default()).await.unwrap();

    let mut a = GroupConsumer::join(broker.client().await, config("all-to-first")).await.expect("join a");
    let mut b = GroupConsumer::join(broker.client().await, config("all-to-first")).await.expect("join b");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        a.poll().await.expect("poll a");
        b.poll().await.expect("poll b");
        let d = describe(&client, "g").await;
        let local = [a.assignment().len(), b.assignment().len()];
        let settled = d.state == "Stable" && d.members.len() == 2 && local.iter().sum::<usize>() == 4;
        if settled {
            let mut described: Vec<(String, usize)> = d
                .members
                .iter()
                .map(|m| (m.member_id.clone(), m.assignment.iter().map(|t| t.partitions.len()).sum()))
                .collect();
            described.sort();
            assert_eq!(described[0].1, 4, "the member whose id sorts first has every partition: {d:?}");
            assert_eq!(described[1].1, 0, "{d:?}");
            assert_eq!(d.assignor, "all-to-first");
            let first = if a.member_id() < b.member_id() { (&a, &b) } else { (&b, &a) };
            assert_eq!(first.0.assignment().len(), 4, "the first member has every partition");
            assert!(first.1.assignment().is_empty(), "the other none");
            break;
        }
        assert!(Instant::now() < deadline, "the group never settled: {d:?}");
    }
    // A name nobody registered is refused.
    let refused =
        GroupConsumer::join(broker.client().await, GroupConsumerConfig { group_id: "h".into(), ..config("nobody") })
            .await;
    assert!(refused.is_err(), "an unknown assignor is refused");
    broker.stop().await;
}

#[test]
fn an_assignor_under_another_name_or_a_built_in_one_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path());
    let err = std::thread::spawn(move || {
        let system = actix::System::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let builder = herald::server::Server::builder(settings)
            .listener(listener)
            .http_listener(None)
            .assignor("other-name", AllToFirst)
            .assignor("all-to-first", AllToFirst)
            .assignor("all-to-first", AllToFirst);
        system.block_on(builder.shutdown(async {}).run()).expect_err("refused").to_string()
    })
    .join()
    .unwrap();
    assert!(err.contains("calls itself `all-to-first`"), "{err}");
    assert!(err.contains("registered twice"), "{err}");
}
