//! The router example through the real broker built with the builder: every
//! record of `orders` reaches `orders.<region>` (or `orders.unrouted`) in
//! order per partition; a broker shut down mid-stream and started again
//! loses nothing and routes on from its committed progress.

mod common;
#[path = "../examples/router/router.rs"]
#[allow(dead_code)]
mod router;

use std::collections::BTreeMap;
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

/// Produces orders `range`, 20 to a request, to partition `n % 2`.
async fn produce(client: &Client, range: std::ops::Range<usize>) {
    let mut by_partition: BTreeMap<u32, Vec<WireRecord>> = BTreeMap::new();
    for n in range {
        let (partition, record) = order(n);
        let pending = by_partition.entry(partition).or_default();
        pending.push(record);
        if pending.len() == 20 {
            client.produce(router::SOURCE, Some(partition), std::mem::take(pending)).await.expect("produce");
        }
    }
    for (partition, rest) in by_partition {
        if !rest.is_empty() {
            client.produce(router::SOURCE, Some(partition), rest).await.expect("produce");
        }
    }
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

/// Each destination's partitions' values, once everything up to `upto` has
/// arrived (waiting for it), duplicates included.
async fn routed(client: &Client, upto: usize) -> BTreeMap<(String, u32), Vec<usize>> {
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
        let seen: std::collections::BTreeSet<usize> = found.values().flatten().copied().collect();
        if (0..upto).all(|n| seen.contains(&n)) {
            return found;
        }
        assert!(Instant::now() < deadline, "routed {} of {upto} orders", seen.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks every order up to `upto` is in its topic, in the partition of its
/// source partition, in order (a repeat only re-sends a run already sent);
/// answers the number of repeats.
fn check(found: &BTreeMap<(String, u32), Vec<usize>>, upto: usize) -> usize {
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
            (0..upto).filter(|n| topic_of(*n) == topic && (n % 2) as u32 == *partition).collect();
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
    let found = routed(&client, RECORDS).await;
    let repeats = check(&found, RECORDS);
    // A clean shutdown waits for the delivery under way: nothing repeated.
    assert_eq!(repeats, 0, "{found:?}");
    assert_eq!(found.values().map(Vec::len).sum::<usize>(), RECORDS);
    broker.stop().await;
}
