//! Wire types of the quota operations: `alter_quotas` and `describe_quotas`
//! (Kafka's AlterClientQuotas and DescribeClientQuotas, for the entity types
//! `user` and `client_id`). Re-exported by [`messages`](super::messages);
//! docs/protocol.md ("Quotas") describes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::messages::nil_is_default;

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct AlterQuotasRequest {
    /// `user` (a principal's name, `alice` for `User:alice`) or `client_id`.
    pub entity_type: String,
    pub entity_name: String,
    /// Rates to set: `producer_byte_rate`, `consumer_byte_rate`,
    /// `request_rate` (per second; 0 is no limit).
    #[serde(default, deserialize_with = "nil_is_default")]
    pub set: BTreeMap<String, u64>,
    /// Rates to remove: back to the broker's default.
    #[serde(default, deserialize_with = "nil_is_default")]
    pub remove: Vec<String>,
}

/// The rates of one entity, or the defaults; an absent rate is none set.
#[derive(Debug, Serialize, Deserialize, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaRates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_byte_rate: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_byte_rate: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct QuotaEntry {
    pub entity_type: String,
    pub entity_name: String,
    #[serde(flatten)]
    pub rates: QuotaRates,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct DescribeQuotasResponse {
    /// The `[quotas]` settings: what an entity without an override gets.
    pub defaults: QuotaRates,
    /// Every override, sorted by entity type and name.
    pub quotas: Vec<QuotaEntry>,
}
