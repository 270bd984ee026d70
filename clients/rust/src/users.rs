//! The SCRAM users admin calls of a [`Client`]. The client salts and hashes
//! the password (PBKDF2-HMAC-SHA-256, a fresh random salt); the password
//! never leaves it, and the broker keeps only keys derived from the hash.

use herald_wire::protocol::{op, CreateUserRequest, DeleteUserRequest, Empty, ListUsersResponse, UserSummary};
use herald_wire::scram::{self, SCRAM_SHA_256};

use crate::{Client, ClientError};

/// The PBKDF2 iterations of a credential the client creates (RFC 7677's and
/// Kafka's default).
pub const DEFAULT_ITERATIONS: u32 = scram::MIN_ITERATIONS;

impl Client {
    /// Creates SCRAM-SHA-256 user `user` with `password`, or replaces its
    /// password, with [`DEFAULT_ITERATIONS`].
    ///
    /// # Errors
    ///
    /// `INVALID_REQUEST` for a name out of bounds; `CLUSTER_AUTHORIZATION_FAILED`.
    pub async fn create_user(&self, user: &str, password: &str) -> Result<(), ClientError> {
        self.create_user_with_iterations(user, password, DEFAULT_ITERATIONS).await
    }

    /// [`Client::create_user`] with `iterations` (4096 to 16384).
    ///
    /// # Errors
    ///
    /// As [`Client::create_user`]; `INVALID_REQUEST` for iterations out of bounds.
    pub async fn create_user_with_iterations(
        &self,
        user: &str,
        password: &str,
        iterations: u32,
    ) -> Result<(), ClientError> {
        let salt = scram::random_bytes(scram::SALT_BYTES).map_err(|e| ClientError::Protocol(e.0))?;
        let password = password.to_owned();
        let hashed = salt.clone();
        let salted = tokio::task::spawn_blocking(move || scram::salted_password(&password, &hashed, iterations))
            .await
            .map_err(|e| ClientError::Protocol(format!("salting the password failed: {e}")))?;
        let request = CreateUserRequest {
            user: user.into(),
            mechanism: SCRAM_SHA_256.into(),
            iterations: i64::from(iterations),
            salt: salt.into(),
            salted_password: salted.to_vec().into(),
        };
        let _: Empty = self.request(op::CREATE_USER, &request).await?;
        Ok(())
    }

    /// Deletes user `user`'s credential. Connections it authenticated stay
    /// open; new ones are refused.
    ///
    /// # Errors
    ///
    /// `RESOURCE_NOT_FOUND` when it has none.
    pub async fn delete_user(&self, user: &str) -> Result<(), ClientError> {
        let _: Empty = self.request(op::DELETE_USER, &DeleteUserRequest { user: user.into() }).await?;
        Ok(())
    }

    /// Every SCRAM user, sorted by name (no keys).
    ///
    /// # Errors
    ///
    /// `CLUSTER_AUTHORIZATION_FAILED`.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, ClientError> {
        let response: ListUsersResponse = self.request(op::LIST_USERS, &Empty {}).await?;
        Ok(response.users)
    }
}
