//! Length-prefixed framing: a 4-byte big-endian length, then that many bytes.
//!
//! The decoder treats every length as hostile: a length above the configured
//! maximum is an error before a single byte of the frame is buffered, so a
//! client cannot make the broker allocate what it claims, and a length within
//! it reserves nothing either: the buffer grows only as the frame's bytes
//! arrive, so a frame announced and never sent costs nothing. It also recognises a
//! Kafka client that dialled the wrong port: a Kafka request's first payload
//! byte is the high byte of its API key (always 0), which no MessagePack map
//! starts with.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes of the length prefix.
pub const LENGTH_BYTES: usize = 4;

/// What the decoder found on the wire.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// One complete frame's payload.
    Frame(BytesMut),
    /// The first frame looks like a Kafka request, not a Herald one.
    KafkaRequest,
}

/// A framing error: the connection cannot continue after it.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {length} bytes exceeds max_frame_bytes {max}")]
    TooLarge { length: usize, max: usize },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The codec both the broker and the Rust client use.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_bytes: usize,
    /// Whether no frame was decoded yet (Kafka detection applies to the first).
    first: bool,
}

impl FrameCodec {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameCodec { max_frame_bytes, first: true }
    }
}

impl Decoder for FrameCodec {
    type Item = Inbound;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, FrameError> {
        if src.len() < LENGTH_BYTES {
            return Ok(None);
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if self.first && length > 0 && src.len() > LENGTH_BYTES && src[LENGTH_BYTES] == 0 {
            return Ok(Some(Inbound::KafkaRequest));
        }
        if length > self.max_frame_bytes {
            return Err(FrameError::TooLarge { length, max: self.max_frame_bytes });
        }
        if src.len() < LENGTH_BYTES + length {
            return Ok(None);
        }
        src.advance(LENGTH_BYTES);
        self.first = false;
        Ok(Some(Inbound::Frame(src.split_to(length))))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        if payload.len() > self.max_frame_bytes {
            return Err(FrameError::TooLarge { length: payload.len(), max: self.max_frame_bytes });
        }
        dst.reserve(LENGTH_BYTES + payload.len());
        dst.put_u32(payload.len() as u32);
        dst.put_slice(&payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(payload.len() as u32);
        b.put_slice(payload);
        b
    }

    #[test]
    fn a_partial_frame_is_none_not_an_error() {
        let mut codec = FrameCodec::new(1024);
        let full = frame(&[0x81, 0xa1, b'a', 1]);
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert!(codec.clone().decode(&mut part).unwrap().is_none());
        }
        let mut all = full.clone();
        assert_eq!(codec.decode(&mut all).unwrap(), Some(Inbound::Frame(BytesMut::from(&[0x81, 0xa1, b'a', 1][..]))));
        assert!(all.is_empty());
    }

    #[test]
    fn an_oversize_length_is_refused_before_buffering() {
        let mut codec = FrameCodec::new(16);
        let mut src = BytesMut::new();
        src.put_u32(u32::MAX);
        src.put_u8(0x80);
        let err = codec.decode(&mut src).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { length, max: 16 } if length == u32::MAX as usize));
        assert!(src.capacity() < 1024);
    }

    #[test]
    fn an_announced_length_reserves_nothing() {
        let mut codec = FrameCodec::new(16 << 20);
        let mut src = BytesMut::with_capacity(64);
        src.put_u32((16 << 20) - 1);
        src.put_u8(0x80);
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert!(src.capacity() < 1024, "reserved {} bytes for a frame not sent", src.capacity());
    }

    #[test]
    fn a_kafka_request_is_recognised_on_the_first_frame() {
        let mut codec = FrameCodec::new(1024);
        // Kafka ApiVersions v3: length, api_key 18, api_version 3, correlation id ...
        let mut src = frame(&[0, 18, 0, 3, 0, 0, 0, 1]);
        assert_eq!(codec.decode(&mut src).unwrap(), Some(Inbound::KafkaRequest));
    }

    #[test]
    fn frames_decode_back_to_back() {
        let mut codec = FrameCodec::new(1024);
        let mut src = frame(&[0x80]);
        src.extend_from_slice(&frame(&[0x81, 0xa1, b'x', 2]));
        assert!(matches!(codec.decode(&mut src).unwrap(), Some(Inbound::Frame(f)) if f.len() == 1));
        assert!(matches!(codec.decode(&mut src).unwrap(), Some(Inbound::Frame(f)) if f.len() == 4));
        assert!(codec.decode(&mut src).unwrap().is_none());
    }
}
