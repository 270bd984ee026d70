//! Counters the TCP frontend bumps: requests, errors and latency per
//! operation, connections, rejected frames. Read by `/metrics` (see
//! [`super::exposition`]).
//!
//! Process-wide, like `herald_actors::stats`. Every counter is an atomic in a
//! table made once, indexed by the operation's place in
//! [`OPERATIONS`] and the error code's in [`ErrorCode::ALL`]: bumping takes no
//! lock, allocates nothing and hashes nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use herald_actors::error::ErrorCode;
use herald_actors::stats::Histogram;

use crate::protocol::OPERATIONS;

/// Why a frame or connection was refused before a request was dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// A frame over `server.max_frame_bytes`.
    TooLarge,
    /// The handshake or a frame did not arrive within its timeout.
    Deadline,
    /// A frame that could not be decoded as a request.
    Malformed,
    /// A request before the handshake, or a handshake without a common version.
    Handshake,
    /// A Kafka client on Herald's port.
    Kafka,
    /// A connection over `server.max_connections`, closed unread.
    MaxConnections,
    /// A failed authentication, or a request refused for want of one.
    Authentication,
    /// A TLS handshake that failed: a plaintext client or garbage on a TLS
    /// listener, no client certificate where one is required, a certificate
    /// not signed by the client CA.
    Tls,
}

impl Rejected {
    pub const ALL: [Rejected; 8] = [
        Rejected::TooLarge,
        Rejected::Deadline,
        Rejected::Malformed,
        Rejected::Handshake,
        Rejected::Kafka,
        Rejected::MaxConnections,
        Rejected::Authentication,
        Rejected::Tls,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Rejected::TooLarge => "too_large",
            Rejected::Deadline => "deadline",
            Rejected::Malformed => "malformed",
            Rejected::Handshake => "handshake",
            Rejected::Kafka => "kafka",
            Rejected::MaxConnections => "max_connections",
            Rejected::Authentication => "authentication",
            Rejected::Tls => "tls",
        }
    }
}

/// One operation's counters.
#[derive(Debug)]
pub struct OpStats {
    pub requests: AtomicU64,
    /// Answered with an error, by the code's place in [`ErrorCode::ALL`].
    pub errors: Vec<AtomicU64>,
    /// From dispatch to the response being queued for writing.
    pub latency: Histogram,
}

/// The frontend's counters.
#[derive(Debug)]
pub struct Frontend {
    /// By the operation's place in [`OPERATIONS`].
    pub ops: Vec<OpStats>,
    pub connections_open: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// By the reason's place in [`Rejected::ALL`].
    pub rejected: [AtomicU64; Rejected::ALL.len()],
}

/// The process's frontend counters.
pub fn frontend() -> &'static Frontend {
    static FRONTEND: OnceLock<Frontend> = OnceLock::new();
    FRONTEND.get_or_init(|| Frontend {
        ops: OPERATIONS
            .iter()
            .map(|_| OpStats {
                requests: AtomicU64::new(0),
                errors: ErrorCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
                latency: Histogram::default(),
            })
            .collect(),
        connections_open: AtomicU64::new(0),
        connections_accepted: AtomicU64::new(0),
        rejected: Default::default(),
    })
}

/// A request being timed: its operation's place and when it was dispatched.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    op: usize,
    started: Instant,
}

/// A request of operation `op` is dispatched: counted, and timed from now.
pub fn request_started(op: &str) -> Option<Timing> {
    let index = OPERATIONS.iter().position(|o| o.name == op)?;
    frontend().ops[index].requests.fetch_add(1, Ordering::Relaxed);
    Some(Timing { op: index, started: Instant::now() })
}

/// A timed request is answered, with `error` if it failed.
pub fn request_done(timing: Option<Timing>, error: Option<ErrorCode>) {
    let Some(timing) = timing else { return };
    let op = &frontend().ops[timing.op];
    op.latency.observe(timing.started.elapsed());
    if let Some(code) = error {
        op_error(op, code);
    }
}

/// A request of operation `op` was refused before its work began.
pub fn request_refused(op: &str, code: ErrorCode) {
    if let Some(index) = OPERATIONS.iter().position(|o| o.name == op) {
        op_error(&frontend().ops[index], code);
    }
}

fn op_error(op: &OpStats, code: ErrorCode) {
    if let Some(index) = ErrorCode::ALL.iter().position(|&c| c == code) {
        op.errors[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// A frame or connection was refused for `reason`.
pub fn rejected(reason: Rejected) {
    let index = Rejected::ALL.iter().position(|&r| r == reason).unwrap_or(0);
    frontend().rejected[index].fetch_add(1, Ordering::Relaxed);
}

/// A connection was accepted (and not refused at once).
pub fn connection_opened() {
    let frontend = frontend();
    frontend.connections_accepted.fetch_add(1, Ordering::Relaxed);
    frontend.connections_open.fetch_add(1, Ordering::Relaxed);
}

/// An accepted connection's reader stopped.
pub fn connection_closed() {
    let _ = frontend().connections_open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}
