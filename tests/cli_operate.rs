//! The command line as an operator uses it ([operate] findings): stopping a
//! consumer with a signal commits what it printed, keyless lines spread over
//! the partitions, a broker that never answers times out, and one bad line of
//! standard input does not reject the others.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{herald_bin, TestBroker};

fn herald(broker: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(herald_bin())
        .args(args)
        .args(["--broker", broker])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run herald");
    // A command that fails early (a usage error) may exit before reading.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("herald finished")
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn spawn_consumer(broker: &str, args: &[&str]) -> Child {
    Command::new(herald_bin())
        .arg("consume")
        .args(args)
        .args(["--broker", broker])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run herald consume")
}

/// Runs `herald ARGS` until its output holds every one of `wanted` (10 s at most).
fn wait_for_output(broker: &str, args: &[&str], wanted: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ok(herald(broker, args, b""));
        if wanted.iter().all(|w| out.contains(w)) {
            return;
        }
        assert!(Instant::now() < deadline, "{args:?} never showed {wanted:?}: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

#[test]
fn a_group_consumer_stopped_by_sigint_or_sigterm_commits_what_it_printed_and_leaves() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["topic", "create", "work", "--partitions", "3"], b""));
    let total = 20_000;
    let lines: String = (0..total).map(|i| format!("job{i}\n")).collect();
    ok(herald(&addr, &["produce", "work", "--partitioner", "roundrobin"], lines.as_bytes()));

    let mut seen = Vec::new();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut child = spawn_consumer(&addr, &["work", "--group", "g", "--from-beginning"]);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        for _ in 0..250 {
            line.clear();
            out.read_line(&mut line).unwrap();
            seen.push(line.trim_end().to_string());
        }
        signal(&child, sig);
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        seen.extend(rest.lines().map(str::to_string));
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(status.success(), "signal {sig}: exit {status:?}: {stderr}");
    }
    // The rest, by a third member: nothing printed twice, nothing missed.
    let rest = ok(herald(&addr, &["consume", "work", "--group", "g", "--idle-timeout-ms", "1500"], b""));
    seen.extend(rest.lines().map(str::to_string));
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), total, "every record printed");
    assert_eq!(seen.len(), total, "no record printed twice");

    // The stopped members left: the group is empty.
    let described: serde_json::Value =
        serde_json::from_str(&ok(herald(&addr, &["group", "describe", "g", "--json"], b""))).unwrap();
    assert_eq!(described["members"].as_array().map(Vec::len), Some(0), "{described}");
}

#[test]
fn a_plain_consumer_and_a_producer_stop_cleanly_on_sigint() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["topic", "create", "t", "--partitions", "1"], b""));
    let mut child = spawn_consumer(&addr, &["t"]);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGINT);
    assert!(child.wait().unwrap().success());

    // A producer reading a terminal that never closes: what it read is sent.
    let mut producer = Command::new(herald_bin())
        .args(["produce", "t", "--broker", &addr])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal(&producer, libc::SIGINT);
    let output = producer.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    drop(stdin);
    let out = ok(herald(&addr, &["consume", "t", "--from-beginning", "--count", "2"], b""));
    assert_eq!(out, "one\ntwo\n");
}

#[test]
fn keyless_lines_spread_over_every_partition() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    let lines: String = (0..10_000).map(|i| format!("line-{i}\n")).collect();
    let counts = |topic: &str| -> Vec<i64> {
        let described: serde_json::Value =
            serde_json::from_str(&ok(herald(&addr, &["topic", "describe", topic, "--json"], b""))).unwrap();
        described["partitions"].as_array().unwrap().iter().map(|p| p["log_end_offset"].as_i64().unwrap()).collect()
    };

    ok(herald(&addr, &["topic", "create", "sticky", "--partitions", "6"], b""));
    ok(herald(&addr, &["produce", "sticky"], lines.as_bytes()));
    let sticky = counts("sticky");
    assert_eq!(sticky.iter().sum::<i64>(), 10_000);
    assert!(sticky.iter().all(|n| *n >= 600), "the default spreads a few thousand records: {sticky:?}");

    ok(herald(&addr, &["topic", "create", "rr", "--partitions", "6"], b""));
    ok(herald(&addr, &["produce", "rr", "--partitioner", "roundrobin"], lines.as_bytes()));
    let rr = counts("rr");
    assert!(rr.iter().all(|n| (1666..=1667).contains(n)), "round robin: {rr:?}");

    let output = herald(&addr, &["produce", "rr", "--partitioner", "random"], b"x\n");
    assert!(!output.status.success());
}

