//! A cluster on loopback for the integration tests: a real ZooKeeper
//! (scripts/zookeeper.sh, on a free port with its data in the test's
//! directory) and real `herald serve --zookeeper` brokers; [`Cluster`]
//! holds three of them for the fault tests, [`Leaders`] sends each produce
//! to its partition's leader (the clients do not follow leaders yet), and
//! [`history`] checks what the producers were told against the logs.

#[allow(dead_code)] // not every test file uses it
pub mod group;
pub mod history;
mod leaders;
#[allow(dead_code)] // not every test file uses it
pub mod paced;

#[allow(unused_imports)] // not every test file uses every one
pub use leaders::{Leaders, Produced, Seeds};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::protocol::{DescribeClusterResponse, PartitionMetadata};

use super::{read_partition, text, BinaryBroker};

/// How long a failover may take in the waits of the tests: the dead
/// broker's session timeout, then the election, with room for a loaded
/// machine. (The fault tests assert a tighter bound on what they measure.)
pub const TAKEOVER: Duration = Duration::from_millis(SESSION_TIMEOUT_MS + 8_000);

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
        let address = run_script("start", dir);
        ZooKeeper { dir: dir.to_path_buf(), address }
    }

    /// Stops the server (its data stays).
    pub fn stop(&self) {
        run_script("stop", &self.dir);
    }

    /// Starts the stopped server again, on its data and its port.
    ///
    /// # Panics
    ///
    /// It comes back at another address, or does not start.
    pub fn start_again(&self) {
        let address = run_script("start", &self.dir);
        assert_eq!(address, self.address, "zookeeper came back elsewhere");
    }
}

