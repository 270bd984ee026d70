//! Authorization through the real broker: every operation refused without
//! the ACL it needs (29, 30, 31) and served with it, lists narrowed to what
//! the principal may describe, prefixed patterns, deny over allow, super
//! users, acks 0 unanswered, ACLs kept across a restart, SECURITY_DISABLED
//! while authorization is off, and `herald acl` online and offline.
//!
//! The connections here are `User:ANONYMOUS` (authentication has its own
//! tests); the ACLs given to it in the data directory before the start let it
//! manage ACLs (`alter` and `describe` on the cluster) and nothing else.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use herald::client::{AclEntry, AclFilter, Client, ClientError, ErrorCode};
use herald::protocol::{
    group_op, CommitOffsetsRequest, FetchOffsetsRequest, GroupRequest, ListGroupsResponse, OffsetCommit,
    ResetOffsetsRequest, CLUSTER_RESOURCE,
};
use herald::security::authorizer::Authorizer;

const ANONYMOUS: &str = "User:ANONYMOUS";

fn entry(operation: &str, permission: &str, kind: &str, name: &str, pattern: &str) -> AclEntry {
    AclEntry {
        principal: ANONYMOUS.into(),
        host: "*".into(),
        operation: operation.into(),
        permission: permission.into(),
        resource_type: kind.into(),
        resource_name: name.into(),
        pattern_type: pattern.into(),
    }
}

fn allow(operation: &str, kind: &str, name: &str) -> AclEntry {
    entry(operation, "allow", kind, name, "literal")
}

/// A broker enforcing ACLs on `dir`, where the anonymous principal may
/// manage ACLs and nothing else.
fn secured(dir: &Path, super_users: &[&str]) -> TestBroker {
    let prepared = Authorizer::open(dir, true, &[]).unwrap();
    prepared
        .create(vec![allow("alter", "cluster", CLUSTER_RESOURCE), allow("describe", "cluster", CLUSTER_RESOURCE)])
        .unwrap();
    let mut settings = test_settings(dir);
    settings.security.authorization = true;
    settings.security.super_users = super_users.iter().map(|s| s.to_string()).collect();
    TestBroker::start_with(settings)
}

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>, code: ErrorCode) {
    match result {
        Err(err) if err.code() == Some(code.code()) => {}
        other => panic!("expected {code}, got {other:?}"),
    }
}

async fn grant(client: &Client, entries: Vec<AclEntry>) {
    client.create_acls(entries).await.expect("create ACLs");
}

#[actix_rt::test]
async fn every_topic_operation_needs_its_acl() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path(), &[]);
    let client = broker.client().await;
    let topic_denied = ErrorCode::TOPIC_AUTHORIZATION_FAILED;

    refused(client.create_topic("orders", 1, BTreeMap::new()).await, topic_denied);
    grant(&client, vec![allow("create", "topic", "orders")]).await;
    client.create_topic("orders", 1, BTreeMap::new()).await.unwrap();
    // Creating any topic is allowed by `create` on the cluster.
    refused(client.create_topic("other", 1, BTreeMap::new()).await, topic_denied);
    grant(&client, vec![allow("create", "cluster", CLUSTER_RESOURCE)]).await;
    client.create_topic("other", 1, BTreeMap::new()).await.unwrap();

    refused(client.produce("orders", Some(0), vec![value("a")]).await, topic_denied);
    grant(&client, vec![allow("write", "topic", "orders")]).await;
    client.produce("orders", Some(0), vec![value("a"), value("b")]).await.unwrap();

    refused(client.fetch(&fetch_at("orders", 0, 0)).await, topic_denied);
    grant(&client, vec![allow("read", "topic", "orders")]).await;
    assert_eq!(client.fetch(&fetch_at("orders", 0, 0)).await.unwrap().records.len(), 2);

    // `describe` (and `list_offsets`) come with read or write on the topic.
    client.describe_topic("orders").await.unwrap();
    client.list_offsets("orders", 0, -1).await.unwrap();
    refused(client.describe_topic("other").await, topic_denied);
    refused(client.list_offsets("other", 0, -1).await, topic_denied);

    refused(client.add_partitions("orders", 2).await, topic_denied);
    refused(client.alter_topic_config("orders", BTreeMap::new(), vec![], true).await, topic_denied);
    grant(&client, vec![allow("alter", "topic", "orders")]).await;
    client.add_partitions("orders", 2).await.unwrap();
    client.alter_topic_config("orders", BTreeMap::new(), vec![], true).await.unwrap();

    refused(client.delete_records("orders", 0, 1).await, topic_denied);
    refused(client.delete_topic("orders").await, topic_denied);
    grant(&client, vec![allow("delete", "topic", "orders")]).await;
    assert_eq!(client.delete_records("orders", 0, 1).await.unwrap(), 1);
    client.delete_topic("orders").await.unwrap();

    // A topic that does not exist is refused the same way: no existence leak.
    refused(client.produce("ghost", Some(0), vec![value("a")]).await, topic_denied);
    broker.stop().await;
}

