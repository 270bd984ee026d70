//! The HTTP listener of a real broker: `/livez`, `/readyz`, the JSON admin API
//! against what the wire client reports, its errors, and `herald status`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use bytes::Bytes;
use common::http::{get, get_json, wait_ready};
use common::{herald_bin, keyed, value, TestBroker};
use herald::protocol::{
    group_op, CommitOffsetsRequest, CommitOffsetsResponse, DescribeGroupResponse, Empty, GroupRequest,
    ListGroupsResponse, OffsetCommit, WireRecord,
};
use serde_json::json;

#[tokio::test]
async fn a_started_broker_is_live_and_ready() {
    let broker = TestBroker::start();
    assert_eq!(get_json(broker.http_addr(), "/livez", 200).await, json!({ "status": "live" }));
    let ready = wait_ready(broker.http_addr()).await;
    assert_eq!(ready, json!({ "ready": true, "status": "ready", "missing": [] }));
    broker.stop().await;
}

#[tokio::test]
async fn topics_and_groups_are_what_the_wire_reports() {
    let broker = TestBroker::start();
    let http = broker.http_addr();
    let client = broker.client().await;
    client.create_topic("orders", 3, BTreeMap::new()).await.unwrap();
    client.create_topic("audit", 1, BTreeMap::new()).await.unwrap();
    client.produce("orders", Some(1), vec![value("a"), value("b"), value("c")]).await.unwrap();
    let commit = CommitOffsetsRequest {
        group_id: "billing".into(),
        member_id: None,
        generation_id: -1,
        offsets: vec![OffsetCommit { topic: "orders".into(), partition: 1, offset: 1, metadata: None }],
    };
    let committed: CommitOffsetsResponse = client.request(group_op::COMMIT_OFFSETS, &commit).await.unwrap();
    assert!(committed.partitions.iter().all(|p| p.error_code == 0), "{committed:?}");

    let topics = get_json(http, "/api/v1/topics", 200).await;
    assert_eq!(topics, json!({ "topics": serde_json::to_value(client.list_topics().await.unwrap()).unwrap() }));
    assert_eq!(topics["topics"].as_array().unwrap().len(), 2);

    let orders = get_json(http, "/api/v1/topics/orders", 200).await;
    assert_eq!(orders, serde_json::to_value(client.describe_topic("orders").await.unwrap()).unwrap());
    assert_eq!(orders["partitions"][1]["log_end_offset"], 3);
    assert!(orders["partitions"][1]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(orders["partitions"][1]["damaged"], json!([]));

    let groups: ListGroupsResponse = client.request(group_op::LIST_GROUPS, &Empty {}).await.unwrap();
    assert_eq!(get_json(http, "/api/v1/groups", 200).await, serde_json::to_value(groups).unwrap());
    let billing: DescribeGroupResponse =
        client.request(group_op::DESCRIBE_GROUP, &GroupRequest { group_id: "billing".into() }).await.unwrap();
    let described = get_json(http, "/api/v1/groups/billing", 200).await;
    assert_eq!(described, serde_json::to_value(&billing).unwrap());
    assert_eq!(described["offsets"][0]["lag"], 2);

    let info = get_json(http, "/api/v1/broker", 200).await;
    assert_eq!(info["broker_version"], client.broker_info().broker_version);
    assert_eq!(info["address"], broker.addr().to_string());
    assert_eq!(info["data_dir"], broker.data_dir().display().to_string());
    assert_eq!(info["readiness"]["ready"], true);
    assert_eq!(info["config"]["http"]["metrics_max_label_sets"], 1000);
    assert!(info["disk_used_bytes"].as_u64().unwrap() > 0 && info["disk_free_bytes"].as_u64().unwrap() > 0);
    broker.stop().await;
}

#[tokio::test]
async fn records_are_paged_with_base64_and_utf8_renderings() {
    let broker = TestBroker::start();
    let http = broker.http_addr();
    let client = broker.client().await;
    client.create_topic("browse", 1, BTreeMap::new()).await.unwrap();
    let with_header = WireRecord {
        headers: vec![("h".into(), Bytes::from_static(b"1")), ("h".into(), Bytes::from_static(b"2"))],
        ..keyed("k", "text")
    };
    let binary = WireRecord { value: Some(Bytes::from_static(&[0xff, 0x00])), ..WireRecord::default() };
    let tombstone = WireRecord { key: Some(Bytes::from_static(b"gone")), ..WireRecord::default() };
    client.produce("browse", Some(0), vec![with_header, binary, tombstone]).await.unwrap();

    let page = get_json(http, "/api/v1/topics/browse/partitions/0/records?offset=0&limit=2", 200).await;
    assert_eq!(page["high_watermark"], 3);
    assert_eq!(page["next_offset"], 2);
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["offset"], 0);
    assert_eq!(records[0]["key"], json!({ "base64": "aw==", "utf8": "k" }));
    assert_eq!(records[0]["value"], json!({ "base64": "dGV4dA==", "utf8": "text" }));
    assert_eq!(
        records[0]["headers"],
        json!([{ "key": "h", "value": { "base64": "MQ==", "utf8": "1" } }, { "key": "h", "value": { "base64": "Mg==", "utf8": "2" } }])
    );
    assert_eq!(records[1]["key"], json!(null));
    assert_eq!(records[1]["value"], json!({ "base64": "/wA=", "utf8": null }));

    let rest = get_json(http, "/api/v1/topics/browse/partitions/0/records?offset=2", 200).await;
    assert_eq!(rest["records"].as_array().unwrap().len(), 1);
    assert_eq!(rest["records"][0]["value"], json!(null), "a tombstone");
    assert_eq!(rest["next_offset"], 3);
    let from_start = get_json(http, "/api/v1/topics/browse/partitions/0/records", 200).await;
    assert_eq!(from_start["records"].as_array().unwrap().len(), 3);
    let at_end = get_json(http, "/api/v1/topics/browse/partitions/0/records?offset=3", 200).await;
    assert_eq!((at_end["records"].as_array().unwrap().len(), &at_end["next_offset"]), (0, &json!(3)));
    broker.stop().await;
}

