//! Compressed batches: attribute bits 1–2 name the codec of the records
//! section (docs/protocol.md, "Record batch format"). With a codec, the bytes
//! after the header (see `header_bytes`) are one LZ4 frame or one zstd frame holding the
//! records exactly as an uncompressed batch has them; the header (counts,
//! timestamps) is the same as the uncompressed batch's, and the CRC covers the
//! bytes as stored, compressed.
//!
//! Decompression is capped at [`MAX_DECOMPRESSED_BYTES`]: the output is read
//! in steps, never allocated from what a frame claims, and a frame that
//! expands past the cap is refused ([`BatchError::TooLarge`]).

use std::io::{Read, Write};

use bytes::{BufMut, BytesMut};

use super::BatchError;

/// Attribute bits 1–2: the codec of the records section.
pub const ATTR_CODEC_MASK: u8 = 0x06;
/// The attribute bits a batch may have set: the timestamp type and the codec.
pub const ATTR_KNOWN: u8 = 0x01 | ATTR_CODEC_MASK;

/// The most bytes the records section of one compressed batch may expand to
/// (64 MiB). An encoder refuses records larger than this; a decoder stops and
/// refuses a frame that expands past it.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// How the records section of a batch is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Compression {
    /// As is (codec 0).
    #[default]
    None,
    /// One LZ4 frame (codec 1).
    Lz4,
    /// One zstd frame (codec 2).
    Zstd,
}

impl Compression {
    /// The codec named in `attributes`.
    ///
    /// # Errors
    ///
    /// [`BatchError::UnknownCodec`] for codec 3.
    pub fn from_attributes(attributes: u8) -> Result<Compression, BatchError> {
        match (attributes & ATTR_CODEC_MASK) >> 1 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::Zstd),
            codec => Err(BatchError::UnknownCodec(codec)),
        }
    }

    /// This codec's attribute bits.
    pub fn attribute_bits(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1 << 1,
            Compression::Zstd => 2 << 1,
        }
    }

    /// The codec's name as the handshake and the command line spell it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression {other:?}: none, lz4 or zstd")),
        }
    }
}

/// The zstd level producers use: zstd's default.
const ZSTD_LEVEL: i32 = 3;

/// Appends `records` compressed with `codec` (not [`Compression::None`]) to `buf`.
pub(crate) fn compress_into(codec: Compression, records: &[u8], buf: &mut BytesMut) -> Result<(), BatchError> {
    let failed = |_| BatchError::Malformed("the compressor failed");
    let mut writer = buf.writer();
    match codec {
        Compression::None => writer.write_all(records).map_err(failed),
        Compression::Lz4 => {
            // Independent blocks: lz4_flex decodes linked ones about ten times
            // slower (docs/benchmarks.md, "Compression"), for 5% fewer bytes.
            let mut info = lz4_flex::frame::FrameInfo::new();
            info.block_mode = lz4_flex::frame::BlockMode::Independent;
            info.block_size = lz4_flex::frame::BlockSize::Max64KB;
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, writer);
            encoder.write_all(records).map_err(failed)?;
            encoder.finish().map(drop).map_err(|_| BatchError::Malformed("the compressor failed"))
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(writer, ZSTD_LEVEL).map_err(failed)?;
            encoder.write_all(records).map_err(failed)?;
            encoder.finish().map(drop).map_err(failed)
        }
    }
}

/// The records section that `compressed` (one frame of `codec`) holds.
///
/// # Errors
///
/// [`BatchError::TooLarge`] when it expands past [`MAX_DECOMPRESSED_BYTES`];
/// [`BatchError::Malformed`] when it is not one whole frame of `codec`.
pub fn decompress(codec: Compression, compressed: &[u8]) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => Ok(compressed.to_vec()),
        Compression::Lz4 => read_capped(lz4_flex::frame::FrameDecoder::new(compressed)),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(compressed)
                .map_err(|_| BatchError::Malformed("the zstd frame is damaged"))?
                .single_frame();
            let out = read_capped(&mut decoder)?;
            if !decoder.finish().is_empty() {
                return Err(BatchError::Malformed("bytes after the zstd frame"));
            }
            Ok(out)
        }
    }
}

/// Reads `decoder` to its end, growing the output as bytes come and never
/// past the cap.
fn read_capped(decoder: impl Read) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let mut capped = decoder.take(MAX_DECOMPRESSED_BYTES as u64 + 1);
    capped.read_to_end(&mut out).map_err(|_| BatchError::Malformed("the compressed records are damaged"))?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(BatchError::TooLarge { limit: MAX_DECOMPRESSED_BYTES });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "batch_codec_tests.rs"]
mod tests;
