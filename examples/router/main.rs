//! A broker with the router of `router.rs` built in:
//!
//! ```text
//! cargo run --example router -- --port 9092 --data-dir /tmp/herald-router [--config FILE] [--port-file FILE]
//! ```
//!
//! Then produce to `orders` with a `region` header from any client; the
//! records appear in `orders.<region>` (see docs/extending.md). SIGINT or
//! SIGTERM stops it cleanly.

mod router;
#[path = "../shared/serve.rs"]
mod serve;

fn main() -> Result<(), serve::Error> {
    serve::serve(serve::Args::parse(&[])?, "the orders router", router::install)
}
