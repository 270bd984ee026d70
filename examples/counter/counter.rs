//! A windowed counter next to the log: counts the records of each key of an
//! input topic (`clicks`) over tumbling windows of `window` (10 s by
//! default) by the records' timestamps, and publishes each window's counts
//! to an output topic (`clicks.counts`) once the wall clock has passed the
//! window's end plus `grace` (1 s by default).
//!
//! Output: one record per key with a count in the window: the input's key
//! (nil for keyless records), the count as decimal text, headers
//! `window_start` and `window_end` (ms, decimal text), timestamp the
//! window's end. A window's records are produced in batches of at most 1000.
//!
//! Restarts: progress is committed (group `counter`) only when windows are
//! published: for each input partition, the offset of its first record in a
//! window still open (or the offset after its last record when none is),
//! with the end of the published windows as the commit's metadata. After a
//! restart the counter reads again from those offsets and rebuilds the open
//! windows' partial counts from the log. So:
//!
//! - every window with records is published, with the count of every record
//!   whose timestamp is in it and that arrived before it was published;
//! - a window is published once, or again with the same counts if the
//!   counter stopped between publishing it and committing (a crash; a clean
//!   shutdown never does);
//! - a record whose timestamp falls in a window already published (late,
//!   after the window's end plus grace) is not counted: it is logged and
//!   counted in `late`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use herald::client::Record;
use herald::extension::{
    retry_until_ok, BrokerError, CustomError, CustomRequest, CustomResult, Delivery, Event, ExtensionContext, StartAt,
    Stop, Subscription, SubscriptionHandle,
};
use herald::server::Builder;

/// What the counter reads and writes, and its windows.
#[derive(Debug, Clone)]
pub struct Options {
    pub input: String,
    pub output: String,
    pub group: String,
    pub window: Duration,
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            input: "clicks".into(),
            output: "clicks.counts".into(),
            group: "counter".into(),
            window: Duration::from_secs(10),
            grace: Duration::from_secs(1),
        }
    }
}

/// Adds the counter to `builder`.
pub fn install_with(builder: Builder, options: Options) -> Builder {
    builder.actor("counter", move |context| Counter::new(context, options.clone()))
}

/// The counts of one window, and where each partition's records in it
/// start.
#[derive(Default)]
struct Window {
    counts: BTreeMap<Option<Bytes>, u64>,
    first_offsets: HashMap<u32, i64>,
}

/// The counter's actor.
pub struct Counter {
    context: ExtensionContext,
    options: Options,
    /// Open windows by start (ms).
    windows: BTreeMap<i64, Window>,
    /// Each partition's offset after its last record read.
    next_offsets: HashMap<u32, i64>,
    /// Windows ending at or before this (ms) are published.
    published_until: i64,
    /// Records not counted because their window was published already.
    pub late: u64,
    publishing: bool,
    subscription: Option<SubscriptionHandle>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Counter {
    fn new(context: ExtensionContext, options: Options) -> Counter {
        Counter {
            context,
            options,
            windows: BTreeMap::new(),
            next_offsets: HashMap::new(),
            published_until: i64::MIN,
            late: 0,
            publishing: false,
            subscription: None,
        }
    }

    fn window_ms(&self) -> i64 {
        (self.options.window.as_millis() as i64).max(1)
    }

    fn count(&mut self, partition: u32, record: Record) {
        if record.timestamp < self.published_until {
            self.late += 1;
            tracing::debug!(partition, offset = record.offset, "late record not counted");
            return;
        }
        let start = record.timestamp - record.timestamp.rem_euclid(self.window_ms());
        let window = self.windows.entry(start).or_default();
        *window.counts.entry(record.key).or_default() += 1;
        window.first_offsets.entry(partition).or_insert(record.offset);
    }

    /// Publishes the windows that are over, then commits; one round at a
    /// time.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let cutoff = now_ms() - self.options.grace.as_millis() as i64;
        let width = self.window_ms();
        if self.publishing || self.subscription.is_none() {
            return;
        }
        let closed: Vec<i64> = self.windows.keys().copied().take_while(|start| start + width <= cutoff).collect();
        let Some(&last) = closed.last() else { return };
        let published_until = last + width;
        let mut records = Vec::new();
        for start in &closed {
            let window = self.windows.remove(start).unwrap_or_default();
            records.extend(window.counts.into_iter().map(|(key, count)| output(key, count, *start, width)));
        }
        // What the open windows still need from each partition.
        let mut commits = self.next_offsets.clone();
        for window in self.windows.values() {
            for (partition, first) in &window.first_offsets {
                commits.entry(*partition).and_modify(|o| *o = (*o).min(*first)).or_insert(*first);
            }
        }
        self.publishing = true;
        self.published_until = published_until;
        let (context, options) = (self.context.clone(), self.options.clone());
        let publish = async move {
            for chunk in records.chunks(1000) {
                retry_until_ok("publish", || context.produce(&options.output, Some(0), chunk.to_vec())).await;
            }
            let metadata = published_until.to_string();
            for (partition, offset) in commits {
                let commit =
                    || context.commit_with(&options.group, &options.input, partition, offset, Some(metadata.clone()));
                retry_until_ok("commit", commit).await;
            }
        };
        ctx.wait(publish.into_actor(self).map(|(), act, _| act.publishing = false));
    }
}

