//! SCRAM-SHA-256 authentication and the SCRAM users, through the real
//! broker: the Rust client for the exchange as clients run it, raw frames
//! for what a well-behaved client never sends (messages out of order, a
//! replayed final message).

mod common;
mod raw;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::TestBroker;
use herald::client::{Client, ClientError, ConnectOptions, Credentials, ErrorCode};
use herald::config::{Authentication, Settings};
use herald::security::users::UserTable;
use herald_wire::scram::{self, ClientFinal, ClientFirst, ServerFirst, SCRAM_SHA_256};
use raw::{get, request, Raw};
use rmpv::Value;

const DELAY: Duration = Duration::from_millis(300);

fn settings(dir: &Path, authentication: Authentication) -> Settings {
    let mut settings = common::test_settings(dir);
    settings.security.authentication = authentication;
    settings.security.auth_failure_delay_ms = DELAY.as_millis() as u64;
    settings
}

/// A data directory holding user `alice` with password `wonderland`, written
/// as `herald user create --data-dir` writes it.
fn with_alice(dir: &Path) {
    let mut table = UserTable::load(dir).unwrap();
    let salt = scram::random_bytes(scram::SALT_BYTES).unwrap();
    let salted = scram::salted_password("wonderland", &salt, 4096);
    table.upsert("alice", SCRAM_SHA_256, 4096, &salt, &salted).unwrap();
    table.save(dir).unwrap();
}

async fn connect_as(broker: &TestBroker, user: &str, password: &str) -> Result<Client, ClientError> {
    let options = ConnectOptions::default().credentials(Credentials::scram_sha_256(user, password));
    Client::connect_with_options(broker.addr(), "scram-test", options).await
}

fn code(result: Result<Client, ClientError>) -> (Option<i16>, String) {
    let err = result.err().expect("the connect fails");
    (err.code(), err.to_string())
}

fn authenticate(correlation_id: u32, message: &str) -> Vec<u8> {
    request(
        correlation_id,
        "authenticate",
        &[("mechanism", SCRAM_SHA_256.into()), ("auth_bytes", Value::Binary(message.as_bytes().to_vec()))],
    )
}

fn auth_bytes(response: &raw::Response) -> String {
    String::from_utf8(response.field("auth_bytes").as_slice().expect("auth_bytes is bin").to_vec()).unwrap()
}

/// A connection after its handshake and the client-first message of
/// `user`, and the broker's server-first answer.
async fn server_first(addr: std::net::SocketAddr, user: &str) -> (Raw, String) {
    let mut raw = Raw::ready(addr).await;
    raw.send(&authenticate(2, &format!("n,,n={user},r=abc"))).await;
    let answer = raw.response().await;
    answer.assert_ok(2);
    assert_eq!(answer.field("complete"), &Value::Boolean(false));
    assert_eq!(answer.field("principal"), &Value::Nil);
    (raw, auth_bytes(&answer))
}

/// The client-final message for `client_first` and the broker's answer.
fn client_final(client_first: &str, server_first: &str, password: &str) -> String {
    let first = ClientFirst::parse(client_first).unwrap();
    let server = ServerFirst::parse(server_first).unwrap();
    let salted = scram::salted_password(password, &server.salt, server.iterations);
    let mut final_ = ClientFinal { nonce: server.nonce, proof: [0; 32] };
    let auth = scram::auth_message(&first.bare(), server_first, &final_.without_proof());
    final_.proof = scram::client_proof(&salted, &auth);
    final_.message()
}

#[tokio::test]
async fn a_user_authenticates_and_its_principal_is_reported() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    with_alice(dir.path());
    let broker = TestBroker::start_with(settings(dir.path(), Authentication::Required));
    let client = connect_as(&broker, "alice", "wonderland").await.expect("alice authenticates");
    assert_eq!(client.authenticated_as(), Some("User:alice"));
    let auth = &client.features().authentication;
    assert!(auth.required);
    assert_eq!(auth.mechanisms, [SCRAM_SHA_256]);
    client.list_topics().await.expect("an authenticated client is served");
    let again = client.reconnect().await.expect("reconnect authenticates again");
    assert_eq!(again.authenticated_as(), Some("User:alice"));
    again.list_topics().await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_fail_alike_after_the_delay() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    with_alice(dir.path());
    let broker = TestBroker::start_with(settings(dir.path(), Authentication::Required));
    let started = Instant::now();
    let wrong = code(connect_as(&broker, "alice", "looking-glass").await);
    assert!(started.elapsed() >= DELAY, "a failure waits auth_failure_delay_ms");
    let started = Instant::now();
    let unknown = code(connect_as(&broker, "mallory", "wonderland").await);
    assert!(started.elapsed() >= DELAY, "an unknown user waits as long");
    assert_eq!(wrong.0, Some(ErrorCode::SASL_AUTHENTICATION_FAILED.code()), "{}", wrong.1);
    assert_eq!(unknown, wrong, "an unknown user looks exactly like a wrong password");

    // On the wire: the same salt for an unknown name every time, then 58
    // and a close.
    let salt = |m: &str| m.split(',').nth(1).unwrap().to_owned();
    let (_, first) = server_first(broker.addr(), "mallory").await;
    let (mut raw, second) = server_first(broker.addr(), "mallory").await;
    assert_eq!(salt(&first), salt(&second));
    assert_eq!(second.split(',').nth(2), Some("i=4096"));
    raw.send(&authenticate(3, &client_final("n,,n=mallory,r=abc", &second, "x"))).await;
    raw.response().await.assert_error(3, ErrorCode::SASL_AUTHENTICATION_FAILED.code());
    raw.assert_closed().await;
}

