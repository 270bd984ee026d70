//! [`Throttle`]: at most one log line of a kind a second, with a count of
//! those left out, so that a flood of refusals cannot flood the log.

use std::time::{Duration, Instant};

/// At most one warning of each kind per this long.
pub const WARN_EVERY: Duration = Duration::from_secs(1);

/// Lets one event in [`WARN_EVERY`] through and counts the others.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle { last: None, suppressed: 0 }
    }

    /// `Some(events suppressed since the last one let through)` if this one may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < WARN_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_one_through_per_second_and_counts_the_rest() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        throttle.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(throttle.allow(), Some(2));
    }
}
