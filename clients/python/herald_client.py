"""Python client for Herald, a Kafka-style message broker.

Speaks Herald wire protocol version 1 exactly as ``docs/protocol.md`` specifies
it: length-prefixed MessagePack frames over one TCP connection, a handshake as
the first request, and record batches in Herald's binary format.

Map of this module:

- ``ERROR_CODES`` and ``HeraldError``: the broker's stable error codes, with
  their names and whether a retry may succeed.
- ``crc32c``, ``murmur2``, ``partition_for_key``: pure Python checksums and
  hashing that must agree bit for bit with the broker (batch CRCs, Kafka's
  default partitioner).
- ``Record``, ``FetchResult``, ``decode_batches``: the record batch format.
- ``Client``: one synchronous connection to a broker with a method per
  operation.

Depends only on the ``msgpack`` package and the standard library.
"""

import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import msgpack

__all__ = [
    "ERROR_CODES",
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "PROTOCOL_VERSION",
    "Client",
    "FetchResult",
    "HeraldError",
    "Record",
    "crc32c",
    "decode_batches",
    "murmur2",
    "partition_for_key",
]

PROTOCOL_VERSION = 1
"""The only protocol version this client speaks."""

EARLIEST_TIMESTAMP = -2
"""``list_offsets`` timestamp asking for the log start offset."""

LATEST_TIMESTAMP = -1
"""``list_offsets`` timestamp asking for the high watermark."""

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

ERROR_CODES: Dict[int, Tuple[str, bool, str]] = {
    -1: ("UNKNOWN_SERVER_ERROR", False,
        "An unexpected error on the broker; its log has the details."),
    0: ("NONE", False,
        "No error."),
    1: ("OFFSET_OUT_OF_RANGE", False,
        "The requested offset is below the log start offset or above the log end offset."),
    2: ("CORRUPT_MESSAGE", True,
        "A record batch failed its checksum or structure check."),
    3: ("UNKNOWN_TOPIC_OR_PARTITION", True,
        "The topic or partition does not exist."),
    5: ("LEADER_NOT_AVAILABLE", True,
        "The partition's actor is restarting or gone; try again."),
    7: ("REQUEST_TIMED_OUT", True,
        "The request did not complete in time."),
    10: ("MESSAGE_TOO_LARGE", False,
        "A record batch is larger than the topic's max_message_bytes."),
    12: ("OFFSET_METADATA_TOO_LARGE", False,
        "The metadata of a committed offset is over 4096 bytes."),
    15: ("COORDINATOR_NOT_AVAILABLE", True,
        "The group's coordinator is restarting or not loaded yet; try again."),
    17: ("INVALID_TOPIC_EXCEPTION", False,
        "The topic name is not valid: 1-249 characters of [a-zA-Z0-9._-], not '.' or '..'."),
    21: ("INVALID_REQUIRED_ACKS", False,
        "acks must be 0, 1 or -1 (all)."),
    22: ("ILLEGAL_GENERATION", False,
        "The generation id is not the member's current one: the member was fenced by a newer generation."),
    24: ("INVALID_GROUP_ID", False,
        "The group id is not valid: 1-255 bytes."),
    25: ("UNKNOWN_MEMBER_ID", False,
        "The member id is not a member of the group (it left, timed out, or never joined): join again."),
    26: ("INVALID_SESSION_TIMEOUT", False,
        "The session timeout is outside the broker's allowed range."),
    27: ("REBALANCE_IN_PROGRESS", True,
        "The member's assignment changed since the generation it named: heartbeat to get it, then retry."),
    32: ("INVALID_TIMESTAMP", False,
        "A timestamp is not valid."),
    35: ("UNSUPPORTED_VERSION", False,
        "The protocol version is not supported by this broker."),
    36: ("TOPIC_ALREADY_EXISTS", False,
        "A topic with this name already exists."),
    37: ("INVALID_PARTITIONS", False,
        "The partition count is not valid (at least 1, and only ever more)."),
    40: ("INVALID_CONFIG", False,
        "A topic configuration key or value is not valid."),
    42: ("INVALID_REQUEST", False,
        "The request is malformed: bad MessagePack, a missing field or a wrong type."),
    56: ("KAFKA_STORAGE_ERROR", True,
        "The broker could not read or write its disk; it stops accepting writes for that log."),
    68: ("NON_EMPTY_GROUP", False,
        "The group has active members; the operation needs an empty group."),
    69: ("GROUP_ID_NOT_FOUND", False,
        "The group does not exist."),
    82: ("FENCED_INSTANCE_ID", False,
        "Another member joined with this group_instance_id; this member id is fenced."),
    112: ("UNSUPPORTED_ASSIGNOR", False,
        "The assignor is not one of range, roundrobin, sticky."),
    1000: ("HANDSHAKE_REQUIRED", False,
        "The first request on a connection must be a handshake."),
    1001: ("UNKNOWN_OPERATION", False,
        "The request names an operation this broker does not know."),
    1002: ("FRAME_TOO_LARGE", False,
        "The frame is larger than the broker's max_frame_bytes; the connection is closed."),
    1003: ("BROKER_SHUTTING_DOWN", True,
        "The broker is shutting down and refuses new work."),
}
"""Every error code of protocol.md: ``code -> (name, retriable, meaning)``."""

