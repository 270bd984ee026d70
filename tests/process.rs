//! The real `herald` binary as an operator runs it.
//!
//! One data directory, one broker: the broker holds an exclusive lock on its
//! data directory for its whole life. A second broker on the same directory is
//! refused with a one-line message naming the directory and the holder's pid,
//! and the lock goes with the holder, after SIGTERM as after SIGKILL.
//!
//! Logging never takes the broker down: with its stdout and stderr pipes
//! whose readers are gone, it serves, and exits 0 on SIGTERM.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{herald_bin, read_partition, text, value, BinaryBroker, PATIENCE};
use tokio::task::block_in_place;

/// Runs a second `herald serve` on `root`'s data directory and returns what it
/// printed once it exits; a second broker that serves instead is killed and
/// fails the test.
fn second_broker(root: &Path) -> Output {
    let mut child = Command::new(herald_bin())
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--data-dir"])
        .arg(root.join("data"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second herald serve");
    if wait_for_exit(&mut child).is_none() {
        let _ = child.kill();
        let output = child.wait_with_output().expect("reap the second broker");
        panic!("a second broker served the same data directory:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    child.wait_with_output().expect("collect the second broker's output")
}

/// Waits up to [`PATIENCE`] for `child` to exit. Exiting is an event the
/// standard library cannot wait on with a deadline, hence the polling.
fn wait_for_exit(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_a_data_directory_in_use_is_refused_and_the_lock_goes_with_its_holder() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let broker = block_in_place(|| BinaryBroker::start(root.path()));
    let client = broker.client().await;
    client.create_topic("owned", 1, BTreeMap::new()).await.unwrap();
    client.produce("owned", Some(0), vec![value("first")]).await.unwrap();

    let refused = block_in_place(|| second_broker(root.path()));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    // Start-up may log at info level first (the open file limit); the refusal
    // itself is one line.
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains(" INFO ")).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(&data_dir.display().to_string()), "names the directory: {stderr}");
    assert!(lines[0].contains(&format!("pid {}", broker.pid())), "names the holder's pid: {stderr}");
    // The holder is untouched.
    assert_eq!(client.produce("owned", Some(0), vec![value("second")]).await.unwrap()[0].base_offset, 1);

    // A clean stop releases the lock.
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "{status}");
    let broker = block_in_place(|| BinaryBroker::start(root.path()));
    let client = broker.client().await;
    let records = read_partition(&client, "owned", 0, 0).await;
    assert_eq!(records.iter().map(text).collect::<Vec<_>>(), ["first", "second"]);
    // So does SIGKILL: the operating system drops the lock with the process.
    block_in_place(|| broker.kill());
    let broker = block_in_place(|| BinaryBroker::start(root.path()));
    let client = broker.client().await;
    assert_eq!(read_partition(&client, "owned", 0, 0).await.len(), 2);
    let status = block_in_place(|| broker.terminate());
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_stdout_and_stderr_are_closed_pipes_serves_and_exits_zero() {
    let root = tempfile::tempdir().unwrap();
    let port_file = root.path().join("port");
    let mut child = Command::new(herald_bin())
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--http-port", "0", "--data-dir"])
        .arg(root.path().join("data"))
        .arg("--port-file")
        .arg(&port_file)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald serve");
    // Close the read ends: from now on every write to them fails with EPIPE.
    drop(child.stdout.take());
    drop(child.stderr.take());

    let deadline = Instant::now() + PATIENCE;
    let port: u16 = loop {
        if let Ok(port) = std::fs::read_to_string(&port_file) {
            break port.trim().parse().expect("the port file holds a port");
        }
        assert!(child.try_wait().unwrap().is_none(), "the broker exited at start");
        assert!(Instant::now() < deadline, "no port file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Each of these logs (topic created, connections opened and closed) and
    // the broker keeps serving through every failed write of a line.
    let mut client = None;
    while client.is_none() {
        client = herald::client::Client::connect(("127.0.0.1", port), "closed-pipes").await.ok();
        assert!(Instant::now() < deadline, "the broker does not accept connections");
        if client.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let client = client.unwrap();
    client.create_topic("quiet", 2, BTreeMap::new()).await.unwrap();
    for i in 0..20 {
        let other = herald::client::Client::connect(("127.0.0.1", port), "short-lived").await.unwrap();
        other.produce("quiet", Some(i % 2), vec![value(format!("m{i}"))]).await.unwrap();
    }
    assert_eq!(client.create_topic("quiet", 1, BTreeMap::new()).await.unwrap_err().code(), Some(36));
    let records = read_partition(&client, "quiet", 0, 0).await;
    assert_eq!(records.len(), 10);
    drop(client);

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exited = block_in_place(|| wait_for_exit(&mut child));
    let Some(exited) = exited else {
        let _ = child.kill();
        panic!("the broker did not exit after SIGTERM");
    };
    assert!(exited.success(), "SIGTERM exits 0, got {exited}");
}
