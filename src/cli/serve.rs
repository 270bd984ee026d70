//! `herald serve`: load the settings, bind, and run the broker until SIGINT or
//! SIGTERM, then shut down cleanly and exit 0.

use std::path::PathBuf;

use clap::Args;
use std::io::IsTerminal;

use herald::config::{LogFormat, LoggingSettings, Settings};

use super::{CliResult, QuietStderr};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A TOML settings file (see config/default.toml for every key).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (server.host).
    #[arg(long)]
    host: Option<String>,
    /// TCP port; 0 picks a free one (server.port).
    #[arg(long)]
    port: Option<u16>,
    /// Data directory (storage.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Durability: always, interval or never (storage.flush).
    #[arg(long)]
    flush: Option<String>,
    /// Log format: text or json (logging.format).
    #[arg(long)]
    log_format: Option<String>,
    /// After binding, write the port to this file (for scripts and tests).
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// HTTP port for metrics, health and the admin API; 0 picks a free one (http.port).
    #[arg(long)]
    http_port: Option<u16>,
    /// After binding, write the HTTP port to this file (for scripts and tests).
    #[arg(long)]
    http_port_file: Option<PathBuf>,
    /// Join the cluster coordinated by this ZooKeeper, HOST:PORT[,...][/chroot] (cluster.zookeeper).
    #[arg(long)]
    zookeeper: Option<String>,
    /// This broker's id in the cluster (cluster.broker_id).
    #[arg(long)]
    broker_id: Option<i32>,
}

pub fn run(args: ServeArgs) -> CliResult {
    let mut flags: Vec<(&str, String)> = Vec::new();
    if let Some(host) = &args.host {
        flags.push(("server.host", host.clone()));
    }
    if let Some(port) = args.port {
        flags.push(("server.port", port.to_string()));
    }
    if let Some(zookeeper) = &args.zookeeper {
        flags.push(("cluster.zookeeper", zookeeper.clone()));
    }
    if let Some(id) = args.broker_id {
        flags.push(("cluster.broker_id", id.to_string()));
    }
    if let Some(dir) = &args.data_dir {
        flags.push(("storage.data_dir", dir.display().to_string()));
    }
    if let Some(flush) = &args.flush {
        flags.push(("storage.flush", flush.clone()));
    }
    if let Some(format) = &args.log_format {
        flags.push(("logging.format", format.clone()));
    }
    if let Some(port) = args.http_port {
        flags.push(("http.port", port.to_string()));
    }
    let (settings, sources) = Settings::load_with_sources(args.config.as_deref(), &flags)?;
    init_logging(&settings.logging)?;
    for warning in herald::config::unread_environment(std::env::vars()) {
        tracing::warn!("{warning}");
    }
    let changed: Vec<String> =
        sources.iter().map(|(key, (value, origin))| format!("{key}={} ({origin})", shown(key, value))).collect();
    tracing::info!(
        "settings: the defaults of config/default.toml{}",
        if changed.is_empty() { String::new() } else { format!(", except {}", changed.join(", ")) }
    );
    // Before anything is opened: every partition and connection needs descriptors.
    match herald::fd_limit::raise_to_hard_limit() {
        Ok(limit) => {
            tracing::info!(was = limit.was, now = limit.now, hard = limit.hard, "open file limit");
            let (connections, files) = (settings.server.max_connections, settings.storage.max_open_segment_files);
            if let Some(short) = limit.shortfall(u64::from(connections), u64::from(files)) {
                tracing::warn!(
                    limit = limit.now,
                    short,
                    max_connections = connections,
                    max_open_segment_files = files,
                    "the open file limit is below server.max_connections + storage.max_open_segment_files + {}: \
                     connections past it wait in the listen backlog",
                    herald::fd_limit::RESERVED
                );
            }
        }
        Err(err) => tracing::warn!(%err, "cannot raise the open file limit; running with the current one"),
    }

    herald_actors::cleaner::Cleaner::global()
        .set_buffer_bytes(usize::try_from(settings.storage.cleaner_buffer_bytes).unwrap_or(usize::MAX));
    let address = format!("{}:{}", settings.server.host, settings.server.port);
    let listener = herald::server::bind_client_listener(&address, settings.server.max_connections)?;
    let http = herald::http::bind(&settings.http)?;
    if let Some(path) = &args.port_file {
        write_port(path, listener.local_addr()?.port())?;
    }
    if let (Some(path), Some(http)) = (&args.http_port_file, &http) {
        write_port(path, http.local_addr()?.port())?;
    }
    let system = actix::System::new();
    let server = herald::server::Server::builder(settings).listener(listener).http_listener(http).sources(sources);
    system.block_on(server.run())?;
    Ok(())
}

/// Writes `port` to `path` whole (a reader never sees half of it).
fn write_port(path: &std::path::Path, port: u16) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Log lines on standard error, at `logging.level` unless `RUST_LOG` says
/// otherwise; coloured only on a terminal.
fn init_logging(logging: &LoggingSettings) -> CliResult {
    let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => tracing_subscriber::EnvFilter::try_new(&logging.level)
            .map_err(|err| format!("invalid setting `logging.level` = `{}`: {err}", logging.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    let _ = match logging.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

/// A setting's value as the start-up log shows it: secrets hidden.
fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if key.ends_with("password") {
        "<hidden>"
    } else {
        value
    }
}
