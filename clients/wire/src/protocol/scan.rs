//! A quick look at a request's top-level map for `correlation_id` and `op`
//! (and, for an unanswered produce, `acks`), without decoding the rest.
//! Clients that put those keys first (the Rust and Python clients do) are
//! routed without a second pass over their records; for any other order the
//! scan skips values until it has what it looks for. Anything unexpected ends
//! the scan with what it found so far; the full decode that follows reports
//! the precise error.

/// What the scan found of a request's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head<'a> {
    /// The correlation id, if the frame has one that is a valid uint32.
    pub correlation_id: Option<u32>,
    pub op: Op<'a>,
}

/// The `op` field, as the scan found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Op<'a> {
    /// Not found: absent, or after something the scan could not read.
    #[default]
    Missing,
    /// Present, but not a MessagePack str (or not UTF-8).
    NotStr,
    Str(&'a str),
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

    /// Whether the next value is a str (without consuming it).
    fn at_str(&self) -> bool {
        matches!(self.buf.get(self.at), Some(0xa0..=0xbf | 0xd9 | 0xda | 0xdb))
    }

    /// Whether the next value is an integer (without consuming it).
    fn at_int(&self) -> bool {
        matches!(self.buf.get(self.at), Some(0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff))
    }

    /// A non-negative integer that fits in u32, if the next value is one.
    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.int()?).ok()
    }

    /// An integer in any MessagePack encoding, if the next value is one.
    fn int(&mut self) -> Option<i128> {
        Some(match self.byte()? {
            b @ 0x00..=0x7f => i128::from(b),
            0xcc => i128::from(self.uint(1)?),
            0xcd => i128::from(self.uint(2)?),
            0xce => i128::from(self.uint(4)?),
            0xcf => i128::from(self.uint(8)?),
            0xd0 => i128::from(self.uint(1)? as u8 as i8),
            0xd1 => i128::from(self.uint(2)? as u16 as i16),
            0xd2 => i128::from(self.uint(4)? as u32 as i32),
            0xd3 => i128::from(self.uint(8)? as i64),
            b @ 0xe0..=0xff => i128::from(b as i8),
            _ => return None,
        })
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

/// The entries of the top-level map, if the frame starts with one.
fn entries(cursor: &mut Cursor<'_>) -> Option<u64> {
    match cursor.byte()? {
        b @ 0x80..=0x8f => Some(u64::from(b & 0x0f)),
        0xde => cursor.uint(2),
        0xdf => cursor.uint(4),
        _ => None,
    }
}

/// Finds `correlation_id` and `op` in a request's top-level map: what it
/// could read of them before the map ended or something unreadable came.
pub fn head(frame: &[u8]) -> Head<'_> {
    let mut cursor = Cursor { buf: frame, at: 0 };
    let mut head = Head::default();
    let Some(count) = entries(&mut cursor) else { return head };
    let mut seen_op = false;
    for _ in 0..count {
        let Some(key) = cursor.str() else { return head };
        match key {
            "correlation_id" if head.correlation_id.is_none() => match cursor.u32() {
                Some(id) => head.correlation_id = Some(id),
                // Not a uint32: unreadable, like an absent id.
                None => return head,
            },
            "op" if !seen_op => {
                seen_op = true;
                let read = if cursor.at_str() {
                    cursor.str().map(|op| head.op = Op::Str(op))
                } else {
                    head.op = Op::NotStr;
                    cursor.skip()
                };
                if read.is_none() {
                    // A str cut short or not UTF-8 is not a str either.
                    head.op = Op::NotStr;
                    return head;
                }
            }
            _ => {
                if cursor.skip().is_none() {
                    return head;
                }
            }
        }
        if head.correlation_id.is_some() && seen_op {
            break;
        }
    }
    head
}

/// The integer value of the top-level key `name`, if the frame is a map that
/// has it before anything unreadable, and it is an integer.
pub fn int_field(frame: &[u8], name: &str) -> Option<i128> {
    let mut cursor = Cursor { buf: frame, at: 0 };
    for _ in 0..entries(&mut cursor)? {
        if cursor.str()? == name {
            return if cursor.at_int() { cursor.int() } else { None };
        }
        cursor.skip()?;
    }
    None
}

/// The element count of the top-level key `name`, if the frame is a map that
/// has it before anything unreadable, and it is an array. Reads the array's
/// header only, so it costs nothing however many elements follow.
pub fn array_len(frame: &[u8], name: &str) -> Option<u64> {
    let mut cursor = Cursor { buf: frame, at: 0 };
    for _ in 0..entries(&mut cursor)? {
        if cursor.str()? == name {
            return match cursor.byte()? {
                b @ 0x90..=0x9f => Some(u64::from(b & 0x0f)),
                0xdc => cursor.uint(2),
                0xdd => cursor.uint(4),
                _ => None,
            };
        }
        cursor.skip()?;
    }
    None
}

