//! Held requests (long-poll fetches, held heartbeats) do not hold up the other
//! requests of their connection: they give back their read-ahead permit once
//! dispatched and count against `server.max_held_requests` instead. Past that
//! bound a held request keeps its permit, so the broker stops reading.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{join_request, test_settings, HandMember, TestBroker};
use herald::client::Client;
use herald::protocol::{op, FetchRequest};

/// A fetch at the end of an empty partition: held for `max_wait_ms`.
fn held_fetch(topic: &str, max_wait_ms: u64) -> FetchRequest {
    FetchRequest { topic: topic.into(), partition: 0, offset: 0, max_bytes: 1 << 20, min_bytes: 1, max_wait_ms }
}

/// Sends `count` held fetches on `client`'s connection, in order, before
/// anything sent after this returns. Their answers (at the end of their wait,
/// or at shutdown) are not awaited.
fn send_held_fetches(client: &Client, topic: &str, count: usize, max_wait_ms: u64) {
    for _ in 0..count {
        client.send_without_response(op::FETCH, &held_fetch(topic, max_wait_ms)).expect("send a fetch");
    }
}

/// How late a held heartbeat's answer may be on a busy 2-core test machine
/// (on a quiet one it is 2–3 ms), within the 1 s session timeout. Queued
/// behind the held fetches, as before they gave their read-ahead permits
/// back, it was tens of seconds late.
const HEARTBEAT_TOLERANCE: Duration = Duration::from_millis(400);

#[tokio::test]
async fn held_fetches_do_not_delay_other_requests_on_their_connection() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("quiet", 1, BTreeMap::new()).await.unwrap();

    // Far more than max_in_flight (64), each held for ten seconds.
    send_held_fetches(&client, "quiet", 300, 10_000);
    let started = Instant::now();
    let topics = client.list_topics().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(topics.len(), 1);
    // Reading and dispatching the 300 fetches before it takes a few ms on a
    // quiet machine; behind them (had they kept their permits) it would take
    // their whole 10 s wait. The bound leaves a busy CI machine room.
    assert!(elapsed < Duration::from_secs(1), "list_topics behind 300 held fetches took {elapsed:?}");
    broker.stop().await;
}

#[tokio::test]
async fn held_fetches_do_not_delay_a_members_heartbeat_on_their_connection() {
    let broker = TestBroker::start();
    let client = broker.client().await;
    client.create_topic("jobs", 2, BTreeMap::new()).await.unwrap();
    client.create_topic("quiet", 1, BTreeMap::new()).await.unwrap();
    let mut join = join_request("workers", &["jobs"]);
    join.session_timeout_ms = Some(1000);
    let mut member = HandMember::join(client.clone(), join).await.unwrap();
    assert_eq!(member.partitions_of("jobs").len(), 2);

    send_held_fetches(&client, "quiet", 300, 10_000);
    // Once this is answered, every fetch before it has been dispatched.
    client.list_topics().await.unwrap();
    // Three session timeouts of heartbeats, each held its whole max_wait_ms
    // (nothing changes) and answered on time: the session never lapses.
    let max_wait = Duration::from_millis(300);
    for round in 0..10 {
        let started = Instant::now();
        let answer = member.heartbeat(max_wait.as_millis() as u64).await;
        let elapsed = started.elapsed();
        let answer = answer.unwrap_or_else(|err| panic!("heartbeat {round} after {elapsed:?}: {err}"));
        assert_eq!(answer.member_id, member.member_id);
        assert!(elapsed >= max_wait, "heartbeat {round} was not held: answered after {elapsed:?}");
        assert!(
            elapsed <= max_wait + HEARTBEAT_TOLERANCE,
            "heartbeat {round} behind 300 held fetches answered after {elapsed:?}, max_wait_ms {max_wait:?}"
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn past_max_held_requests_a_held_request_keeps_its_read_ahead_permit() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.server.max_in_flight = 4;
    settings.server.max_held_requests = 10;
    let broker = TestBroker::start_with(settings);
    let client = broker.client().await;
    client.create_topic("quiet", 1, BTreeMap::new()).await.unwrap();

    // Up to the bound, held fetches leave the read-ahead budget alone.
    send_held_fetches(&client, "quiet", 10, 10_000);
    let started = Instant::now();
    client.list_topics().await.unwrap();
    // Well under the fetches' 10 s wait (a few ms on a quiet machine).
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());

    // Past it, each keeps its permit: four of them spend the whole budget,
    // and the broker reads nothing more until one of them is answered.
    let short = Duration::from_millis(500);
    send_held_fetches(&client, "quiet", 4, short.as_millis() as u64);
    let started = Instant::now();
    client.list_topics().await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= short - Duration::from_millis(50), "list_topics read past a spent budget after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    broker.stop().await;
}
