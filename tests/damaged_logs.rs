//! Logs damaged on disk while the broker was stopped, through the real broker:
//! recovery keeps every intact record and never gives an offset out twice; a
//! fetch in a damaged range gets CORRUPT_MESSAGE (2) naming it and a consumer
//! gets past it deliberately; the background scrub and `herald scrub` find
//! damage nobody read; a damaged group log keeps every readable commit.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{batch_position, fetch_at, herald_bin, read_partition, test_settings, text, value, TestBroker, PATIENCE};
use herald::client::{Client, Consumer, ConsumerConfig, DamagedRange, GroupConsumer, GroupConsumerConfig, StartOffset};
use herald::protocol::*;

const TOPIC: &str = "ledger";
const RECORDS: i64 = 30;

/// The value of record `i`: about 200 bytes, so a 1 KiB segment holds three.
fn record_value(i: i64) -> String {
    format!("r{i}-{}", "x".repeat(200))
}

/// A broker on `dir` that indexes every batch after a segment's first, so
/// that a clean start checks only the last batch of each segment.
fn start(dir: &Path) -> TestBroker {
    let mut settings = test_settings(dir);
    settings.log.index_interval_bytes = 100;
    TestBroker::start_with(settings)
}

/// Creates the topic with 1 KiB segments and produces `RECORDS` records to
/// partition 0, one batch each.
async fn fill(client: &Client) {
    let config =
        common::config(&[("segment_max_bytes", ConfigValue::Int(1024)), ("max_message_bytes", ConfigValue::Int(1024))]);
    client.create_topic(TOPIC, 1, config).await.unwrap();
    for i in 0..RECORDS {
        client.produce(TOPIC, Some(0), vec![value(record_value(i))]).await.unwrap();
    }
}

/// The segment files of a log directory: (base offset, path), ascending.
fn segments(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| (p.file_stem().unwrap().to_str().unwrap().parse().unwrap(), p))
        .collect();
    found.sort();
    found
}

fn partition_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("topics").join(TOPIC).join("0")
}

fn flip(path: &Path, position: u64) {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], position).unwrap();
}

fn values(range: impl Iterator<Item = i64>) -> Vec<String> {
    range.map(record_value).collect()
}

fn damaged_of(description: &DescribeTopicResponse) -> Vec<(i64, i64)> {
    description.partitions[0].damaged.iter().map(|d| (d.first_offset, d.next_offset)).collect()
}

#[tokio::test]
async fn a_cut_segment_loses_no_later_record_and_no_offset_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    fill(&broker.client().await).await;
    broker.stop().await;
    let all = segments(&partition_dir(dir.path()));
    assert!(all.len() > 5, "{} segments", all.len());
    // Cut the last batch of the second segment short.
    let file = std::fs::OpenOptions::new().write(true).open(&all[1].1).unwrap();
    file.set_len(file.metadata().unwrap().len() - 5).unwrap();
    let cut = all[2].0 - 1;

    let broker = start(dir.path());
    let client = broker.client().await;
    let described = client.describe_topic(TOPIC).await.unwrap();
    assert_eq!(described.partitions[0].log_end_offset, RECORDS, "the later segments are all there");
    assert_eq!(damaged_of(&described), [(cut, cut + 1)]);
    assert_eq!(described.partitions[0].damaged[0].segment, all[1].0);
    let cli = Command::new(herald_bin())
        .args(["topic", "describe", TOPIC, "--broker", &broker.addr().to_string()])
        .output()
        .expect("run herald");
    let shown = String::from_utf8_lossy(&cli.stdout);
    assert!(shown.contains(&format!("Damaged: partition 0 offsets {cut} to {cut} (segment {})", all[1].0)), "{shown}");

    let err = client.fetch(&fetch_at(TOPIC, 0, cut)).await.unwrap_err();
    assert_eq!((err.code(), err.retriable()), (Some(2), false), "{err}");
    assert_eq!(err.damaged(), Some(DamagedRange { first_offset: cut, next_offset: cut + 1 }));
    let before = client.fetch(&fetch_at(TOPIC, 0, 0)).await.unwrap().records;
    assert_eq!(before.iter().map(text).collect::<Vec<_>>(), values(0..cut), "a fetch stops before the range");
    let after = read_partition(&client, TOPIC, 0, cut + 1).await;
    assert_eq!(after.iter().map(text).collect::<Vec<_>>(), values(cut + 1..RECORDS));

    let written = client.produce(TOPIC, Some(0), vec![value("new")]).await.unwrap();
    assert_eq!(written[0].base_offset, RECORDS, "no offset is given out twice");
    broker.stop().await;
}

