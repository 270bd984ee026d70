//! Reading a broker's responses: the correlation id and a success are read
//! from a frame's first bytes (as the broker writes them) without a
//! MessagePack decode; anything else is decoded in full.

use serde::de::DeserializeOwned;

use herald_wire::error::DamagedRange;
use herald_wire::protocol::{ProducePartitionResponse, ResponseHeader};

use crate::ClientError;

/// The correlation id of a response `frame`: read straight from its start
/// when it is the map's first key (as the broker writes it), decoded
/// otherwise; `None` for a frame that is not a response.
pub(crate) fn correlation_id_of(frame: &[u8]) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct Id {
        correlation_id: u32,
    }
    match leading_correlation_id(frame) {
        Some((id, _)) => Some(id),
        None => rmp_serde::from_slice::<Id>(frame).ok().map(|id| id.correlation_id),
    }
}

/// The correlation id of a response whose map starts with it, and the bytes
/// after it.
fn leading_correlation_id(frame: &[u8]) -> Option<(u32, &[u8])> {
    let key_at = match frame.first()? {
        0x80..=0x8f => 1,
        0xde => 3,
        0xdf => 5,
        _ => return None,
    };
    match *frame.get(key_at..)?.strip_prefix(b"\xaecorrelation_id")? {
        [n @ 0x00..=0x7f, ref rest @ ..] => Some((u32::from(n), rest)),
        [0xcc, n, ref rest @ ..] => Some((u32::from(n), rest)),
        [0xcd, a, b, ref rest @ ..] => Some((u32::from(u16::from_be_bytes([a, b])), rest)),
        [0xce, a, b, c, d, ref rest @ ..] => Some((u32::from_be_bytes([a, b, c, d]), rest)),
        _ => None,
    }
}

/// Whether a response says at a glance that it carries no error: its map
/// starts with its correlation id, then `error_code` 0 (as the broker writes
/// a success). `false` means "look closer", not "an error".
fn plainly_ok(frame: &[u8]) -> bool {
    leading_correlation_id(frame).is_some_and(|(_, rest)| rest.starts_with(b"\xaaerror_code\x00"))
}

pub(crate) fn decode_response<Resp: DeserializeOwned>(frame: &[u8]) -> Result<Resp, ClientError> {
    check_response(frame)?;
    rmp_serde::from_slice(frame).map_err(|e| ClientError::Protocol(format!("malformed response: {e}")))
}

/// The broker's error, when the response `frame` carries one.
pub(crate) fn check_response(frame: &[u8]) -> Result<(), ClientError> {
    if plainly_ok(frame) {
        return Ok(());
    }
    let header: ResponseHeader = rmp_serde::from_slice(frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if header.error_code != 0 {
        let damaged = match (header.first_damaged_offset, header.next_valid_offset) {
            (Some(first_offset), Some(next_offset)) => Some(DamagedRange { first_offset, next_offset }),
            _ => None,
        };
        let error = ClientError::broker(header.error_code, header.error_message);
        return Err(match error {
            ClientError::Broker { code, name, message, .. } => ClientError::Broker { code, name, message, damaged },
            other => other,
        });
    }
    Ok(())
}

/// The partitions of a successful produce response, read without serde (its
/// keys compared as bytes, not decoded and checked as UTF-8 strings); `None`
/// for anything else, an error or a layout this reader does not expect,
/// which is then decoded in full.
pub(crate) fn produce_partitions(frame: &[u8]) -> Option<Vec<ProducePartitionResponse>> {
    let mut at = Cursor(frame);
    let mut partitions = None;
    for _ in 0..at.map_len()? {
        match at.str()? {
            b"correlation_id" => drop(at.int()?),
            b"error_code" if at.int()? == 0 => {}
            b"error_message" if at.nil() => {}
            b"partitions" => {
                let count = at.array_len()?;
                let mut list = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    list.push(at.produce_partition()?);
                }
                partitions = Some(list);
            }
            _ => return None,
        }
    }
    at.0.is_empty().then_some(partitions)?
}

