"""The heartbeat thread of a ``GroupConsumer``: its half of the membership.

The thread owns the heartbeat connection. It joins on it (the protocol ties a
membership to the connection that joined, so heartbeats and the final leave
go over it too) and keeps one heartbeat outstanding, a long poll the broker
answers as soon as the member's assignment changes. It never applies an
answer itself: it publishes each one (``_pending``) for the caller's thread
to apply in ``poll``, and reports what that thread has applied (``_owned`` at
``_applied_generation``) in its next heartbeat.

When the membership is lost (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, a
session timeout without an answer, or a broken connection) it joins again at
once and marks the answer as lost, so that ``poll`` drops the partitions
without committing. FENCED_INSTANCE_ID is different: another consumer joined
with this one's ``group_instance_id`` and replaced it, and joining again would
fence that one in turn, for ever; the thread stops (as Kafka's consumer does)
and ``poll`` raises the error. Any other error it cannot handle stops it too;
``poll`` raises that error.

The heartbeat connection is the thread's own ``Cluster``'s connection to the
group's coordinator (protocol.md, "Groups in a cluster"; a broker alone is
its own). When the coordinator moves (a heartbeat or join answered 14, 15 or
16, or the connection fails) the member is not a member of the next one: the
thread marks the partitions lost at once (``poll`` stops consuming them),
closes the connection, looks for the coordinator again after a backoff and
joins it without a member id (with the ``group_instance_id``, if any).
"""

import logging
import threading
import time
from typing import FrozenSet, List, Optional

from .client import Client
from .cluster import Cluster
from .coordinator import FIRST_BACKOFF_S, MAX_BACKOFF_S, coordinator_moved
from .errors import FENCED_INSTANCE_ID, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, HeraldError
from .groups import GroupAssignment, TopicPartition

_log = logging.getLogger("herald_client")

# Heartbeat errors after which the member is gone and must join again.
_LOST_CODES = frozenset((UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION))


class _HeartbeatThread:
    """The methods ``GroupConsumer`` runs in its heartbeat thread.

    A base of ``GroupConsumer``, which sets every attribute declared here.
    The state shared with the caller's thread is read and written with
    ``_cond`` held.
    """

    # Settings (read-only after construction).
    group_id: str
    topics: List[str]
    group_instance_id: Optional[str]
    session_timeout_ms: int
    rebalance_timeout_ms: Optional[int]
    assignor: Optional[str]
    # Owned by the thread (by the constructor before it starts, by close
    # after it stopped).
    _group: Cluster                       # its connections, to the coordinator
    _heartbeat_client: Optional[Client]   # the connection that joined
    # Shared, under _cond: written by the thread...
    _cond: threading.Condition
    _member_id: str
    _heartbeat_interval_ms: int
    _pending: Optional[GroupAssignment]
    _pending_lost: bool
    _error: Optional[BaseException]
    # ... and by the caller's thread.
    _applied_member: Optional[str]
    _applied_generation: int
    _owned: FrozenSet[TopicPartition]
    _closing: bool

    def _answer_applied(self, answer: Optional[GroupAssignment]) -> bool:
        """Whether ``answer`` is what is applied now (call with the lock held)."""
        return (answer is not None and not self._pending_lost
                and answer.member_id == self._applied_member
                and answer.generation_id == self._applied_generation
                and frozenset(answer.assignment) == self._owned)

    def _retry_timeout(self) -> float:
        """How long a request about the group looks for the coordinator (s)."""
        raise NotImplementedError

    def _join(self, retry_retriable: bool) -> Optional[GroupAssignment]:
        """Joins the group on a connection to its coordinator, looking for it
        again (after a backoff) on the answers that say it moved or a
        failed connection, and with ``retry_retriable`` after any retriable
        answer, for up to ``_retry_timeout``; None if the consumer closes
        meanwhile.

        Raises:
            HeraldError: join errors (the last retriable one after the deadline).
            OSError: no coordinator could be reached until the deadline.
        """
        deadline = time.monotonic() + self._retry_timeout()
        backoff = FIRST_BACKOFF_S
        while True:
            with self._cond:
                if self._closing:
                    return None
            try:
                self._heartbeat_client = self._group.coordinator(self.group_id)
                return self._heartbeat_client.join_group(
                    self.group_id, self.topics, group_instance_id=self.group_instance_id,
                    session_timeout_ms=self.session_timeout_ms,
                    rebalance_timeout_ms=self.rebalance_timeout_ms, assignor=self.assignor)
            except (HeraldError, OSError) as err:
                if coordinator_moved(err):
                    self._forget_coordinator()
                elif not (retry_retriable and isinstance(err, HeraldError) and err.retriable):
                    raise
                if time.monotonic() >= deadline:
                    raise
            self._sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _forget_coordinator(self) -> None:
        """Closes the heartbeat connection (a membership it still carries
        ends with it) and forgets where the coordinator is."""
        self._group.forget_coordinator(self.group_id, drop=True)
        if self._heartbeat_client is not None:
            self._heartbeat_client.close()

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
                    if err.code == FENCED_INSTANCE_ID:
                        raise HeraldError(FENCED_INSTANCE_ID, (
                            f"another consumer joined group {self.group_id!r} with group_instance_id "
                            f"{self.group_instance_id!r} and replaced this one ({err.message})")) from err
                    if coordinator_moved(err):
                        self._forget_coordinator()
                        self._rejoin(err)
                        answered = time.monotonic()
                    elif err.code in _LOST_CODES or (
                            err.retriable
                            and (time.monotonic() - answered) * 1000 > self.session_timeout_ms):
                        self._rejoin(err)
                        answered = time.monotonic()
                    elif err.retriable:
                        self._sleep(0.1)
                    else:
                        raise
                    continue
                except OSError as err:
                    self._forget_coordinator()
                    self._rejoin(err)
                    answered = time.monotonic()
                    continue
                answered = time.monotonic()
                self._accept(answer, lost=False)
        except BaseException as exc:  # handed to poll
            _log.error("group %s: heartbeat thread stopped: %s", self.group_id, exc)
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _rejoin(self, why: BaseException) -> None:
        """Joins again after the membership was lost. The partitions are
        lost at once: ``poll`` stops consuming them before the new
        membership's answer arrives."""
        _log.warning("group %s: member %s lost its membership (%s); joining again",
                     self.group_id, self._member_id, why)
        with self._cond:
            self._pending, self._pending_lost = None, True
            self._cond.notify_all()
        answer = self._join(retry_retriable=True)
        if answer is not None:
            self._accept(answer, lost=True)

    def _sleep(self, seconds: float) -> None:
        """Waits ``seconds``, or less when the consumer closes."""
        with self._cond:
            self._cond.wait_for(lambda: self._closing, seconds)