#[tokio::test]
async fn a_client_final_message_replayed_on_a_new_connection_fails() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    with_alice(dir.path());
    let broker = TestBroker::start_with(settings(dir.path(), Authentication::Required));
    let first = "n,,n=alice,r=fixed-client-nonce";
    let mut seen = Raw::ready(broker.addr()).await;
    seen.send(&authenticate(2, first)).await;
    let server_first = auth_bytes(&seen.response().await);
    let captured = client_final(first, &server_first, "wonderland");
    seen.send(&authenticate(3, &captured)).await;
    let done = seen.response().await;
    done.assert_ok(3);
    assert_eq!(done.field("principal").as_str(), Some("User:alice"));
    assert!(auth_bytes(&done).starts_with("v="));

    let mut replay = Raw::ready(broker.addr()).await;
    replay.send(&authenticate(2, first)).await;
    replay.response().await.assert_ok(2);
    replay.send(&authenticate(3, &captured)).await;
    let refused = replay.response().await;
    refused.assert_error(3, ErrorCode::SASL_AUTHENTICATION_FAILED.code());
    assert!(refused.header.error_message.unwrap().contains("nonce"));
    replay.assert_closed().await;
}

#[tokio::test]
async fn messages_out_of_order_and_unknown_mechanisms_close_the_connection() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    with_alice(dir.path());
    let broker = TestBroker::start_with(settings(dir.path(), Authentication::None));
    let illegal = ErrorCode::ILLEGAL_SASL_STATE.code();

    let mut final_first = Raw::ready(broker.addr()).await;
    final_first.send(&authenticate(2, "c=biws,r=abc,p=AAAA")).await;
    final_first.response().await.assert_error(2, illegal);
    final_first.assert_closed().await;

    let mut first_twice = Raw::ready(broker.addr()).await;
    first_twice.send(&authenticate(2, "n,,n=alice,r=abc")).await;
    first_twice.response().await.assert_ok(2);
    first_twice.send(&authenticate(3, "n,,n=alice,r=abc")).await;
    first_twice.response().await.assert_error(3, illegal);
    first_twice.assert_closed().await;

    let mut twice = Raw::ready(broker.addr()).await;
    twice.send(&authenticate(2, "n,,n=alice,r=abc")).await;
    let server_first = auth_bytes(&twice.response().await);
    twice.send(&authenticate(3, &client_final("n,,n=alice,r=abc", &server_first, "wonderland"))).await;
    twice.response().await.assert_ok(3);
    twice.send(&authenticate(4, "n,,n=alice,r=abc")).await;
    twice.response().await.assert_error(4, illegal);
    twice.assert_closed().await;

    let mut mechanism = Raw::ready(broker.addr()).await;
    let plain = [("mechanism", "PLAIN".into()), ("auth_bytes", Value::Binary(b"\0alice\0wonderland".to_vec()))];
    mechanism.send(&request(2, "authenticate", &plain)).await;
    mechanism.response().await.assert_error(2, ErrorCode::UNSUPPORTED_SASL_MECHANISM.code());
    mechanism.assert_closed().await;

    let mut before_handshake = Raw::connect(broker.addr()).await;
    before_handshake.send(&authenticate(1, "n,,n=alice,r=abc")).await;
    before_handshake.response().await.assert_error(1, ErrorCode::HANDSHAKE_REQUIRED.code());
}

#[tokio::test]
async fn required_authentication_refuses_other_requests_and_closes() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    with_alice(dir.path());
    let broker = TestBroker::start_with(settings(dir.path(), Authentication::Required));
    let mut raw = Raw::connect(broker.addr()).await;
    raw.send(&raw::handshake(1)).await;
    let handshake = raw.response().await;
    handshake.assert_ok(1);
    let auth = handshake.field("authentication");
    assert_eq!(get(auth, "required"), &Value::Boolean(true));
    assert_eq!(get(auth, "mechanisms"), &Value::Array(vec![SCRAM_SHA_256.into()]));
    raw.send(&request(2, "list_topics", &[])).await;
    let refused = raw.response().await;
    refused.assert_error(2, ErrorCode::SASL_AUTHENTICATION_FAILED.code());
    raw.assert_closed().await;

    let anonymous = broker.client().await;
    let err = anonymous.list_topics().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SASL_AUTHENTICATION_FAILED.code()), "{err}");
    let (_, metrics) = common::http::get(broker.http_addr(), "/metrics").await;
    let refused = common::http::value(&metrics, r#"herald_rejected_frames_total{reason="authentication"}"#);
    assert!(refused >= 2.0, "refusals are counted: {refused}");
}

