"""Groups in a cluster: each group's requests go to its coordinator.

protocol.md, "Groups in a cluster": every request about a group
(``join_group``, ``heartbeat``, ``leave_group``, ``commit_offsets``,
``fetch_offsets``, ``describe_group``, ``reset_offsets``, ``delete_group``)
goes to the broker ``find_coordinator`` names. On the answers that say it
moved or is not ready (``coordinator_moved``), or a connection to it that
fails or times out, the client waits a backoff (100 ms doubling to 1 s),
asks ``find_coordinator`` again, of any broker, and resends there, until a
deadline. A broker alone (``describe_cluster`` mode ``single``), or one
whose handshake does not list ``find_coordinator``, coordinates every
group: its requests go over the connection the client has.

``_GroupRouting`` is the half of ``Cluster`` that does this, with the group
administration through the coordinator and ``list_groups`` over every
broker.
"""

import time
from collections.abc import Iterable
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, TypeVar

from .client import Client
from .errors import (
    BROKER_SHUTTING_DOWN,
    COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE,
    LEADER_NOT_AVAILABLE,
    NOT_COORDINATOR,
    HeraldError,
)
from .groups import OffsetsToCommit, TopicPartition

_T = TypeVar("_T")
Address = Tuple[str, int]

COORDINATOR_MOVED = frozenset((COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR))
"""Answers to a request about a group after which the client asks
``find_coordinator`` again and resends: COORDINATOR_LOAD_IN_PROGRESS (14),
COORDINATOR_NOT_AVAILABLE (15), NOT_COORDINATOR (16). None of them stored
anything. A group member that gets one is no longer a member (of the broker
it will find): it joins again."""

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0


def coordinator_moved(error: BaseException) -> bool:
    """Whether ``error``, from a request about a group, means "look for the
    coordinator again": one of ``COORDINATOR_MOVED``, or a connection that
    failed, could not be opened or timed out (``OSError``)."""
    if isinstance(error, OSError):
        return True
    return isinstance(error, HeraldError) and error.code in COORDINATOR_MOVED


