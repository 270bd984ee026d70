//! What the records `herald bench` produces hold (`--payload`), so that
//! `--compression` has something to work on: a fixed byte cycle (what the
//! bench always sent), random bytes (nothing to compress) or JSON log lines
//! (text that repeats as real logs do, after scripts/compression-lines.py).

use bytes::Bytes;

/// The kind of record values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// Every value the same `0, 1, .., 250, 0, 1, ..` cycle.
    Pattern,
    /// Random bytes, none repeated within a batch.
    Random,
    /// JSON log lines of the record size, each one different.
    Text,
}

/// Distinct text values; a batch of up to this many records repeats none.
const TEXT_LINES: usize = 1024;
/// Random bytes values are cut from, at least: more than a batch holds.
const RANDOM_POOL_BYTES: usize = 8 << 20;

/// The values records take in turn.
#[derive(Debug, Clone)]
pub(super) struct Values {
    pool: Bytes,
    size: usize,
    /// Values in `pool`, end to end (`pattern`: one; `random`: cut at any byte).
    count: usize,
    random: bool,
}

impl Values {
    /// Values of `size` bytes of `payload`.
    pub(super) fn new(payload: Payload, size: usize) -> Values {
        match payload {
            Payload::Pattern => {
                let pool = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
                Values { pool, size, count: 1, random: false }
            }
            Payload::Random => {
                let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
                let len = RANDOM_POOL_BYTES.max(size * 2);
                let pool = Bytes::from((0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>());
                Values { pool, size, count: 1, random: true }
            }
            Payload::Text => {
                let mut rng = XorShift(7);
                let pool: Vec<u8> = (0..TEXT_LINES).flat_map(|_| log_line(&mut rng, size)).collect();
                Values { pool: Bytes::from(pool), size, count: TEXT_LINES, random: false }
            }
        }
    }

    /// The value of the `n`-th record.
    pub(super) fn get(&self, n: u64) -> Bytes {
        let start = if self.random {
            // A prime stride: neighbours never share bytes while the pool lasts.
            (n as usize).wrapping_mul(self.size + 7) % (self.pool.len() - self.size + 1)
        } else {
            (n as usize % self.count) * self.size
        };
        self.pool.slice(start..start + self.size)
    }
}

/// A small deterministic generator: the same values on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One JSON log line of exactly `size` bytes: its fields, then a stack-trace
/// field that fills it (cut short, and not JSON, when `size` is below the
/// fields' length).
fn log_line(rng: &mut XorShift, size: usize) -> Vec<u8> {
    let service = rng.pick(&["checkout", "payments", "search", "auth", "inventory", "shipping"]);
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1",
        "curl/8.4.0",
        "python-requests/2.31.0",
    ];
    let mut line = format!(
        "{{\"ts\":\"2026-11-30T12:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"service\":\"{service}\",\
         \"host\":\"ip-10-0-{}-{}.ec2.internal\",\"trace_id\":\"{:016x}{:016x}\",\"span_id\":\"{:016x}\",\
         \"method\":\"{}\",\"path\":\"{}\",\"status\":{},\"latency_ms\":{}.{:02},\"bytes\":{},\
         \"user_agent\":\"{}\",\"client_ip\":\"{}.{}.{}.{}\",\"user_id\":\"u-{:06}\",\"region\":\"{}\",\
         \"message\":\"request completed for tenant {} with {} downstream calls; cache {}; retries {}\"",
        rng.below(60),
        rng.below(60),
        rng.below(1000),
        rng.pick(&["INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "WARN", "ERROR"]),
        rng.below(4),
        1 + rng.below(254),
        rng.next(),
        rng.next(),
        rng.next(),
        rng.pick(&["GET", "GET", "POST", "PUT"]),
        rng.pick(&["/api/v1/orders", "/api/v1/cart", "/api/v2/search", "/login", "/api/v1/items", "/health"]),
        rng.pick(&["200", "200", "200", "200", "200", "200", "200", "200", "201", "204", "404", "500"]),
        rng.below(400),
        rng.below(100),
        100 + rng.below(90_000),
        rng.pick(&agents),
        1 + rng.below(254),
        1 + rng.below(254),
        1 + rng.below(254),
        1 + rng.below(254),
        1 + rng.below(200_000),
        rng.pick(&["eu-west-1", "us-east-1", "ap-south-1"]),
        rng.pick(&["acme", "globex", "initech", "umbrella"]),
        rng.below(13),
        rng.pick(&["hit", "miss"]),
        rng.below(3),
    );
    line.push_str(",\"stack\":\"");
    while line.len() < size {
        let class = rng.pick(&["Handler.handle", "Router.dispatch", "Pool.run", "Client.call", "Codec.decode"]);
        let file = class.split('.').next().unwrap_or(class);
        line.push_str(&format!(" at com.example.{service}.{class}({file}.java:{})", 10 + rng.below(890)));
    }
    let mut bytes = line.into_bytes();
    bytes.truncate(size);
    if size >= 2 {
        bytes[size - 2..].copy_from_slice(b"\"}");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_gives_values_of_the_record_size() {
        for payload in [Payload::Pattern, Payload::Random, Payload::Text] {
            for size in [0, 1, 100, 1000, 5000] {
                let values = Values::new(payload, size);
                assert!((0..3000).all(|n| values.get(n).len() == size), "{payload:?} {size}");
            }
        }
    }

    #[test]
    fn text_and_random_values_differ_within_a_batch_and_pattern_ones_do_not() {
        let distinct = |payload| {
            let values = Values::new(payload, 1000);
            (0..1000).map(|n| values.get(n)).collect::<std::collections::HashSet<_>>().len()
        };
        assert_eq!(distinct(Payload::Pattern), 1);
        assert_eq!(distinct(Payload::Random), 1000);
        assert_eq!(distinct(Payload::Text), 1000);
    }

    #[test]
    fn text_lines_are_json_objects_when_the_size_leaves_room() {
        let values = Values::new(Payload::Text, 1000);
        for n in 0..50 {
            let line = values.get(n);
            let parsed: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert!(parsed["trace_id"].as_str().is_some_and(|id| id.len() == 32));
        }
    }
}
