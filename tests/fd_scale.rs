//! Descriptors at scale: the broker binary under an open-file limit of 1,024
//! (soft and hard) serves 10,000 partitions, each written and read, takes
//! 2,000 connection attempts at once (the excess closed by
//! `server.max_connections` or held back in the listen backlog, without
//! spinning), and loses nothing acknowledged across a kill -9 (no index
//! of an active segment was ever written) nor a clean restart. The broker's
//! descriptors (`/proc/PID/fd`) are sampled throughout and must stay under
//! the limit. Prints one line of figures.
//!
//! The data directory is on tmpfs where there is one: creating 10,000
//! partitions costs 20,000 directory fsyncs, which on a disk are what the
//! time would go to, and they are not what is tested here.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{clock_ticks_per_second, cpu_ticks, fetch_at, text, value, BinaryBroker, PATIENCE};
use futures::future::join_all;
use herald::client::Client;
use tokio::io::AsyncReadExt;

const TOPICS: usize = 10;
const PARTITIONS: u32 = 1_000;
const FD_LIMIT: u64 = 1_024;
const MAX_CONNECTIONS: usize = 500;
const MAX_OPEN_SEGMENT_FILES: usize = 256;
const CONNECTION_ATTEMPTS: usize = 2_000;
/// Clients that produce and read, each taking a share of the partitions.
const WORKERS: usize = 4;
/// Requests each worker keeps in flight.
const IN_FLIGHT: usize = 64;

