//! Access control lists, as Kafka's: an entry allows or denies one principal
//! (or `User:*`), from one host (or `*`), one operation on the resources one
//! pattern names. A request is allowed when no matching entry denies it and
//! one allows it (deny wins; nothing allows by default). Super users are
//! allowed everything; the [`Authorizer`](super::authorizer::Authorizer)
//! checks that before the entries.
//!
//! `describe` is implied by `read`, `write`, `delete` and `alter` on the same
//! resource, and `all` stands for every operation, as in Kafka.

use std::fmt;
use std::net::IpAddr;

use herald_wire::protocol::{AclEntry, CLUSTER_RESOURCE};

use super::Principal;

/// What a request does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    /// Calling a custom operation (`x.<extension>.<name>`).
    Call,
    /// What brokers do to each other in a cluster (a follower's fetch from
    /// its leader), as Kafka's ClusterAction.
    ClusterAction,
    /// On the cluster: getting an idempotent producer id (`init_producer_id`).
    IdempotentWrite,
}

/// The kinds of resource an entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Topic,
    Group,
    /// The broker as a whole: creating topics, users, ACLs.
    Cluster,
    /// A custom operation, by its wire name.
    Operation,
}

/// How an entry's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    /// The name itself, or every name for `*`.
    Literal,
    /// Every name that starts with it.
    Prefixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Allow,
    Deny,
}

/// One resource a request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: ResourceType,
    pub name: String,
}

impl Resource {
    pub fn topic(name: impl Into<String>) -> Resource {
        Resource { kind: ResourceType::Topic, name: name.into() }
    }

    pub fn group(name: impl Into<String>) -> Resource {
        Resource { kind: ResourceType::Group, name: name.into() }
    }

    pub fn cluster() -> Resource {
        Resource { kind: ResourceType::Cluster, name: CLUSTER_RESOURCE.into() }
    }

    pub fn custom_operation(name: impl Into<String>) -> Resource {
        Resource { kind: ResourceType::Operation, name: name.into() }
    }
}

/// A checked entry: [`AclEntry`]'s words parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// `None` for `User:*`.
    pub principal: Option<Principal>,
    /// `None` for `*`.
    pub host: Option<IpAddr>,
    pub operation: Operation,
    pub permission: Permission,
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
}

macro_rules! words {
    ($ty:ident, $what:literal, $($variant:ident = $word:literal),* $(,)?) => {
        impl $ty {
            /// Every word, in order.
            pub const WORDS: &'static [&'static str] = &[$($word),*];

            /// The word on the wire.
            pub fn word(self) -> &'static str {
                match self { $($ty::$variant => $word,)* }
            }

            /// Parses the word.
            ///
            /// # Errors
            ///
            /// An unknown word, with the known ones.
            pub fn parse(word: &str) -> Result<$ty, String> {
                match word {
                    $($word => Ok($ty::$variant),)*
                    other => Err(format!("unknown {} `{other}` (one of {})", $what, Self::WORDS.join(", "))),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.word())
            }
        }
    };
}

words!(
    Operation,
    "operation",
    All = "all",
    Read = "read",
    Write = "write",
    Create = "create",
    Delete = "delete",
    Alter = "alter",
    Describe = "describe",
    Call = "call",
    ClusterAction = "cluster_action",
    IdempotentWrite = "idempotent_write"
);
words!(ResourceType, "resource type", Topic = "topic", Group = "group", Cluster = "cluster", Operation = "operation");
words!(PatternType, "pattern type", Literal = "literal", Prefixed = "prefixed");
words!(Permission, "permission", Allow = "allow", Deny = "deny");

impl ResourceType {
    /// The operations an entry may name for this kind of resource (`all`
    /// included), as Kafka allows them.
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[All, Read, Write, Create, Delete, Alter, Describe],
            ResourceType::Group => &[All, Read, Delete, Describe],
            ResourceType::Cluster => &[All, Create, Alter, Describe, ClusterAction, IdempotentWrite],
            ResourceType::Operation => &[All, Call],
        }
    }
}

