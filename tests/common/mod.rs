//! Shared harness of the integration tests: a real broker in-process
//! ([`TestBroker`]), the real `herald` binary as a child process
//! ([`BinaryBroker`]), and small helpers for producing and reading records.
//!
//! Every broker listens on `127.0.0.1:0` and keeps its data in a fresh
//! temporary directory unless a test passes one in to reopen it.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald::client::{Client, Fetched};
use herald::config::Settings;
use herald::protocol::{FetchRequest, WireRecord};
use herald::server::{Builder, Server};
use herald_actors::batch::Record;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// How long a test waits for something that should happen at once before it
/// fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Routes the broker's `tracing` output through the test harness (shown for
/// failing tests only). Level from `RUST_LOG`, default `warn`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// The settings every in-process test broker starts from: the defaults, with
/// data in `data_dir`, two partition arbiters and the HTTP listener on a free
/// port.
pub fn test_settings(data_dir: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.storage.data_dir = data_dir.to_path_buf();
    settings.storage.arbiters = 2;
    settings.http.port = 0;
    settings
}

/// A broker running in-process, in its own thread with its own actix `System`,
/// exactly as `herald serve` runs it (`herald::server::run`).
pub struct TestBroker {
    addr: SocketAddr,
    /// Where the HTTP listener listens, if it is enabled.
    http_addr: Option<SocketAddr>,
    data_dir: PathBuf,
    /// Completing it starts the broker's clean shutdown.
    shutdown: Option<oneshot::Sender<()>>,
    /// The broker's thread; returns what `server::run` returned.
    thread: Option<JoinHandle<std::io::Result<()>>>,
    /// The data directory, when this broker owns it (deleted on drop).
    _owned_dir: Option<TempDir>,
}

impl TestBroker {
    /// Starts a broker on a fresh temporary data directory.
    pub fn start() -> TestBroker {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let mut broker = TestBroker::start_in(dir.path());
        broker._owned_dir = Some(dir);
        broker
    }

    /// Starts a broker on `dir`, which the caller keeps (restart tests reopen it).
    pub fn start_in(dir: &Path) -> TestBroker {
        TestBroker::start_with(test_settings(dir))
    }

    /// Starts a broker on `dir` listening on `port` of 127.0.0.1 (a restart
    /// that clients must find at the same address).
    pub fn start_on(dir: &Path, port: u16) -> TestBroker {
        init_logging();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the same port again");
        TestBroker::start_listening(listener, test_settings(dir))
    }

    /// Starts a broker with explicit settings (`storage.data_dir` must be set).
    pub fn start_with(settings: Settings) -> TestBroker {
        init_logging();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        TestBroker::start_listening(listener, settings)
    }

    /// Starts a broker with explicit settings and what `configure` adds to
    /// its builder (custom operations and actors); the builder is made on
    /// the broker's thread, where its actors run.
    pub fn start_built(settings: Settings, configure: impl FnOnce(Builder) -> Builder + Send + 'static) -> TestBroker {
        init_logging();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        TestBroker::start_configured(listener, settings, configure)
    }

    fn start_listening(listener: TcpListener, settings: Settings) -> TestBroker {
        TestBroker::start_configured(listener, settings, |builder| builder)
    }

