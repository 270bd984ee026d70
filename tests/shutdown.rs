//! A graceful shutdown as a client sees it: held requests (a parked fetch, a
//! held heartbeat) and requests arriving during the drain get
//! `BROKER_SHUTTING_DOWN` (1003) at once, work in progress (a produce waiting
//! for its fsync) is answered normally, then the connection closes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{join_request, read_partition, test_settings, text, value, HandMember, TestBroker};
use futures::stream::{FuturesUnordered, StreamExt};
use herald::client::ClientError;
use herald::protocol::FetchRequest;

/// `BROKER_SHUTTING_DOWN`.
const SHUTTING_DOWN: i16 = 1003;

#[tokio::test]
async fn shutdown_refuses_held_requests_answers_work_in_progress_then_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    // Far longer than the drain may take: a connection that closes only at
    // this timeout fails the test.
    settings.server.shutdown_timeout_ms = 60_000;
    let broker = TestBroker::start_with(settings);
    let client = broker.client().await;
    let idle = broker.client().await;
    client.create_topic("quiet", 1, BTreeMap::new()).await.unwrap();
    client.create_topic("jobs", 1, BTreeMap::new()).await.unwrap();
    client.create_topic("orders", 1, BTreeMap::new()).await.unwrap();
    let mut join = join_request("workers", &["jobs"]);
    join.session_timeout_ms = Some(60_000);
    let mut member = HandMember::join(client.clone(), join).await.unwrap();

    let request = FetchRequest {
        topic: "quiet".into(),
        partition: 0,
        offset: 0,
        max_bytes: 1 << 20,
        min_bytes: 1,
        max_wait_ms: 60_000,
    };
    // Polled once here, each sends its request before the barrier below.
    let mut parked_fetch = Box::pin(client.fetch(&request));
    assert!(futures::poll!(&mut parked_fetch).is_pending());
    // Nothing changes in the group: held up to half the session timeout.
    let mut held_heartbeat = Box::pin(member.heartbeat(30_000));
    assert!(futures::poll!(&mut held_heartbeat).is_pending());
    // Requests of one connection are dispatched in order: once this is
    // answered, the fetch and the heartbeat are held by the connection.
    client.list_offsets("quiet", 0, -2).await.unwrap();

    // A producer keeping eight produces outstanding until its connection
    // closes: at the drain some are under way (answered once durable) and some
    // arrive after (refused). Each outcome: Ok(offset), or the error.
    let producing = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut outcomes: Vec<(String, Result<i64, ClientError>)> = Vec::new();
            let mut pending = FuturesUnordered::new();
            for i in 0.. {
                let client = client.clone();
                let record = format!("o{i}");
                pending.push(async move {
                    let produced = client.produce("orders", Some(0), vec![value(&record)]).await;
                    (record, produced.map(|p| if p[0].error_code == 0 { p[0].base_offset } else { -1 }))
                });
                if pending.len() < 8 {
                    continue;
                }
                let (record, produced) = pending.next().await.expect("eight produces outstanding");
                let closed = matches!(produced, Err(ClientError::Closed | ClientError::Io(_)));
                outcomes.push((record, produced));
                if closed {
                    break;
                }
            }
            outcomes.extend(pending.collect::<Vec<_>>().await);
            outcomes
        })
    };
    client.list_offsets("orders", 0, -1).await.unwrap();
    let started = Instant::now();
    let stopping = tokio::spawn(broker.stop());

    let refused = parked_fetch.await.expect_err("a parked fetch is refused at shutdown");
    assert_eq!(refused.code(), Some(SHUTTING_DOWN), "{refused}");
    let refused = held_heartbeat.await.expect_err("a held heartbeat is refused at shutdown");
    assert_eq!(refused.code(), Some(SHUTTING_DOWN), "{refused}");
    let answered_in = started.elapsed();
    assert!(answered_in < Duration::from_secs(5), "held requests answered after {answered_in:?}");

    let mut acknowledged = Vec::new();
    for (record, produced) in producing.await.unwrap() {
        match produced {
            Ok(offset) => {
                assert!(offset >= 0, "{record} was refused by its partition");
                acknowledged.push((offset, record));
            }
            // Refused during the drain, or sent after the connection closed:
            // never executed either way.
            Err(err) => assert!(
                err.code() == Some(SHUTTING_DOWN) || matches!(err, ClientError::Closed | ClientError::Io(_)),
                "{record}: {err}"
            ),
        }
    }
    acknowledged.sort();
    assert!(!acknowledged.is_empty());

    // The broker finished its shutdown long before shutdown_timeout_ms: every
    // connection, idle or not, closed by itself once nothing was in flight.
    stopping.await.unwrap();
    let stopped_in = started.elapsed();
    assert!(stopped_in < Duration::from_secs(10), "shutdown took {stopped_in:?}");
    for connection in [&client, &idle] {
        let after = connection.list_topics().await.expect_err("the connection is closed");
        assert!(matches!(after, ClientError::Closed | ClientError::Io(_)), "{after}");
    }

    // Nothing acknowledged was lost, and nothing refused was written.
    let broker = TestBroker::start_in(dir.path());
    let client = broker.client().await;
    let stored: Vec<(i64, String)> =
        read_partition(&client, "orders", 0, 0).await.iter().map(|r| (r.offset, text(r))).collect();
    assert_eq!(stored, acknowledged);
    broker.stop().await;
}

#[tokio::test]
async fn a_connection_with_nothing_in_flight_closes_at_once() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.list_topics().await.unwrap();
    let started = Instant::now();
    broker.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    let after = client.list_topics().await.expect_err("the connection is closed");
    assert!(matches!(after, ClientError::Closed | ClientError::Io(_)), "{after}");
}
