//! Herald's actor system, independent of the wire.
//!
//! - [`batch`]: the record batch format (from `herald-wire`, re-exported).
//! - [`error`]: the stable error codes clients see, and the mapping to them.
//! - [`partitioner`]: Kafka's default partitioner (from `herald-wire`, re-exported).
//! - [`topic_config`]: per-topic settings and their validation.
//! - [`writer`]: the ordered fsync writer of a data directory (group commit).
//! - [`guard`]: a panic in a supervised actor's handler becomes a stop, so its
//!   supervisor restarts it.
//! - [`partition`]: one actor per partition and the log it owns (segments,
//!   indexes, recovery, damaged ranges, the scrub, retention).
//! - [`topic`]: one actor per topic: partition routing and the partitioner.
//! - [`cleaner`]: the log cleaner thread that compacts `cleanup_policy =
//!   compact` topics.
//! - [`stats`]: counters bumped on the data path, read by `/metrics`.
//! - [`broker`]: the topic directory: admin operations, metadata, placement of
//!   partitions on arbiters, shutdown.

pub mod broker;
pub mod buffers;
pub mod cleaner;
pub mod error;
pub mod fs;
pub mod group;
pub mod guard;
pub mod partition;
pub mod producer_ids;
pub mod stats;
pub mod topic;
pub mod topic_config;
pub mod topic_route;
pub mod writer;

#[cfg(test)]
mod test_support;

pub use herald_wire::{batch, partitioner};

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Mailbox capacity meaning "unbounded" (actix's 0), for actors whose senders
/// rely on `Addr::send` enqueueing at once (see `Topic::started`).
pub const UNBOUNDED_MAILBOX: usize = 0;
