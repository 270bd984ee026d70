//! A broker with the key-value extension of `kv.rs` built in:
//!
//! ```text
//! cargo run --example kv -- --port 0 --data-dir /tmp/herald-kv [--config FILE] [--port-file FILE]
//! ```
//!
//! Then, from any client: `x.kv.put` `{key, value}`, `x.kv.get` `{key}` and
//! `x.kv.scan` `{prefix, limit}`
//! (see docs/extending.md). SIGINT or SIGTERM stops it cleanly.

mod kv;
#[path = "../shared/serve.rs"]
mod serve;

fn main() -> Result<(), serve::Error> {
    serve::serve(serve::Args::parse(&[])?, "x.kv.put, x.kv.get and x.kv.scan", kv::install)
}
