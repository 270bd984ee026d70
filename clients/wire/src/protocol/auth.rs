//! Wire types of authentication and of the SCRAM users: `authenticate` (one
//! SASL message each way, as Kafka's SaslAuthenticate), `create_user`,
//! `delete_user` and `list_users` (Kafka's AlterUserScramCredentials and
//! DescribeUserScramCredentials, for one user). Re-exported by
//! [`messages`](super::messages); docs/protocol.md describes them, and
//! [`crate::scram`] the SCRAM messages carried in `auth_bytes`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What the handshake says about authentication.
#[derive(Debug, Serialize, Deserialize, Clone, Default, PartialEq, Eq)]
pub struct AuthenticationInfo {
    /// Whether every request but `handshake` and `authenticate` is refused
    /// (`SASL_AUTHENTICATION_FAILED`) until the client has authenticated.
    pub required: bool,
    /// The SASL mechanisms `authenticate` takes; empty when none.
    pub mechanisms: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct AuthenticateRequest {
    /// A SASL mechanism the handshake lists (`SCRAM-SHA-256`).
    pub mechanism: String,
    /// The client's SASL message.
    pub auth_bytes: Bytes,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct AuthenticateResponse {
    /// The server's SASL message.
    pub auth_bytes: Bytes,
    /// Whether the exchange is over and the client authenticated.
    pub complete: bool,
    /// Once complete: the principal the connection now has (`User:<name>`).
    #[serde(default)]
    pub principal: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct CreateUserRequest {
    pub user: String,
    /// `SCRAM-SHA-256`.
    pub mechanism: String,
    /// PBKDF2 iterations, 4096 to 16384.
    pub iterations: i64,
    /// 16 to 128 bytes.
    pub salt: Bytes,
    /// PBKDF2-HMAC-SHA-256(password, salt, iterations): 32 bytes. The broker
    /// keeps only the keys derived from it.
    pub salted_password: Bytes,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct DeleteUserRequest {
    pub user: String,
}

/// One user's credential, without its keys.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub user: String,
    pub mechanism: String,
    pub iterations: u32,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct ListUsersResponse {
    /// Sorted by name.
    pub users: Vec<UserSummary>,
}