#[tokio::test]
async fn a_consumer_gets_the_damaged_range_and_goes_past_it_deliberately() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    fill(&broker.client().await).await;
    broker.stop().await;
    let all = segments(&partition_dir(dir.path()));
    // A byte of a record, checked by the CRC: the second batch of the second
    // segment. A bit of a base offset, outside the CRC: the first batch of the
    // fourth, which would otherwise claim offsets 16 later and make a
    // consumer skip them.
    flip(&all[1].1, batch_position(&all[1].1, 1) + 60);
    flip(&all[3].1, 7);
    let (first, second) = (all[1].0 + 1, all[3].0);

    let broker = start(dir.path());
    let client = broker.client().await;
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig { max_wait_ms: 0, ..ConsumerConfig::default() });
    consumer.assign(TOPIC, 0, StartOffset::Earliest).await.unwrap();
    let (mut read, mut skipped) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + PATIENCE;
    while consumer.position(TOPIC, 0) < Some(RECORDS) {
        assert!(Instant::now() < deadline, "read {read:?}, skipped {skipped:?}");
        match consumer.poll().await {
            Ok(records) => read.extend(records.iter().map(|r| text(&r.record))),
            Err(err) => {
                let range = err.damaged().unwrap_or_else(|| panic!("unexpected error {err}"));
                assert_eq!(consumer.position(TOPIC, 0), Some(range.first_offset), "the position stays at the range");
                skipped.push((range.first_offset, range.next_offset));
                assert!(consumer.seek(TOPIC, 0, range.next_offset));
            }
        }
    }
    assert_eq!(skipped, [(first, first + 1), (second, second + 1)]);
    let expected: Vec<i64> = (0..RECORDS).filter(|o| *o != first && *o != second).collect();
    assert_eq!(read, values(expected.into_iter()), "every other record, once, in order");
    assert_eq!(damaged_of(&client.describe_topic(TOPIC).await.unwrap()), skipped, "found by the reads");
    broker.stop().await;
}

#[tokio::test]
async fn a_group_consumer_reports_the_range_without_losing_other_partitions_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let client = broker.client().await;
    let config =
        common::config(&[("segment_max_bytes", ConfigValue::Int(1024)), ("max_message_bytes", ConfigValue::Int(1024))]);
    client.create_topic(TOPIC, 2, config).await.unwrap();
    for i in 0..RECORDS {
        for partition in 0..2 {
            client.produce(TOPIC, Some(partition), vec![value(record_value(i))]).await.unwrap();
        }
    }
    broker.stop().await;
    let all = segments(&partition_dir(dir.path()));
    flip(&all[2].1, 60);
    let damaged = all[2].0;

    let broker = start(dir.path());
    // One batch per fetch: partition 1 still returns records in the poll where
    // partition 0 meets the damage, which is then reported by the next poll.
    let config = GroupConsumerConfig { max_bytes: 300, ..GroupConsumerConfig::new("readers", &[TOPIC]) };
    let mut consumer = GroupConsumer::join(broker.client().await, config).await.unwrap();
    let mut read: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut skipped = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while read.values().map(Vec::len).sum::<usize>() < 2 * RECORDS as usize - 1 {
        assert!(Instant::now() < deadline, "read {read:?}, skipped {skipped:?}");
        match consumer.poll().await {
            Ok(records) => {
                for r in records {
                    read.entry(r.partition).or_default().push(text(&r.record));
                }
            }
            Err(err) => {
                let range = err.damaged().unwrap_or_else(|| panic!("unexpected error {err}"));
                assert_eq!(consumer.position(TOPIC, 0), Some(range.first_offset));
                skipped.push((range.first_offset, range.next_offset));
                assert!(consumer.seek(TOPIC, 0, range.next_offset));
            }
        }
    }
    assert_eq!(skipped, [(damaged, damaged + 1)]);
    assert_eq!(read[&0], values((0..RECORDS).filter(|o| *o != damaged)));
    assert_eq!(read[&1], values(0..RECORDS));
    consumer.close().await.unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn the_background_scrub_finds_damage_that_no_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    fill(&broker.client().await).await;
    broker.stop().await;
    let all = segments(&partition_dir(dir.path()));
    flip(&all[2].1, 60);

    let mut settings = test_settings(dir.path());
    settings.log.index_interval_bytes = 100;
    settings.storage.scrub_bytes_per_second = 1 << 30;
    let broker = TestBroker::start_with(settings);
    let client = broker.client().await;
    assert!(damaged_of(&client.describe_topic(TOPIC).await.unwrap()).is_empty(), "a clean start trusts the index");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let damaged = damaged_of(&client.describe_topic(TOPIC).await.unwrap());
        if !damaged.is_empty() {
            assert_eq!(damaged, [(all[2].0, all[2].0 + 1)]);
            break;
        }
        assert!(Instant::now() < deadline, "the scrub found nothing");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    broker.stop().await;
}

