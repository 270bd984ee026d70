//! The TCP frontend: the [`listener::Listener`] accepts connections and each
//! [`connection::Connection`] turns MessagePack frames into actor messages.

pub mod connection;
pub mod listener;