#[actix_rt::test]
async fn lists_show_only_what_the_principal_may_describe() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path(), &[]);
    let client = broker.client().await;
    grant(&client, vec![allow("create", "cluster", CLUSTER_RESOURCE)]).await;
    for topic in ["pub.a", "pub.b", "secret"] {
        client.create_topic(topic, 1, BTreeMap::new()).await.unwrap();
    }
    assert!(client.list_topics().await.unwrap().is_empty());
    grant(&client, vec![entry("describe", "allow", "topic", "pub.", "prefixed")]).await;
    let names: Vec<String> = client.list_topics().await.unwrap().into_iter().map(|t| t.topic).collect();
    assert_eq!(names, ["pub.a", "pub.b"]);
    broker.stop().await;
}

#[actix_rt::test]
async fn group_operations_need_the_group_and_the_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path(), &[]);
    let client = broker.client().await;
    grant(&client, vec![allow("create", "cluster", CLUSTER_RESOURCE), allow("write", "topic", "t")]).await;
    client.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    client.create_topic("hidden", 1, BTreeMap::new()).await.unwrap();
    client.produce("t", Some(0), vec![value("a")]).await.unwrap();
    let group_denied = ErrorCode::GROUP_AUTHORIZATION_FAILED;

    refused(HandMember::join(broker.client().await, join_request("g", &["t"])).await.map(|_| ()), group_denied);
    grant(&client, vec![allow("read", "group", "g")]).await;
    // The group alone is not enough: the member must be able to describe its topics.
    grant(&client, vec![allow("read", "group", "g2")]).await;
    refused(
        HandMember::join(broker.client().await, join_request("g2", &["hidden"])).await.map(|_| ()),
        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
    );
    let mut member = HandMember::join(broker.client().await, join_request("g", &["t"])).await.unwrap();
    member.heartbeat(0).await.unwrap();

    let commit = |topic: &str| CommitOffsetsRequest {
        group_id: "g".into(),
        member_id: Some(member.member_id.clone()),
        generation_id: member.generation_id,
        offsets: vec![OffsetCommit { topic: topic.into(), partition: 0, offset: 1, metadata: None }],
    };
    // Committing needs read on the topic: `write` implies only describe.
    let committed: Result<serde_json::Value, _> = client.request(group_op::COMMIT_OFFSETS, &commit("t")).await;
    refused(committed, ErrorCode::TOPIC_AUTHORIZATION_FAILED);
    grant(&client, vec![allow("read", "topic", "t")]).await;
    member.client.request::<_, serde_json::Value>(group_op::COMMIT_OFFSETS, &commit("t")).await.unwrap();

    let fetch_all =
        FetchOffsetsRequest { group_id: "g".into(), partitions: None, member_id: None, generation_id: None };
    let offsets: serde_json::Value = client.request(group_op::FETCH_OFFSETS, &fetch_all).await.unwrap();
    assert_eq!(offsets["offsets"].as_array().unwrap().len(), 1, "{offsets}");

    let listed: ListGroupsResponse = client.request(group_op::LIST_GROUPS, &serde_json::json!({})).await.unwrap();
    let ids: Vec<&str> = listed.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(ids, ["g"], "g2 was never joined; a group the principal may not describe is not listed");

    let leave = serde_json::json!({"group_id": "g", "member_id": member.member_id});
    member.client.request::<_, serde_json::Value>(group_op::LEAVE_GROUP, &leave).await.unwrap();
    let reset = ResetOffsetsRequest {
        group_id: "g".into(),
        topic: "t".into(),
        partitions: None,
        to: "earliest".into(),
        value: None,
        execute: true,
    };
    client.request::<_, serde_json::Value>(group_op::RESET_OFFSETS, &reset).await.unwrap();
    let hidden_reset = ResetOffsetsRequest { topic: "hidden".into(), ..reset };
    refused(
        client.request::<_, serde_json::Value>(group_op::RESET_OFFSETS, &hidden_reset).await,
        ErrorCode::TOPIC_AUTHORIZATION_FAILED,
    );
    let g = GroupRequest { group_id: "g".into() };
    client.request::<_, serde_json::Value>(group_op::DESCRIBE_GROUP, &g).await.unwrap();
    refused(client.request::<_, serde_json::Value>(group_op::DELETE_GROUP, &g).await, group_denied);
    grant(&client, vec![allow("delete", "group", "g")]).await;
    client.request::<_, serde_json::Value>(group_op::DELETE_GROUP, &g).await.unwrap();
    let other = GroupRequest { group_id: "other".into() };
    refused(client.request::<_, serde_json::Value>(group_op::DESCRIBE_GROUP, &other).await, group_denied);
    drop(member);
    broker.stop().await;
}

