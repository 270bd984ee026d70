//! The error codes clients see: stable numbers with names, each documented
//! as retriable or not.
//!
//! Codes are stable: a code is never renumbered nor reused. Where Kafka has an
//! error with the same meaning, Herald uses Kafka's number and name; codes of
//! 1000 and above are Herald's own. docs/protocol.md lists them all.

use std::fmt;

macro_rules! error_codes {
    ($($name:ident = $code:expr, $retriable:expr, $doc:expr;)*) => {
        /// A stable numeric error code with a name.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i16)]
        pub enum ErrorCode {
            $(#[doc = $doc] $name = $code,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code's wire value.
            pub fn code(self) -> i16 {
                self as i16
            }

            /// The code for a wire value, if it is known.
            pub fn from_code(code: i16) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$name),)*
                    _ => None,
                }
            }

            /// The code's name as docs/protocol.md spells it.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)*
                }
            }

            /// Whether the same request may succeed if sent again later.
            pub fn retriable(self) -> bool {
                match self {
                    $(ErrorCode::$name => $retriable,)*
                }
            }

            /// What the code means.
            pub fn description(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $doc,)*
                }
            }
        }
    };
}

error_codes! {
    UNKNOWN_SERVER_ERROR = -1, false, "An unexpected error on the broker; its log has the details.";
    NONE = 0, false, "No error.";
    OFFSET_OUT_OF_RANGE = 1, false, "The requested offset is below the log start offset or above the log end offset.";
    CORRUPT_MESSAGE = 2, false, "A record batch failed its checksum or structure check; for a fetch, the offset is in a damaged range of the log, named by first_damaged_offset and next_valid_offset (fetch from next_valid_offset to skip it).";
    UNKNOWN_TOPIC_OR_PARTITION = 3, true, "The topic or partition does not exist.";
    LEADER_NOT_AVAILABLE = 5, true, "The partition's actor is restarting or gone; try again.";
    NOT_LEADER_OR_FOLLOWER = 6, true, "This broker does not lead the partition (it follows it, or no longer holds it): refresh the metadata and send to the leader.";
    REQUEST_TIMED_OUT = 7, true, "The request did not complete in time.";
    BROKER_NOT_AVAILABLE = 8, true, "The broker named is not among the live brokers the cluster's controller sees (it is starting, or gone).";
    MESSAGE_TOO_LARGE = 10, false, "A record batch is larger than the topic's max_message_bytes.";
    OFFSET_METADATA_TOO_LARGE = 12, false, "The metadata of a committed offset is over 4096 bytes.";
    COORDINATOR_LOAD_IN_PROGRESS = 14, true, "This broker just became the group's coordinator and is still loading the groups' records: try again after a backoff.";
    COORDINATOR_NOT_AVAILABLE = 15, true, "The group's coordinator is restarting, or (in a cluster) the group's __consumer_offsets partition has no leader yet: ask find_coordinator again after a backoff.";
    NOT_COORDINATOR = 16, true, "This broker does not coordinate the group (in a cluster, another broker leads its __consumer_offsets partition): ask find_coordinator and send there.";
    INVALID_TOPIC_EXCEPTION = 17, false, "The topic name is not valid: 1-249 characters of [a-zA-Z0-9._-], not '.' or '..'.";
    NOT_ENOUGH_REPLICAS = 19, true, "An acks=all produce was refused before appending: the partition has fewer in-sync replicas than its min_insync_replicas.";
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20, true, "An acks=all produce was appended and replicated to every in-sync replica, but the in-sync replicas were then fewer than min_insync_replicas.";
    INVALID_REQUIRED_ACKS = 21, false, "acks must be 0, 1 or -1 (all).";
    ILLEGAL_GENERATION = 22, false, "The generation id is not valid for this request: newer than any the member was given, or older than the one the request needs.";
    INVALID_GROUP_ID = 24, false, "The group id is not valid: 1-255 bytes.";
    UNKNOWN_MEMBER_ID = 25, false, "The member id is not a member of the group (it left, timed out, or never joined): join again.";
    INVALID_SESSION_TIMEOUT = 26, false, "The session timeout is outside the broker's allowed range.";
    REBALANCE_IN_PROGRESS = 27, true, "Reserved with Kafka's meaning; this broker does not return it (a commit for a partition the member does not hold gets PARTITION_NOT_OWNED).";
    TOPIC_AUTHORIZATION_FAILED = 29, false, "The principal may not do this to the topic (an ACL denies it, or none allows it).";
    GROUP_AUTHORIZATION_FAILED = 30, false, "The principal may not do this to the group (an ACL denies it, or none allows it).";
    CLUSTER_AUTHORIZATION_FAILED = 31, false, "The principal may not do this cluster-wide operation (users, ACLs, quotas; an ACL denies it, or none allows it).";
    INVALID_TIMESTAMP = 32, false, "A timestamp is not valid.";
    UNSUPPORTED_SASL_MECHANISM = 33, false, "The broker does not offer this SASL mechanism; the handshake lists those it offers.";
    ILLEGAL_SASL_STATE = 34, false, "An authentication message out of order (a second first message, a final message before the first, or authenticating twice); the connection is closed.";
    UNSUPPORTED_VERSION = 35, false, "The protocol version is not supported by this broker.";
    TOPIC_ALREADY_EXISTS = 36, false, "A topic with this name already exists.";
    INVALID_PARTITIONS = 37, false, "The partition count is not valid (at least 1, and only ever more).";
    INVALID_REPLICATION_FACTOR = 38, false, "The replication factor is not valid: at least 1 and at most the live brokers (1 for a broker alone).";
    INVALID_CONFIG = 40, false, "A topic configuration key or value is not valid.";
    NOT_CONTROLLER = 41, true, "This broker is not the cluster's controller (the office changed hands, or an election is under way): ask describe_cluster who is, and send there.";
    INVALID_REQUEST = 42, false, "The request is malformed: bad MessagePack, a missing field or a wrong type.";
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45, false, "An idempotent producer's batch does not follow the last one the partition has from it (a gap or a reordering): a batch of the producer was lost or is stuck; the sequences cannot be trusted any more.";
    DUPLICATE_SEQUENCE_NUMBER = 46, false, "Reserved with Kafka's meaning; this broker does not return it (a retried batch is answered with its first append's offsets).";
    INVALID_PRODUCER_EPOCH = 47, false, "The batch's producer epoch is older than the one the partition knows for that producer id: a newer instance of the producer took over.";
    SECURITY_DISABLED = 54, false, "The request needs security the broker does not have turned on (ACLs while security.authorization is false).";
    KAFKA_STORAGE_ERROR = 56, true, "The broker could not read or write its disk (the message says why). Writes resume once the cause is gone, except after a failed fsync, which stops writes until a restart.";
    SASL_AUTHENTICATION_FAILED = 58, false, "Authentication failed (unknown user, wrong password, a bad proof), or the listener requires authentication and the request came before it; the connection is closed.";
    UNKNOWN_PRODUCER_ID = 59, false, "Reserved with Kafka's meaning; this broker does not return it: as Kafka since 2.5 (KIP-360), a batch of a producer id the partition has no state for (never seen, or expired) is appended at any sequence.";
    NON_EMPTY_GROUP = 68, false, "The group has active members; the operation needs an empty group.";
    GROUP_ID_NOT_FOUND = 69, false, "The group does not exist.";
    FENCED_LEADER_EPOCH = 74, true, "The request carries a leader epoch older than the partition's: the sender's view is stale; refresh the metadata.";
    UNKNOWN_LEADER_EPOCH = 75, true, "The request carries a leader epoch newer than the partition knows: this broker has not heard of it yet; retry.";
    MEMBER_ID_REQUIRED = 79, false, "This connection already has a member in the group: join again with its member_id, or leave first.";
    FENCED_INSTANCE_ID = 82, false, "Another member joined with this group_instance_id; this member id is fenced.";
    INVALID_RECORD = 87, false, "A record is not valid for its topic: a record without a key sent to a compacted topic (cleanup_policy compact).";
    RESOURCE_NOT_FOUND = 91, false, "The named resource does not exist (a SCRAM user to delete).";
    UNSUPPORTED_ASSIGNOR = 112, false, "The assignor is not one of range, roundrobin, sticky.";
    HANDSHAKE_REQUIRED = 1000, false, "The first request on a connection must be a handshake.";
    UNKNOWN_OPERATION = 1001, false, "The request names an operation this broker does not know.";
    FRAME_TOO_LARGE = 1002, false, "The frame is larger than the broker's max_frame_bytes; the connection is closed.";
    BROKER_SHUTTING_DOWN = 1003, true, "The broker is shutting down and refuses new work.";
    PARTITION_NOT_OWNED = 1004, false, "The member does not hold this partition: it was never assigned to it, or the member reported it released.";
    EXTENSION_UNAVAILABLE = 1005, true, "The extension serving this custom operation failed while handling it or is restarting; try again.";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// Offsets a log cannot serve because the stored bytes that hold them are
/// damaged or missing: `first_offset` up to, not including, `next_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamagedRange {
    /// The first offset of the range.
    pub first_offset: i64,
    /// The first offset after the range: a read from it goes past the damage.
    pub next_offset: i64,
}

/// An error as the wire carries it: a code and a message. Decoding a request
/// and negotiating a version fail with one; the broker's own errors convert
/// to it in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    /// An error with `code` and a human-readable `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError { code, message: message.into() }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.code()), "duplicate code {}", code.code());
            assert_eq!(ErrorCode::from_code(code.code()), Some(code));
        }
        assert_eq!(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(), 3);
        assert_eq!(ErrorCode::TOPIC_ALREADY_EXISTS.code(), 36);
    }
}
