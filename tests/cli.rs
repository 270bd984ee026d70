//! The `herald` command line against a real broker: the quick start of the
//! README, JSON output, consumer groups, and one-line errors with a non-zero
//! exit status.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{herald_bin, TestBroker};

/// Runs `herald ARGS --broker ADDR` with `stdin` as standard input.
fn herald(broker: &TestBroker, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(herald_bin())
        .args(args)
        .args(["--broker", &broker.addr().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run herald");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("herald finished")
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn the_quick_start_works_end_to_end() {
    let broker = TestBroker::start();
    ok(herald(&broker, &["topic", "create", "orders", "--partitions", "3"], ""));
    let lines: String = (1..=300).map(|i| format!("key{}:value{i}\n", i % 7)).collect();
    ok(herald(&broker, &["produce", "orders", "--key-separator", ":", "--header", "source=cli"], &lines));

    let out = ok(herald(&broker, &["consume", "orders", "--from-beginning", "--count", "300"], ""));
    let mut values: Vec<&str> = out.lines().collect();
    values.sort_unstable();
    let mut expected: Vec<String> = (1..=300).map(|i| format!("value{i}")).collect();
    expected.sort_unstable();
    assert_eq!(values, expected);

    // Keyed lines land where Kafka's partitioner puts them, in order per key.
    let out = ok(herald(&broker, &["consume", "orders", "--from-beginning", "--count", "300", "--json"], ""));
    let mut last_per_key = std::collections::HashMap::new();
    for line in out.lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        let key = record["key"].as_str().unwrap().to_string();
        let partition = record["partition"].as_u64().unwrap() as u32;
        assert_eq!(partition, herald_actors::partitioner::partition_for_key(key.as_bytes(), 3));
        assert_eq!(record["headers"], serde_json::json!([["source", "cli"]]));
        let n: u32 = record["value"].as_str().unwrap().trim_start_matches("value").parse().unwrap();
        if let Some(previous) = last_per_key.insert(key, n) {
            assert!(n > previous, "records of one key come back in order");
        }
    }

    let described: serde_json::Value =
        serde_json::from_str(&ok(herald(&broker, &["topic", "describe", "orders", "--json"], ""))).unwrap();
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    let total: i64 = partitions.iter().map(|p| p["log_end_offset"].as_i64().unwrap()).sum();
    assert_eq!(total, 300);
    let table = ok(herald(&broker, &["topic", "describe", "orders"], ""));
    assert!(table.contains("LOG-END-OFFSET"), "{table}");
    let listed = ok(herald(&broker, &["topic", "list", "--json"], ""));
    assert!(listed.contains("\"orders\""), "{listed}");
}

#[test]
fn a_group_consumer_commits_what_it_printed_and_describe_shows_kafkas_columns() {
    let broker = TestBroker::start();
    ok(herald(&broker, &["topic", "create", "jobs", "--partitions", "2"], ""));
    let lines: String = (0..100).map(|i| format!("job{i}\n")).collect();
    ok(herald(&broker, &["produce", "jobs", "--partition", "0"], &lines));

    let out = ok(herald(&broker, &["consume", "jobs", "--group", "workers", "--from-beginning", "--count", "60"], ""));
    assert_eq!(out.lines().count(), 60);
    let out = ok(herald(&broker, &["consume", "jobs", "--group", "workers", "--count", "40"], ""));
    let resumed: Vec<&str> = out.lines().collect();
    assert_eq!(resumed.first(), Some(&"job60"), "the second run starts after what the first printed");
    assert_eq!(resumed.len(), 40);

    let table = ok(herald(&broker, &["group", "describe", "workers"], ""));
    for column in
        ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
    {
        assert!(table.contains(column), "{table}");
    }
    let described: serde_json::Value =
        serde_json::from_str(&ok(herald(&broker, &["group", "describe", "workers", "--json"], ""))).unwrap();
    let p0 = described["partitions"].as_array().unwrap().iter().find(|p| p["partition"] == 0).unwrap().clone();
    assert_eq!((p0["current_offset"].as_i64(), p0["lag"].as_i64()), (Some(100), Some(0)));

    let dry = ok(herald(&broker, &["group", "reset-offsets", "workers", "--topic", "jobs", "--to-earliest"], ""));
    assert!(dry.contains("dry run"), "{dry}");
    ok(herald(
        &broker,
        &["group", "reset-offsets", "workers", "--topic", "jobs", "--shift-by", "-10", "--execute"],
        "",
    ));
    let out = ok(herald(&broker, &["consume", "jobs", "--group", "workers", "--count", "10"], ""));
    assert_eq!(out.lines().next(), Some("job90"));
    ok(herald(&broker, &["group", "delete", "workers"], ""));
    assert!(!ok(herald(&broker, &["group", "list"], "")).contains("workers"));
}

#[test]
fn errors_are_one_line_with_a_non_zero_status() {
    let broker = TestBroker::start();
    for args in [
        vec!["topic", "describe", "missing"],
        vec!["topic", "create", "bad/name"],
        vec!["group", "describe", "missing"],
        vec!["produce", "missing"],
    ] {
        let output = herald(&broker, &args, "x\n");
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    }
    let output = herald(&broker, &["topic", "describe", "missing"], "");
    assert!(String::from_utf8_lossy(&output.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION (3)"));
}
