//! The open-file limit: `herald serve` raises the soft `RLIMIT_NOFILE` to the
//! hard limit before it opens anything, so that a common default soft limit
//! of 1,024 does not cap a broker the operator allowed more. The hard limit is
//! the operator's to set (`ulimit -Hn`, systemd's `LimitNOFILE`); the broker
//! never tries to go past it.
//!
//! Called once, by `herald serve`, before the actor system starts.

use std::io;

/// The open-file limit before and after [`raise_to_hard_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit found at start.
    pub was: u64,
    /// The soft limit now in force.
    pub now: u64,
    /// The hard limit, the most the soft limit may be raised to.
    pub hard: u64,
}

/// Descriptors the broker may need besides its connections and segment
/// files: the listener, the event loops, the data directory's lock, a
/// directory or index file while it is written, files waiting for an fsync.
pub const RESERVED: u64 = 64;

impl FdLimit {
    /// How many descriptors the limit in force lacks for `max_connections`
    /// connections, `max_open_segment_files` segment files and
    /// [`RESERVED`] at once, if it lacks any. Over the limit nothing breaks
    /// (accept backs off, a log open is retried) but clients wait.
    pub fn shortfall(&self, max_connections: u64, max_open_segment_files: u64) -> Option<u64> {
        let needed = max_connections.saturating_add(max_open_segment_files).saturating_add(RESERVED);
        needed.checked_sub(self.now).filter(|&short| short > 0)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limits.
///
/// # Errors
///
/// The limit cannot be read, or cannot be raised (the soft limit is then
/// unchanged and the broker runs with it).
pub fn raise_to_hard_limit() -> io::Result<FdLimit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `getrlimit` writes one `rlimit` through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let was = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: `setrlimit` reads one `rlimit` through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    // `rlim_t` is not 64 bits on every platform.
    #[allow(clippy::unnecessary_cast)]
    Ok(FdLimit { was: was as u64, now: limit.rlim_cur as u64, hard: limit.rlim_max as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_to_hard_limit().unwrap();
        assert_eq!(limit.now, limit.hard);
        assert!(limit.was <= limit.now);
        // A second call finds it raised already.
        assert_eq!(raise_to_hard_limit().unwrap(), FdLimit { was: limit.now, now: limit.now, hard: limit.hard });
    }

    #[test]
    fn the_shortfall_counts_connections_segment_files_and_the_reserve() {
        let limit = FdLimit { was: 1024, now: 1024, hard: 1024 };
        assert_eq!(limit.shortfall(500, 256), None);
        assert_eq!(limit.shortfall(1024 - RESERVED - 256, 256), None, "exactly enough");
        assert_eq!(limit.shortfall(10_000, 1024), Some(10_000 + 1024 + RESERVED - 1024));
    }
}