#[tokio::test]
async fn unknown_names_are_404_and_bad_parameters_400_with_the_wire_error_codes() {
    let broker = TestBroker::start();
    let http = broker.http_addr();
    let client = broker.client().await;
    client.create_topic("known", 1, BTreeMap::new()).await.unwrap();
    let unknown_topic = get_json(http, "/api/v1/topics/nope", 404).await;
    assert_eq!(unknown_topic["error"], "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(unknown_topic["error_code"], 3);
    assert!(unknown_topic["message"].as_str().unwrap().contains("nope"), "{unknown_topic}");
    assert_eq!(get_json(http, "/api/v1/topics/nope/partitions/0/records", 404).await["error_code"], 3);
    assert_eq!(get_json(http, "/api/v1/topics/known/partitions/7/records", 404).await["error_code"], 3);
    let unknown_group = get_json(http, "/api/v1/groups/nobody", 404).await;
    assert_eq!(unknown_group["error"], "GROUP_ID_NOT_FOUND");
    for bad in ["limit=0", "limit=1001", "offset=-1", "offset=abc", "limit=x"] {
        let path = format!("/api/v1/topics/known/partitions/0/records?{bad}");
        assert_eq!(get_json(http, &path, 400).await["error"], "INVALID_REQUEST", "{path}");
    }
    assert_eq!(get_json(http, "/api/v1/topics/known/partitions/x/records", 400).await["error"], "INVALID_REQUEST");
    assert_eq!(get_json(http, "/api/v1/nothing", 404).await["error"], "INVALID_REQUEST");
    let (status, _) = get(http, "/nothing").await;
    assert_eq!(status, 404);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_prints_the_readiness_of_readyz() {
    let broker = TestBroker::start();
    let (addr, http) = (broker.addr().to_string(), broker.http_addr().to_string());
    wait_ready(broker.http_addr()).await;
    let status = |http: &str| {
        let output = Command::new(herald_bin()).args(["status", "-b", &addr, "--http", http]).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let out = tokio::task::block_in_place(|| status(&http));
    assert!(out.contains(&format!("ready: yes (/readyz at {http})")), "{out}");
    // No HTTP listener there: the wire still answers, readiness is unknown.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = tokio::task::block_in_place(|| status(&closed));
    assert!(out.contains("serving") && out.contains("ready: unknown (no HTTP listener answers at"), "{out}");
    let json_out = tokio::task::block_in_place(|| {
        Command::new(herald_bin()).args(["status", "--json", "-b", &addr, "--http", &http]).output().unwrap()
    });
    let parsed: serde_json::Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(parsed["ready"], true, "{parsed}");
    assert_eq!(parsed["readiness"]["missing"], json!([]));
    broker.stop().await;
}

#[tokio::test]
async fn traffic_counts_what_was_produced_and_fetched_per_topic() {
    let broker = TestBroker::start();
    let http = broker.http_addr();
    let client = broker.client().await;
    client.create_topic("traffic-counted", 1, BTreeMap::new()).await.unwrap();
    let counters = |traffic: &serde_json::Value| {
        traffic["topics"].as_array().unwrap().iter().find(|t| t["topic"] == "traffic-counted").cloned()
    };
    let created = counters(&get_json(http, "/api/v1/traffic", 200).await);
    let zero = json!({ "topic": "traffic-counted", "produced_bytes": 0, "produced_records": 0, "fetched_bytes": 0, "fetched_records": 0 });
    assert!(created.is_none() || created == Some(zero), "nothing produced yet: {created:?}");
    client.produce("traffic-counted", Some(0), vec![value("a"), value("b"), value("c")]).await.unwrap();
    let after_produce = counters(&get_json(http, "/api/v1/traffic", 200).await).expect("the topic's counters");
    assert_eq!(after_produce["produced_records"], 3);
    assert!(after_produce["produced_bytes"].as_u64().unwrap() > 0, "{after_produce}");
    assert_eq!(after_produce["fetched_records"], 0);
    // The records API reads with the wire's fetch: it counts as fetched.
    get_json(http, "/api/v1/topics/traffic-counted/partitions/0/records", 200).await;
    let after_fetch = counters(&get_json(http, "/api/v1/traffic", 200).await).expect("the topic's counters");
    assert_eq!((after_fetch["produced_records"].as_u64(), after_fetch["fetched_records"].as_u64()), (Some(3), Some(3)));
    assert!(after_fetch["fetched_bytes"].as_u64().unwrap() > 0, "{after_fetch}");

    let info = get_json(http, "/api/v1/broker", 200).await;
    assert!(info["connections_open"].as_u64().unwrap() >= 1, "this test's client is open: {info}");
    assert!(info["connections_accepted"].as_u64().unwrap() >= 1, "{info}");
    broker.stop().await;
}
