//! A cluster whose listeners speak only TLS and require authentication,
//! under ACLs (docs/security.md, "Between brokers"): the brokers reach each
//! other as their listeners demand, with SCRAM-SHA-256 as the inter-broker
//! user or with their own certificates. Replication (acks=all needs every
//! follower's fetch), the failover read from a follower's copy and the
//! controlled shutdown's request to the controller all cross those
//! connections. A broker whose settings leave the brokers unable to
//! authenticate to each other refuses to start. Real binary, real ZooKeeper.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{member_configured, ZooKeeper, TAKEOVER};
use common::tls::Ca;
use common::{herald_bin, read_partition, text, value, BinaryBroker, PATIENCE};
use herald::client::{Client, Cluster, ConnectOptions, Credentials, TlsOptions};
use herald::protocol::PartitionMetadata;
use rcgen::DnType;

const TOPIC: &str = "secured";

/// The tests run one at a time: each runs a cluster of its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three brokers (and their ZooKeeper) with the same `[security]` and
/// `[cluster]` settings, and the options a client of theirs connects with.
/// Dropped in field order: brokers, ZooKeeper, files.
struct Secured {
    brokers: Vec<Option<BinaryBroker>>,
    zk: ZooKeeper,
    options: ConnectOptions,
    dir: tempfile::TempDir,
}

