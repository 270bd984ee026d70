//! The custom operations a broker serves: their names, checked once at
//! build time, and their handlers.

use std::collections::BTreeMap;

use actix::prelude::*;
use bytes::Bytes;
use herald_wire::error::ErrorCode;
use herald_wire::protocol::{valid_custom_op, OperationVersions, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

use super::{CustomError, CustomRequest};

/// What serves a custom operation: a recipient of the user's own making, or
/// a custom actor registered with [`crate::server::Builder::actor`] under a
/// name (which must then handle [`CustomRequest`]).
pub enum OpHandler {
    /// Any actor's recipient. If its actor is gone, calls are answered
    /// `EXTENSION_UNAVAILABLE`; nothing restarts it.
    Recipient(Recipient<CustomRequest>),
    /// The supervised custom actor of this name.
    Actor(String),
}

impl OpHandler {
    /// The supervised custom actor named `name`.
    pub fn actor(name: &str) -> OpHandler {
        OpHandler::Actor(name.to_owned())
    }
}

impl From<Recipient<CustomRequest>> for OpHandler {
    fn from(recipient: Recipient<CustomRequest>) -> OpHandler {
        OpHandler::Recipient(recipient)
    }
}

/// Checks a custom operation's name: `x.<extension>.<name>`, parts of
/// lowercase ASCII letters, digits, `_` and `-`, at most 128 bytes.
///
/// # Errors
///
/// The name, and the rule it breaks.
pub fn validate_op_name(name: &str) -> Result<(), String> {
    if valid_custom_op(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid custom operation name `{name}`: it must be `x.<extension>.<name>`, each part one or more of \
             a-z, 0-9, `_` and `-` (dots between parts), at most 128 bytes"
        ))
    }
}

/// The custom operations of a running broker, shared by its connections
/// (made by [`crate::server::Builder::run`]).
#[derive(Default)]
pub struct Ops {
    handlers: BTreeMap<String, Recipient<CustomRequest>>,
}

impl Ops {
    pub(crate) fn new(handlers: BTreeMap<String, Recipient<CustomRequest>>) -> Ops {
        Ops { handlers }
    }

    /// Each operation with the protocol versions it is served in, for the
    /// handshake.
    pub(crate) fn operations(&self) -> impl Iterator<Item = OperationVersions> + '_ {
        self.handlers.keys().map(|name| OperationVersions {
            op: name.clone(),
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
        })
    }

    /// Sends `request` to its operation's handler; `None` when no handler
    /// serves that operation.
    pub(crate) fn call(
        &self,
        request: CustomRequest,
    ) -> Option<impl std::future::Future<Output = Result<Bytes, CustomError>> + 'static> {
        let op = request.op.clone();
        // Sent now, not when the future is first polled: requests reach the
        // handler's mailbox in the order the connection read them.
        let sent = self.handlers.get(&request.op)?.send(request);
        Some(async move {
            match sent.await {
                Ok(answer) => answer,
                Err(err) => Err(unavailable(&op, &err.to_string())),
            }
        })
    }
}

/// The error a call gets when its handler is gone, panicked or restarting.
pub(crate) fn unavailable(op: &str, why: &str) -> CustomError {
    CustomError::new(
        ErrorCode::EXTENSION_UNAVAILABLE.code(),
        format!("the handler of `{op}` is unavailable ({why}); try again"),
    )
}