    fn start_configured(
        listener: TcpListener,
        settings: Settings,
        configure: impl FnOnce(Builder) -> Builder + Send + 'static,
    ) -> TestBroker {
        let addr = listener.local_addr().expect("local address");
        let http = herald::http::bind(&settings.http).expect("bind the HTTP listener");
        let http_addr = http.as_ref().map(|l| l.local_addr().expect("HTTP local address"));
        let data_dir = settings.storage.data_dir.clone();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("test-broker-{}", addr.port()))
            .spawn(move || {
                let system = actix::System::new();
                let served = system.block_on(async move {
                    // A dropped sender (a test that panicked) also shuts down.
                    let shutdown = async move {
                        let _ = shutdown_rx.await;
                    };
                    let builder = Server::builder(settings).listener(listener).http_listener(http).shutdown(shutdown);
                    let served = configure(builder).run().await;
                    // `run` has flushed every partition; stopping the system
                    // stops every arbiter it registered (the partitions' too).
                    actix::System::current().stop();
                    served
                });
                // Drives the system controller until it has processed the stop
                // (and told every arbiter to stop), then returns.
                system.run()?;
                served
            })
            .expect("spawn the broker thread");
        TestBroker { addr, http_addr, data_dir, shutdown: Some(shutdown), thread: Some(thread), _owned_dir: None }
    }

    /// Where the broker listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the broker's HTTP listener listens.
    ///
    /// # Panics
    ///
    /// The broker was started with `http.enabled = false`.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr.expect("the HTTP listener is enabled")
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A new client connection (handshake done).
    pub async fn client(&self) -> Client {
        Client::connect(self.addr, "integration-test").await.expect("connect to the test broker")
    }

    /// Shuts the broker down cleanly and waits for its thread to end.
    ///
    /// # Panics
    ///
    /// The broker's `run` failed or its thread panicked.
    pub async fn stop(mut self) {
        let thread = self.begin_stop().expect("the broker is running");
        // Joining blocks; keep it off the test's runtime.
        let joined = tokio::task::spawn_blocking(move || thread.join()).await.expect("join task");
        joined.expect("the broker thread panicked").expect("server::run failed");
    }

    fn begin_stop(&mut self) -> Option<JoinHandle<std::io::Result<()>>> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.thread.take()
    }
}

impl Drop for TestBroker {
    /// A broker a test did not stop (it failed early) is still shut down before
    /// its data directory is removed.
    fn drop(&mut self) {
        if let Some(thread) = self.begin_stop() {
            let _ = thread.join();
        }
    }
}

/// A topic config map from `(key, value)` pairs.
pub fn config(
    pairs: &[(&str, herald::protocol::ConfigValue)],
) -> std::collections::BTreeMap<String, herald::protocol::ConfigValue> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// A record with a value and no key.
pub fn value(v: impl AsRef<[u8]>) -> WireRecord {
    WireRecord { value: Some(Bytes::copy_from_slice(v.as_ref())), ..WireRecord::default() }
}

/// A record with a key and a value.
pub fn keyed(k: impl AsRef<[u8]>, v: impl AsRef<[u8]>) -> WireRecord {
    WireRecord {
        key: Some(Bytes::copy_from_slice(k.as_ref())),
        value: Some(Bytes::copy_from_slice(v.as_ref())),
        ..WireRecord::default()
    }
}

/// A fetch request that returns at once.
pub fn fetch_at(topic: &str, partition: u32, offset: i64) -> FetchRequest {
    FetchRequest::at_once(topic, partition, offset)
}

/// Reads a partition from `from` up to its high watermark, fetch after fetch.
pub async fn read_partition(client: &Client, topic: &str, partition: u32, from: i64) -> Vec<Record> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let Fetched { records, high_watermark, .. } =
            client.fetch(&fetch_at(topic, partition, offset)).await.expect("fetch");
        if let Some(last) = records.last() {
            offset = last.offset + 1;
        }
        out.extend(records);
        if offset >= high_watermark {
            return out;
        }
    }
}

/// The value of a record as text, for readable assertions.
pub fn text(record: &Record) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

/// The real `herald` binary, started with `herald serve` on `127.0.0.1:0`.
pub struct BinaryBroker {
    child: Child,
    addr: SocketAddr,
    http_addr: SocketAddr,
    /// Every stderr line so far, ANSI escapes removed.
    log: Arc<Mutex<Vec<String>>>,
    /// Each stderr line as it arrives.
    lines: mpsc::Receiver<String>,
}

/// The path of the `herald` binary cargo built for these tests.
pub fn herald_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herald")
}