#[test]
fn a_broker_that_accepts_but_never_answers_times_out_with_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let _held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let started = Instant::now();
    let output = herald(&addr, &["topic", "list", "--timeout-ms", "700"], b"");
    let elapsed = started.elapsed();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("did not answer") && stderr.contains("700 ms"), "{stderr}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn a_line_that_is_not_utf8_is_reported_by_number_and_the_others_are_sent() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["topic", "create", "t", "--partitions", "1"], b""));
    let output = herald(&addr, &["produce", "t"], b"first\n\xff\xfe\nthird\n");
    assert_eq!(output.status.code(), Some(1), "a skipped line is an error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2") && stderr.contains("UTF-8") && stderr.contains("--binary"), "{stderr}");
    let out = ok(herald(&addr, &["consume", "t", "--from-beginning", "--count", "2"], b""));
    assert_eq!(out, "first\nthird\n");

    // --binary sends every line as raw bytes.
    ok(herald(&addr, &["produce", "t", "--binary"], b"\xff\xfe\n"));
    let out = herald(&addr, &["consume", "t", "--offset", "2", "--count", "1", "--format", "{value:hex}"], b"");
    assert_eq!(ok(out), "fffe\n");
}

#[test]
fn consume_json_keeps_repeated_headers_binary_bytes_and_tombstones() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = broker.client().await;
        client.create_topic("t", 1, Default::default()).await.unwrap();
        let records = vec![
            herald::protocol::WireRecord {
                key: Some(bytes::Bytes::from_static(b"\xff\x01")),
                value: Some(bytes::Bytes::from_static(b"text")),
                headers: vec![
                    ("a".into(), bytes::Bytes::from_static(b"1")),
                    ("a".into(), bytes::Bytes::from_static(b"2")),
                ],
                timestamp: None,
            },
            herald::protocol::WireRecord {
                key: Some(bytes::Bytes::from_static(b"k")),
                value: None,
                headers: vec![],
                timestamp: None,
            },
        ];
        client.produce("t", Some(0), records).await.unwrap();
    });
    let out = ok(herald(&addr, &["consume", "t", "--from-beginning", "--count", "2", "--json"], b""));
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["headers"], serde_json::json!([["a", "1"], ["a", "2"]]));
    assert_eq!(lines[0]["key"], serde_json::json!({ "base64": "/wE=" }));
    assert_eq!(lines[0]["value"], "text");
    assert_eq!(lines[1]["value"], serde_json::Value::Null, "a tombstone is null");
    let out =
        ok(herald(&addr, &["consume", "t", "--from-beginning", "--count", "2", "--json", "--encoding", "hex"], b""));
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!((first["key"].as_str(), first["encoding"].as_str()), (Some("ff01"), Some("hex")));
    let out =
        ok(herald(&addr, &["consume", "t", "--from-beginning", "--count", "2", "--format", "{key:hex} {value}"], b""));
    assert_eq!(out, "ff01 text\n6b null\n");

    let output = herald(&addr, &["consume", "t", "--format", "{valu}"], b"");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown placeholder `{valu}`"));
}

