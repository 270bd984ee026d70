//! Herald: a Kafka-style message broker on actix actors.
//!
//! This crate is the broker program and its edges. The actors live in
//! `herald-actors`, the wire format in `herald-wire`, the Rust client in
//! `herald-client`; the last two are re-exported here for the command line
//! and the tests.
//!
//! - [`config`]: settings from defaults, a file, the environment and flags.
//! - [`frontend`]: the TCP listener and one connection actor per client.
//! - [`http`]: the HTTP listener: metrics, health, the JSON admin API.
//! - [`server`]: starting and cleanly stopping a broker; [`server::Server::builder`]
//!   embeds it in a program of one's own.
//! - [`extension`]: custom operations and custom actors added to the broker.
//! - [`dir_lock`]: one broker per data directory.
//! - [`fd_limit`]: raising the open-file limit at start.
//! - [`protocol`]: `herald_wire::protocol` (framing, request and response types).
//! - [`client`]: the `herald-client` crate (admin, producer, consumer, group consumer).

pub mod cluster;
pub mod config;
pub mod dir_lock;
pub mod extension;
pub mod fd_limit;
pub mod frontend;
pub mod http;
pub mod log_throttle;
pub mod security;
pub mod server;

pub use herald_client as client;
pub use herald_wire::protocol;
