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
#[path = "../shared/serve.rs"]
mod serve;

fn main() -> Result<(), serve::Error> {
    let args = serve::Args::parse(&["--window-secs"])?;
    let mut options = counter::Options::default();
    if let Some(secs) = args.extra("--window-secs") {
        options.window = std::time::Duration::from_secs(secs.parse()?);
    }
    serve::serve(args, "the windowed counter", |builder| counter::install_with(builder, options))
}
