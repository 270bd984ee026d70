//! Wire types of the ACL operations: `create_acls`, `delete_acls` and
//! `list_acls` (Kafka's CreateAcls, DeleteAcls and DescribeAcls).
//! Re-exported by [`messages`](super::messages); docs/protocol.md ("Access
//! control") describes them. Every field is a `str`; the broker checks the
//! words (an unknown one is INVALID_REQUEST naming it).

use serde::{Deserialize, Serialize};

/// The name of the one `cluster` resource.
pub const CLUSTER_RESOURCE: &str = "herald-cluster";

/// One access control entry.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclEntry {
    /// `User:<name>`, or `User:*` for every principal.
    pub principal: String,
    /// The client's IP address, or `*` for any (the default).
    #[serde(default = "any_host")]
    pub host: String,
    /// `all`, `read`, `write`, `create`, `delete`, `alter`, `describe`, `call`.
    pub operation: String,
    /// `allow` or `deny`.
    pub permission: String,
    /// `topic`, `group`, `cluster` or `operation` (a custom operation).
    pub resource_type: String,
    /// A name, `*` for every resource of the type (literal only), or
    /// [`CLUSTER_RESOURCE`] for the cluster.
    pub resource_name: String,
    /// `literal` (the default) or `prefixed` (every name starting with it).
    #[serde(default = "literal")]
    pub pattern_type: String,
}

fn any_host() -> String {
    "*".into()
}

fn literal() -> String {
    "literal".into()
}

/// Which ACLs to list or delete: each field present must equal the entry's
/// (a missing or nil field matches any value).
#[derive(Debug, Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_type: Option<String>,
}

impl AclFilter {
    /// Whether `entry` is one this filter selects.
    pub fn matches(&self, entry: &AclEntry) -> bool {
        let field = |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        field(&self.principal, &entry.principal)
            && field(&self.host, &entry.host)
            && field(&self.operation, &entry.operation)
            && field(&self.permission, &entry.permission)
            && field(&self.resource_type, &entry.resource_type)
            && field(&self.resource_name, &entry.resource_name)
            && field(&self.pattern_type, &entry.pattern_type)
    }
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct CreateAclsRequest {
    pub acls: Vec<AclEntry>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct CreateAclsResponse {
    /// How many of the entries were new (an entry already there is kept once).
    pub created: u32,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct DeleteAclsRequest {
    /// Every entry matching any of the filters is deleted.
    pub filters: Vec<AclFilter>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct DeleteAclsResponse {
    pub deleted: Vec<AclEntry>,
}

/// `list_acls`: the filter's fields are the request's (all optional).
pub type ListAclsRequest = AclFilter;

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct ListAclsResponse {
    pub acls: Vec<AclEntry>,
}