/// Runs the `herald` command with `args`; its exit status and what it
/// printed (standard output, then standard error).
pub fn herald_cli(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(herald_bin()).args(args).output().expect("run the herald binary");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

impl BinaryBroker {
    /// Runs `herald serve --host 127.0.0.1 --port 0 --data-dir ROOT/data
    /// --port-file ROOT/port --http-port 0 --http-port-file ROOT/http-port`
    /// with `RUST_LOG=info` and returns once it serves.
    /// Starting again on the same `root` reopens the same data.
    ///
    /// # Panics
    ///
    /// The process exits, or does not serve within [`PATIENCE`].
    pub fn start(root: &Path) -> BinaryBroker {
        BinaryBroker::start_with(root, |_| {})
    }

    /// [`BinaryBroker::start`], with `configure` adding to the command first
    /// (environment, a `pre_exec` hook).
    pub fn start_with(root: &Path, configure: impl FnOnce(&mut Command)) -> BinaryBroker {
        let data_dir = root.join("data");
        let port_file = root.join("port");
        let http_port_file = root.join("http-port");
        let _ = std::fs::remove_file(&port_file);
        let _ = std::fs::remove_file(&http_port_file);
        let mut command = Command::new(herald_bin());
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(&data_dir)
            .arg("--port-file")
            .arg(&port_file)
            .args(["--http-port", "0", "--http-port-file"])
            .arg(&http_port_file)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("spawn herald serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let kept = log.clone();
        // Drains stderr for the child's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let unbound: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut broker = BinaryBroker { child, addr: unbound, http_addr: unbound, log, lines };
        // "herald is serving" is logged after the listener is bound and the
        // port file written.
        broker.wait_for_line("herald is serving");
        let port = std::fs::read_to_string(&port_file).expect("read the port file");
        let _ = std::fs::remove_file(&port_file);
        let port: u16 = port.trim().parse().expect("the port file holds a port");
        broker.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let http_port = std::fs::read_to_string(&http_port_file).expect("read the HTTP port file");
        let _ = std::fs::remove_file(&http_port_file);
        let http_port: u16 = http_port.trim().parse().expect("the HTTP port file holds a port");
        broker.http_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
        broker
    }

    /// Where the broker's HTTP listener listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Waits for a stderr line containing `needle` and returns it.
    ///
    /// # Panics
    ///
    /// The process ends or [`PATIENCE`] passes first.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(err) => panic!(
                    "no log line containing {needle:?} ({err}); exit status {:?}; log:\n{}",
                    self.child.try_wait(),
                    self.log_text()
                ),
            }
        }
    }

    /// Everything the broker logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr, "integration-test").await.expect("connect to the herald binary")
    }

    /// SIGKILL: the process ends at once, with no shutdown of any kind.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the broker");
        self.child.wait().expect("reap the broker");
    }

    /// [`BinaryBroker::terminate`], returning everything it logged too.
    pub fn terminate_with_log(self) -> (ExitStatus, String) {
        let log = self.log.clone();
        let status = self.terminate();
        let text = log.lock().unwrap().join("\n");
        (status, text)
    }

    /// SIGTERM, then waits for the process to exit and returns its status.
    pub fn terminate(mut self) -> ExitStatus {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the broker") {
                return status;
            }
            // The exit is an event the standard library cannot wait on with a
            // deadline; a stderr EOF is the closest one, so wait for it first.
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the broker did not exit after SIGTERM; log:\n{}", self.log_text());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.child.wait().expect("wait for the broker"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl Drop for BinaryBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small tmpfs mounted on a fresh directory and unmounted when dropped: a
/// disk that really fills up. Drop every broker using it first.
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes`, or prints why it cannot (not root, no
    /// permission in a container) and returns `None`: the caller skips.
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!("skipped: cannot mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim());
                None
            }
            Err(err) => {
                eprintln!("skipped: cannot run mount: {err}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file at `path` until the disk is full, and returns how many
    /// bytes it holds.
    pub fn fill(&self, path: &Path) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(path).expect("create the filler");
        let chunk = vec![0x5a_u8; 4096];
        let mut written = 0;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(err) if err.raw_os_error() == Some(28) => break,
                Err(err) => panic!("filling the disk: {err}"),
            }
        }
        written
    }

    /// Free bytes, by `statvfs`, as `df` reports them.
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df").args(["-B1", "--output=avail"]).arg(self.path()).output().expect("run df");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df prints the free bytes")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Removes ANSI escape sequences (colours) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A group member driven by hand with raw protocol requests: it applies every
/// answer at once and reports it in its next heartbeat.
pub struct HandMember {
    pub client: Client,
    pub group_id: String,
    pub member_id: String,
    pub generation_id: i64,
    pub owned: Vec<herald::protocol::TopicPartitions>,
}

/// A join request with the broker's defaults for everything optional.
pub fn join_request(group_id: &str, topics: &[&str]) -> herald::protocol::JoinGroupRequest {
    herald::protocol::JoinGroupRequest {
        group_id: group_id.into(),
        member_id: None,
        topics: topics.iter().map(|t| t.to_string()).collect(),
        group_instance_id: None,
        session_timeout_ms: None,
        rebalance_timeout_ms: None,
        assignor: None,
    }
}

impl HandMember {
    /// Joins over `client`; the member owns what the join answered.
    pub async fn join(
        client: Client,
        request: herald::protocol::JoinGroupRequest,
    ) -> Result<HandMember, herald::client::ClientError> {
        use herald::protocol::{group_op, AssignmentResponse};
        let joined: AssignmentResponse = client.request(group_op::JOIN_GROUP, &request).await?;
        let mut member = HandMember {
            client,
            group_id: request.group_id,
            member_id: joined.member_id.clone(),
            generation_id: 0,
            owned: Vec::new(),
        };
        member.apply(&joined);
        Ok(member)
    }

    /// Takes an answer's generation and assignment as its own.
    pub fn apply(&mut self, answer: &herald::protocol::AssignmentResponse) {
        self.generation_id = answer.generation_id;
        self.owned = answer.assignment.clone();
    }

    /// One heartbeat, held by the broker up to `max_wait_ms`; applies the answer.
    pub async fn heartbeat(
        &mut self,
        max_wait_ms: u64,
    ) -> Result<herald::protocol::AssignmentResponse, herald::client::ClientError> {
        use herald::protocol::{group_op, AssignmentResponse, HeartbeatRequest};
        let request = HeartbeatRequest {
            group_id: self.group_id.clone(),
            member_id: self.member_id.clone(),
            generation_id: self.generation_id,
            owned: self.owned.clone(),
            topics: None,
            max_wait_ms,
        };
        let answer: AssignmentResponse = self.client.request(group_op::HEARTBEAT, &request).await?;
        self.apply(&answer);
        Ok(answer)
    }

    /// Every (topic, partition) the member owns.
    pub fn partitions(&self) -> std::collections::BTreeSet<(String, u32)> {
        herald::protocol::TopicPartitions::pairs(&self.owned).map(|(t, p)| (t.to_string(), p)).collect()
    }

    /// The partitions of `topic` the member owns.
    pub fn partitions_of(&self, topic: &str) -> std::collections::BTreeSet<u32> {
        herald::protocol::TopicPartitions::pairs(&self.owned).filter(|(t, _)| *t == topic).map(|(_, p)| p).collect()
    }
}

/// CPU time (user + system) process `pid` has used, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second, the unit of [`cpu_ticks`].
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100)
}

/// The position of the `n`th batch of a segment file.
pub fn batch_position(segment: &Path, n: usize) -> u64 {
    use herald_actors::batch::{BatchHeader, MAX_HEADER_BYTES};
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(segment).unwrap();
    let mut position = 0;
    for _ in 0..n {
        let mut header = [0u8; MAX_HEADER_BYTES];
        file.read_exact_at(&mut header, position).unwrap();
        position += BatchHeader::parse(&header).unwrap().total_bytes() as u64;
    }
    position
}

/// A partition's stored bytes from offset 0, as a fetch returns them.
pub async fn stored(broker: &TestBroker, topic: &str, partition: u32) -> Bytes {
    let client = broker.client().await;
    client.fetch_raw(&fetch_at(topic, partition, 0)).await.expect("fetch").records
}

/// The `q`-quantile (0..=1) of some durations in ms.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
