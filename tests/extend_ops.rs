//! Extending the broker through `Server::builder`: custom operations over the
//! wire with the real client, a supervised custom actor that panics and is
//! restarted, the `[extensions]` registry, and `Stop` at shutdown.

mod common;
#[path = "../examples/kv/kv.rs"]
#[allow(dead_code)]
mod kv;
mod raw;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use common::{fetch_at, test_settings, TestBroker};
use herald::client::{ClientError, ErrorCode};
use herald::extension::{CustomError, CustomRequest, CustomResult, OpHandler, Stop};
use herald::server::{Builder, Server};
use raw::{request, Raw};
use rmpv::Value;
use serde::{Deserialize, Serialize};

/// A test actor: `x.test.echo` answers its body, `x.test.fail` answers error
/// 2042, `x.test.panic` panics. Counts its starts; notes `Stop`.
struct Probe {
    stopped: Arc<AtomicBool>,
}

#[derive(Clone, Default)]
struct Marks {
    starts: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
}

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<CustomRequest> for Probe {
    type Result = CustomResult;

    fn handle(&mut self, request: CustomRequest, _: &mut Context<Self>) -> CustomResult {
        match request.op.as_str() {
            "x.test.echo" => Ok(request.body),
            "x.test.fail" => Err(CustomError::new(2042, "the probe says no")),
            "x.test.panic" => panic!("the probe panics on purpose"),
            other => Err(CustomError::invalid_request(format!("not {other}"))),
        }
    }
}

impl Handler<Stop> for Probe {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Context<Self>) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// Stops the probe.
#[derive(Message)]
#[rtype(result = "()")]
struct Quit;

impl Handler<Quit> for Probe {
    type Result = ();

    fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

fn with_probe(marks: Marks) -> impl FnOnce(Builder) -> Builder + Send + 'static {
    move |builder| {
        let factory = move |_| {
            marks.starts.fetch_add(1, Ordering::SeqCst);
            Probe { stopped: marks.stopped.clone() }
        };
        let builder = builder.actor("probe", factory);
        ["x.test.echo", "x.test.fail", "x.test.panic"].iter().fold(builder, |b, op| b.op(op, OpHandler::actor("probe")))
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Thing {
    name: String,
    n: i64,
    data: Vec<u8>,
}

fn broker_code(err: ClientError) -> i16 {
    match err {
        ClientError::Broker { code, .. } => code,
        other => panic!("expected a broker error, got {other:?}"),
    }
}

#[tokio::test]
async fn custom_operations_round_trip_and_errors_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let marks = Marks::default();
    let configure = with_probe(marks.clone());
    let broker = TestBroker::start_built(test_settings(dir.path()), move |builder| {
        let gone = Probe { stopped: Arc::default() }.start();
        let recipient = gone.clone().recipient::<CustomRequest>();
        gone.do_send(Quit);
        configure(builder).op("x.test.gone", recipient)
    });
    let client = broker.client().await;

    // Feature discovery lists them, with their versions.
    let listed: Vec<_> = client.features().operations.iter().filter(|o| o.op.starts_with("x.")).collect();
    let names: Vec<&str> = listed.iter().map(|o| o.op.as_str()).collect();
    assert_eq!(names, ["x.test.echo", "x.test.fail", "x.test.gone", "x.test.panic"]);
    assert!(listed.iter().all(|o| o.min_version == 1 && o.max_version == 1));

    let thing = Thing { name: "a".into(), n: -7, data: vec![0, 255] };
    let back: Thing = client.call("x.test.echo", &thing).await.unwrap();
    assert_eq!(back, thing);
    // Raw bytes go through as they are.
    let raw = rmp_serde::to_vec(&(1, "two", [3.5])).unwrap();
    assert_eq!(client.call_raw("x.test.echo", &raw).await.unwrap(), Bytes::from(raw));

    assert_eq!(broker_code(client.call::<_, ()>("x.test.fail", &()).await.unwrap_err()), 2042);
    // A plain recipient whose actor has stopped: a retriable error, no hang.
    let gone = client.call::<_, ()>("x.test.gone", &()).await.unwrap_err();
    assert_eq!(broker_code(gone), ErrorCode::EXTENSION_UNAVAILABLE.code());

    // An `x.` operation nobody serves: the broker's answer is that of any
    // unknown operation (the client would refuse it locally, so raw frames).
    let mut raw = Raw::ready(broker.addr()).await;
    for (id, op) in [(2, "x.test.nothing"), (3, "launch_rockets")] {
        raw.send(&request(id, op, &[("body", Value::Nil)])).await;
        raw.response().await.assert_error(id, ErrorCode::UNKNOWN_OPERATION.code());
    }
    // Fields beside `body` are refused; a request without `body` carries nil.
    raw.send(&request(4, "x.test.echo", &[("key", "k".into())])).await;
    raw.response().await.assert_error(4, ErrorCode::INVALID_REQUEST.code());
    raw.send(&request(5, "x.test.echo", &[])).await;
    let answer = raw.response().await;
    answer.assert_ok(5);
    assert_eq!(answer.field("body"), &Value::Nil);

    broker.stop().await;
    assert!(marks.stopped.load(Ordering::SeqCst), "shutdown sent the custom actor Stop");
}

#[tokio::test]
async fn a_panicking_handler_fails_its_request_and_the_actor_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let marks = Marks::default();
    let broker = TestBroker::start_built(test_settings(dir.path()), with_probe(marks.clone()));
    let client = broker.client().await;
    assert_eq!(marks.starts.load(Ordering::SeqCst), 1);

