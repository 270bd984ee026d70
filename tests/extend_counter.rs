//! The windowed counter example through the real broker built with the
//! builder: each window's per-key counts published once, equal to the
//! counts of the input's records by timestamp, across a shutdown and restart
//! in the middle of a window.

mod common;
#[path = "../examples/counter/counter.rs"]
#[allow(dead_code)]
mod counter;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{read_partition, test_settings, TestBroker};
use herald::client::{Client, Record};
use herald::protocol::WireRecord;

const WINDOW_MS: i64 = 1000;

fn options() -> counter::Options {
    counter::Options {
        window: Duration::from_millis(WINDOW_MS as u64),
        grace: Duration::from_millis(200),
        ..counter::Options::default()
    }
}

fn start(dir: &std::path::Path) -> TestBroker {
    TestBroker::start_built(test_settings(dir), |builder| counter::install_with(builder, options()))
}

/// Produces `rounds` rounds of 10 records (keys a, b, c, d, one keyless),
/// `pause` apart, with the broker's time.
async fn produce(client: &Client, rounds: usize, pause: Duration) {
    for round in 0..rounds {
        let records = (0..10)
            .map(|n| WireRecord {
                key: (n % 5 != 4).then(|| Bytes::from(["a", "b", "c", "d"][(n + round) % 4])),
                value: Some(Bytes::from(format!("{round}-{n}"))),
                ..WireRecord::default()
            })
            .collect();
        client.produce("clicks", Some(0), records).await.expect("produce");
        tokio::time::sleep(pause).await;
    }
}

fn header(record: &Record, name: &str) -> i64 {
    let (_, value) = record.headers.iter().find(|(key, _)| key == name).expect("the header");
    std::str::from_utf8(value).unwrap().parse().unwrap()
}

type Counts = BTreeMap<(i64, Option<Bytes>), Vec<u64>>;

/// The published counts by (window start, key): each publication's count.
async fn published(client: &Client) -> Counts {
    let mut found = Counts::new();
    for record in read_partition(client, "clicks.counts", 0, 0).await {
        let start = header(&record, "window_start");
        assert_eq!(header(&record, "window_end"), start + WINDOW_MS);
        let count = std::str::from_utf8(record.value.as_deref().unwrap()).unwrap().parse().unwrap();
        found.entry((start, record.key)).or_default().push(count);
    }
    found
}

#[tokio::test]
async fn each_window_is_published_once_with_the_counts_of_its_records_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let client = broker.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.describe_topic("clicks").await.is_err() {
        assert!(Instant::now() < deadline, "the counter creates its input");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    produce(&client, 6, Duration::from_millis(250)).await;
    // Stopped while the last window is open: its partial counts are not
    // committed anywhere but in the log.
    broker.stop().await;

    let broker = start(dir.path());
    let client = broker.client().await;
    produce(&client, 4, Duration::from_millis(100)).await;

    // What the input says, by its records' timestamps.
    let input = read_partition(&client, "clicks", 0, 0).await;
    assert_eq!(input.len(), 100);
    let mut expected: BTreeMap<(i64, Option<Bytes>), u64> = BTreeMap::new();
    for record in &input {
        let start = record.timestamp - record.timestamp.rem_euclid(WINDOW_MS);
        *expected.entry((start, record.key.clone())).or_default() += 1;
    }
    let last_window = expected.keys().map(|(start, _)| *start).max().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        let found = published(&client).await;
        if found.keys().any(|(start, _)| *start == last_window) {
            break found;
        }
        assert!(Instant::now() < deadline, "the last window was not published: {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let once: BTreeMap<(i64, Option<Bytes>), Vec<u64>> = expected.iter().map(|(k, v)| (k.clone(), vec![*v])).collect();
    assert_eq!(found, once, "every window's counts, each published once");
    assert!(expected.keys().map(|(start, _)| start).collect::<std::collections::BTreeSet<_>>().len() >= 2);
    broker.stop().await;
}
