"""Python client for Herald, a Kafka-style message broker.

Speaks Herald wire protocol version 1 exactly as ``docs/protocol.md`` specifies
it: length-prefixed MessagePack frames over one TCP connection, a handshake as
the first request (offering every protocol version the client speaks, and
keeping the broker's answer: its operations and limits), and record batches in
Herald's binary format.

Everything public is imported from the package itself
(``from herald_client import Client``); the modules below are its parts by
role, and may be rearranged between versions:

- ``errors``: ``ERROR_CODES`` and ``HeraldError``, the broker's stable error
  codes, with their names and whether a retry may succeed.
- ``records``: ``Record``, ``FetchResult``, and the shapes a record to produce
  may take (``RecordLike``).
- ``batch``: ``encode_batch``, ``decode_batches`` and ``crc32c``, the record batch format.
- ``partitioner``: ``murmur2`` and ``partition_for_key``, Kafka's default
  partitioner, which must agree bit for bit with the broker.
- ``groups``: ``GroupAssignment`` (a ``join_group`` or ``heartbeat`` answer)
  and the wire form of partition lists.
- ``connection``: the framing and the handshake under ``Client``: one
  synchronous TCP connection, one request in flight.
- ``auth``: SCRAM-SHA-256, the client's side of ``authenticate``;
  ``users``: ``Client``'s SCRAM users operations.
- ``client``: ``Client``, a connection with a method per operation,
  consumer-group administration and membership included.
- ``produce``: the requests of one ``produce`` call, built apart from sending
  them (shared by ``Client`` and ``Cluster``).
- ``cluster``: ``Cluster``, a client of a cluster that sends each
  partition's requests to its leader and follows leader changes, with
  idempotent retries (protocol.md, "Following leaders").
- ``coordinator``: ``Cluster``'s half about groups: each group's requests go
  to its coordinator (``find_coordinator``), looked for again on
  ``COORDINATOR_MOVED`` answers or a failed connection (``coordinator_moved``);
  ``list_groups`` over every broker (protocol.md, "Groups in a cluster").
- ``consumer``: ``GroupConsumer``, a consumer-group member that follows
  rebalances and its group's coordinator (two ``Cluster`` clients: heartbeats,
  and data); ``heartbeat`` is its background thread's half.

Depends only on the ``msgpack`` package and the standard library. The package
is typed (it ships ``py.typed``) and checked with ``mypy --strict``.
"""

from .acls import CLUSTER_RESOURCE
from .batch import crc32c, decode_batches, encode_batch
from .client import DELETE_TO_HIGH_WATERMARK, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, Client
from .cluster import Cluster
from .connection import MIN_PROTOCOL_VERSION, PROTOCOL_VERSION
from .consumer import AUTO_OFFSET_RESETS, GroupConsumer, PartitionCallback
from .coordinator import COORDINATOR_MOVED, coordinator_moved
from .errors import (
    COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE,
    CORRUPT_MESSAGE,
    ERROR_CODES,
    FENCED_INSTANCE_ID,
    FRAME_TOO_LARGE,
    HANDSHAKE_REQUIRED,
    ILLEGAL_SASL_STATE,
    ILLEGAL_GENERATION,
    MEMBER_ID_REQUIRED,
    NOT_COORDINATOR,
    OFFSET_OUT_OF_RANGE,
    PARTITION_NOT_OWNED,
    REBALANCE_IN_PROGRESS,
    RESOURCE_NOT_FOUND,
    SASL_AUTHENTICATION_FAILED,
    UNKNOWN_MEMBER_ID,
    UNKNOWN_OPERATION,
    UNKNOWN_TOPIC_OR_PARTITION,
    UNSUPPORTED_SASL_MECHANISM,
    UNSUPPORTED_VERSION,
    HeraldError,
)
from .groups import GroupAssignment, TopicPartition
from .partitioner import murmur2, partition_for_key
from .records import FetchResult, Record, RecordLike

__version__ = "0.1.0"
"""This package's version: the workspace's (``Cargo.toml``), which a test checks."""

__all__ = [
    "AUTO_OFFSET_RESETS",
    "CLUSTER_RESOURCE",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "COORDINATOR_MOVED",
    "COORDINATOR_NOT_AVAILABLE",
    "CORRUPT_MESSAGE",
    "DELETE_TO_HIGH_WATERMARK",
    "EARLIEST_TIMESTAMP",
    "ERROR_CODES",
    "FENCED_INSTANCE_ID",
    "FRAME_TOO_LARGE",
    "HANDSHAKE_REQUIRED",
    "ILLEGAL_SASL_STATE",
    "ILLEGAL_GENERATION",
    "LATEST_TIMESTAMP",
    "MEMBER_ID_REQUIRED",
    "MIN_PROTOCOL_VERSION",
    "NOT_COORDINATOR",
    "OFFSET_OUT_OF_RANGE",
    "PARTITION_NOT_OWNED",
    "PROTOCOL_VERSION",
    "REBALANCE_IN_PROGRESS",
    "RESOURCE_NOT_FOUND",
    "SASL_AUTHENTICATION_FAILED",
    "UNKNOWN_MEMBER_ID",
    "UNKNOWN_OPERATION",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "UNSUPPORTED_SASL_MECHANISM",
    "UNSUPPORTED_VERSION",
    "Client",
    "Cluster",
    "FetchResult",
    "GroupAssignment",
    "GroupConsumer",
    "HeraldError",
    "PartitionCallback",
    "Record",
    "RecordLike",
    "TopicPartition",
    "__version__",
    "coordinator_moved",
    "crc32c",
    "decode_batches",
    "encode_batch",
    "murmur2",
    "partition_for_key",
]