fn start(root: &Path) -> BinaryBroker {
    BinaryBroker::start_with(root, |command| {
        command
            .env("HERALD_SERVER__MAX_CONNECTIONS", MAX_CONNECTIONS.to_string())
            .env("HERALD_STORAGE__MAX_OPEN_SEGMENT_FILES", MAX_OPEN_SEGMENT_FILES.to_string())
            .env("HERALD_STORAGE__FLUSH", "always")
            .env("RUST_LOG", "warn,herald=info");
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: FD_LIMIT, rlim_max: FD_LIMIT };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// Samples a process's open descriptors every few milliseconds and keeps
/// the most seen.
struct FdWatch {
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(Iterator::count)
}

impl FdWatch {
    fn start(pid: u32) -> FdWatch {
        let (peak, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (seen, stopped) = (Arc::clone(&peak), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(n) = fd_count(pid) {
                    seen.fetch_max(n, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        FdWatch { peak, stop, thread: Some(thread) }
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for FdWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn topic(t: usize) -> String {
    format!("fd-{t}")
}

/// Every partition, as (topic, partition).
fn partitions() -> Vec<(String, u32)> {
    (0..TOPICS).flat_map(|t| (0..PARTITIONS).map(move |p| (topic(t), p))).collect()
}

fn record_of(topic: &str, partition: u32) -> String {
    format!("{topic}/{partition}")
}

/// Runs `each` on every partition, spread over [`WORKERS`] clients with
/// [`IN_FLIGHT`] requests each in flight.
async fn on_every_partition<F, Fut>(broker: &BinaryBroker, each: F)
where
    F: Fn(Client, String, u32) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let all = partitions();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let client = Client::connect(broker.addr(), &format!("worker-{w}")).await.expect("connect a worker");
        let mine: Vec<(String, u32)> = all.iter().skip(w).step_by(WORKERS).cloned().collect();
        let each = each.clone();
        workers.push(tokio::spawn(async move {
            for chunk in mine.chunks(IN_FLIGHT) {
                join_all(chunk.iter().map(|(t, p)| each(client.clone(), t.clone(), *p))).await;
            }
        }));
    }
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
}

/// Reads every partition and checks it holds exactly its one record.
async fn read_every_partition(broker: &BinaryBroker) {
    on_every_partition(broker, |client, topic, partition| async move {
        let fetched = client.fetch(&fetch_at(&topic, partition, 0)).await.expect("fetch");
        let values: Vec<String> = fetched.records.iter().map(text).collect();
        assert_eq!(values, [record_of(&topic, partition)], "{topic}/{partition}");
        assert_eq!(fetched.high_watermark, 1, "{topic}/{partition}");
    })
    .await;
}

/// Files under `dir`, at any depth, whose name ends with `suffix`.
fn count_files(dir: &Path, suffix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                count_files(&path, suffix)
            } else {
                usize::from(path.to_string_lossy().ends_with(suffix))
            }
        })
        .sum()
}

/// How the broker met [`CONNECTION_ATTEMPTS`] connections at once.
#[derive(Debug, Default)]
struct Attempts {
    /// Connected and not closed: served (under `server.max_connections`),
    /// or waiting in the listen backlog while the broker is out of
    /// descriptors.
    open: usize,
    /// Accepted and closed at once by the broker.
    closed: usize,
    /// Not connected before the connect timed out (the backlog was full).
    held_back: usize,
    /// The connect failed (refused or reset).
    failed: usize,
}

async fn connect_all(broker: &BinaryBroker) -> (Attempts, Vec<tokio::net::TcpStream>) {
    let addr = broker.addr();
    let tries = (0..CONNECTION_ATTEMPTS).map(|_| async move {
        let mut stream = match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await
        {
            Err(_) => return None,
            Ok(Err(err)) => return Some(Err(err)),
            Ok(Ok(stream)) => stream,
        };
        // Sent nothing: a connection left open answers nothing either.
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Err(_) => Some(Ok(Some(stream))),
            Ok(Ok(0) | Err(_)) => Some(Ok(None)),
            Ok(Ok(_)) => panic!("the broker sent bytes to a connection that sent nothing"),
        }
    });
    let mut attempts = Attempts::default();
    let mut kept = Vec::new();
    for outcome in join_all(tries).await {
        match outcome {
            None => attempts.held_back += 1,
            Some(Err(err)) => {
                eprintln!("a connect failed: {err}");
                attempts.failed += 1;
            }
            Some(Ok(None)) => attempts.closed += 1,
            Some(Ok(Some(stream))) => {
                attempts.open += 1;
                kept.push(stream);
            }
        }
    }
    (attempts, kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_partitions_and_two_thousand_connections_fit_in_1024_descriptors() {
    // This process holds the 2,000 connections: its own limit must allow them.
    let own = herald::fd_limit::raise_to_hard_limit().expect("raise this test's open file limit");
    assert!(own.now >= CONNECTION_ATTEMPTS as u64 + 256, "this test needs a hard open file limit over 2,256: {own:?}");
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    let broker = start(root.path());
    let watch = FdWatch::start(broker.pid());
    let client = Client::connect(broker.addr(), "admin").await.unwrap();

    // Creating writes each topic's metadata; each partition's directory and
    // first segment are made as its actor opens the log, counted in the
    // produce time.
    let started = Instant::now();
    for t in 0..TOPICS {
        client.create_topic(&topic(t), i64::from(PARTITIONS), BTreeMap::new()).await.expect("create a topic");
    }
    let create = started.elapsed();

    let started = Instant::now();
    on_every_partition(&broker, |client, topic, partition| async move {
        let record = value(record_of(&topic, partition));
        let answer = client.produce_with_acks(&topic, Some(partition), vec![record], -1).await;
        let answer = answer.unwrap_or_else(|err| panic!("produce to {topic}/{partition}: {err}"));
        assert_eq!(answer[0].base_offset, 0, "{topic}/{partition}");
    })
    .await;
    let produce = started.elapsed();
    let started = Instant::now();
    read_every_partition(&broker).await;
    let read = started.elapsed();

    // 2,000 connections at once: at most `max_connections` stay open, the
    // rest are closed after accept or wait in the backlog; no spinning.
    let (cpu_before, at) = (cpu_ticks(broker.pid()), Instant::now());
    let (attempts, kept) = connect_all(&broker).await;
    let cpu = (cpu_ticks(broker.pid()) - cpu_before) as f64 / clock_ticks_per_second() as f64;
    let share = cpu / at.elapsed().as_secs_f64();
    assert_eq!(attempts.open + attempts.closed + attempts.held_back + attempts.failed, CONNECTION_ATTEMPTS);
    assert!(attempts.closed > 0, "nothing was refused: {attempts:?}");
    let served = fd_count(broker.pid()).unwrap_or(0);
    assert!(served < FD_LIMIT as usize, "{served} descriptors while {attempts:?}");
    assert!(share < 0.9, "the broker used {:.0} % of a core while refusing connections", share * 100.0);
    drop(kept);
    let deadline = Instant::now() + PATIENCE;
    let healthy = loop {
        match Client::connect(broker.addr(), "healthy").await {
            Ok(client) => break client,
            Err(err) => assert!(Instant::now() < deadline, "a healthy client was never served again: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let topic0 = topic(0);
    let fetched = healthy.fetch(&fetch_at(&topic0, 7, 0)).await.expect("a healthy client reads");
    assert_eq!(fetched.records.iter().map(text).collect::<Vec<_>>(), [record_of(&topic0, 7)]);
    drop((client, healthy));

    let peak = watch.peak();
    assert!(peak < FD_LIMIT as usize, "the broker held {peak} descriptors, at its limit of {FD_LIMIT}");
    drop(watch);

    // Nothing acknowledged is lost: kill -9 (no shutdown, no index written
    // out), restart under the same limit, read every record again.
    broker.kill();
    let started = Instant::now();
    let broker = start(root.path());
    let restart = started.elapsed();
    let watch = FdWatch::start(broker.pid());
    let started = Instant::now();
    read_every_partition(&broker).await;
    let reread = started.elapsed();
    // And a clean stop, which writes out every active segment's indexes
    // (20,000 files opened one after another), then a restart from them.
    let status = broker.terminate();
    assert!(status.success(), "the broker did not stop cleanly: {status}");
    let peak_after = watch.peak();
    drop(watch);
    let indexes = count_files(&root.path().join("data"), ".index");
    assert_eq!(indexes, TOPICS * PARTITIONS as usize, "one .index per partition after a clean stop");
    let broker = start(root.path());
    let watch = FdWatch::start(broker.pid());
    read_every_partition(&broker).await;
    let peak_after = peak_after.max(watch.peak());
    assert!(peak_after < FD_LIMIT as usize, "after the restarts the broker held {peak_after} descriptors");
    drop(watch);
    let status = broker.terminate();
    assert!(status.success(), "{status}");

    let partitions = TOPICS * PARTITIONS as usize;
    eprintln!(
        "fd scale: partitions={partitions} fd_limit={FD_LIMIT} max_open_segment_files={MAX_OPEN_SEGMENT_FILES} \
         max_connections={MAX_CONNECTIONS} peak_fds={peak} peak_fds_after_restart={peak_after} create_ms={} \
         produce_s={:.1} read_s={:.1} connections={CONNECTION_ATTEMPTS} open={} closed={} held_back={} failed={} \
         broker_cpu_while_refusing={:.0}% kill9_restart_to_serving_ms={} reread_s={:.1} lost=0",
        create.as_millis(),
        produce.as_secs_f64(),
        read.as_secs_f64(),
        attempts.open,
        attempts.closed,
        attempts.held_back,
        attempts.failed,
        share * 100.0,
        restart.as_millis(),
        reread.as_secs_f64(),
    );
}
