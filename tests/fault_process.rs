//! Fault scenarios on the broker process, the real binary under producers
//! that write with acknowledgements (`flush = "always"`, the default):
//!
//! - SIGKILL again and again at seeded moments;
//! - SIGTERM under full load: the broker exits 0 within the shutdown timeout.
//!
//! After the faults every partition is read back and checked (tests/fault):
//! no acknowledged record lost or moved, no value twice, no gap in the
//! offsets. Each prints its seed and one line of figures.
//!
//! CI runs 10 kills; the long tier raises the counts:
//! `HERALD_FAULT_KILLS=100 cargo test --release --test fault_process -- --nocapture`;
//! replay a seed with `HERALD_FAULT_SEED=<seed>`.

mod common;
mod fault;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{read_partition, text, BinaryBroker};
use fault::produce::produce_until_failure;
use fault::{check_log, quantile, seed, setting, Ack, Rng};
use herald::client::Client;
use tokio::task::block_in_place;

const TOPIC: &str = "faults";
const PARTITIONS: u32 = 3;
const WORKERS: usize = 6;

/// Reads every partition back in full: (offset, value) per partition.
async fn read_back(client: &Client) -> BTreeMap<u32, Vec<(i64, String)>> {
    let mut reads = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let records = read_partition(client, TOPIC, partition, 0).await;
        reads.insert(partition, records.iter().map(|r| (r.offset, text(r))).collect::<Vec<_>>());
    }
    reads
}

/// Starts the broker on `root` and returns it with how long it took to serve.
fn start(root: &std::path::Path) -> (BinaryBroker, f64) {
    let started = Instant::now();
    let broker = BinaryBroker::start(root);
    (broker, started.elapsed().as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_record_is_lost_across_repeated_sigkills() {
    let seed = seed();
    let kills = setting("HERALD_FAULT_KILLS", 10);
    let min_acks = setting("HERALD_FAULT_MIN_ACKS", 50_000) as usize;
    eprintln!("fault_process kill9: seed {seed} (replay with HERALD_FAULT_SEED={seed}), {kills} kills");
    let mut rng = Rng::new(seed);
    let root = tempfile::tempdir().unwrap();
    let (mut broker, _) = block_in_place(|| start(root.path()));
    broker.client().await.create_topic(TOPIC, i64::from(PARTITIONS), BTreeMap::new()).await.unwrap();

    let mut acks: Vec<Ack> = Vec::new();
    let mut restarts = Vec::new();
    for cycle in 0..kills {
        let mut workers = Vec::new();
        for worker in 0..WORKERS {
            let client = broker.client().await;
            let count = Arc::new(AtomicUsize::new(0));
            workers.push(tokio::spawn(async move {
                produce_until_failure(client, TOPIC, worker as u32 % PARTITIONS, cycle, worker, count).await
            }));
        }
        // The schedule: how long the producers run before the plug is pulled.
        tokio::time::sleep(Duration::from_millis(rng.between(150, 700))).await;
        block_in_place(|| broker.kill());
        for worker in workers {
            acks.extend(worker.await.unwrap());
        }
        let (next, restart_ms) = block_in_place(|| start(root.path()));
        broker = next;
        restarts.push(restart_ms);
    }

    let reads = read_back(&broker.client().await).await;
    let anomalies = check_log(&acks, &reads);
    let stored: usize = reads.values().map(Vec::len).sum();
    eprintln!(
        "fault_process kill9: seed {seed}, flush always, kills {kills}, acknowledged {}, stored {stored}, anomalies {}, \
         restart to ready p50 {:.0} ms p99 {:.0} ms",
        acks.len(),
        anomalies.len(),
        quantile(&restarts, 0.5),
        quantile(&restarts, 0.99),
    );
    assert!(anomalies.is_empty(), "seed {seed}: {:?}", &anomalies[..anomalies.len().min(20)]);
    assert!(acks.len() >= min_acks, "seed {seed}: only {} records acknowledged (want {min_acks})", acks.len());
    block_in_place(|| broker.kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_full_load_exits_cleanly_and_loses_nothing_acknowledged() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let root = tempfile::tempdir().unwrap();
    let (broker, _) = block_in_place(|| start(root.path()));
    broker.client().await.create_topic(TOPIC, i64::from(PARTITIONS), BTreeMap::new()).await.unwrap();
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let client = broker.client().await;
        let count = Arc::new(AtomicUsize::new(0));
        workers.push(tokio::spawn(async move {
            produce_until_failure(client, TOPIC, worker as u32 % PARTITIONS, 0, worker, count).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(rng.between(300, 900))).await;
    let asked = Instant::now();
    let status = block_in_place(|| broker.terminate());
    let exit_ms = asked.elapsed().as_secs_f64() * 1000.0;
    let mut acks = Vec::new();
    for worker in workers {
        acks.extend(worker.await.unwrap());
    }
    assert!(status.success(), "seed {seed}: SIGTERM under load exits 0, got {status}");

    let (mut broker, restart_ms) = block_in_place(|| start(root.path()));
    let opened = block_in_place(|| broker.wait_for_line("opened data directory"));
    let reads = read_back(&broker.client().await).await;
    let anomalies = check_log(&acks, &reads);
    eprintln!(
        "fault_process sigterm: seed {seed}, flush always, acknowledged {}, exit after SIGTERM {exit_ms:.0} ms, \
         restart to ready {restart_ms:.0} ms, anomalies {}",
        acks.len(),
        anomalies.len()
    );
    assert!(opened.contains("start=after_clean_shutdown"), "seed {seed}: the next start needs no recovery: {opened}");
    assert!(anomalies.is_empty(), "seed {seed}: {:?}", &anomalies[..anomalies.len().min(20)]);
    assert!(exit_ms < 10_000.0, "seed {seed}: exit took {exit_ms:.0} ms");
    assert!(!acks.is_empty(), "seed {seed}: nothing was acknowledged before the SIGTERM");
    block_in_place(|| broker.kill());
}
