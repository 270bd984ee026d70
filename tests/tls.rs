//! TLS on the client listener, through the real broker and the real client:
//! produce and fetch over TLS (frames larger than the reader's and writer's
//! small-frame paths included), the client certificate's subject as the
//! principal, refused handshakes (no certificate where one is required, one
//! from another CA, a plaintext client, garbage) that leave the broker
//! serving, and the reload on SIGHUP. Certificates are made here with rcgen.

mod common;

use std::path::Path;
use std::time::Duration;

use common::http::{get, value as metric};
use common::tls::Ca;
use common::{read_partition, text, value, BinaryBroker, TestBroker, PATIENCE};
use herald::client::{Client, ConnectOptions, TlsOptions};
use herald::config::ClientAuth;
use rcgen::DnType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TLS broker with the certificates of `ca`, client certificates as `auth` says.
fn tls_broker(ca: &Ca, auth: ClientAuth) -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::test_settings(dir.path());
    let (cert, key) = ca.broker_files();
    settings.security.tls_cert_file = path(&cert);
    settings.security.tls_key_file = path(&key);
    if auth != ClientAuth::None {
        settings.security.tls_client_ca_file = path(&ca.ca_file());
    }
    settings.security.tls_client_auth = auth;
    settings.server.handshake_timeout_ms = 2_000;
    (TestBroker::start_with(settings), dir)
}

