"""Herald's record batch format (protocol.md, "Record batch format").

A fetch response carries whole batches as stored in the broker's log; each
is checked against its CRC-32C and its structure before its records are
returned. Decoding never trusts a length field: every read is bounds-checked
and an overrun is CORRUPT_MESSAGE.

A batch may be compressed (protocol.md, "Compression"): attribute bits 1-2
name the codec, ``lz4`` (an LZ4 frame) or ``zstd`` (a zstd frame), of its
records section. Decoding decompresses it, reading the output as it comes and
never past ``MAX_DECOMPRESSED_BYTES``: a frame that expands further is
CORRUPT_MESSAGE, whatever its header claims.
"""

import struct
from collections.abc import Mapping
from typing import Any, List, Optional, Sequence, Tuple

import lz4.frame
import zstandard

from .errors import CORRUPT_MESSAGE, HeraldError
from .records import Record


def _crc32c_table() -> Tuple[int, ...]:
    """Builds the byte-at-a-time table for the reflected Castagnoli polynomial."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """Returns the CRC-32C (Castagnoli) of ``data`` as an unsigned 32-bit int.

    This is the checksum of every record batch (protocol.md, "Record batch
    format"). Table-driven, one byte per step: pure Python, so it is slow on
    large fetches, but it needs no compiled extension.
    """
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF



_BATCH_PREFIX = struct.Struct(">qi")  # base_offset, batch_length
_BATCH_HEADER = struct.Struct(">qiIBBHiqqi")
# Magic 2: the same, then producer_id, producer_epoch, base_sequence.
_PRODUCER_FIELDS = struct.Struct(">qhi")
# The header's length by magic: records start there.
_HEADER_BYTES = {1: _BATCH_HEADER.size, 2: _BATCH_HEADER.size + _PRODUCER_FIELDS.size}
_RECORD_PREFIX = struct.Struct(">iiq")  # record_length, offset_delta, timestamp_delta
_I32 = struct.Struct(">i")
_U16 = struct.Struct(">H")
_BATCH_MAGIC = 1
_LOG_APPEND_TIME = 0x01  # attributes bit 0
_CODEC_SHIFT = 1  # attributes bits 1-2: the codec
CODECS = {"none": 0, "lz4": 1, "zstd": 2}
# The most bytes the records section of one batch may decompress to (64 MiB).
MAX_DECOMPRESSED_BYTES = 64 << 20
_ZSTD_LEVEL = 3


class _Cursor:
    """Reads big-endian fields from ``buf`` front to back.

    Every read is bounds-checked, so a length field that lies can never read
    past the record or batch being decoded; an overrun is CORRUPT_MESSAGE.
    """

    def __init__(self, buf: bytes, pos: int = 0):
        self.buf = buf
        self.pos = pos

    def at_end(self) -> bool:
        return self.pos == len(self.buf)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise HeraldError(CORRUPT_MESSAGE, f"a field of {n} bytes overruns its record or batch")
        data = self.buf[self.pos:self.pos + n]
        self.pos += n
        return data

    def unpack(self, fmt: struct.Struct) -> Tuple[Any, ...]:
        return fmt.unpack(self.take(fmt.size))

    def nullable_bytes(self) -> Optional[bytes]:
        """Reads an i32 length and that many bytes; length -1 means None."""
        (length,) = self.unpack(_I32)
        return None if length == -1 else self.take(length)


def encode_batch(records: Sequence[Mapping[str, Any]], now_ms: int, compression: str = "none",
                 producer: Optional[Tuple[int, int, int]] = None) -> bytes:
    """Encodes request record maps (as ``produce`` builds them) as one record
    batch for the batch form of ``produce`` (protocol.md, "The batch form"):
    base offset 0 (the broker sets it), offset deltas 0, 1, 2, ..., every
    record stamped (``now_ms`` for one without a timestamp), the CRC last.
    ``compression`` ("none", "lz4" or "zstd") compresses the records section.
    ``producer``, an idempotent producer's ``(producer_id, producer_epoch,
    base_sequence)``, makes it a magic 2 batch carrying them (protocol.md,
    "Idempotent producers").

    Raises:
        ValueError: an unknown ``compression``, or records of more than
            ``MAX_DECOMPRESSED_BYTES`` to compress.
    """
    if compression not in CODECS:
        raise ValueError(f"unknown compression {compression!r}: none, lz4 or zstd")
    stamps = [int(r.get("timestamp", now_ms)) for r in records]
    base_timestamp, max_timestamp = min(stamps), max(stamps)
    body = bytearray()
    for delta, (record, stamp) in enumerate(zip(records, stamps)):
        fields = bytearray()
        for data in (record.get("key"), record.get("value")):
            if data is None:
                fields += _I32.pack(-1)
            else:
                fields += _I32.pack(len(data)) + data
        headers = record.get("headers") or []
        fields += _I32.pack(len(headers))
        for name, value in headers:
            encoded_name = name.encode("utf-8")
            fields += _U16.pack(len(encoded_name)) + encoded_name + _I32.pack(len(value)) + value
        # record_length counts offset_delta and timestamp_delta (12 bytes) too.
        body += _RECORD_PREFIX.pack(len(fields) + 12, delta, stamp - base_timestamp) + fields
    codec = CODECS[compression]
    if codec:
        if len(body) > MAX_DECOMPRESSED_BYTES:
            raise ValueError(f"{len(body)} bytes of records; a compressed batch holds at most "
                             f"{MAX_DECOMPRESSED_BYTES}")
        body = bytearray(_compress(codec, bytes(body)))
    magic = _BATCH_MAGIC if producer is None else 2
    header = _BATCH_HEADER.pack(0, _HEADER_BYTES[magic] - 12 + len(body), 0, magic,
                                codec << _CODEC_SHIFT, 0, len(records) - 1, base_timestamp, max_timestamp,
                                len(records))
    if producer is not None:
        header += _PRODUCER_FIELDS.pack(*producer)
    batch = bytearray(header) + body
    struct.pack_into(">I", batch, 12, crc32c(bytes(batch[16:])))
    return bytes(batch)


def _compress(codec: int, records: bytes) -> bytes:
    if codec == CODECS["lz4"]:
        # Independent blocks, as the Rust client writes: they decode faster.
        compressed: bytes = lz4.frame.compress(records, block_linked=False)
        return compressed
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(records)


def decompress(codec: int, data: bytes) -> bytes:
    """The records section that ``data``, one frame of ``codec`` (1 lz4, 2
    zstd), holds; read in steps, never past ``MAX_DECOMPRESSED_BYTES``.

    Raises:
        HeraldError: CORRUPT_MESSAGE for a damaged frame or one that expands
            past the cap.
    """
    limit = MAX_DECOMPRESSED_BYTES + 1
    try:
        if codec == CODECS["lz4"]:
            decompressor = lz4.frame.LZ4FrameDecompressor()
            out: bytes = decompressor.decompress(data, max_length=limit)
            if len(out) < limit and not decompressor.eof:
                raise HeraldError(CORRUPT_MESSAGE, "the lz4 frame of a batch is truncated")
        else:
            reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=False)
            chunks: List[bytes] = []
            size = 0
            while size < limit:
                chunk = reader.read(min(1 << 20, limit - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            out = b"".join(chunks)
    except (RuntimeError, zstandard.ZstdError) as exc:
        raise HeraldError(CORRUPT_MESSAGE, f"the compressed records of a batch are damaged: {exc}") from exc
    if len(out) > MAX_DECOMPRESSED_BYTES:
        raise HeraldError(CORRUPT_MESSAGE, f"a batch's records decompress to more than {MAX_DECOMPRESSED_BYTES} "
                                           "bytes, the most a batch may hold")
    return out


def decode_batches(data: bytes, min_offset: int = 0) -> List[Record]:
    """Decodes the concatenated record batches of a fetch response.

    Records with an offset below ``min_offset`` are dropped (a fetch returns the
    batch *containing* the requested offset). A trailing partial batch is
    ignored; fetch again after the last returned record to get it.

    Decoding stops at the first batch that fails its CRC or structure check:
    the records of the whole batches before it are returned, so a consumer
    still makes progress, and the next fetch, which then starts at the bad
    batch, raises.

    Raises:
        HeraldError: CORRUPT_MESSAGE when the first batch that would contribute
            records is corrupt.
    """
    records: List[Record] = []
    pos = 0
    while len(data) - pos >= _BATCH_PREFIX.size:
        _base_offset, batch_length = _BATCH_PREFIX.unpack_from(data, pos)
        end = pos + _BATCH_PREFIX.size + batch_length
        if end > len(data):
            break  # a trailing partial batch
        try:
            batch = _decode_batch(data[pos:end])
        except HeraldError:
            if records:
                break
            raise
        records.extend(record for record in batch if record.offset >= min_offset)
        pos = end
    return records


def _decode_batch(batch: bytes) -> List[Record]:
    """Decodes one whole batch, verifying its CRC and structure."""
    if len(batch) < _BATCH_HEADER.size:
        raise HeraldError(CORRUPT_MESSAGE, f"batch of {len(batch)} bytes is shorter than its header")
    (base_offset, _length, crc, magic, attributes, _reserved, _last_offset_delta,
     base_timestamp, max_timestamp, record_count) = _BATCH_HEADER.unpack_from(batch)
    if crc32c(batch[16:]) != crc:
        raise HeraldError(CORRUPT_MESSAGE, f"batch at offset {base_offset} fails its CRC-32C")
    if magic not in _HEADER_BYTES:
        raise HeraldError(CORRUPT_MESSAGE, f"batch at offset {base_offset} has magic {magic}")
    header_bytes = _HEADER_BYTES[magic]
    if len(batch) < header_bytes:
        raise HeraldError(CORRUPT_MESSAGE, f"batch of {len(batch)} bytes is shorter than its header")
    log_append_time = bool(attributes & _LOG_APPEND_TIME)
    codec = (attributes >> _CODEC_SHIFT) & 0x03
    if codec == 3:
        raise HeraldError(CORRUPT_MESSAGE, f"batch at offset {base_offset} has unknown codec 3")
    records: List[Record] = []
    if codec:
        cursor = _Cursor(decompress(codec, batch[header_bytes:]))
    else:
        cursor = _Cursor(batch, header_bytes)
    for _ in range(record_count):
        record_length, offset_delta, timestamp_delta = cursor.unpack(_RECORD_PREFIX)
        # record_length counts offset_delta and timestamp_delta (12 bytes) too.
        record = _Cursor(cursor.take(record_length - 12))
        key = record.nullable_bytes()
        value = record.nullable_bytes()
        (header_count,) = record.unpack(_I32)
        headers = []
        for _ in range(header_count):
            (key_length,) = record.unpack(_U16)
            try:
                header_key = record.take(key_length).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HeraldError(CORRUPT_MESSAGE, "header key is not UTF-8") from exc
            headers.append((header_key, record.nullable_bytes()))
        if not record.at_end():
            raise HeraldError(CORRUPT_MESSAGE, "record_length disagrees with the record's fields")
        timestamp = max_timestamp if log_append_time else base_timestamp + timestamp_delta
        if offset_delta != len(records):
            raise HeraldError(CORRUPT_MESSAGE, "offset deltas are not 0, 1, 2, ...")
        records.append(Record(base_offset + offset_delta, timestamp, key, value, headers))
    if not cursor.at_end():
        raise HeraldError(CORRUPT_MESSAGE, "batch_length disagrees with its records")
    return records