/// Makes `user` in the users file of the (stopped) broker whose data
/// directory is `data_dir`.
fn create_user(data_dir: &Path, user: &str, password: &str) {
    let mut create = Command::new(herald_bin())
        .args(["user", "create", user, "--password-stdin", "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    create.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = create.wait_with_output().unwrap();
    assert!(out.status.success(), "user create: {}", String::from_utf8_lossy(&out.stderr));
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

impl Secured {
    /// Starts ZooKeeper and three brokers with `settings` (TOML) as their
    /// configuration file; `users` are made in each broker's users file
    /// before it starts.
    async fn start(settings: &str, users: &[(&str, &str)], options: ConnectOptions) -> Secured {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("herald.toml");
        std::fs::write(&config, settings).unwrap();
        let zk = ZooKeeper::start(&dir.path().join("zk"));
        let mut secured = Secured { brokers: Vec::new(), zk, options, dir };
        for id in 1..=3 {
            let data = secured.root(id).join("data");
            std::fs::create_dir_all(&data).unwrap();
            for (user, password) in users {
                create_user(&data, user, password);
            }
            secured.brokers.push(Some(secured.member(id, &config)));
        }
        secured.wait_for_brokers(3).await;
        secured
    }

    fn root(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("b{id}"))
    }

    fn member(&self, id: i32, config: &Path) -> BinaryBroker {
        member_configured(&self.root(id), &self.zk.address, id, |command| {
            command.arg("--config").arg(config);
        })
    }

    fn broker(&self, id: i32) -> &BinaryBroker {
        self.brokers[(id - 1) as usize].as_ref().expect("a live broker")
    }

    async fn client(&self, id: i32) -> Client {
        Client::connect_with_options(self.broker(id).addr(), "secured-test", self.options.clone())
            .await
            .expect("connect over TLS, authenticated")
    }

    async fn cluster(&self) -> Cluster {
        let seeds: Vec<String> = self.brokers.iter().flatten().map(|b| b.addr().to_string()).collect();
        Cluster::connect(&seeds, "secured-test", self.options.clone()).await.expect("bootstrap")
    }

    /// Waits until broker 1 sees `n` brokers and a controller.
    async fn wait_for_brokers(&self, n: usize) {
        let client = self.client(1).await;
        let deadline = Instant::now() + TAKEOVER;
        loop {
            let described = client.describe_cluster().await.expect("describe_cluster");
            if described.brokers.len() == n && described.controller_id != -1 {
                return;
            }
            assert!(Instant::now() < deadline, "{n} brokers and a controller not seen: {described:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The partition's state as `cluster` sees it once `done` holds of it.
    async fn partition_until(
        &self,
        cluster: &Cluster,
        what: &str,
        done: impl Fn(&PartitionMetadata) -> bool,
    ) -> PartitionMetadata {
        let deadline = Instant::now() + TAKEOVER;
        loop {
            let any = cluster.any().await.expect("a broker");
            if let Ok(metadata) = any.metadata(Some(vec![TOPIC.to_string()])).await {
                let found = metadata.topics.iter().flat_map(|t| t.partitions.iter()).find(|p| p.partition == 0);
                if let Some(p) = found.filter(|p| done(p)) {
                    return p.clone();
                }
            }
            assert!(Instant::now() < deadline, "{what}: not within {TAKEOVER:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates the topic (3 replicas, at least 2 in sync), produces 200
    /// records with acks=all (acknowledged only once the followers fetched
    /// them), runs `before_the_kill`, SIGKILLs the leader, produces 50 more
    /// (the other follower fetches them from the new leader, on a new
    /// connection) and reads every record from the new leader; then stops
    /// a broker that is not the controller with SIGTERM, its controlled
    /// shutdown asked of the controller.
    async fn replicate_fail_over_and_shut_down(&mut self, before_the_kill: impl FnOnce(&mut Secured)) {
        let cluster = self.cluster().await;
        let config = [("min_insync_replicas".to_string(), herald::protocol::ConfigValue::Int(2))].into();
        cluster.home().create_replicated_topic(TOPIC, 1, Some(3), config).await.expect("create the topic");
        let first =
            self.partition_until(&cluster, "a leader and 3 in sync", |p| p.leader >= 0 && p.isr.len() == 3).await;
        let values: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
        for chunk in values.chunks(50) {
            let leader = cluster.leader(TOPIC, 0).await.expect("the leader");
            let records = chunk.iter().map(value).collect();
            leader.produce_with_acks(TOPIC, Some(0), records, -1).await.expect("acks=all produce");
        }
        before_the_kill(self);

        self.brokers[(first.leader - 1) as usize].take().expect("the leader").kill();
        let next = self.partition_until(&cluster, "a new leader", |p| p.leader >= 0 && p.leader != first.leader).await;
        let more: Vec<String> = (200..250).map(|i| format!("v{i}")).collect();
        let deadline = Instant::now() + TAKEOVER;
        loop {
            let records = more.iter().map(value).collect();
            let leader = self.client(next.leader).await;
            match leader.produce_with_acks(TOPIC, Some(0), records, -1).await {
                Ok(_) => break,
                // The ISR without the dead broker is not written yet.
                Err(err) if err.code() == Some(19) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(err) => panic!("acks=all produce to the new leader (broker {}): {err}", next.leader),
            }
        }
        let values: Vec<String> = values.into_iter().chain(more).collect();
        // The new leader's high watermark moves up to its log end once the
        // other follower has fetched from it.
        let client = self.client(next.leader).await;
        let deadline = Instant::now() + TAKEOVER;
        loop {
            let read: Vec<String> = read_partition(&client, TOPIC, 0, 0).await.iter().map(text).collect();
            if read.len() >= values.len() || Instant::now() > deadline {
                assert_eq!(read, values, "the new leader (broker {}) holds every acknowledged record", next.leader);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let controller = self.client(next.leader).await.describe_cluster().await.unwrap().controller_id;
        let stopping = (1..=3).find(|id| *id != controller && self.brokers[(*id - 1) as usize].is_some());
        let stopping = stopping.expect("a live broker that is not the controller");
        let broker = self.brokers[(stopping - 1) as usize].take().unwrap();
        let (status, log) = broker.terminate_with_log();
        assert!(status.success(), "broker {stopping} stopped: {status:?}\n{log}");
        assert!(
            log.contains("controlled shutdown done"),
            "broker {stopping}'s controlled shutdown reached the controller (broker {controller}):\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_replicate_over_tls_as_their_scram_user_under_acls() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = Ca::new("herald-test-ca");
    let (cert, key) = ca.broker_files();
    let settings = format!(
        r#"
[security]
tls_cert_file = "{cert}"
tls_key_file = "{key}"
authentication = "required"
authorization = true
super_users = ["User:admin", "User:broker"]

[cluster]
inter_broker_tls_ca_file = "{ca}"
inter_broker_user = "broker"
inter_broker_password = "broker-secret"
"#,
        cert = path(&cert),
        key = path(&key),
        ca = path(&ca.ca_file()),
    );
    let options =
        ConnectOptions::default().tls(ca.trusted()).credentials(Credentials::scram_sha_256("admin", "admin-secret"));
    let users = [("admin", "admin-secret"), ("broker", "broker-secret")];
    let mut secured = Secured::start(&settings, &users, options).await;
    for broker in secured.brokers.iter().flatten() {
        let log = broker.log_text();
        assert!(log.contains("cluster.inter_broker_password=<hidden>"), "the setting is named:\n{log}");
        assert!(!log.contains("broker-secret"), "a broker logged the inter-broker password:\n{log}");
    }
    secured.replicate_fail_over_and_shut_down(|_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_replicate_over_mutual_tls_as_their_certificates_subject_under_acls() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let ca = Ca::new("herald-test-ca");
    let (cert, key) = ca.broker_files();
    let (client_cert, client_key) = ca.issue("admin", &[(DnType::CommonName, "admin")], false);
    // The brokers' certificate names CN=localhost: that is their principal.
    let settings = format!(
        r#"
[security]
tls_cert_file = "{cert}"
tls_key_file = "{key}"
tls_client_ca_file = "{ca}"
tls_client_auth = "required"
authentication = "required"
authorization = true
super_users = ["User:CN=admin", "User:CN=localhost"]
"#,
        cert = path(&cert),
        key = path(&key),
        ca = path(&ca.ca_file()),
    );
    let tls = ca.trusted().client_cert_files(&client_cert, &client_key).unwrap();
    let mut secured = Secured::start(&settings, &[], ConnectOptions::default().tls(tls)).await;
    secured.replicate_fail_over_and_shut_down(|_| {}).await;
}

/// Puts `ca`'s broker certificate and key at `files`' `broker.pem` and
/// `broker-key.pem`, and the CAs of `trusted` in its `trusted.pem`.
fn install(files: &Path, ca: &Ca, trusted: &[&Ca]) {
    let (cert, key) = ca.broker_files();
    std::fs::copy(cert, files.join("broker.pem")).unwrap();
    std::fs::copy(key, files.join("broker-key.pem")).unwrap();
    let bundle: Vec<u8> = trusted.iter().flat_map(|ca| std::fs::read(ca.ca_file()).unwrap()).collect();
    std::fs::write(files.join("trusted.pem"), bundle).unwrap();
}

/// The brokers' certificates rotated to a new CA, and the old CA no longer
/// trusted, by new files and a SIGHUP: the connections a broker makes after
/// (a follower following a new leader, a controlled shutdown) show and
/// trust the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_rotates_the_certificates_the_brokers_show_and_trust_each_other_with() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (old, new) = (Ca::new("herald-old-ca"), Ca::new("herald-new-ca"));
    let files = tempfile::tempdir().unwrap();
    install(files.path(), &old, &[&old, &new]);
    let settings = format!(
        r#"
[security]
tls_cert_file = "{dir}/broker.pem"
tls_key_file = "{dir}/broker-key.pem"
tls_client_ca_file = "{dir}/trusted.pem"
tls_client_auth = "required"
authentication = "required"
authorization = true
super_users = ["User:CN=admin", "User:CN=localhost"]
"#,
        dir = path(files.path()),
    );
    let (client_cert, client_key) = new.issue("admin", &[(DnType::CommonName, "admin")], false);
    let tls = TlsOptions::from_ca_file(files.path().join("trusted.pem"))
        .unwrap()
        .client_cert_files(&client_cert, &client_key)
        .unwrap();
    let mut secured = Secured::start(&settings, &[], ConnectOptions::default().tls(tls)).await;
    secured
        .replicate_fail_over_and_shut_down(|secured| {
            install(files.path(), &new, &[&new]);
            for broker in secured.brokers.iter_mut().flatten() {
                let pid = broker.pid().to_string();
                let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
                assert!(status.success(), "kill -HUP {pid}");
                broker.wait_for_line("TLS files reloaded for connections to the other brokers");
            }
        })
        .await;
}

/// `herald serve` in a cluster with `settings`: its exit status and log.
fn serve_refused(settings: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, settings).unwrap();
    let out = Command::new(herald_bin())
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--broker-id", "1"])
        // Nothing listens there: the check comes before ZooKeeper is asked.
        .args(["--zookeeper", "127.0.0.1:1"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), log)
}

#[test]
fn a_cluster_broker_that_could_not_reach_or_authenticate_to_the_others_refuses_to_start() {
    let ca = Ca::new("herald-test-ca");
    let (cert, key) = ca.broker_files();
    let (cert, key) = (path(&cert), path(&key));
    let cases = [
        (
            "authentication required, no inter-broker user, no client certificates".to_string(),
            "[security]\nauthentication = \"required\"\n".to_string(),
            "cluster.inter_broker_user",
        ),
        (
            "TLS with no CA to verify the other brokers with".to_string(),
            format!("[security]\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\"\n"),
            "cluster.inter_broker_tls_ca_file",
        ),
        (
            "a user without a password".to_string(),
            "[cluster]\ninter_broker_user = \"broker\"\n".to_string(),
            "without cluster.inter_broker_password",
        ),
        (
            "a CA file that is not there".to_string(),
            format!(
                "[security]\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\"\n\n[cluster]\n\
                 inter_broker_tls_ca_file = \"/nonexistent/ca.pem\"\n"
            ),
            "/nonexistent/ca.pem",
        ),
    ];
    for (case, settings, named) in cases {
        let deadline = Instant::now() + PATIENCE;
        let (code, log) = serve_refused(&settings);
        assert!(Instant::now() < deadline, "{case}: took too long to refuse");
        assert_ne!(code, Some(0), "{case}: started\n{log}");
        assert!(log.contains(named), "{case}: the error names `{named}`:\n{log}");
    }
}
