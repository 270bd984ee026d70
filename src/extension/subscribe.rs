//! Subscriptions: a custom actor receives a topic's records as they become
//! visible, partition by partition, with back-pressure.
//!
//! One task per subscribed partition long-polls the partition's actor with
//! the same `Fetch` message the frontend sends (through the topic's route,
//! so visibility is the high watermark a client's fetch sees: after fsync
//! under the default flush). It asks for the next batch only once the
//! recipient has answered the previous [`Delivery`], so at most one fetch of
//! `max_bytes` is in memory per partition; a slow recipient slows only its own
//! deliveries and catches up from the log. A watcher task looks at the route
//! every second and starts a task for each partition added since.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_wire::batch::Record;
use tokio::sync::watch;

use super::partition_feed::Feed;
use super::ExtensionContext;

/// Which partitions of the topic a subscription reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitions {
    /// Every partition, those added later included.
    All,
    /// These partitions only (one that does not exist ends with an
    /// [`Event::Ended`] for it).
    Some(Vec<u32>),
}

/// Where a subscription starts in each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The first offset still stored.
    Earliest,
    /// The high watermark when the partition's task starts: only records
    /// appended after. A partition added later starts at its earliest.
    Latest,
    /// This offset in every partition (one out of range gives
    /// [`Event::OutOfRange`]).
    Offset(i64),
    /// The offset committed by `group` for the partition (see
    /// [`ExtensionContext::commit`]); the earliest where it has none.
    Committed { group: String },
}

/// What a subscription reads and how.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub topic: String,
    pub partitions: Partitions,
    pub start: StartAt,
    /// The `max_bytes` of each fetch (a soft limit: a larger batch comes
    /// whole). Default 1 MiB.
    pub max_bytes: usize,
    /// How long one long poll waits for records before asking again.
    /// Default 500 ms.
    pub max_wait: Duration,
}

impl Subscription {
    /// Every partition of `topic` from `start`, with the default limits.
    pub fn new(topic: &str, start: StartAt) -> Subscription {
        Subscription {
            topic: topic.to_owned(),
            partitions: Partitions::All,
            start,
            max_bytes: 1 << 20,
            max_wait: Duration::from_millis(500),
        }
    }

    /// Only these partitions.
    pub fn partitions(mut self, partitions: Vec<u32>) -> Subscription {
        self.partitions = Partitions::Some(partitions);
        self
    }

    /// Fetches of at most about `max_bytes`.
    pub fn max_bytes(mut self, max_bytes: usize) -> Subscription {
        self.max_bytes = max_bytes.max(1);
        self
    }
}

/// What a subscription delivers for one partition. Deliveries of one
/// partition come in offset order, one at a time: the next is sent once the
/// recipient has answered this one.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Delivery {
    pub topic: String,
    pub partition: u32,
    pub event: Event,
}

/// See [`Delivery`].
#[derive(Debug, Clone)]
pub enum Event {
    /// Records in offset order (offset, key, value, headers, timestamp), and
    /// the offset after the last of them: the one to commit once they are
    /// processed.
    Records { records: Vec<Record>, next_offset: i64 },
    /// `first_offset..next_offset` is a damaged range of the log: those
    /// records cannot be read. The subscription goes on from `next_offset`.
    Damaged { first_offset: i64, next_offset: i64 },
    /// `offset` is not in the log any more (removed by retention or
    /// `delete_records`) or beyond its end (the log lost its tail): the
    /// subscription goes on from `next_offset` (the log's start or end).
    OutOfRange { offset: i64, next_offset: i64 },
    /// The partition's deliveries end: its topic was deleted, or it does not
    /// exist. Nothing follows for this partition.
    Ended { error: BrokerError },
}

/// A running subscription. Dropping it ends every partition's task (a fetch
/// under way is abandoned; nothing more is delivered).
pub struct SubscriptionHandle {
    _stop: watch::Sender<()>,
}

impl SubscriptionHandle {
    /// A handle that ends its subscription when dropped, and the receiver
    /// its tasks watch.
    pub(crate) fn new() -> (SubscriptionHandle, watch::Receiver<()>) {
        let (stop, stopped) = watch::channel(());
        (SubscriptionHandle { _stop: stop }, stopped)
    }
}

/// How often the watcher looks for added partitions.
const WATCH_PARTITIONS: Duration = Duration::from_secs(1);

impl ExtensionContext {
    /// Subscribes `recipient` to `subscription.topic`: see the module
    /// documentation and docs/extending.md. Deliveries stop when the handle
    /// is dropped or the recipient's actor has stopped.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION` (no such topic), `BROKER_SHUTTING_DOWN`.
    pub async fn subscribe(
        &self,
        subscription: Subscription,
        recipient: Recipient<Delivery>,
    ) -> Result<SubscriptionHandle, BrokerError> {
        let route = self.route(&subscription.topic).await?;
        route.check_open()?;
        let (handle, stopped) = SubscriptionHandle::new();
        let feed = Arc::new(Feed {
            context: self.clone(),
            route,
            subscription: subscription.clone(),
            recipient,
            stopped: stopped.clone(),
        });
        match &subscription.partitions {
            Partitions::Some(list) => {
                for &partition in list {
                    actix_rt::spawn(feed.clone().run(partition, false));
                }
            }
            Partitions::All => {
                actix_rt::spawn(watch_partitions(feed, stopped));
            }
        }
        Ok(handle)
    }
}

/// Starts a task for each partition of the topic, and for each one added
/// later, until the subscription ends or the topic is closed.
async fn watch_partitions(feed: Arc<Feed>, mut stopped: watch::Receiver<()>) {
    let (mut started, mut first) = (0u32, true);
    loop {
        while feed.route.partition(started).is_ok() {
            // Partitions there at the start begin where the subscription
            // says; added ones from their earliest.
            actix_rt::spawn(feed.clone().run(started, !first));
            started += 1;
        }
        first = false;
        if let Err(err) = feed.route.check_open() {
            if err.code != ErrorCode::BROKER_SHUTTING_DOWN {
                tracing::debug!(topic = %feed.subscription.topic, %err, "subscription's topic closed");
            }
            return;
        }
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(WATCH_PARTITIONS) => {}
        }
    }
}
