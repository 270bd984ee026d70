"""``Cluster``: a client of a Herald cluster that follows partition leaders.

What protocol.md's "Following leaders" says a client does: bootstrap from a
list of addresses, send ``produce``, ``fetch`` and ``list_offsets`` of a
partition to its leader as ``metadata`` names it, and on an answer that says
the leader moved (or a connection that failed) wait a backoff, ask
``metadata`` again and send the same request to the leader now listed, until
a deadline. Produce is idempotent: a batch sent again is the same bytes, so
a leader that already holds it answers with its first offsets.

Requests about a consumer group go to the group's coordinator instead
(protocol.md, "Groups in a cluster"); that half of ``Cluster`` is in
``coordinator``.
"""

import ssl
import time
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, TypeVar, Union

from .client import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, Client
from .coordinator import FIRST_BACKOFF_S, MAX_BACKOFF_S, _GroupRouting
from .errors import UNKNOWN_TOPIC_OR_PARTITION, HeraldError
from .partitioner import partition_for_key
from .produce import plan_produce, produce_results
from .records import FetchResult, RecordLike, _encode_record

_T = TypeVar("_T")
Address = Tuple[str, int]

LOOK_AGAIN = frozenset((6, 74, 75, 5, 1003))
"""Answers after which the client asks ``metadata`` again before resending:
NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH,
LEADER_NOT_AVAILABLE, BROKER_SHUTTING_DOWN (UNKNOWN_TOPIC_OR_PARTITION too,
for a topic ``metadata`` listed)."""

SAME_LEADER = frozenset((19, 7, 20))
"""Answers after which the client resends to the same leader after a
backoff: NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT,
NOT_ENOUGH_REPLICAS_AFTER_APPEND (the last two may follow an append, so a
resent batch is safe only from an idempotent producer)."""

MAYBE_STORED = frozenset((6, 7, 20, 45, 47))
"""Produce answers after which the batch may be stored (6: an ``acks`` -1
append when the partition stopped leading), or the sequences are off (45,
47): a batch that then fails ends its producer id."""

DEFAULT_DELIVERY_TIMEOUT_S = 120.0


def _maybe_stored(error: BaseException) -> bool:
    """Whether a produce that failed so may have been appended all the same
    (protocol.md, "Which produce answers leave the outcome unknown"), or
    the producer's sequences can no longer be trusted (45, 47)."""
    if isinstance(error, OSError):
        return True
    return isinstance(error, HeraldError) and error.code in MAYBE_STORED


def parse_bootstrap(bootstrap: Union[str, Iterable[Union[str, Address]]]) -> List[Address]:
    """``"h:p,h2:p2"``, or a list of ``"h:p"`` or ``(h, p)``, as addresses."""
    items: Iterable[Union[str, Address]] = bootstrap.split(",") if isinstance(bootstrap, str) else bootstrap
    addresses: List[Address] = []
    for item in items:
        if isinstance(item, tuple):
            addresses.append((item[0], int(item[1])))
            continue
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"a bootstrap address is host:port, not {item!r}")
        addresses.append((host.strip("[]"), int(port)))
    if not addresses:
        raise ValueError("no bootstrap address")
    return addresses