/// A reader of the few MessagePack forms a produce response is made of.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x80..=0x8f => Some(usize::from(m & 0x0f)),
            0xde => Some(self.be(2)? as usize),
            0xdf => Some(self.be(4)? as usize),
            _ => None,
        }
    }

    fn array_len(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x90..=0x9f => Some(usize::from(m & 0x0f)),
            0xdc => Some(self.be(2)? as usize),
            0xdd => Some(self.be(4)? as usize),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => return None,
        };
        self.take(len)
    }

    fn int(&mut self) -> Option<i64> {
        match self.byte()? {
            n @ 0x00..=0x7f => Some(i64::from(n)),
            n @ 0xe0..=0xff => Some(i64::from(n as i8)),
            0xcc => Some(self.be(1)? as i64),
            0xcd => Some(self.be(2)? as i64),
            0xce => Some(self.be(4)? as i64),
            0xcf => i64::try_from(self.be(8)?).ok(),
            0xd0 => Some(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => Some(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => Some(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => Some(self.be(8)? as i64),
            _ => None,
        }
    }

    fn nil(&mut self) -> bool {
        if self.0.first() == Some(&0xc0) {
            self.0 = &self.0[1..];
            return true;
        }
        false
    }

    fn produce_partition(&mut self) -> Option<ProducePartitionResponse> {
        let (mut partition, mut base_offset, mut record_count, mut error_code) = (None, None, None, None);
        let mut error_message = None;
        for _ in 0..self.map_len()? {
            match self.str()? {
                b"partition" => partition = Some(u32::try_from(self.int()?).ok()?),
                b"base_offset" => base_offset = Some(self.int()?),
                b"record_count" => record_count = Some(u32::try_from(self.int()?).ok()?),
                b"error_code" => error_code = Some(i16::try_from(self.int()?).ok()?),
                b"error_message" if self.nil() => {}
                b"error_message" => error_message = Some(String::from_utf8(self.str()?.to_vec()).ok()?),
                _ => return None,
            }
        }
        Some(ProducePartitionResponse {
            partition: partition?,
            base_offset: base_offset?,
            record_count: record_count?,
            error_code: error_code?,
            error_message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_wire::error::ErrorCode;
    use herald_wire::protocol::{encode_error, encode_ok, Empty, ProduceResponse};

    #[test]
    fn a_produce_response_reads_as_serde_reads_it() {
        let partition =
            |partition, base_offset, record_count, error_code, message: Option<&str>| ProducePartitionResponse {
                partition,
                base_offset,
                record_count,
                error_code,
                error_message: message.map(str::to_string),
            };
        let cases = vec![
            vec![partition(0, 0, 1, 0, None)],
            vec![partition(u32::MAX, i64::MAX, u32::MAX, 0, None), partition(7, -1, 0, -32_768, Some("é"))],
            vec![partition(300, 70_000, 65_536, 3, Some(&"x".repeat(300)))],
            (0..20).map(|n| partition(n, i64::from(n) << 33, n, 0, None)).collect(),
            Vec::new(),
        ];
        for partitions in cases {
            let frame = encode_ok(u32::MAX, &ProduceResponse { partitions });
            let by_serde: ProduceResponse = decode_response(&frame).unwrap();
            let fast = produce_partitions(&frame).expect("read without serde");
            assert_eq!(format!("{fast:?}"), format!("{:?}", by_serde.partitions));
        }
        // An error, or a layout it does not know, is left to serde.
        assert!(produce_partitions(&encode_error(1, ErrorCode::CORRUPT_MESSAGE, "m", None)).is_none());
        assert!(produce_partitions(&encode_ok(1, &Empty {})).is_none(), "no partitions: not a produce response");
        let mut cut = encode_ok(1, &ProduceResponse { partitions: vec![partition(0, 5, 1, 0, None)] }).to_vec();
        cut.pop();
        assert!(produce_partitions(&cut).is_none());
        cut.extend_from_slice(&[0xc0, 0xc0]);
        assert!(produce_partitions(&cut).is_none());
    }

    #[test]
    fn the_correlation_id_is_read_from_any_response() {
        for id in [0, 1, 127, 128, 255, 256, 65_535, 65_536, u32::MAX] {
            let header = ResponseHeader {
                correlation_id: id,
                error_code: 3,
                error_message: Some("m".into()),
                first_damaged_offset: None,
                next_valid_offset: None,
                throttle_time_ms: None,
            };
            let frame = rmp_serde::to_vec_named(&header).unwrap();
            assert_eq!(correlation_id_of(&frame), Some(id), "first key");
            // Elsewhere in the map, or in a map of more than 15 keys.
            let mut moved = std::collections::BTreeMap::new();
            moved.insert("a_first".to_string(), 1);
            for n in 0..16 {
                moved.insert(format!("k{n}"), n);
            }
            moved.insert("correlation_id".to_string(), id);
            let frame = rmp_serde::to_vec_named(&moved).unwrap();
            assert_eq!(correlation_id_of(&frame), Some(id), "a later key");
        }
        assert_eq!(correlation_id_of(&[0x92, 1, 2]), None);
        assert!(plainly_ok(&encode_ok(7, &Empty {})));
        assert!(!plainly_ok(&encode_error(7, ErrorCode::CORRUPT_MESSAGE, "", None)));
        assert!(check_response(&encode_error(7, ErrorCode::CORRUPT_MESSAGE, "bad", None)).is_err());
        assert_eq!(correlation_id_of(&[]), None);
    }
}
