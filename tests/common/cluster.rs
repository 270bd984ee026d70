//! A cluster on loopback for the integration tests: a real ZooKeeper
//! (scripts/zookeeper.sh, on a free port with its data in the test's
//! directory) and real `herald serve --zookeeper` brokers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use herald::protocol::DescribeClusterResponse;

use super::BinaryBroker;

/// The ZooKeeper session timeout the test brokers use: short, so that a
/// dead broker is noticed in seconds (ZooKeeper's tick is 500 ms; its
/// shortest session is two ticks).
pub const SESSION_TIMEOUT_MS: u64 = 2_000;

/// A ZooKeeper server for one test, stopped when dropped.
pub struct ZooKeeper {
    dir: PathBuf,
    pub address: String,
}

impl ZooKeeper {
    /// Starts one in `dir` (made here) and returns once it answers.
    ///
    /// # Panics
    ///
    /// The script fails (ZooKeeper cannot be installed or started).
    pub fn start(dir: &Path) -> ZooKeeper {
        let out = Command::new("bash").arg(script()).arg("start").arg(dir).output().expect("run scripts/zookeeper.sh");
        assert!(out.status.success(), "zookeeper did not start: {}", String::from_utf8_lossy(&out.stderr));
        let address = String::from_utf8(out.stdout).unwrap().trim().to_string();
        ZooKeeper { dir: dir.to_path_buf(), address }
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/zookeeper.sh")
}

/// Starts broker `id` of the cluster of `zookeeper`, with its files in
/// `root` (made here; starting again on the same root reopens its data).
pub fn member(root: &Path, zookeeper: &str, id: i32) -> BinaryBroker {
    std::fs::create_dir_all(root).unwrap();
    BinaryBroker::start_with(root, |command| {
        command
            .args(["--zookeeper", zookeeper, "--broker-id", &id.to_string()])
            .env("HERALD_CLUSTER__ZOOKEEPER_SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS.to_string());
    })
}

/// Asks `broker` to describe the cluster until `done` holds of what it
/// says, and returns that; `what` names the wait in the failure.
///
/// # Panics
///
/// `within` passes first.
pub async fn describe_until(
    broker: &BinaryBroker,
    within: Duration,
    what: &str,
    done: impl Fn(&DescribeClusterResponse) -> bool,
) -> DescribeClusterResponse {
    let deadline = Instant::now() + within;
    let client = broker.client().await;
    loop {
        let described = client.describe_cluster().await.expect("describe_cluster");
        if done(&described) {
            return described;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}; last seen {described:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
