//! Kafka's default partitioner, so that a key lands where it would in Kafka.
//!
//! A keyed record goes to `toPositive(murmur2(key)) % partitions`, bit for bit as
//! in `org.apache.kafka.clients.producer.internals.BuiltInPartitioner`. Records
//! without a key are routed by the topic actor: one partition per batch, moving
//! on with every batch.

/// Kafka's 32-bit murmur2 (seed `0x9747b28c`), as `Utils.murmur2` computes it.
///
/// ```
/// use herald_wire::partitioner::{murmur2, partition_for_key};
///
/// assert_eq!(murmur2(b""), 275646681);
/// // Where Kafka's default partitioner puts the key among 1000 partitions.
/// assert_eq!(partition_for_key(b"", 1000), 681);
/// ```
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = 0x9747_b28c ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition a keyed record goes to, out of `partitions` (which must be ≥ 1).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (to_positive(murmur2(key)) as u32) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Kafka's own `UtilsTest.testMurmur2` pins.
    #[test]
    fn murmur2_matches_kafkas_test_values() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn negative_hashes_are_masked_not_negated() {
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        let expected = ((-973_932_308_i32) & 0x7fff_ffff) as u32 % 6;
        assert_eq!(partition_for_key(b"21", 6), expected);
    }

    #[test]
    fn empty_key_hashes_like_kafka() {
        // Kafka hashes an empty (non-null) key like any other: no 4-byte
        // chunk, no tail, only the final mix of the seed, 0x9747b28c ^ 0.
        assert_eq!(murmur2(b""), 275_646_681);
        // Where Kafka's Java partitioner puts these keys among 1000 partitions:
        // the empty key, and each length of tail (1, 2, 3 bytes).
        let cases: [(&[u8], u32); 6] =
            [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)];
        for (key, partition) in cases {
            assert_eq!(partition_for_key(key, 1000), partition, "{key:?}");
        }
    }
}
