//! Herald: a Kafka-style message broker on actix actors.
//!
//! This crate is the broker's edges; the actors live in `herald-actors`.
//!
//! - [`config`]: settings from defaults, a file, the environment and flags.
//! - [`protocol`]: the wire protocol (framing, request and response types).
//! - [`frontend`]: the TCP listener and one connection actor per client.
//! - [`server`]: starting and cleanly stopping a broker.
//! - [`dir_lock`]: one broker per data directory.
//! - [`client`]: the async Rust client (admin, producer, consumer).

pub mod client;
pub mod config;
pub mod dir_lock;
pub mod frontend;
pub mod protocol;
pub mod server;
