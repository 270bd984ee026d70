//! Subscriptions and durable progress from a custom actor's
//! `ExtensionContext`, through the real broker built with the builder:
//! every record delivered in order per partition with its offset, key and
//! headers, fetch by bounded fetch; partitions added later picked up; a
//! restart resuming from the group's commits; a deleted topic ending the
//! subscription with an event; a damaged range delivered as an event
//! between the records around it.

mod common;

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use common::{batch_position, test_settings, TestBroker};
use herald::client::{ErrorCode, Record};
use herald::extension::{
    CustomError, CustomRequest, CustomResult, Delivery, Event, ExtensionContext, StartAt, Stop, Subscription,
    SubscriptionHandle,
};
use herald::protocol::WireRecord;
use herald::server::Builder;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;

const TOPIC: &str = "events";
const GROUP: &str = "sub-progress";

/// Subscribes to `events` (which it creates with 2 partitions) from `start`,
/// with fetches of 512 bytes; answers each delivery after a short pause (a
/// slow subscriber) and after committing its `next_offset`, then passes it
/// to the test. With a `gate`, it passes each delivery on at once and
/// answers it only once the gate is open, committing nothing.
struct Sub {
    context: ExtensionContext,
    topic: &'static str,
    start: StartAt,
    out: UnboundedSender<Delivery>,
    handle: Option<SubscriptionHandle>,
    gate: Option<watch::Receiver<bool>>,
}

impl Actor for Sub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (context, start, me) = (self.context.clone(), self.start.clone(), ctx.address().recipient());
        let topic = self.topic;
        let subscribed = async move {
            let _ = context.create_topic(topic, 2).await;
            context.subscribe(Subscription::new(topic, start).max_bytes(512), me).await
        };
        ctx.wait(subscribed.into_actor(self).map(|handle, act, _| {
            act.handle = Some(handle.expect("subscribe"));
        }));
    }
}

impl Handler<Delivery> for Sub {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, delivery: Delivery, _: &mut Context<Self>) -> Self::Result {
        let (context, out) = (self.context.clone(), self.out.clone());
        if let Some(mut gate) = self.gate.clone() {
            let _ = out.send(delivery);
            return Box::pin(async move {
                let _ = gate.wait_for(|open| *open).await;
            });
        }
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            if let Event::Records { next_offset, .. } = &delivery.event {
                context.commit(GROUP, &delivery.topic, delivery.partition, *next_offset).await.expect("commit");
            }
            let _ = out.send(delivery);
        })
    }
}

impl Handler<CustomRequest> for Sub {
    type Result = CustomResult;

    fn handle(&mut self, _: CustomRequest, _: &mut Context<Self>) -> CustomResult {
        Err(CustomError::invalid_request("serves no operation"))
    }
}

impl Handler<Stop> for Sub {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Context<Self>) {}
}

fn with_sub(
    topic: &'static str,
    start: StartAt,
    out: UnboundedSender<Delivery>,
) -> impl FnOnce(Builder) -> Builder + Send + 'static {
    move |builder| {
        builder.actor("sub", move |context| Sub {
            context,
            topic,
            start: start.clone(),
            out: out.clone(),
            handle: None,
            gate: None,
        })
    }
}

async fn next(rx: &mut UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a delivery within 30 s")
        .expect("the subscriber is running")
}

/// Receives deliveries until `count` records have come; answers them per
/// partition, checking each delivery's `next_offset`.
async fn records(rx: &mut UnboundedReceiver<Delivery>, count: usize) -> (Vec<Vec<Record>>, usize) {
    let mut by_partition: Vec<Vec<Record>> = vec![Vec::new(); 3];
    let (mut got, mut deliveries) = (0, 0);
    while got < count {
        let delivery = next(rx).await;
        assert_eq!(delivery.topic, TOPIC);
        let Event::Records { records, next_offset } = delivery.event else {
            panic!("expected records, got {:?}", delivery.event);
        };
        assert_eq!(next_offset, records.last().expect("a delivery has records").offset + 1);
        got += records.len();
        deliveries += 1;
        by_partition[delivery.partition as usize].extend(records);
    }
    (by_partition, deliveries)
}

