//! The SCRAM users of a data directory: `<data_dir>/security/users.json`.
//!
//! Each user has a name, a mechanism (`SCRAM-SHA-256`), PBKDF2 iterations, a
//! salt, and the two keys SCRAM needs on the broker's side: `stored_key` and
//! `server_key`. Never the password, never the salted password: the keys let
//! the broker check a proof, not make one (RFC 5802, section 9). The client
//! salts and hashes the password; the broker derives the keys from the
//! salted password it is sent and forgets it.
//!
//! The file also holds `unknown_user_secret`, 32 random bytes from which the
//! salt of a user that does not exist is derived (HMAC of the name), so that
//! the server-first message for an unknown name is the same at every try and
//! across restarts, like a real user's, and says nothing about whether the
//! name exists. Without a file there is no user at all, and the secret is
//! made fresh at each start until the first user is written.
//!
//! [`UserTable`] is the file's content in memory and its pure operations;
//! [`Users`](super::users_store::Users) serves it to the broker and writes
//! changes one at a time. `herald user create --data-dir` uses
//! [`UserTable`] directly, under the data directory's lock.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use herald_wire::protocol::UserSummary;
use herald_wire::scram::{self, Key, StoredKeys, KEY_BYTES, SCRAM_SHA_256};
use serde::{Deserialize, Serialize};

use super::store;

/// The users file's name in the security directory.
pub const USERS_FILE: &str = "users.json";

/// The users file of a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    store::dir(data_dir).join(USERS_FILE)
}

/// Why a change to the users was refused, or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A field is out of bounds (the message names it).
    #[error("{0}")]
    Invalid(String),
    /// `delete_user` of a name that has no credential.
    #[error("user `{0}` does not exist")]
    NotFound(String),
    /// The users file could not be read or written.
    #[error("users file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One user's credential, as the broker keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub keys: StoredKeys,
}

/// The users, and the secret for unknown names' salts.
#[derive(Debug, Clone)]
pub struct UserTable {
    users: BTreeMap<String, Credential>,
    unknown_user_secret: Key,
}

/// `users.json`: keys and salts in base64.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    version: u32,
    unknown_user_secret: String,
    users: Vec<StoredUser>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredUser {
    user: String,
    mechanism: String,
    iterations: u32,
    salt: String,
    stored_key: String,
    server_key: String,
}

const FILE_VERSION: u32 = 1;

impl UserTable {
    /// No users, with a fresh secret.
    ///
    /// # Errors
    ///
    /// The operating system's random source failed.
    pub fn empty() -> io::Result<UserTable> {
        let secret = scram::random_bytes(KEY_BYTES).map_err(io::Error::other)?;
        let mut unknown_user_secret = [0u8; KEY_BYTES];
        unknown_user_secret.copy_from_slice(&secret);
        Ok(UserTable { users: BTreeMap::new(), unknown_user_secret })
    }

    /// The users of `data_dir`; none if it has no users file.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a users file (the error says why).
    pub fn load(data_dir: &Path) -> Result<UserTable, UserError> {
        let path = path(data_dir);
        let io_error = |source| UserError::Io { path: path.clone(), source };
        let Some(bytes) = store::read(&path).map_err(io_error)? else {
            return UserTable::empty().map_err(io_error);
        };
        let invalid = |m: String| io_error(io::Error::new(io::ErrorKind::InvalidData, m));
        let file: UsersFile = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if file.version != FILE_VERSION {
            return Err(invalid(format!("version {} (this broker reads {FILE_VERSION})", file.version)));
        }
        let key = |field: &str, value: &str| -> Result<Key, UserError> {
            let bytes = BASE64.decode(value).map_err(|_| invalid(format!("`{field}` is not base64")))?;
            Key::try_from(bytes.as_slice()).map_err(|_| invalid(format!("`{field}` is not {KEY_BYTES} bytes")))
        };
        let unknown_user_secret = key("unknown_user_secret", &file.unknown_user_secret)?;
        let mut users = BTreeMap::new();
        for stored in file.users {
            if stored.mechanism != SCRAM_SHA_256 {
                return Err(invalid(format!("user `{}`: unknown mechanism `{}`", stored.user, stored.mechanism)));
            }
            let salt = BASE64.decode(&stored.salt).map_err(|_| invalid(format!("user `{}`: bad salt", stored.user)))?;
            let keys = StoredKeys {
                stored_key: key("stored_key", &stored.stored_key)?,
                server_key: key("server_key", &stored.server_key)?,
            };
            users.insert(stored.user, Credential { iterations: stored.iterations, salt, keys });
        }
        Ok(UserTable { users, unknown_user_secret })
    }

