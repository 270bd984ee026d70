"""``Client``: a connection to a broker with a method per operation.

Administration, data (produce, fetch, offsets) and consumer groups, each
method one request and its response over the ``Connection`` it extends; the
arguments and answers are those of protocol.md's operations, with partition
lists as sorted ``(topic, partition)`` pairs.
"""

from collections.abc import Iterable, Mapping
from typing import Any, Dict, List, Literal, Optional, Tuple, Union, overload

from .acls import AclAdmin
from .batch import decode_batches
from .connection import _ENVELOPE_FIELDS
from .errors import HeraldError
from .groups import GroupAssignment, OffsetsToCommit, TopicPartition, _group_assignment, _partition_list, _topic_list
from .produce import plan_produce, produce_results
from .records import FetchResult, RecordLike
from .users import UserAdmin

EARLIEST_TIMESTAMP = -2
"""``list_offsets`` timestamp asking for the log start offset."""

LATEST_TIMESTAMP = -1
"""``list_offsets`` timestamp asking for the high watermark."""

DELETE_TO_HIGH_WATERMARK = -1
"""``delete_records`` offset meaning the high watermark: delete every record."""


class Client(AclAdmin, UserAdmin):
    """A connection to a Herald broker with a method per operation.

    ``Client(host, port, client_id, timeout, username=, password=)`` connects,
    handshakes and, given a username, authenticates (see ``Connection`` for
    its errors and the attributes the handshake sets).
    Each method sends one request and waits for its response, so a Client
    must not be shared between threads; open one per thread.

    ``produce`` is idempotent by default (protocol.md, "Idempotent
    producers"): set ``idempotent = False`` on the client to turn it off.
    """

    idempotent: bool = True
    """Whether ``produce`` to a partition sends idempotent batches (with
    ``acks`` 1 or -1, to a broker that lists ``init_producer_id``)."""

    _producer: Optional[Tuple[int, int]] = None
    _sequences: Optional[Dict[Tuple[str, int], int]] = None

    def init_producer_id(self) -> Tuple[int, int]:
        """A new idempotent producer id and its epoch (``init_producer_id``).

        Raises:
            HeraldError: CLUSTER_AUTHORIZATION_FAILED, KAFKA_STORAGE_ERROR.
        """
        answer = self._call("init_producer_id", {})
        return int(answer["producer_id"]), int(answer["producer_epoch"])

    def _next_producer_fields(self, topic: str, partition: int, count: int) -> Optional[Tuple[int, int, int]]:
        """The producer fields of the next batch of ``count`` records to
        ``partition``, or None when produce is not idempotent here. The
        sequence moves on only once the batch is answered (``_sent``)."""
        if not self.idempotent or not self.supports("init_producer_id"):
            return None
        if self._producer is None:
            self._producer = self.init_producer_id()
            self._sequences = {}
        sequences = self._sequences if self._sequences is not None else {}
        producer_id, epoch = self._producer
        return producer_id, epoch, sequences.get((topic, partition), 0)

    def _sent(self, topic: str, partition: int, sequence: int, count: int) -> None:
        """Moves the partition's sequence past a batch the broker took."""
        if self._sequences is not None:
            self._sequences[(topic, partition)] = (sequence + count) % (1 << 31)

    # -- custom operations -------------------------------------------------

    def call(self, op: str, body: Any = None) -> Any:
        """Calls an extension's custom operation ``op`` (``x.<extension>.<name>``)
        with ``body`` (any value msgpack encodes; ``bytes`` go as bin) and
        returns the response's ``body``.

        Raises:
            HeraldError: UNKNOWN_OPERATION when the broker does not serve
                ``op``, EXTENSION_UNAVAILABLE (retriable) when its handler
                failed or is restarting, or the extension's own code
                (2000-2999).
        """
        return self._call(op, {"body": body}).get("body")

    # -- administration ----------------------------------------------------

    def create_topic(self, topic: str, partitions: int,
                     config: Optional[Mapping[str, Union[str, int]]] = None,
                     replication_factor: Optional[int] = None) -> None:
        """Creates ``topic`` with ``partitions`` partitions and optional settings.

        ``config`` maps setting names (``retention_ms``,
        ``message_timestamp_type``, ...) to str or int values;
        ``replication_factor`` is the replicas of each partition (None: the
        broker's default).

        Raises:
            HeraldError: INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS,
                TOPIC_ALREADY_EXISTS, INVALID_CONFIG or INVALID_REPLICATION_FACTOR.
        """
        fields: Dict[str, Any] = {"topic": topic, "partitions": partitions}
        if replication_factor is not None:
            fields["replication_factor"] = replication_factor
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

    def describe_cluster(self) -> Dict[str, Any]:
        """Returns ``{"mode", "broker_id", "controller_id", "controller_epoch", "brokers"}``.

        ``mode`` is ``"single"`` or ``"zookeeper"``; ``brokers`` lists the live
        brokers as ``{"id", "host", "port", "rack"}`` by id; ``controller_id``
        is -1 while no controller is known.
        """
        response = self._call("describe_cluster", {})
        return {k: v for k, v in response.items() if k not in _ENVELOPE_FIELDS}

    def metadata(self, topics: Optional[List[str]] = None) -> Dict[str, Any]:
        """Returns where each partition of ``topics`` (every topic when None) is led.

        ``{"brokers", "controller_id", "topics": [{"topic", "topic_id",
        "error_code", "partitions": [{"partition", "leader", "leader_epoch",
        "replicas", "isr", "offline_replicas"}]}]}`` (protocol.md, ``metadata``).
        """
        response = self._call("metadata", {"topics": topics})
        return {k: v for k, v in response.items() if k not in _ENVELOPE_FIELDS}

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

    def alter_topic_config(self, topic: str,
                           set: Optional[Mapping[str, Union[str, int]]] = None,
                           delete: Iterable[str] = (),
                           validate_only: bool = False) -> Dict[str, Union[str, int]]:
        """Changes the settings of ``topic``: each of ``set`` to its value, each
        key of ``delete`` back to the broker's default. With
        ``validate_only`` the change is only checked. Returns every setting of
        the topic after the change (as it would be, with ``validate_only``).

        Raises:
            HeraldError: UNKNOWN_TOPIC_OR_PARTITION; INVALID_CONFIG naming the
                key (nothing changed then).
        """
        fields: Dict[str, Any] = {"topic": topic, "set": dict(set or {}), "delete": list(delete),
                                  "validate_only": validate_only}
        config: Dict[str, Union[str, int]] = self._call("alter_topic_config", fields)["config"]
        return config

    def delete_records(self, topic: str, partition: int, offset: int) -> int:
        """Deletes the records of a partition before ``offset``
        (``DELETE_TO_HIGH_WATERMARK``, -1: all of them, up to the high
        watermark); returns the partition's new log start offset.

        Raises:
            HeraldError: OFFSET_OUT_OF_RANGE for an offset above the high
                watermark or negative (but -1); UNKNOWN_TOPIC_OR_PARTITION.
        """
        start: int = self._call("delete_records", {"topic": topic, "partition": partition,
                                                   "offset": offset})["log_start_offset"]
        return start

    # -- data ----------------------------------------------------------------

    def produce(self, topic: str, records: Iterable[RecordLike],
                partition: Optional[int] = None, acks: int = 1,
                compression: str = "none") -> Optional[List[Dict[str, Any]]]:
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
        ``compression`` ("none", "lz4" or "zstd") compresses each batch, when
        the broker lists the codec in its handshake's ``compression`` (the
        records then go uncompressed otherwise, as they do in ``records``).

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
        plan = plan_produce(self, topic, records, partition, acks, compression)
        results: List[Dict[str, Any]] = []
        for chunk in plan.chunks:
            producer = (self._next_producer_fields(topic, partition, len(chunk))
                        if plan.idempotent and partition is not None and chunk else None)
            body = plan.body(chunk, producer)
            if acks == 0:
                self._call("produce", body, expect_response=False)
                continue
            results.extend(produce_results(self._call("produce", body)))
            if producer is not None and partition is not None:
                self._sent(topic, partition, producer[2], len(chunk))
        return None if acks == 0 else results

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

    def find_coordinator(self, group_id: str) -> Tuple[int, str, int]:
        """The broker that coordinates ``group_id``, as ``(broker_id, host,
        port)``: the one every request about the group must go to (a broker
        alone answers itself). ``Cluster`` and ``GroupConsumer`` ask it
        themselves.

        Raises:
            HeraldError: COORDINATOR_NOT_AVAILABLE (15, retriable: no
                coordinator yet, ask again after a backoff),
                LEADER_NOT_AVAILABLE (5: ask another broker),
                INVALID_GROUP_ID, GROUP_AUTHORIZATION_FAILED; UNKNOWN_OPERATION,
                without sending, from a broker that does not list the operation.
        """
        answer = self._call("find_coordinator", {"group_id": group_id})
        return int(answer["broker_id"]), str(answer["host"]), int(answer["port"])

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
        by id; ``state`` is ``"Empty"``, ``"Reconciling"`` or ``"Stable"``.
        Only the groups this broker coordinates (a broker alone: every
        group); ``Cluster.list_groups`` asks every broker."""
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