class _GroupRouting:
    """The methods of ``Cluster`` about groups (a base of ``Cluster``, which
    provides the connection handling declared here)."""

    timeout: float
    delivery_timeout: float
    _clients: Dict[Address, Client]
    _brokers: Dict[int, Address]
    _coordinators: Dict[str, Address]  # per group, where its requests went last
    _alone: Optional[bool]             # a broker alone (None: not asked yet)

    def _candidates(self) -> List[Address]:
        raise NotImplementedError

    def _any_address(self) -> Address:
        raise NotImplementedError

    def _connect(self, address: Address) -> Client:
        raise NotImplementedError

    def _drop(self, address: Address) -> None:
        raise NotImplementedError

    def _on_any(self, call: Callable[[Client], _T]) -> _T:
        raise NotImplementedError

    def _learn(self, answer: Dict[str, Any]) -> None:
        raise NotImplementedError

    # -- finding the coordinator -----------------------------------------------

    def find_coordinator(self, group_id: str, *,
                         retry_timeout: Optional[float] = None) -> Tuple[int, str, int]:
        """``Client.find_coordinator`` of any broker, as ``(broker_id, host,
        port)``; after COORDINATOR_NOT_AVAILABLE (no coordinator yet), or
        when no broker answers, again after a backoff for up to
        ``retry_timeout`` (default ``delivery_timeout``).

        Raises:
            HeraldError: INVALID_GROUP_ID, GROUP_AUTHORIZATION_FAILED; the
                last COORDINATOR_NOT_AVAILABLE when the deadline passed.
            OSError: no broker answered until the deadline.
        """
        deadline = time.monotonic() + (self.delivery_timeout if retry_timeout is None else retry_timeout)
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                return self._find_once(group_id)
            except (OSError, HeraldError) as err:
                if isinstance(err, HeraldError) and err.code != COORDINATOR_NOT_AVAILABLE:
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(max(0.0, min(backoff, deadline - time.monotonic())))
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _find_once(self, group_id: str) -> Tuple[int, str, int]:
        """``find_coordinator`` of the first broker that answers it: one
        answering LEADER_NOT_AVAILABLE or BROKER_SHUTTING_DOWN, or
        unreachable, passes to the next. When every broker reached answers
        one of those two, COORDINATOR_NOT_AVAILABLE is raised (none can name
        a coordinator now: the callers' retries apply); when none is
        reached, the last ``OSError``."""
        last: Optional[BaseException] = None
        for address in self._candidates():
            try:
                return self._connect(address).find_coordinator(group_id)
            except OSError as err:
                self._drop(address)
                if not isinstance(last, HeraldError):
                    last = err
            except HeraldError as err:
                if err.code not in (LEADER_NOT_AVAILABLE, BROKER_SHUTTING_DOWN):
                    raise
                last = err
        if isinstance(last, HeraldError):
            raise HeraldError(COORDINATOR_NOT_AVAILABLE,
                              f"no broker can name the coordinator of {group_id!r} now ({last})") from last
        raise last if last is not None else ConnectionError("no broker address known")

    def coordinator(self, group_id: str) -> Client:
        """A client connected to the group's coordinator: the one used last
        for the group while its connection is open, else the one
        ``find_coordinator`` names now (a broker alone: the client of any
        broker, itself). One attempt: ``on_coordinator`` retries.

        Raises:
            HeraldError: COORDINATOR_NOT_AVAILABLE while there is none,
                INVALID_GROUP_ID, GROUP_AUTHORIZATION_FAILED.
            OSError: no broker, or not the coordinator, could be reached.
        """
        address = self._coordinators.get(group_id)
        if address is not None:
            client = self._clients.get(address)
            if client is not None and not client.closed:
                return client
            del self._coordinators[group_id]
        if self._single():
            address = self._any_address()
        else:
            _, host, port = self._find_once(group_id)
            address = (host, port)
        client = self._connect(address)
        self._coordinators[group_id] = address
        return client

    def forget_coordinator(self, group_id: str, drop: bool = False) -> None:
        """Forgets where the group's coordinator is, so that the next request
        looks again; with ``drop``, closes the connection to it too."""
        address = self._coordinators.pop(group_id, None)
        if drop and address is not None:
            self._drop(address)

    def on_coordinator(self, group_id: str, send: Callable[[Client], _T],
                       retry_timeout: Optional[float] = None, resend_unanswered: bool = True) -> _T:
        """``send`` on the client of the group's coordinator; after
        ``coordinator_moved`` errors, waits a backoff (100 ms doubling to
        1 s), looks for the coordinator again and sends again, for up to
        ``retry_timeout`` seconds (default ``delivery_timeout``); then
        raises the last error. A connection that failed is closed.
        With ``resend_unanswered`` False a request whose connection failed
        after it was sent (its outcome unknown) is not sent again: the
        error is raised.

        Raises:
            HeraldError: ``send``'s errors other than 14, 15, 16; the last of
                those when the deadline passed.
            OSError: the last connection error when the deadline passed.
        """
        deadline = time.monotonic() + (self.delivery_timeout if retry_timeout is None else retry_timeout)
        backoff = FIRST_BACKOFF_S
        while True:
            sent = False
            try:
                client = self.coordinator(group_id)
                sent = True
                return send(client)
            except (OSError, HeraldError) as err:
                if not coordinator_moved(err):
                    raise
                self.forget_coordinator(group_id, drop=isinstance(err, OSError))
                if sent and not resend_unanswered and isinstance(err, OSError):
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(max(0.0, min(backoff, deadline - time.monotonic())))
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _single(self) -> bool:
        """Whether the brokers are a broker alone (or too old to name a
        coordinator): then every group's requests go to it."""
        if self._alone is None:
            client = self._connect(self._any_address())
            if not client.supports("find_coordinator"):
                self._alone = True
            else:
                self._alone = self._on_any(lambda c: c.describe_cluster())["mode"] == "single"
        return self._alone

    # -- group administration, through the coordinator ----------------------------

    def describe_group(self, group_id: str, *, retry_timeout: Optional[float] = None) -> Dict[str, Any]:
        """``Client.describe_group`` of the group's coordinator."""
        return self.on_coordinator(group_id, lambda c: c.describe_group(group_id), retry_timeout)

    def delete_group(self, group_id: str, *, retry_timeout: Optional[float] = None) -> None:
        """``Client.delete_group`` on the group's coordinator. Not sent again
        after a connection failed under it (it may have been deleted): the
        ``OSError`` is raised."""
        self.on_coordinator(group_id, lambda c: c.delete_group(group_id), retry_timeout,
                            resend_unanswered=False)

    def reset_offsets(self, group_id: str, topic: str, to: str, value: Optional[int] = None,
                      partitions: Optional[Iterable[int]] = None, execute: bool = False, *,
                      retry_timeout: Optional[float] = None) -> Dict[str, Any]:
        """``Client.reset_offsets`` on the group's coordinator. An executed
        ``"shift"`` is not sent again after a connection failed under it (it
        may have moved the offsets already): the ``OSError`` is raised."""
        wanted = None if partitions is None else list(partitions)
        return self.on_coordinator(group_id, lambda c: c.reset_offsets(group_id, topic, to, value, wanted, execute),
                                   retry_timeout, resend_unanswered=not (execute and to == "shift"))

    def fetch_offsets(self, group_id: str, partitions: Optional[Iterable[TopicPartition]] = None, *,
                      retry_timeout: Optional[float] = None) -> Dict[TopicPartition, int]:
        """``Client.fetch_offsets`` (the offsets alone) of the group's coordinator."""
        wanted = None if partitions is None else list(partitions)
        return self.on_coordinator(group_id, lambda c: c.fetch_offsets(group_id, wanted), retry_timeout)

    def commit_offsets(self, group_id: str, offsets: OffsetsToCommit, member_id: Optional[str] = None,
                       generation_id: int = -1, *, retry_timeout: Optional[float] = None) -> None:
        """``Client.commit_offsets`` on the group's coordinator (the same
        offsets again after a failure: committing them twice is harmless).
        A member of the group commits through its ``GroupConsumer``."""
        self.on_coordinator(group_id, lambda c: c.commit_offsets(group_id, offsets, member_id, generation_id),
                            retry_timeout)

    def list_groups(self, *, retry_timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """Every group of the cluster: ``Client.list_groups`` of every broker
        ``metadata`` lists (each answers the groups it coordinates), merged
        by ``group_id`` and sorted. A broker that cannot be reached is asked
        again, after a backoff and a fresh ``metadata``, while it is listed,
        for up to ``retry_timeout`` (default ``delivery_timeout``).

        Raises:
            OSError: a listed broker stayed unreachable until the deadline.
        """
        deadline = time.monotonic() + (self.delivery_timeout if retry_timeout is None else retry_timeout)
        backoff = FIRST_BACKOFF_S
        groups: Dict[str, Dict[str, Any]] = {}
        answered: Set[Address] = set()
        while True:
            self._learn(self._on_any(lambda c: c.metadata([])))
            last: Optional[BaseException] = None
            for address in sorted(set(self._brokers.values()) - answered):
                try:
                    listed = self._connect(address).list_groups()
                except OSError as err:
                    self._drop(address)
                    last = err
                    continue
                except HeraldError as err:
                    if err.code != BROKER_SHUTTING_DOWN:
                        raise
                    last = err
                    continue
                answered.add(address)
                for group in listed:
                    groups.setdefault(group["group_id"], group)
            if last is None:
                return [groups[g] for g in sorted(groups)]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise last
            time.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, MAX_BACKOFF_S)

