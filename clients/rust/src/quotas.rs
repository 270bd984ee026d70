//! The quota operations (docs/security.md, "Quotas"): allowed to a principal
//! with `alter` (change) or `describe` (list) on the cluster when the broker
//! enforces ACLs.

use std::collections::BTreeMap;

use herald_wire::protocol::*;

use crate::{Client, ClientError};

impl Client {
    /// Sets rates of an entity (`entity_type` `user` or `client_id`) and
    /// removes others (back to the broker's defaults).
    ///
    /// # Errors
    ///
    /// `INVALID_REQUEST` for an unknown entity type or rate name,
    /// `CLUSTER_AUTHORIZATION_FAILED`, `KAFKA_STORAGE_ERROR`.
    pub async fn alter_quotas(
        &self,
        entity_type: &str,
        entity_name: &str,
        set: BTreeMap<String, u64>,
        remove: Vec<String>,
    ) -> Result<(), ClientError> {
        let request =
            AlterQuotasRequest { entity_type: entity_type.into(), entity_name: entity_name.into(), set, remove };
        let _: Empty = self.request(op::ALTER_QUOTAS, &request).await?;
        Ok(())
    }

    /// The broker's default rates and every override.
    ///
    /// # Errors
    ///
    /// `CLUSTER_AUTHORIZATION_FAILED`.
    pub async fn describe_quotas(&self) -> Result<DescribeQuotasResponse, ClientError> {
        self.request(op::DESCRIBE_QUOTAS, &Empty {}).await
    }
}
