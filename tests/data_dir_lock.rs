//! One data directory, one broker: the real `herald` binary holds an exclusive
//! lock on its data directory for its whole life. A second broker on the same
//! directory is refused with a one-line message naming the directory and the
//! holder's pid, and the lock goes with the holder, after SIGTERM as after
//! SIGKILL.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::{herald_bin, read_partition, text, value, BinaryBroker, PATIENCE};
use tokio::task::block_in_place;

/// Runs a second `herald serve` on `root`'s data directory and returns what it
/// printed once it exits; a second broker that serves instead is killed and
/// fails the test.
fn second_broker(root: &Path) -> Output {
    let mut child = Command::new(herald_bin())
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(root.join("data"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second herald serve");
    let deadline = Instant::now() + PATIENCE;
    // Exiting is an event the standard library cannot wait on with a deadline.
    while child.try_wait().expect("poll the second broker").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("reap the second broker");
            panic!("a second broker served the same data directory:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect the second broker's output")
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
    let lines: Vec<&str> = stderr.lines().collect();
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
