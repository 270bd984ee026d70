//! The router of examples/router in the broker, against the same routing
//! done by a client over TCP:
//!
//! ```text
//! cargo run --release --example router_bench -- [--records 200000] [--record-size 100] [--data-dir /tmp/rb] \
//!     [--only in-broker|client] [--flush always|never]
//! ```
//!
//! Each run creates `orders` and its four destinations (2 partitions each),
//! fills `orders` with `--records` records (regions `eu`, `us`, `ap` and
//! none, in turn) on a broker without the router, then
//! measures, from a fresh start of a broker on that data, the time until
//! every record is in its destination topic:
//!
//! - **in-broker**: the broker is started with the router extension, which
//!   routes from the group's committed offsets (none: the start);
//! - **client**: the broker runs without it, and a client on the same machine
//!   does the same work over TCP: one task per partition fetching (1 MiB),
//!   producing each fetch's records to their destinations (acks -1, the
//!   destinations' requests pipelined), then committing the next offset
//!   (`commit_offsets`) before the next fetch.
//!
//! Both wait for every produce and commit to be acknowledged (durable with
//! `storage.flush`'s default, `always`) before going on, so they do the same
//! work per fetch. With `--flush never` the fsyncs no longer bound both, and
//! what the transport costs shows. Besides the rate, the CPU time of the
//! process (broker and router alike run in it) per record routed.

#[path = "../router/router.rs"]
mod router;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald::client::Client;
use herald::config::Settings;
use herald::protocol::{group_op, CommitOffsetsRequest, CommitOffsetsResponse, FetchRequest, OffsetCommit, WireRecord};
use herald::server::{Builder, Server};
use herald_actors::partition::FlushPolicy;

const DESTINATIONS: [&str; 4] = ["orders.eu", "orders.us", "orders.ap", "orders.unrouted"];

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs a broker on `data_dir` in a thread of its own until `stop` is sent.
fn broker(
    data_dir: &Path,
    flush: FlushPolicy,
    configure: fn(Builder) -> Builder,
) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>), Error> {
    let mut settings = Settings::load(None, &[])?;
    settings.storage.data_dir = data_dir.to_path_buf();
    settings.storage.flush = flush;
    settings.http.enabled = false;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let system = actix::System::new();
        let builder = Server::builder(settings).listener(listener).http_listener(None).shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(err) = system.block_on(configure(builder).run()) {
            eprintln!("broker failed: {err}");
        }
    });
    Ok((addr, stop, thread))
}

