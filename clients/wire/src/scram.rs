//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as Kafka's SASL/SCRAM speaks it: the
//! message grammar and the key arithmetic, shared by the broker (which checks
//! proofs against stored keys) and the clients (which compute them).
//!
//! What is supported, and nothing more: no channel binding (the GS2 header is
//! exactly `n,,`, so `c=` is always `biws`), no authorization identity, no
//! extensions (an attribute this grammar does not name is an error, as is the
//! reserved `m=`). Names escape `,` as `=2C` and `=` as `=3D`; any other `=`
//! in a name is an error. Names and passwords are compared and hashed as
//! their UTF-8 bytes, without SASLprep, as Kafka does. docs/protocol.md
//! ("Authentication") is the normative description.
//!
//! Keys: `SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, i, 32)`,
//! `ClientKey = HMAC(SaltedPassword, "Client Key")`, `StoredKey = H(ClientKey)`,
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`,
//! `ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage)`,
//! `ServerSignature = HMAC(ServerKey, AuthMessage)`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The one mechanism: its SASL name.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The fewest PBKDF2 iterations a credential may have (RFC 7677, Kafka).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most PBKDF2 iterations a credential may have (Kafka's bound: every
/// connect costs the client this many).
pub const MAX_ITERATIONS: u32 = 16384;
/// The shortest salt a credential may have.
pub const MIN_SALT_BYTES: usize = 16;
/// The longest salt a credential may have.
pub const MAX_SALT_BYTES: usize = 128;
/// The salt length Herald's clients choose.
pub const SALT_BYTES: usize = 32;
/// The length of a salted password, a key, a proof and a signature.
pub const KEY_BYTES: usize = 32;
/// The longest user name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// The longest nonce (either part), in bytes.
pub const MAX_NONCE_BYTES: usize = 256;
/// The GS2 header: no channel binding, no authorization identity.
pub const GS2_HEADER: &str = "n,,";
/// `c=` of the client-final message: the GS2 header in base64.
pub const CHANNEL_BINDING: &str = "biws";

/// A 32-byte key, proof or signature.
pub type Key = [u8; KEY_BYTES];

/// A message that does not follow the grammar, or a value out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SCRAM message: {0}")]
pub struct ScramError(pub String);

fn bad<T>(message: impl Into<String>) -> Result<T, ScramError> {
    Err(ScramError(message.into()))
}

/// HMAC-SHA-256 of `message` under `key`.
pub fn hmac(key: &[u8], message: &[u8]) -> Key {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Key {
    Sha256::digest(bytes).into()
}

/// `SaltedPassword`: PBKDF2-HMAC-SHA-256 of the password's UTF-8 bytes.
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Key {
    let mut out = [0u8; KEY_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// What the broker keeps of a password: never the password nor the salted
/// password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredKeys {
    pub stored_key: Key,
    pub server_key: Key,
}

impl StoredKeys {
    /// The keys of a salted password.
    pub fn derive(salted_password: &Key) -> StoredKeys {
        StoredKeys {
            stored_key: sha256(&client_key(salted_password)),
            server_key: hmac(salted_password, b"Server Key"),
        }
    }
}

/// `ClientKey` of a salted password.
pub fn client_key(salted_password: &Key) -> Key {
    hmac(salted_password, b"Client Key")
}

/// `AuthMessage`: the three messages the proof and the signature cover.
pub fn auth_message(client_first_bare: &str, server_first: &str, client_final_without_proof: &str) -> String {
    format!("{client_first_bare},{server_first},{client_final_without_proof}")
}

/// The client's proof for `auth_message`.
pub fn client_proof(salted_password: &Key, auth_message: &str) -> Key {
    let key = client_key(salted_password);
    let signature = hmac(&sha256(&key), auth_message.as_bytes());
    xor(&key, &signature)
}

/// The server's signature for `auth_message`.
pub fn server_signature(server_key: &Key, auth_message: &str) -> Key {
    hmac(server_key, auth_message.as_bytes())
}

/// Whether `proof` proves knowledge of the password behind `stored_key`:
/// `H(proof XOR HMAC(StoredKey, AuthMessage)) == StoredKey`, compared in
/// constant time.
pub fn proof_matches(stored_key: &Key, auth_message: &str, proof: &Key) -> bool {
    let signature = hmac(stored_key, auth_message.as_bytes());
    let client_key = xor(proof, &signature);
    sha256(&client_key).ct_eq(stored_key).into()
}

/// Whether two signatures are equal, compared in constant time.
pub fn signatures_match(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn xor(a: &Key, b: &Key) -> Key {
    let mut out = [0u8; KEY_BYTES];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// `n` random bytes from the operating system.
///
/// # Errors
///
/// The operating system's random source failed.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, ScramError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| ScramError(format!("no random bytes: {e}")))?;
    Ok(bytes)
}

/// A fresh nonce: 24 random bytes in base64 (printable, without `,`).
///
/// # Errors
///
/// As [`random_bytes`].
pub fn nonce() -> Result<String, ScramError> {
    Ok(BASE64.encode(random_bytes(24)?))
}

/// A name as it goes into `n=`: `,` as `=2C`, `=` as `=3D`.
pub fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// A name from `n=`.
///
/// # Errors
///
/// A `=` not followed by `2C` or `3D`, an empty name or one too long.
pub fn unescape_name(escaped: &str) -> Result<String, ScramError> {
    let mut name = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        name.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        match code {
            Some("2C") => name.push(','),
            Some("3D") => name.push('='),
            _ => return bad("a `=` in a name must be `=2C` or `=3D`"),
        }
        rest = &rest[at + 3..];
    }
    name.push_str(rest);
    check_name(&name)?;
    Ok(name)
}

/// Checks a user name: 1 to [`MAX_NAME_BYTES`] bytes of UTF-8, no control
/// characters.
///
/// # Errors
///
/// Says which rule the name breaks.
pub fn check_name(name: &str) -> Result<(), ScramError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return bad(format!("a user name has 1 to {MAX_NAME_BYTES} bytes"));
    }
    if name.chars().any(char::is_control) {
        return bad("a user name has no control characters");
    }
    Ok(())
}

/// Checks a nonce: 1 to [`MAX_NONCE_BYTES`] printable ASCII characters but `,`.
fn check_nonce(nonce: &str) -> Result<(), ScramError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_BYTES {
        return bad(format!("a nonce has 1 to {MAX_NONCE_BYTES} characters"));
    }
    if !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
        return bad("a nonce is printable ASCII without `,`");
    }
    Ok(())
}

/// The value of attribute `name` (`name=value`), the next part of `parts`.
fn attribute<'a>(parts: &mut std::str::Split<'a, char>, name: char) -> Result<&'a str, ScramError> {
    let Some(part) = parts.next() else { return bad(format!("`{name}=` is missing")) };
    match part.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')) {
        Some(value) => Ok(value),
        None if part.starts_with("m=") => bad("mandatory extensions (`m=`) are not supported"),
        None => bad(format!("expected `{name}=`, found `{}`", part.chars().take(16).collect::<String>())),
    }
}

/// Nothing may follow the last attribute: extensions are refused.
fn end(parts: &mut std::str::Split<'_, char>) -> Result<(), ScramError> {
    match parts.next() {
        None => Ok(()),
        Some(extra) => bad(format!("unsupported attribute `{}`", extra.chars().take(16).collect::<String>())),
    }
}

fn decode_base64(value: &str, what: &str) -> Result<Vec<u8>, ScramError> {
    BASE64.decode(value).map_err(|_| ScramError(format!("`{what}` is not base64")))
}

/// `n,,n=<name>,r=<client nonce>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub user: String,
    pub nonce: String,
}

