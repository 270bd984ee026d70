//! The ACL operations (docs/security.md, "Authorization"): allowed to a
//! principal with `alter` (create, delete) or `describe` (list) on the
//! cluster, and served only while the broker enforces ACLs.

use herald_wire::protocol::*;

use crate::{Client, ClientError};

impl Client {
    /// Adds ACL entries; returns how many were new (an entry already there
    /// is kept once). One entry the broker refuses adds none.
    ///
    /// # Errors
    ///
    /// `INVALID_REQUEST` naming a bad entry, `CLUSTER_AUTHORIZATION_FAILED`,
    /// `SECURITY_DISABLED` when the broker does not enforce ACLs.
    pub async fn create_acls(&self, acls: Vec<AclEntry>) -> Result<u32, ClientError> {
        let created: CreateAclsResponse = self.request(op::CREATE_ACLS, &CreateAclsRequest { acls }).await?;
        Ok(created.created)
    }

    /// Deletes every entry any of `filters` selects; returns those deleted.
    ///
    /// # Errors
    ///
    /// As [`Client::create_acls`].
    pub async fn delete_acls(&self, filters: Vec<AclFilter>) -> Result<Vec<AclEntry>, ClientError> {
        let deleted: DeleteAclsResponse = self.request(op::DELETE_ACLS, &DeleteAclsRequest { filters }).await?;
        Ok(deleted.deleted)
    }

    /// The entries `filter` selects (every entry for the default filter), sorted.
    ///
    /// # Errors
    ///
    /// `CLUSTER_AUTHORIZATION_FAILED`, `SECURITY_DISABLED`.
    pub async fn list_acls(&self, filter: &AclFilter) -> Result<Vec<AclEntry>, ClientError> {
        let listed: ListAclsResponse = self.request(op::LIST_ACLS, filter).await?;
        Ok(listed.acls)
    }
}