fn numbered(partition: u32, n: usize) -> WireRecord {
    WireRecord {
        key: Some(Bytes::from(format!("k{n}"))),
        value: Some(Bytes::from(format!("p{partition}-{n}"))),
        headers: vec![("n".into(), Bytes::from(n.to_string()))],
        timestamp: Some(1_000 + n as i64),
    }
}

async fn produce(client: &herald::client::Client, partition: u32, range: std::ops::Range<usize>) {
    let records: Vec<WireRecord> = range.map(|n| numbered(partition, n)).collect();
    client.produce(TOPIC, Some(partition), records).await.expect("produce");
}

fn check(records: &[Record], partition: u32, range: std::ops::Range<usize>) {
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    let wanted: Vec<i64> = range.clone().map(|n| n as i64).collect();
    assert_eq!(offsets, wanted, "partition {partition}: every offset once, in order");
    for (record, n) in records.iter().zip(range) {
        assert_eq!(record.value.as_deref(), Some(format!("p{partition}-{n}").as_bytes()));
        assert_eq!(record.key.as_deref(), Some(format!("k{n}").as_bytes()));
        assert_eq!(record.headers, vec![("n".to_string(), Bytes::from(n.to_string()))]);
        assert_eq!(record.timestamp, 1_000 + n as i64);
    }
}

#[tokio::test]
async fn a_subscription_delivers_in_order_resumes_from_its_commits_and_ends_with_its_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = unbounded_channel();
    let broker = TestBroker::start_built(test_settings(dir.path()), with_sub(TOPIC, StartAt::Earliest, tx));
    let client = broker.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.describe_topic(TOPIC).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the subscriber creates its topic");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 200 records per partition, produced 10 at a time.
    for chunk in 0..20 {
        for partition in 0..2 {
            produce(&client, partition, chunk * 10..chunk * 10 + 10).await;
        }
    }
    let (got, deliveries) = records(&mut rx, 400).await;
    check(&got[0], 0, 0..200);
    check(&got[1], 1, 0..200);
    // Fetches of 512 bytes: many deliveries, each a few batches at most.
    assert!(deliveries >= 20, "{deliveries} deliveries for 400 records with max_bytes 512");

    // A partition added later is picked up, from its start.
    client.add_partitions(TOPIC, 3).await.expect("add a partition");
    produce(&client, 2, 0..5).await;
    let (got, _) = records(&mut rx, 5).await;
    check(&got[2], 2, 0..5);
    broker.stop().await;

    // Restarted, from the group's commits: nothing delivered twice.
    let (tx, mut rx) = unbounded_channel();
    let group = StartAt::Committed { group: GROUP.into() };
    let broker = TestBroker::start_built(test_settings(dir.path()), with_sub(TOPIC, group, tx));
    let client = broker.client().await;
    for (partition, n) in [(0, 200), (1, 200), (2, 5)] {
        produce(&client, partition, n..n + 1).await;
    }
    let (got, _) = records(&mut rx, 3).await;
    check(&got[0], 0, 200..201);
    check(&got[1], 1, 200..201);
    check(&got[2], 2, 5..6);

    // A deleted topic ends each partition's deliveries with an event.
    client.delete_topic(TOPIC).await.expect("delete the topic");
    let mut ended = Vec::new();
    while ended.len() < 3 {
        let delivery = next(&mut rx).await;
        match delivery.event {
            Event::Ended { error } => {
                assert_eq!(error.code, ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
                ended.push(delivery.partition);
            }
            other => panic!("expected the end, got {other:?}"),
        }
    }
    ended.sort_unstable();
    assert_eq!(ended, [0, 1, 2]);
    broker.stop().await;
}

