//! File descriptors and connections: the broker raises its open-file limit at
//! start, keeps accepting calmly when it runs out of descriptors (a pause that
//! grows to 1 s between tries, a warning at most once a second), and closes a
//! connection over `server.max_connections` right after accept.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{clock_ticks_per_second, cpu_ticks, test_settings, BinaryBroker, TestBroker, PATIENCE};
use herald::client::Client;

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_and_logged() {
    let root = tempfile::tempdir().unwrap();
    let mut broker = BinaryBroker::start_with(root.path(), |command| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: 256, rlim_max: 4096 };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let line = broker.wait_for_line("open file limit");
    assert!(line.contains("was=256") && line.contains("now=4096") && line.contains("hard=4096"), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", broker.pid())).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(open_files.split_whitespace().collect::<Vec<_>>()[3..5], ["4096", "4096"], "{open_files}");
    // 4,096 cannot hold the default 10,000 connections and 1,024 segment files.
    let warning = broker.wait_for_line("open file limit is below");
    assert!(warning.contains("short=6992") && warning.contains("max_connections=10000"), "{warning}");
}

#[test]
fn out_of_file_descriptors_the_listener_pauses_instead_of_spinning() {
    let root = tempfile::tempdir().unwrap();
    let broker = BinaryBroker::start_with(root.path(), |command| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: 64, rlim_max: 64 };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    // More connections than the broker has descriptors left: the last ones
    // wait in the listen backlog while accept() fails with EMFILE.
    let streams: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(broker.addr()).unwrap()).collect();
    let deadline = Instant::now() + PATIENCE;
    while !broker.log_text().contains("accept failed") {
        assert!(Instant::now() < deadline, "accept never failed; log:\n{}", broker.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }

    let (lines_before, cpu_before, started) = (broker.log_text().len(), cpu_ticks(broker.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_ticks(broker.pid()) - cpu_before;
    let elapsed = started.elapsed().as_secs_f64();
    let log = broker.log_text();
    let logged = &log[lines_before..];
    let share = cpu as f64 / clock_ticks_per_second() as f64 / elapsed;
    // Spinning on accept() took a whole core and logged megabytes a second.
    assert!(share < 0.1, "the broker used {:.0} % of a core while out of descriptors", share * 100.0);
    let warnings = logged.matches("accept failed").count();
    assert!((1..=5).contains(&warnings), "{warnings} accept warnings in {elapsed:.1} s:\n{logged}");
    assert!(logged.len() < 4096, "{} bytes of log in {elapsed:.1} s", logged.len());
    assert!(logged.contains("suppressed="), "the warning counts the failures not logged:\n{logged}");

    // Descriptors freed, it accepts again.
    drop(streams);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match runtime.block_on(Client::connect(broker.addr(), "after-emfile")) {
            Ok(client) => {
                runtime.block_on(client.list_topics()).expect("list topics after descriptors came back");
                break;
            }
            Err(err) => assert!(Instant::now() < deadline, "never accepted again: {err}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_over_max_connections_is_closed_unread() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.server.max_connections = 2;
    let broker = TestBroker::start_with(settings);
    let first = Client::connect(broker.addr(), "first").await.unwrap();
    let second = Client::connect(broker.addr(), "second").await.unwrap();

    // The third is closed at once: end of stream (or a reset), no response.
    let mut third = TcpStream::connect(broker.addr()).unwrap();
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 16];
    let started = Instant::now();
    match third.read(&mut buf) {
        Ok(0) => {}
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the connection over the limit was not closed: {other:?}"),
    }
    assert!(started.elapsed() < PATIENCE);
    assert!(Client::connect(broker.addr(), "third").await.is_err(), "a client over the limit was served");
    second.list_topics().await.expect("the connections under the limit are served");

    // A closed connection gives its place back.
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    let again = loop {
        match Client::connect(broker.addr(), "again").await {
            Ok(client) => break client,
            Err(err) => assert!(Instant::now() < deadline, "the freed place was never reused: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    again.list_topics().await.unwrap();
    broker.stop().await;
}