impl ClientFirst {
    /// Parses the client-first message.
    ///
    /// # Errors
    ///
    /// Anything but the grammar above, with the reason.
    pub fn parse(message: &str) -> Result<ClientFirst, ScramError> {
        let Some(bare) = message.strip_prefix(GS2_HEADER) else {
            return if message.starts_with("p=") || message.starts_with("y,") {
                bad("channel binding is not supported: the GS2 header must be `n,,`")
            } else if message.starts_with("n,a=") {
                bad("an authorization identity is not supported: the GS2 header must be `n,,`")
            } else {
                bad("the client-first message starts with the GS2 header `n,,`")
            };
        };
        let mut parts = bare.split(',');
        let user = unescape_name(attribute(&mut parts, 'n')?)?;
        let nonce = attribute(&mut parts, 'r')?.to_owned();
        check_nonce(&nonce)?;
        end(&mut parts)?;
        Ok(ClientFirst { user, nonce })
    }

    /// `n=<name>,r=<nonce>`: the part the auth message covers.
    pub fn bare(&self) -> String {
        format!("n={},r={}", escape_name(&self.user), self.nonce)
    }

    /// The whole message.
    pub fn message(&self) -> String {
        format!("{GS2_HEADER}{}", self.bare())
    }
}

/// `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    pub nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl ServerFirst {
    /// Parses the server-first message.
    ///
    /// # Errors
    ///
    /// Anything but the grammar above, or iterations or a salt out of bounds.
    pub fn parse(message: &str) -> Result<ServerFirst, ScramError> {
        let mut parts = message.split(',');
        let nonce = attribute(&mut parts, 'r')?.to_owned();
        check_nonce(&nonce)?;
        let salt = decode_base64(attribute(&mut parts, 's')?, "s")?;
        let iterations = attribute(&mut parts, 'i')?;
        end(&mut parts)?;
        let iterations: u32 = iterations.parse().map_err(|_| ScramError("`i` is not a number".into()))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return bad(format!("{iterations} iterations: a credential has {MIN_ITERATIONS} to {MAX_ITERATIONS}"));
        }
        if salt.is_empty() || salt.len() > MAX_SALT_BYTES {
            return bad("the salt is empty or too long");
        }
        Ok(ServerFirst { nonce, salt, iterations })
    }

    /// The whole message.
    pub fn message(&self) -> String {
        format!("r={},s={},i={}", self.nonce, BASE64.encode(&self.salt), self.iterations)
    }
}

