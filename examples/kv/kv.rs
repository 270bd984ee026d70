//! A small key-value extension: `x.kv.put` and `x.kv.get`, served by one
//! supervised custom actor that keeps the latest value of each key in memory
//! and writes every put to the topic `kv` (so the log has the history; this
//! slice of the extension API cannot read it back yet, so a restarted actor
//! starts empty).
//!
//! - `x.kv.put` body `{key: str, value: str}` → `{offset: int}` (where the
//!   put landed in `kv`); an empty key is error 2001 `KV_EMPTY_KEY`.
//! - `x.kv.get` body `{key: str}` → `{value: str or nil}`.

use std::collections::HashMap;

use actix::prelude::*;
use bytes::Bytes;
use herald::client::Record;
use herald::extension::{CustomError, CustomRequest, CustomResult, ExtensionContext, OpHandler, Stop};
use herald::server::Builder;
use serde::{Deserialize, Serialize};

/// The topic every put is written to.
pub const TOPIC: &str = "kv";
/// The error an empty key gets: the extension's own code.
pub const KV_EMPTY_KEY: i16 = 2001;

/// Adds the extension to `builder`: its actor and its two operations.
pub fn install(builder: Builder) -> Builder {
    builder.actor("kv", Kv::new).op("x.kv.put", OpHandler::actor("kv")).op("x.kv.get", OpHandler::actor("kv"))
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

/// The key-value actor.
pub struct Kv {
    context: ExtensionContext,
    values: HashMap<String, String>,
}

impl Kv {
    fn new(context: ExtensionContext) -> Kv {
        Kv { context, values: HashMap::new() }
    }
}

impl Actor for Kv {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let context = self.context.clone();
        // Before any put: messages wait until this is done.
        ctx.wait(
            async move {
                if let Err(err) = context.create_topic(TOPIC, 1).await {
                    tracing::debug!(%err, "kv topic not created (it may exist)");
                }
            }
            .into_actor(self),
        );
    }
}

fn encode<T: Serialize>(value: &T) -> CustomResult {
    rmp_serde::to_vec_named(value).map(Bytes::from).map_err(|e| CustomError::new(-1, e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(op: &str, body: &'a [u8]) -> Result<T, CustomError> {
    rmp_serde::from_slice(body).map_err(|e| CustomError::invalid_request(format!("invalid {op} body: {e}")))
}

impl Handler<CustomRequest> for Kv {
    type Result = ResponseFuture<CustomResult>;

    fn handle(&mut self, request: CustomRequest, _: &mut Context<Self>) -> Self::Result {
        let answer = match request.op.as_str() {
            "x.kv.get" => decode::<Get>(&request.op, &request.body)
                .and_then(|get| encode(&GetAnswer { value: self.values.get(&get.key).map(String::as_str) })),
            "x.kv.put" => {
                let put = match decode::<Put>(&request.op, &request.body) {
                    Ok(put) if put.key.is_empty() => {
                        Err(CustomError::new(KV_EMPTY_KEY, "KV_EMPTY_KEY: a key is 1 or more bytes"))
                    }
                    other => other,
                };
                return match put {
                    Ok(put) => {
                        self.values.insert(put.key.clone(), put.value.clone());
                        let context = self.context.clone();
                        Box::pin(async move {
                            let timestamp = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as i64);
                            let record = Record {
                                key: Some(Bytes::from(put.key)),
                                value: Some(Bytes::from(put.value)),
                                timestamp,
                                ..Record::default()
                            };
                            let produced = context
                                .produce(TOPIC, Some(0), vec![record])
                                .await
                                .map_err(|e| CustomError::new(e.code.code(), e.message))?;
                            encode(&PutAnswer { offset: produced.first().map_or(-1, |p| p.base_offset) })
                        })
                    }
                    Err(err) => Box::pin(async move { Err(err) }),
                };
            }
            other => Err(CustomError::invalid_request(format!("kv does not serve `{other}`"))),
        };
        Box::pin(async move { answer })
    }
}

impl Handler<Stop> for Kv {
    type Result = ();

    fn handle(&mut self, _: Stop, _: &mut Context<Self>) {
        // Every put is in the log already: nothing to flush.
        tracing::info!(keys = self.values.len(), "kv stopping");
    }
}