#[test]
fn an_oversize_line_and_a_missing_partition_are_named_even_with_acks_0() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["topic", "create", "t", "--partitions", "3"], b""));
    let mut line = vec![b'x'; 17 << 20];
    line.push(b'\n');
    let output = herald(&addr, &["produce", "t"], &line);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FRAME_TOO_LARGE (1002)") && stderr.contains("16777216"), "{stderr}");

    let output = herald(&addr, &["produce", "t", "--acks", "0", "--partition", "99"], b"x\n");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("UNKNOWN_TOPIC_OR_PARTITION (3)") && stderr.contains("no partition 99"), "{stderr}");
}

#[test]
fn a_group_consumer_of_an_unknown_topic_fails_and_leaves_no_group() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    let output = herald(&addr, &["consume", "nope", "--group", "g", "--idle-timeout-ms", "500"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION (3)"));
    let groups: serde_json::Value =
        serde_json::from_str(&ok(herald(&addr, &["group", "list", "--json"], b""))).unwrap();
    assert_eq!(groups, serde_json::json!([]), "no group was made");
}

#[test]
fn a_plain_consumer_survives_a_broker_restart_and_reads_added_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_in(dir.path());
    let addr = broker.addr();
    ok(herald(&addr.to_string(), &["topic", "create", "t", "--partitions", "1"], b""));
    ok(herald(&addr.to_string(), &["produce", "t"], b"before\n"));
    let mut child = spawn_consumer(&addr.to_string(), &["t", "--from-beginning", "--count", "3"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "before\n");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(broker.stop());
    let broker = TestBroker::start_on(dir.path(), addr.port());
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["produce", "t"], b"after restart\n"));
    ok(herald(&addr, &["topic", "add-partitions", "t", "--partitions", "2"], b""));
    ok(herald(&addr, &["produce", "t", "--partition", "1"], b"in the new partition\n"));

    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut lines: Vec<&str> = rest.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, vec!["after restart", "in the new partition"]);
    assert!(child.wait().unwrap().success());
}

#[test]
fn broker_logs_are_plain_text_on_a_pipe_and_name_mistyped_variables_and_a_new_directory() {
    let root = tempfile::tempdir().unwrap();
    let mut broker = common::BinaryBroker::start_with(root.path(), |command| {
        command.env("HERALD_SERVER_PORT", "1");
    });
    let warning = broker.wait_for_line("HERALD_SERVER_PORT");
    assert!(warning.contains("WARN") && warning.contains("HERALD_SERVER__PORT"), "{warning}");
    let opened = broker.wait_for_line("opened data directory");
    assert!(opened.contains("start=new"), "a new directory is not a crash: {opened}");
    assert!(!broker.log_text().contains('\x1b'), "no colour codes when standard error is not a terminal");
}

#[test]
fn a_second_consumer_with_the_same_instance_id_fences_the_first_which_exits_with_an_error() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["topic", "create", "t", "--partitions", "1"], b""));
    ok(herald(&addr, &["produce", "t"], b"one\n"));
    let args = ["t", "--group", "g", "--group-instance-id", "worker-1", "--from-beginning"];
    let mut first = spawn_consumer(&addr, &args);
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "one\n", "the first member runs");

    let second = spawn_consumer(&addr, &args);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the fenced member kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    first.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FENCED_INSTANCE_ID (82)") && stderr.contains("worker-1"), "{stderr}");

    // The newer member stays, and stops cleanly.
    std::thread::sleep(Duration::from_millis(500));
    let mut second = second;
    assert!(second.try_wait().unwrap().is_none(), "the newer member keeps running");
    signal(&second, libc::SIGTERM);
    assert!(second.wait().unwrap().success());
}

