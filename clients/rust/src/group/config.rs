//! What a group consumer is told (its configuration) and what it tells (its
//! events).

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// The first offset still stored.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// Fail instead.
    None,
}

/// How a group consumer behaves.
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// The group to join.
    pub group_id: String,
    /// The subscription: topics whose partitions the group shares.
    pub topics: Vec<String>,
    /// Static membership: a member that comes back with the same id within its
    /// session timeout gets its partitions back without a rebalance.
    pub group_instance_id: Option<String>,
    /// How long the broker keeps a silent member, in ms (within the broker's
    /// bounds, see `Client::features`).
    pub session_timeout_ms: u64,
    /// "range", "roundrobin" or "sticky"; the broker's default when `None`.
    pub assignor: Option<String>,
    /// Where a partition without a committed offset starts.
    pub auto_offset_reset: AutoOffsetReset,
    /// Commit positions every `auto_commit_interval_ms`, before a partition
    /// is released, and on `close`.
    pub auto_commit: bool,
    /// How often positions are committed with `auto_commit`, ms.
    pub auto_commit_interval_ms: u64,
    /// Fetch limit per partition, bytes (a soft limit).
    pub max_bytes: u64,
    /// How long a fetch waits for data, ms.
    pub max_wait_ms: u64,
}

impl GroupConsumerConfig {
    /// Defaults for `group_id` reading `topics`.
    pub fn new(group_id: &str, topics: &[&str]) -> Self {
        GroupConsumerConfig {
            group_id: group_id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            group_instance_id: None,
            session_timeout_ms: 10_000,
            assignor: None,
            auto_offset_reset: AutoOffsetReset::Earliest,
            auto_commit: true,
            auto_commit_interval_ms: 5_000,
            max_bytes: 1 << 20,
            max_wait_ms: 200,
        }
    }
}

/// A change of the partitions this consumer owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// These partitions were given to this consumer (generation given).
    Assigned {
        /// The generation of the assignment that gave them.
        generation_id: i64,
        /// (topic, partition) pairs.
        partitions: Vec<(String, u32)>,
    },
    /// These partitions were taken away (after their offsets were committed
    /// when auto-commit is on).
    Revoked {
        /// The generation of the assignment that took them.
        generation_id: i64,
        /// (topic, partition) pairs.
        partitions: Vec<(String, u32)>,
    },
    /// The consumer lost its membership (session timeout, fenced) and its
    /// partitions without a chance to commit; it has joined again.
    Lost {
        /// (topic, partition) pairs.
        partitions: Vec<(String, u32)>,
    },
}
