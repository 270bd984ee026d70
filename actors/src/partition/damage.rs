//! Damaged ranges of a log: spans of a segment's `.log` file that hold no valid
//! batch, and the offsets they stand for.
//!
//! A damaged range is found by recovery (a batch that fails its checks with
//! valid batches after it, or a sealed segment that stops short of the next),
//! by a read that meets it, or by the scrub. It is never deleted nor
//! overwritten, and the offsets after it keep their place: a read at an offset
//! inside it fails with [`LogError::Damaged`](super::log::LogError::Damaged),
//! which names the range, so that a consumer skips it deliberately by reading
//! from its `next_offset`.
//!
//! The offsets of a range run from the offset expected after the last valid
//! batch before it to the base offset of the first valid batch after it (or
//! the next segment's base offset). The bytes in between are not trusted, not
//! even their base offsets, which the checksum does not cover.

use crate::error::DamagedRange;

/// A span of a segment's `.log` file that holds no valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Base offset of the segment (it names the segment's files).
    pub segment_base: i64,
    /// First byte of the span in the `.log` file.
    pub position: u64,
    /// Length of the span; 0 when offsets are missing with no bytes, as when a
    /// sealed segment ends at a batch boundary before the next one begins.
    pub bytes: u64,
    /// First offset the span stands for.
    pub first_offset: i64,
    /// The offset after the span: the first a read may resume at.
    pub next_offset: i64,
    /// What was wrong at the span's first byte.
    pub reason: String,
}

impl Damage {
    /// The byte after the span.
    pub fn end(&self) -> u64 {
        self.position + self.bytes
    }

    /// Whether `offset` is one the span stands for.
    pub fn contains(&self, offset: i64) -> bool {
        (self.first_offset..self.next_offset).contains(&offset)
    }

    /// Whether the byte at `position` is inside the span.
    pub fn covers(&self, position: u64) -> bool {
        (self.position..self.end()).contains(&position)
    }

    /// The offsets, as clients see them.
    pub fn range(&self) -> DamagedRange {
        DamagedRange { first_offset: self.first_offset, next_offset: self.next_offset }
    }
}

/// Adds `new` to a segment's spans (sorted by position), merged with every
/// span it overlaps or touches, and returns the span that now holds it.
pub(super) fn insert(spans: &mut Vec<Damage>, new: Damage) -> Damage {
    let mut merged = new;
    spans.retain(|span| {
        let touches = span.position <= merged.end() && merged.position <= span.end();
        if touches {
            let end = span.end().max(merged.end());
            merged.position = merged.position.min(span.position);
            merged.bytes = end - merged.position;
            if span.first_offset < merged.first_offset {
                merged.reason = span.reason.clone();
            }
            merged.first_offset = merged.first_offset.min(span.first_offset);
            merged.next_offset = merged.next_offset.max(span.next_offset);
        }
        !touches
    });
    let at = spans.partition_point(|span| span.position < merged.position);
    spans.insert(at, merged.clone());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(position: u64, bytes: u64, first_offset: i64, next_offset: i64) -> Damage {
        Damage { segment_base: 0, position, bytes, first_offset, next_offset, reason: format!("at {position}") }
    }

    #[test]
    fn spans_stay_sorted_and_merge_when_they_meet() {
        let mut spans = Vec::new();
        insert(&mut spans, span(500, 100, 50, 60));
        insert(&mut spans, span(100, 50, 10, 12));
        assert_eq!(spans.iter().map(|s| s.position).collect::<Vec<_>>(), [100, 500]);
        // Overlaps the first, touches the second.
        let merged = insert(&mut spans, span(120, 380, 11, 50));
        assert_eq!(merged, Damage { reason: "at 100".into(), ..span(100, 500, 10, 60) });
        assert_eq!(spans, [merged]);
        assert!(spans[0].contains(10) && spans[0].contains(59) && !spans[0].contains(60));
        assert!(spans[0].covers(100) && !spans[0].covers(600));
    }
}