fn path(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

fn options(tls: TlsOptions) -> ConnectOptions {
    ConnectOptions::default().tls(tls)
}

async fn connect(addr: std::net::SocketAddr, tls: TlsOptions) -> Result<Client, herald::client::ClientError> {
    Client::connect_with_options(addr, "tls-test", options(tls)).await
}

async fn rejected_tls(broker: &TestBroker) -> f64 {
    let (_, metrics) = get(broker.http_addr(), "/metrics").await;
    metric(&metrics, r#"herald_rejected_frames_total{reason="tls"}"#)
}

#[tokio::test]
async fn records_go_in_and_out_over_tls_small_and_large() {
    let ca = Ca::new("Herald test CA");
    let (broker, _dir) = tls_broker(&ca, ClientAuth::None);
    let client = connect(broker.addr(), ca.trusted()).await.expect("connect over TLS");
    assert_eq!(client.features().principal.as_deref(), Some("User:ANONYMOUS"));
    client.create_topic("secure", 1, Default::default()).await.unwrap();
    // Small frames, then frames past the reader's and writer's 64 KiB
    // small-frame paths (a 1 MiB produce, a fetch answered by a vectored write).
    let large = "x".repeat(1 << 20);
    for i in 0..20 {
        client.produce("secure", Some(0), vec![value(format!("small-{i}"))]).await.unwrap();
    }
    client.produce("secure", Some(0), vec![value(&large)]).await.unwrap();
    client.produce("secure", Some(0), vec![value("after")]).await.unwrap();
    let records = read_partition(&client, "secure", 0, 0).await;
    assert_eq!(records.len(), 22);
    assert_eq!(text(&records[3]), "small-3");
    assert_eq!(text(&records[20]).len(), large.len());
    assert!(text(&records[20]) == large, "the large record came back changed");
    assert_eq!(text(&records[21]), "after");
    // By host name too: the broker's certificate names localhost.
    let named = Client::connect_with_options(
        ("localhost", broker.addr().port()),
        "tls-test",
        options(ca.trusted().server_name("localhost")),
    )
    .await
    .expect("connect by name");
    assert_eq!(read_partition(&named, "secure", 0, 21).await.len(), 1);
    broker.stop().await;
}

#[tokio::test]
async fn a_verified_client_certificate_is_the_principal() {
    let ca = Ca::new("Herald test CA");
    let (broker, _dir) = tls_broker(&ca, ClientAuth::Required);
    let (cert, key) = ca.issue("alice", &[(DnType::OrganizationName, "Example"), (DnType::CommonName, "alice")], false);
    let alice = connect(broker.addr(), ca.trusted().client_cert_files(&cert, &key).unwrap()).await.expect("mTLS");
    assert_eq!(alice.features().principal.as_deref(), Some("User:CN=alice,O=Example"));
    alice.create_topic("mtls", 1, Default::default()).await.unwrap();
    alice.produce("mtls", Some(0), vec![value("hello")]).await.unwrap();
    assert_eq!(text(&read_partition(&alice, "mtls", 0, 0).await[0]), "hello");
    broker.stop().await;
}

#[tokio::test]
async fn a_required_client_certificate_missing_or_from_another_ca_is_refused() {
    let ca = Ca::new("Herald test CA");
    let (broker, _dir) = tls_broker(&ca, ClientAuth::Required);
    let before = rejected_tls(&broker).await;
    let refused = connect(broker.addr(), ca.trusted()).await;
    assert!(refused.is_err(), "a client without a certificate was let in");
    let stranger = Ca::new("Another CA");
    let (cert, key) = stranger.issue("mallory", &[(DnType::CommonName, "mallory")], false);
    let refused = connect(broker.addr(), ca.trusted().client_cert_files(&cert, &key).unwrap()).await;
    assert!(refused.is_err(), "a certificate from another CA was let in");
    let (cert, key) = ca.issue("bob", &[(DnType::CommonName, "bob")], false);
    let bob = connect(broker.addr(), ca.trusted().client_cert_files(&cert, &key).unwrap()).await.unwrap();
    assert_eq!(bob.features().principal.as_deref(), Some("User:CN=bob"));
    assert!(rejected_tls(&broker).await >= before + 2.0);
    broker.stop().await;
}

#[tokio::test]
async fn a_requested_client_certificate_may_be_left_out() {
    let ca = Ca::new("Herald test CA");
    let (broker, _dir) = tls_broker(&ca, ClientAuth::Requested);
    let anonymous = connect(broker.addr(), ca.trusted()).await.expect("no certificate is fine");
    assert_eq!(anonymous.features().principal.as_deref(), Some("User:ANONYMOUS"));
    let (cert, key) = ca.issue("carol", &[(DnType::CommonName, "carol")], false);
    let carol = connect(broker.addr(), ca.trusted().client_cert_files(&cert, &key).unwrap()).await.unwrap();
    assert_eq!(carol.features().principal.as_deref(), Some("User:CN=carol"));
    broker.stop().await;
}

#[tokio::test]
async fn plaintext_and_garbage_on_a_tls_listener_are_refused_and_others_served() {
    let ca = Ca::new("Herald test CA");
    let (broker, _dir) = tls_broker(&ca, ClientAuth::None);
    let served = connect(broker.addr(), ca.trusted()).await.unwrap();
    served.create_topic("others", 1, Default::default()).await.unwrap();
    let before = rejected_tls(&broker).await;

    let timeouts = herald::client::Timeouts { connect: Duration::from_secs(5), request: Duration::from_secs(5) };
    let plain = Client::connect_with(broker.addr(), "plain", timeouts).await;
    assert!(plain.is_err(), "a plaintext client got through a TLS listener");

    for garbage in
        [&b"\x00\x00\x00\x10garbage-frame!!!"[..], &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3][..], &[0xff; 600][..]]
    {
        let mut raw = TcpStream::connect(broker.addr()).await.unwrap();
        raw.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        // The broker closes; it may first send a TLS alert, never a frame.
        let read = tokio::time::timeout(PATIENCE, raw.read_to_end(&mut answer)).await.expect("the broker closes");
        if read.is_ok() && !answer.is_empty() {
            assert_eq!(answer[0], 0x15, "not a TLS alert: {answer:?}");
        }
    }
    served.produce("others", Some(0), vec![value("still served")]).await.unwrap();
    let fresh = connect(broker.addr(), ca.trusted()).await.unwrap();
    assert_eq!(text(&read_partition(&fresh, "others", 0, 0).await[0]), "still served");
    assert!(rejected_tls(&broker).await >= before + 4.0);
    broker.stop().await;
}

#[tokio::test]
async fn a_client_that_trusts_another_ca_refuses_the_broker() {
    let ca = Ca::new("Herald test CA");
    let (broker, _dir) = tls_broker(&ca, ClientAuth::None);
    let other = Ca::new("Another CA");
    assert!(connect(broker.addr(), other.trusted()).await.is_err());
    broker.stop().await;
}

fn sighup(broker: &BinaryBroker) {
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(broker.pid() as i32, libc::SIGHUP) }, 0);
}

