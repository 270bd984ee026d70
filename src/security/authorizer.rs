//! The [`Authorizer`]: the broker's ACLs in memory, checked on every request
//! when `security.authorization` is on, and changed durably.
//!
//! The entries live in `<data_dir>/security/acls.json`, replaced whole on
//! every change (see [`super::store`]). Readers take a snapshot (an `Arc`)
//! under a read lock held for a pointer copy; a change is written and synced
//! first and swapped in after, so a change answered is on disk, and a check
//! never sees half of one. Changes run one at a time (a writer lock) on a
//! blocking thread, never on an event loop.
//!
//! Denials are logged under the `herald::audit` target, at most once a
//! second with a count of those not logged, and counted by `/metrics` as the
//! request's error code (29, 30, 31).

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use herald_actors::error::{BrokerError, ErrorCode};
use herald_wire::protocol::{AclEntry, AclFilter};
use serde::{Deserialize, Serialize};

use super::acl::{self, Acl, Operation, Resource, ResourceType};
use super::{store, Principal};
use crate::log_throttle::Throttle;

/// The file of the ACLs under the data directory's security directory.
pub const ACLS_FILE: &str = "acls.json";

/// The file's shape.
#[derive(Serialize, Deserialize, Default)]
struct AclsFile {
    version: u32,
    acls: Vec<AclEntry>,
}

/// The entries as stored, each with its parsed form.
type Entries = Arc<Vec<(AclEntry, Acl)>>;

/// Checks requests against the ACLs. See the module documentation.
pub struct Authorizer {
    enabled: bool,
    super_users: Vec<Principal>,
    file: PathBuf,
    entries: RwLock<Entries>,
    /// One change at a time.
    writing: Mutex<()>,
    denials: Mutex<Throttle>,
}

