//! Command-line definitions (clap) and dispatch to one module per command.

mod acl;
mod bench;
mod bench_group;
mod cluster;
mod consume;
mod group;
mod output;
mod produce;
mod progress;
mod quota;
mod record_format;
mod scrub;
mod serve;
mod status;
mod stop;
mod topic;
mod topic_ops;
mod user;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use herald::client::{Client, ClientError, ConnectOptions, Credentials, Timeouts, TlsOptions};

/// Boxed errors are for the command line only; the libraries keep typed errors.
pub type CliResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// An error in how the command was called (exit status 2, as clap's own).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The broker could not be reached or did not answer (exit status 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnreachableError(pub String);

/// The exit status of a failed command: 2 for a usage error, 3 when the
/// broker cannot be reached (refused, unresolvable, or silent past
/// `--timeout-ms`, also in the middle of a command), 1 for everything else
/// (the broker refused the request, a local file failed, ...).
pub fn exit_status(err: &(dyn std::error::Error + 'static)) -> i32 {
    if err.is::<UsageError>() {
        return 2;
    }
    if err.is::<UnreachableError>() {
        return 3;
    }
    match err.downcast_ref::<ClientError>() {
        Some(ClientError::TimedOut { .. } | ClientError::Closed | ClientError::Io(_)) => 3,
        _ => 1,
    }
}

#[derive(Parser, Debug)]
#[command(name = "herald", version, about = "A Kafka-style message broker")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker (port 9092, data in ./data unless configured otherwise).
    Serve(serve::ServeArgs),
    /// Create, list, describe, delete topics, add partitions, change settings
    /// and delete records.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Produce records read from standard input, one per line.
    Produce(produce::ProduceArgs),
    /// List, describe, reset the offsets of, and delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Manage ACLs: who may do what to which topics, groups and the cluster
    /// (enforced with `security.authorization = true`).
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Manage quotas: produce and fetch bytes and requests per second of a
    /// principal or client id.
    #[command(subcommand)]
    Quota(quota::QuotaCommand),
    /// Describe the cluster: its live brokers and its controller.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Consume records and print them, one per line.
    Consume(consume::ConsumeArgs),
    /// Measure produce and consume throughput and latency against a broker.
    Bench(bench::BenchArgs),
    /// Measure consumer-group rebalance latency and group consume throughput.
    BenchGroup(bench_group::BenchGroupArgs),
    /// Create, delete and list SCRAM-SHA-256 users (online, or in a data
    /// directory with no broker running).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Whether the broker is serving, and its topics and groups in brief
    /// (exit status 3 when it cannot be reached).
    Status(status::StatusArgs),
    /// Check every stored batch of a data directory and report damaged ranges
    /// (exit status 1 if any); reads only.
    Scrub(scrub::ScrubArgs),
    /// Print a completion script for a shell: `herald completions bash >
    /// /etc/bash_completion.d/herald` (or zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where the broker is.
#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// The broker's address; in a cluster, a comma-separated list of
    /// brokers to start from (each tried in turn; the cluster's other
    /// brokers are found from them).
    #[arg(long, short = 'b', visible_alias = "bootstrap", default_value = "127.0.0.1:9092", env = "HERALD_BROKER")]
    broker: String,
    /// How long to wait for the broker to accept the connection and to answer
    /// each request, in ms (beyond the time a long poll asks it to wait).
    #[arg(long, default_value_t = 30_000, env = "HERALD_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// The client id the broker sees (in `group describe`, in its logs).
    #[arg(long, default_value = "herald-cli", env = "HERALD_CLIENT_ID")]
    client_id: String,
    /// Authenticate as this user (SCRAM-SHA-256), with --password-file.
    #[arg(long, env = "HERALD_USER", requires = "password_file")]
    user: Option<String>,
    /// The file holding --user's password (its last line ending dropped).
    #[arg(long, value_name = "FILE", env = "HERALD_PASSWORD_FILE", requires = "user")]
    password_file: Option<std::path::PathBuf>,
    /// Speak TLS to the broker, trusting the CA in `--tls-ca` (implied by
    /// any `--tls-*` option).
    #[arg(long, env = "HERALD_TLS")]
    tls: bool,
    /// The CA certificate(s), PEM, that signed the broker's certificate.
    #[arg(long, value_name = "FILE", env = "HERALD_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// A client certificate chain, PEM, to show the broker (mutual TLS; needs `--tls-key`).
    #[arg(long, value_name = "FILE", env = "HERALD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key, PEM.
    #[arg(long, value_name = "FILE", env = "HERALD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name the broker's certificate must carry; default: the host of `--broker`.
    #[arg(long, value_name = "NAME", env = "HERALD_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
}