class Cluster(_GroupRouting):
    """A client of a Herald cluster (or of a broker alone) that sends each
    partition's requests to its leader, and each group's to its coordinator
    (``coordinator``, ``on_coordinator`` and the group administration of
    ``coordinator.py``); see ``__init__``.

    Not thread-safe: one request at a time, as ``Client``.
    """

    idempotent: bool = True
    """Whether ``produce`` sends idempotent batches (``acks`` 1 or -1)."""

    def __init__(self, bootstrap: Union[str, Iterable[Union[str, Address]]],
                 client_id: str = "herald-python", timeout: float = 30.0,
                 username: Optional[str] = None, password: Optional[str] = None, *,
                 delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT_S,
                 tls: Union[bool, ssl.SSLContext] = False, cafile: Optional[str] = None,
                 certfile: Optional[str] = None, keyfile: Optional[str] = None,
                 server_hostname: Optional[str] = None):
        """Connects to the first of ``bootstrap`` that accepts (trying each
        in turn) and learns the brokers from its ``metadata``.

        ``bootstrap`` is ``"host:port,host:port"`` or a list of ``"host:port"``
        or ``(host, port)``. ``timeout`` (seconds) bounds connecting and each
        request; ``delivery_timeout`` (seconds, default 120) bounds how long
        ``produce``, ``fetch``, ``list_offsets`` and the requests about
        groups retry. The other
        arguments are ``Client``'s, for every connection.

        Raises:
            OSError: no bootstrap address accepts (the last one's error).
            HeraldError: a handshake or authentication error.
        """
        self.bootstrap = parse_bootstrap(bootstrap)
        self.client_id = client_id
        self.timeout = timeout
        self.delivery_timeout = delivery_timeout
        self._options: Dict[str, Any] = {"username": username, "password": password, "tls": tls,
                                         "cafile": cafile, "certfile": certfile, "keyfile": keyfile,
                                         "server_hostname": server_hostname}
        self._clients: Dict[Address, Client] = {}
        self._brokers: Dict[int, Address] = {}
        self._partitions: Dict[str, Dict[int, Dict[str, Any]]] = {}  # listed topics' partitions
        self._topics: Set[str] = set()  # the topics this client used, asked of `metadata`
        self._keyless: Dict[str, int] = {}  # per topic: where a call's records without a key go next
        self._producer: Optional[Tuple[int, int]] = None
        self._sequences: Dict[Tuple[str, int], int] = {}
        self._coordinators: Dict[str, Address] = {}
        self._alone: Optional[bool] = None
        try:
            self._learn(self._any().metadata([]))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes every connection; calling it again does nothing."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._coordinators.clear()

    # -- data, to the leaders ------------------------------------------------

    def produce(self, topic: str, partition: Optional[int], records: Iterable[RecordLike], acks: int = -1,
                compression: str = "none") -> Optional[List[Dict[str, Any]]]:
        """Appends ``records`` to ``partition`` of ``topic`` on its leader.

        With ``partition`` None the client places each record itself, as the
        broker would: a keyed record by Kafka's default partitioner
        (``partition_for_key``), the records without a key of one call
        together on one partition, the next partition at each call. The
        records of each partition then go as below, partition by partition in
        the order each first appears; the results of all are returned.

        As ``Client.produce`` (records, splitting into requests, results,
        ``compression``), with ``acks`` -1 by default. Each request is
        resent on the answers of protocol.md's "Following leaders" until
        ``delivery_timeout`` after this call: the same bytes, so an idempotent
        batch is stored once. A request's sequence moves on only once it is
        answered. When a batch fails after an attempt whose outcome is
        unknown (a failed connection, 6, 7 or 20: it may be stored), or
        with 45 or 47, the producer id is dropped: the next batch asks for a
        new one and numbers from 0.

        Raises:
            HeraldError: the last error when the deadline passed, or one that
                is not retried (an unknown topic or partition, MESSAGE_TOO_LARGE,
                OUT_OF_ORDER_SEQUENCE_NUMBER, ...). The requests before it were
                stored.
            OSError: the last connection error, when the deadline passed.
        """
        if partition is None:
            results: List[Dict[str, Any]] = []
            for p, placed in self._place(topic, records).items():
                answered = self._produce_partition(topic, p, placed, acks, compression)
                results.extend(answered or [])
            return None if acks == 0 else results
        return self._produce_partition(topic, partition, records, acks, compression)

    def _place(self, topic: str, records: Iterable[RecordLike]) -> Dict[int, List[RecordLike]]:
        """``records`` by the partition each goes to (see ``produce``), in
        the order each partition first appears."""
        count = len(self.partitions(topic))
        if count == 0:
            raise HeraldError(UNKNOWN_TOPIC_OR_PARTITION, f"topic {topic!r} has no partitions")
        keyless = self._keyless.get(topic, 0) % count
        self._keyless[topic] = keyless + 1
        placed: Dict[int, List[RecordLike]] = {}
        for record in records:
            encoded = _encode_record(record)
            key = encoded.get("key")
            p = keyless if key is None else partition_for_key(key, count)
            placed.setdefault(p, []).append(encoded)
        return placed

    def _produce_partition(self, topic: str, partition: int, records: Iterable[RecordLike], acks: int,
                           compression: str) -> Optional[List[Dict[str, Any]]]:
        """``produce`` to one partition."""
        deadline = time.monotonic() + self.delivery_timeout
        self._topics.add(topic)
        plan = plan_produce(self._any(), topic, records, partition, acks, compression)
        results: List[Dict[str, Any]] = []
        for chunk in plan.chunks:
            producer = (self._producer_fields(topic, partition)
                        if self.idempotent and plan.idempotent and chunk else None)
            body = plan.body(chunk, producer)
            if acks == 0:
                self._on_leader(topic, partition, deadline,
                                lambda c: c._call("produce", body, expect_response=False))
                continue
            errors: List[BaseException] = []
            try:
                results.extend(self._on_leader(topic, partition, deadline,
                                               lambda c: produce_results(c._call("produce", body)), errors))
            except BaseException as err:
                if producer is not None and any(_maybe_stored(e) for e in errors + [err]):
                    self._producer, self._sequences = None, {}
                raise
            if producer is not None:
                self._sequences[(topic, partition)] = (producer[2] + len(chunk)) % (1 << 31)
        return None if acks == 0 else results

    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 1048576,
              min_bytes: int = 0, max_wait_ms: int = 0, *,
              retry_timeout: Optional[float] = None) -> FetchResult:
        """``Client.fetch`` from the partition's leader; after the answers of
        a leader change, at the same offset again from the new leader, for up
        to ``retry_timeout`` seconds (default ``delivery_timeout``)."""
        self._topics.add(topic)
        return self._on_leader(topic, partition, self._deadline(retry_timeout),
                               lambda c: c.fetch(topic, partition, offset, max_bytes, min_bytes, max_wait_ms))

    def list_offsets(self, topic: str, partition: int, timestamp: int, *,
                     retry_timeout: Optional[float] = None) -> int:
        """``Client.list_offsets`` of the partition's leader, retried as ``fetch``."""
        self._topics.add(topic)
        return self._on_leader(topic, partition, self._deadline(retry_timeout),
                               lambda c: c.list_offsets(topic, partition, timestamp))

    def earliest_offset(self, topic: str, partition: int, *, retry_timeout: Optional[float] = None) -> int:
        """The partition's log start offset, from its leader."""
        return self.list_offsets(topic, partition, EARLIEST_TIMESTAMP, retry_timeout=retry_timeout)

    def latest_offset(self, topic: str, partition: int, *, retry_timeout: Optional[float] = None) -> int:
        """The partition's high watermark, from its leader."""
        return self.list_offsets(topic, partition, LATEST_TIMESTAMP, retry_timeout=retry_timeout)

    def _deadline(self, retry_timeout: Optional[float]) -> float:
        return time.monotonic() + (self.delivery_timeout if retry_timeout is None else retry_timeout)

    # -- metadata ----------------------------------------------------------------

    def metadata(self, topics: Optional[List[str]] = None) -> Dict[str, Any]:
        """``Client.metadata`` of any broker; what it says is kept for routing."""
        answer = self._any().metadata(topics)
        self._learn(answer)
        return answer

    def partitions(self, topic: str) -> List[int]:
        """The partitions of ``topic``, as ``metadata`` lists them.

        Raises:
            HeraldError: UNKNOWN_TOPIC_OR_PARTITION, TOPIC_AUTHORIZATION_FAILED.
        """
        self._topics.add(topic)
        if topic not in self._partitions:
            self._refresh(topic)
        return sorted(self._partition_rows(topic))

    def leader(self, topic: str, partition: int) -> int:
        """The id of the partition's leader as last listed (-1: none)."""
        self._topics.add(topic)
        if topic not in self._partitions:
            self._refresh(topic)
        row = self._partition_rows(topic).get(partition)
        return -1 if row is None else int(row["leader"])

    # -- administration, to any broker ---------------------------------------------

    def client(self) -> Client:
        """A connected ``Client`` of some broker, for the requests that may
        go to any (ACLs, users, quotas, ...); a group's go to
        ``coordinator(group_id)``."""
        return self._any()

    def create_topic(self, topic: str, partitions: int,
                     config: Optional[Mapping[str, Union[str, int]]] = None,
                     replication_factor: Optional[int] = None) -> None:
        """``Client.create_topic``, then waits (up to ``timeout``) until the
        same broker's ``metadata`` lists the topic, so that the next
        ``produce`` finds it."""
        client = self._any()
        client.create_topic(topic, partitions, config, replication_factor)
        self._topics.add(topic)
        deadline = time.monotonic() + self.timeout
        while True:
            self._learn(client.metadata([topic]))
            if topic in self._partitions or time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    def delete_topic(self, topic: str) -> None:
        """``Client.delete_topic`` through any broker."""
        self._any().delete_topic(topic)
        self._partitions.pop(topic, None)
        self._topics.discard(topic)

    def list_topics(self) -> List[Dict[str, Any]]:
        """``Client.list_topics`` of any broker."""
        return self._any().list_topics()

    def describe_topic(self, topic: str) -> Dict[str, Any]:
        """``Client.describe_topic`` of any broker (its own replica's sizes and offsets)."""
        return self._any().describe_topic(topic)

    def describe_cluster(self) -> Dict[str, Any]:
        """``Client.describe_cluster`` of any broker."""
        return self._any().describe_cluster()

    # -- routing and retries -------------------------------------------------------

    def _on_leader(self, topic: str, partition: int, deadline: float, send: Callable[[Client], _T],
                   errors: Optional[List[BaseException]] = None) -> _T:
        """``send`` on the leader's client, again after the answers that say
        the leader moved or a failed connection, until ``deadline``; then
        raises the last error. Each error retried is added to ``errors``."""
        backoff = FIRST_BACKOFF_S
        look_again = False
        last: Optional[BaseException] = None
        while True:
            address: Optional[Address] = None
            try:
                if look_again:
                    look_again = False
                    self._refresh(topic)
                address = self._leader_address(topic, partition)
                if address is None:
                    raise HeraldError(5, f"{topic} partition {partition} has no leader yet")
                return send(self._connect(address))
            except OSError as err:
                if address is not None:
                    self._drop(address)
                last = err
                look_again = True
            except HeraldError as err:
                if err.code in SAME_LEADER:
                    pass
                elif err.code in LOOK_AGAIN or (err.code == UNKNOWN_TOPIC_OR_PARTITION
                                                and partition in self._partitions.get(topic, {})):
                    look_again = True
                else:
                    raise
                last = err
            if errors is not None and last is not None:
                errors.append(last)
            remaining = deadline - time.monotonic()
            if remaining <= 0 and last is not None:
                raise last
            time.sleep(max(0.0, min(backoff, remaining)))
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _leader_address(self, topic: str, partition: int) -> Optional[Address]:
        """Where the partition's leader listens; None while it has none.

        Raises:
            HeraldError: the topic is not listed (``metadata``'s error for it),
                or has no such partition (UNKNOWN_TOPIC_OR_PARTITION).
        """
        if topic not in self._partitions:
            self._refresh(topic)
        row = self._partition_rows(topic).get(partition)
        if row is None:
            raise HeraldError(UNKNOWN_TOPIC_OR_PARTITION, f"topic {topic} has no partition {partition}")
        return self._brokers.get(int(row["leader"]))

    def _partition_rows(self, topic: str) -> Dict[int, Dict[str, Any]]:
        rows = self._partitions.get(topic)
        if rows is None:
            raise HeraldError(UNKNOWN_TOPIC_OR_PARTITION, f"metadata lists no topic {topic}")
        return rows

    def _refresh(self, topic: str) -> None:
        """Asks ``metadata`` for the topics in use, of a broker this client is
        connected to, else of one the last answer listed, else of a bootstrap
        address.

        Raises:
            HeraldError: ``metadata``'s error for ``topic`` (unknown, not allowed).
            OSError: no broker answered.
        """
        self._topics.add(topic)
        answer = self._on_any(lambda c: c.metadata(sorted(self._topics)))
        self._learn(answer)
        for listed in answer["topics"]:
            if listed["topic"] == topic and listed["error_code"]:
                raise HeraldError(listed["error_code"], f"metadata for {topic}")

    def _learn(self, answer: Dict[str, Any]) -> None:
        """Keeps the brokers and partitions a ``metadata`` answer lists."""
        self._brokers = {int(b["id"]): (str(b["host"]), int(b["port"])) for b in answer["brokers"]}
        for listed in answer["topics"]:
            if listed["error_code"]:
                self._partitions.pop(listed["topic"], None)
            else:
                self._partitions[listed["topic"]] = {int(p["partition"]): p for p in listed["partitions"]}

    def _producer_fields(self, topic: str, partition: int) -> Optional[Tuple[int, int, int]]:
        """The producer id, epoch and next sequence of the partition; None
        when the brokers have no idempotent producers."""
        if self._producer is None:
            client = self._any()
            if not client.supports("init_producer_id"):
                return None
            self._producer = self._on_any(lambda c: c.init_producer_id())
            self._sequences = {}
        producer_id, epoch = self._producer
        return producer_id, epoch, self._sequences.get((topic, partition), 0)

    def _candidates(self) -> List[Address]:
        """The connected brokers, then those ``metadata`` listed, then the bootstrap addresses."""
        ordered = [a for a, c in self._clients.items() if not c.closed]
        ordered += list(self._brokers.values()) + self.bootstrap
        return list(dict.fromkeys(ordered))

    def _any(self) -> Client:
        """A connected client: the first candidate that accepts.

        Raises:
            OSError: none does (the last one's error).
        """
        return self._connect(self._any_address())

    def _any_address(self) -> Address:
        """The address of the first candidate that accepts a connection
        (kept connected).

        Raises:
            OSError: none does (the last one's error).
        """
        last: Optional[OSError] = None
        for address in self._candidates():
            try:
                self._connect(address)
                return address
            except OSError as err:
                last = err
        raise last if last is not None else ConnectionError("no broker address known")

    def _on_any(self, call: Callable[[Client], _T]) -> _T:
        """``call`` on the first candidate that answers it; a failed
        connection, or a broker shutting down, passes to the next."""
        last: Optional[BaseException] = None
        for address in self._candidates():
            try:
                return call(self._connect(address))
            except OSError as err:
                self._drop(address)
                last = err
            except HeraldError as err:
                if err.code != 1003:
                    raise
                last = err
        raise last if last is not None else ConnectionError("no broker address known")

    def _connect(self, address: Address) -> Client:
        client = self._clients.get(address)
        if client is not None and not client.closed:
            return client
        client = Client(address[0], address[1], client_id=self.client_id, timeout=self.timeout,
                        **self._options)
        self._clients[address] = client
        return client

    def _drop(self, address: Address) -> None:
        client = self._clients.pop(address, None)
        if client is not None:
            client.close()
