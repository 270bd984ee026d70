"""``GroupConsumer``: a consumer-group member that follows rebalances.

It owns two ``Cluster`` clients bootstrapped from the addresses it is given:
a background thread joins and heartbeats through one, on a connection to the
group's coordinator (the protocol ties a membership to the connection that
joined; that half is in ``heartbeat``), and the caller's thread uses the
other (this module) to commit and fetch offsets at the coordinator and to
fetch from each partition's leader. The state they share is guarded by one
condition variable; everything else belongs to the caller's thread.
"""

import logging
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple, Union

from .cluster import LOOK_AGAIN, SAME_LEADER, Address, Cluster, parse_bootstrap
from .coordinator import COORDINATOR_MOVED
from .errors import (
    FENCED_INSTANCE_ID,
    ILLEGAL_GENERATION,
    OFFSET_OUT_OF_RANGE,
    PARTITION_NOT_OWNED,
    UNKNOWN_MEMBER_ID,
    UNKNOWN_TOPIC_OR_PARTITION,
    HeraldError,
)
from .groups import GroupAssignment, OffsetsToCommit, TopicPartition, _topic_list
from .heartbeat import _HeartbeatThread
from .records import Record

_log = logging.getLogger("herald_client")

AUTO_OFFSET_RESETS = ("earliest", "latest", "none")

# Commit errors that mean the assignment moved on, or the coordinator did
# (auto-commit logs them).
_MEMBERSHIP_CODES = frozenset((UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, ILLEGAL_GENERATION,
                               PARTITION_NOT_OWNED)) | COORDINATOR_MOVED

PartitionCallback = Callable[[List[TopicPartition]], Any]