impl BrokerArgs {
    /// The addresses `--broker` lists.
    fn addresses(&self) -> impl Iterator<Item = &str> {
        self.broker.split(',').map(str::trim).filter(|a| !a.is_empty())
    }

    /// The first address `--broker` lists (for what needs one broker).
    pub(crate) fn first(&self) -> &str {
        self.addresses().next().unwrap_or(self.broker.as_str())
    }

    /// How the CLI's clients connect to `address`: these timeouts, TLS and
    /// credentials.
    fn connect_options(&self, address: &str) -> CliResult<ConnectOptions> {
        let wait = Duration::from_millis(self.timeout_ms);
        let options = ConnectOptions::default().timeouts(Timeouts { connect: wait, request: wait });
        let options = match (&self.user, &self.password_file) {
            (Some(user), Some(file)) => {
                let password = std::fs::read_to_string(file)
                    .map_err(|e| UsageError(format!("--password-file {}: {e}", file.display())))?;
                options.credentials(Credentials::scram_sha_256(user, user::strip_line_end(password)))
            }
            _ => options,
        };
        let tls = self.tls || self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_server_name.is_some();
        if !tls {
            return Ok(options);
        }
        let Some(ca) = &self.tls_ca else {
            return Err(
                UsageError("--tls needs --tls-ca FILE (the CA that signed the broker's certificate)".into()).into()
            );
        };
        let mut tls = TlsOptions::from_ca_file(ca)?;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.client_cert_files(cert, key)?;
        }
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = self.tls_server_name.as_deref().unwrap_or(host);
        Ok(options.tls(tls.server_name(name)))
    }

    /// A connection to the first of `--broker`'s addresses that accepts.
    async fn connect(&self) -> CliResult<Client> {
        let mut last = None;
        for address in self.addresses() {
            let options = self.connect_options(address)?;
            match Client::connect_with_options(address, &self.client_id, options).await {
                Ok(client) => return Ok(client),
                Err(err @ ClientError::Broker { .. }) => return Err(err.into()),
                Err(err @ ClientError::TimedOut { .. }) => last = Some(UnreachableError(err.to_string())),
                Err(err) => last = Some(UnreachableError(format!("cannot reach the broker at {address}: {err}"))),
            }
        }
        Err(last.unwrap_or_else(|| UnreachableError(format!("no broker address in `{}`", self.broker))).into())
    }
}

/// Runs one command.
///
/// # Errors
///
/// Whatever the command reports; `main` prints it as one line.
pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Topic(command) => on_client_runtime(topic::run(command)),
        Command::Produce(args) => on_client_runtime(produce::run(args)),
        Command::Consume(args) => on_client_runtime(consume::run(args)),
        Command::Group(command) => on_client_runtime(group::run(command)),
        Command::Acl(command) => on_client_runtime(acl::run(command)),
        Command::Quota(command) => on_client_runtime(quota::run(command)),
        Command::Cluster(command) => on_client_runtime(cluster::run(command)),
        Command::Bench(args) => on_client_runtime(bench::run(args)),
        Command::BenchGroup(args) => on_client_runtime(bench_group::run(args)),
        Command::Status(args) => on_client_runtime(status::run(args)),
        Command::User(command) => on_client_runtime(user::run(command)),
        Command::Scrub(args) => scrub::run(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "herald", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Runs a client command to its end, then leaves at once: a read of standard
/// input that never finishes (a terminal, a pipe held open) must not keep the
/// process alive, as dropping the runtime would by waiting for it.
fn on_client_runtime(command: impl std::future::Future<Output = CliResult>) -> CliResult {
    init_client_logging();
    // Settings variables (HERALD_X__Y) are the broker's; other unread ones are typos.
    for warning in herald::config::unread_environment(std::env::vars()) {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(command);
    runtime.shutdown_background();
    result
}

fn init_client_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .try_init();
}

/// Standard error for log lines, whose write errors are dropped.
///
/// A line that cannot be written (stderr a pipe nobody reads any more, a full
/// disk under a redirect) is lost, and nothing else happens: `eprintln!`
/// (which tracing-subscriber uses to report a failed write unless
/// `log_internal_errors(false)`) would panic there instead, and a panic on a
/// broker thread takes the broker down.
pub struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;

    /// Every command's options are consistent (no name used twice, as one
    /// command's own option beside the broker options would be): clap checks
    /// it only when the command is parsed.
    #[test]
    fn every_command_line_is_well_formed() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
