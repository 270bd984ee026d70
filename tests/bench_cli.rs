//! `herald bench` against the real broker binary: every mode and way of
//! sending reports what it did, consumes exactly what was produced, and reads
//! the broker's CPU from /proc.

mod common;

use std::process::Command;

use common::{herald_bin, BinaryBroker};
use serde_json::Value;

fn bench(broker: &BinaryBroker, args: &[&str]) -> Value {
    let output = Command::new(herald_bin())
        .arg("bench")
        .args(args)
        .args(["--json", "--broker", &broker.addr().to_string()])
        .output()
        .expect("run herald bench");
    assert!(output.status.success(), "bench failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

#[test]
fn every_way_of_sending_produces_every_record_and_consume_reads_them_all() {
    let root = tempfile::tempdir().unwrap();
    let broker = BinaryBroker::start(root.path());
    let mut produced = 0;
    for send_with in ["producer", "requests", "raw"] {
        let report = bench(
            &broker,
            &[
                "--mode",
                "produce",
                "--topic",
                "b",
                "--partitions",
                "3",
                "--records",
                "2500",
                "--record-size",
                "200",
                "--batch-records",
                "300",
                "--in-flight",
                "4",
                "--producers",
                "2",
                "--send-with",
                send_with,
            ],
        );
        let produce = &report["produce"];
        assert_eq!(produce["records"], 2500, "{send_with}: {report}");
        assert_eq!(produce["bytes"], 2500 * 200);
        let samples = produce["latency"]["samples"].as_u64().unwrap();
        // Per record through the Producer, per request otherwise: 1,250 records
        // per producer in batches of at most 300 are 5 requests each.
        assert_eq!(samples, if send_with == "producer" { 2500 } else { 10 }, "{send_with}");
        assert_eq!(report["broker_pid"], broker.pid(), "the broker is found by its port");
        assert!(produce["cpu"]["broker_seconds"].as_f64().is_some());
        produced += 2500;
    }

    let report = bench(&broker, &["--mode", "consume", "--topic", "b", "--consumers", "2"]);
    assert_eq!(report["consume"]["records"], produced);
    assert_eq!(report["consume"]["bytes"], produced * 200);
}

#[test]
fn end_to_end_measures_every_record_and_rtt_needs_no_broker() {
    let root = tempfile::tempdir().unwrap();
    let broker = BinaryBroker::start(root.path());
    let report = bench(
        &broker,
        &["--mode", "e2e", "--records", "600", "--rate", "2000", "--linger-ms", "0", "--partitions", "1"],
    );
    let e2e = &report["e2e"];
    assert_eq!(e2e["latency"]["samples"], 600);
    // 600 records at 2,000/s take at least 0.3 s.
    assert!(e2e["seconds"].as_f64().unwrap() >= 0.29, "{report}");
    assert!(e2e["latency"]["p50_ms"].as_f64().unwrap() > 0.0);

    let output = Command::new(herald_bin())
        .args(["bench", "--mode", "rtt", "--records", "500", "--json", "--broker", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["rtt"]["samples"], 500);
}

#[test]
fn consume_without_a_topic_is_refused_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let broker = BinaryBroker::start(root.path());
    let output = Command::new(herald_bin())
        .args(["bench", "--mode", "consume", "--broker", &broker.addr().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--topic"));
}

#[test]
fn produce_reports_the_brokers_fsyncs_or_why_they_are_unknown() {
    let root = tempfile::tempdir().unwrap();
    let broker = BinaryBroker::start(root.path());
    let http = broker.http_addr().to_string();
    let args = ["--mode", "produce", "--partitions", "1", "--records", "200", "--batch-records", "10"];
    let report =
        bench(&broker, &[&args[..], &["--send-with", "requests", "--in-flight", "1", "--http", &http]].concat());
    let fsyncs = &report["produce"]["fsyncs"];
    // One request at a time, each acknowledged after its fsync (flush =
    // always): 20 requests, at least one fsync each.
    assert!(fsyncs["fsyncs"].as_u64().unwrap() >= 20, "{report}");
    assert!(fsyncs["fsyncs_per_request"].as_f64().unwrap() >= 1.0, "{report}");
    assert!(fsyncs["mean_fsync_ms"].as_f64().is_some(), "{report}");

    // Nothing listens there: the figures are unknown, and the run still succeeds.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let report = bench(&broker, &[&args[..], &["--http", &closed]].concat());
    let note = report["produce"]["fsyncs"]["note"].as_str().unwrap_or_default();
    assert!(note.contains(&closed), "{report}");
}

#[test]
fn scale_mode_produces_to_and_reads_back_every_partition_and_connection() {
    let root = tempfile::tempdir().unwrap();
    let broker = BinaryBroker::start(root.path());
    let args = ["--mode", "scale", "--topics", "4", "--partitions", "3", "--connections", "20"];
    let first = bench(&broker, &args);
    let scale = &first["scale"];
    assert_eq!(scale["partitions"], 12, "{first}");
    assert_eq!(scale["created_topics"], 4);
    assert_eq!(scale["checked_records"], 12, "one record per partition, each read back");
    assert_eq!(scale["connection_latency"]["samples"], 20);

    // Again on the same topics: they are kept, and every earlier record
    // (12 and one per connection) is read back with the new ones.
    let again = bench(&broker, &args);
    assert_eq!(again["scale"]["created_topics"], 0, "{again}");
    assert_eq!(again["scale"]["checked_records"], 12 + 20 + 12);
}

#[test]
fn compressed_text_takes_fewer_bytes_on_the_wire_and_on_disk_than_random_bytes() {
    let root = tempfile::tempdir().unwrap();
    let broker = BinaryBroker::start(root.path());
    let http = broker.http_addr().to_string();
    let per_record = |report: &Value, phase: &str, place: &str| {
        report[phase]["traffic"][format!("{place}_bytes_per_record")].as_f64().unwrap_or_else(|| panic!("{report}"))
    };
    let mut sizes = Vec::new();
    for (send_with, compression, payload) in [
        ("requests", "none", "random"),
        ("producer", "zstd", "text"),
        ("requests", "lz4", "text"),
        ("raw", "zstd", "text"),
    ] {
        let topic = format!("{send_with}-{compression}-{payload}");
        let produce = bench(
            &broker,
            &[
                "--mode",
                "all",
                "--topic",
                &topic,
                "--partitions",
                "1",
                "--records",
                "2000",
                "--record-size",
                "1000",
                "--batch-records",
                "500",
                "--send-with",
                send_with,
                "--compression",
                compression,
                "--payload",
                payload,
                "--http",
                &http,
            ],
        );
        assert_eq!(produce["compression"], compression);
        assert_eq!(produce["consume"]["records"], 2000, "{produce}");
        assert_eq!(produce["consume"]["bytes"], 2000 * 1000, "every value read back whole");
        let (wire, disk) = (per_record(&produce, "produce", "wire"), per_record(&produce, "produce", "disk"));
        // A batch header and each record's framing on top of the value; the
        // disk adds the indexes.
        assert!(wire >= disk * 0.9 && disk >= wire, "{produce}");
        assert_eq!(per_record(&produce, "consume", "wire"), wire, "served as stored: {produce}");
        sizes.push(wire);
    }
    let random = sizes[0];
    assert!(random > 1000.0 && random < 1100.0, "random bytes do not compress: {sizes:?}");
    assert!(sizes[1..].iter().all(|&compressed| compressed < random / 2.5), "{sizes:?}");
}

#[test]
fn an_unknown_codec_is_refused_with_the_known_ones() {
    let output = Command::new(herald_bin())
        .args(["bench", "--mode", "rtt", "--compression", "gzip", "--broker", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("none, lz4 or zstd"));
}
