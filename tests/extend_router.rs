//! The router example through the real broker built with the builder: every
//! record of `orders` reaches `orders.<region>` (or `orders.unrouted`) in
//! order per partition; a broker shut down mid-stream, or killed (SIGKILL)
//! mid-stream, and started again loses nothing and routes on from its
//! committed progress, repeating at most one delivery per partition.

mod common;
#[path = "../examples/router/router.rs"]
#[allow(dead_code)]
mod router;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{read_partition, test_settings, text, TestBroker};
use herald::client::Client;
use herald::protocol::WireRecord;

const REGIONS: [Option<&str>; 5] = [Some("eu"), Some("us"), None, Some("ap"), Some("bad region!")];
const RECORDS: usize = 600;
/// Small fetches: many deliveries, and a bound on what a restart repeats.
const MAX_BYTES: usize = 4096;

fn order(n: usize) -> (u32, WireRecord) {
    let region = REGIONS[n % REGIONS.len()];
    let headers = region.map(|r| vec![("region".to_string(), Bytes::from(r))]).unwrap_or_default();
    let record = WireRecord {
        key: Some(Bytes::from(format!("customer-{}", n % 7))),
        value: Some(Bytes::from(format!("o{n}"))),
        headers,
        timestamp: None,
    };
    ((n % 2) as u32, record)
}

fn topic_of(n: usize) -> &'static str {
    match REGIONS[n % REGIONS.len()] {
        Some("eu") => "orders.eu",
        Some("us") => "orders.us",
        Some("ap") => "orders.ap",
        _ => "orders.unrouted",
    }
}

/// Produces orders `range`, 20 to a request, to partition `n % 2`, each
/// request acknowledged once durable.
async fn produce(client: &Client, range: std::ops::Range<usize>) {
    try_produce(client, range).await.expect("produce");
}

async fn try_produce(client: &Client, range: std::ops::Range<usize>) -> Result<(), herald::client::ClientError> {
    let mut by_partition: BTreeMap<u32, Vec<WireRecord>> = BTreeMap::new();
    for n in range {
        let (partition, record) = order(n);
        let pending = by_partition.entry(partition).or_default();
        pending.push(record);
        if pending.len() == 20 {
            client.produce_with_acks(router::SOURCE, Some(partition), std::mem::take(pending), -1).await?;
        }
    }
    for (partition, rest) in by_partition {
        if !rest.is_empty() {
            client.produce_with_acks(router::SOURCE, Some(partition), rest, -1).await?;
        }
    }
    Ok(())
}

fn start(dir: &std::path::Path) -> TestBroker {
    let options = router::Options { max_bytes: MAX_BYTES };
    TestBroker::start_built(test_settings(dir), move |builder| router::install_with(builder, options))
}