fn output(key: Option<Bytes>, count: u64, start: i64, width: i64) -> Record {
    Record {
        key,
        value: Some(Bytes::from(count.to_string())),
        headers: vec![
            ("window_start".into(), Bytes::from(start.to_string())),
            ("window_end".into(), Bytes::from((start + width).to_string())),
        ],
        timestamp: start + width,
        offset: 0,
    }
}

impl Actor for Counter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (context, options, me) = (self.context.clone(), self.options.clone(), ctx.address().recipient());
        let subscribed = async move {
            for topic in [&options.input, &options.output] {
                if let Err(err) = context.create_topic(topic, 1).await {
                    tracing::debug!(%err, topic, "not created (it may exist)");
                }
            }
            // Where publishing stopped: the latest of the partitions' commits.
            let mut published_until = i64::MIN;
            for partition in 0..context.describe_topic(&options.input).await?.partitions.len() as u32 {
                if let Some((_, Some(metadata))) =
                    context.committed_with(&options.group, &options.input, partition).await?
                {
                    published_until = published_until.max(metadata.parse().unwrap_or(i64::MIN));
                }
            }
            let subscription = Subscription::new(&options.input, StartAt::Committed { group: options.group.clone() });
            Ok::<_, BrokerError>((published_until, context.subscribe(subscription, me).await?))
        };
        ctx.wait(subscribed.into_actor(self).map(|subscribed, act, ctx| match subscribed {
            Ok((published_until, handle)) => {
                act.published_until = published_until;
                act.subscription = Some(handle);
                let every = (act.options.window / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
                ctx.run_interval(every, Counter::tick);
            }
            Err(err) => {
                tracing::warn!(%err, "counter cannot subscribe");
                ctx.stop();
            }
        }));
    }
}

impl Handler<Delivery> for Counter {
    type Result = ();

    fn handle(&mut self, delivery: Delivery, _: &mut Context<Self>) {
        let partition = delivery.partition;
        match delivery.event {
            Event::Records { records, next_offset } => {
                for record in records {
                    self.count(partition, record);
                }
                self.next_offsets.insert(partition, next_offset);
            }
            Event::Damaged { next_offset, first_offset } => {
                tracing::warn!(partition, first_offset, next_offset, "input has a damaged range; not counted");
                self.next_offsets.insert(partition, next_offset);
            }
            Event::OutOfRange { next_offset, .. } => {
                self.next_offsets.insert(partition, next_offset);
            }
            Event::Ended { error } => tracing::warn!(partition, %error, "counter's input ended"),
        }
    }
}

impl Handler<CustomRequest> for Counter {
    type Result = CustomResult;

    fn handle(&mut self, request: CustomRequest, _: &mut Context<Self>) -> CustomResult {
        Err(CustomError::invalid_request(format!("the counter serves no operation (`{}`)", request.op)))
    }
}

impl Handler<Stop> for Counter {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Context<Self>) {
        // Open windows are not committed: the next start counts them again
        // from the log.
        self.subscription = None;
        tracing::info!(open_windows = self.windows.len(), late = self.late, "counter stopping");
    }
}
