//! The broker's side of one SCRAM-SHA-256 exchange (the messages and keys
//! are in [`herald_wire::scram`]), and what the listener needs to
//! authenticate clients ([`Authenticator`]).
//!
//! Two steps, each pure: [`start`] takes the client-first message and the
//! users, and answers the server-first message; [`Exchange::finish`] takes
//! the client-final message and answers the server-final one, or says why
//! the client failed. A name without a credential goes through both steps
//! like any other (a salt derived from the name, see
//! [`UserTable::unknown_user`]) and fails at the proof with the same
//! [`Failure`] as a wrong password, so the exchange does not tell which.

use std::time::Duration;

use herald_wire::scram::{self, ClientFinal, ClientFirst, ScramError, ServerFinal, ServerFirst};

use super::users::{Credential, UserTable};
use super::users_store::Users;
use super::Principal;

/// How the client listener authenticates: `[security]` settings and the users.
#[derive(Clone)]
pub struct Authenticator {
    /// `security.authentication = "required"`.
    pub required: bool,
    /// `security.sasl_mechanisms`.
    pub mechanisms: Vec<String>,
    /// `security.auth_failure_delay_ms`.
    pub failure_delay: Duration,
    pub users: Users,
}

/// Why an exchange failed. [`Failure::message`] is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A message that does not follow the grammar.
    BadMessage(ScramError),
    /// The client-final nonce is not the one of this exchange (a replayed or
    /// forged message).
    NonceMismatch,
    /// The proof is wrong, or the name has no credential: one failure, so
    /// that the two cannot be told apart.
    InvalidCredentials,
}

/// The message of [`Failure::InvalidCredentials`], as Kafka words it.
pub const INVALID_CREDENTIALS: &str =
    "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256";

impl Failure {
    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            Failure::BadMessage(err) => format!("Authentication failed: {err}"),
            Failure::NonceMismatch => {
                "Authentication failed: the client-final nonce is not the one of this exchange".into()
            }
            Failure::InvalidCredentials => INVALID_CREDENTIALS.into(),
        }
    }
}