impl Authorizer {
    /// Loads the ACLs of `data_dir` (none when the file does not exist yet).
    ///
    /// # Errors
    ///
    /// The file cannot be read, or does not hold valid entries: the broker
    /// does not start on ACLs it cannot read (it would allow or deny the wrong
    /// requests).
    pub fn open(data_dir: &Path, enabled: bool, super_users: &[String]) -> io::Result<Authorizer> {
        let file = store::dir(data_dir).join(ACLS_FILE);
        let entries = load(&file)?;
        let super_users = super_users
            .iter()
            .map(|s| Principal::parse(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e)))
            .collect::<io::Result<_>>()?;
        Ok(Authorizer {
            enabled,
            super_users,
            file,
            entries: RwLock::new(Arc::new(entries)),
            writing: Mutex::new(()),
            denials: Mutex::new(Throttle::default()),
        })
    }

    /// An authorizer that allows everything and has no file (tests and
    /// embedded brokers that set no data directory of their own).
    pub fn disabled(data_dir: &Path) -> Authorizer {
        Authorizer {
            enabled: false,
            super_users: Vec::new(),
            file: store::dir(data_dir).join(ACLS_FILE),
            entries: RwLock::new(Arc::default()),
            writing: Mutex::new(()),
            denials: Mutex::new(Throttle::default()),
        }
    }

    /// Whether ACLs are enforced (`security.authorization`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn snapshot(&self) -> Entries {
        self.entries.read().map(|e| e.clone()).unwrap_or_default()
    }

    /// Whether `principal`, connected from `host`, may do `operation` on
    /// `resource`: always when authorization is off or for a super user.
    pub fn allows(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        operation: Operation,
        resource: &Resource,
    ) -> bool {
        if !self.enabled || self.super_users.contains(principal) {
            return true;
        }
        acl::allowed(self.snapshot().iter().map(|(_, acl)| acl), principal, host, operation, resource)
    }

    /// Whether `principal` may do `operation` on some resource of type
    /// `kind` (see [`acl::allowed_on_any`]): always when authorization is
    /// off or for a super user.
    pub fn allows_on_any(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        operation: Operation,
        kind: acl::ResourceType,
    ) -> bool {
        if !self.enabled || self.super_users.contains(principal) {
            return true;
        }
        let entries = self.snapshot();
        acl::allowed_on_any(entries.iter().map(|(_, acl)| acl), principal, host, operation, kind)
    }

    /// [`Self::allows`], as the error a refused request gets (29, 30 or 31 by
    /// the resource's type), logged for audit.
    ///
    /// # Errors
    ///
    /// The operation is not allowed.
    pub fn check(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        operation: Operation,
        resource: &Resource,
    ) -> Result<(), BrokerError> {
        if self.allows(principal, host, operation, resource) {
            return Ok(());
        }
        self.audit_denial(principal, host, operation, resource);
        let (code, what) = match resource.kind {
            ResourceType::Topic => (ErrorCode::TOPIC_AUTHORIZATION_FAILED, format!("topic `{}`", resource.name)),
            ResourceType::Group => (ErrorCode::GROUP_AUTHORIZATION_FAILED, format!("group `{}`", resource.name)),
            ResourceType::Cluster => (ErrorCode::CLUSTER_AUTHORIZATION_FAILED, "the cluster".to_string()),
            ResourceType::Operation => {
                (ErrorCode::CLUSTER_AUTHORIZATION_FAILED, format!("custom operation `{}`", resource.name))
            }
        };
        Err(BrokerError::new(code, format!("{principal} may not {operation} {what}")))
    }

    fn audit_denial(&self, principal: &Principal, host: Option<IpAddr>, operation: Operation, resource: &Resource) {
        let Some(suppressed) = self.denials.lock().ok().and_then(|mut t| t.allow()) else { return };
        let host = host.map_or_else(|| "-".to_string(), |h| h.to_string());
        tracing::info!(
            target: "herald::audit",
            %principal,
            %host,
            %operation,
            resource_type = %resource.kind,
            resource = %resource.name,
            suppressed,
            "request denied by the ACLs"
        );
    }

    /// The entries `filter` selects, sorted.
    pub fn list(&self, filter: &AclFilter) -> Vec<AclEntry> {
        let mut found: Vec<AclEntry> =
            self.snapshot().iter().map(|(e, _)| e).filter(|e| filter.matches(e)).cloned().collect();
        found.sort();
        found
    }

    /// Adds `entries` (checked first: one bad entry adds none) and returns
    /// how many were new. Blocks on the disk: call it off the event loops.
    ///
    /// # Errors
    ///
    /// INVALID_REQUEST naming a bad entry, or KAFKA_STORAGE_ERROR when the
    /// file cannot be written (nothing changes then).
    pub fn create(&self, entries: Vec<AclEntry>) -> Result<u32, BrokerError> {
        let parsed = entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| match Acl::parse(&entry) {
                Ok(acl) => Ok((normal(entry, &acl), acl)),
                Err(why) => Err(BrokerError::new(ErrorCode::INVALID_REQUEST, format!("acls[{i}]: {why}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.change(|current| {
            let mut created = 0;
            for (entry, acl) in parsed {
                if !current.iter().any(|(e, _)| *e == entry) {
                    current.push((entry, acl));
                    created += 1;
                }
            }
            created
        })
    }

    /// Deletes every entry any of `filters` selects and returns them.
    ///
    /// # Errors
    ///
    /// KAFKA_STORAGE_ERROR when the file cannot be written (nothing changes then).
    pub fn delete(&self, filters: &[AclFilter]) -> Result<Vec<AclEntry>, BrokerError> {
        self.change(|current| {
            let mut deleted = Vec::new();
            current.retain(|(entry, _)| {
                let selected = filters.iter().any(|f| f.matches(entry));
                if selected {
                    deleted.push(entry.clone());
                }
                !selected
            });
            deleted.sort();
            deleted
        })
    }

    /// Applies `edit` to a copy of the entries, writes it durably, then
    /// swaps it in.
    fn change<T>(&self, edit: impl FnOnce(&mut Vec<(AclEntry, Acl)>) -> T) -> Result<T, BrokerError> {
        let _one_at_a_time = self.writing.lock().map_err(|_| storage_error("a change to the ACLs failed before"))?;
        let mut next = (*self.snapshot()).clone();
        let result = edit(&mut next);
        let file = AclsFile { version: 1, acls: next.iter().map(|(e, _)| e.clone()).collect() };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| storage_error(&e.to_string()))?;
        store::replace(&self.file, &bytes)
            .map_err(|e| storage_error(&format!("cannot write {}: {e}", self.file.display())))?;
        if let Ok(mut entries) = self.entries.write() {
            *entries = Arc::new(next);
        }
        Ok(result)
    }
}

/// One connection's standing: who it is, where from, and the authorizer to
/// ask. Cheap to clone into a request's future.
#[derive(Clone)]
pub struct Access {
    pub authorizer: Arc<Authorizer>,
    pub principal: Principal,
    pub host: Option<IpAddr>,
}

impl Access {
    /// Whether this connection may do `operation` on `resource`.
    pub fn may(&self, operation: Operation, resource: &Resource) -> bool {
        self.authorizer.allows(&self.principal, self.host, operation, resource)
    }

