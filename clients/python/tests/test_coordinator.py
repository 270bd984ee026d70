"""Groups go to their coordinator (protocol.md, "Groups in a cluster"):
``find_coordinator``, ``Cluster``'s group requests and ``GroupConsumer``,
against a real broker alone (its own coordinator) and a real cluster (the
``cluster`` fixture of test_cluster: ZooKeeper and three brokers); which
answers make the client look for the coordinator again.
"""

import errno
import socket
import time
from typing import List, Tuple

import pytest

from conftest import Broker
from herald_client import (
    COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_MOVED,
    COORDINATOR_NOT_AVAILABLE,
    NOT_COORDINATOR,
    Client,
    Cluster,
    GroupConsumer,
    HeraldError,
    coordinator_moved,
)
from test_cluster import Brokers, _dead_address, cluster  # noqa: F401 (a fixture)

TP = Tuple[str, int]
SESSION_MS = 1500


def address(broker: Broker) -> str:
    return f"{broker.host}:{broker.port}"


def consume(consumer: GroupConsumer, count: int, timeout: float = 20.0) -> List[bytes]:
    """Polls until ``count`` records came; returns their values."""
    values: List[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < count:
        assert time.monotonic() < deadline, f"consumed only {len(values)} of {count}: {sorted(values)}"
        values.extend(record.value or b"" for _, _, record in consumer.poll(timeout_ms=200))
    return values


# -- which answers mean "look again" (no broker) -----------------------------------


@pytest.mark.parametrize("code", [COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR])
def test_offline_coordinator_codes_mean_look_again(code):
    assert coordinator_moved(HeraldError(code))
    assert COORDINATOR_MOVED == {14, 15, 16}


@pytest.mark.parametrize("error", [
    ConnectionError("broker closed the connection"),
    ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    socket.timeout("timed out"),
    OSError(errno.EHOSTUNREACH, "no route"),
])
def test_offline_a_failed_or_timed_out_connection_means_look_again(error):
    assert coordinator_moved(error)


@pytest.mark.parametrize("code", [
    3,     # UNKNOWN_TOPIC_OR_PARTITION
    5,     # LEADER_NOT_AVAILABLE: about a partition, not a group
    6,     # NOT_LEADER_OR_FOLLOWER: likewise
    22,    # ILLEGAL_GENERATION
    24,    # INVALID_GROUP_ID
    25,    # UNKNOWN_MEMBER_ID: join again, at the same coordinator
    30,    # GROUP_AUTHORIZATION_FAILED
    69,    # GROUP_ID_NOT_FOUND
    82,    # FENCED_INSTANCE_ID
    1004,  # PARTITION_NOT_OWNED
])
def test_offline_other_answers_do_not_mean_look_again(code):
    assert not coordinator_moved(HeraldError(code))


def test_offline_a_bootstrap_list_and_a_port_do_not_go_together():
    with pytest.raises(ValueError):
        GroupConsumer(["127.0.0.1:1"], 9092, "g", "t")
    with pytest.raises(ValueError):
        GroupConsumer([], None, "g", "t")


# -- a broker alone ---------------------------------------------------------------------


def test_a_broker_alone_is_the_coordinator_of_every_group(broker, client):
    own_id = client.describe_cluster()["broker_id"]
    for group in ("g", "another", "x" * 255):
        assert client.find_coordinator(group) == (own_id, broker.host, broker.port)
    with pytest.raises(HeraldError) as info:
        client.find_coordinator("")
    assert info.value.code == 24
    with Cluster([_dead_address(), address(broker)], timeout=5.0) as c:
        assert c.find_coordinator("g") == (own_id, broker.host, broker.port)
        # The client it has: no second connection.
        assert c.coordinator("g") is c.client()


def test_a_group_consumer_bootstrapped_past_a_dead_address_joins_consumes_and_commits(broker, client):
    client.create_topic("t", 2)
    for p in range(2):
        client.produce("t", [f"p{p}-{n}".encode() for n in range(3)], partition=p)
    bootstrap = [_dead_address(), address(broker)]
    with GroupConsumer(bootstrap, None, "boot", "t", session_timeout_ms=SESSION_MS,
                       auto_commit=False, timeout=5.0) as consumer:
        assert consumer.bootstrap[1] == (broker.host, broker.port)
        assert sorted(consume(consumer, 6)) == sorted(f"p{p}-{n}".encode() for p in range(2) for n in range(3))
        consumer.commit()
        assert client.fetch_offsets("boot") == {("t", 0): 3, ("t", 1): 3}
        [member] = client.describe_group("boot")["members"]
        assert member["member_id"] == consumer.member_id
    # A bootstrap string works as well; it resumes from the committed offsets.
    client.produce("t", [b"later"], partition=0)
    with GroupConsumer(",".join(bootstrap), None, "boot", "t", session_timeout_ms=SESSION_MS,
                       timeout=5.0) as consumer:
        assert consume(consumer, 1) == [b"later"]
    assert client.fetch_offsets("boot") == {("t", 0): 4, ("t", 1): 3}


def test_group_administration_through_a_cluster_client(broker, client):
    client.create_topic("t", 2)
    client.produce("t", [b"a", b"b", b"c"], partition=0)
    with Cluster([_dead_address(), address(broker)], timeout=5.0) as c:
        c.commit_offsets("admin", {("t", 0): 1})
        assert c.fetch_offsets("admin") == {("t", 0): 1}
        assert c.fetch_offsets("admin", [("t", 1)]) == {("t", 1): -1}
        assert c.describe_group("admin")["state"] == "Empty"
        assert [g["group_id"] for g in c.list_groups()] == ["admin"]
        planned = c.reset_offsets("admin", "t", "latest", partitions=[0], execute=True)
        assert planned["executed"] and planned["offsets"][0]["new_offset"] == 3
        assert client.fetch_offsets("admin") == {("t", 0): 3}
        c.delete_group("admin")
        assert c.list_groups() == [] and client.list_groups() == []
        with pytest.raises(HeraldError) as info:
            c.describe_group("admin")
        assert info.value.code == 69  # not retried: raised at once


def test_a_coordinator_connection_that_fails_is_replaced_and_the_request_sent_again(broker, client):
    client.create_topic("t", 1)
    client.commit_offsets("g", {("t", 0): 7})
    with Cluster([address(broker)], timeout=5.0) as c:
        first = c.coordinator("g")
        first._sock.shutdown(socket.SHUT_RDWR)  # white box: break the connection
        assert c.fetch_offsets("g") == {("t", 0): 7}
        assert first.closed and c.coordinator("g") is not first


def test_what_may_have_been_carried_out_is_not_sent_twice(broker, client):
    """delete_group and an executed "shift" raise the failed connection's
    error instead of resending: the client cannot tell whether they were
    carried out."""
    client.create_topic("t", 1)
    client.produce("t", [b"a", b"b", b"c", b"d"], partition=0)
    client.commit_offsets("g", {("t", 0): 1})
    with Cluster([address(broker)], timeout=5.0) as c:
        c.coordinator("g")._sock.shutdown(socket.SHUT_RDWR)  # white box: break the connection
        with pytest.raises(OSError):
            c.reset_offsets("g", "t", "shift", 1, execute=True)
        c.coordinator("g")._sock.shutdown(socket.SHUT_RDWR)
        with pytest.raises(OSError):
            c.delete_group("g")
        # Neither reached the broker; the next ones do, once each.
        assert c.fetch_offsets("g") == {("t", 0): 1}
        c.coordinator("g")._sock.shutdown(socket.SHUT_RDWR)
        assert c.reset_offsets("g", "t", "shift", 1)["offsets"][0]["new_offset"] == 2  # a dry run is resent
        assert c.reset_offsets("g", "t", "shift", 2, execute=True)["executed"]
        assert c.fetch_offsets("g") == {("t", 0): 3}
        c.delete_group("g")
        assert c.list_groups() == []


def test_a_group_consumer_rejoins_after_its_coordinator_restarts(broker, client):
    client.create_topic("t", 1)
    client.produce("t", [b"one", b"two"], partition=0)
    lost: List[List[TP]] = []
    with GroupConsumer(broker.host, broker.port, "steady", "t", session_timeout_ms=SESSION_MS,
                       auto_commit=False, timeout=5.0, on_lost=lost.append) as consumer:
        assert consume(consumer, 2) == [b"one", b"two"]
        consumer.commit()
        old_member = consumer.member_id
        broker.restart()
        deadline = time.monotonic() + 20
        while not (lost and consumer.assignment() == [("t", 0)]):
            assert time.monotonic() < deadline, "no rejoin"
            assert consumer.poll(timeout_ms=100) == []
        assert lost == [[("t", 0)]] and consumer.member_id != old_member
        with Client(broker.host, broker.port, timeout=5.0) as admin:
            admin.produce("t", [b"three"], partition=0)
        # From the committed offset, under the new member id.
        assert consumer.position("t", 0) == 2
        assert consume(consumer, 1) == [b"three"]


# -- a cluster ----------------------------------------------------------------------------


def _cluster_topic(cluster: Brokers, topic: str, partitions: int, per_partition: int) -> None:
    with Cluster(cluster.bootstrap(), client_id="coordinator-tests", timeout=5.0) as c:
        c.create_topic(topic, partitions, replication_factor=3)
        for p in range(partitions):
            c.produce(topic, p, [f"{topic}-{p}-{n}" for n in range(per_partition)])


def test_members_bootstrapped_from_different_brokers_meet_at_the_coordinator(cluster):
    _cluster_topic(cluster, "shared", 4, 3)
    with Cluster(cluster.bootstrap(), client_id="coordinator-tests", timeout=5.0) as c:
        coordinator_id, host, port = c.find_coordinator("meeting")
        assert f"{host}:{port}" == cluster.address(coordinator_id)
        # Every broker names the same one (once it has heard of the
        # partition's leader: until then it answers 15, "ask again").
        for broker_id in (1, 2, 3):
            with cluster.client(broker_id) as one:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        named = one.find_coordinator("meeting")
                        break
                    except HeraldError as err:
                        assert err.code == COORDINATOR_NOT_AVAILABLE and time.monotonic() < deadline, err
                        time.sleep(0.1)
                assert named == (coordinator_id, host, port)
        others = [i for i in (1, 2, 3) if i != coordinator_id]
        a = GroupConsumer(cluster.address(others[0]), None, "meeting", "shared",
                          session_timeout_ms=SESSION_MS, timeout=5.0)
        b = GroupConsumer(cluster.address(others[1]), None, "meeting", "shared",
                          session_timeout_ms=SESSION_MS, timeout=5.0)
        try:
            deadline = time.monotonic() + 20
            values: List[bytes] = []
            while len(values) < 12 or len(a.assignment()) != 2 or len(b.assignment()) != 2:
                assert time.monotonic() < deadline, (a.assignment(), b.assignment(), len(values))
                for consumer in (a, b):
                    values.extend(r.value or b"" for _, _, r in consumer.poll(timeout_ms=100))
            assert not set(a.assignment()) & set(b.assignment())
            assert len(set(values)) == 12
            members = {m["member_id"] for m in c.describe_group("meeting")["members"]}
            assert members == {a.member_id, b.member_id}
            assert [g["group_id"] for g in c.list_groups()] == ["meeting"]
        finally:
            a.close()
            b.close()
        assert c.fetch_offsets("meeting") == {("shared", p): 3 for p in range(4)}

        # Another group coordinated elsewhere: each broker lists its own,
        # the Cluster all of them.
        elsewhere = next(g for g in (f"other-{n}" for n in range(100))
                         if c.find_coordinator(g)[0] != coordinator_id)
        c.commit_offsets(elsewhere, {("shared", 0): 1})
        assert [g["group_id"] for g in c.list_groups()] == ["meeting", elsewhere]
        with cluster.client(coordinator_id) as one:
            assert [g["group_id"] for g in one.list_groups()] == ["meeting"]


def test_a_group_consumer_follows_its_coordinator_when_it_dies(cluster):
    _cluster_topic(cluster, "moving", 2, 2)
    lost: List[List[TP]] = []
    with Cluster(cluster.bootstrap(), client_id="coordinator-tests", timeout=5.0) as c:
        old_id, _, _ = c.find_coordinator("movers")
    with GroupConsumer(cluster.bootstrap(), None, "movers", "moving", session_timeout_ms=SESSION_MS,
                       timeout=5.0, on_lost=lost.append) as consumer:
        assert len(consume(consumer, 4)) == 4
        consumer.commit()
        old_member = consumer.member_id
        cluster.by_id[old_id].kill()
        survivors = [cluster.address(i) for i in (1, 2, 3) if i != old_id]
        with Cluster(survivors, client_id="coordinator-tests", timeout=5.0) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    new_id = c.find_coordinator("movers")[0]
                    if new_id != old_id:
                        break
                except HeraldError as err:
                    assert err.code == COORDINATOR_NOT_AVAILABLE
                assert time.monotonic() < deadline, "no new coordinator"
                time.sleep(0.2)
            c.produce("moving", 0, [b"after"])
        # At least once: what it reads again (the new coordinator may not
        # have the commits yet) comes before the new record.
        deadline = time.monotonic() + 30
        values: List[bytes] = []
        while b"after" not in values:
            assert time.monotonic() < deadline, f"read only {values}"
            values.extend(r.value or b"" for _, _, r in consumer.poll(timeout_ms=200))
        assert consumer.member_id != old_member
        assert {tp for batch in lost for tp in batch} == {("moving", 0), ("moving", 1)}