#[tokio::test]
async fn without_required_authentication_anonymous_clients_are_served() {
    common::init_logging();
    let broker = TestBroker::start();
    let client = broker.client().await;
    assert_eq!(client.authenticated_as(), None);
    assert!(!client.features().authentication.required);
    client.create_topic("open", 1, Default::default()).await.unwrap();
    assert_eq!(client.list_topics().await.unwrap().len(), 1);
}

#[tokio::test]
async fn users_change_online_without_a_restart_and_keep_no_password() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    with_alice(dir.path());
    let broker = TestBroker::start_with(settings(dir.path(), Authentication::Required));
    let admin = connect_as(&broker, "alice", "wonderland").await.unwrap();
    admin.create_user("bob", "builder-pw-123").await.unwrap();
    let bob = connect_as(&broker, "bob", "builder-pw-123").await.expect("a new user, without a restart");
    assert_eq!(bob.authenticated_as(), Some("User:bob"));
    let names: Vec<_> = admin.list_users().await.unwrap().into_iter().map(|u| (u.user, u.iterations)).collect();
    assert_eq!(names, [("alice".to_string(), 4096), ("bob".to_string(), 4096)]);

    let file = std::fs::read(dir.path().join("security/users.json")).unwrap();
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(!text.contains("builder-pw-123") && !text.contains("wonderland"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&file).unwrap();
    let stored = json["users"].as_array().unwrap().iter().find(|u| u["user"] == "bob").unwrap();
    let salt = base64::engine::general_purpose::STANDARD.decode(stored["salt"].as_str().unwrap()).unwrap();
    let salted = scram::salted_password("builder-pw-123", &salt, 4096);
    for encoded in [base64::engine::general_purpose::STANDARD.encode(salted), hex(&salted)] {
        assert!(!text.contains(&encoded), "the salted password is not stored");
    }
    assert!(!file.windows(salted.len()).any(|w| w == salted), "not even as raw bytes");

    admin.delete_user("bob").await.unwrap();
    let (code, _) = self::code(connect_as(&broker, "bob", "builder-pw-123").await);
    assert_eq!(code, Some(ErrorCode::SASL_AUTHENTICATION_FAILED.code()), "a deleted user is refused");
    bob.list_topics().await.expect("a connection it authenticated stays open");
    let err = admin.delete_user("bob").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RESOURCE_NOT_FOUND.code()), "{err}");
    let err = admin.create_user_with_iterations("carol", "pw", 100).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::INVALID_REQUEST.code()), "{err}");

    admin.create_user("dave", "dave-pw").await.unwrap();
    broker.stop().await;
    let broker = TestBroker::start_with(settings(dir.path(), Authentication::Required));
    let dave = connect_as(&broker, "dave", "dave-pw").await.expect("users survive a restart");
    assert_eq!(dave.authenticated_as(), Some("User:dave"));
    assert!(connect_as(&broker, "bob", "builder-pw-123").await.is_err(), "and deletions too");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `herald user ARGS` with `stdin` on its standard input.
fn herald_user(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::herald_bin())
        .arg("user")
        .args(args)
        .env_remove("HERALD_BROKER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald user");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_first_user_is_created_offline_and_the_cli_connects_as_it() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let created = herald_user(&["create", "admin", "--data-dir", data_arg, "--password-stdin"], "s3cret-admin\n");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    let broker = TestBroker::start_with(settings(&data, Authentication::Required));
    let refused = herald_user(&["create", "eve", "--data-dir", data_arg, "--password-stdin"], "pw\n");
    assert!(!refused.status.success(), "refused while a broker holds the directory");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("in use by another broker"), "{stderr}");

    let admin = connect_as(&broker, "admin", "s3cret-admin").await.expect("the password read from stdin");
    assert_eq!(admin.authenticated_as(), Some("User:admin"));

    let password_file = dir.path().join("admin.pw");
    std::fs::write(&password_file, "s3cret-admin\n").unwrap();
    let new_password = dir.path().join("bob.pw");
    std::fs::write(&new_password, "bob-pw\n").unwrap();
    let addr = broker.addr().to_string();
    let login = ["-b", &addr, "--user", "admin", "--password-file", password_file.to_str().unwrap()];
    let mut create = vec!["create", "bob", "--new-password-file", new_password.to_str().unwrap()];
    create.extend(login);
    let online = herald_user(&create, "");
    assert!(online.status.success(), "{}", String::from_utf8_lossy(&online.stderr));
    let mut list = vec!["list", "--json"];
    list.extend(login);
    let listed = herald_user(&list, "");
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let users: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(users[1]["user"], "bob");
    connect_as(&broker, "bob", "bob-pw").await.expect("bob, created online through the CLI");

    let anonymous = herald_user(&["list", "-b", &addr], "");
    assert!(!anonymous.status.success(), "the CLI without --user is refused");
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("SASL_AUTHENTICATION_FAILED"));
    broker.stop().await;
    let deleted = herald_user(&["delete", "bob", "--data-dir", data_arg], "");
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    assert!(!std::fs::read_to_string(data.join("security/users.json")).unwrap().contains("\"bob\""));
}
