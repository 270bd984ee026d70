//! Herald's actor system, independent of the wire.
//!
//! - [`batch`]: the record batch format, shared by the log, the broker and clients.
//! - [`partition`]: one actor per partition and the log it owns (segments, indexes,
//!   recovery, retention).

pub mod batch;
pub mod partition;