#[tokio::test]
async fn a_damaged_range_is_delivered_as_an_event_between_the_records_around_it() {
    use std::os::unix::fs::FileExt;
    const LEDGER: &str = "ledger";
    let dir = tempfile::tempdir().unwrap();
    // Every batch after a segment's first is indexed: a clean start checks
    // only each segment's last batch, so the damage is found by a read.
    let mut settings = test_settings(dir.path());
    settings.log.index_interval_bytes = 100;
    let broker = TestBroker::start_built(settings.clone(), |builder| builder);
    let client = broker.client().await;
    let config = common::config(&[
        ("segment_max_bytes", herald::protocol::ConfigValue::Int(1024)),
        ("max_message_bytes", herald::protocol::ConfigValue::Int(1024)),
    ]);
    client.create_topic(LEDGER, 1, config).await.unwrap();
    for n in 0..30 {
        let record =
            WireRecord { value: Some(Bytes::from(format!("r{n}-{}", "x".repeat(200)))), ..WireRecord::default() };
        client.produce(LEDGER, Some(0), vec![record]).await.unwrap();
    }
    broker.stop().await;
    // A byte of a record of the second batch of the second segment.
    let log_dir = dir.path().join("topics").join(LEDGER).join("0");
    let mut segments: Vec<(i64, std::path::PathBuf)> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| (p.file_stem().unwrap().to_str().unwrap().parse().unwrap(), p))
        .collect();
    segments.sort();
    let (base, segment) = segments[1].clone();
    let position = batch_position(&segment, 1) + 60;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&segment).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], position).unwrap();
    let damaged = base + 1;

    let (tx, mut rx) = unbounded_channel();
    let broker = TestBroker::start_built(settings, with_sub(LEDGER, StartAt::Earliest, tx));
    let (mut offsets, mut events) = (Vec::new(), Vec::new());
    while offsets.len() < 29 {
        let delivery = next(&mut rx).await;
        match delivery.event {
            Event::Records { records, .. } => offsets.extend(records.iter().map(|r| r.offset)),
            Event::Damaged { first_offset, next_offset } => {
                events.push((offsets.len(), first_offset, next_offset));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(events, [(damaged as usize, damaged, damaged + 1)], "one event, where the range is");
    let expected: Vec<i64> = (0..30).filter(|o| *o != damaged).collect();
    assert_eq!(offsets, expected, "every other record once, in order");
    broker.stop().await;
}

#[tokio::test]
async fn a_stalled_subscriber_holds_up_only_its_own_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let (fast_tx, mut fast) = unbounded_channel();
    let (slow_tx, mut slow) = unbounded_channel();
    let (open, gate) = watch::channel(false);
    let broker = TestBroker::start_built(test_settings(dir.path()), move |builder| {
        let sub = move |out: UnboundedSender<Delivery>, gate: Option<watch::Receiver<bool>>| {
            move |context| Sub {
                context,
                topic: TOPIC,
                start: StartAt::Earliest,
                out: out.clone(),
                handle: None,
                gate: gate.clone(),
            }
        };
        builder.actor("fast", sub(fast_tx, None)).actor("slow", sub(slow_tx, Some(gate)))
    });
    let client = broker.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.describe_topic(TOPIC).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the subscribers create their topic");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The slow subscriber answers nothing: appends and the other
    // subscriber go on.
    for chunk in 0..20 {
        let appended = tokio::time::timeout(Duration::from_secs(10), produce(&client, 0, chunk * 10..chunk * 10 + 10));
        appended.await.expect("an append is never held up by a subscriber");
    }
    let (got, _) = records(&mut fast, 200).await;
    check(&got[0], 0, 0..200);
    let first = next(&mut slow).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(slow.try_recv().is_err(), "no second delivery before the first is answered");

    // Answered: it catches up from the log, in order.
    open.send_replace(true);
    let Event::Records { records: mut caught_up, .. } = first.event else { panic!("records first") };
    let (rest, _) = records(&mut slow, 200 - caught_up.len()).await;
    caught_up.extend(rest[0].iter().cloned());
    check(&caught_up, 0, 0..200);
    broker.stop().await;
}
