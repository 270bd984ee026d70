//! A small key-value view over a topic: the latest value of each key of the
//! topic `kv` (a compaction-style view), kept up to date by a subscription
//! from its earliest offset, so a restarted actor rebuilds it from the log.
//!
//! - `x.kv.put` body `{key: str, value: str}` → `{offset: int}`: appends
//!   the pair to `kv` and answers once it is durable; the view then has it
//!   (a get after the answer sees it). An empty key is error 2001
//!   `KV_EMPTY_KEY`.
//! - `x.kv.get` body `{key: str}` → `{value: str or nil}`.
//! - `x.kv.scan` body `{prefix: str, limit: uint (optional, default 100, at
//!   most 1000)}` → `{entries: [{key, value}], more: bool}`: the keys
//!   starting with `prefix`, ascending, at most `limit` of them; `more` says
//!   whether more keys match.
//!
//! Gets and scans wait until the view has read the topic up to where it
//! ended when the actor started: after a restart they never answer from a
//! half-rebuilt view. A record without a value (a tombstone) removes its
//! key.

use std::collections::BTreeMap;

use actix::prelude::*;
use bytes::Bytes;
use herald::client::Record;
use herald::extension::{
    CustomError, CustomRequest, CustomResult, Delivery, Event, ExtensionContext, OpHandler, StartAt, Stop,
    Subscription, SubscriptionHandle,
};
use herald::server::Builder;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The topic every put is written to, and the view is read from.
pub const TOPIC: &str = "kv";
/// The error an empty key gets: the extension's own code.
pub const KV_EMPTY_KEY: i16 = 2001;
/// The most entries a scan answers.
pub const MAX_SCAN: usize = 1000;

/// Adds the extension to `builder`: its actor and its three operations.
pub fn install(builder: Builder) -> Builder {
    ["x.kv.put", "x.kv.get", "x.kv.scan"]
        .into_iter()
        .fold(builder.actor("kv", Kv::new), |builder, op| builder.op(op, OpHandler::actor("kv")))
}

#[derive(Deserialize)]
struct Put {
    key: String,
    value: String,
}

#[derive(Serialize)]
struct PutAnswer {
    offset: i64,
}

#[derive(Deserialize)]
struct Get {
    key: String,
}

#[derive(Serialize)]
struct GetAnswer<'a> {
    value: Option<&'a str>,
}

#[derive(Deserialize)]
struct Scan {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct Entry<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct ScanAnswer<'a> {
    entries: Vec<Entry<'a>>,
    more: bool,
}

/// The key-value actor.
pub struct Kv {
    context: ExtensionContext,
    /// Each key's latest value and the offset it was written at.
    values: BTreeMap<String, (String, i64)>,
    /// The offset after the last record the view has read.
    applied: i64,
    /// Whether the view has read the topic up to its end at the start.
    ready: watch::Sender<bool>,
    /// Where the topic ended at the start (`None` until known).
    target: Option<i64>,
    subscription: Option<SubscriptionHandle>,
}

impl Kv {
    fn new(context: ExtensionContext) -> Kv {
        Kv {
            context,
            values: BTreeMap::new(),
            applied: 0,
            ready: watch::channel(false).0,
            target: None,
            subscription: None,
        }
    }

    /// Applies a record written at `offset`, unless the view has a later one
    /// for its key (a put applies its record as soon as it is durable; the
    /// subscription brings it again later).
    fn apply(&mut self, key: Option<&Bytes>, value: Option<&Bytes>, offset: i64) {
        let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else { return };
        if self.values.get(key).is_some_and(|(_, at)| *at >= offset) {
            return;
        }
        match value.map(|v| String::from_utf8_lossy(v).into_owned()) {
            Some(value) => {
                self.values.insert(key.to_owned(), (value, offset));
            }
            None => {
                self.values.remove(key);
            }
        }
    }

    fn check_ready(&mut self) {
        if self.target.is_some_and(|target| self.applied >= target) {
            self.ready.send_replace(true);
        }
    }

    fn get(&self, body: &[u8]) -> CustomResult {
        let get: Get = decode("x.kv.get", body)?;
        encode(&GetAnswer { value: self.values.get(&get.key).map(|(value, _)| value.as_str()) })
    }

    fn scan(&self, body: &[u8]) -> CustomResult {
        let scan: Scan = decode("x.kv.scan", body)?;
        let limit = scan.limit.unwrap_or(100).min(MAX_SCAN);
        let mut matching =
            self.values.range(scan.prefix.clone()..).take_while(|(key, _)| key.starts_with(&scan.prefix));
        let entries: Vec<Entry> = matching.by_ref().take(limit).map(|(key, (value, _))| Entry { key, value }).collect();
        encode(&ScanAnswer { entries, more: matching.next().is_some() })
    }
}