#[actix_rt::test]
async fn deny_wins_and_super_users_may_do_anything() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path(), &[]);
    let client = broker.client().await;
    grant(
        &client,
        vec![
            allow("create", "cluster", CLUSTER_RESOURCE),
            allow("all", "topic", "*"),
            entry("write", "deny", "topic", "pay", "prefixed"),
        ],
    )
    .await;
    client.create_topic("payments", 1, BTreeMap::new()).await.unwrap();
    client.create_topic("orders", 1, BTreeMap::new()).await.unwrap();
    client.produce("orders", Some(0), vec![value("a")]).await.unwrap();
    refused(client.produce("payments", Some(0), vec![value("a")]).await, ErrorCode::TOPIC_AUTHORIZATION_FAILED);
    client.fetch(&fetch_at("payments", 0, 0)).await.unwrap();

    // A refused produce with acks 0 is not answered, and the connection goes on.
    client.produce_with_acks("payments", Some(0), vec![value("x")], 0).await.unwrap();
    client.produce("orders", Some(0), vec![value("b")]).await.unwrap();
    assert_eq!(client.list_offsets("payments", 0, -1).await.unwrap(), 0);
    broker.stop().await;

    // The same data directory, the anonymous principal a super user: the deny no longer applies.
    let broker = secured(dir.path(), &[ANONYMOUS]);
    let client = broker.client().await;
    client.produce("payments", Some(0), vec![value("a")]).await.unwrap();
    broker.stop().await;
}

#[actix_rt::test]
async fn acls_survive_a_restart_and_bad_entries_add_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path(), &[]);
    let client = broker.client().await;
    let mut bad = allow("read", "topic", "t");
    bad.operation = "reed".into();
    let err = client.create_acls(vec![allow("read", "topic", "t"), bad]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::INVALID_REQUEST.code()));
    assert!(err.to_string().contains("reed"), "{err}");
    let only_mine = AclFilter { resource_type: Some("topic".into()), ..Default::default() };
    assert!(client.list_acls(&only_mine).await.unwrap().is_empty());
    assert_eq!(client.create_acls(vec![allow("read", "topic", "t"), allow("read", "topic", "t")]).await.unwrap(), 1);
    broker.stop().await;

    let broker = secured(dir.path(), &[]);
    let client = broker.client().await;
    assert_eq!(client.list_acls(&only_mine).await.unwrap(), vec![allow("read", "topic", "t")]);
    let deleted = client.delete_acls(vec![only_mine.clone()]).await.unwrap();
    assert_eq!(deleted.len(), 1);
    assert!(client.list_acls(&only_mine).await.unwrap().is_empty());
    // Without `alter` on the cluster, ACLs cannot be changed.
    client.delete_acls(vec![AclFilter { operation: Some("alter".into()), ..Default::default() }]).await.unwrap();
    refused(client.create_acls(vec![allow("read", "topic", "t")]).await, ErrorCode::CLUSTER_AUTHORIZATION_FAILED);
    broker.stop().await;
}

#[actix_rt::test]
async fn acl_operations_are_refused_while_authorization_is_off() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    refused(client.list_acls(&AclFilter::default()).await, ErrorCode::SECURITY_DISABLED);
    refused(client.create_acls(vec![allow("read", "topic", "t")]).await, ErrorCode::SECURITY_DISABLED);
    // Everything else is served as before.
    client.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    broker.stop().await;
}