    let err = client.call::<_, ()>("x.test.panic", &()).await.unwrap_err();
    let code = broker_code(err);
    assert_eq!(code, ErrorCode::EXTENSION_UNAVAILABLE.code());
    assert!(ErrorCode::from_code(code).unwrap().retriable());

    // Restarted after its back-off: the next call works.
    let deadline = Instant::now() + Duration::from_secs(10);
    let echoed: i64 = loop {
        match client.call("x.test.echo", &41).await {
            Ok(n) => break n,
            Err(err) => {
                assert_eq!(broker_code(err), ErrorCode::EXTENSION_UNAVAILABLE.code());
                assert!(Instant::now() < deadline, "the actor was not restarted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(echoed, 41);
    assert_eq!(marks.starts.load(Ordering::SeqCst), 2);

    // The broker itself serves on, on the same connection.
    client.create_topic("after-panic", 1, Default::default()).await.unwrap();
    client.produce("after-panic", Some(0), vec![herald::client::record(None, b"v")]).await.unwrap();
    let fetched = client.fetch(&fetch_at("after-panic", 0, 0)).await.unwrap();
    assert_eq!(fetched.records.len(), 1);
    broker.stop().await;
    assert!(marks.stopped.load(Ordering::SeqCst));
}

#[derive(Deserialize, Debug)]
struct Offset {
    offset: i64,
}

#[derive(Deserialize, Debug)]
struct KvValue {
    value: Option<String>,
}

#[tokio::test]
async fn the_kv_example_serves_put_get_and_scan_and_rebuilds_its_view_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Enabled from a config file, as an operator would.
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[extensions]\nenabled = [\"kv\"]\n").unwrap();
    let mut settings = herald::config::Settings::load(Some(&file), &[]).unwrap();
    assert_eq!(settings.extensions.enabled, ["kv"]);
    let defaults = test_settings(&dir.path().join("data"));
    (settings.storage, settings.http) = (defaults.storage, defaults.http);
    let broker = TestBroker::start_built(settings.clone(), |builder| builder.extension("kv", kv::install));
    let client = broker.client().await;

    let put: Offset = client
        .call("x.kv.put", &[("key", "a"), ("value", "1")].into_iter().collect::<std::collections::BTreeMap<_, _>>())
        .await
        .unwrap();
    assert_eq!(put.offset, 0);
    let got: KvValue = client.call("x.kv.get", &std::collections::BTreeMap::from([("key", "a")])).await.unwrap();
    assert_eq!(got.value.as_deref(), Some("1"));
    let missing: KvValue = client.call("x.kv.get", &std::collections::BTreeMap::from([("key", "b")])).await.unwrap();
    assert_eq!(missing.value, None);
    let empty = std::collections::BTreeMap::from([("key", ""), ("value", "x")]);
    assert_eq!(broker_code(client.call::<_, Offset>("x.kv.put", &empty).await.unwrap_err()), kv::KV_EMPTY_KEY);
    // The put is in the log, for any consumer.
    let fetched = client.fetch(&fetch_at(kv::TOPIC, 0, 0)).await.unwrap();
    assert_eq!(fetched.records[0].value.as_deref(), Some(&b"1"[..]));

    for (key, value) in [("user/b", "2"), ("user/a", "1"), ("user/c", "3"), ("user/a", "4"), ("other", "5")] {
        let put = std::collections::BTreeMap::from([("key", key), ("value", value)]);
        client.call::<_, Offset>("x.kv.put", &put).await.unwrap();
    }
    let scan = |prefix: &'static str, limit: u32| {
        let client = client.clone();
        async move {
            let body = rmpv::Value::Map(vec![("prefix".into(), prefix.into()), ("limit".into(), limit.into())]);
            client.call::<_, ScanAnswer>("x.kv.scan", &body).await.unwrap()
        }
    };
    let pairs =
        |answer: &ScanAnswer| answer.entries.iter().map(|e| (e.key.clone(), e.value.clone())).collect::<Vec<_>>();
    let all = scan("user/", 10).await;
    assert_eq!(
        pairs(&all),
        [("user/a".into(), "4".into()), ("user/b".into(), "2".into()), ("user/c".into(), "3".into())]
    );
    assert!(!all.more);
    let first = scan("user/", 2).await;
    assert_eq!(pairs(&first), [("user/a".into(), "4".into()), ("user/b".into(), "2".into())]);
    assert!(first.more, "a third key matches");
    assert_eq!(scan("", 100).await.entries.len(), 5, "a, other and the three user keys");
    assert!(scan("zzz", 100).await.entries.is_empty());
    broker.stop().await;

    // Restarted: the view is rebuilt from the topic before a get or scan
    // is answered.
    let broker = TestBroker::start_built(settings, |builder| builder.extension("kv", kv::install));
    let client = broker.client().await;
    let got: KvValue = client.call("x.kv.get", &std::collections::BTreeMap::from([("key", "user/a")])).await.unwrap();
    assert_eq!(got.value.as_deref(), Some("4"), "the latest value, from the log");
    let all = scan_with(&client, "user/").await;
    assert_eq!(
        pairs(&all),
        [("user/a".into(), "4".into()), ("user/b".into(), "2".into()), ("user/c".into(), "3".into())]
    );
    broker.stop().await;
}

#[derive(Deserialize, Debug)]
struct ScanEntry {
    key: String,
    value: String,
}

#[derive(Deserialize, Debug)]
struct ScanAnswer {
    entries: Vec<ScanEntry>,
    more: bool,
}

async fn scan_with(client: &herald::client::Client, prefix: &str) -> ScanAnswer {
    let body = rmpv::Value::Map(vec![("prefix".into(), prefix.into())]);
    client.call::<_, ScanAnswer>("x.kv.scan", &body).await.unwrap()
}

/// Runs a builder to completion in a System of its own; its error.
fn run_to_error(builder: impl FnOnce() -> Builder + Send + 'static) -> String {
    std::thread::spawn(move || {
        let system = actix::System::new();
        let run = system.block_on(async move { builder().shutdown(async {}).run().await });
        run.expect_err("the broker must refuse to start").to_string()
    })
    .join()
    .unwrap()
}

#[test]
fn unknown_extension_names_and_bad_op_names_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.extensions.enabled = vec!["kv".into(), "nope".into()];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = run_to_error(move || {
        Server::builder(settings).listener(listener).http_listener(None).extension("kv", kv::install)
    });
    assert!(err.contains("`nope`") && err.contains("it has: kv"), "{err}");
    // The stock builder, as `herald serve` runs it, has none.
    let mut settings = test_settings(dir.path());
    settings.extensions.enabled = vec!["kv".into()];
    let err = run_to_error(move || Server::builder(settings).http_listener(None));
    assert!(err.contains("`kv`") && err.contains("it has: none"), "{err}");

    let settings = test_settings(dir.path());
    let err = run_to_error(move || {
        let handler = |op: &str| OpHandler::actor(op);
        Server::builder(settings)
            .http_listener(None)
            .op("kv.get", handler("kv"))
            .op("x.Kv.get", handler("kv"))
            .actor("kv", |_| Probe { stopped: Arc::default() })
            .op("x.kv.get", handler("kv"))
            .op("x.kv.get", handler("kv"))
            .op("x.kv.scan", handler("nobody"))
    });
    for part in ["`kv.get`", "`x.Kv.get`", "`x.kv.get` is registered twice", "custom actor `nobody`"] {
        assert!(err.contains(part), "{part} in {err}");
    }
}
