//! A router next to the log: reads the topic `orders` and writes each record
//! to `orders.<region>` by its `region` header (`orders.unrouted` when it has
//! none, or one that cannot name a topic: 1-200 of `a-z A-Z 0-9 _ -`),
//! keeping its key, value, headers and timestamp.
//!
//! At least once across restarts: it subscribes from the offsets its group
//! (`router`) committed, and commits a delivery's `next_offset` only after
//! every record of it was produced and acknowledged (durable). A destination
//! topic is created on first use with as many partitions as `orders`; records
//! of source partition `p` go to its partition `p` modulo its count, in
//! order. Partitions are routed concurrently (each one's deliveries one at a
//! time). `Stop` waits for the deliveries under way, so a clean shutdown
//! repeats nothing; after a crash, at most the records of the delivery under
//! way in each partition are written again.

use std::collections::{BTreeMap, HashMap};

use actix::prelude::*;
use herald::client::Record;
use herald::extension::{
    retry_until_ok, BrokerError, CustomError, CustomRequest, CustomResult, Delivery, Event, ExtensionContext, StartAt,
    Stop, Subscription, SubscriptionHandle,
};
use herald::server::Builder;
use tokio::sync::watch;

/// The topic read.
pub const SOURCE: &str = "orders";
/// Where records without a usable `region` header go.
pub const UNROUTED: &str = "orders.unrouted";
/// The consumer group the router commits its progress in.
pub const GROUP: &str = "router";
/// The partitions of `orders` when the router creates it.
pub const SOURCE_PARTITIONS: u32 = 2;

/// How the router reads.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The subscription's fetch size (1 MiB by default).
    pub max_bytes: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { max_bytes: 1 << 20 }
    }
}

/// Adds the router to `builder` with the default options.
pub fn install(builder: Builder) -> Builder {
    install_with(builder, Options::default())
}

/// Adds the router to `builder`.
pub fn install_with(builder: Builder, options: Options) -> Builder {
    builder.actor("router", move |context| Router {
        context,
        options,
        subscription: None,
        destinations: HashMap::new(),
        stopped: false,
        in_flight: watch::channel(0).0,
    })
}

/// The router's actor.
pub struct Router {
    context: ExtensionContext,
    options: Options,
    subscription: Option<SubscriptionHandle>,
    /// Each destination topic's partition count, once known.
    destinations: HashMap<String, u32>,
    /// After `Stop`: a delivery already in the mailbox is left alone (not
    /// committed, so delivered again after the restart).
    stopped: bool,
    /// Deliveries being routed: `Stop` waits for none.
    in_flight: watch::Sender<usize>,
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (context, me) = (self.context.clone(), ctx.address().recipient());
        let subscription =
            Subscription::new(SOURCE, StartAt::Committed { group: GROUP.into() }).max_bytes(self.options.max_bytes);
        let subscribed = async move {
            if let Err(err) = context.create_topic(SOURCE, SOURCE_PARTITIONS).await {
                tracing::debug!(%err, "orders not created (it may exist)");
            }
            context.subscribe(subscription, me).await
        };
        ctx.wait(subscribed.into_actor(self).map(|subscribed, act, ctx| match subscribed {
            Ok(handle) => act.subscription = Some(handle),
            Err(err) => {
                // The keeper starts a new router after its back-off.
                tracing::warn!(%err, "router cannot subscribe to orders");
                ctx.stop();
            }
        }));
    }
}

/// The topic a record goes to.
pub fn destination(record: &Record) -> String {
    let region = record.headers.iter().find(|(key, _)| key == "region").map(|(_, value)| value);
    match region.and_then(|r| std::str::from_utf8(r).ok()) {
        Some(region)
            if !region.is_empty()
                && region.len() <= 200
                && region.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            format!("{SOURCE}.{region}")
        }
        _ => UNROUTED.to_owned(),
    }
}

/// A destination topic's partition count, creating it if it is missing.
async fn ensure(context: &ExtensionContext, topic: &str, partitions: u32) -> Result<u32, BrokerError> {
    if let Err(err) = context.create_topic(topic, partitions).await {
        tracing::debug!(%err, topic, "destination not created (it may exist)");
    }
    let description = context.describe_topic(topic).await?;
    Ok(description.partitions.len().max(1) as u32)
}

impl Handler<Delivery> for Router {
    /// Answered once routed and committed: the partition's next delivery
    /// waits for it; other partitions' go on meanwhile.
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, delivery: Delivery, _: &mut Context<Self>) -> Self::Result {
        if self.stopped {
            return Box::pin(fut::ready(()));
        }
        self.in_flight.send_modify(|n| *n += 1);
        let context = self.context.clone();
        let known = self.destinations.clone();
        let partition = delivery.partition;
        let routed = async move {
            let (records, next_offset) = match delivery.event {
                Event::Records { records, next_offset } => (records, next_offset),
                Event::Damaged { first_offset, next_offset } => {
                    tracing::warn!(partition, first_offset, next_offset, "orders has a damaged range; skipped");
                    (Vec::new(), next_offset)
                }
                Event::OutOfRange { offset, next_offset } => {
                    tracing::warn!(partition, offset, next_offset, "orders offset out of range; going on");
                    (Vec::new(), next_offset)
                }
                Event::Ended { error } => {
                    tracing::warn!(partition, %error, "orders subscription ended");
                    return HashMap::new();
                }
            };
            let mut by_topic: BTreeMap<String, Vec<Record>> = BTreeMap::new();
            for record in records {
                let copy = Record { offset: 0, ..record };
                by_topic.entry(destination(&copy)).or_default().push(copy);
            }
            // One produce per destination, all at once (their fsyncs
            // overlap); each destination partition still gets this source
            // partition's records in order, one delivery after the other.
            let (context, known) = (&context, &known);
            let produced = by_topic.into_iter().map(|(topic, records)| async move {
                let count = match known.get(&topic) {
                    Some(count) => *count,
                    None => retry_until_ok("create destination", || ensure(context, &topic, SOURCE_PARTITIONS)).await,
                };
                let target = Some(partition % count);
                retry_until_ok("produce", || context.produce(&topic, target, records.clone())).await;
                (topic, count)
            });
            let learned: HashMap<String, u32> = futures::future::join_all(produced).await.into_iter().collect();
            retry_until_ok("commit", || context.commit(GROUP, SOURCE, partition, next_offset)).await;
            learned
        };
        Box::pin(routed.into_actor(self).map(|learned, act, _| {
            act.destinations.extend(learned);
            act.in_flight.send_modify(|n| *n -= 1);
        }))
    }
}

impl Handler<CustomRequest> for Router {
    type Result = CustomResult;

    fn handle(&mut self, request: CustomRequest, _: &mut Context<Self>) -> CustomResult {
        Err(CustomError::invalid_request(format!("the router serves no operation (`{}`)", request.op)))
    }
}

impl Handler<Stop> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, _: &mut Context<Self>) -> Self::Result {
        self.subscription = None;
        self.stopped = true;
        tracing::info!("router stopping");
        // Answered once every delivery under way is produced and committed.
        let mut in_flight = self.in_flight.subscribe();
        Box::pin(async move {
            let _ = in_flight.wait_for(|n| *n == 0).await;
        })
    }
}
