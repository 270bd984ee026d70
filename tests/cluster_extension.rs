//! A custom actor on one broker of a cluster (docs/extending.md, "In a
//! cluster"): its subscription reads the partitions other brokers lead, from
//! those leaders, and follows a partition to its new leader when the old one
//! is killed; its produce is acknowledged once every in-sync replica has the
//! records, as a client's `acks` -1 produce, and goes to the partition's
//! leader when another broker leads it. Brokers 1 and 2 are the real
//! binary, broker 3 runs in the test with the custom actor; real ZooKeeper.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use common::cluster::{Cluster, SESSION_TIMEOUT_MS, TAKEOVER};
use common::{read_partition, text, value, TestBroker};
use herald::client::{Cluster as Brokers, ConnectOptions};
use herald::extension::{
    BrokerError, CustomError, CustomRequest, CustomResult, Delivery, Event, ExtensionContext, OpHandler, Record,
    StartAt, Stop, Subscription, SubscriptionHandle,
};
use herald::protocol::PartitionMetadata;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 3;

/// The tests run one at a time: each runs a cluster of its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Subscribes to `events` from its earliest records when asked
/// (`x.reader.start`), passing every delivery to the test; produces one
/// record to a partition of a topic when asked (`x.reader.produce`).
struct Reader {
    context: ExtensionContext,
    out: UnboundedSender<Delivery>,
    handle: Option<SubscriptionHandle>,
}

impl Actor for Reader {
    type Context = Context<Self>;
}

impl Handler<Delivery> for Reader {
    type Result = ();

    fn handle(&mut self, delivery: Delivery, _: &mut Context<Self>) {
        let _ = self.out.send(delivery);
    }
}

impl Handler<CustomRequest> for Reader {
    type Result = ResponseActFuture<Self, CustomResult>;

    fn handle(&mut self, request: CustomRequest, ctx: &mut Context<Self>) -> Self::Result {
        let failed = |err: BrokerError| CustomError::new(err.code.code(), err.message);
        let context = self.context.clone();
        if request.op == "x.reader.start" {
            let me = ctx.address().recipient();
            let subscribed = async move { context.subscribe(Subscription::new(TOPIC, StartAt::Earliest), me).await };
            return Box::pin(subscribed.into_actor(self).map(move |handle, act, _| {
                act.handle = Some(handle.map_err(failed)?);
                Ok(Bytes::from(rmp_serde::to_vec(&true).unwrap()))
            }));
        }
        let produced = async move {
            let (topic, partition, text): (String, u32, String) =
                rmp_serde::from_slice(&request.body).map_err(|e| CustomError::invalid_request(e.to_string()))?;
            let record = Record { value: Some(Bytes::from(text)), ..Record::default() };
            let produced = context.produce(&topic, Some(partition), vec![record]).await.map_err(failed)?;
            Ok(Bytes::from(rmp_serde::to_vec(&produced[0].base_offset).unwrap()))
        };
        Box::pin(produced.into_actor(self))
    }
}

impl Handler<Stop> for Reader {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Context<Self>) {}
}

/// Brokers 1 and 2 (binaries) and broker 3 (here, with the reader).
async fn start() -> (Cluster, TestBroker, UnboundedReceiver<Delivery>, tempfile::TempDir) {
    let cluster = Cluster::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::test_settings(dir.path());
    settings.cluster.zookeeper = cluster.zk.address.clone();
    settings.cluster.broker_id = 3;
    settings.cluster.zookeeper_session_timeout_ms = SESSION_TIMEOUT_MS;
    let (out, deliveries) = unbounded_channel();
    let here = TestBroker::start_built(settings, move |builder| {
        builder
            .actor("reader", move |context| Reader { context, out: out.clone(), handle: None })
            .op("x.reader.start", OpHandler::actor("reader"))
            .op("x.reader.produce", OpHandler::actor("reader"))
    });
    cluster.all_in(3).await;
    (cluster, here, deliveries, dir)
}

/// Creates `topic` with 3 partitions of 2 replicas, and waits until broker
/// 3 sees each with a leader and both replicas in sync.
async fn create(here: &TestBroker, topic: &str) -> Vec<PartitionMetadata> {
    let client = here.client().await;
    client.create_replicated_topic(topic, i64::from(PARTITIONS), Some(2), BTreeMap::new()).await.unwrap();
    partitions_until(here, topic, "leaders and full ISRs", |p| p.leader >= 0 && p.isr.len() == 2).await
}

