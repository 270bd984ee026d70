"""``Cluster`` against a real cluster: a real ZooKeeper (scripts/zookeeper.sh)
and three ``herald serve --zookeeper`` brokers. Produce, fetch and
list_offsets go to each partition's leader, and follow it when it dies
(protocol.md, "Following leaders").

Skipped only when ZooKeeper cannot be installed (no Java, no Debian
package); a ZooKeeper that is there but does not start fails the tests.
"""

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from conftest import REPO_DIR, Broker
from herald_client import Client, Cluster, GroupConsumer, HeraldError, partition_for_key

ZOOKEEPER_SH = REPO_DIR / "scripts" / "zookeeper.sh"
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
SESSION_TIMEOUT_MS = 2000
"""The brokers' ZooKeeper session timeout: short, so that a dead broker is
noticed (and its partitions get new leaders) within seconds."""
FORM_TIMEOUT_S = 30.0
NOT_LEADER_OR_FOLLOWER = 6


class Brokers:
    """Three brokers of one cluster, by id."""

    def __init__(self, by_id: Dict[int, Broker]):
        self.by_id = by_id

    def address(self, broker_id: int) -> str:
        broker = self.by_id[broker_id]
        return f"{broker.host}:{broker.port}"

    def bootstrap(self) -> List[str]:
        return [self.address(i) for i in sorted(self.by_id)]

    def client(self, broker_id: int) -> Client:
        broker = self.by_id[broker_id]
        return Client(broker.host, broker.port or 0, client_id="cluster-tests", timeout=5.0)


def _zookeeper(command: str, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ZOOKEEPER_SH), command, str(workdir)], capture_output=True,
                          text=True, timeout=300)


