"""``Client``: one synchronous connection to a broker, a method per operation.

Speaks protocol.md's framing: a 4-byte big-endian length, then a MessagePack
map with ``correlation_id`` and ``op``; the first request is the handshake,
which offers every protocol version this client speaks and keeps the
broker's answer (its operations and limits). One request is in flight at a
time, so a ``Client`` belongs to one thread.
"""

import socket
import struct
from collections.abc import Iterable, Mapping
from typing import Any, Dict, List, Literal, Optional, Tuple, Union, overload

import msgpack

from .batch import _BATCH_HEADER, decode_batches
from .errors import FRAME_TOO_LARGE, HANDSHAKE_REQUIRED, UNKNOWN_OPERATION, UNSUPPORTED_VERSION, HeraldError
from .groups import GroupAssignment, OffsetsToCommit, TopicPartition, _group_assignment, _partition_list, _topic_list
from .records import FetchResult, RecordLike, _encode_record, _stored_bytes

MIN_PROTOCOL_VERSION = 1
"""The lowest protocol version this client speaks."""

PROTOCOL_VERSION = 1
"""The highest protocol version this client speaks."""

EARLIEST_TIMESTAMP = -2
"""``list_offsets`` timestamp asking for the log start offset."""

LATEST_TIMESTAMP = -1
"""``list_offsets`` timestamp asking for the high watermark."""

_FRAME_LENGTH = struct.Struct(">I")
_ENVELOPE_FIELDS = ("correlation_id", "error_code", "error_message")
_CONNECTION_CLOSING_CODES = frozenset((UNSUPPORTED_VERSION, HANDSHAKE_REQUIRED, FRAME_TOO_LARGE))



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
        version = (self.features or {}).get("protocol_version")
        return any(o.get("op") == op and o.get("min_version", 0) <= version <= o.get("max_version", 0)
                   for o in operations)

    # -- administration ----------------------------------------------------

    def create_topic(self, topic: str, partitions: int,
                     config: Optional[Mapping[str, Union[str, int]]] = None) -> None:
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
        topics: List[Dict[str, Any]] = self._call("list_topics", {})["topics"]
        return topics

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
        count: int = self._call("add_partitions", {"topic": topic, "partitions": total})["partitions"]
        return count

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
        offset: int = self._call("list_offsets", {"topic": topic, "partition": partition,
                                                  "timestamp": timestamp})["offset"]
        return offset

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

    def commit_offsets(self, group_id: str, offsets: OffsetsToCommit,
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

    @overload
    def fetch_offsets(self, group_id: str, partitions: Optional[Iterable[TopicPartition]] = None,
                      member_id: Optional[str] = None, generation_id: Optional[int] = None,
                      with_metadata: Literal[False] = False) -> Dict[TopicPartition, int]: ...

    @overload
    def fetch_offsets(self, group_id: str, partitions: Optional[Iterable[TopicPartition]] = None,
                      member_id: Optional[str] = None, generation_id: Optional[int] = None,
                      *, with_metadata: Literal[True]) -> Dict[TopicPartition, Tuple[int, Optional[str]]]: ...

    @overload
    def fetch_offsets(self, group_id: str, partitions: Optional[Iterable[TopicPartition]] = None,
                      member_id: Optional[str] = None, generation_id: Optional[int] = None,
                      with_metadata: bool = False) -> Union[Dict[TopicPartition, int],
                                                            Dict[TopicPartition, Tuple[int, Optional[str]]]]: ...

    def fetch_offsets(self, group_id: str, partitions: Optional[Iterable[TopicPartition]] = None,
                      member_id: Optional[str] = None, generation_id: Optional[int] = None,
                      with_metadata: bool = False) -> Union[Dict[TopicPartition, int],
                                                            Dict[TopicPartition, Tuple[int, Optional[str]]]]:
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
        if with_metadata:
            return {(o["topic"], o["partition"]): (o["offset"], o.get("metadata")) for o in offsets}
        return {(o["topic"], o["partition"]): o["offset"] for o in offsets}

    def list_groups(self) -> List[Dict[str, Any]]:
        """Returns ``[{"group_id", "state", "members", "assignor"}, ...]`` sorted
        by id; ``state`` is ``"Empty"``, ``"Reconciling"`` or ``"Stable"``."""
        groups: List[Dict[str, Any]] = self._call("list_groups", {})["groups"]
        return groups

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
                                                 f"{(self.features or {}).get('protocol_version')} in its handshake")
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

