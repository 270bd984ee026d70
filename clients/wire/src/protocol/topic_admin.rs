//! Wire types of the topic operations that change a live topic:
//! `alter_topic_config` (Kafka's IncrementalAlterConfigs, for one topic) and
//! `delete_records` (Kafka's DeleteRecords, for one partition). Re-exported by
//! [`messages`](super::messages); docs/protocol.md describes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config_value::ConfigValue;
use super::messages::nil_is_default;

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct AlterTopicConfigRequest {
    pub topic: String,
    /// Settings to give a value, with the same value types as `create_topic`'s `config`.
    #[serde(default, deserialize_with = "nil_is_default")]
    pub set: BTreeMap<String, ConfigValue>,
    /// Settings to put back to the broker's default.
    #[serde(default, deserialize_with = "nil_is_default")]
    pub delete: Vec<String>,
    /// Check the change and report the result without applying it.
    #[serde(default, deserialize_with = "nil_is_default")]
    pub validate_only: bool,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct AlterTopicConfigResponse {
    pub topic: String,
    /// Every setting of the topic after the change (as it would be, when
    /// `validate_only`).
    pub config: BTreeMap<String, ConfigValue>,
    /// Whether the change was only checked, not applied.
    pub validate_only: bool,
}

/// `offset` of a delete-records request meaning the partition's high watermark.
pub const DELETE_TO_HIGH_WATERMARK: i64 = -1;

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct DeleteRecordsRequest {
    pub topic: String,
    pub partition: i64,
    /// Records before this offset are deleted; -1 for the high watermark.
    pub offset: i64,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct DeleteRecordsResponse {
    /// The partition's log start offset after the request.
    pub log_start_offset: i64,
}