CORRUPT_MESSAGE = 2
UNSUPPORTED_VERSION = 35
HANDSHAKE_REQUIRED = 1000
FRAME_TOO_LARGE = 1002


class HeraldError(Exception):
    """An error code from the broker, or one the client detected itself.

    Attributes:
        code: the numeric code from protocol.md's table (e.g. 3).
        name: its name (e.g. ``"UNKNOWN_TOPIC_OR_PARTITION"``), or
            ``"UNKNOWN_ERROR_CODE"`` for a code this client does not know
            (a newer broker may add codes).
        message: the broker's ``error_message``, or the table's meaning when the
            broker sent none.
        retriable: whether the same request may succeed later.
    """

    def __init__(self, code: int, message: Optional[str] = None):
        name, retriable, meaning = ERROR_CODES.get(
            code, ("UNKNOWN_ERROR_CODE", False, "An error code this client does not know.")
        )
        self.code = code
        self.name = name
        self.message = message or meaning
        self.retriable = retriable
        # The constructor's arguments, so that the error survives pickling.
        super().__init__(code, message)

    def __str__(self) -> str:
        return f"{self.name} ({self.code}): {self.message}"


# ---------------------------------------------------------------------------
# Checksums and hashing
# ---------------------------------------------------------------------------


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


def murmur2(data: bytes) -> int:
    """Returns Kafka's murmur2 hash of ``data`` as a signed 32-bit int.

    A transcription of ``org.apache.kafka.common.utils.Utils.murmur2`` (seed
    ``0x9747b28c``), which the broker uses to place keyed records; Python ints
    are masked to 32 bits where Java's ints wrap.
    """
    mask = 0xFFFFFFFF
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    whole = length & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    remaining = length & 3
    if remaining == 3:
        h ^= data[whole + 2] << 16
    if remaining >= 2:
        h ^= data[whole + 1] << 8
    if remaining >= 1:
        h ^= data[whole]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: Union[bytes, str], partitions: int) -> int:
    """Returns the partition the broker picks for a keyed record.

    Kafka's default partitioner: ``toPositive(murmur2(key)) % partitions``. A
    str key is hashed as its UTF-8 bytes, as ``Client.produce`` sends it.
    """
    return (murmur2(_to_bytes(key)) & 0x7FFFFFFF) % partitions


# ---------------------------------------------------------------------------
# Records and record batches
# ---------------------------------------------------------------------------


@dataclass
class Record:
    """One record as fetched from a partition.

    ``Client.produce`` also accepts instances (their ``offset`` is ignored:
    the broker assigns offsets).
    """

    offset: int
    timestamp: int
    """Milliseconds since the Unix epoch."""
    key: Optional[bytes]
    value: Optional[bytes]
    """None marks a tombstone."""
    headers: List[Tuple[str, Optional[bytes]]] = field(default_factory=list)


@dataclass
class FetchResult:
    """What one ``fetch`` returned."""

    high_watermark: int
    """The offset after the last record consumers may read."""
    log_start_offset: int
    """The first offset still stored."""
    records: List[Record]
    """Whole, checksum-verified records at or after the requested offset."""


_BATCH_PREFIX = struct.Struct(">qi")  # base_offset, batch_length
_BATCH_HEADER = struct.Struct(">qiIBBHiqqi")
_RECORD_PREFIX = struct.Struct(">iiq")  # record_length, offset_delta, timestamp_delta
_I32 = struct.Struct(">i")
_U16 = struct.Struct(">H")
_BATCH_MAGIC = 1
_LOG_APPEND_TIME = 0x01  # attributes bit 0


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
    if magic != _BATCH_MAGIC:
        raise HeraldError(CORRUPT_MESSAGE, f"batch at offset {base_offset} has magic {magic}")
    log_append_time = bool(attributes & _LOG_APPEND_TIME)
    records = []
    cursor = _Cursor(batch, _BATCH_HEADER.size)
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
        records.append(Record(base_offset + offset_delta, timestamp, key, value, headers))
    if not cursor.at_end():
        raise HeraldError(CORRUPT_MESSAGE, "batch_length disagrees with its records")
    return records


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------

