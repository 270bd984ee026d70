//! One subscribed partition's task: long-poll fetches straight to the
//! partition's actor, each next one sent only after the recipient answered
//! the previous delivery.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::partition::{Fetch, ListOffsets, Partition};
use herald_actors::topic_route::Route;
use herald_wire::batch::{self, Record};
use tokio::sync::watch;

use super::subscribe::{Delivery, Event, StartAt, Subscription};
use super::ExtensionContext;

const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// What every partition task of one subscription shares.
pub(super) struct Feed {
    pub context: ExtensionContext,
    pub route: Arc<Route>,
    pub subscription: Subscription,
    pub recipient: Recipient<Delivery>,
    pub stopped: watch::Receiver<()>,
}

/// Why a partition's task stops.
enum Stop {
    /// The subscription or its recipient is gone, or the broker is stopping.
    Quietly,
    /// The recipient is told, then the task ends.
    With(BrokerError),
}

impl Feed {
    /// Feeds `partition` until the subscription ends. An `added` partition
    /// (created after the subscription started) starts at its earliest.
    pub async fn run(self: Arc<Self>, partition: u32, added: bool) {
        let mut stopped = self.stopped.clone();
        let fed = tokio::select! {
            _ = stopped.changed() => return,
            fed = self.feed(partition, added) => fed,
        };
        let ended = match fed {
            Ok(never) => match never {},
            Err(ended) => ended,
        };
        if let Stop::With(error) = ended {
            tracing::debug!(topic = %self.subscription.topic, partition, %error, "subscription ends");
            self.deliver(partition, Event::Ended { error }).await;
        }
    }

    async fn feed(&self, partition: u32, added: bool) -> Result<Infallible, Stop> {
        let mut retry = FIRST_RETRY;
        let mut offset = loop {
            match self.start(partition, added).await {
                Ok(offset) => break offset,
                Err(err) => self.after(err, &mut retry).await?,
            }
        };
        loop {
            if !self.recipient.connected() {
                return Err(Stop::Quietly);
            }
            let addr = match self.route.partition(partition) {
                Ok(addr) => addr,
                Err(err) => return Err(stop_on(err)),
            };
            let fetch = Fetch {
                offset,
                max_bytes: self.subscription.max_bytes,
                min_bytes: 1,
                max_wait_ms: self.subscription.max_wait.as_millis() as u64,
            };
            let fetched = addr.send(fetch).await.unwrap_or_else(|e| Err(e.into()));
            let (event, next) = match fetched {
                Ok(fetched) => match batch::decode_all_shared(&fetched.records) {
                    Ok(records) => {
                        let records: Vec<Record> = records.into_iter().filter(|r| r.offset >= offset).collect();
                        let Some(last) = records.last() else { continue };
                        let next_offset = last.offset + 1;
                        (Event::Records { records, next_offset }, next_offset)
                    }
                    // The partition checked these batches; one failing here
                    // is a bug: never skipped, retried.
                    Err(err) => {
                        let err = BrokerError::new(ErrorCode::CORRUPT_MESSAGE, err.to_string());
                        self.after(err, &mut retry).await?;
                        continue;
                    }
                },
                Err(BrokerError { code: ErrorCode::CORRUPT_MESSAGE, damaged: Some(damaged), .. }) => {
                    let event = Event::Damaged { first_offset: damaged.first_offset, next_offset: damaged.next_offset };
                    (event, damaged.next_offset)
                }
                Err(err) if err.code == ErrorCode::OFFSET_OUT_OF_RANGE => match in_range(&addr, offset).await {
                    Ok(next_offset) => (Event::OutOfRange { offset, next_offset }, next_offset),
                    Err(err) => {
                        self.after(err, &mut retry).await?;
                        continue;
                    }
                },
                Err(err) => {
                    self.after(err, &mut retry).await?;
                    continue;
                }
            };
            retry = FIRST_RETRY;
            if !self.deliver(partition, event).await {
                return Err(Stop::Quietly);
            }
            offset = next;
        }
    }

    /// Where the partition's deliveries begin.
    async fn start(&self, partition: u32, added: bool) -> Result<i64, BrokerError> {
        let addr = self.route.partition(partition)?;
        let start = if added { &StartAt::Earliest } else { &self.subscription.start };
        match start {
            StartAt::Earliest => list_offset(&addr, -2).await,
            StartAt::Latest => list_offset(&addr, -1).await,
            StartAt::Offset(offset) => Ok(*offset),
            StartAt::Committed { group } => {
                match self.context.committed(group, &self.subscription.topic, partition).await? {
                    Some(offset) => Ok(offset),
                    None => list_offset(&addr, -2).await,
                }
            }
        }
    }

    /// After a failed step: the task stops (the topic is gone, the broker
    /// stopping) or waits and tries again (anything else, e.g. a partition
    /// restarting or a read error), logged.
    async fn after(&self, err: BrokerError, retry: &mut Duration) -> Result<(), Stop> {
        if err.code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
            return Err(Stop::With(err));
        }
        if err.code == ErrorCode::BROKER_SHUTTING_DOWN || !self.recipient.connected() {
            return Err(Stop::Quietly);
        }
        tracing::warn!(topic = %self.subscription.topic, %err, retry_in_ms = retry.as_millis() as u64,
            "subscription's fetch failed; retrying");
        tokio::time::sleep(*retry).await;
        *retry = (*retry * 2).min(MAX_RETRY);
        Ok(())
    }

    /// Sends `event` and waits for the recipient's answer; false when the
    /// recipient is gone.
    async fn deliver(&self, partition: u32, event: Event) -> bool {
        let delivery = Delivery { topic: self.subscription.topic.clone(), partition, event };
        self.recipient.send(delivery).await.is_ok()
    }
}

/// The stop a route's error means: the topic is gone (the recipient is
/// told) or the broker is stopping.
fn stop_on(err: BrokerError) -> Stop {
    if err.code == ErrorCode::BROKER_SHUTTING_DOWN {
        Stop::Quietly
    } else {
        Stop::With(err)
    }
}

/// The offset a subscription goes on from after `offset` was out of range:
/// the log's start when it is below it, else the high watermark.
async fn in_range(addr: &Addr<Partition>, offset: i64) -> Result<i64, BrokerError> {
    let start = list_offset(addr, -2).await?;
    if offset < start {
        return Ok(start);
    }
    list_offset(addr, -1).await
}

async fn list_offset(addr: &Addr<Partition>, timestamp: i64) -> Result<i64, BrokerError> {
    addr.send(ListOffsets { timestamp }).await.unwrap_or_else(|e| Err(e.into()))
}
