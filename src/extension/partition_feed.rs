//! One subscribed partition's task: long-poll fetches straight to the
//! partition's actor, each next one sent only after the recipient answered
//! the previous delivery. In a cluster, while another broker leads the
//! partition (this broker's replica refuses consumer reads, or it holds
//! none), the fetches go to that leader over the wire, as a consumer's
//! would, and come back here when this broker leads it again.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::partition::{Fetch, ListOffsets, Partition};
use herald_actors::topic_route::Route;
use herald_client::Client;
use herald_wire::batch::{self, Record};
use herald_wire::protocol::FetchRequest;
use tokio::sync::watch;

use crate::cluster::{FindLeader, LeaderAt};

use super::context::from_peer;
use super::subscribe::{Delivery, Event, StartAt, Subscription};
use super::ExtensionContext;

const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// The pause after a leader on another broker answered a long poll early
/// with nothing.
const EMPTY_EARLY_PAUSE: Duration = Duration::from_millis(100);

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
        // The partition's leader and a connection to it while another
        // broker leads it.
        let mut leader: Option<(i32, Client)> = None;
        let mut offset = loop {
            match self.start(partition, added, &mut leader).await {
                Ok(offset) => break offset,
                Err(err) => self.after(err, &mut retry).await?,
            }
        };
        loop {
            if !self.recipient.connected() {
                return Err(Stop::Quietly);
            }
            let source = self.source(partition, &leader).map_err(stop_on)?;
            let asked = std::time::Instant::now();
            let (event, next) = match source.fetch(self, partition, offset).await {
                Ok(records) => {
                    let records: Vec<Record> = records.into_iter().filter(|r| r.offset >= offset).collect();
                    let Some(last) = records.last() else {
                        // A leader whose connection has no room left to hold
                        // a long poll answers at once with nothing: wait a
                        // little rather than ask again and again.
                        let left = self.subscription.max_wait.saturating_sub(asked.elapsed());
                        if matches!(source, Source::There(_)) && !left.is_zero() {
                            tokio::time::sleep(left.min(EMPTY_EARLY_PAUSE)).await;
                        }
                        continue;
                    };
                    let next_offset = last.offset + 1;
                    (Event::Records { records, next_offset }, next_offset)
                }
                Err(BrokerError { code: ErrorCode::CORRUPT_MESSAGE, damaged: Some(damaged), .. }) => {
                    let event = Event::Damaged { first_offset: damaged.first_offset, next_offset: damaged.next_offset };
                    (event, damaged.next_offset)
                }
                Err(err) if err.code == ErrorCode::OFFSET_OUT_OF_RANGE => {
                    match source.in_range(self, partition, offset).await {
                        Ok(next_offset) => (Event::OutOfRange { offset, next_offset }, next_offset),
                        Err(err) => {
                            self.after(err, &mut retry).await?;
                            continue;
                        }
                    }
                }
                Err(err) => {
                    if self.follow_leader(partition, &err, &mut leader).await {
                        continue;
                    }
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
    async fn start(&self, partition: u32, added: bool, leader: &mut Option<(i32, Client)>) -> Result<i64, BrokerError> {
        let start = if added { &StartAt::Earliest } else { &self.subscription.start };
        let timestamp = match start {
            StartAt::Earliest => -2,
            StartAt::Latest => -1,
            StartAt::Offset(offset) => return Ok(*offset),
            StartAt::Committed { group } => {
                match self.context.committed(group, &self.subscription.topic, partition).await? {
                    Some(offset) => return Ok(offset),
                    None => -2,
                }
            }
        };
        loop {
            let source = self.source(partition, leader)?;
            match source.list_offset(self, partition, timestamp).await {
                Err(err) if self.follow_leader(partition, &err, leader).await => continue,
                listed => return listed,
            }
        }
    }

    /// Where the partition is read from now: its leader's connection while
    /// it is open, else this broker's replica.
    fn source(&self, partition: u32, leader: &Option<(i32, Client)>) -> Result<Source, BrokerError> {
        if let Some((_, client)) = leader.as_ref().filter(|(_, c)| !c.is_closed()) {
            return Ok(Source::There(client.clone()));
        }
        self.route.partition(partition).map(Source::Here)
    }

    /// After `err` from the source: in a cluster, when it says the source
    /// does not lead the partition (or its connection closed), looks the
    /// leader up and reads from it next (`leader`: it and a connection to
    /// it, `None` when this broker leads). True when the next read may go at
    /// once: the read goes elsewhere than where it just failed.
    async fn follow_leader(&self, partition: u32, err: &BrokerError, leader: &mut Option<(i32, Client)>) -> bool {
        let Some(node) = &self.context.cluster else { return false };
        let moved = matches!(
            err.code,
            ErrorCode::NOT_LEADER_OR_FOLLOWER | ErrorCode::FENCED_LEADER_EPOCH | ErrorCode::UNKNOWN_LEADER_EPOCH
        ) || (leader.is_some() && err.code == ErrorCode::LEADER_NOT_AVAILABLE);
        if !moved {
            return false;
        }
        let was = leader.take().map(|(id, _)| id);
        let found = node.send(FindLeader { topic: self.subscription.topic.clone(), partition }).await;
        match found {
            Ok(LeaderAt::There(id, address)) => match self.context.peer(node, id, &address).await {
                Ok(client) => {
                    tracing::debug!(topic = %self.subscription.topic, partition, leader = id, "subscription reads from the leader");
                    *leader = Some((id, client));
                    was != Some(id)
                }
                Err(err) => {
                    tracing::debug!(topic = %self.subscription.topic, partition, leader = id, %err, "the leader cannot be reached yet");
                    false
                }
            },
            // This broker leads it now: read here again, at once, when the
            // error was the other broker's.
            Ok(LeaderAt::Here) => was.is_some(),
            Ok(LeaderAt::Unknown) | Err(_) => false,
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

/// Where a partition is read from: its actor here, or its leader on another
/// broker over the wire (with the same errors, codes and damaged ranges).
enum Source {
    Here(Addr<Partition>),
    There(Client),
}

impl Source {
    /// The records from `offset` on (a long poll of the subscription's wait).
    async fn fetch(&self, feed: &Feed, partition: u32, offset: i64) -> Result<Vec<Record>, BrokerError> {
        let (max_bytes, max_wait_ms) = (feed.subscription.max_bytes, feed.subscription.max_wait.as_millis() as u64);
        match self {
            Source::Here(addr) => {
                let fetch = Fetch { offset, max_bytes, min_bytes: 1, max_wait_ms };
                let fetched = addr.send(fetch).await.unwrap_or_else(|e| Err(e.into()))?;
                // The partition checked these batches; one failing here is a
                // bug: never skipped, retried.
                batch::decode_all_shared(&fetched.records)
                    .map_err(|err| BrokerError::new(ErrorCode::CORRUPT_MESSAGE, err.to_string()))
            }
            Source::There(client) => {
                let request = FetchRequest {
                    topic: feed.subscription.topic.clone(),
                    partition: i64::from(partition),
                    offset,
                    max_bytes: max_bytes as u64,
                    min_bytes: 1,
                    max_wait_ms,
                };
                client.fetch(&request).await.map(|fetched| fetched.records).map_err(|err| from_peer(&err))
            }
        }
    }

    /// An offset of the partition: earliest (-2) or latest (-1).
    async fn list_offset(&self, feed: &Feed, partition: u32, timestamp: i64) -> Result<i64, BrokerError> {
        match self {
            Source::Here(addr) => addr.send(ListOffsets { timestamp }).await.unwrap_or_else(|e| Err(e.into())),
            Source::There(client) => {
                client.list_offsets(&feed.subscription.topic, partition, timestamp).await.map_err(|err| from_peer(&err))
            }
        }
    }

    /// The offset a subscription goes on from after `offset` was out of
    /// range: the log's start when it is below it, else the high watermark.
    async fn in_range(&self, feed: &Feed, partition: u32, offset: i64) -> Result<i64, BrokerError> {
        let start = self.list_offset(feed, partition, -2).await?;
        if offset < start {
            return Ok(start);
        }
        self.list_offset(feed, partition, -1).await
    }
}