#[test]
fn scripting_flags_and_exit_statuses() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    let out = ok(herald(&addr, &["topic", "create", "t", "--partitions", "1"], b""));
    assert_eq!(out, "created topic t with 1 partition\n");
    let again = herald(&addr, &["topic", "create", "t"], b"");
    assert_eq!(again.status.code(), Some(1), "the broker refused: status 1");
    assert_eq!(ok(herald(&addr, &["topic", "create", "t", "--if-not-exists"], b"")), "topic t already exists\n");
    assert_eq!(ok(herald(&addr, &["topic", "delete", "nope", "--if-exists"], b"")), "no topic nope\n");
    assert_eq!(ok(herald(&addr, &["group", "delete", "nope", "--if-exists"], b"")), "no group nope\n");

    // 2: usage, from clap and from the commands' own checks.
    assert_eq!(herald(&addr, &["topic", "create"], b"").status.code(), Some(2));
    assert_eq!(herald(&addr, &["consume", "t", "--format", "{nope}"], b"").status.code(), Some(2));
    assert_eq!(herald(&addr, &["produce", "t", "--acks", "2"], b"x\n").status.code(), Some(2));
    // 3: the broker cannot be reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    assert_eq!(herald(&closed, &["topic", "list"], b"").status.code(), Some(3));

    // --offset N, start, end, -N, @MS.
    let lines: String = (0..10).map(|i| format!("r{i}\n")).collect();
    ok(herald(&addr, &["produce", "t"], lines.as_bytes()));
    let read =
        |offset: &str, count: &str| ok(herald(&addr, &["consume", "t", "--offset", offset, "--count", count], b""));
    assert_eq!(read("-3", "3"), "r7\nr8\nr9\n");
    assert_eq!(read("-30", "1"), "r0\n", "never before the start");
    assert_eq!(read("start", "1"), "r0\n");
    assert_eq!(read("4", "1"), "r4\n");
    assert_eq!(read("@0", "1"), "r0\n");
    assert_eq!(herald(&addr, &["consume", "t", "--offset", "soon"], b"").status.code(), Some(2));

    // --client-id reaches the broker: group describe shows it.
    ok(herald(
        &addr,
        &["consume", "t", "--group", "g", "--from-beginning", "--count", "1", "--client-id", "billing-7"],
        b"",
    ));
    let mut member = spawn_consumer(&addr, &["t", "--group", "g", "--client-id", "billing-7"]);
    wait_for_output(&addr, &["group", "describe", "g"], &["billing-7"]);
    signal(&member, libc::SIGTERM);
    assert!(member.wait().unwrap().success());
}

#[test]
fn bench_removes_the_topic_it_made() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["bench", "--records", "200", "--partitions", "1", "--json"], b""));
    let topics: serde_json::Value =
        serde_json::from_str(&ok(herald(&addr, &["topic", "list", "--json"], b""))).unwrap();
    assert_eq!(topics, serde_json::json!([]));
    ok(herald(&addr, &["bench", "--records", "200", "--partitions", "1", "--topic", "kept", "--json"], b""));
    let topics = ok(herald(&addr, &["topic", "list", "--json"], b""));
    assert!(topics.contains("\"kept\""), "a named topic stays: {topics}");
}

#[test]
fn group_reset_offsets_by_time_and_for_all_topics_and_describe_views() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    for topic in ["a", "b"] {
        ok(herald(&addr, &["topic", "create", topic, "--partitions", "1"], b""));
        ok(herald(&addr, &["produce", topic], b"1\n2\n3\n"));
        ok(herald(&addr, &["consume", topic, "--group", "g", "--from-beginning", "--count", "3"], b""));
    }
    let plan = |args: &[&str]| -> Vec<(String, i64)> {
        let mut all = vec!["group", "reset-offsets", "g", "--json"];
        all.extend_from_slice(args);
        let out: serde_json::Value = serde_json::from_str(&ok(herald(&addr, &all, b""))).unwrap();
        out["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["topic"].as_str().unwrap().to_string(), o["new_offset"].as_i64().unwrap()))
            .collect()
    };
    assert_eq!(plan(&["--all-topics", "--by-duration", "1h"]), vec![("a".into(), 0), ("b".into(), 0)]);
    assert_eq!(plan(&["--topic", "a", "--to-datetime", "2999-01-01T00:00:00Z"]), vec![("a".into(), 3)]);
    assert_eq!(plan(&["--all-topics", "--to-earliest", "--execute"]), vec![("a".into(), 0), ("b".into(), 0)]);
    let out = ok(herald(&addr, &["consume", "b", "--group", "g", "--count", "1"], b""));
    assert_eq!(out, "1\n", "the executed reset moved b back to its start");
    let bad = herald(&addr, &["group", "reset-offsets", "g", "--topic", "a", "--to-datetime", "yesterday"], b"");
    assert_eq!(bad.status.code(), Some(2));

    let state = ok(herald(&addr, &["group", "describe", "g", "--state"], b""));
    assert!(state.starts_with("GROUP") && state.contains("STATE") && state.contains("GENERATION"), "{state}");
    let mut member = spawn_consumer(&addr, &["a", "--group", "g", "--client-id", "lister"]);
    wait_for_output(&addr, &["group", "describe", "g", "--members"], &["lister", "a(0)"]);
    signal(&member, libc::SIGTERM);
    assert!(member.wait().unwrap().success());
}

