//! `herald user create|delete|list`: the SCRAM-SHA-256 users.
//!
//! Online (the default) through a running broker's `create_user`,
//! `delete_user` and `list_users`; offline with `--data-dir` (or
//! `--config`), straight in the data directory's `security/users.json`
//! while no broker runs, under the directory's lock (refused while a broker
//! holds it), so that the first admin can be created before the broker
//! requires authentication. A password is never an argument: it is read
//! from standard input (`--password-stdin`) or a file (`--new-password-file`),
//! its last line ending dropped.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use herald::config::Settings;
use herald::dir_lock::DirLock;
use herald::security::users::{self, UserTable};
use herald_wire::scram::{self, SCRAM_SHA_256};

use super::output::{print_json, Table};
use super::{BrokerArgs, CliResult, UsageError};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a SCRAM-SHA-256 user, or change its password.
    Create {
        name: String,
        #[command(flatten)]
        password: NewPassword,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = herald::client::DEFAULT_ITERATIONS)]
        iterations: u32,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a user: new connections as it are refused.
    Delete {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the users (names, mechanism, iterations; never keys).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// Where the new password comes from.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct NewPassword {
    /// Read the new user's password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Read the new user's password from this file.
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
}

/// A running broker, or a data directory with none running.
#[derive(Args, Debug)]
pub struct Target {
    /// Change the data directory itself (no broker may be running on it).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML settings file whose storage.data_dir to change (as --data-dir).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    broker: BrokerArgs,
}

impl Target {
    /// The data directory, when the command works offline.
    fn data_dir(&self) -> CliResult<Option<PathBuf>> {
        if self.data_dir.is_none() && self.config.is_none() {
            return Ok(None);
        }
        let flags: Vec<(&str, String)> =
            self.data_dir.iter().map(|dir| ("storage.data_dir", dir.display().to_string())).collect();
        Ok(Some(Settings::load(self.config.as_deref(), &flags)?.storage.data_dir))
    }
}

impl NewPassword {
    fn read(&self) -> CliResult<String> {
        let text = match &self.new_password_file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
            None => {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                text
            }
        };
        let password = strip_line_end(text);
        if password.is_empty() {
            return Err(UsageError("the password is empty".into()).into());
        }
        Ok(password)
    }
}

/// `text` without one final `\n` or `\r\n`.
pub fn strip_line_end(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

pub async fn run(command: UserCommand) -> CliResult {
    match command {
        UserCommand::Create { name, password, iterations, target } => {
            let password = password.read()?;
            match target.data_dir()? {
                Some(dir) => offline(&dir, |table| {
                    let salt = scram::random_bytes(scram::SALT_BYTES)?;
                    let salted = scram::salted_password(&password, &salt, iterations);
                    table.upsert(&name, SCRAM_SHA_256, i64::from(iterations), &salt, &salted)?;
                    Ok(true)
                })?,
                None => {
                    target.broker.connect().await?.create_user_with_iterations(&name, &password, iterations).await?
                }
            }
            println!("created user `{name}` ({SCRAM_SHA_256}, {iterations} iterations)");
        }
        UserCommand::Delete { name, target } => {
            match target.data_dir()? {
                Some(dir) => offline(&dir, |table| table.remove(&name).map(|()| true).map_err(Into::into))?,
                None => target.broker.connect().await?.delete_user(&name).await?,
            }
            println!("deleted user `{name}`");
        }
        UserCommand::List { json, target } => {
            let users = match target.data_dir()? {
                Some(dir) => {
                    let mut listed = Vec::new();
                    offline(&dir, |table| {
                        listed = table.summaries();
                        Ok(false)
                    })?;
                    listed
                }
                None => target.broker.connect().await?.list_users().await?,
            };
            if json {
                return print_json(&users);
            }
            let mut table = Table::new(&["USER", "MECHANISM", "ITERATIONS"]);
            for user in users {
                table.row(vec![user.user, user.mechanism, user.iterations.to_string()]);
            }
            table.print();
        }
    }
    Ok(())
}

/// Runs `change` on `data_dir`'s users under the directory's lock, and
/// writes them back if it says so.
fn offline(data_dir: &Path, change: impl FnOnce(&mut UserTable) -> CliResult<bool>) -> CliResult {
    let _lock = DirLock::acquire(data_dir)?;
    let mut table = UserTable::load(data_dir)?;
    if change(&mut table)? {
        table.save(data_dir)?;
        eprintln!("wrote {}", users::path(data_dir).display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_final_line_end_is_dropped() {
        assert_eq!(strip_line_end("pw\n".into()), "pw");
        assert_eq!(strip_line_end("pw\r\n".into()), "pw");
        assert_eq!(strip_line_end("pw\n\n".into()), "pw\n");
        assert_eq!(strip_line_end(" pw ".into()), " pw ");
    }
}