async fn connect(addr: SocketAddr) -> Result<Client, Error> {
    for _ in 0..100 {
        if let Ok(client) = Client::connect(addr, "router-bench").await {
            return Ok(client);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("cannot connect to the broker".into())
}

async fn fill(addr: SocketAddr, records: usize, size: usize) -> Result<(), Error> {
    let client = connect(addr).await?;
    // The destinations too: both routers then find them.
    for topic in [router::SOURCE].into_iter().chain(DESTINATIONS) {
        client.create_topic(topic, i64::from(router::SOURCE_PARTITIONS), BTreeMap::new()).await?;
    }
    let regions = [Some("eu"), Some("us"), Some("ap"), None];
    let mut n = 0;
    while n < records {
        for partition in 0..router::SOURCE_PARTITIONS {
            let batch: Vec<WireRecord> = (n..(n + 1000).min(records))
                .filter(|i| *i as u32 % router::SOURCE_PARTITIONS == partition)
                .map(|i| WireRecord {
                    key: Some(Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from(vec![b'x'; size])),
                    headers: regions[i % 4].map(|r| vec![("region".to_string(), Bytes::from(r))]).unwrap_or_default(),
                    timestamp: None,
                })
                .collect();
            if !batch.is_empty() {
                client.produce_with_acks(router::SOURCE, Some(partition), batch, -1).await?;
            }
        }
        n += 1000;
    }
    Ok(())
}

/// The records in the destination topics.
async fn routed(client: &Client) -> i64 {
    let mut total = 0;
    for topic in DESTINATIONS {
        for partition in 0..router::SOURCE_PARTITIONS {
            total += client.list_offsets(topic, partition, -1).await.unwrap_or(0);
        }
    }
    total
}

/// One partition routed by a client: fetch, produce, commit, again.
async fn route_partition(client: Client, partition: u32, end: i64) -> Result<(), Error> {
    let mut offset = 0;
    while offset < end {
        let fetch = FetchRequest {
            topic: router::SOURCE.into(),
            partition: i64::from(partition),
            offset,
            max_bytes: 1 << 20,
            min_bytes: 1,
            max_wait_ms: 500,
        };
        let fetched = client.fetch(&fetch).await?;
        let Some(last) = fetched.records.last() else { continue };
        let next = last.offset + 1;
        let mut by_topic: BTreeMap<String, Vec<WireRecord>> = BTreeMap::new();
        for record in fetched.records {
            let topic = router::destination(&record);
            let record = WireRecord {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp: Some(record.timestamp),
            };
            by_topic.entry(topic).or_default().push(record);
        }
        // As the router does: one produce per destination, all at once.
        let produced = by_topic
            .into_iter()
            .map(|(topic, records)| client.start_produce(&topic, Some(partition), records, -1))
            .collect::<Result<Vec<_>, _>>()?;
        for answer in futures::future::join_all(produced).await {
            answer?;
        }
        let commit = CommitOffsetsRequest {
            group_id: router::GROUP.into(),
            member_id: None,
            generation_id: -1,
            offsets: vec![OffsetCommit {
                topic: router::SOURCE.into(),
                partition: i64::from(partition),
                offset: next,
                metadata: None,
            }],
        };
        let _: CommitOffsetsResponse = client.request(group_op::COMMIT_OFFSETS, &commit).await?;
        offset = next;
    }
    Ok(())
}

/// CPU seconds (user and system) this process has used so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF covers every thread of the process.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The time to route every record, and the process's CPU seconds meanwhile.
async fn measure(
    root: &Path,
    records: usize,
    size: usize,
    in_broker: bool,
    flush: FlushPolicy,
) -> Result<(Duration, f64), Error> {
    let data_dir = root.join(if in_broker { "in-broker" } else { "client" });
    let _ = std::fs::remove_dir_all(&data_dir);
    let (addr, stop, thread) = broker(&data_dir, flush, |b| b)?;
    fill(addr, records, size).await?;
    let _ = stop.send(());
    tokio::task::spawn_blocking(move || thread.join()).await?.map_err(|_| "broker thread panicked")?;

    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    let configure: fn(Builder) -> Builder = if in_broker { router::install } else { |b| b };
    let (addr, stop, thread) = broker(&data_dir, flush, configure)?;
    let client = connect(addr).await?;
    if in_broker {
        while routed(&client).await < records as i64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    } else {
        let mut tasks = Vec::new();
        for partition in 0..router::SOURCE_PARTITIONS {
            let end = client.list_offsets(router::SOURCE, partition, -1).await?;
            tasks.push(tokio::spawn(route_partition(connect(addr).await?, partition, end)));
        }
        for task in tasks {
            task.await??;
        }
        assert_eq!(routed(&client).await, records as i64, "the client routed every record");
    }
    let (elapsed, cpu) = (start.elapsed(), cpu_seconds() - cpu_start);
    let _ = stop.send(());
    tokio::task::spawn_blocking(move || thread.join()).await?.map_err(|_| "broker thread panicked")?;
    Ok((elapsed, cpu))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (mut records, mut size, mut root) = (200_000usize, 100usize, PathBuf::from("/tmp/herald-router-bench"));
    let mut only: Option<bool> = None;
    let mut flush = FlushPolicy::Always;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--records" => records = value.parse()?,
            "--record-size" => size = value.parse()?,
            "--data-dir" => root = PathBuf::from(value),
            "--only" => only = Some(value == "in-broker"),
            "--flush" => {
                flush = match value.as_str() {
                    "always" => FlushPolicy::Always,
                    "never" => FlushPolicy::Never,
                    other => return Err(format!("--flush takes always or never, not `{other}`").into()),
                }
            }
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    for in_broker in [true, false].into_iter().filter(|mode| only.is_none_or(|only| only == *mode)) {
        let (elapsed, cpu) = measure(&root, records, size, in_broker, flush).await?;
        let rate = records as f64 / elapsed.as_secs_f64();
        let per_record = cpu / records as f64 * 1e6;
        let name = if in_broker { "in-broker router" } else { "client over TCP" };
        println!(
            "{name}: {records} records of {size} bytes in {:.2} s: {rate:.0} records/s, CPU {cpu:.2} s ({per_record:.2} µs per record)",
            elapsed.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
