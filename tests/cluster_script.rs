//! scripts/cluster.sh: one command starts ZooKeeper and three brokers that
//! form a cluster, a topic of three replicas takes records and gives them
//! back, and `stop` ends every process it started.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{Leaders, TAKEOVER};
use common::*;
use herald::client::Client;

fn script(command: &str, dir: &Path) -> String {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh"))
        .arg(command)
        .arg(dir)
        .env("HERALD_BIN", herald_bin())
        .env("HERALD_CLUSTER_FREE_PORTS", "1")
        .output()
        .expect("run scripts/cluster.sh");
    assert!(out.status.success(), "cluster.sh {command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether process `pid` runs (a zombie waiting for its reaper does not).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// Stops the cluster if the test ends before it does.
struct Stopper<'a>(&'a Path);

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh"))
                .args(["stop".as_ref(), self.0.as_os_str()])
                .status();
        }
    }
}

#[tokio::test]
async fn one_command_starts_a_three_broker_cluster_and_another_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = script("start", dir.path());
    let _stopper = Stopper(dir.path());
    let addrs: Vec<std::net::SocketAddr> = bootstrap.split(',').map(|a| a.parse().unwrap()).collect();
    assert_eq!(addrs.len(), 3, "{bootstrap}");
    let pids: Vec<String> = ["b1", "b2", "b3", "zk"]
        .iter()
        .map(|d| std::fs::read_to_string(dir.path().join(d).join("pid")).unwrap().trim().to_string())
        .collect();

    let client = Client::connect(addrs[0], "cluster-script").await.unwrap();
    let described = client.describe_cluster().await.unwrap();
    assert_eq!(described.brokers.len(), 3, "{described:?}");
    assert_ne!(described.controller_id, -1);
    client.create_replicated_topic("t", 1, Some(3), BTreeMap::new()).await.unwrap();

    let mut leaders = Leaders::new(std::sync::Arc::new(std::sync::Mutex::new(addrs.clone())));
    for i in 0..10 {
        let produced = leaders.produce("t", 0, &format!("v{i}"), -1, Instant::now() + TAKEOVER).await;
        assert_eq!(produced.offset, Some(i), "v{i}: {produced:?}");
    }
    let leader = leaders.leader("t", 0).await.expect("a leader");
    let read = read_partition(&Client::connect(leader, "cluster-script").await.unwrap(), "t", 0, 0).await;
    assert_eq!(read.iter().map(text).collect::<Vec<_>>(), (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>());
    drop(client);

    script("stop", dir.path());
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(p)) {
        assert!(Instant::now() < deadline, "still running after stop: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
