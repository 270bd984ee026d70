"""Records: what a fetch returns, and what ``Client.produce`` accepts.

``Record`` and ``FetchResult`` are the decoded side (see ``batch`` for the
binary format). ``RecordLike`` lists the shapes a record may take when
producing, and ``_encode_record`` turns each into the MessagePack map of a
produce request (protocol.md, "produce"), with keys, values and header values
as bytes so that they travel as MessagePack ``bin``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union


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


RecordLike = Union[Record, Mapping[str, Any], Tuple[Any, Any], bytes, bytearray, memoryview, str, None]
"""A record to produce: a ``Record``, a mapping with any of ``key``, ``value``,
``headers`` and ``timestamp``, a ``(key, value)`` tuple, or a bare value."""

_RECORD_FIELDS = frozenset(("key", "value", "headers", "timestamp"))


def _encode_record(record: RecordLike) -> Dict[str, Any]:
    """Turns one record-like value into the request's record map."""
    key: Any
    value: Any
    headers: Any = None
    timestamp: Optional[int] = None
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


def _stored_bytes(record: Mapping[str, Any]) -> int:
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
