//! Who a connection is and what it may do: TLS on the client listener,
//! authentication (SASL/SCRAM-SHA-256 in the handshake, or a TLS client
//! certificate), authorization (ACLs) and quotas. docs/security.md has the
//! threat model; docs/protocol.md the exchange on the wire.

pub mod acl;
pub mod authorizer;
pub mod quota;
pub mod scram;
pub mod store;
pub mod tls;
pub mod tls_subject;
pub mod users;
pub mod users_store;

use std::fmt;

/// An authenticated identity, as Kafka writes it: `User:<name>`. A client
/// that did not authenticate is [`Principal::anonymous`]; a TLS client
/// certificate's principal is `User:` and the certificate's subject
/// (`User:CN=alice,O=Example`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    name: String,
}

/// The only principal type, as in Kafka.
pub const USER_TYPE: &str = "User";

impl Principal {
    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Principal {
        Principal { name: name.into() }
    }

    /// `User:ANONYMOUS`, the principal of a connection that did not
    /// authenticate.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == "ANONYMOUS"
    }

    /// The name after `User:`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses `User:<name>` (the name non-empty).
    ///
    /// # Errors
    ///
    /// Any other form, with what was expected.
    pub fn parse(text: &str) -> Result<Principal, String> {
        match text.split_once(':') {
            Some((USER_TYPE, name)) if !name.is_empty() => Ok(Principal::user(name)),
            _ => Err(format!("`{text}` is not a principal: expected `User:<name>`")),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{USER_TYPE}:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_and_print_as_kafka_writes_them() {
        let alice = Principal::parse("User:alice").unwrap();
        assert_eq!(alice, Principal::user("alice"));
        assert_eq!(alice.to_string(), "User:alice");
        assert_eq!(Principal::parse("User:CN=a,O=b").unwrap().name(), "CN=a,O=b");
        assert!(Principal::anonymous().is_anonymous());
        for bad in ["alice", "User:", "Group:x", ":x", ""] {
            assert!(Principal::parse(bad).is_err(), "{bad}");
        }
    }
}
