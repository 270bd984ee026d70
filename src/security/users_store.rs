//! The broker's SCRAM users while it runs: a snapshot every connection reads,
//! swapped by one writer.
//!
//! Contract:
//! - [`Users`] is a cheap handle, cloned into every connection. A connection
//!   reads the current [`UserTable`] snapshot when an exchange starts (a
//!   pointer copy under a short read lock), so a change is seen by every
//!   authentication that starts after it, without a restart.
//! - Changes go to [`UserWriter`], a sync actor on a thread of its own: it
//!   applies one change at a time to its table, writes the whole file
//!   durably (an fsync, off the connections' event loops), and only then
//!   swaps the snapshot. A change is answered once it is on disk; one that
//!   could not be written is not applied.
//! - If the writer is gone (the system is stopping), a change fails with a
//!   retriable error; nothing is lost that was answered.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use bytes::Bytes;
use herald_actors::error::{BrokerError, ErrorCode};

use super::users::{UserError, UserTable};

/// The users of a running broker. See the module documentation.
#[derive(Clone)]
pub struct Users {
    snapshot: Arc<RwLock<Arc<UserTable>>>,
    writer: Addr<UserWriter>,
}

impl Users {
    /// Loads `data_dir`'s users and starts their writer.
    ///
    /// # Errors
    ///
    /// The users file cannot be read or is damaged: the broker does not
    /// start rather than authenticate against a partial list.
    pub fn open(data_dir: PathBuf) -> Result<Users, UserError> {
        let table = UserTable::load(&data_dir)?;
        let snapshot = Arc::new(RwLock::new(Arc::new(table.clone())));
        let shared = snapshot.clone();
        let writer = SyncArbiter::start(1, move || UserWriter {
            data_dir: data_dir.clone(),
            table: table.clone(),
            snapshot: shared.clone(),
        });
        Ok(Users { snapshot, writer })
    }

    /// The users now.
    pub fn snapshot(&self) -> Arc<UserTable> {
        // A writer that panicked while swapping left a whole table either way.
        self.snapshot.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Sends `change` to the writer; its answer once it is durable.
    pub async fn change(&self, change: UserChange) -> Result<(), BrokerError> {
        match self.writer.send(change).await {
            Ok(result) => result.map_err(broker_error),
            Err(err) => Err(err.into()),
        }
    }
}

/// A change to the users.
#[derive(Message)]
#[rtype(result = "Result<(), UserError>")]
pub enum UserChange {
    /// Create the user or replace its credential.
    Upsert { user: String, mechanism: String, iterations: i64, salt: Bytes, salted_password: Bytes },
    /// Remove the user.
    Delete { user: String },
}

/// Applies changes one at a time. See the module documentation.
pub struct UserWriter {
    data_dir: PathBuf,
    table: UserTable,
    snapshot: Arc<RwLock<Arc<UserTable>>>,
}

impl Actor for UserWriter {
    type Context = SyncContext<Self>;
}

impl Handler<UserChange> for UserWriter {
    type Result = Result<(), UserError>;

    fn handle(&mut self, change: UserChange, _: &mut SyncContext<Self>) -> Self::Result {
        let mut table = self.table.clone();
        let what = match change {
            UserChange::Upsert { user, mechanism, iterations, salt, salted_password } => {
                table.upsert(&user, &mechanism, iterations, &salt, &salted_password)?;
                ("created or updated", user)
            }
            UserChange::Delete { user } => {
                table.remove(&user)?;
                ("deleted", user)
            }
        };
        table.save(&self.data_dir)?;
        tracing::info!(user = %what.1, "SCRAM user {}", what.0);
        *self.snapshot.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table.clone());
        self.table = table;
        Ok(())
    }
}

/// The wire's error for a refused change.
fn broker_error(err: UserError) -> BrokerError {
    let code = match &err {
        UserError::Invalid(_) => ErrorCode::INVALID_REQUEST,
        UserError::NotFound(_) => ErrorCode::RESOURCE_NOT_FOUND,
        UserError::Io { .. } => ErrorCode::KAFKA_STORAGE_ERROR,
    };
    BrokerError::new(code, err.to_string())
}
