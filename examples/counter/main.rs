//! A broker with the windowed counter of `counter.rs` built in:
//!
//! ```text
//! cargo run --example counter -- --port 9092 --data-dir /tmp/herald-counter [--window-secs 10] [--config FILE] [--port-file FILE]
//! ```
//!
//! Then produce to `clicks` from any client; each window's per-key counts
//! appear in `clicks.counts` (see docs/extending.md). SIGINT or SIGTERM
//! stops it cleanly.

mod counter;

use std::path::PathBuf;

use herald::config::Settings;
use herald::server::Server;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut flags: Vec<(&str, String)> = Vec::new();
    let (mut config, mut port_file) = (None, None);
    let mut options = counter::Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => flags.push(("server.port", value()?)),
            "--data-dir" => flags.push(("storage.data_dir", value()?)),
            "--http-port" => flags.push(("http.port", value()?)),
            "--window-secs" => options.window = std::time::Duration::from_secs(value()?.parse()?),
            "--config" => config = Some(PathBuf::from(value()?)),
            "--port-file" => port_file = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let settings = Settings::load(config.as_deref(), &flags)?;
    tracing_subscriber::fmt().with_env_filter(settings.logging.level.as_str()).with_writer(std::io::stderr).init();
    let listener = std::net::TcpListener::bind((settings.server.host.as_str(), settings.server.port))?;
    let port = listener.local_addr()?.port();
    println!("herald with the windowed counter on port {port}");
    if let Some(path) = port_file {
        std::fs::write(path, format!("{port}\n"))?;
    }
    let system = actix::System::new();
    system.block_on(counter::install_with(Server::builder(settings).listener(listener), options).run())?;
    Ok(())
}
