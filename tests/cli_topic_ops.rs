//! `herald topic alter-config` and `herald topic trim` as an operator runs
//! them: text and `--json` output, `--dry-run`, and the exit statuses (1 for a
//! refusal by the broker, 2 for a usage error).

mod common;

use std::process::{Command, Output, Stdio};

use common::{herald_bin, TestBroker};

fn herald(broker: &str, args: &[&str]) -> Output {
    Command::new(herald_bin()).args(args).args(["--broker", broker]).stdin(Stdio::null()).output().expect("run herald")
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn fails(output: Output, status: i32) -> String {
    assert_eq!(output.status.code(), Some(status), "stdout: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8(output.stderr).expect("UTF-8 output")
}

fn json(output: Output) -> serde_json::Value {
    serde_json::from_str(&ok(output)).expect("JSON output")
}

#[test]
fn alter_config_prints_the_effective_config_and_dry_run_changes_nothing() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["topic", "create", "t", "--config", "segment_ms=60000"]));

    let args = ["topic", "alter-config", "t", "--set", "retention_ms=120000", "--delete", "segment_ms"];
    let out = ok(herald(&addr, &args));
    assert!(out.starts_with("altered topic t\n"), "{out}");
    assert!(out.contains("retention_ms=120000") && out.contains("segment_ms=604800000"), "{out}");
    let described = json(herald(&addr, &["topic", "describe", "t", "--json"]));
    assert_eq!(described["config"]["retention_ms"], "120000");

    let dry = json(herald(
        &addr,
        &["topic", "alter-config", "t", "--set", "message_timestamp_type=LogAppendTime", "--dry-run", "--json"],
    ));
    assert_eq!(dry["topic"], "t");
    assert_eq!(dry["executed"], false);
    assert_eq!(dry["config"]["message_timestamp_type"], "LogAppendTime");
    assert_eq!(dry["config"]["retention_ms"], "120000", "values print as describe --json prints them");
    let described = json(herald(&addr, &["topic", "describe", "t", "--json"]));
    assert_eq!(described["config"]["message_timestamp_type"], "CreateTime");

    let applied = json(herald(&addr, &["topic", "alter-config", "t", "--set", "retention_bytes=4096", "--json"]));
    assert_eq!(
        (applied["executed"].clone(), applied["config"]["retention_bytes"].clone()),
        (true.into(), "4096".into())
    );

    let err = fails(herald(&addr, &["topic", "alter-config", "t", "--set", "colour=blue"]), 1);
    assert!(err.contains("colour"), "{err}");
    assert!(fails(herald(&addr, &["topic", "alter-config", "nope", "--set", "retention_ms=1"]), 1).contains("nope"));
    fails(herald(&addr, &["topic", "alter-config", "t"]), 2);
    fails(herald(&addr, &["topic", "alter-config", "t", "--set", "retention_ms"]), 2);
}

#[test]
fn trim_moves_the_start_of_one_partition_or_all_of_them() {
    let broker = TestBroker::start();
    let addr = broker.addr().to_string();
    ok(herald(&addr, &["topic", "create", "t", "--partitions", "2"]));
    let mut produce = Command::new(herald_bin())
        .args(["produce", "t", "--partition", "0", "--broker", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run herald produce");
    std::io::Write::write_all(&mut produce.stdin.take().unwrap(), b"a\nb\nc\nd\ne\nf\n").unwrap();
    assert!(produce.wait().unwrap().success());

    let out = ok(herald(&addr, &["topic", "trim", "t", "--partition", "0", "--before", "4"]));
    assert_eq!(out, "topic t partition 0: log start offset 4\n");
    let described = json(herald(&addr, &["topic", "describe", "t", "--json"]));
    assert_eq!(described["partitions"][0]["log_start_offset"], 4);

    let all = json(herald(&addr, &["topic", "trim", "t", "--all-partitions", "--before", "end", "--json"]));
    assert_eq!(
        all,
        serde_json::json!({"topic": "t", "partitions": [
            {"partition": 0, "log_start_offset": 6},
            {"partition": 1, "log_start_offset": 0},
        ]})
    );

    assert!(fails(herald(&addr, &["topic", "trim", "t", "--partition", "0", "--before", "99"]), 1).contains("99"));
    fails(herald(&addr, &["topic", "trim", "t", "--partition", "0", "--before", "soon"]), 2);
    fails(herald(&addr, &["topic", "trim", "t", "--before", "end"]), 2);
    fails(herald(&addr, &["topic", "trim", "t", "--partition", "0", "--all-partitions", "--before", "end"]), 2);
}
