"""The requests of one ``produce`` call, built apart from sending them.

``Client.produce`` sends them over its one connection; ``Cluster.produce``
sends each to its partition's leader and, when it must send one again,
sends the very same bytes (same producer id, epoch and sequence), so that a
broker recognises an idempotent batch it already holds (protocol.md,
"Idempotent retries").
"""

import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

import msgpack

from .batch import _BATCH_HEADER, CODECS, encode_batch
from .connection import Connection
from .errors import FRAME_TOO_LARGE, HeraldError
from .records import RecordLike, _encode_record, _stored_bytes

# The handshake's name of the batch form of produce (protocol.md, "Handshake").
FEATURE_PRODUCE_BATCH = "produce_batch"


@dataclass
class ProducePlan:
    """The requests of one ``produce`` call, before any is sent."""

    fields: Dict[str, Any]
    """``topic``, ``acks`` and, when given, ``partition``."""
    chunks: List[List[Dict[str, Any]]]
    """The encoded records of each request, in order."""
    as_batch: bool
    """Whether the records go as one stored batch per request (``batch``)."""
    compression: str
    """The codec of each batch: the one asked, or "none" when the broker lacks it."""

    @property
    def idempotent(self) -> bool:
        """Whether the batches may carry an idempotent producer's fields: a
        batch to one partition whose answer is awaited."""
        return self.as_batch and "partition" in self.fields and self.fields["acks"] != 0

    def body(self, chunk: List[Dict[str, Any]], producer: Optional[Tuple[int, int, int]]) -> Dict[str, Any]:
        """The request of ``chunk``, with ``producer``'s ``(producer_id,
        producer_epoch, base_sequence)`` in its batch when not None."""
        if self.as_batch and chunk:
            now = int(time.time() * 1000)
            return dict(self.fields, batch=encode_batch(chunk, now, self.compression, producer))
        return dict(self.fields, records=chunk)


def plan_produce(conn: Connection, topic: str, records: Iterable[RecordLike], partition: Optional[int],
                 acks: int, compression: str) -> ProducePlan:
    """Encodes ``records`` and splits them into the requests ``conn``'s broker
    takes (see ``Client.produce``).

    Raises:
        HeraldError: FRAME_TOO_LARGE for a record that alone does not fit a request.
        ValueError, TypeError: a record cannot be encoded, or an unknown ``compression``.
    """
    fields: Dict[str, Any] = {"topic": topic, "acks": acks}
    if partition is not None:
        fields["partition"] = partition
    encoded = [_encode_record(record) for record in records]
    chunks = _split_records(conn, fields, encoded)
    features = conn.features or {}
    # The batch form when the broker offers it: one stored batch per
    # request, built here once. Keyed records without a partition go as
    # `records`, so that the broker places each by its key.
    as_batch = (FEATURE_PRODUCE_BATCH in features.get("features", [])
                and (partition is not None or not any("key" in r for r in encoded)))
    if compression not in CODECS:
        raise ValueError(f"unknown compression {compression!r}: none, lz4 or zstd")
    if compression not in features.get("compression", []):
        compression = "none"
    return ProducePlan(fields, chunks, as_batch, compression)


def produce_results(answer: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The per-partition results of a produce answer.

    Raises:
        HeraldError: the first partition's error.
    """
    results: List[Dict[str, Any]] = []
    for result in answer["partitions"]:
        code = result.get("error_code", 0)
        if code:
            detail = result.get("error_message") or HeraldError(code).message
            raise HeraldError(code, f"partition {result['partition']}: {detail}")
        results.append(result)
    return results


def _split_records(conn: Connection, fields: Dict[str, Any],
                   records: List[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
    """Splits encoded records into the record lists of successive produce
    requests that fit the broker's limits (one list before the handshake)."""
    max_frame = conn.max_frame_bytes
    if max_frame is None:
        return [records]
    max_message = (conn.features or {}).get("max_message_bytes") or None
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