    /// [`Self::may`] as the error a refused request gets.
    ///
    /// # Errors
    ///
    /// The operation is not allowed (see [`Authorizer::check`]).
    pub fn check(&self, operation: Operation, resource: &Resource) -> Result<(), BrokerError> {
        self.authorizer.check(&self.principal, self.host, operation, resource)
    }
}

/// The entry as stored: its words as parsed (a host written `::1` or
/// `0:0::1` is one host), so that equal entries are stored once.
fn normal(mut entry: AclEntry, acl: &Acl) -> AclEntry {
    if let Some(host) = acl.host {
        entry.host = host.to_string();
    }
    entry
}

fn storage_error(message: &str) -> BrokerError {
    BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, message.to_string())
}

fn load(file: &Path) -> io::Result<Vec<(AclEntry, Acl)>> {
    let Some(bytes) = store::read(file)? else { return Ok(Vec::new()) };
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", file.display()));
    let stored: AclsFile = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    stored
        .acls
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            Acl::parse(&entry).map(|acl| (entry, acl)).map_err(|why| invalid(format!("acls[{i}]: {why}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(principal: &str, operation: &str, permission: &str, name: &str) -> AclEntry {
        AclEntry {
            principal: principal.into(),
            host: "*".into(),
            operation: operation.into(),
            permission: permission.into(),
            resource_type: "topic".into(),
            resource_name: name.into(),
            pattern_type: "literal".into(),
        }
    }

    #[test]
    fn changes_are_durable_and_a_new_authorizer_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let alice = Principal::user("alice");
        let t = Resource::topic("t");
        let authorizer = Authorizer::open(dir.path(), true, &[]).unwrap();
        assert!(!authorizer.allows(&alice, None, Operation::Read, &t));
        let created = authorizer.create(vec![entry("User:alice", "read", "allow", "t"); 2]).unwrap();
        assert_eq!(created, 1, "an entry is kept once");
        assert!(authorizer.allows(&alice, None, Operation::Read, &t));

        let reopened = Authorizer::open(dir.path(), true, &[]).unwrap();
        assert!(reopened.allows(&alice, None, Operation::Read, &t));
        let deleted =
            reopened.delete(&[AclFilter { principal: Some("User:alice".into()), ..Default::default() }]).unwrap();
        assert_eq!(deleted.len(), 1);
        assert!(!Authorizer::open(dir.path(), true, &[]).unwrap().allows(&alice, None, Operation::Read, &t));
    }

    #[test]
    fn a_bad_entry_adds_nothing_and_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let authorizer = Authorizer::open(dir.path(), true, &[]).unwrap();
        let err = authorizer
            .create(vec![entry("User:a", "read", "allow", "t"), entry("User:a", "reed", "allow", "t")])
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_REQUEST);
        assert!(err.message.contains("acls[1]") && err.message.contains("reed"), "{}", err.message);
        assert!(authorizer.list(&AclFilter::default()).is_empty());
    }

    #[test]
    fn super_users_and_a_disabled_authorizer_allow_everything() {
        let dir = tempfile::tempdir().unwrap();
        let authorizer = Authorizer::open(dir.path(), true, &["User:root".to_string()]).unwrap();
        let t = Resource::topic("t");
        assert!(authorizer.allows(&Principal::user("root"), None, Operation::Delete, &t));
        let err = authorizer.check(&Principal::user("bob"), None, Operation::Delete, &t).unwrap_err();
        assert_eq!(err.code, ErrorCode::TOPIC_AUTHORIZATION_FAILED);
        assert!(err.message.contains("User:bob may not delete topic `t`"), "{}", err.message);
        assert_eq!(
            authorizer.check(&Principal::user("bob"), None, Operation::Read, &Resource::group("g")).unwrap_err().code,
            ErrorCode::GROUP_AUTHORIZATION_FAILED
        );
        assert_eq!(
            authorizer.check(&Principal::user("bob"), None, Operation::Alter, &Resource::cluster()).unwrap_err().code,
            ErrorCode::CLUSTER_AUTHORIZATION_FAILED
        );
        let off = Authorizer::open(dir.path(), false, &[]).unwrap();
        assert!(off.allows(&Principal::anonymous(), None, Operation::Delete, &t));
    }

    #[test]
    fn an_unreadable_acl_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let file = store::dir(dir.path()).join(ACLS_FILE);
        store::replace(&file, b"{\"version\":1,\"acls\":[{\"principal\":\"bob\"}]}").unwrap();
        let err = Authorizer::open(dir.path(), true, &[]).err().unwrap();
        assert!(err.to_string().contains("acls.json"), "{err}");
    }
}