_FRAME_LENGTH = struct.Struct(">I")
_ENVELOPE_FIELDS = ("correlation_id", "error_code", "error_message")
_CONNECTION_CLOSING_CODES = frozenset((UNSUPPORTED_VERSION, HANDSHAKE_REQUIRED, FRAME_TOO_LARGE))
_RECORD_FIELDS = frozenset(("key", "value", "headers", "timestamp"))

RecordLike = Union[Record, Mapping, Tuple[Any, Any], bytes, bytearray, memoryview, str, None]


class Client:
    """One synchronous connection to a Herald broker.

    The constructor connects and sends the handshake. Each method sends one
    request and waits for its response, so a Client must not be shared between
    threads; open one per thread.

    Errors: a non-zero ``error_code`` raises ``HeraldError``. A socket error or
    timeout raises ``OSError`` (``ConnectionError``, ``socket.timeout``) and
    closes the client, because the stream may be left mid-frame; so do the
    errors after which the broker closes the connection (HANDSHAKE_REQUIRED,
    UNSUPPORTED_VERSION, FRAME_TOO_LARGE).

    Attributes (from the handshake response):
        broker_version: the broker's version string, e.g. ``"0.1.0"``.
        max_frame_bytes: the largest request payload the broker accepts;
            larger requests are refused locally with FRAME_TOO_LARGE.
        max_in_flight: how many requests the broker reads ahead per
            connection (relevant only to pipelining clients; this one sends
            one request at a time).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9092,
                 client_id: str = "herald-python", timeout: float = 30.0):
        """Connects to ``host:port`` and performs the handshake.

        ``timeout`` (seconds) bounds connecting and each request; a fetch
        waits up to its ``max_wait_ms`` longer.

        Raises:
            HeraldError: UNSUPPORTED_VERSION if the broker will not speak
                version 1.
            OSError: if the broker cannot be reached.
        """
        self.host = host
        self.port = port
        self.client_id = client_id
        self.timeout = timeout
        self.max_frame_bytes: Optional[int] = None  # no limit known before the handshake
        self._next_correlation_id = 1
        self._sock: Optional[socket.socket] = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            response = self._call("handshake", {"client_id": client_id,
                                                "protocol_version": PROTOCOL_VERSION})
            if response["protocol_version"] != PROTOCOL_VERSION:
                raise HeraldError(UNSUPPORTED_VERSION,
                                  f"broker offers protocol version {response['protocol_version']}")
        except BaseException:
            self.close()
            raise
        self.broker_version: str = response["broker_version"]
        self.max_frame_bytes = response["max_frame_bytes"]
        self.max_in_flight: int = response["max_in_flight"]

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection; calling it again does nothing."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- administration ----------------------------------------------------

    def create_topic(self, topic: str, partitions: int,
                     config: Optional[Mapping] = None) -> None:
        """Creates ``topic`` with ``partitions`` partitions and optional settings.

        ``config`` maps setting names (``retention_ms``,
        ``message_timestamp_type``, ...) to str or int values.

        Raises:
            HeraldError: INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS,
                TOPIC_ALREADY_EXISTS or INVALID_CONFIG.
        """
        fields: Dict[str, Any] = {"topic": topic, "partitions": partitions}
        if config is not None:
            fields["config"] = dict(config)
        self._call("create_topic", fields)

    def delete_topic(self, topic: str) -> None:
        """Deletes ``topic`` and its data.

        Raises:
            HeraldError: UNKNOWN_TOPIC_OR_PARTITION.
        """
        self._call("delete_topic", {"topic": topic})

    def list_topics(self) -> List[Dict[str, Any]]:
        """Returns ``[{"topic": name, "partitions": count}, ...]`` sorted by name."""
        return self._call("list_topics", {})["topics"]

    def describe_topic(self, topic: str) -> Dict[str, Any]:
        """Returns ``{"topic", "config", "partitions"}`` for ``topic``.

        ``partitions`` lists, per partition in order, ``partition``,
        ``log_start_offset``, ``log_end_offset``, ``high_watermark``,
        ``size_bytes`` and ``segments``.

        Raises:
            HeraldError: UNKNOWN_TOPIC_OR_PARTITION.
        """
        response = self._call("describe_topic", {"topic": topic})
        return {k: v for k, v in response.items() if k not in _ENVELOPE_FIELDS}

    def add_partitions(self, topic: str, total: int) -> int:
        """Raises the partition count of ``topic`` to ``total``; returns the new count.

        Raises:
            HeraldError: INVALID_PARTITIONS when ``total`` is not greater than
                the current count; UNKNOWN_TOPIC_OR_PARTITION.
        """
        return self._call("add_partitions", {"topic": topic, "partitions": total})["partitions"]

    # -- data ----------------------------------------------------------------

    def produce(self, topic: str, records: Iterable[RecordLike],
                partition: Optional[int] = None, acks: int = 1) -> Optional[List[Dict[str, Any]]]:
        """Appends ``records`` to ``topic``.

        Each record may be a ``Record``, a mapping with any of the keys
        ``key``, ``value``, ``headers`` and ``timestamp``, a ``(key, value)``
        tuple, or a bare value. Keys and values are bytes, str (sent as UTF-8)
        or None; a None value is a tombstone. Headers are ``(str, bytes|str)``
        pairs or a mapping. Without ``partition`` the broker places keyed
        records by ``partition_for_key`` and keyless ones round robin.

        Returns the broker's per-partition results (``partition``,
        ``base_offset``, ``record_count``, ...), or None when ``acks`` is 0: the
        broker then sends no response, so failures go unnoticed.

        Raises:
            HeraldError: when the whole request fails, or when any partition
                reports an error; records sent to other partitions of the same
                request may have been appended all the same.
            ValueError, TypeError: when a record cannot be encoded.
        """
        fields: Dict[str, Any] = {
            "topic": topic,
            "acks": acks,
            "records": [_encode_record(record) for record in records],
        }
        if partition is not None:
            fields["partition"] = partition
        if acks == 0:
            self._call("produce", fields, expect_response=False)
            return None
        results = self._call("produce", fields)["partitions"]
        for result in results:
            code = result.get("error_code", 0)
            if code:
                detail = result.get("error_message") or HeraldError(code).message
                raise HeraldError(code, f"partition {result['partition']}: {detail}")
        return results

    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 1048576,
              min_bytes: int = 0, max_wait_ms: int = 0) -> FetchResult:
        """Reads records of one partition from ``offset`` on.

        A long poll: the broker answers once ``min_bytes`` of batches are
        available, or after ``max_wait_ms`` with whatever there is.
        ``max_bytes`` is a soft limit: at least one batch is returned when one
        is available. Records are decoded with ``decode_batches``.

        Raises:
            HeraldError: OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION, or
                CORRUPT_MESSAGE when the first batch fails its checks.
        """
        response = self._call("fetch", {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "max_bytes": max_bytes,
            "min_bytes": min_bytes,
            "max_wait_ms": max_wait_ms,
        }, wait_s=max_wait_ms / 1000)
        return FetchResult(
            high_watermark=response["high_watermark"],
            log_start_offset=response["log_start_offset"],
            records=decode_batches(response["records"], min_offset=offset),
        )

    def list_offsets(self, topic: str, partition: int, timestamp: int) -> int:
        """Returns the offset of the first record with a timestamp at or after
        ``timestamp`` (ms), or -1 if there is none.

        ``EARLIEST_TIMESTAMP`` (-2) asks for the log start offset and
        ``LATEST_TIMESTAMP`` (-1) for the high watermark.

        Raises:
            HeraldError: UNKNOWN_TOPIC_OR_PARTITION.
        """
        return self._call("list_offsets", {"topic": topic, "partition": partition,
                                           "timestamp": timestamp})["offset"]

    def earliest_offset(self, topic: str, partition: int) -> int:
        """Returns the partition's log start offset."""
        return self.list_offsets(topic, partition, EARLIEST_TIMESTAMP)

    def latest_offset(self, topic: str, partition: int) -> int:
        """Returns the partition's high watermark: the offset the next record gets."""
        return self.list_offsets(topic, partition, LATEST_TIMESTAMP)

    # -- framing -----------------------------------------------------------------

    def _call(self, op: str, fields: Dict[str, Any], wait_s: float = 0.0,
              expect_response: bool = True) -> Dict[str, Any]:
        """Sends one request and returns its successful response map.

        ``wait_s`` extends the socket timeout for a fetch's long poll.
        """
        if self._sock is None:
            raise ConnectionError("client is closed")
        correlation_id = self._take_correlation_id()
        payload = msgpack.packb({"correlation_id": correlation_id, "op": op, **fields},
                                use_bin_type=True)
        if self.max_frame_bytes is not None and len(payload) > self.max_frame_bytes:
            # Checked here because the broker would close the connection.
            raise HeraldError(FRAME_TOO_LARGE, f"request of {len(payload)} bytes exceeds the "
                                               f"broker's max_frame_bytes {self.max_frame_bytes}")
        try:
            self._sock.settimeout(self.timeout + wait_s)
            self._sock.sendall(_FRAME_LENGTH.pack(len(payload)) + payload)
            if not expect_response:
                return {}
            response = self._receive(correlation_id)
        except OSError:
            self.close()
            raise
        code = response.get("error_code", 0)
        if code in _CONNECTION_CLOSING_CODES:
            self.close()
        if code:
            raise HeraldError(code, response.get("error_message"))
        return response

    def _take_correlation_id(self) -> int:
        """Returns the next correlation id, cycling through 1..2**32-1.

        0 is never used: the broker answers with 0 when it could not read a
        request's id, and such an answer must not match a later request.
        """
        correlation_id = self._next_correlation_id
        self._next_correlation_id = correlation_id % 0xFFFFFFFF + 1
        return correlation_id

    def _receive(self, correlation_id: int) -> Dict[str, Any]:
        """Reads frames until the response to ``correlation_id`` arrives.

        A response with another id is stale (an error answering an ``acks=0``
        produce, whose success is never answered) and is skipped. A response
        with id 0 and an error is the broker's answer to a request whose id it
        could not read; with one request outstanding it is this one.
        """
        while True:
            response = self._read_frame()
            received_id = response.get("correlation_id")
            if received_id == correlation_id:
                return response
            if received_id == 0 and response.get("error_code"):
                return response

    def _read_frame(self) -> Dict[str, Any]:
        """Reads one frame and decodes its MessagePack map."""
        (length,) = _FRAME_LENGTH.unpack(self._read_exact(_FRAME_LENGTH.size))
        payload = self._read_exact(length)
        try:
            response = msgpack.unpackb(payload, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ConnectionError(f"broker sent a frame that is not MessagePack: {exc}") from exc
        if not isinstance(response, dict):
            raise ConnectionError(f"broker sent a {type(response).__name__}, not a map")
        return response

    def _read_exact(self, n: int) -> bytes:
        """Reads exactly ``n`` bytes, raising ConnectionError on end of stream."""
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)