/// The byte range of the value of the top-level key `name`, if the frame
/// is a map that has it before anything unreadable.
pub fn field_span(frame: &[u8], name: &str) -> Option<std::ops::Range<usize>> {
    let mut cursor = Cursor { buf: frame, at: 0 };
    for _ in 0..entries(&mut cursor)? {
        let found = cursor.str()? == name;
        let start = cursor.at;
        cursor.skip()?;
        if found {
            return Some(start..cursor.at);
        }
    }
    None
}

/// The byte range of a custom operation's `body` in its frame (`None` when
/// absent), after checking that the top-level map holds only
/// `correlation_id`, `op` and `body`, each once, and is the whole frame.
///
/// # Errors
///
/// Why the map is not a well-formed custom request.
pub fn custom_body(frame: &[u8]) -> Result<Option<std::ops::Range<usize>>, String> {
    let mut cursor = Cursor { buf: frame, at: 0 };
    let count = entries(&mut cursor).ok_or("a request must be a MessagePack map")?;
    let mut body = None;
    let mut seen = [false; 3];
    for _ in 0..count {
        let key = cursor.str().ok_or("a request's keys must be MessagePack str")?;
        let slot = match key {
            "correlation_id" => 0,
            "op" => 1,
            "body" => 2,
            other => return Err(format!("unknown field `{other}`: a custom operation's fields go in `body`")),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(format!("duplicate field `{key}`"));
        }
        let start = cursor.at;
        cursor.skip().ok_or("invalid MessagePack")?;
        if slot == 2 {
            body = Some(start..cursor.at);
        }
    }
    if cursor.at != frame.len() {
        return Err("trailing bytes after the request map".into());
    }
    Ok(body)
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
                batch: None,
            },
        })
        .unwrap();
        assert_eq!(head(&frame), Head { correlation_id: Some(70_000), op: Op::Str("produce") });
        assert_eq!(int_field(&frame, "acks"), Some(1));
        assert_eq!(array_len(&frame, "records"), Some(1));
        assert_eq!(array_len(&frame, "topic"), None, "not an array");
        assert_eq!(int_field(&frame, "partition"), None, "nil is not an integer");
        assert_eq!(int_field(&frame, "timeout"), None);
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
        assert_eq!(head(&frame), Head { correlation_id: Some(9), op: Op::Str("fetch") });
        assert_eq!(int_field(&frame, "neg"), Some(-5));
        assert_eq!(int_field(&frame, "big"), Some(i128::from(u64::MAX)));
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
        assert_eq!(head(&fetch).correlation_id, Some(1));
    }

    fn encode(fields: Vec<(&str, rmpv::Value)>) -> Vec<u8> {
        let value = rmpv::Value::Map(fields.into_iter().map(|(k, v)| (k.into(), v)).collect());
        let mut frame = Vec::new();
        rmpv::encode::write_value(&mut frame, &value).unwrap();
        frame
    }

    #[test]
    fn anything_odd_ends_the_scan_with_what_it_read_so_far() {
        let frame = encode(vec![("correlation_id", 1.into()), ("op", "fetch".into())]);
        for cut in 0..frame.len() {
            let found = head(&frame[..cut]);
            assert_ne!(found.op, Op::Str("fetch"), "cut at {cut}");
            // The id is 1 byte after its 15-byte key and the 1-byte map header.
            assert_eq!(found.correlation_id.is_some(), cut >= 17, "cut at {cut}");
        }
        for bad in [
            &[0x81, 0xc1][..],
            &[0x90],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0x81, 0xa1, b'x', 0xdd, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(head(bad), Head::default());
        }
        let negative = encode(vec![("correlation_id", (-1).into()), ("op", "fetch".into())]);
        assert_eq!(head(&negative).correlation_id, None);
        let too_big = encode(vec![("correlation_id", (1u64 << 32).into()), ("op", "fetch".into())]);
        assert_eq!(head(&too_big).correlation_id, None);
    }

    #[test]
    fn an_op_that_is_not_a_str_is_told_apart_from_a_missing_one() {
        let id = || ("correlation_id", rmpv::Value::from(4));
        for op in [7.into(), rmpv::Value::Binary(b"fetch".to_vec()), rmpv::Value::Nil, rmpv::Value::Array(vec![])] {
            assert_eq!(head(&encode(vec![("op", op.clone()), id()])), Head { correlation_id: Some(4), op: Op::NotStr });
            assert_eq!(head(&encode(vec![id(), ("op", op)])), Head { correlation_id: Some(4), op: Op::NotStr });
        }
        assert_eq!(head(&encode(vec![id()])), Head { correlation_id: Some(4), op: Op::Missing });
        // Not UTF-8.
        let mut frame = encode(vec![id(), ("op", "ab".into())]);
        let last = frame.len() - 1;
        frame[last] = 0xff;
        assert_eq!(head(&frame), Head { correlation_id: Some(4), op: Op::NotStr });
    }
}
