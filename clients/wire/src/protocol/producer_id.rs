//! Wire types of `init_producer_id`, which gives an idempotent producer its
//! id and epoch. Re-exported by [`messages`](super::messages);
//! docs/protocol.md ("`init_producer_id`") describes them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    /// Reserved for transactions; must be nil or absent.
    #[serde(default)]
    pub transactional_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
pub struct InitProducerIdResponse {
    /// Unique for the life of the broker's data directory.
    pub producer_id: i64,
    /// 0 for a new id.
    pub producer_epoch: i16,
}
