//! The command line the examples' brokers share: `--port`, `--data-dir`,
//! `--http-port`, `--config FILE`, `--port-file FILE`, and the flags of the
//! example's own, then a broker built with the example's extension until
//! SIGINT or SIGTERM.

use std::path::PathBuf;

use herald::config::Settings;
use herald::server::{Builder, Server};

pub type Error = Box<dyn std::error::Error>;

/// The arguments given.
pub struct Args {
    config: Option<PathBuf>,
    port_file: Option<PathBuf>,
    flags: Vec<(&'static str, String)>,
    /// The example's own flags, with their values.
    extra: Vec<(String, String)>,
}

impl Args {
    /// Reads the process's arguments; `extra` names the example's own flags
    /// (each takes a value).
    pub fn parse(extra: &[&str]) -> Result<Args, Error> {
        let mut parsed = Args { config: None, port_file: None, flags: Vec::new(), extra: Vec::new() };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            match arg.as_str() {
                "--port" => parsed.flags.push(("server.port", value)),
                "--data-dir" => parsed.flags.push(("storage.data_dir", value)),
                "--http-port" => parsed.flags.push(("http.port", value)),
                "--config" => parsed.config = Some(PathBuf::from(value)),
                "--port-file" => parsed.port_file = Some(PathBuf::from(value)),
                other if extra.contains(&other) => parsed.extra.push((arg, value)),
                other => return Err(format!("unknown argument `{other}`").into()),
            }
        }
        Ok(parsed)
    }

    /// The last value given to the example's flag `flag`.
    #[allow(dead_code)] // Not every example has flags of its own.
    pub fn extra(&self, flag: &str) -> Option<&str> {
        self.extra.iter().rev().find(|(f, _)| f == flag).map(|(_, v)| v.as_str())
    }
}

/// Runs the broker `install` builds until SIGINT or SIGTERM, after printing
/// "herald with `what` on port N" (and writing N to `--port-file`).
pub fn serve(args: Args, what: &str, install: impl FnOnce(Builder) -> Builder) -> Result<(), Error> {
    let settings = Settings::load(args.config.as_deref(), &args.flags)?;
    tracing_subscriber::fmt().with_env_filter(settings.logging.level.as_str()).with_writer(std::io::stderr).init();
    let listener = std::net::TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
    let port = listener.local_addr()?.port();
    println!("herald with {what} on port {port}");
    if let Some(path) = args.port_file {
        std::fs::write(path, format!("{port}\n"))?;
    }
    let system = actix::System::new();
    system.block_on(install(Server::builder(settings).listener(listener)).run())?;
    Ok(())
}
