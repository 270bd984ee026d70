//! The controller election against a real ZooKeeper: every broker runs,
//! exactly one wins, all agree on it and on its epoch; when the controller
//! dies another takes over within seconds with a higher epoch; a broker
//! paused past its session timeout rejoins by itself; a single broker
//! describes itself.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{describe_until, member, ZooKeeper, SESSION_TIMEOUT_MS};
use common::*;

/// How long a takeover may take: the dead broker's session timeout, then
/// the election, with room for a loaded machine.
const TAKEOVER: Duration = Duration::from_millis(SESSION_TIMEOUT_MS + 8_000);

fn ids(described: &herald::protocol::DescribeClusterResponse) -> Vec<i32> {
    described.brokers.iter().map(|b| b.id).collect()
}

#[tokio::test]
async fn one_controller_is_elected_and_another_takes_over_when_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let zk = ZooKeeper::start(&dir.path().join("zk"));
    let mut brokers: Vec<Option<BinaryBroker>> =
        (1..=3).map(|id| Some(member(&dir.path().join(format!("b{id}")), &zk.address, id))).collect();

    // All three agree on one controller, among them, with one epoch.
    let mut seen = Vec::new();
    for broker in brokers.iter().flatten() {
        let described = describe_until(broker, TAKEOVER, "three brokers and a controller", |d| {
            ids(d) == [1, 2, 3] && d.controller_id != -1
        })
        .await;
        assert_eq!(described.mode, "zookeeper");
        seen.push((described.controller_id, described.controller_epoch));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "the brokers disagree: {seen:?}");
    let (first, first_epoch) = seen[0];
    assert!((1..=3).contains(&first) && first_epoch >= 1, "{seen:?}");

    // The controller dies: another is elected with a higher epoch, and the
    // survivors agree on it.
    brokers[(first - 1) as usize].take().unwrap().kill();
    let mut seen = Vec::new();
    for broker in brokers.iter().flatten() {
        let described = describe_until(broker, TAKEOVER, "a new controller", |d| {
            d.controller_id != -1 && d.controller_id != first && !ids(d).contains(&first)
        })
        .await;
        seen.push((described.controller_id, described.controller_epoch));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "the survivors disagree: {seen:?}");
    let (second, second_epoch) = seen[0];
    assert!(second_epoch > first_epoch, "{first_epoch} then {second_epoch}");

    // And again: the last broker becomes controller.
    brokers[(second - 1) as usize].take().unwrap().kill();
    let last_id = brokers.iter().position(Option::is_some).unwrap() as i32 + 1;
    let last = brokers.iter().flatten().next().unwrap();
    let described = describe_until(last, TAKEOVER, "the last broker in control", |d| {
        ids(d).len() == 1 && d.controller_id == d.broker_id
    })
    .await;
    assert!(described.controller_epoch > second_epoch, "{described:?}");

    // A broker that comes back joins as a follower of the standing controller.
    let back = member(&dir.path().join(format!("b{first}")), &zk.address, first);
    let described = describe_until(&back, TAKEOVER, "the returning broker sees the controller", |d| {
        d.controller_id == last_id && ids(d).len() == 2
    })
    .await;
    assert!(described.controller_epoch > second_epoch, "{described:?}");
}

#[tokio::test]
async fn a_broker_paused_past_its_session_rejoins_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let zk = ZooKeeper::start(&dir.path().join("zk"));
    let one = member(&dir.path().join("b1"), &zk.address, 1);
    let mut two = member(&dir.path().join("b2"), &zk.address, 2);
    describe_until(&one, TAKEOVER, "two brokers", |d| ids(d) == [1, 2] && d.controller_id != -1).await;

    // Paused past its session timeout, broker 2 is taken as gone...
    let pid = two.pid().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    describe_until(&one, TAKEOVER, "broker 2 gone", |d| ids(d) == [1] && d.controller_id == 1).await;
    // ...and once resumed, it learns its session expired, opens a new one and
    // registers again.
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    two.wait_for_line("rejoined the cluster");
    describe_until(&one, TAKEOVER, "broker 2 back", |d| ids(d) == [1, 2]).await;
    describe_until(&two, TAKEOVER, "broker 2 sees the controller", |d| ids(d) == [1, 2] && d.controller_id == 1).await;
}

#[tokio::test]
async fn a_single_broker_is_its_own_cluster() {
    let broker = TestBroker::start();
    let client = herald::client::Client::connect(broker.addr(), "cluster-test").await.unwrap();
    let described = client.describe_cluster().await.unwrap();
    assert_eq!(described.mode, "single");
    assert_eq!((described.broker_id, described.controller_id, described.controller_epoch), (0, 0, 0));
    assert_eq!(described.brokers.len(), 1);
    assert_eq!(described.brokers[0].port, broker.addr().port());
}