async fn wait_for_topic(client: &Client, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.describe_topic(topic).await.is_err() {
        assert!(Instant::now() < deadline, "{topic} exists");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each destination's partitions' values, once every order of `wanted` has
/// arrived (waiting for it), duplicates included.
async fn routed(client: &Client, wanted: &BTreeSet<usize>) -> BTreeMap<(String, u32), Vec<usize>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut found = BTreeMap::new();
        for topic in ["orders.eu", "orders.us", "orders.ap", "orders.unrouted"] {
            for partition in 0..2 {
                let values = match client.describe_topic(topic).await {
                    Ok(_) => read_partition(client, topic, partition, 0).await,
                    Err(_) => Vec::new(),
                };
                let numbers = values.iter().map(|r| text(r)[1..].parse::<usize>().expect("an order")).collect();
                found.insert((topic.to_string(), partition), numbers);
            }
        }
        let seen: BTreeSet<usize> = found.values().flatten().copied().collect();
        if wanted.is_subset(&seen) {
            return found;
        }
        assert!(Instant::now() < deadline, "routed {} of {} orders", seen.len(), wanted.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The orders in `orders`.
async fn sources(client: &Client) -> BTreeSet<usize> {
    let mut orders = BTreeSet::new();
    for partition in 0..2 {
        for record in read_partition(client, router::SOURCE, partition, 0).await {
            orders.insert(text(&record)[1..].parse::<usize>().expect("an order"));
        }
    }
    orders
}

/// Checks every order of `wanted` (every order in `orders`) is in its topic,
/// in the partition of its source partition, in order (a repeat only
/// re-sends a run already sent), and nothing else is; answers the number of
/// repeats.
fn check(found: &BTreeMap<(String, u32), Vec<usize>>, wanted: &BTreeSet<usize>) -> usize {
    let mut repeats = 0;
    for ((topic, partition), numbers) in found {
        let mut firsts = Vec::new();
        for &n in numbers {
            assert_eq!(topic_of(n), topic, "order {n} in {topic}");
            assert_eq!((n % 2) as u32, *partition, "order {n} in partition {partition}");
            if firsts.contains(&n) {
                repeats += 1;
            } else {
                firsts.push(n);
            }
        }
        let expected: Vec<usize> =
            wanted.iter().copied().filter(|n| topic_of(*n) == topic && (n % 2) as u32 == *partition).collect();
        assert_eq!(firsts, expected, "{topic}/{partition}: every order once, in order, before any repeat");
    }
    repeats
}

#[tokio::test]
async fn the_router_routes_every_order_in_order_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let client = broker.client().await;
    wait_for_topic(&client, router::SOURCE).await;

    // Shut down while the router is (very likely) still at work.
    produce(&client, 0..RECORDS / 2).await;
    broker.stop().await;

    let broker = start(dir.path());
    let client = broker.client().await;
    produce(&client, RECORDS / 2..RECORDS).await;
    let wanted: BTreeSet<usize> = (0..RECORDS).collect();
    assert_eq!(sources(&client).await, wanted);
    let found = routed(&client, &wanted).await;
    let repeats = check(&found, &wanted);
    // A clean shutdown waits for the delivery under way: nothing repeated.
    assert_eq!(repeats, 0, "{found:?}");
    assert_eq!(found.values().map(Vec::len).sum::<usize>(), RECORDS);
    broker.stop().await;
}

/// The variable naming the data directory of the broker process the crash
/// test starts (this test binary again, running only
/// `router_broker_process`).
const CHILD: &str = "HERALD_ROUTER_CHILD_DIR";

/// Not a test on its own: the broker process that
/// `a_killed_router_loses_nothing_and_repeats_at_most_a_delivery` kills. It
/// runs only when [`CHILD`] names its data directory: it serves with the
/// router there and writes its port to `port` beside it, until killed.
#[test]
fn router_broker_process() {
    let Ok(dir) = std::env::var(CHILD) else { return };
    let dir = std::path::PathBuf::from(dir);
    let broker = start(&dir.join("data"));
    std::fs::write(dir.join("port.tmp"), broker.addr().port().to_string()).unwrap();
    std::fs::rename(dir.join("port.tmp"), dir.join("port")).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[tokio::test]
async fn a_killed_router_loses_nothing_and_repeats_at_most_a_delivery() {
    const ORDERS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "router_broker_process", "--nocapture", "--test-threads", "1"])
        .env(CHILD, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the broker process");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Ok(port) = std::fs::read_to_string(dir.path().join("port")) {
            break port.parse::<u16>().unwrap();
        }
        assert!(child.try_wait().unwrap().is_none(), "the broker process exited");
        assert!(Instant::now() < deadline, "the broker process wrote no port");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let client = Client::connect(("127.0.0.1", port), "router-test").await.expect("connect");
    wait_for_topic(&client, router::SOURCE).await;
    // Killed while orders are being produced and routed, once some are.
    let producer = {
        let client = client.clone();
        tokio::spawn(async move { try_produce(&client, 0..ORDERS).await })
    };
    loop {
        let mut routed = 0;
        for topic in ["orders.eu", "orders.us", "orders.ap", "orders.unrouted"] {
            for partition in 0..2 {
                routed += client.list_offsets(topic, partition, -1).await.unwrap_or(0);
            }
        }
        if routed >= 300 {
            break;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(30), "the router routes nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    // Its last requests fail with the connection.
    let _ = producer.await;
    drop(client);

    let broker = start(&dir.path().join("data"));
    let client = broker.client().await;
    let wanted = sources(&client).await;
    assert!(wanted.len() >= 300, "{} orders", wanted.len());
    let found = routed(&client, &wanted).await;
    let repeats = check(&found, &wanted);
    eprintln!("killed at {} of {ORDERS} orders produced: {repeats} written twice", wanted.len());
    // One delivery is one fetch: whole batches of 20 orders up to MAX_BYTES
    // (and one batch past it), each order over 20 bytes in its batch.
    let bound = 2 * (MAX_BYTES / 20 + 20);
    assert!(repeats <= bound, "{repeats} orders written twice; one delivery per partition is at most {bound}");
    broker.stop().await;
}
