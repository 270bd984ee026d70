"""Python client for Herald, a Kafka-style message broker.

Speaks Herald wire protocol version 1 exactly as ``docs/protocol.md`` specifies
it: length-prefixed MessagePack frames over one TCP connection, a handshake as
the first request (offering every protocol version the client speaks, and
keeping the broker's answer: its operations and limits), and record batches in
Herald's binary format.

Map of this module:

- ``ERROR_CODES`` and ``HeraldError``: the broker's stable error codes, with
  their names and whether a retry may succeed.
- ``crc32c``, ``murmur2``, ``partition_for_key``: pure Python checksums and
  hashing that must agree bit for bit with the broker (batch CRCs, Kafka's
  default partitioner).
- ``Record``, ``FetchResult``, ``decode_batches``: the record batch format.
- ``Client``: one synchronous connection to a broker with a method per
  operation, consumer-group administration and membership included.
- ``GroupAssignment``: a ``join_group`` or ``heartbeat`` answer.
- ``GroupConsumer``: a consumer-group member that follows rebalances, with a
  background heartbeat thread (two connections: heartbeats, and data).

Depends only on the ``msgpack`` package and the standard library.
"""

import logging
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

import msgpack

__all__ = [
    "ERROR_CODES",
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "MIN_PROTOCOL_VERSION",
    "PROTOCOL_VERSION",
    "Client",
    "FetchResult",
    "GroupAssignment",
    "GroupConsumer",
    "HeraldError",
    "Record",
    "crc32c",
    "decode_batches",
    "murmur2",
    "partition_for_key",
]

MIN_PROTOCOL_VERSION = 1
"""The lowest protocol version this client speaks."""

PROTOCOL_VERSION = 1
"""The highest protocol version this client speaks."""

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
    2: ("CORRUPT_MESSAGE", False,
        "A record batch failed its checksum or structure check; for a fetch, the offset is in a "
        "damaged range of the log, named by first_damaged_offset and next_valid_offset (fetch "
        "from next_valid_offset to skip it)."),
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
        "The generation id is not valid for this request: newer than any the member was given, or older than the one the request needs."),
    24: ("INVALID_GROUP_ID", False,
        "The group id is not valid: 1-255 bytes."),
    25: ("UNKNOWN_MEMBER_ID", False,
        "The member id is not a member of the group (it left, timed out, or never joined): join again."),
    26: ("INVALID_SESSION_TIMEOUT", False,
        "The session timeout is outside the broker's allowed range."),
    27: ("REBALANCE_IN_PROGRESS", True,
        "Reserved with Kafka's meaning; this broker does not return it (a commit for a partition the member does not hold gets PARTITION_NOT_OWNED)."),
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
        "The broker could not read or write its disk (the message says why). Writes resume once the cause is gone, except after a failed fsync, which stops writes until a restart."),
    68: ("NON_EMPTY_GROUP", False,
        "The group has active members; the operation needs an empty group."),
    69: ("GROUP_ID_NOT_FOUND", False,
        "The group does not exist."),
    79: ("MEMBER_ID_REQUIRED", False,
        "This connection already has a member in the group: join again with its member_id, or leave first."),
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
    1004: ("PARTITION_NOT_OWNED", False,
        "The member does not hold this partition: it was never assigned to it, or the member reported it released."),
}
"""Every error code of protocol.md: ``code -> (name, retriable, meaning)``."""

OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
UNSUPPORTED_VERSION = 35
MEMBER_ID_REQUIRED = 79
FENCED_INSTANCE_ID = 82
PARTITION_NOT_OWNED = 1004
HANDSHAKE_REQUIRED = 1000
UNKNOWN_OPERATION = 1001
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
        first_damaged_offset, next_valid_offset: with CORRUPT_MESSAGE on a
            fetch, the damaged range of the broker's log the offset is in;
            fetch from ``next_valid_offset`` to go past it. None otherwise.
    """

    def __init__(self, code: int, message: Optional[str] = None,
                 first_damaged_offset: Optional[int] = None, next_valid_offset: Optional[int] = None):
        name, retriable, meaning = ERROR_CODES.get(
            code, ("UNKNOWN_ERROR_CODE", False, "An error code this client does not know.")
        )
        self.code = code
        self.name = name
        self.message = message or meaning
        self.retriable = retriable
        self.first_damaged_offset = first_damaged_offset
        self.next_valid_offset = next_valid_offset
        # The constructor's arguments, so that the error survives pickling.
        super().__init__(code, message, first_damaged_offset, next_valid_offset)

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


TopicPartition = Tuple[str, int]
"""A partition of a topic: ``(topic, partition)``."""


@dataclass
class GroupAssignment:
    """What ``join_group`` and ``heartbeat`` answer: a member's assignment."""

    member_id: str
    generation_id: int
    """The member's generation (epoch); rises with every change of its assignment."""
    assignment: List[TopicPartition]
    """The partitions the member may consume now, sorted."""
    heartbeat_interval_ms: int
    session_timeout_ms: int


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
    UNSUPPORTED_VERSION, FRAME_TOO_LARGE). A request the broker would refuse
    for its operation or its size is refused here instead, without being
    sent: UNKNOWN_OPERATION for an operation the broker does not list,
    FRAME_TOO_LARGE for a request over its ``max_frame_bytes``.

    Attributes (from the handshake response):
        features: the whole handshake answer, as a dict: ``protocol_version``
            (the version of this connection), ``operations`` (each with its
            ``op``, ``min_version`` and ``max_version``), ``assignors``, the
            limits (``max_frame_bytes``, ``max_in_flight``,
            ``min_session_timeout_ms``, ``max_session_timeout_ms``,
            ``default_session_timeout_ms``, ``max_message_bytes``) and
            ``broker_version``.
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
            HeraldError: UNSUPPORTED_VERSION if the broker speaks none of the
                versions MIN_PROTOCOL_VERSION to PROTOCOL_VERSION.
            OSError: if the broker cannot be reached.
        """
        self.host = host
        self.port = port
        self.client_id = client_id
        self.timeout = timeout
        self.features: Optional[Dict[str, Any]] = None  # the broker's answer, once handshaken
        self.max_frame_bytes: Optional[int] = None  # no limit known before the handshake
        self._next_correlation_id = 1
        self._sock: Optional[socket.socket] = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            # protocol_version too, for a broker that reads no range.
            response = self._call("handshake", {"client_id": client_id,
                                                "protocol_version": MIN_PROTOCOL_VERSION,
                                                "min_protocol_version": MIN_PROTOCOL_VERSION,
                                                "max_protocol_version": PROTOCOL_VERSION})
            version = response["protocol_version"]
            if not MIN_PROTOCOL_VERSION <= version <= PROTOCOL_VERSION:
                raise HeraldError(UNSUPPORTED_VERSION,
                                  f"broker chose protocol version {version}, outside the "
                                  f"{MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION} offered")
        except BaseException:
            self.close()
            raise
        self.features = {k: v for k, v in response.items() if k not in _ENVELOPE_FIELDS}
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

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by ``close`` or after a socket error)."""
        return self._sock is None

    def supports(self, op: str) -> bool:
        """Whether the broker serves ``op`` in this connection's protocol version.

        True before the handshake, and for a broker whose answer lists no
        operations (one older than feature discovery).
        """
        operations = (self.features or {}).get("operations")
        if not operations:
            return True
        version = self.features["protocol_version"]
        return any(o.get("op") == op and o.get("min_version", 0) <= version <= o.get("max_version", 0)
                   for o in operations)

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
        """Returns ``[{"topic": name, "topic_id": id, "partitions": count}, ...]`` sorted by name."""
        return self._call("list_topics", {})["topics"]

    def describe_topic(self, topic: str) -> Dict[str, Any]:
        """Returns ``{"topic", "topic_id", "config", "partitions"}`` for ``topic``.

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

        The records go in as few requests as the broker's limits allow, in
        order: each request fits its ``max_frame_bytes``, and its records'
        batch its default ``max_message_bytes`` (both from the handshake).

        Returns the broker's per-partition results (``partition``,
        ``base_offset``, ``record_count``, ...), those of every request in
        turn, or None when ``acks`` is 0: the broker then sends no response,
        so failures go unnoticed.

        Raises:
            HeraldError: when a request fails as a whole, or when any partition
                reports an error; records sent to other partitions, or in the
                requests before, may have been appended all the same.
                FRAME_TOO_LARGE, before anything is sent, for a record that
                alone does not fit a request.
            ValueError, TypeError: when a record cannot be encoded.
        """
        fields: Dict[str, Any] = {"topic": topic, "acks": acks}
        if partition is not None:
            fields["partition"] = partition
        requests = self._split_records(fields, [_encode_record(record) for record in records])
        results: List[Dict[str, Any]] = []
        for chunk in requests:
            if acks == 0:
                self._call("produce", dict(fields, records=chunk), expect_response=False)
                continue
            for result in self._call("produce", dict(fields, records=chunk))["partitions"]:
                code = result.get("error_code", 0)
                if code:
                    detail = result.get("error_message") or HeraldError(code).message
                    raise HeraldError(code, f"partition {result['partition']}: {detail}")
                results.append(result)
        return None if acks == 0 else results

    def _split_records(self, fields: Dict[str, Any],
                       records: List[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
        """Splits encoded records into the record lists of successive produce
        requests that fit the broker's limits (one list before the handshake)."""
        max_frame = self.max_frame_bytes
        if max_frame is None:
            return [records]
        max_message = (self.features or {}).get("max_message_bytes") or None
        # The largest correlation id, and an array header of the largest form.
        overhead = len(msgpack.packb({"correlation_id": 0xFFFFFFFF, "op": "produce", **fields,
                                      "records": []}, use_bin_type=True)) + 4
        requests: List[List[Dict[str, Any]]] = []
        current: List[Dict[str, Any]] = []
        frame_bytes, batch_bytes = overhead, _BATCH_HEADER.size
        for record in records:
            size = len(msgpack.packb(record, use_bin_type=True))
            if overhead + size > max_frame:
                raise HeraldError(FRAME_TOO_LARGE, f"not sent: a record of {size} bytes does not fit "
                                                   f"the broker's max_frame_bytes {max_frame}")
            stored = _stored_bytes(record)
            full = frame_bytes + size > max_frame or (
                max_message is not None and batch_bytes + stored > max_message)
            if current and full:
                requests.append(current)
                current, frame_bytes, batch_bytes = [], overhead, _BATCH_HEADER.size
            current.append(record)
            frame_bytes += size
            batch_bytes += stored
        requests.append(current)
        return requests

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

    # -- consumer groups ---------------------------------------------------------

    def join_group(self, group_id: str, topics: Iterable[str],
                   group_instance_id: Optional[str] = None,
                   session_timeout_ms: Optional[int] = None,
                   rebalance_timeout_ms: Optional[int] = None,
                   assignor: Optional[str] = None) -> GroupAssignment:
        """Joins ``group_id`` subscribed to ``topics``; returns the new member's
        id, generation and (possibly empty) first assignment.

        The membership belongs to this connection: its heartbeats and its
        leave must come over it, and closing the connection removes the member
        (a static member, one with a ``group_instance_id``, keeps its
        partitions until its session timeout).

        Raises:
            HeraldError: INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT,
                UNSUPPORTED_ASSIGNOR, INVALID_REQUEST (no topics).
        """
        fields: Dict[str, Any] = {"group_id": group_id, "topics": _topic_list(topics)}
        for name, value in (("group_instance_id", group_instance_id),
                            ("session_timeout_ms", session_timeout_ms),
                            ("rebalance_timeout_ms", rebalance_timeout_ms),
                            ("assignor", assignor)):
            if value is not None:
                fields[name] = value
        return _group_assignment(self._call("join_group", fields))

    def heartbeat(self, group_id: str, member_id: str, generation_id: int,
                  owned: Iterable[TopicPartition], topics: Optional[Iterable[str]] = None,
                  max_wait_ms: int = 0) -> GroupAssignment:
        """Reports what the member consumes now (``owned``, as applied at
        ``generation_id``, 0 before any) and returns its assignment.

        A long poll: the broker answers at once when the assignment differs
        from ``owned`` (or the generation from ``generation_id``), otherwise
        after up to ``max_wait_ms`` (capped at half the session timeout), or as
        soon as the assignment changes. ``topics`` changes the subscription.

        Raises:
            HeraldError: UNKNOWN_MEMBER_ID (removed, or not joined on this
                connection: join again), FENCED_INSTANCE_ID, ILLEGAL_GENERATION.
        """
        fields: Dict[str, Any] = {
            "group_id": group_id,
            "member_id": member_id,
            "generation_id": generation_id,
            "owned": _partition_list(owned),
            "max_wait_ms": max_wait_ms,
        }
        if topics is not None:
            fields["topics"] = _topic_list(topics)
        return _group_assignment(self._call("heartbeat", fields, wait_s=max_wait_ms / 1000))

    def leave_group(self, group_id: str, member_id: str) -> None:
        """Leaves the group: the member's partitions move at once.

        Raises:
            HeraldError: UNKNOWN_MEMBER_ID (also when the member did not join
                on this connection), FENCED_INSTANCE_ID.
        """
        self._call("leave_group", {"group_id": group_id, "member_id": member_id})

    def commit_offsets(self, group_id: str, offsets: Mapping,
                       member_id: Optional[str] = None, generation_id: int = -1) -> None:
        """Durably commits offsets: ``{(topic, partition): offset}``, where a
        value may also be ``(offset, metadata)`` with a str metadata.

        The committed offset is the next record to read. A member commits
        with its ``member_id`` and ``generation_id``, for partitions it owns;
        without ``member_id`` a commit is accepted only while the group has no
        members (an admin tool, or a consumer outside any group).

        Raises:
            HeraldError: when the whole request fails (UNKNOWN_MEMBER_ID when
                the group has members and no ``member_id`` is given), or the
                first partition that failed: UNKNOWN_MEMBER_ID,
                FENCED_INSTANCE_ID, ILLEGAL_GENERATION, PARTITION_NOT_OWNED,
                OFFSET_METADATA_TOO_LARGE, INVALID_REQUEST (negative offset).
                The other partitions of the request may have been committed.
        """
        entries = []
        for key, value in offsets.items():
            topic, partition = key
            entry: Dict[str, Any] = {"topic": topic, "partition": partition}
            if isinstance(value, tuple):
                entry["offset"], metadata = value
                if metadata is not None:
                    entry["metadata"] = metadata
            else:
                entry["offset"] = value
            entries.append(entry)
        fields: Dict[str, Any] = {"group_id": group_id, "generation_id": generation_id,
                                  "offsets": entries}
        if member_id is not None:
            fields["member_id"] = member_id
        for result in self._call("commit_offsets", fields)["partitions"]:
            code = result.get("error_code", 0)
            if code:
                detail = result.get("error_message") or HeraldError(code).message
                raise HeraldError(code, f"{result['topic']} partition {result['partition']}: {detail}")

    def fetch_offsets(self, group_id: str, partitions: Optional[Iterable[TopicPartition]] = None,
                      member_id: Optional[str] = None, generation_id: Optional[int] = None,
                      with_metadata: bool = False) -> Dict[TopicPartition, Any]:
        """Returns the group's committed offsets as ``{(topic, partition): offset}``.

        With ``partitions``, exactly those, -1 where nothing is committed;
        without, every committed partition. A group that does not exist has
        no offsets. With ``with_metadata`` the values are ``(offset,
        metadata)``. With both ``member_id`` and ``generation_id`` the broker
        first checks them as for a heartbeat.

        Raises:
            HeraldError: UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID,
                ILLEGAL_GENERATION when a member is named.
        """
        fields: Dict[str, Any] = {"group_id": group_id}
        if partitions is not None:
            fields["partitions"] = _partition_list(partitions)
        if member_id is not None and generation_id is not None:
            fields["member_id"] = member_id
            fields["generation_id"] = generation_id
        offsets = self._call("fetch_offsets", fields)["offsets"]
        return {(o["topic"], o["partition"]): (o["offset"], o.get("metadata")) if with_metadata
                else o["offset"] for o in offsets}

    def list_groups(self) -> List[Dict[str, Any]]:
        """Returns ``[{"group_id", "state", "members", "assignor"}, ...]`` sorted
        by id; ``state`` is ``"Empty"``, ``"Reconciling"`` or ``"Stable"``."""
        return self._call("list_groups", {})["groups"]

    def describe_group(self, group_id: str) -> Dict[str, Any]:
        """Returns the group's ``state``, ``generation_id``, ``assignor``,
        ``members`` and, per partition, ``offsets`` rows (``topic``,
        ``partition``, ``current_offset``, ``log_end_offset``, ``lag``,
        ``member_id``), as protocol.md lists them. Partition lists (a member's
        ``assignment``) are kept in their wire form,
        ``[{"topic": str, "partitions": [int]}]``.

        Raises:
            HeraldError: GROUP_ID_NOT_FOUND.
        """
        response = self._call("describe_group", {"group_id": group_id})
        return {k: v for k, v in response.items() if k not in _ENVELOPE_FIELDS}

    def reset_offsets(self, group_id: str, topic: str, to: str, value: Optional[int] = None,
                      partitions: Optional[Iterable[int]] = None,
                      execute: bool = False) -> Dict[str, Any]:
        """Plans, and with ``execute`` commits, new offsets for ``topic``'s
        partitions (all, or ``partitions``) of a group without members.

        ``to`` is ``"earliest"``, ``"latest"``, ``"offset"``, ``"timestamp"`` or
        ``"shift"``; the last three need ``value`` (the offset, ms since the
        epoch, or the number of records to move, negative to go back). Returns
        ``{"executed": bool, "offsets": [{"topic", "partition",
        "previous_offset", "new_offset"}]}``.

        Raises:
            HeraldError: NON_EMPTY_GROUP (the group has members),
                UNKNOWN_TOPIC_OR_PARTITION, INVALID_REQUEST (a bad ``to``, or
                no ``value``).
        """
        fields: Dict[str, Any] = {"group_id": group_id, "topic": topic, "to": to,
                                  "execute": bool(execute)}
        if value is not None:
            fields["value"] = value
        if partitions is not None:
            fields["partitions"] = list(partitions)
        response = self._call("reset_offsets", fields)
        return {"executed": response["executed"], "offsets": response["offsets"]}

    def delete_group(self, group_id: str) -> None:
        """Deletes the group and its committed offsets.

        Raises:
            HeraldError: NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND.
        """
        self._call("delete_group", {"group_id": group_id})

    # -- framing -----------------------------------------------------------------

    def _call(self, op: str, fields: Dict[str, Any], wait_s: float = 0.0,
              expect_response: bool = True) -> Dict[str, Any]:
        """Sends one request and returns its successful response map.

        ``wait_s`` extends the socket timeout for a fetch's long poll.
        """
        if self._sock is None:
            raise ConnectionError("client is closed")
        if not self.supports(op):
            raise HeraldError(UNKNOWN_OPERATION, f"not sent: the broker does not list operation "
                                                 f"{op!r} for protocol version "
                                                 f"{self.features['protocol_version']} in its handshake")
        correlation_id = self._take_correlation_id()
        payload = msgpack.packb({"correlation_id": correlation_id, "op": op, **fields},
                                use_bin_type=True)
        if self.max_frame_bytes is not None and len(payload) > self.max_frame_bytes:
            # Checked here because the broker would close the connection.
            raise HeraldError(FRAME_TOO_LARGE, f"not sent: a request of {len(payload)} bytes exceeds "
                                               f"the broker's max_frame_bytes {self.max_frame_bytes}")
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
            raise HeraldError(code, response.get("error_message"),
                              response.get("first_damaged_offset"), response.get("next_valid_offset"))
        return response

    def _take_correlation_id(self) -> int:
        """Returns the next correlation id, cycling through 1..2**32-1.

        0 is never used: the broker reserves it for errors it cannot attribute
        to a request (it refuses a request with id 0), and such an answer must
        not match a later request.
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


# ---------------------------------------------------------------------------
# Group consumer
# ---------------------------------------------------------------------------

_log = logging.getLogger("herald_client")

AUTO_OFFSET_RESETS = ("earliest", "latest", "none")

# Heartbeat errors after which the member is gone and must join again.
_LOST_CODES = frozenset((UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION))
# Commit errors that mean the assignment moved on (auto-commit logs them).
_MEMBERSHIP_CODES = frozenset((UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION,
                               PARTITION_NOT_OWNED))

PartitionCallback = Callable[[List[TopicPartition]], Any]


class GroupConsumer:
    """A member of a consumer group: consumes the partitions the broker
    assigns it, commits offsets, and follows rebalances.

    Two connections: a background thread owns the *heartbeat* connection (it
    joins on it, so its heartbeats and the final leave go over it, as the
    protocol requires) and keeps one heartbeat outstanding, a long poll the
    broker answers as soon as this member's assignment changes. The caller's
    thread uses the *data* connection (fetch, commit, fetch_offsets) in
    ``poll``, ``commit`` and ``close``. Apart from the background thread, a
    GroupConsumer is not thread-safe: call its methods from one thread.

    A new assignment takes effect in the next ``poll``: revoked partitions
    are committed (with ``auto_commit``), reported to ``on_revoked`` and
    dropped; added partitions start at their committed offset, or by
    ``auto_offset_reset`` when none is committed, and are reported to
    ``on_assigned``. The heartbeat thread then reports the new ownership at
    once, which lets the released partitions move to their new owners. Until
    ``poll`` applies an answer the thread keeps the session alive with
    heartbeats every ``heartbeat_interval_ms``; a member that does not
    release revoked partitions within its rebalance timeout is removed.

    When the heartbeat says the member is gone (UNKNOWN_MEMBER_ID: session
    timed out or removed; FENCED_INSTANCE_ID: another member joined with its
    ``group_instance_id``; or the heartbeat connection broke), the thread joins
    again at once and the next ``poll`` drops every partition *without*
    committing, reports them to ``on_lost`` (``on_revoked`` when ``on_lost`` is
    None), then applies the new membership's assignment.

    Delivery is at least once: ``poll`` returns records, and their offsets are
    committed by ``commit``, by auto-commit at the start of a later ``poll``
    (every ``auto_commit_interval_ms``), at revocation, and at ``close``.

    Callbacks receive a sorted list of ``(topic, partition)`` and run in the
    thread that calls ``poll`` (or ``close``).
    """

    def __init__(self, host: str, port: int, group_id: str, topics: Union[str, Iterable[str]],
                 client_id: str = "herald-python", group_instance_id: Optional[str] = None,
                 session_timeout_ms: int = 10000, rebalance_timeout_ms: Optional[int] = None,
                 assignor: Optional[str] = None, auto_offset_reset: str = "earliest",
                 auto_commit: bool = True, auto_commit_interval_ms: int = 5000,
                 on_assigned: Optional[PartitionCallback] = None,
                 on_revoked: Optional[PartitionCallback] = None,
                 on_lost: Optional[PartitionCallback] = None,
                 max_bytes: int = 1048576, fetch_max_wait_ms: int = 100,
                 timeout: float = 30.0):
        """Connects twice, joins the group and starts the heartbeat thread.

        ``assignor`` (``"range"``, ``"roundrobin"`` or ``"sticky"``) counts only
        for the first member of an empty group; the broker's default is
        sticky. ``auto_offset_reset`` decides where a partition without a
        committed offset (or whose offset fell out of the log) starts:
        ``"earliest"``, ``"latest"``, or ``"none"`` to raise instead.
        ``max_bytes`` limits each fetch; ``fetch_max_wait_ms`` is the longest
        one fetch long-polls an idle partition inside ``poll``. ``timeout``
        (seconds) bounds connecting and each request.

        Raises:
            HeraldError: from ``join_group`` (INVALID_GROUP_ID,
                INVALID_SESSION_TIMEOUT, UNSUPPORTED_ASSIGNOR, ...).
            OSError: if the broker cannot be reached.
            ValueError: an unknown ``auto_offset_reset``.
        """
        if auto_offset_reset not in AUTO_OFFSET_RESETS:
            raise ValueError(f"auto_offset_reset must be one of {AUTO_OFFSET_RESETS}, "
                             f"got {auto_offset_reset!r}")
        self.host = host
        self.port = port
        self.group_id = group_id
        self.topics = _topic_list(topics)
        self.client_id = client_id
        self.group_instance_id = group_instance_id
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.assignor = assignor
        self.auto_offset_reset = auto_offset_reset
        self.auto_commit = auto_commit
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.on_lost = on_lost
        self.max_bytes = max_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.timeout = timeout

        # Guards the state shared with the heartbeat thread (below); the
        # thread waits on it for poll to apply an answer, poll for answers.
        self._cond = threading.Condition()
        # Written by the heartbeat thread:
        self._member_id = ""                         # the thread's current membership
        self._heartbeat_interval_ms = max(1, session_timeout_ms // 3)
        self._pending: Optional[GroupAssignment] = None  # an answer poll has yet to apply
        self._pending_lost = False                   # the membership was lost before it
        self._error: Optional[BaseException] = None  # why the thread died
        # Written by poll (the caller's thread):
        self._applied_member: Optional[str] = None   # membership of the applied assignment
        self._applied_generation = 0
        self._owned: FrozenSet[TopicPartition] = frozenset()
        self._closing = False
        # The caller's thread only:
        self._positions: Dict[TopicPartition, int] = {}
        self._committed: Dict[TopicPartition, Optional[int]] = {}
        self._last_commit = time.monotonic()
        self._next_partition = 0
        self._closed = False

        self._client = Client(host, port, client_id=client_id, timeout=timeout)
        self._heartbeat_client: Optional[Client] = None
        try:
            self._heartbeat_client = Client(host, port, client_id=client_id, timeout=timeout)
            self._accept(self._join(), lost=False)
        except BaseException:
            self._client.close()
            if self._heartbeat_client is not None:
                self._heartbeat_client.close()
            raise
        self._thread = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                        name=f"herald-heartbeat-{group_id}")
        self._thread.start()

    def __enter__(self) -> "GroupConsumer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- the caller's side -------------------------------------------------------

    @property
    def member_id(self) -> str:
        """The member id of the current membership (it changes after a rejoin)."""
        with self._cond:
            return self._member_id

    @property
    def generation_id(self) -> int:
        """The generation of the assignment applied last (0 before any)."""
        with self._cond:
            return self._applied_generation

    def assignment(self) -> List[TopicPartition]:
        """The partitions this consumer owns now (as applied by ``poll``), sorted."""
        with self._cond:
            return sorted(self._owned)

    def position(self, topic: str, partition: int) -> int:
        """The offset of the next record ``poll`` returns from an owned partition.

        Raises:
            KeyError: the partition is not owned.
        """
        return self._positions[(topic, partition)]

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Moves the next offset ``poll`` reads from an owned partition, for
        example past a damaged range (a ``HeraldError`` with code 2 and
        ``next_valid_offset``); committed by the next commit.

        Raises:
            KeyError: the partition is not owned.
        """
        if (topic, partition) not in self._positions:
            raise KeyError((topic, partition))
        self._positions[(topic, partition)] = offset

    def poll(self, timeout_ms: int = 1000) -> List[Tuple[str, int, Record]]:
        """Returns records of owned partitions as ``(topic, partition, Record)``,
        waiting up to ``timeout_ms`` for some; an empty list when none came.

        Applies a pending assignment first (and again whenever one arrives
        while waiting), and auto-commits what earlier polls returned when
        ``auto_commit_interval_ms`` has passed.

        Raises:
            HeraldError: OFFSET_OUT_OF_RANGE with ``auto_offset_reset="none"``
                for a partition without a usable offset; fetch errors; the
                error that stopped the heartbeat thread.
            OSError: the data connection failed.
        """
        self._check_open()
        deadline = time.monotonic() + timeout_ms / 1000
        try:
            self._auto_commit_if_due()
        except OSError as err:
            self._reconnect_data(err)
        while True:
            self._raise_thread_error()
            try:
                self._apply_pending()
                owned = sorted(self._owned)
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                records = self._fetch_owned(owned, remaining_ms) if owned else []
            except OSError as err:
                # The broker went away (a restart, say): connect again. The
                # heartbeat thread joins again on its own connection, and the
                # next assignment starts from the committed offsets.
                self._reconnect_data(err)
                continue
            if records:
                return records
            if not owned:
                with self._cond:
                    self._cond.wait_for(lambda: self._pending is not None or self._error is not None,
                                        max(0, remaining_ms) / 1000)
            if time.monotonic() >= deadline:
                return []

    def commit(self, offsets: Optional[Mapping] = None) -> None:
        """Commits ``offsets`` (``{(topic, partition): offset}``), by default the
        positions of every owned partition (those that moved since the last
        commit), under this member's id and applied generation.

        Raises:
            HeraldError: as ``Client.commit_offsets``; PARTITION_NOT_OWNED or
                ILLEGAL_GENERATION when the partitions moved on,
                UNKNOWN_MEMBER_ID when the membership was lost.
        """
        self._check_open()
        with self._cond:
            member_id, generation_id, owned = (self._applied_member, self._applied_generation,
                                               self._owned)
        if offsets is None:
            offsets = {tp: self._positions[tp] for tp in sorted(owned)
                       if self._positions[tp] != self._committed.get(tp)}
        self._commit(offsets, member_id, generation_id)

    def close(self, leave_group: bool = True) -> None:
        """Commits (with ``auto_commit``), reports the owned partitions to
        ``on_revoked``, stops the heartbeat thread, leaves the group and closes
        both connections. Calling it again does nothing.

        Stopping the thread waits for its outstanding heartbeat, up to
        ``heartbeat_interval_ms`` (a third of the session timeout), so that the
        leave is the only request on the heartbeat connection.
        ``leave_group=False`` skips the leave: a dynamic member is removed
        anyway when its connection closes, while a static member (with a
        ``group_instance_id``) then keeps its partitions for its session
        timeout, to get them back by joining again with the same id.
        """
        if self._closed:
            return
        self._closed = True
        try:
            with self._cond:
                owned = sorted(self._owned)
                healthy = self._error is None
            if healthy and owned:
                if self.auto_commit:
                    self._commit_quietly(owned)
                self._call_back(self.on_revoked, owned)
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join(self._heartbeat_interval_ms / 1000 + self.timeout + 1)
            heartbeat_client = self._heartbeat_client
            if (leave_group and not self._thread.is_alive() and heartbeat_client is not None
                    and not heartbeat_client.closed):
                try:
                    heartbeat_client.leave_group(self.group_id, self._member_id)
                except (HeraldError, OSError) as err:
                    _log.info("group %s: leave of %s failed: %s", self.group_id, self._member_id, err)
            if heartbeat_client is not None:
                heartbeat_client.close()
            self._client.close()

    # -- applying assignments (caller's thread) --------------------------------

    def _reconnect_data(self, why: BaseException) -> None:
        """Replaces a broken data connection, trying for up to a session
        timeout; raises the last error if the broker stays unreachable."""
        _log.info("group %s: data connection failed (%s); connecting again", self.group_id, why)
        self._client.close()
        deadline = time.monotonic() + self.session_timeout_ms / 1000
        while True:
            try:
                self._client = Client(self.host, self.port, client_id=self.client_id, timeout=self.timeout)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionError("group consumer is closed")

    def _raise_thread_error(self) -> None:
        with self._cond:
            error = self._error
        if error is not None:
            raise error

    def _apply_pending(self) -> None:
        """Applies the answer the heartbeat thread left, if any."""
        with self._cond:
            answer, lost = self._pending, self._pending_lost
            self._pending_lost = False
            owned = self._owned
        if answer is None:
            return
        if lost:
            # Gone without a chance to commit: another member may own them now.
            dropped = sorted(owned)
            for tp in dropped:
                self._positions.pop(tp, None)
                self._committed.pop(tp, None)
            with self._cond:
                self._owned = owned = frozenset()
                self._applied_member, self._applied_generation = None, 0
            self._call_back(self.on_lost if self.on_lost is not None else self.on_revoked, dropped)
        new = frozenset(answer.assignment)
        revoked = sorted(owned - new)
        added = sorted(new - owned)
        if revoked:
            if self.auto_commit:
                self._commit_quietly(revoked, answer.member_id, answer.generation_id)
            self._call_back(self.on_revoked, revoked)
            for tp in revoked:
                self._positions.pop(tp, None)
                self._committed.pop(tp, None)
            with self._cond:
                # Released: a keepalive heartbeat sent before the end of
                # this apply reports them so.
                self._owned = owned - frozenset(revoked)
                self._cond.notify_all()
        if added:
            self._start_partitions(added)
        with self._cond:
            self._owned = new
            self._applied_member, self._applied_generation = answer.member_id, answer.generation_id
            if self._pending is answer or self._answer_applied(self._pending):
                self._pending = None
            self._cond.notify_all()
        if added:
            self._call_back(self.on_assigned, added)

    def _answer_applied(self, answer: Optional[GroupAssignment]) -> bool:
        """Whether ``answer`` is what is applied now (call with the lock held)."""
        return (answer is not None and not self._pending_lost
                and answer.member_id == self._applied_member
                and answer.generation_id == self._applied_generation
                and frozenset(answer.assignment) == self._owned)

    def _start_partitions(self, added: List[TopicPartition]) -> None:
        """Sets the positions of newly assigned partitions: their committed
        offsets, or by ``auto_offset_reset``."""
        committed = self._client.fetch_offsets(self.group_id, added)
        positions = {}
        for tp in added:
            offset = committed.get(tp, -1)
            positions[tp] = offset if offset >= 0 else self._reset_position(tp, "has no committed offset")
        for tp, offset in positions.items():
            self._positions[tp] = offset
            self._committed[tp] = committed.get(tp) if committed.get(tp, -1) >= 0 else None

    def _reset_position(self, tp: TopicPartition, why: str) -> int:
        topic, partition = tp
        if self.auto_offset_reset == "earliest":
            return self._client.earliest_offset(topic, partition)
        if self.auto_offset_reset == "latest":
            return self._client.latest_offset(topic, partition)
        raise HeraldError(OFFSET_OUT_OF_RANGE,
                          f"{topic} partition {partition} {why} and auto_offset_reset is 'none'")

    def _call_back(self, callback: Optional[PartitionCallback],
                   partitions: List[TopicPartition]) -> None:
        if callback is not None and partitions:
            callback(list(partitions))

    # -- fetching (caller's thread) --------------------------------------------

    def _fetch_owned(self, owned: List[TopicPartition], remaining_ms: int) -> List[Tuple[str, int, Record]]:
        """One round: every owned partition without waiting; when none had
        records, one long poll (min_bytes 1) of the next partition in turn."""
        start = self._next_partition % len(owned)
        self._next_partition += 1
        order = owned[start:] + owned[:start]
        records: List[Tuple[str, int, Record]] = []
        for tp in order:
            records.extend(self._fetch(tp, min_bytes=0, max_wait_ms=0))
        if records or remaining_ms <= 0:
            return records
        return self._fetch(order[0], min_bytes=1,
                           max_wait_ms=max(1, min(remaining_ms, self.fetch_max_wait_ms)))

    def _fetch(self, tp: TopicPartition, min_bytes: int, max_wait_ms: int) -> List[Tuple[str, int, Record]]:
        topic, partition = tp
        try:
            result = self._client.fetch(topic, partition, self._positions[tp], self.max_bytes,
                                        min_bytes=min_bytes, max_wait_ms=max_wait_ms)
        except HeraldError as err:
            if err.code == OFFSET_OUT_OF_RANGE:
                self._positions[tp] = self._reset_position(
                    tp, f"offset {self._positions[tp]} is out of range")
                return []
            if err.code == UNKNOWN_TOPIC_OR_PARTITION:
                # Deleted: the group rebalances soon. Wait as a fetch would.
                time.sleep(max_wait_ms / 1000)
                return []
            raise
        if not result.records:
            return []
        self._positions[tp] = result.records[-1].offset + 1
        return [(topic, partition, record) for record in result.records]

    # -- committing (caller's thread) ------------------------------------------

    def _auto_commit_if_due(self) -> None:
        if not self.auto_commit:
            return
        if (time.monotonic() - self._last_commit) * 1000 < self.auto_commit_interval_ms:
            return
        self._commit_quietly(self.assignment())

    def _commit_quietly(self, partitions: Sequence[TopicPartition], member_id: Optional[str] = None,
                        generation_id: Optional[int] = None) -> None:
        """Commits the positions of ``partitions``; logs, rather than raises,
        the errors that mean the assignment moved on."""
        with self._cond:
            if member_id is None:
                member_id, generation_id = self._applied_member, self._applied_generation
        offsets = {tp: self._positions[tp] for tp in partitions
                   if tp in self._positions and self._positions[tp] != self._committed.get(tp)}
        try:
            self._commit(offsets, member_id, generation_id if generation_id is not None else -1)
        except HeraldError as err:
            if err.code not in _MEMBERSHIP_CODES:
                raise
            _log.warning("group %s: commit of %s failed: %s", self.group_id, sorted(offsets), err)

    def _commit(self, offsets: Mapping, member_id: Optional[str], generation_id: int) -> None:
        self._last_commit = time.monotonic()
        if not offsets:
            return
        if member_id is None:
            raise HeraldError(UNKNOWN_MEMBER_ID, "the consumer has no applied membership yet")
        self._client.commit_offsets(self.group_id, offsets, member_id=member_id,
                                    generation_id=generation_id)
        for tp, value in offsets.items():
            self._committed[tp] = value[0] if isinstance(value, tuple) else value

    # -- the heartbeat thread --------------------------------------------------

    def _join(self) -> GroupAssignment:
        assert self._heartbeat_client is not None
        return self._heartbeat_client.join_group(
            self.group_id, self.topics, group_instance_id=self.group_instance_id,
            session_timeout_ms=self.session_timeout_ms,
            rebalance_timeout_ms=self.rebalance_timeout_ms, assignor=self.assignor)

    def _accept(self, answer: GroupAssignment, lost: bool) -> None:
        """Publishes a join or heartbeat answer for poll to apply."""
        with self._cond:
            self._member_id = answer.member_id
            self._heartbeat_interval_ms = max(1, answer.heartbeat_interval_ms)
            if lost:
                self._pending_lost = True
            self._pending = None if self._answer_applied(answer) else answer
            self._cond.notify_all()

    def _heartbeat_loop(self) -> None:
        # When the last heartbeat (or join) was answered: after a session
        # timeout without an answer the member is gone, whatever the errors say.
        answered = time.monotonic()
        try:
            while True:
                with self._cond:
                    if self._pending is not None and not self._closing:
                        # Give poll a heartbeat interval to apply the answer.
                        self._cond.wait_for(lambda: self._pending is None or self._closing,
                                            self._heartbeat_interval_ms / 1000)
                    if self._closing:
                        return
                    member_id = self._member_id
                    if self._applied_member == member_id:
                        owned, generation_id = self._owned, self._applied_generation
                    else:
                        owned, generation_id = frozenset(), 0  # nothing applied yet
                    # Not applied yet: only keep the session alive.
                    max_wait_ms = 0 if self._pending is not None else self._heartbeat_interval_ms
                assert self._heartbeat_client is not None
                try:
                    answer = self._heartbeat_client.heartbeat(self.group_id, member_id, generation_id,
                                                              owned, max_wait_ms=max_wait_ms)
                except HeraldError as err:
                    if err.code in _LOST_CODES or (
                            err.retriable
                            and (time.monotonic() - answered) * 1000 > self.session_timeout_ms):
                        self._rejoin(err, reconnect=False)
                        answered = time.monotonic()
                    elif err.retriable:
                        self._sleep(0.1)
                    else:
                        raise
                    continue
                except OSError as err:
                    self._rejoin(err, reconnect=True)
                    answered = time.monotonic()
                    continue
                answered = time.monotonic()
                self._accept(answer, lost=False)
        except BaseException as exc:  # handed to poll
            _log.error("group %s: heartbeat thread stopped: %s", self.group_id, exc)
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _rejoin(self, why: BaseException, reconnect: bool) -> None:
        """Joins again after the membership was lost, retrying retriable
        failures (and reconnecting) for up to a session timeout."""
        _log.warning("group %s: member %s lost its membership (%s); joining again",
                     self.group_id, self._member_id, why)
        deadline = time.monotonic() + self.session_timeout_ms / 1000
        delay = 0.05
        while True:
            with self._cond:
                if self._closing:
                    return
            try:
                if reconnect or self._heartbeat_client is None or self._heartbeat_client.closed:
                    if self._heartbeat_client is not None:
                        self._heartbeat_client.close()
                    self._heartbeat_client = Client(self.host, self.port, client_id=self.client_id,
                                                    timeout=self.timeout)
                    reconnect = False
                self._accept(self._join(), lost=True)
                return
            except HeraldError as err:
                if not err.retriable or time.monotonic() > deadline:
                    raise
            except OSError:
                reconnect = True
                if time.monotonic() > deadline:
                    raise
            self._sleep(delay)
            delay = min(delay * 2, 1.0)

    def _sleep(self, seconds: float) -> None:
        """Waits ``seconds``, or less when the consumer closes."""
        with self._cond:
            self._cond.wait_for(lambda: self._closing, seconds)


def _topic_list(topics: Iterable[str]) -> List[str]:
    """The subscription as a list; a lone str is one topic, not its letters."""
    return [topics] if isinstance(topics, str) else list(topics)


def _partition_list(partitions: Iterable[TopicPartition]) -> List[Dict[str, Any]]:
    """``(topic, partition)`` pairs as the wire's ``[{topic, partitions}]``."""
    by_topic: Dict[str, List[int]] = {}
    for topic, partition in sorted(set((t, int(p)) for t, p in partitions)):
        by_topic.setdefault(topic, []).append(partition)
    return [{"topic": topic, "partitions": ps} for topic, ps in by_topic.items()]


def _from_partition_list(wire: Iterable[Mapping]) -> List[TopicPartition]:
    """The wire's ``[{topic, partitions}]`` as sorted ``(topic, partition)`` pairs."""
    return sorted((entry["topic"], p) for entry in wire for p in entry["partitions"])


def _group_assignment(response: Mapping) -> GroupAssignment:
    return GroupAssignment(
        member_id=response["member_id"],
        generation_id=response["generation_id"],
        assignment=_from_partition_list(response["assignment"]),
        heartbeat_interval_ms=response["heartbeat_interval_ms"],
        session_timeout_ms=response["session_timeout_ms"],
    )


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


def _stored_bytes(record: Mapping) -> int:
    """The bytes an encoded record takes in a stored batch (protocol.md,
    "Record batch format"), without the batch's header."""
    key, value = record.get("key"), record.get("value")
    size = 28 + len(key or b"") + len(value or b"")
    for header_key, header_value in record.get("headers", ()):
        size += 6 + len(header_key.encode("utf-8")) + len(header_value)
    return size


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
