//! Authentication: the credentials a [`Client`] connects with, and the
//! SCRAM-SHA-256 exchange it runs right after the handshake (again on
//! [`Client::reconnect`]). The client checks the broker's signature: a
//! broker that does not know the password's keys cannot complete the
//! exchange, and the connect fails.

use std::fmt;

use herald_wire::protocol::{op, AuthenticateRequest, AuthenticateResponse};
use herald_wire::scram::{self, ClientFinal, ClientFirst, ServerFinal, ServerFirst, SCRAM_SHA_256};

use crate::{Client, ClientError};

/// A user name and password to authenticate with. Its `Debug` does not
/// show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    mechanism: &'static str,
    user: String,
    password: String,
}

impl Credentials {
    /// SCRAM-SHA-256 with `user` and `password`.
    pub fn scram_sha_256(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials { mechanism: SCRAM_SHA_256, user: user.into(), password: password.into() }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("mechanism", &self.mechanism).field("user", &self.user).finish()
    }
}

fn protocol(message: impl Into<String>) -> ClientError {
    ClientError::Protocol(message.into())
}

fn text(bytes: &[u8]) -> Result<&str, ClientError> {
    std::str::from_utf8(bytes).map_err(|_| protocol("the broker's SCRAM message is not UTF-8"))
}

impl Client {
    /// Runs the SCRAM exchange on this connection; the principal the broker
    /// reports once it is complete.
    ///
    /// # Errors
    ///
    /// `SASL_AUTHENTICATION_FAILED` for a wrong password or an unknown user
    /// (the broker closes the connection), `UNSUPPORTED_SASL_MECHANISM`,
    /// [`ClientError::Protocol`] when the broker's messages are malformed or
    /// its signature is wrong.
    pub(crate) async fn authenticate(&self, credentials: &Credentials) -> Result<String, ClientError> {
        let first = ClientFirst { user: credentials.user.clone(), nonce: scram::nonce().map_err(|e| protocol(e.0))? };
        let send = |message: String| AuthenticateRequest {
            mechanism: credentials.mechanism.into(),
            auth_bytes: message.into_bytes().into(),
        };
        let answer: AuthenticateResponse = self.request(op::AUTHENTICATE, &send(first.message())).await?;
        let server_first_text = text(&answer.auth_bytes)?.to_owned();
        let server_first = ServerFirst::parse(&server_first_text).map_err(|e| protocol(e.to_string()))?;
        if answer.complete || !server_first.nonce.starts_with(&first.nonce) || server_first.nonce == first.nonce {
            return Err(protocol("the broker's server-first message does not extend this client's nonce"));
        }
        let password = credentials.password.clone();
        let (salt, iterations) = (server_first.salt.clone(), server_first.iterations);
        // PBKDF2 takes milliseconds of CPU: off the runtime's threads.
        let salted = tokio::task::spawn_blocking(move || scram::salted_password(&password, &salt, iterations))
            .await
            .map_err(|e| protocol(format!("salting the password failed: {e}")))?;
        let mut final_ = ClientFinal { nonce: server_first.nonce, proof: [0; scram::KEY_BYTES] };
        let auth = scram::auth_message(&first.bare(), &server_first_text, &final_.without_proof());
        final_.proof = scram::client_proof(&salted, &auth);
        let answer: AuthenticateResponse = self.request(op::AUTHENTICATE, &send(final_.message())).await?;
        let server_final = ServerFinal::parse(text(&answer.auth_bytes)?).map_err(|e| protocol(e.to_string()))?;
        let keys = scram::StoredKeys::derive(&salted);
        let expected = scram::server_signature(&keys.server_key, &auth);
        if !scram::signatures_match(&server_final.signature, &expected) {
            return Err(protocol("the broker's SCRAM signature is wrong: it does not hold this user's keys"));
        }
        match (answer.complete, answer.principal) {
            (true, Some(principal)) => Ok(principal),
            _ => Err(protocol("the broker did not complete the SCRAM exchange")),
        }
    }
}