/// The topic's partitions as broker 3 sees them, once `done` holds of each.
async fn partitions_until(
    here: &TestBroker,
    topic: &str,
    what: &str,
    done: impl Fn(&PartitionMetadata) -> bool,
) -> Vec<PartitionMetadata> {
    let client = here.client().await;
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let metadata = client.metadata(Some(vec![topic.to_string()])).await.unwrap();
        let partitions = metadata.topics[0].partitions.clone();
        if partitions.len() == PARTITIONS as usize && partitions.iter().all(&done) {
            return partitions;
        }
        assert!(Instant::now() < deadline, "{what}: not within {TAKEOVER:?}: {partitions:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Produces `p{p}-{i}` for `i` in `range` to each partition, through its
/// leader, with acks -1.
async fn produce(brokers: &Brokers, range: std::ops::Range<usize>) {
    for p in 0..PARTITIONS {
        let deadline = Instant::now() + TAKEOVER;
        loop {
            let records = range.clone().map(|i| value(format!("p{p}-{i}"))).collect();
            let leader = match brokers.leader(TOPIC, p).await {
                Ok(leader) => leader,
                // No connection to the leader: nothing was sent.
                Err(err) => {
                    assert!(Instant::now() < deadline, "no leader of partition {p}: {err}");
                    brokers.forget(TOPIC, p);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match leader.produce_with_acks(TOPIC, Some(p), records, -1).await {
                Ok(_) => break,
                // Refused before it was appended (the leader moved): sent
                // again; a record appended twice would fail the test.
                Err(err) if matches!(err.code(), Some(5 | 6 | 19 | 74 | 75)) && Instant::now() < deadline => {
                    brokers.forget(TOPIC, p);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("produce to partition {p}: {err}"),
            }
        }
    }
}

/// Takes deliveries until each partition has delivered `per_partition`
/// records; returns each partition's values in delivery order.
async fn delivered(deliveries: &mut UnboundedReceiver<Delivery>, per_partition: usize) -> BTreeMap<u32, Vec<String>> {
    let mut seen: BTreeMap<u32, Vec<String>> = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    while seen.values().any(|v| v.len() < per_partition) {
        let delivery = tokio::time::timeout(TAKEOVER, deliveries.recv())
            .await
            .unwrap_or_else(|_| panic!("no delivery within {TAKEOVER:?}; so far {seen:?}"))
            .expect("the reader runs");
        match delivery.event {
            Event::Records { records, .. } => seen.get_mut(&delivery.partition).unwrap().extend(
                records.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()),
            ),
            other => panic!("partition {}: {other:?}", delivery.partition),
        }
    }
    seen
}

fn expected(range: std::ops::Range<usize>) -> BTreeMap<u32, Vec<String>> {
    (0..PARTITIONS).map(|p| (p, range.clone().map(|i| format!("p{p}-{i}")).collect())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_reads_partitions_other_brokers_lead_and_follows_a_new_leader() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (mut cluster, here, mut deliveries, _dir) = start().await;
    let placed = create(&here, TOPIC).await;
    let elsewhere: Vec<&PartitionMetadata> = placed.iter().filter(|p| p.leader != 3).collect();
    assert!(!elsewhere.is_empty(), "a partition another broker leads: {placed:?}");

    let extension = here.client().await;
    let _: bool = extension.call("x.reader.start", &()).await.unwrap();
    let seeds: Vec<String> = cluster.bootstrap().into_iter().chain([here.addr().to_string()]).collect();
    let brokers = Brokers::connect(&seeds, "extension-test", ConnectOptions::default()).await.unwrap();
    produce(&brokers, 0..20).await;
    assert_eq!(delivered(&mut deliveries, 20).await, expected(0..20), "every record, in order, from every leader");

    // The leader of a partition broker 3 does not lead dies: the
    // subscription goes on from the partition's next leader.
    let killed = elsewhere[0].leader;
    let partition = elsewhere[0].partition;
    cluster.kill(killed);
    let moved = partitions_until(&here, TOPIC, "a new leader", |p| p.leader >= 0 && p.leader != killed).await;
    produce(&brokers, 20..40).await;
    assert_eq!(
        delivered(&mut deliveries, 20).await,
        expected(20..40),
        "every later record, once, in order; partition {partition} now led by broker {}",
        moved[partition as usize].leader
    );
    here.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extensions_produce_is_answered_once_every_in_sync_replica_has_it() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (cluster, here, _deliveries, _dir) = start().await;
    let placed = create(&here, "acked").await;
    let led_here = placed.iter().find(|p| p.leader == 3).expect("a partition broker 3 leads");
    let follower = *led_here.isr.iter().find(|id| **id != 3).unwrap();
    let extension = here.client().await;
    let request = ("acked".to_string(), led_here.partition, "first".to_string());
    let offset: i64 = extension.call("x.reader.produce", &request).await.unwrap();
    assert_eq!(offset, 0);

    // The follower stopped (for less than its ZooKeeper session): the
    // produce waits for it.
    cluster.signal(follower, "STOP");
    let request = ("acked".to_string(), led_here.partition, "second".to_string());
    let call = tokio::spawn(async move { extension.call::<_, i64>("x.reader.produce", &request).await });
    tokio::time::sleep(Duration::from_millis(SESSION_TIMEOUT_MS / 2)).await;
    let waited = !call.is_finished();
    cluster.signal(follower, "CONT");
    assert!(waited, "answered while the in-sync follower (broker {follower}) was stopped");
    let offset = tokio::time::timeout(TAKEOVER, call).await.expect("an answer").unwrap().expect("the produce");
    assert_eq!(offset, 1);

    // A partition another broker leads: the batch goes to that leader.
    let led_there = placed.iter().find(|p| p.leader != 3).expect("a partition another broker leads");
    let extension = here.client().await;
    for (i, text) in ["elsewhere-0", "elsewhere-1"].into_iter().enumerate() {
        let request = ("acked".to_string(), led_there.partition, text.to_string());
        let offset: i64 = extension.call("x.reader.produce", &request).await.unwrap();
        assert_eq!(offset, i as i64, "{text}: its offset at the leader");
    }
    let leader = cluster.broker(led_there.leader).client().await;
    let stored: Vec<String> = read_partition(&leader, "acked", led_there.partition, 0).await.iter().map(text).collect();
    assert_eq!(stored, ["elsewhere-0", "elsewhere-1"], "stored at broker {}", led_there.leader);
    here.stop().await;
}
