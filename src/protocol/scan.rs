//! A quick look at a request's top-level map for `correlation_id` and `op`,
//! without decoding the rest. Clients that put those two keys first (the Rust
//! and Python clients do) are routed without a second pass over their
//! records; for any other order the scan skips values until it has both.
//! Anything unexpected ends the scan, and the caller falls back to a full
//! decode, which reports the precise error.

/// What the scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    pub correlation_id: u32,
    pub op: &'a str,
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.buf.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn uint(&mut self, bytes: usize) -> Option<u64> {
        Some(self.take(bytes)?.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
    }

    /// A string's bytes, if the next value is a string.
    fn str(&mut self) -> Option<&'a str> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.uint(1)? as usize,
            0xda => self.uint(2)? as usize,
            0xdb => self.uint(4)? as usize,
            _ => return None,
        };
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// A non-negative integer that fits in u32, if the next value is one.
    fn u32(&mut self) -> Option<u32> {
        let n: i128 = match self.byte()? {
            b @ 0x00..=0x7f => i128::from(b),
            0xcc => i128::from(self.uint(1)?),
            0xcd => i128::from(self.uint(2)?),
            0xce => i128::from(self.uint(4)?),
            0xcf => i128::from(self.uint(8)?),
            0xd0 => i128::from(self.uint(1)? as u8 as i8),
            0xd1 => i128::from(self.uint(2)? as u16 as i16),
            0xd2 => i128::from(self.uint(4)? as u32 as i32),
            0xd3 => i128::from(self.uint(8)? as i64),
            _ => return None,
        };
        u32::try_from(n).ok()
    }

    /// Skips one value, nested ones included, without recursion.
    fn skip(&mut self) -> Option<()> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let marker = self.byte()?;
            let (fixed, length_bytes, children): (usize, usize, u64) = match marker {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0),
                0x80..=0x8f => (0, 0, 2 * u64::from(marker & 0x0f)),
                0x90..=0x9f => (0, 0, u64::from(marker & 0x0f)),
                0xa0..=0xbf => (usize::from(marker & 0x1f), 0, 0),
                0xc4 | 0xd9 => (0, 1, 0),
                0xc5 | 0xda => (0, 2, 0),
                0xc6 | 0xdb => (0, 4, 0),
                0xc7 => (1, 1, 0),
                0xc8 => (1, 2, 0),
                0xc9 => (1, 4, 0),
                0xca => (4, 0, 0),
                0xcb => (8, 0, 0),
                0xcc | 0xd0 => (1, 0, 0),
                0xcd | 0xd1 => (2, 0, 0),
                0xce | 0xd2 => (4, 0, 0),
                0xcf | 0xd3 => (8, 0, 0),
                0xd4 => (2, 0, 0),
                0xd5 => (3, 0, 0),
                0xd6 => (5, 0, 0),
                0xd7 => (9, 0, 0),
                0xd8 => (17, 0, 0),
                0xdc => {
                    pending = pending.checked_add(self.uint(2)?)?;
                    continue;
                }
                0xdd => {
                    pending = pending.checked_add(self.uint(4)?)?;
                    continue;
                }
                0xde => {
                    pending = pending.checked_add(2 * self.uint(2)?)?;
                    continue;
                }
                0xdf => {
                    pending = pending.checked_add(2 * self.uint(4)?)?;
                    continue;
                }
                0xc1 => return None,
            };
            pending = pending.checked_add(children)?;
            // For ext types the type byte follows the length; `fixed` counts it.
            let variable = if length_bytes > 0 { self.uint(length_bytes)? as usize } else { 0 };
            self.take(fixed.checked_add(variable)?)?;
        }
        Some(())
    }
}

/// Finds `correlation_id` and `op` in a request's top-level map, or `None`
/// when the frame is not what a well-formed request looks like.
pub fn head(frame: &[u8]) -> Option<Head<'_>> {
    let mut cursor = Cursor { buf: frame, at: 0 };
    let entries = match cursor.byte()? {
        b @ 0x80..=0x8f => u64::from(b & 0x0f),
        0xde => cursor.uint(2)?,
        0xdf => cursor.uint(4)?,
        _ => return None,
    };
    let (mut correlation_id, mut op) = (None, None);
    for _ in 0..entries {
        match cursor.str()? {
            "correlation_id" => correlation_id = Some(cursor.u32()?),
            "op" => op = Some(cursor.str()?),
            _ => cursor.skip()?,
        }
        if let (Some(correlation_id), Some(op)) = (correlation_id, op) {
            return Some(Head { correlation_id, op });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{op, FetchRequest, ProduceRequest, RequestEnvelope, WireRecord};
    use bytes::Bytes;

    #[test]
    fn finds_the_head_of_our_own_requests() {
        let frame = rmp_serde::to_vec_named(&RequestEnvelope {
            correlation_id: 70_000,
            op: op::PRODUCE,
            body: ProduceRequest {
                topic: "t".into(),
                partition: None,
                acks: 1,
                records: vec![WireRecord { value: Some(Bytes::from_static(b"v")), ..Default::default() }],
            },
        })
        .unwrap();
        assert_eq!(head(&frame), Some(Head { correlation_id: 70_000, op: "produce" }));
    }

    #[test]
    fn skips_values_before_the_head_in_any_order() {
        let value = rmpv::Value::Map(vec![
            ("nested".into(), rmpv::Value::Array(vec![rmpv::Value::Map(vec![("a".into(), 1.into())]), 2.5.into()])),
            ("records".into(), rmpv::Value::Binary(vec![0; 300])),
            ("text".into(), rmpv::Value::String("x".repeat(40).into())),
            ("big".into(), rmpv::Value::from(u64::MAX)),
            ("neg".into(), rmpv::Value::from(-5)),
            ("none".into(), rmpv::Value::Nil),
            ("ext".into(), rmpv::Value::Ext(3, vec![1, 2, 3])),
            ("op".into(), "fetch".into()),
            ("correlation_id".into(), 9.into()),
        ]);
        let mut frame = Vec::new();
        rmpv::encode::write_value(&mut frame, &value).unwrap();
        assert_eq!(head(&frame), Some(Head { correlation_id: 9, op: "fetch" }));
        // The same request decodes fully too.
        let fetch = rmp_serde::to_vec_named(&RequestEnvelope {
            correlation_id: 1,
            op: op::FETCH,
            body: FetchRequest {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                max_bytes: 1,
                min_bytes: 0,
                max_wait_ms: 0,
            },
        })
        .unwrap();
        assert!(head(&fetch).is_some());
    }

    #[test]
    fn anything_odd_ends_the_scan_without_panicking() {
        let mut frame = Vec::new();
        rmpv::encode::write_value(
            &mut frame,
            &rmpv::Value::Map(vec![("correlation_id".into(), 1.into()), ("op".into(), "fetch".into())]),
        )
        .unwrap();
        for cut in 0..frame.len() {
            assert_eq!(head(&frame[..cut]), None);
        }
        for bad in [
            &[0x81, 0xc1][..],
            &[0x90],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0x81, 0xa1, b'x', 0xdd, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(head(bad), None);
        }
        let negative = rmpv::Value::Map(vec![("correlation_id".into(), (-1).into()), ("op".into(), "fetch".into())]);
        let mut frame = Vec::new();
        rmpv::encode::write_value(&mut frame, &negative).unwrap();
        assert_eq!(head(&frame), None);
    }
}
