"""Feature discovery against the real broker: the handshake's answer as
``client.features``, and ``produce`` splitting records by the broker's limits."""

from pathlib import Path
from typing import Iterator

import pytest

from conftest import Broker
from herald_client import Client, HeraldError, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION

FRAME = 64 * 1024
MESSAGE = 16 * 1024


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker with 64 KiB frames and 16 KiB batches."""
    server = Broker(tmp_path, env={"HERALD_SERVER__MAX_FRAME_BYTES": str(FRAME),
                                   "HERALD_LOG__MAX_MESSAGE_BYTES": str(MESSAGE)})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def small_client(small_broker: Broker) -> Iterator[Client]:
    with Client(small_broker.host, small_broker.port, client_id="features", timeout=10.0) as c:
        yield c


def test_features_hold_the_handshake_answer(client):
    features = client.features
    assert MIN_PROTOCOL_VERSION <= features["protocol_version"] <= PROTOCOL_VERSION
    assert features["assignors"] == ["range", "roundrobin", "sticky"]
    listed = {o["op"]: (o["min_version"], o["max_version"]) for o in features["operations"]}
    assert listed["produce"] == (1, 1) and listed["join_group"] == (1, 1)
    assert len(listed) == 36
    assert listed["init_producer_id"] == (1, 1)
    assert listed["find_coordinator"] == (1, 1)
    assert listed["controlled_shutdown"] == (1, 1)
    assert client.supports("alter_topic_config") and client.supports("delete_records")
    assert features["max_frame_bytes"] == client.max_frame_bytes == 16 << 20
    assert features["max_message_bytes"] == 8 << 20
    assert (features["min_session_timeout_ms"], features["default_session_timeout_ms"],
            features["max_session_timeout_ms"]) == (100, 10000, 300000)
    assert features["broker_version"] == client.broker_version
    assert "correlation_id" not in features and "error_code" not in features
    assert client.supports("fetch") and not client.supports("launch_rockets")


def test_produce_splits_records_into_requests_that_fit_the_frame(small_client, fetch_all):
    small_client.create_topic("split", 1)
    # 300 KB of records, five times a frame: several requests, in order.
    results = small_client.produce("split", [(f"k{n}", b"x" * 1000) for n in range(300)],
                                   partition=0)
    assert len(results) > 300 * 1000 // FRAME
    assert sum(r["record_count"] for r in results) == 300
    assert [r["base_offset"] for r in results] == sorted(r["base_offset"] for r in results)
    records = fetch_all(small_client, "split", 0)
    assert [r.key for r in records] == [f"k{n}".encode() for n in range(300)]


def test_produce_keeps_each_batch_within_max_message_bytes(small_client):
    small_client.create_topic("batches", 1)
    # Fits one frame, but not one batch of 16 KiB: split, and all accepted.
    results = small_client.produce("batches", [b"y" * 1000] * 40, partition=0)
    assert len(results) >= 3
    assert sum(r["record_count"] for r in results) == 40
    assert small_client.latest_offset("batches", 0) == 40


def test_a_record_too_large_for_any_request_is_refused_before_sending(small_client):
    small_client.create_topic("huge", 1)
    with pytest.raises(HeraldError) as info:
        small_client.produce("huge", [b"small", b"z" * FRAME], partition=0)
    assert info.value.code == 1002 and "not sent" in info.value.message
    assert small_client.latest_offset("huge", 0) == 0, "nothing of the call was sent"