#[actix_rt::test]
async fn the_cli_prepares_acls_offline_and_manages_them_online() {
    let dir = tempfile::tempdir().unwrap();
    let herald = herald_cli;
    let data = dir.path().to_str().unwrap();
    let (status, out) = herald(&[
        "acl",
        "add",
        "--data-dir",
        data,
        "--principal",
        ANONYMOUS,
        "--operation",
        "alter",
        "--operation",
        "describe",
        "--cluster",
    ]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("added 2 of 2"), "{out}");
    let (status, out) = herald(&["acl", "list", "--data-dir", data]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("herald-cluster") && out.contains("alter"), "{out}");

    let mut settings = test_settings(dir.path());
    settings.security.authorization = true;
    let broker = TestBroker::start_with(settings);
    // Refused while the broker holds the directory.
    let (status, out) = herald(&["acl", "list", "--data-dir", data]);
    assert_ne!(status, Some(0), "{out}");
    let addr = broker.addr().to_string();
    let (status, out) = herald(&[
        "acl",
        "add",
        "-b",
        &addr,
        "--principal",
        "User:alice",
        "--operation",
        "read",
        "--topic",
        "logs.",
        "--prefixed",
    ]);
    assert_eq!(status, Some(0), "{out}");
    let (status, out) = herald(&["acl", "list", "-b", &addr, "--json", "--principal", "User:alice"]);
    assert_eq!(status, Some(0), "{out}");
    let listed: Vec<AclEntry> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].pattern_type, "prefixed");
    let (status, out) = herald(&["acl", "remove", "-b", &addr, "--principal", "User:alice"]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("removed 1"), "{out}");
    let (status, out) =
        herald(&["acl", "add", "-b", &addr, "--principal", "alice", "--operation", "read", "--topic", "t"]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("not a principal"), "{out}");
    broker.stop().await;
}

/// Answers `x.acl.echo` with its body.
struct Echo;

impl actix::Actor for Echo {
    type Context = actix::Context<Self>;
}

impl actix::Handler<herald::extension::CustomRequest> for Echo {
    type Result = herald::extension::CustomResult;

    fn handle(&mut self, request: herald::extension::CustomRequest, _: &mut actix::Context<Self>) -> Self::Result {
        Ok(request.body)
    }
}

impl actix::Handler<herald::extension::Stop> for Echo {
    type Result = ();

    fn handle(&mut self, _: herald::extension::Stop, _: &mut actix::Context<Self>) {}
}

#[actix_rt::test]
async fn custom_operations_need_call_on_their_name() {
    let dir = tempfile::tempdir().unwrap();
    Authorizer::open(dir.path(), true, &[]).unwrap().create(vec![allow("alter", "cluster", CLUSTER_RESOURCE)]).unwrap();
    let mut settings = test_settings(dir.path());
    settings.security.authorization = true;
    let broker = TestBroker::start_built(settings, |builder| {
        let builder = builder.actor("echo", |_| Echo);
        ["x.acl.echo", "x.acl.other"]
            .iter()
            .fold(builder, |b, op| b.op(op, herald::extension::OpHandler::actor("echo")))
    });
    let client = broker.client().await;
    refused(client.call::<_, i64>("x.acl.echo", &7).await, ErrorCode::CLUSTER_AUTHORIZATION_FAILED);
    grant(&client, vec![entry("call", "allow", "operation", "x.acl.e", "prefixed")]).await;
    assert_eq!(client.call::<_, i64>("x.acl.echo", &7).await.unwrap(), 7);
    refused(client.call::<_, i64>("x.acl.other", &7).await, ErrorCode::CLUSTER_AUTHORIZATION_FAILED);
    broker.stop().await;
}

#[actix_rt::test]
async fn the_admin_api_answers_as_the_anonymous_principal_under_the_same_acls() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path(), &[]);
    let client = broker.client().await;
    grant(&client, vec![allow("create", "cluster", CLUSTER_RESOURCE), allow("write", "topic", "seen")]).await;
    client.create_topic("seen", 1, BTreeMap::new()).await.unwrap();
    client.create_topic("unseen", 1, BTreeMap::new()).await.unwrap();
    client.produce("seen", Some(0), vec![value("a")]).await.unwrap();
    let http = broker.http_addr();

    let (status, body) = common::http::get(http, "/api/v1/topics").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"seen\"") && !body.contains("unseen"), "{body}");
    let (status, body) = common::http::get(http, "/api/v1/topics/unseen").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("TOPIC_AUTHORIZATION_FAILED"), "{body}");
    // `write` implies `describe`, not `read`: the records stay hidden.
    assert_eq!(common::http::get(http, "/api/v1/topics/seen").await.0, 200);
    assert_eq!(common::http::get(http, "/api/v1/topics/seen/partitions/0/records").await.0, 403);
    assert_eq!(common::http::get(http, "/api/v1/broker").await.0, 200, "describe on the cluster");
    grant(&client, vec![allow("read", "topic", "seen")]).await;
    let (status, body) = common::http::get(http, "/api/v1/topics/seen/partitions/0/records").await;
    assert_eq!(status, 200, "{body}");
    client.delete_acls(vec![AclFilter { resource_type: Some("cluster".into()), ..Default::default() }]).await.unwrap();
    assert_eq!(common::http::get(http, "/api/v1/broker").await.0, 403);
    broker.stop().await;
}

