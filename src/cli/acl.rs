//! `herald acl add|remove|list`: the broker's ACLs (docs/security.md,
//! "Authorization"), through a running broker (`-b`), or in a stopped
//! broker's data directory (`--data-dir`, to prepare them before turning
//! `security.authorization` on; refused while a broker holds the directory).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use herald::dir_lock::DirLock;
use herald::protocol::{AclEntry, AclFilter, CLUSTER_RESOURCE};
use herald::security::authorizer::Authorizer;

use super::output::{print_json, Table};
use super::{BrokerArgs, CliResult, UsageError};

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Allow (or with --deny, deny) a principal operations on a resource.
    Add {
        /// Who: `User:<name>`, or `User:*` for every principal.
        #[arg(long)]
        principal: String,
        /// What: all, read, write, create, delete, alter, describe, call (repeatable).
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        /// Deny instead of allow (a deny wins over any allow).
        #[arg(long)]
        deny: bool,
        /// Only from this client IP address (default: any).
        #[arg(long, default_value = "*")]
        host: String,
        #[command(flatten)]
        resource: ResourceArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Remove every entry matching the options given (at least one).
    Remove {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        target: Target,
    },
    /// List entries, all or those matching the options given.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// The resource an entry names: exactly one of these.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct ResourceArgs {
    /// A topic name (`*` for every topic).
    #[arg(long)]
    topic: Option<String>,
    /// A group id (`*` for every group).
    #[arg(long)]
    group: Option<String>,
    /// The cluster (creating topics, users, ACLs).
    #[arg(long)]
    cluster: bool,
    /// A custom operation's name (`x.<extension>.<name>`).
    #[arg(long)]
    custom_op: Option<String>,
}

/// Options that select entries; each given one must match.
#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    #[arg(long)]
    principal: Option<String>,
    #[arg(long)]
    operation: Option<String>,
    /// `allow` or `deny`.
    #[arg(long)]
    permission: Option<String>,
    #[arg(long)]
    host: Option<String>,
    /// `topic`, `group`, `cluster` or `operation`.
    #[arg(long)]
    resource_type: Option<String>,
    #[arg(long)]
    resource_name: Option<String>,
    /// `literal` or `prefixed`.
    #[arg(long)]
    pattern_type: Option<String>,
}

/// Where the ACLs are: a running broker, or a stopped one's data directory.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Change the ACLs of this data directory directly (the broker stopped).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The resource name is a prefix: every name starting with it.
    #[arg(long)]
    prefixed: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

impl ResourceArgs {
    fn kind_and_name(&self) -> (&'static str, String) {
        if let Some(topic) = &self.topic {
            ("topic", topic.clone())
        } else if let Some(group) = &self.group {
            ("group", group.clone())
        } else if let Some(op) = &self.custom_op {
            ("operation", op.clone())
        } else {
            ("cluster", CLUSTER_RESOURCE.to_string())
        }
    }
}

impl FilterArgs {
    fn filter(self, prefixed: bool) -> AclFilter {
        AclFilter {
            principal: self.principal,
            host: self.host,
            operation: self.operation,
            permission: self.permission,
            resource_type: self.resource_type,
            resource_name: self.resource_name,
            pattern_type: if prefixed { Some("prefixed".into()) } else { self.pattern_type },
        }
    }
}

pub async fn run(command: AclCommand) -> CliResult {
    match command {
        AclCommand::Add { principal, operations, deny, host, resource, target } => {
            let (kind, name) = resource.kind_and_name();
            let entries: Vec<AclEntry> = operations
                .into_iter()
                .map(|operation| AclEntry {
                    principal: principal.clone(),
                    host: host.clone(),
                    operation,
                    permission: if deny { "deny" } else { "allow" }.into(),
                    resource_type: kind.into(),
                    resource_name: name.clone(),
                    pattern_type: if target.prefixed { "prefixed" } else { "literal" }.into(),
                })
                .collect();
            let count = entries.len();
            let created = match &target.data_dir {
                Some(dir) => offline(dir, |a| a.create(entries))?,
                None => target.broker.connect().await?.create_acls(entries).await?,
            };
            println!("added {created} of {count} entries ({} already there)", count as u32 - created);
        }
        AclCommand::Remove { filter, target } => {
            let filter = filter.filter(target.prefixed);
            if filter == AclFilter::default() {
                return Err(UsageError("remove needs at least one option to match entries by".into()).into());
            }
            let deleted = match &target.data_dir {
                Some(dir) => offline(dir, |a| a.delete(std::slice::from_ref(&filter)))?,
                None => target.broker.connect().await?.delete_acls(vec![filter]).await?,
            };
            println!("removed {} entries", deleted.len());
            print_table(&deleted);
        }
        AclCommand::List { filter, json, target } => {
            let filter = filter.filter(target.prefixed);
            let acls = match &target.data_dir {
                Some(dir) => offline(dir, |a| Ok(a.list(&filter)))?,
                None => target.broker.connect().await?.list_acls(&filter).await?,
            };
            if json {
                print_json(&acls)?;
            } else {
                print_table(&acls);
            }
        }
    }
    Ok(())
}

/// Runs `work` on the ACLs of a stopped broker's data directory.
fn offline<T>(
    dir: &std::path::Path,
    work: impl FnOnce(&Authorizer) -> Result<T, herald_actors::error::BrokerError>,
) -> CliResult<T> {
    if !dir.is_dir() {
        return Err(UsageError(format!("data directory {} does not exist", dir.display())).into());
    }
    let _lock = DirLock::acquire(dir)?;
    let authorizer = Authorizer::open(dir, true, &[])?;
    Ok(work(&authorizer).map_err(|e| e.message)?)
}

fn print_table(acls: &[AclEntry]) {
    let mut table = Table::new(&["PRINCIPAL", "HOST", "PERMISSION", "OPERATION", "RESOURCE", "NAME", "PATTERN"]);
    for a in acls {
        table.row(vec![
            a.principal.clone(),
            a.host.clone(),
            a.permission.clone(),
            a.operation.clone(),
            a.resource_type.clone(),
            a.resource_name.clone(),
            a.pattern_type.clone(),
        ]);
    }
    table.print();
}