def _dead_address() -> str:
    """An address of 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Brokers]:
    """ZooKeeper and brokers 1, 2, 3, once each sees all three and a controller."""
    zk_dir = tmp_path / "zk"
    started = _zookeeper("start", zk_dir)
    if started.returncode != 0:
        if not ZOOKEEPER_JAR.is_file():
            pytest.skip(f"ZooKeeper could not be installed: {started.stderr.strip()[-500:]}")
        pytest.fail(f"scripts/zookeeper.sh start failed: {started.stderr}")
    brokers: Dict[int, Broker] = {}
    try:
        for broker_id in (1, 2, 3):
            workdir = tmp_path / f"b{broker_id}"
            workdir.mkdir()
            brokers[broker_id] = Broker(
                workdir, env={"HERALD_CLUSTER__ZOOKEEPER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)},
                args=["--zookeeper", started.stdout.strip(), "--broker-id", str(broker_id)])
            brokers[broker_id].start()
        group = Brokers(brokers)
        deadline = time.monotonic() + FORM_TIMEOUT_S
        for broker_id in brokers:
            with group.client(broker_id) as client:
                while True:
                    described = client.describe_cluster()
                    if len(described["brokers"]) == 3 and described["controller_id"] != -1:
                        break
                    assert time.monotonic() < deadline, f"no cluster within {FORM_TIMEOUT_S} s: {described}"
                    time.sleep(0.05)
        yield group
    finally:
        for broker in brokers.values():
            broker.stop()
        _zookeeper("stop", zk_dir)


def test_routes_to_the_leaders_from_a_bootstrap_list_whose_first_address_is_dead(cluster):
    with Cluster([_dead_address()] + cluster.bootstrap(), client_id="cluster-tests", timeout=5.0) as c:
        c.create_topic("routed", 6, replication_factor=3)
        assert c.partitions("routed") == list(range(6))
        leaders = {p: c.leader("routed", p) for p in range(6)}
        assert set(leaders.values()) == {1, 2, 3}, "leaders spread over the brokers"
        for p in range(6):
            for n in range(3):
                [result] = c.produce("routed", p, [f"p{p}-{n}"]) or []
                assert (result["partition"], result["base_offset"]) == (p, n)
        for p in range(6):
            assert [r.value for r in c.fetch("routed", p, 0).records] == [f"p{p}-{n}".encode() for n in range(3)]
            assert c.latest_offset("routed", p) == 3 and c.earliest_offset("routed", p) == 0
            # The leader itself holds them: what the client sent went there.
            with cluster.client(leaders[p]) as leader:
                assert leader.latest_offset("routed", p) == 3
        assert {t["topic"] for t in c.list_topics()} == {"routed"}
        assert c.describe_cluster()["mode"] == "zookeeper"


def test_records_without_a_partition_are_placed_by_key_as_the_broker_would(cluster):
    with Cluster(cluster.bootstrap(), client_id="cluster-tests", timeout=5.0) as c:
        c.create_topic("keyed", 3, replication_factor=3)
        keys = [f"k{i}" for i in range(12)]
        results = c.produce("keyed", None, [(k, f"v-{k}") for k in keys]) or []
        assert {r["partition"] for r in results} == {partition_for_key(k, 3) for k in keys}
        for k in keys:
            p = partition_for_key(k, 3)
            stored = {(r.key, r.value) for r in c.fetch("keyed", p, 0).records}
            assert (k.encode(), f"v-{k}".encode()) in stored, f"{k} on partition {p}"
        # Records without a key: one call's together, the next call's on the next partition.
        first = c.produce("keyed", None, ["a", "b"]) or []
        second = c.produce("keyed", None, ["c"]) or []
        assert len(first) == 1 and len(second) == 1
        assert second[0]["partition"] == (first[0]["partition"] + 1) % 3


def test_a_follower_refuses_what_only_the_leader_takes(cluster):
    with Cluster(cluster.bootstrap(), client_id="cluster-tests", timeout=5.0) as c:
        c.create_topic("led", 1, replication_factor=3)
        leader = c.leader("led", 0)
    follower = next(i for i in (1, 2, 3) if i != leader)
    with cluster.client(follower) as client:
        for attempt in (lambda: client.produce("led", [b"x"], partition=0, acks=-1),
                        lambda: client.fetch("led", 0, 0),
                        lambda: client.latest_offset("led", 0)):
            with pytest.raises(HeraldError) as info:
                attempt()
            assert info.value.code == NOT_LEADER_OR_FOLLOWER


def test_killing_the_leader_while_producing_loses_and_duplicates_nothing(cluster):
    records = 300
    with Cluster(cluster.bootstrap(), client_id="cluster-tests", timeout=5.0, delivery_timeout=30.0) as c:
        c.create_topic("failover", 1, replication_factor=3)
        old_leader = c.leader("failover", 0)
        acknowledged: Dict[int, int] = {}
        killer = None
        for n in range(records):
            if n == records // 3:
                # Killed while the next records are on their way.
                killer = threading.Timer(0.005, cluster.by_id[old_leader].kill)
                killer.start()
            [result] = c.produce("failover", 0, [f"r{n}"], acks=-1) or []
            acknowledged[n] = result["base_offset"]
        assert killer is not None
        killer.join()
        new_leader = c.leader("failover", 0)
        assert new_leader not in (old_leader, -1), "the partition moved to another leader"
        offsets = [acknowledged[n] for n in range(records)]
        assert offsets == list(range(records)), "acknowledged once each, in order, no gaps"
        stored: List[bytes] = []
        while len(stored) < records:
            fetched = c.fetch("failover", 0, len(stored), max_wait_ms=100)
            assert fetched.records, f"nothing to read at {len(stored)} below {fetched.high_watermark}"
            stored.extend(r.value or b"" for r in fetched.records)
        assert stored == [f"r{n}".encode() for n in range(records)]
        assert c.latest_offset("failover", 0) == records

        # An acknowledgement lost at the failover: the same producer id and
        # sequence sent again to the new leader is answered with the first
        # offset, not stored twice.
        assert c._producer is not None
        c._sequences[("failover", 0)] -= 1
        [again] = c.produce("failover", 0, [f"r{records - 1}"]) or []
        assert again["base_offset"] == records - 1
        assert c.latest_offset("failover", 0) == records


def test_a_group_consumer_fetches_each_partition_from_its_leader(cluster):
    with Cluster(cluster.bootstrap(), client_id="cluster-tests", timeout=5.0) as c:
        c.create_topic("grouped", 3, replication_factor=3)
        assert {c.leader("grouped", p) for p in range(3)} == {1, 2, 3}
        for p in range(3):
            c.produce("grouped", p, [f"p{p}-{n}" for n in range(5)])
    broker = cluster.by_id[1]
    consumed: List[bytes] = []
    with GroupConsumer(broker.host, broker.port or 0, "readers", ["grouped"], client_id="cluster-tests",
                       timeout=5.0) as consumer:
        deadline = time.monotonic() + 20
        while len(consumed) < 15:
            assert time.monotonic() < deadline, f"consumed only {sorted(consumed)}"
            consumed.extend(record.value or b"" for _, _, record in consumer.poll(timeout_ms=500))
        assert {consumer.position("grouped", p) for p in range(3)} == {5}
    assert sorted(consumed) == sorted(f"p{p}-{n}".encode() for p in range(3) for n in range(5))


def test_an_unknown_topic_fails_at_once(cluster):
    with Cluster(",".join(cluster.bootstrap()), client_id="cluster-tests", timeout=5.0) as c:
        started = time.monotonic()
        for attempt in (lambda: c.produce("missing", 0, [b"x"]), lambda: c.fetch("missing", 0, 0)):
            with pytest.raises(HeraldError) as info:
                attempt()
            assert info.value.code == 3
        c.create_topic("present", 1, replication_factor=2)
        with pytest.raises(HeraldError) as info:
            c.produce("present", 1, [b"x"])
        assert info.value.code == 3
        assert time.monotonic() - started < 5, "not retried"


def test_no_broker_of_the_bootstrap_list_accepts():
    with pytest.raises(OSError):
        Cluster([_dead_address(), _dead_address()], timeout=2.0)