impl Acl {
    /// Checks and parses an entry from the wire.
    ///
    /// # Errors
    ///
    /// What is wrong with it, in words a user can act on.
    pub fn parse(entry: &AclEntry) -> Result<Acl, String> {
        let principal = match entry.principal.as_str() {
            "User:*" => None,
            text => Some(Principal::parse(text)?),
        };
        let host = match entry.host.as_str() {
            "*" => None,
            text => Some(text.parse::<IpAddr>().map_err(|_| format!("host `{text}` is not `*` or an IP address"))?),
        };
        let operation = Operation::parse(&entry.operation)?;
        let permission = Permission::parse(&entry.permission)?;
        let resource_type = ResourceType::parse(&entry.resource_type)?;
        let pattern_type = PatternType::parse(&entry.pattern_type)?;
        if !resource_type.operations().contains(&operation) {
            let allowed: Vec<&str> = resource_type.operations().iter().map(|o| o.word()).collect();
            return Err(format!(
                "operation `{operation}` does not apply to a {resource_type} (one of {})",
                allowed.join(", ")
            ));
        }
        let name = entry.resource_name.as_str();
        if name.is_empty() {
            return Err("resource_name must not be empty".into());
        }
        if pattern_type == PatternType::Prefixed && name == "*" {
            return Err("a prefixed pattern cannot be `*`: use a literal `*` for every resource".into());
        }
        if resource_type == ResourceType::Cluster && (name != CLUSTER_RESOURCE || pattern_type != PatternType::Literal)
        {
            return Err(format!("the cluster resource is the literal `{CLUSTER_RESOURCE}`"));
        }
        Ok(Acl { principal, host, operation, permission, resource_type, resource_name: name.to_string(), pattern_type })
    }

    /// Whether this entry speaks of `principal` connecting from `host` doing
    /// `operation` (or what implies it, for an allow) on `resource`.
    pub fn matches(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        operation: Operation,
        resource: &Resource,
    ) -> bool {
        self.principal.as_ref().is_none_or(|p| p == principal)
            && self.host.is_none_or(|h| Some(h) == host)
            && self.resource_type == resource.kind
            && self.names(&resource.name)
            && self.covers(operation)
    }

    fn names(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == "*" || self.resource_name == name,
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }

    /// Whether the entry's operation covers `operation`: itself, `all`, and
    /// for an allow, `describe` by `read`, `write`, `delete` or `alter`.
    fn covers(&self, operation: Operation) -> bool {
        use Operation::*;
        self.operation == operation
            || self.operation == All
            || (self.permission == Permission::Allow
                && operation == Describe
                && matches!(self.operation, Read | Write | Delete | Alter))
    }
}

/// Whether the entries allow `operation` on at least one resource of type
/// `kind` (Kafka's "authorize by resource type"): some entry allows it on a
/// name or pattern that no entry denies it on.
pub fn allowed_on_any<'a>(
    acls: impl IntoIterator<Item = &'a Acl> + Clone,
    principal: &Principal,
    host: Option<IpAddr>,
    operation: Operation,
    kind: ResourceType,
) -> bool {
    acls.clone().into_iter().any(|acl| {
        let candidate = Resource { kind, name: acl.resource_name.clone() };
        acl.permission == Permission::Allow
            && acl.matches(principal, host, operation, &candidate)
            && allowed(acls.clone(), principal, host, operation, &candidate)
    })
}

