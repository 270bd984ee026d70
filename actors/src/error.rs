//! The broker's error: a stable wire code (`ErrorCode`, from `herald-wire`)
//! with a message, and the one place internal errors map to codes.

use std::fmt;

pub use herald_wire::error::{DamagedRange, ErrorCode, WireError};

use crate::partition::log::LogError;
use crate::partition::producers::SequenceError;

/// An error as a client will see it: a code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerError {
    pub code: ErrorCode,
    pub message: String,
    /// With `CORRUPT_MESSAGE` on a read: the damaged range the offset is in.
    /// Boxed, so that the common error stays small.
    pub damaged: Option<Box<DamagedRange>>,
}

impl BrokerError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        BrokerError { code, message: message.into(), damaged: None }
    }

    /// The error for an actor that is gone (its mailbox closed): retriable.
    pub fn unavailable(what: impl fmt::Display) -> Self {
        BrokerError::new(ErrorCode::LEADER_NOT_AVAILABLE, format!("{what} is not available"))
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for BrokerError {}

impl From<actix::MailboxError> for BrokerError {
    fn from(err: actix::MailboxError) -> Self {
        BrokerError::unavailable(format_args!("actor ({err})"))
    }
}

impl From<LogError> for BrokerError {
    fn from(err: LogError) -> Self {
        let code = match &err {
            LogError::Io { .. } => ErrorCode::KAFKA_STORAGE_ERROR,
            LogError::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
            LogError::InvalidBatch(_) | LogError::Damaged(_) => ErrorCode::CORRUPT_MESSAGE,
            LogError::BatchTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            LogError::Sequence(SequenceError::OldEpoch { .. }) => ErrorCode::INVALID_PRODUCER_EPOCH,
            LogError::Sequence(SequenceError::OutOfOrder { .. }) => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
        };
        let damaged = match &err {
            LogError::Damaged(span) => Some(Box::new(span.range())),
            _ => None,
        };
        BrokerError { damaged, ..BrokerError::new(code, err.to_string()) }
    }
}

impl From<WireError> for BrokerError {
    fn from(err: WireError) -> Self {
        BrokerError { code: err.code, message: err.message, damaged: None }
    }
}