/// `c=biws,r=<nonce>,p=<proof>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    pub nonce: String,
    pub proof: Key,
}

impl ClientFinal {
    /// Parses the client-final message.
    ///
    /// # Errors
    ///
    /// Anything but the grammar above (including `c=` other than `biws`).
    pub fn parse(message: &str) -> Result<ClientFinal, ScramError> {
        let mut parts = message.split(',');
        if attribute(&mut parts, 'c')? != CHANNEL_BINDING {
            return bad("`c=` must be `biws` (the GS2 header `n,,`, no channel binding)");
        }
        let nonce = attribute(&mut parts, 'r')?.to_owned();
        check_nonce(&nonce)?;
        let proof = decode_base64(attribute(&mut parts, 'p')?, "p")?;
        end(&mut parts)?;
        let proof = Key::try_from(proof.as_slice()).map_err(|_| ScramError("`p` is not 32 bytes".into()))?;
        Ok(ClientFinal { nonce, proof })
    }

    /// `c=biws,r=<nonce>`: the part the auth message covers.
    pub fn without_proof(&self) -> String {
        format!("c={CHANNEL_BINDING},r={}", self.nonce)
    }

    /// The whole message.
    pub fn message(&self) -> String {
        format!("{},p={}", self.without_proof(), BASE64.encode(self.proof))
    }
}

/// `v=<server signature>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFinal {
    pub signature: Key,
}

impl ServerFinal {
    /// Parses the server-final message.
    ///
    /// # Errors
    ///
    /// `e=<reason>` (the reason in the error), or anything but the grammar.
    pub fn parse(message: &str) -> Result<ServerFinal, ScramError> {
        if let Some(reason) = message.strip_prefix("e=") {
            return bad(format!("the server refused: {reason}"));
        }
        let mut parts = message.split(',');
        let signature = decode_base64(attribute(&mut parts, 'v')?, "v")?;
        end(&mut parts)?;
        let signature = Key::try_from(signature.as_slice()).map_err(|_| ScramError("`v` is not 32 bytes".into()))?;
        Ok(ServerFinal { signature })
    }

    /// The whole message.
    pub fn message(&self) -> String {
        format!("v={}", BASE64.encode(self.signature))
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