/// An exchange between its two steps.
#[derive(Debug, Clone)]
pub struct Exchange {
    user: String,
    known: bool,
    credential: Credential,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl Exchange {
    /// The name the client gave.
    pub fn user(&self) -> &str {
        &self.user
    }
}

/// Whether `message` looks like a client-first message (its GS2 header),
/// rather than a client-final one: for telling an out-of-order message from
/// a malformed one.
pub fn is_client_first(message: &[u8]) -> bool {
    [&b"n,"[..], b"y,", b"p="].iter().any(|p| message.starts_with(p))
}

/// Step one: the server-first message for `client_first`.
///
/// # Errors
///
/// [`Failure::BadMessage`] for a message that is not a client-first message
/// this broker takes.
pub fn start(users: &UserTable, client_first: &[u8]) -> Result<(Exchange, String), Failure> {
    let text = utf8(client_first)?;
    let first = ClientFirst::parse(text).map_err(Failure::BadMessage)?;
    let (credential, known) = match users.get(&first.user) {
        Some(credential) => (credential.clone(), true),
        None => (users.unknown_user(&first.user), false),
    };
    let server_nonce = scram::nonce().map_err(Failure::BadMessage)?;
    let nonce = format!("{}{server_nonce}", first.nonce);
    let server_first =
        ServerFirst { nonce: nonce.clone(), salt: credential.salt.clone(), iterations: credential.iterations }
            .message();
    let exchange =
        Exchange { user: first.user.clone(), known, credential, client_first_bare: first.bare(), server_first, nonce };
    let answer = exchange.server_first.clone();
    Ok((exchange, answer))
}

impl Exchange {
    /// Step two: the principal and the server-final message for
    /// `client_final`.
    ///
    /// # Errors
    ///
    /// See [`Failure`].
    pub fn finish(self, client_final: &[u8]) -> Result<(Principal, String), Failure> {
        let final_ = ClientFinal::parse(utf8(client_final)?).map_err(Failure::BadMessage)?;
        if !scram::signatures_match(final_.nonce.as_bytes(), self.nonce.as_bytes()) {
            return Err(Failure::NonceMismatch);
        }
        let auth = scram::auth_message(&self.client_first_bare, &self.server_first, &final_.without_proof());
        // Checked for an unknown name too, against keys no proof matches:
        // the same work, the same answer.
        let matches = scram::proof_matches(&self.credential.keys.stored_key, &auth, &final_.proof);
        if !(matches && self.known) {
            return Err(Failure::InvalidCredentials);
        }
        let signature = scram::server_signature(&self.credential.keys.server_key, &auth);
        Ok((Principal::user(self.user), ServerFinal { signature }.message()))
    }
}

fn utf8(message: &[u8]) -> Result<&str, Failure> {
    std::str::from_utf8(message).map_err(|_| Failure::BadMessage(ScramError("a SCRAM message is UTF-8".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_wire::scram::{salted_password, SCRAM_SHA_256};

    fn table() -> UserTable {
        let mut table = UserTable::empty().unwrap();
        let salt = [3u8; 32];
        table.upsert("alice", SCRAM_SHA_256, 4096, &salt, &salted_password("pw", &salt, 4096)).unwrap();
        table
    }

    /// The client's side of an exchange, by hand: its final message.
    fn client_final(client_first: &str, server_first: &str, password: &str) -> String {
        let first = ClientFirst::parse(client_first).unwrap();
        let server = ServerFirst::parse(server_first).unwrap();
        let salted = salted_password(password, &server.salt, server.iterations);
        let mut final_ = ClientFinal { nonce: server.nonce, proof: [0; 32] };
        let auth = scram::auth_message(&first.bare(), server_first, &final_.without_proof());
        final_.proof = scram::client_proof(&salted, &auth);
        final_.message()
    }

    #[test]
    fn the_right_password_authenticates_and_a_wrong_one_or_a_stranger_fails_alike() {
        let users = table();
        let first = "n,,n=alice,r=abc";
        let (exchange, server_first) = start(&users, first.as_bytes()).unwrap();
        assert!(server_first.starts_with("r=abc") && server_first.ends_with(",i=4096"));
        let (principal, server_final) = exchange.finish(client_final(first, &server_first, "pw").as_bytes()).unwrap();
        assert_eq!(principal.to_string(), "User:alice");
        assert!(server_final.starts_with("v="));

        let (exchange, server_first) = start(&users, first.as_bytes()).unwrap();
        let wrong = exchange.finish(client_final(first, &server_first, "pW").as_bytes()).unwrap_err();
        let stranger = "n,,n=mallory,r=abc";
        let (exchange, server_first) = start(&users, stranger.as_bytes()).unwrap();
        let (_, again) = start(&users, stranger.as_bytes()).unwrap();
        let salt = |m: &str| m.split(',').nth(1).unwrap().to_owned();
        assert_eq!(salt(&server_first), salt(&again), "an unknown name's salt does not vary");
        let unknown = exchange.finish(client_final(stranger, &server_first, "pw").as_bytes()).unwrap_err();
        assert_eq!(wrong, Failure::InvalidCredentials);
        assert_eq!(unknown, wrong);
    }

    #[test]
    fn a_final_message_from_another_exchange_fails_on_its_nonce() {
        let users = table();
        let first = "n,,n=alice,r=abc";
        let (_, old_server_first) = start(&users, first.as_bytes()).unwrap();
        let replayed = client_final(first, &old_server_first, "pw");
        let (exchange, _) = start(&users, first.as_bytes()).unwrap();
        assert_eq!(exchange.finish(replayed.as_bytes()).unwrap_err(), Failure::NonceMismatch);
    }

    #[test]
    fn malformed_messages_fail_with_the_reason() {
        let users = table();
        assert!(matches!(start(&users, b"\xff\xfe"), Err(Failure::BadMessage(_))));
        assert!(matches!(start(&users, b"n,,n=alice"), Err(Failure::BadMessage(_))));
        let (exchange, _) = start(&users, b"n,,n=alice,r=abc").unwrap();
        let err = exchange.finish(b"c=biws,r=abc").unwrap_err();
        assert!(err.message().contains("`p=` is missing"), "{}", err.message());
        assert!(is_client_first(b"n,,n=a,r=b") && !is_client_first(b"c=biws,r=x,p=y"));
    }
}