    /// Writes the table to `data_dir`'s users file, durably (see
    /// [`store::replace`]).
    ///
    /// # Errors
    ///
    /// The file cannot be written or synced.
    pub fn save(&self, data_dir: &Path) -> Result<(), UserError> {
        let file = UsersFile {
            version: FILE_VERSION,
            unknown_user_secret: BASE64.encode(self.unknown_user_secret),
            users: self
                .users
                .iter()
                .map(|(user, c)| StoredUser {
                    user: user.clone(),
                    mechanism: SCRAM_SHA_256.into(),
                    iterations: c.iterations,
                    salt: BASE64.encode(&c.salt),
                    stored_key: BASE64.encode(c.keys.stored_key),
                    server_key: BASE64.encode(c.keys.server_key),
                })
                .collect(),
        };
        let path = path(data_dir);
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| UserError::Io { path: path.clone(), source: io::Error::other(e) })?;
        bytes.push(b'\n');
        store::replace(&path, &bytes).map_err(|source| UserError::Io { path, source })
    }

    /// Creates `user`, or replaces its credential: the keys derived from
    /// `salted_password`, which is not kept.
    ///
    /// # Errors
    ///
    /// [`UserError::Invalid`] naming the field out of bounds: the name (see
    /// [`scram::check_name`]; not `ANONYMOUS`), the mechanism, iterations outside
    /// 4096..=16384, a salt outside 16..=128 bytes, a salted password not of
    /// 32 bytes.
    pub fn upsert(
        &mut self,
        user: &str,
        mechanism: &str,
        iterations: i64,
        salt: &[u8],
        salted_password: &[u8],
    ) -> Result<(), UserError> {
        let invalid = |m: String| Err(UserError::Invalid(m));
        if let Err(err) = scram::check_name(user) {
            return invalid(err.0);
        }
        if user == super::Principal::anonymous().name() {
            return invalid(format!("`{user}` is the name of the unauthenticated principal"));
        }
        if mechanism != SCRAM_SHA_256 {
            return invalid(format!("unknown mechanism `{mechanism}`: this broker stores {SCRAM_SHA_256}"));
        }
        let (min, max) = (scram::MIN_ITERATIONS, scram::MAX_ITERATIONS);
        let Some(iterations) = u32::try_from(iterations).ok().filter(|i| (min..=max).contains(i)) else {
            return invalid(format!("iterations {iterations}: a credential has {min} to {max}"));
        };
        if !(scram::MIN_SALT_BYTES..=scram::MAX_SALT_BYTES).contains(&salt.len()) {
            return invalid(format!(
                "a salt of {} bytes: a salt has {} to {} bytes",
                salt.len(),
                scram::MIN_SALT_BYTES,
                scram::MAX_SALT_BYTES
            ));
        }
        let Ok(salted_password) = Key::try_from(salted_password) else {
            return invalid(format!("a salted password of {} bytes: it has {KEY_BYTES}", salted_password.len()));
        };
        let keys = StoredKeys::derive(&salted_password);
        self.users.insert(user.to_owned(), Credential { iterations, salt: salt.to_vec(), keys });
        Ok(())
    }

    /// Removes `user`'s credential.
    ///
    /// # Errors
    ///
    /// [`UserError::NotFound`] if it has none.
    pub fn remove(&mut self, user: &str) -> Result<(), UserError> {
        self.users.remove(user).map(|_| ()).ok_or_else(|| UserError::NotFound(user.to_owned()))
    }

    /// `user`'s credential, if it has one.
    pub fn get(&self, user: &str) -> Option<&Credential> {
        self.users.get(user)
    }

    /// The credential presented for a name that has none: a salt derived
    /// from the name and the secret (the same at every try), the default
    /// iterations, and keys no password matches.
    pub fn unknown_user(&self, user: &str) -> Credential {
        let salt = scram::hmac(&self.unknown_user_secret, format!("salt\0{user}").as_bytes());
        let key = scram::hmac(&self.unknown_user_secret, format!("key\0{user}").as_bytes());
        Credential {
            iterations: scram::MIN_ITERATIONS,
            salt: salt[..scram::SALT_BYTES].to_vec(),
            keys: StoredKeys { stored_key: key, server_key: key },
        }
    }

    /// Every user, sorted by name, without keys.
    pub fn summaries(&self) -> Vec<UserSummary> {
        self.users
            .iter()
            .map(|(user, c)| UserSummary {
                user: user.clone(),
                mechanism: SCRAM_SHA_256.into(),
                iterations: c.iterations,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_saves_keys_only_and_loads_back() {
        let data = tempfile::tempdir().unwrap();
        let mut table = UserTable::empty().unwrap();
        let salt = [7u8; 32];
        let salted = scram::salted_password("hunter2-secret", &salt, 4096);
        table.upsert("alice", SCRAM_SHA_256, 4096, &salt, &salted).unwrap();
        table.save(data.path()).unwrap();
        let text = std::fs::read_to_string(path(data.path())).unwrap();
        assert!(!text.contains("hunter2") && !text.contains(&BASE64.encode(salted)), "{text}");
        let loaded = UserTable::load(data.path()).unwrap();
        assert_eq!(loaded.get("alice"), table.get("alice"));
        assert_eq!(loaded.get("alice").unwrap().keys, StoredKeys::derive(&salted));
        assert_eq!(loaded.unknown_user("bob"), table.unknown_user("bob"), "the secret is kept");
    }

    #[test]
    fn a_damaged_users_file_is_an_error_naming_it() {
        let data = tempfile::tempdir().unwrap();
        store::replace(&path(data.path()), b"{\"version\": 1, \"users\": [").unwrap();
        let err = UserTable::load(data.path()).unwrap_err().to_string();
        assert!(err.contains("users.json"), "{err}");
        store::replace(&path(data.path()), b"{\"version\": 9, \"unknown_user_secret\": \"\", \"users\": []}").unwrap();
        let err = UserTable::load(data.path()).unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
    }

    #[test]
    fn out_of_bounds_credentials_are_refused_naming_the_field() {
        let mut table = UserTable::empty().unwrap();
        let refused = |t: &mut UserTable, user: &str, mech: &str, i: i64, salt: usize, sp: usize, expected: &str| {
            let err = t.upsert(user, mech, i, &vec![1; salt], &vec![2; sp]).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        refused(&mut table, "a", SCRAM_SHA_256, 4095, 16, 32, "iterations 4095");
        refused(&mut table, "a", SCRAM_SHA_256, 16385, 16, 32, "iterations 16385");
        refused(&mut table, "a", SCRAM_SHA_256, 4096, 15, 32, "salt of 15 bytes");
        refused(&mut table, "a", SCRAM_SHA_256, 4096, 16, 31, "salted password of 31 bytes");
        refused(&mut table, "a", "SCRAM-SHA-512", 4096, 16, 32, "unknown mechanism");
        refused(&mut table, "", SCRAM_SHA_256, 4096, 16, 32, "1 to 255");
        refused(&mut table, "ANONYMOUS", SCRAM_SHA_256, 4096, 16, 32, "unauthenticated principal");
        assert!(matches!(table.remove("nobody"), Err(UserError::NotFound(_))));
    }

    #[test]
    fn an_unknown_name_gets_the_same_salt_every_time_and_no_password_matches() {
        let table = UserTable::empty().unwrap();
        assert_eq!(table.unknown_user("x"), table.unknown_user("x"));
        assert_ne!(table.unknown_user("x").salt, table.unknown_user("y").salt);
        assert_eq!(table.unknown_user("x").salt.len(), scram::SALT_BYTES);
        assert_ne!(UserTable::empty().unwrap().unknown_user("x"), table.unknown_user("x"), "secret per table");
    }
}