/// A connection authenticated as `user`.
async fn as_user(broker: &TestBroker, user: &str) -> Client {
    let options = herald::client::ConnectOptions::default()
        .credentials(herald::client::Credentials::scram_sha_256(user, format!("{user}-password")));
    Client::connect_with_options(broker.addr(), user, options).await.unwrap()
}

#[actix_rt::test]
async fn principals_authenticated_with_scram_get_their_own_acls() {
    let dir = tempfile::tempdir().unwrap();
    // The first user, made with the broker stopped.
    let mut create = Command::new(herald_bin())
        .args(["user", "create", "admin", "--data-dir", dir.path().to_str().unwrap(), "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    create.stdin.take().unwrap().write_all(b"admin-password\n").unwrap();
    let out = create.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut settings = test_settings(dir.path());
    settings.security.authentication = herald::config::Authentication::Required;
    settings.security.authorization = true;
    settings.security.super_users = vec!["User:admin".into()];
    let broker = TestBroker::start_with(settings);
    let admin = as_user(&broker, "admin").await;
    for user in ["alice", "bob"] {
        admin.create_user(user, &format!("{user}-password")).await.unwrap();
    }
    admin.create_topic("orders", 1, BTreeMap::new()).await.unwrap();
    let for_user = |user: &str, operation: &str, permission: &str| AclEntry {
        principal: format!("User:{user}"),
        ..entry(operation, permission, "topic", "orders", "literal")
    };
    admin
        .create_acls(vec![
            for_user("alice", "write", "allow"),
            for_user("alice", "read", "allow"),
            for_user("*", "read", "allow"),
            for_user("bob", "read", "deny"),
        ])
        .await
        .unwrap();

    let alice = as_user(&broker, "alice").await;
    let bob = as_user(&broker, "bob").await;
    alice.produce("orders", Some(0), vec![value("a")]).await.unwrap();
    refused(bob.produce("orders", Some(0), vec![value("b")]).await, ErrorCode::TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(alice.fetch(&fetch_at("orders", 0, 0)).await.unwrap().records.len(), 1);
    // `User:*` allows bob to read, and his own deny wins over it.
    refused(bob.fetch(&fetch_at("orders", 0, 0)).await, ErrorCode::TOPIC_AUTHORIZATION_FAILED);
    // Only the super user may manage users and ACLs.
    refused(alice.create_user("mallory", "x").await, ErrorCode::CLUSTER_AUTHORIZATION_FAILED);
    refused(alice.list_acls(&AclFilter::default()).await, ErrorCode::CLUSTER_AUTHORIZATION_FAILED);
    assert_eq!(admin.list_acls(&AclFilter::default()).await.unwrap().len(), 4);
    broker.stop().await;
}

#[actix_rt::test]
async fn a_producer_id_needs_idempotent_write_on_the_cluster_or_write_on_some_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = secured(dir.path(), &[]);
    let client = broker.client().await;
    refused(client.init_producer_id().await, ErrorCode::CLUSTER_AUTHORIZATION_FAILED);
    grant(&client, vec![entry("write", "allow", "topic", "logs.", "prefixed")]).await;
    client.init_producer_id().await.unwrap();
    grant(&client, vec![entry("write", "deny", "topic", "logs.", "prefixed")]).await;
    refused(client.init_producer_id().await, ErrorCode::CLUSTER_AUTHORIZATION_FAILED);
    grant(&client, vec![allow("idempotent_write", "cluster", CLUSTER_RESOURCE)]).await;
    let (first, _) = client.init_producer_id().await.unwrap();
    let (second, epoch) = client.init_producer_id().await.unwrap();
    assert!(second > first && epoch == 0);
    broker.stop().await;
}