#[tokio::test]
async fn sighup_reloads_the_certificate_keeping_open_connections_and_a_bad_reload_keeps_the_old() {
    let root = tempfile::tempdir().unwrap();
    let first = Ca::new("First CA");
    let (cert, key) = first.broker_files();
    let (cert_file, key_file) = (root.path().join("broker.pem"), root.path().join("broker-key.pem"));
    std::fs::copy(&cert, &cert_file).unwrap();
    std::fs::copy(&key, &key_file).unwrap();
    let mut broker = BinaryBroker::start_with(root.path(), |command| {
        command.env("HERALD_SECURITY__TLS_CERT_FILE", &cert_file).env("HERALD_SECURITY__TLS_KEY_FILE", &key_file);
    });
    let open = connect(broker.addr(), first.trusted()).await.expect("connect with the first certificate");
    open.create_topic("reload", 1, Default::default()).await.unwrap();

    let second = Ca::new("Second CA");
    let (cert, key) = second.broker_files();
    std::fs::copy(&cert, &cert_file).unwrap();
    std::fs::copy(&key, &key_file).unwrap();
    sighup(&broker);
    broker.wait_for_line("TLS files reloaded");
    open.produce("reload", Some(0), vec![value("kept open")]).await.expect("the open connection keeps working");
    assert!(connect(broker.addr(), first.trusted()).await.is_err(), "a new connection got the old certificate");
    let renewed = connect(broker.addr(), second.trusted()).await.expect("a new connection gets the new certificate");
    assert_eq!(text(&read_partition(&renewed, "reload", 0, 0).await[0]), "kept open");

    std::fs::write(&cert_file, "not a certificate").unwrap();
    sighup(&broker);
    broker.wait_for_line("TLS reload failed");
    let still = connect(broker.addr(), second.trusted()).await.expect("a bad reload keeps the certificate in use");
    assert_eq!(read_partition(&still, "reload", 0, 0).await.len(), 1);
    open.produce("reload", Some(0), vec![value("still open")]).await.unwrap();
    drop((open, renewed, still));
    assert!(broker.terminate().success());
}

#[tokio::test]
async fn the_cli_speaks_tls_with_its_flags() {
    let ca = Ca::new("Herald test CA");
    let (broker, _dir) = tls_broker(&ca, ClientAuth::Required);
    let (cert, key) = ca.issue("cli", &[(DnType::CommonName, "cli")], false);
    let address = broker.addr().to_string();
    let status = |args: &[&std::ffi::OsStr]| -> std::process::Output {
        std::process::Command::new(common::herald_bin())
            .args(["status", "--timeout-ms", "5000", "-b", &address])
            .args(args)
            .output()
            .expect("run herald status")
    };
    // The broker runs on its own thread: the CLI may block this one.
    let ca_file = ca.ca_file();
    let flags = [
        "--tls-ca".as_ref(),
        ca_file.as_os_str(),
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ];
    let over_tls = status(&flags);
    assert!(over_tls.status.success(), "{}", String::from_utf8_lossy(&over_tls.stderr));
    assert_eq!(status(&flags[..2]).status.code(), Some(3), "let in without a client certificate");
    assert_eq!(status(&[]).status.code(), Some(3), "a plaintext CLI got through");
    broker.stop().await;
}

#[tokio::test]
async fn a_client_silent_in_the_tls_handshake_is_closed_at_the_handshake_deadline() {
    let ca = Ca::new("Herald test CA");
    let (broker, _dir) = tls_broker(&ca, ClientAuth::None);
    let before = rejected_tls(&broker).await;
    let started = std::time::Instant::now();
    let mut silent = TcpStream::connect(broker.addr()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, silent.read_to_end(&mut answer)).await.expect("the broker closes");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1_900), "closed after {waited:?}, before handshake_timeout_ms");
    assert!(answer.is_empty());
    assert!(rejected_tls(&broker).await >= before + 1.0);
    broker.stop().await;
}