/// Whether the entries allow `operation`: no entry denies it and one allows it.
pub fn allowed<'a>(
    acls: impl IntoIterator<Item = &'a Acl>,
    principal: &Principal,
    host: Option<IpAddr>,
    operation: Operation,
    resource: &Resource,
) -> bool {
    let mut allow = false;
    for acl in acls.into_iter().filter(|acl| acl.matches(principal, host, operation, resource)) {
        match acl.permission {
            Permission::Deny => return false,
            Permission::Allow => allow = true,
        }
    }
    allow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(principal: &str, operation: &str, permission: &str, kind: &str, name: &str, pattern: &str) -> AclEntry {
        AclEntry {
            principal: principal.into(),
            host: "*".into(),
            operation: operation.into(),
            permission: permission.into(),
            resource_type: kind.into(),
            resource_name: name.into(),
            pattern_type: pattern.into(),
        }
    }

    fn acls(entries: &[AclEntry]) -> Vec<Acl> {
        entries.iter().map(|e| Acl::parse(e).unwrap()).collect()
    }

    fn may(acls: &[Acl], who: &str, operation: Operation, resource: Resource) -> bool {
        allowed(acls, &Principal::parse(who).unwrap(), None, operation, &resource)
    }

    #[test]
    fn write_on_any_topic_is_write_on_some_name_no_entry_denies() {
        let any = |set: &[Acl], who: &str| {
            allowed_on_any(set, &Principal::parse(who).unwrap(), None, Operation::Write, ResourceType::Topic)
        };
        let set = acls(&[
            entry("User:alice", "write", "allow", "topic", "logs.", "prefixed"),
            entry("User:bob", "write", "allow", "topic", "orders", "literal"),
            entry("User:bob", "write", "deny", "topic", "*", "literal"),
            entry("User:carol", "read", "allow", "topic", "*", "literal"),
            entry("User:dave", "idempotent_write", "allow", "cluster", "herald-cluster", "literal"),
        ]);
        assert!(any(&set, "User:alice"));
        assert!(!any(&set, "User:bob"), "denied on every topic");
        assert!(!any(&set, "User:carol"), "read is not write");
        assert!(!any(&set, "User:dave"));
        assert!(may(&set, "User:dave", Operation::IdempotentWrite, Resource::cluster()));
    }

    #[test]
    fn nothing_is_allowed_without_an_entry() {
        assert!(!may(&[], "User:alice", Operation::Read, Resource::topic("t")));
    }

    #[test]
    fn literal_prefixed_and_wildcard_names() {
        let set = acls(&[
            entry("User:alice", "read", "allow", "topic", "orders", "literal"),
            entry("User:alice", "write", "allow", "topic", "logs.", "prefixed"),
            entry("User:*", "describe", "allow", "topic", "*", "literal"),
        ]);
        assert!(may(&set, "User:alice", Operation::Read, Resource::topic("orders")));
        assert!(!may(&set, "User:alice", Operation::Read, Resource::topic("orders2")));
        assert!(may(&set, "User:alice", Operation::Write, Resource::topic("logs.web")));
        assert!(!may(&set, "User:alice", Operation::Write, Resource::topic("log")));
        assert!(may(&set, "User:bob", Operation::Describe, Resource::topic("anything")));
        assert!(!may(&set, "User:bob", Operation::Read, Resource::topic("orders")));
        // A topic entry says nothing of a group of the same name.
        assert!(!may(&set, "User:alice", Operation::Read, Resource::group("orders")));
    }

    #[test]
    fn deny_wins_over_allow() {
        let set = acls(&[
            entry("User:*", "all", "allow", "topic", "*", "literal"),
            entry("User:mallory", "write", "deny", "topic", "pay", "prefixed"),
        ]);
        assert!(may(&set, "User:alice", Operation::Write, Resource::topic("payments")));
        assert!(!may(&set, "User:mallory", Operation::Write, Resource::topic("payments")));
        assert!(may(&set, "User:mallory", Operation::Read, Resource::topic("payments")));
        assert!(may(&set, "User:mallory", Operation::Write, Resource::topic("orders")));
    }

    #[test]
    fn describe_is_implied_by_read_write_delete_and_alter_but_not_by_a_deny() {
        for op in ["read", "write", "delete", "alter"] {
            let set = acls(&[entry("User:a", op, "allow", "topic", "t", "literal")]);
            assert!(may(&set, "User:a", Operation::Describe, Resource::topic("t")), "{op}");
            assert!(!may(&set, "User:a", Operation::Create, Resource::topic("t")), "{op}");
        }
        let set = acls(&[
            entry("User:a", "describe", "allow", "topic", "t", "literal"),
            entry("User:a", "read", "deny", "topic", "t", "literal"),
        ]);
        assert!(may(&set, "User:a", Operation::Describe, Resource::topic("t")));
        assert!(!may(&set, "User:a", Operation::Read, Resource::topic("t")));
    }

    #[test]
    fn hosts_narrow_an_entry() {
        let mut e = entry("User:a", "read", "allow", "topic", "t", "literal");
        e.host = "10.0.0.1".into();
        let set = acls(&[e]);
        let a = Principal::user("a");
        let t = Resource::topic("t");
        assert!(allowed(&set, &a, Some("10.0.0.1".parse().unwrap()), Operation::Read, &t));
        assert!(!allowed(&set, &a, Some("10.0.0.2".parse().unwrap()), Operation::Read, &t));
        assert!(!allowed(&set, &a, None, Operation::Read, &t));
    }

    #[test]
    fn entries_that_cannot_mean_anything_are_refused_with_a_reason() {
        let bad = [
            (entry("alice", "read", "allow", "topic", "t", "literal"), "not a principal"),
            (entry("User:a", "reed", "allow", "topic", "t", "literal"), "unknown operation `reed`"),
            (entry("User:a", "read", "maybe", "topic", "t", "literal"), "unknown permission"),
            (entry("User:a", "read", "allow", "table", "t", "literal"), "unknown resource type"),
            (entry("User:a", "read", "allow", "topic", "t", "suffixed"), "unknown pattern type"),
            (entry("User:a", "write", "allow", "group", "g", "literal"), "does not apply to a group"),
            (entry("User:a", "read", "allow", "topic", "", "literal"), "must not be empty"),
            (entry("User:a", "read", "allow", "topic", "*", "prefixed"), "cannot be `*`"),
            (entry("User:a", "alter", "allow", "cluster", "c", "literal"), "herald-cluster"),
            (entry("User:a", "call", "allow", "topic", "t", "literal"), "does not apply to a topic"),
        ];
        for (e, expected) in bad {
            let err = Acl::parse(&e).unwrap_err();
            assert!(err.contains(expected), "{e:?}: {err}");
        }
        let mut e = entry("User:a", "read", "allow", "topic", "t", "literal");
        e.host = "example.com".into();
        assert!(Acl::parse(&e).unwrap_err().contains("IP address"));
    }
}
