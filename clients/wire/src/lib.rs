//! Herald's wire format, shared by the broker and every Rust client, with no
//! actor system, no runtime and no file I/O. docs/protocol.md is the
//! specification; this crate is its implementation.
//!
//! - [`protocol`]: framing ([`protocol::codec`]: a 4-byte big-endian length,
//!   then one MessagePack map), the request and response types of every
//!   operation (listed once, in `protocol::request`), strict decoding, version
//!   negotiation and the handshake's feature list.
//! - [`batch`]: the record batch format that producers send, partitions
//!   store and fetches return: encode, decode, validate, CRC-32C.
//! - [`error`]: the stable error codes, with names and retriability.
//! - [`partitioner`]: Kafka's default partitioner (murmur2), so a keyed
//!   record lands where a Kafka client would put it.

pub mod batch;
pub mod error;
pub mod partitioner;
pub mod protocol;
pub mod scram;
