//! Extending the broker: custom operations on the wire and custom actors run
//! next to the log, started by [`crate::server::Builder`]. docs/extending.md
//! is the guide; docs/protocol.md, "Custom operations", the wire contract.
//!
//! - An **operation** `x.<extension>.<name>` is served by an actix
//!   [`Recipient`] of [`CustomRequest`]: it gets the request's `body` as raw
//!   MessagePack bytes and answers with the response's `body` (MessagePack
//!   bytes) or a [`CustomError`]. It never sees TCP or frames.
//! - A **custom actor** is built by a factory from an [`ExtensionContext`]
//!   and run under a supervisor (see the `supervise` module): a panic or a
//!   stop restarts it with back-off; at shutdown it gets [`Stop`] before the
//!   broker's own flush.
//! - The **registry** ([`crate::server::Builder::extension`]): extensions
//!   compiled in, enabled by name from `[extensions] enabled`.

mod context;
mod group_events;
mod ops;
mod partition_feed;
mod progress;
mod retry;
mod subscribe;
mod supervise;

pub use context::{ExtensionContext, Produced};
pub use group_events::{GroupChanged, GroupMember};
/// What an assignor registered with [`crate::server::Builder::assignor`] implements and uses.
pub use herald_actors::group::assignor::{Assignment, Assignor, Member, TopicPartition};
/// The types [`ExtensionContext`]'s methods take and answer.
pub use herald_actors::{broker::ListedTopic, error::BrokerError, topic::TopicDescription};
pub use herald_wire::batch::Record;
pub use ops::Ops;
pub use ops::{validate_op_name, OpHandler};
pub use retry::{retry_until_ok, MAX_RETRY_WAIT};
pub use subscribe::{Delivery, Event, Partitions, StartAt, Subscription, SubscriptionHandle};
pub(crate) use supervise::{start_keeper, StopKeeper};

use std::ops::RangeInclusive;

use actix::prelude::*;
use bytes::Bytes;

/// The error codes an extension may answer with on its own: 2000-2999.
/// An extension may also answer with any of the broker's codes
/// ([`herald_wire::error::ErrorCode`]).
pub const EXTENSION_ERROR_CODES: RangeInclusive<i16> = 2000..=2999;

/// A client's request for a custom operation, as its handler receives it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Bytes, CustomError>")]
pub struct CustomRequest {
    /// The operation, e.g. `x.kv.get`.
    pub op: String,
    /// The request's `body`: the raw MessagePack bytes of one value (nil when
    /// the request had none), exactly as the client sent them.
    pub body: Bytes,
    /// The client id of the connection, from its handshake.
    pub client_id: String,
}

/// What a custom operation's handler answers with: the response's `body`
/// must be the MessagePack encoding of one value.
pub type CustomResult = Result<Bytes, CustomError>;

/// An error a custom operation answers with: `code` (one of
/// [`EXTENSION_ERROR_CODES`] or a broker code) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error {code})")]
pub struct CustomError {
    pub code: i16,
    pub message: String,
}

impl CustomError {
    /// An error with `code` and `message`.
    pub fn new(code: i16, message: impl Into<String>) -> CustomError {
        CustomError { code, message: message.into() }
    }

    /// `INVALID_REQUEST` (42): the body is not what the operation takes.
    pub fn invalid_request(message: impl Into<String>) -> CustomError {
        CustomError::new(herald_wire::error::ErrorCode::INVALID_REQUEST.code(), message)
    }
}

/// Sent to each custom actor when the broker shuts down, before the broker
/// flushes its partitions: the actor flushes what it must and answers. The
/// broker waits at most `server.shutdown_timeout_ms` for the answer.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;