/// Runs `scripts/zookeeper.sh COMMAND DIR` and returns what it printed.
fn run_script(command: &str, dir: &Path) -> String {
    let out = Command::new("bash").arg(script()).arg(command).arg(dir).output().expect("run scripts/zookeeper.sh");
    assert!(out.status.success(), "zookeeper.sh {command} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
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
    member_with(root, zookeeper, id, &[])
}

/// [`member`] with more environment (settings such as
/// `HERALD_CLUSTER__CONTROLLED_SHUTDOWN_TIMEOUT_MS`).
pub fn member_with(root: &Path, zookeeper: &str, id: i32, env: &[(String, String)]) -> BinaryBroker {
    member_configured(root, zookeeper, id, |command| {
        command.envs(env.iter().map(|(k, v)| (k, v)));
    })
}

/// [`member`], with `configure` adding to the command (a `--config` file).
pub fn member_configured(root: &Path, zookeeper: &str, id: i32, configure: impl FnOnce(&mut Command)) -> BinaryBroker {
    std::fs::create_dir_all(root).unwrap();
    BinaryBroker::start_with(root, |command| {
        command
            .args(["--zookeeper", zookeeper, "--broker-id", &id.to_string()])
            .env("HERALD_CLUSTER__ZOOKEEPER_SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS.to_string());
        configure(command);
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

/// Three (or `n`) brokers and their ZooKeeper, each broker's files under
/// the test's directory so that a killed one restarts on its data. Dropped
/// in field order: the brokers, then ZooKeeper, then the files.
pub struct Cluster {
    brokers: Vec<Option<BinaryBroker>>,
    pub zk: ZooKeeper,
    /// Where the live brokers listen, for [`Leaders`] to start from.
    pub seeds: Seeds,
    /// Environment every broker starts (and restarts) with.
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts ZooKeeper and brokers 1..=n, and returns once every broker
    /// sees all n and a controller.
    pub async fn start(n: i32) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    /// [`Cluster::start`], every broker with `env` added to its
    /// environment, at its start and at every restart.
    pub async fn start_with(n: i32, env: &[(&str, &str)]) -> Cluster {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let dir = tempfile::tempdir().unwrap();
        let zk = ZooKeeper::start(&dir.path().join("zk"));
        let brokers: Vec<Option<BinaryBroker>> =
            (1..=n).map(|id| Some(member_with(&dir.path().join(format!("b{id}")), &zk.address, id, &env))).collect();
        let seeds = Arc::new(Mutex::new(brokers.iter().flatten().map(BinaryBroker::addr).collect()));
        let cluster = Cluster { brokers, zk, seeds, env, dir };
        cluster.all_in(n as usize).await;
        cluster
    }

    /// Waits until every live broker sees `n` brokers and a controller.
    pub async fn all_in(&self, n: usize) -> DescribeClusterResponse {
        let mut last = None;
        for broker in self.live() {
            let what = format!("{n} brokers and a controller");
            last =
                Some(describe_until(broker, TAKEOVER, &what, |d| d.brokers.len() == n && d.controller_id != -1).await);
        }
        last.expect("a live broker")
    }

    pub fn root(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("b{id}"))
    }

    /// # Panics
    ///
    /// Broker `id` is down.
    pub fn broker(&self, id: i32) -> &BinaryBroker {
        self.brokers[(id - 1) as usize].as_ref().expect("a live broker")
    }

    pub fn live(&self) -> impl Iterator<Item = &BinaryBroker> {
        self.brokers.iter().flatten()
    }

    /// The ids of the live brokers.
    pub fn live_ids(&self) -> Vec<i32> {
        (1..=self.brokers.len() as i32).filter(|&id| self.brokers[(id - 1) as usize].is_some()).collect()
    }

    /// SIGKILL of broker `id`.
    pub fn kill(&mut self, id: i32) {
        let broker = self.brokers[(id - 1) as usize].take().expect("a live broker");
        self.seeds.lock().unwrap().retain(|a| *a != broker.addr());
        broker.kill();
    }

    /// SIGTERM of broker `id` (a clean stop), then waits for it to exit;
    /// its exit status and everything it logged.
    pub fn terminate(&mut self, id: i32) -> (std::process::ExitStatus, String) {
        let broker = self.brokers[(id - 1) as usize].take().expect("a live broker");
        self.seeds.lock().unwrap().retain(|a| *a != broker.addr());
        broker.terminate_with_log()
    }

    /// Starts broker `id` again on its data (on a new port).
    pub fn restart(&mut self, id: i32) {
        let broker = member_with(&self.root(id), &self.zk.address, id, &self.env);
        self.seeds.lock().unwrap().push(broker.addr());
        self.brokers[(id - 1) as usize] = Some(broker);
    }

    /// Sends `signal` (`STOP`, `CONT`) to broker `id`.
    pub fn signal(&self, id: i32, signal: &str) {
        let pid = self.broker(id).pid().to_string();
        assert!(Command::new("kill").arg(format!("-{signal}")).arg(&pid).status().unwrap().success());
    }

    /// Partition `partition` of `topic` as `from` (the live brokers but
    /// those, all agreeing) describes it, once it has a leader and `done`
    /// holds of it.
    pub async fn placement_among(
        &self,
        from: &[i32],
        topic: &str,
        partition: u32,
        what: &str,
        done: impl Fn(&PartitionMetadata) -> bool,
    ) -> PartitionMetadata {
        let deadline = Instant::now() + TAKEOVER;
        loop {
            let mut seen = Vec::new();
            for &id in from {
                let m = self.broker(id).client().await.metadata(Some(vec![topic.into()])).await.unwrap();
                seen.push(m.topics[0].partitions.get(partition as usize).cloned());
            }
            if let Some(Some(first)) = seen.first() {
                if seen.iter().all(|s| s.as_ref() == Some(first)) && first.leader >= 0 && done(first) {
                    return first.clone();
                }
            }
            assert!(Instant::now() < deadline, "{what}: not within {TAKEOVER:?}; seen {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates `topic` with `partitions` partitions of `replicas` replicas
    /// and waits until each has its full ISR.
    pub async fn create(&self, topic: &str, partitions: u32, replicas: i32) {
        let any = self.live().next().expect("a live broker").client().await;
        let config = std::collections::BTreeMap::new();
        any.create_replicated_topic(topic, i64::from(partitions), Some(replicas), config).await.unwrap();
        self.full_isr(topic, partitions, replicas as usize).await;
    }

    /// Waits until each partition of `topic` has `replicas` in sync.
    pub async fn full_isr(&self, topic: &str, partitions: u32, replicas: usize) {
        for p in 0..partitions {
            self.placement(topic, p, "the full ISR", |m| m.isr.len() == replicas).await;
        }
    }

    /// The live brokers' addresses, a client's bootstrap list.
    pub fn bootstrap(&self) -> Vec<String> {
        self.live().map(|b| b.addr().to_string()).collect()
    }

    /// [`Cluster::placement_among`] every live broker.
    pub async fn placement(
        &self,
        topic: &str,
        partition: u32,
        what: &str,
        done: impl Fn(&PartitionMetadata) -> bool,
    ) -> PartitionMetadata {
        self.placement_among(&self.live_ids(), topic, partition, what, done).await
    }

    /// Waits until every partition of `topic` has every live broker in its
    /// ISR and the same log files on each of them, and returns each
    /// partition's records (offset, value) read from its leader.
    pub async fn settled(&self, topic: &str, partitions: u32) -> std::collections::BTreeMap<u32, Vec<(i64, String)>> {
        let live = self.live_ids();
        let mut reads = std::collections::BTreeMap::new();
        for partition in 0..partitions {
            let placed = self
                .placement(topic, partition, "every live replica in sync", |p| live.iter().all(|id| p.isr.contains(id)))
                .await;
            let deadline = Instant::now() + TAKEOVER;
            loop {
                let logs: Vec<Vec<u8>> = live.iter().map(|&id| log_bytes(&self.root(id), topic, partition)).collect();
                if logs.windows(2).all(|w| w[0] == w[1]) {
                    break;
                }
                let sizes: Vec<usize> = logs.iter().map(Vec::len).collect();
                let first_difference = logs.windows(2).find_map(|w| w[0].iter().zip(&w[1]).position(|(a, b)| a != b));
                let window = |log: &Vec<u8>| {
                    let at = first_difference.unwrap_or(0).saturating_sub(16);
                    format!("{:02x?}", &log[at.min(log.len())..(at + 48).min(log.len())])
                };
                if Instant::now() >= deadline {
                    self.show_partition(topic, partition);
                    panic!(
                        "{topic}/{partition}: the replicas' logs of brokers {live:?} differ (sizes {sizes:?}, first at \
                         byte {first_difference:?}): {:?}",
                        logs.iter().map(window).collect::<Vec<_>>()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let leader = self.broker(placed.leader).client().await;
            let records = read_partition(&leader, topic, partition, 0).await;
            reads.insert(partition, records.iter().map(|r| (r.offset, text(r))).collect());
        }
        reads
    }
}

impl Cluster {
    /// Prints what each live broker logged about `topic`/`partition`, and
    /// its cluster-wide warnings, for a failing test.
    pub fn show_partition(&self, topic: &str, partition: u32) {
        let needle = format!("topic={topic} partition={partition} ");
        for id in self.live_ids() {
            let log = self.broker(id).log_text();
            let lines: Vec<&str> =
                log.lines().filter(|l| l.contains(&needle) || l.contains("herald::cluster::node:")).collect();
            eprintln!("broker {id} on {topic}/{partition}:\n{}", lines.join("\n"));
        }
    }
}

/// A partition's stored batches on a broker's disk: its `.log` files in order.
pub fn log_bytes(root: &Path, topic: &str, partition: u32) -> Vec<u8> {
    let dir = root.join("data").join("topics").join(topic).join(partition.to_string());
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    logs.iter().flat_map(|p| std::fs::read(p).unwrap_or_default()).collect()
}

/// Where broker `id` listens, as `described` lists it.
pub fn address_of(described: &DescribeClusterResponse, id: i32) -> Option<SocketAddr> {
    let b = described.brokers.iter().find(|b| b.id == id)?;
    format!("{}:{}", b.host, b.port).parse().ok()
}