def _encode_record(record: RecordLike) -> Dict[str, Any]:
    """Turns one record-like value into the request's record map."""
    headers: Any = None
    timestamp = None
    if isinstance(record, Record):
        key, value, headers, timestamp = record.key, record.value, record.headers, record.timestamp
    elif isinstance(record, Mapping):
        unknown = set(record) - _RECORD_FIELDS
        if unknown:
            raise ValueError(f"unknown record fields {sorted(unknown)}; "
                             f"expected some of {sorted(_RECORD_FIELDS)}")
        key, value = record.get("key"), record.get("value")
        headers, timestamp = record.get("headers"), record.get("timestamp")
    elif isinstance(record, tuple):
        if len(record) != 2:
            raise ValueError(f"a tuple record is (key, value), got {len(record)} items")
        key, value = record
    else:
        key, value = None, record
    encoded: Dict[str, Any] = {"value": _optional_bytes(value)}
    if key is not None:
        encoded["key"] = _to_bytes(key)
    if headers:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        encoded["headers"] = [[_header_key(k), _to_bytes(v)] for k, v in pairs]
    if timestamp is not None:
        encoded["timestamp"] = int(timestamp)
    return encoded


def _header_key(key: Any) -> str:
    """Checks that a header key is text, as the protocol requires."""
    if not isinstance(key, str):
        raise TypeError(f"header keys are str, got {type(key).__name__}")
    return key


def _optional_bytes(data: Any) -> Optional[bytes]:
    """Like ``_to_bytes`` but lets None through (a missing key, a tombstone)."""
    return None if data is None else _to_bytes(data)


def _to_bytes(data: Any) -> bytes:
    """Returns ``data`` as bytes, so that MessagePack sends it as bin; str is UTF-8."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes or str, got {type(data).__name__}")
