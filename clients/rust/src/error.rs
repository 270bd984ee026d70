//! What can go wrong talking to a broker.

use herald_wire::error::{DamagedRange, ErrorCode};

/// What can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed (retriable: connect again).
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The connection is closed (retriable: connect again).
    #[error("the connection is closed")]
    Closed,
    /// The broker sent something this client cannot read.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker did not answer in time (see [`crate::Timeouts`]); retriable.
    /// A late answer is dropped; the connection stays open.
    #[error("the broker at {peer} did not answer {what} within {} ms", after.as_millis())]
    TimedOut {
        /// The broker's address.
        peer: String,
        /// What was waited for: `the connection`, or the operation's name.
        what: String,
        /// How long the client waited.
        after: std::time::Duration,
    },
    /// The broker answered with an error code (docs/protocol.md, "Error codes").
    #[error("{name} ({code}): {message}")]
    Broker {
        /// The stable numeric code.
        code: i16,
        /// The code's name, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
        name: &'static str,
        /// The broker's explanation.
        message: String,
        /// With `CORRUPT_MESSAGE` on a fetch: the damaged range the offset is
        /// in; fetch from its `next_offset` to go past it.
        damaged: Option<DamagedRange>,
    },
}

impl ClientError {
    /// The broker's error code, if the broker refused the request.
    pub fn code(&self) -> Option<i16> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The damaged range a fetch met (`CORRUPT_MESSAGE`): the records from its
    /// `first_offset` up to `next_offset` cannot be read. A consumer that
    /// accepts losing them seeks to `next_offset`.
    pub fn damaged(&self) -> Option<DamagedRange> {
        match self {
            ClientError::Broker { damaged, .. } => *damaged,
            _ => None,
        }
    }

    /// Whether the same request may succeed later.
    pub fn retriable(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => ErrorCode::from_code(*code).is_some_and(ErrorCode::retriable),
            ClientError::Io(_) | ClientError::Closed | ClientError::TimedOut { .. } => true,
            ClientError::Protocol(_) => false,
        }
    }

    /// A copy of this error, for answering several waiters with it.
    pub fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Io(err) => ClientError::Io(std::io::Error::new(err.kind(), err.to_string())),
            ClientError::Closed => ClientError::Closed,
            ClientError::Protocol(m) => ClientError::Protocol(m.clone()),
            ClientError::TimedOut { peer, what, after } => {
                ClientError::TimedOut { peer: peer.clone(), what: what.clone(), after: *after }
            }
            ClientError::Broker { code, name, message, damaged } => {
                ClientError::Broker { code: *code, name, message: message.clone(), damaged: *damaged }
            }
        }
    }

    pub(crate) fn broker(code: i16, message: Option<String>) -> ClientError {
        ClientError::Broker {
            code,
            name: ErrorCode::from_code(code).map_or("UNKNOWN_CODE", ErrorCode::name),
            message: message.unwrap_or_default(),
            damaged: None,
        }
    }
}
