//! Brokers register in a real ZooKeeper (scripts/zookeeper.sh): an
//! ephemeral `/brokers/ids/<id>` with the advertised address; a second broker
//! with the same id refuses to start, naming the holder; a stopped broker's
//! registration goes with its session.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{member, ZooKeeper};
use common::*;
use herald::cluster::registry::{live_brokers, BrokerRegistration};

async fn brokers(zookeeper: &str) -> Vec<(i32, BrokerRegistration)> {
    let client = zookeeper_client::Client::connect(zookeeper).await.expect("connect to zookeeper");
    live_brokers(&client).await.expect("list the brokers")
}

#[tokio::test]
async fn brokers_register_once_per_id_and_leave_with_their_session() {
    let dir = tempfile::tempdir().unwrap();
    let zk = ZooKeeper::start(&dir.path().join("zk"));
    let one = member(&dir.path().join("one"), &zk.address, 1);
    let two = member(&dir.path().join("two"), &zk.address, 2);

    let live = brokers(&zk.address).await;
    let ids: Vec<i32> = live.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!((live[0].1.host.as_str(), live[0].1.port), ("127.0.0.1", one.addr().port()));
    assert_eq!(live[1].1.port, two.addr().port());

    // A second broker with id 1 refuses to start and says who has it.
    let root = dir.path().join("again");
    let out = Command::new(herald_bin())
        .args(["serve", "--port", "0", "--http-port", "0", "--data-dir"])
        .arg(root.join("data"))
        .args(["--zookeeper", &zk.address, "--broker-id", "1"])
        .env("HERALD_CLUSTER__ZOOKEEPER_SESSION_TIMEOUT_MS", "2000")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("broker id 1 is already registered") && said.contains(&one.addr().port().to_string()),
        "{said}"
    );

    // A broker that stops closes its session: its registration is gone at once.
    assert!(one.terminate().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids: Vec<i32> = brokers(&zk.address).await.iter().map(|(id, _)| *id).collect();
        if ids == [2] {
            break;
        }
        assert!(Instant::now() < deadline, "broker 1 is still registered: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(two);
}

#[test]
fn a_broker_whose_zookeeper_cannot_be_reached_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(herald_bin())
        .args(["serve", "--port", "0", "--http-port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--zookeeper", "127.0.0.1:1", "--broker-id", "1"])
        .env("HERALD_CLUSTER__ZOOKEEPER_SESSION_TIMEOUT_MS", "1000")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot reach ZooKeeper at 127.0.0.1:1"), "{said}");
}