impl Actor for Kv {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (context, me) = (self.context.clone(), ctx.address().recipient());
        // Before any request: messages wait until this is done.
        let subscribed = async move {
            if let Err(err) = context.create_topic(TOPIC, 1).await {
                tracing::debug!(%err, "kv topic not created (it may exist)");
            }
            let end = context.describe_topic(TOPIC).await?.partitions.first().map_or(0, |p| p.high_watermark);
            let subscription = Subscription::new(TOPIC, StartAt::Earliest).partitions(vec![0]);
            Ok::<_, herald::extension::BrokerError>((end, context.subscribe(subscription, me).await?))
        };
        ctx.wait(subscribed.into_actor(self).map(|subscribed, act, ctx| match subscribed {
            Ok((end, handle)) => {
                act.target = Some(end);
                act.subscription = Some(handle);
                act.check_ready();
            }
            Err(err) => {
                // The keeper starts a new one after its back-off.
                tracing::warn!(%err, "kv cannot read its topic");
                ctx.stop();
            }
        }));
    }
}

fn encode<T: Serialize>(value: &T) -> CustomResult {
    rmp_serde::to_vec_named(value).map(Bytes::from).map_err(|e| CustomError::new(-1, e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(op: &str, body: &'a [u8]) -> Result<T, CustomError> {
    rmp_serde::from_slice(body).map_err(|e| CustomError::invalid_request(format!("invalid {op} body: {e}")))
}

impl Handler<Delivery> for Kv {
    type Result = ();

    fn handle(&mut self, delivery: Delivery, _: &mut Context<Self>) {
        match delivery.event {
            Event::Records { records, next_offset } => {
                for Record { key, value, offset, .. } in &records {
                    self.apply(key.as_ref(), value.as_ref(), *offset);
                }
                self.applied = next_offset;
            }
            Event::Damaged { first_offset, next_offset } => {
                tracing::warn!(first_offset, next_offset, "kv topic has a damaged range: those puts are lost");
                self.applied = next_offset;
            }
            Event::OutOfRange { next_offset, .. } => self.applied = next_offset,
            Event::Ended { error } => tracing::warn!(%error, "kv topic gone"),
        }
        self.check_ready();
    }
}

impl Handler<CustomRequest> for Kv {
    type Result = ResponseActFuture<Self, CustomResult>;

    fn handle(&mut self, request: CustomRequest, _: &mut Context<Self>) -> Self::Result {
        let CustomRequest { op, body, .. } = request;
        match op.as_str() {
            "x.kv.get" | "x.kv.scan" => {
                let mut ready = self.ready.subscribe();
                let wait = async move {
                    // Only fails if the actor is gone, when nothing answers.
                    let _ = ready.wait_for(|ready| *ready).await;
                };
                Box::pin(wait.into_actor(self).map(
                    move |(), act, _| {
                        if op == "x.kv.get" {
                            act.get(&body)
                        } else {
                            act.scan(&body)
                        }
                    },
                ))
            }
            "x.kv.put" => {
                let put = match decode::<Put>(&op, &body) {
                    Ok(put) if put.key.is_empty() => {
                        Err(CustomError::new(KV_EMPTY_KEY, "KV_EMPTY_KEY: a key is 1 or more bytes"))
                    }
                    other => other,
                };
                let put = match put {
                    Ok(put) => put,
                    Err(err) => return Box::pin(fut::ready(Err(err))),
                };
                let context = self.context.clone();
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let record = Record {
                    key: Some(Bytes::from(put.key)),
                    value: Some(Bytes::from(put.value)),
                    timestamp,
                    ..Record::default()
                };
                let produced = async move {
                    let produced = context
                        .produce(TOPIC, Some(0), vec![record.clone()])
                        .await
                        .map_err(|e| CustomError::new(e.code.code(), e.message))?;
                    Ok((record, produced.first().map_or(-1, |p| p.base_offset)))
                };
                Box::pin(produced.into_actor(self).map(|produced, act, _| {
                    let (record, offset) = produced?;
                    act.apply(record.key.as_ref(), record.value.as_ref(), offset);
                    encode(&PutAnswer { offset })
                }))
            }
            other => Box::pin(fut::ready(Err(CustomError::invalid_request(format!("kv does not serve `{other}`"))))),
        }
    }
}

impl Handler<Stop> for Kv {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Context<Self>) {
        // Every put is in the log already: nothing to flush.
        self.subscription = None;
        tracing::info!(keys = self.values.len(), "kv stopping");
    }
}
