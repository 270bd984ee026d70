//! What the seeded tests share: the seed of a run and a small deterministic
//! generator, so that a printed seed replays a run exactly.

/// `HERALD_FAULT_SEED` when set (to replay a run), else the clock.
pub fn seed() -> u64 {
    std::env::var("HERALD_FAULT_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    })
}

/// xorshift64*: the next value of the sequence `state` is in (never 0 when
/// `state` starts above 0).
pub fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// [`next`] as a value that owns its state.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        next(&mut self.0)
    }

    /// A value in `0..n` (`n` above 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