/// Commits `offset` for `partition` of the topic in `group`, as an admin.
async fn commit(client: &Client, group: &str, partition: u32, offset: i64) {
    let request = CommitOffsetsRequest {
        group_id: group.into(),
        member_id: None,
        generation_id: -1,
        offsets: vec![OffsetCommit { topic: TOPIC.into(), partition: i64::from(partition), offset, metadata: None }],
    };
    let answer: CommitOffsetsResponse = client.request(group_op::COMMIT_OFFSETS, &request).await.unwrap();
    assert_eq!(answer.partitions[0].error_code, 0, "{answer:?}");
}

async fn committed(client: &Client, group: &str) -> BTreeMap<u32, i64> {
    let request =
        FetchOffsetsRequest { group_id: group.into(), partitions: None, member_id: None, generation_id: None };
    let answer: FetchOffsetsResponse = client.request(group_op::FETCH_OFFSETS, &request).await.unwrap();
    answer.offsets.into_iter().map(|o| (o.partition, o.offset)).collect()
}

#[tokio::test]
async fn a_damaged_group_log_keeps_every_readable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let client = broker.client().await;
    client.create_topic(TOPIC, 4, BTreeMap::new()).await.unwrap();
    // One record each in the group's log: 0 at 1, 1 at 1, 2 at 1, 0 at 5, 3 at 7.
    for (partition, offset) in [(0, 1), (1, 1), (2, 1), (0, 5), (3, 7)] {
        commit(&client, "auditors", partition, offset).await;
    }
    broker.stop().await;
    let hex: String = "auditors".bytes().map(|b| format!("{b:02x}")).collect();
    let segment = segments(&dir.path().join("groups").join(hex))[0].1.clone();
    // The commit of partition 1 and the second commit of partition 0.
    flip(&segment, batch_position(&segment, 1) + 60);
    flip(&segment, batch_position(&segment, 3) + 60);

    let broker = start(dir.path());
    let client = broker.client().await;
    let expected: BTreeMap<u32, i64> = [(0, 1), (2, 1), (3, 7)].into();
    assert_eq!(committed(&client, "auditors").await, expected, "each partition's last readable commit");
    let request = GroupRequest { group_id: "auditors".into() };
    let described: DescribeGroupResponse = client.request(group_op::DESCRIBE_GROUP, &request).await.unwrap();
    let lost: Vec<(i64, i64)> = described.damaged.iter().map(|d| (d.first_offset, d.next_offset)).collect();
    assert_eq!(lost, [(1, 2), (3, 4)]);
    // The group goes on: a new commit sticks.
    commit(&client, "auditors", 1, 9).await;
    assert_eq!(committed(&client, "auditors").await[&1], 9);
    broker.stop().await;
}

/// Runs `herald scrub --data-dir DIR`: (exit success, stdout).
fn scrub(data_dir: &Path) -> (bool, String) {
    let output = Command::new(herald_bin()).args(["scrub", "--data-dir"]).arg(data_dir).output().expect("run herald");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn herald_scrub_reports_every_damaged_range_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let client = broker.client().await;
    fill(&client).await;
    commit(&client, "auditors", 0, 3).await;
    broker.stop().await;
    let (ok, out) = scrub(dir.path());
    assert!(ok && out.contains(": 0 damaged ranges"), "{out}");

    let all = segments(&partition_dir(dir.path()));
    flip(&all[1].1, 60);
    let hex: String = "auditors".bytes().map(|b| format!("{b:02x}")).collect();
    let group_segment = segments(&dir.path().join("groups").join(&hex))[0].1.clone();
    flip(&group_segment, 60);
    let before = std::fs::read(&all[1].1).unwrap();
    let (ok, out) = scrub(dir.path());
    assert!(!ok, "damage found is exit status 1: {out}");
    let first = all[1].0;
    assert!(out.contains(&format!("topics/{TOPIC}/0: offsets {first} to {first} damaged")), "{out}");
    assert!(out.contains(&format!("groups/{hex} (group `auditors`): offsets 0 to 0 damaged")), "{out}");
    assert!(out.contains(": 2 damaged ranges"), "{out}");
    assert_eq!(std::fs::read(&all[1].1).unwrap(), before, "nothing changed");
}