#[test]
fn json_output_names_things_the_same_way_in_every_command() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["topic", "create", "t", "--partitions", "1"], b""));
    ok(herald(&addr, &["produce", "t"], b"x\n"));
    ok(herald(&addr, &["consume", "t", "--group", "g", "--from-beginning", "--count", "1"], b""));
    let json = |args: &[&str]| -> serde_json::Value { serde_json::from_str(&ok(herald(&addr, args, b""))).unwrap() };
    assert_eq!(json(&["group", "list", "--json"])[0]["group"], "g");
    assert_eq!(json(&["group", "describe", "g", "--json"])["group"], "g");
    assert_eq!(json(&["group", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--json"])["group"], "g");
    assert_eq!(json(&["topic", "list", "--json"])[0]["topic"], "t");
    assert_eq!(json(&["topic", "describe", "t", "--json"])["topic"], "t");
    let consumed = json(&["consume", "t", "--from-beginning", "--count", "1", "--json"]);
    assert_eq!((consumed["topic"].as_str(), consumed["partition"].as_u64()), (Some("t"), Some(0)));
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = Command::new(herald_bin()).args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains("reset-offsets") && script.contains("partitioner"), "{shell}: every command and flag");
    }
    let output = Command::new(herald_bin()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn the_deployment_config_starts_a_broker_that_logs_json() {
    let root = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/herald.toml");
    // The systemd unit's and the container's command line, with the test's
    // own address and directory as flags (flags win over the file).
    let mut broker = common::BinaryBroker::start_with(root.path(), |command| {
        command.args(["--config", config]).env_remove("RUST_LOG");
    });
    let settings = broker.wait_for_line("settings");
    let line: serde_json::Value = serde_json::from_str(&settings).expect("JSON log lines");
    assert!(line["fields"]["message"].as_str().unwrap().contains(config), "{settings}");
    let client_ok = ok(herald(&broker.addr().to_string(), &["topic", "list", "--json"], b""));
    assert_eq!(client_ok, "[]\n");
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/herald.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/herald serve --config /etc/herald/herald.toml"));
}

#[test]
fn status_tells_whether_the_broker_serves_and_sums_up_its_topics_and_groups() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["topic", "create", "t", "--partitions", "3"], b""));
    ok(herald(&addr, &["produce", "t"], b"x\n"));
    ok(herald(&addr, &["consume", "t", "--group", "g", "--from-beginning", "--count", "1"], b""));
    let out = ok(herald(&addr, &["status"], b""));
    assert!(out.contains("serving") && out.contains("topics: 1 with 3 partitions; damaged: none"), "{out}");
    assert!(out.contains("groups: 1 with 0 members"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(herald(&addr, &["status", "--json"], b""))).unwrap();
    assert_eq!((json["status"].as_str(), json["partitions"].as_u64()), (Some("serving"), Some(3)));
    drop(broker);
    let down = herald(&addr, &["status", "--timeout-ms", "500"], b"");
    assert_eq!(down.status.code(), Some(3), "{}", String::from_utf8_lossy(&down.stderr));
}