class GroupConsumer(_HeartbeatThread):
    """A member of a consumer group: consumes the partitions the broker
    assigns it, commits offsets, and follows rebalances.

    Two ``Cluster`` clients of the same bootstrap addresses: a background
    thread owns the *heartbeat* one; it joins on its connection to the
    group's coordinator (so its heartbeats and the final leave go over it, as
    the protocol requires) and keeps one heartbeat outstanding, a long poll
    the broker answers as soon as this member's assignment changes. The
    caller's thread uses the *data* one in ``poll``, ``commit`` and
    ``close``: commit and fetch_offsets to the coordinator, fetches (and
    offset lookups) to each partition's leader, following it when it moves.
    A fetch that the leader's moving keeps from answering within the
    ``poll`` returns nothing for the partition, at the same position. Apart
    from the background thread, a GroupConsumer is not thread-safe: call its
    methods from one thread.

    Every request about the group goes to its coordinator (protocol.md,
    "Groups in a cluster"; a broker alone coordinates every group). When it
    moves (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
    NOT_COORDINATOR, or a connection to it that fails) the member is not a
    member of the next coordinator: its partitions are lost (as below), and
    the thread looks for the coordinator again (backoff 100 ms doubling to
    1 s) and joins it without a member id (with ``group_instance_id``, if
    set); the partitions it gets start from their committed offsets.

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
    timed out or removed; the coordinator moved; or the heartbeat connection
    broke), the next ``poll`` drops every partition *without* committing and
    reports them to ``on_lost`` (``on_revoked`` when ``on_lost`` is None),
    while the thread joins again; a later ``poll`` applies the new
    membership's assignment. FENCED_INSTANCE_ID
    (another consumer joined with this one's ``group_instance_id``) stops the
    consumer instead, as in Kafka: ``poll`` and ``commit`` raise it from then
    on, and the newer consumer keeps the membership.

    Delivery is at least once: ``poll`` returns records, and their offsets are
    committed by ``commit``, by auto-commit at the start of a later ``poll``
    (every ``auto_commit_interval_ms``), at revocation, and at ``close``.

    Callbacks receive a sorted list of ``(topic, partition)`` and run in the
    thread that calls ``poll`` (or ``close``).
    """

    def __init__(self, host: Union[str, Iterable[Union[str, Address]]], port: Optional[int],
                 group_id: str, topics: Union[str, Iterable[str]],
                 client_id: str = "herald-python", group_instance_id: Optional[str] = None,
                 session_timeout_ms: int = 10000, rebalance_timeout_ms: Optional[int] = None,
                 assignor: Optional[str] = None, auto_offset_reset: str = "earliest",
                 auto_commit: bool = True, auto_commit_interval_ms: int = 5000,
                 on_assigned: Optional[PartitionCallback] = None,
                 on_revoked: Optional[PartitionCallback] = None,
                 on_lost: Optional[PartitionCallback] = None,
                 max_bytes: int = 1048576, fetch_max_wait_ms: int = 100,
                 timeout: float = 30.0, username: Optional[str] = None,
                 password: Optional[str] = None, *,
                 tls: Union[bool, ssl.SSLContext] = False, cafile: Optional[str] = None,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None,
                 server_hostname: Optional[str] = None):
        """Connects (two ``Cluster`` clients), joins the group at its
        coordinator and starts the heartbeat thread.

        The brokers are ``host`` and ``port``, or, with ``port`` None,
        ``host`` is a bootstrap list as ``Cluster`` takes it (``"h:p,h2:p2"``
        or a list of ``"h:p"`` or ``(h, p)``), tried in turn.

        ``assignor`` (``"range"``, ``"roundrobin"`` or ``"sticky"``) counts only
        for the first member of an empty group; the broker's default is
        sticky. ``auto_offset_reset`` decides where a partition without a
        committed offset (or whose offset fell out of the log) starts:
        ``"earliest"``, ``"latest"``, or ``"none"`` to raise instead.
        ``max_bytes`` limits each fetch; ``fetch_max_wait_ms`` is the longest
        one fetch long-polls an idle partition inside ``poll``. ``timeout``
        (seconds) bounds connecting and each request, and how long a request
        about the group (the join, a commit, ...) looks for the coordinator:
        ``timeout``, or the session timeout when longer. ``username`` and
        ``password`` authenticate every connection, and ``tls``, ``cafile``,
        ``certfile``, ``keyfile`` and ``server_hostname`` make them speak TLS
        (see ``Client``).

        Raises:
            HeraldError: from ``join_group`` (INVALID_GROUP_ID,
                INVALID_SESSION_TIMEOUT, UNSUPPORTED_ASSIGNOR, ...).
            OSError: if no broker, or not the coordinator, can be reached.
            ValueError: an unknown ``auto_offset_reset``; a bad bootstrap list.
        """
        if auto_offset_reset not in AUTO_OFFSET_RESETS:
            raise ValueError(f"auto_offset_reset must be one of {AUTO_OFFSET_RESETS}, "
                             f"got {auto_offset_reset!r}")
        if port is None:
            self.bootstrap: List[Address] = parse_bootstrap(host)
        elif isinstance(host, str):
            self.bootstrap = [(host, port)]
        else:
            raise ValueError("with a port, host is one host name; without, a bootstrap list")
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

        options: Dict[str, Any] = {"client_id": client_id, "timeout": timeout, "username": username,
                                   "password": password, "tls": tls, "cafile": cafile,
                                   "certfile": certfile, "keyfile": keyfile,
                                   "server_hostname": server_hostname}
        self._heartbeat_client = None
        # Commits and offsets at the coordinator; fetches and offset
        # lookups, each to its partition's leader.
        self._data = Cluster(self.bootstrap, **options)
        try:
            self._group = Cluster(self.bootstrap, **options)
        except BaseException:
            self._data.close()
            raise
        try:
            answer = self._join(retry_retriable=False)
            if answer is None:
                raise ConnectionError("group consumer is closed")
            self._accept(answer, lost=False)
        except BaseException:
            self._data.close()
            self._group.close()
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
            OSError: the coordinator (for a commit or the committed offsets
                of new partitions) could not be reached for ``timeout``.
        """
        self._check_open()
        deadline = time.monotonic() + timeout_ms / 1000
        self._auto_commit_if_due()
        while True:
            self._raise_thread_error()
            # A broker that went away (a restart, say) is connected to
            # again by the Cluster; the heartbeat thread joins again on its
            # own, and the next assignment starts from the committed offsets.
            self._apply_pending()
            owned = sorted(self._owned)
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            records = self._fetch_owned(owned, remaining_ms) if owned else []
            if records:
                return records
            if not owned:
                with self._cond:
                    self._cond.wait_for(lambda: self._pending is not None or self._error is not None,
                                        max(0, remaining_ms) / 1000)
            if time.monotonic() >= deadline:
                return []

    def commit(self, offsets: Optional[OffsetsToCommit] = None) -> None:
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
            self._thread.join(self._heartbeat_interval_ms / 1000 + self._retry_timeout() + 1)
            heartbeat_client = self._heartbeat_client
            if (leave_group and not self._thread.is_alive() and heartbeat_client is not None
                    and not heartbeat_client.closed):
                try:
                    heartbeat_client.leave_group(self.group_id, self._member_id)
                except (HeraldError, OSError) as err:
                    _log.info("group %s: leave of %s failed: %s", self.group_id, self._member_id, err)
            self._group.close()
            self._data.close()

    # -- applying assignments (caller's thread) --------------------------------

    def _retry_timeout(self) -> float:
        return max(self.timeout, self.session_timeout_ms / 1000)

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
        if answer is None:
            return  # the thread is joining again
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

    def _start_partitions(self, added: List[TopicPartition]) -> None:
        """Sets the positions of newly assigned partitions: their committed
        offsets, or by ``auto_offset_reset``."""
        committed = self._data.on_coordinator(self.group_id, lambda c: c.fetch_offsets(self.group_id, added),
                                              self._retry_timeout())
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
            return self._data.earliest_offset(topic, partition, retry_timeout=self.timeout)
        if self.auto_offset_reset == "latest":
            return self._data.latest_offset(topic, partition, retry_timeout=self.timeout)
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
        retry_timeout = max(0, remaining_ms) / 1000
        for tp in order:
            records.extend(self._fetch(tp, min_bytes=0, max_wait_ms=0, retry_timeout=retry_timeout))
        if records or remaining_ms <= 0:
            return records
        return self._fetch(order[0], min_bytes=1,
                           max_wait_ms=max(1, min(remaining_ms, self.fetch_max_wait_ms)),
                           retry_timeout=retry_timeout)

    def _fetch(self, tp: TopicPartition, min_bytes: int, max_wait_ms: int,
               retry_timeout: float) -> List[Tuple[str, int, Record]]:
        """Fetches from the partition's leader, following it for up to
        ``retry_timeout``; then (the leader is still moving, or unreachable)
        nothing, at the same position."""
        topic, partition = tp
        try:
            result = self._data.fetch(topic, partition, self._positions[tp], self.max_bytes,
                                      min_bytes=min_bytes, max_wait_ms=max_wait_ms,
                                      retry_timeout=retry_timeout)
        except OSError as err:
            _log.info("group %s: fetch of %s partition %d failed: %s", self.group_id, topic, partition, err)
            return []
        except HeraldError as err:
            if err.code in LOOK_AGAIN or err.code in SAME_LEADER:
                return []
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

    def _commit(self, offsets: OffsetsToCommit, member_id: Optional[str], generation_id: int) -> None:
        self._last_commit = time.monotonic()
        if not offsets:
            return
        if member_id is None:
            raise HeraldError(UNKNOWN_MEMBER_ID, "the consumer has no applied membership yet")
        # Sent again to the coordinator found after it moved: the new one
        # answers UNKNOWN_MEMBER_ID (the member is not its member), and
        # committing the same offsets twice is harmless.
        self._data.on_coordinator(
            self.group_id, lambda c: c.commit_offsets(self.group_id, offsets, member_id=member_id,
                                                      generation_id=generation_id),
            self._retry_timeout())
        for tp, value in offsets.items():
            self._committed[tp] = value[0] if isinstance(value, tuple) else value
