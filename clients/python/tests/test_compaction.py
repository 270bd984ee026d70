"""A compacted topic through the Python client: after the broker's log
cleaner ran, a fetch at an offset inside a gap returns records from the next
kept batch, and reading on from the last offset received + 1 goes across
every gap."""

import time

import pytest

from conftest import Broker
from herald_client import Client, HeraldError

COMPACT = {
    "cleanup_policy": "compact",
    "segment_max_bytes": 1024,
    "max_message_bytes": 1024,
    "min_cleanable_dirty_ratio": "0.01",
}


@pytest.fixture
def fast_cleaner(tmp_path):
    """A broker whose partitions offer cleanings every 50 ms."""
    server = Broker(tmp_path, env={"HERALD_STORAGE__RETENTION_CHECK_INTERVAL_MS": "50"})
    server.start()
    try:
        with Client(server.host, server.port, client_id="herald-python-tests", timeout=10.0) as client:
            yield client
    finally:
        server.stop()


def read_from_zero(client, topic):
    records, offset = [], 0
    while True:
        result = client.fetch(topic, 0, offset)
        if result.records:
            records.extend(result.records)
            offset = result.records[-1].offset + 1
        if offset >= result.high_watermark:
            return records


def test_fetch_across_gaps_of_a_compacted_topic(fast_cleaner):
    client = fast_cleaner
    client.create_topic("latest", 1, config=COMPACT)
    produced = {}
    for round_ in range(10):
        for k in range(5):
            key = f"k{k}".encode()
            [result] = client.produce("latest", [{"key": key, "value": f"r{round_}".encode()}], partition=0)
            produced[key] = (result["base_offset"], f"r{round_}".encode())
    [result] = client.produce("latest", [{"key": b"filler", "value": b"f" * 900}], partition=0)
    produced[b"filler"] = (result["base_offset"], b"f" * 900)

    deadline = time.monotonic() + 30
    while True:
        records = read_from_zero(client, "latest")
        if len(records) == len(produced):
            break
        assert time.monotonic() < deadline, f"not compacted after 30 s: {len(records)} records"
        time.sleep(0.1)
    assert {r.key: (r.offset, r.value) for r in records} == produced

    # Offset 0 was compacted away: the fetch returns the next kept batch.
    first = client.fetch("latest", 0, 0)
    assert first.records[0].offset == min(offset for offset, _ in produced.values()) > 0
    assert first.log_start_offset == 0

    with pytest.raises(HeraldError) as refused:
        client.produce("latest", [b"no key"], partition=0)
    assert refused.value.code == 87
