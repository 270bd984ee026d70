"""Producing and fetching against a real broker: offsets, record contents,
partition choice, list_offsets, produce errors and long polls."""

import collections
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from herald_client import Client, HeraldError, partition_for_key

CREATE_TIME = {"message_timestamp_type": "CreateTime"}
BASE_TIMESTAMP = 1_700_000_000_000


def error_code(call, *args, **kwargs) -> int:
    """Runs a client call that must fail and returns its error code."""
    with pytest.raises(HeraldError) as info:
        call(*args, **kwargs)
    return info.value.code


def test_many_batches_round_trip(client, fetch_all):
    client.create_topic("events", 1, config=CREATE_TIME)
    expected = []
    for batch in range(40):
        records = [{
            "key": f"key-{batch}-{i}".encode(),
            "value": f"value-{batch}-{i}".encode() * (i + 1),
            "headers": [("batch", str(batch).encode()), ("index", str(i).encode())],
            "timestamp": BASE_TIMESTAMP + 10 * batch + i,
        } for i in range(batch % 5 + 1)]
        [result] = client.produce("events", records, partition=0)
        assert (result["partition"], result["base_offset"], result["record_count"],
                result["error_code"]) == (0, len(expected), len(records), 0)
        expected.extend(records)

    fetched = fetch_all(client, "events", 0)
    assert [r.offset for r in fetched] == list(range(len(expected)))
    assert [(r.key, r.value, r.headers, r.timestamp) for r in fetched] == [
        (e["key"], e["value"], e["headers"], e["timestamp"]) for e in expected]
    [partition] = client.describe_topic("events")["partitions"]
    assert partition["log_end_offset"] == partition["high_watermark"] == len(expected)


def test_fetch_from_inside_a_batch_skips_earlier_records(client):
    client.create_topic("middle", 1)
    client.produce("middle", [b"0", b"1", b"2", b"3", b"4"], partition=0)
    result = client.fetch("middle", 0, 3)
    assert [(r.offset, r.value) for r in result.records] == [(3, b"3"), (4, b"4")]
    assert (result.high_watermark, result.log_start_offset) == (5, 0)


def test_fetch_max_bytes_is_a_soft_limit(client):
    client.create_topic("soft", 1)
    for value in (b"first", b"second", b"third"):
        client.produce("soft", [value], partition=0)
    result = client.fetch("soft", 0, 0, max_bytes=1)
    assert result.records and result.records[0].value == b"first"


def test_fetch_at_log_end_is_empty_and_beyond_is_out_of_range(client):
    client.create_topic("edge", 1)
    client.produce("edge", [b"a", b"b", b"c"], partition=0)
    assert client.fetch("edge", 0, 3).records == []
    assert error_code(client.fetch, "edge", 0, 4) == 1
    assert error_code(client.fetch, "edge", 0, -1) == 1
    assert error_code(client.fetch, "edge", 1, 0) == 3


def test_tombstones_and_missing_keys(client):
    client.create_topic("compact", 1)
    client.produce("compact", [("user-1", "alive"), ("user-1", None), {"value": None}, "no key"],
                   partition=0)
    records = client.fetch("compact", 0, 0).records
    assert [(r.key, r.value) for r in records] == [
        (b"user-1", b"alive"), (b"user-1", None), (None, None), (None, b"no key")]


def test_log_append_time_replaces_client_timestamps(client):
    client.create_topic("stamped", 1, config={"message_timestamp_type": "LogAppendTime"})
    before_ms = int(time.time() * 1000)
    client.produce("stamped", [{"value": b"a", "timestamp": 1000},
                               {"value": b"b", "timestamp": 2000}], partition=0)
    after_ms = int(time.time() * 1000)
    timestamps = [r.timestamp for r in client.fetch("stamped", 0, 0).records]
    assert len(set(timestamps)) == 1
    assert before_ms <= timestamps[0] <= after_ms


def test_keyed_records_follow_the_default_partitioner(client, fetch_all):
    partitions = 6
    client.create_topic("keyed", partitions)
    keys = [f"user-{i}".encode() for i in range(60)]
    assert len({partition_for_key(k, partitions) for k in keys}) > 1

    for key in keys[:10]:
        result = client.produce("keyed", [(key, b"alone")])
        assert [r["partition"] for r in result] == [partition_for_key(key, partitions)]

    result = client.produce("keyed", [(key, b"together") for key in keys[10:]])
    expected_counts = collections.Counter(partition_for_key(k, partitions) for k in keys[10:])
    assert {r["partition"]: r["record_count"] for r in result} == expected_counts

    for partition in range(partitions):
        fetched = [r.key for r in fetch_all(client, "keyed", partition)]
        assert fetched == [k for k in keys if partition_for_key(k, partitions) == partition]


def test_keyless_requests_go_round_robin(client):
    client.create_topic("spread", 3)
    chosen = []
    for _ in range(6):
        [result] = client.produce("spread", [b"x", b"y"])
        assert result["record_count"] == 2
        chosen.append(result["partition"])
    for previous, current in zip(chosen, chosen[1:]):
        assert current == (previous + 1) % 3


def test_list_offsets(client):
    client.create_topic("times", 1, config=CREATE_TIME)
    assert (client.earliest_offset("times", 0), client.latest_offset("times", 0)) == (0, 0)
    assert client.list_offsets("times", 0, 0) == -1
    client.produce("times", [{"value": b"a", "timestamp": 1000},
                             {"value": b"b", "timestamp": 2000}], partition=0)
    client.produce("times", [{"value": b"c", "timestamp": 3000}], partition=0)
    assert (client.earliest_offset("times", 0), client.latest_offset("times", 0)) == (0, 3)
    by_timestamp = {ts: client.list_offsets("times", 0, ts)
                    for ts in (0, 1000, 1500, 2000, 2001, 3000, 3001)}
    assert by_timestamp == {0: 0, 1000: 0, 1500: 1, 2000: 1, 2001: 2, 3000: 2, 3001: -1}


def test_acks_zero_and_all(client):
    client.create_topic("acks", 1)
    assert client.produce("acks", [b"fire and forget"], partition=0, acks=0) is None
    # Requests touching one partition run in the order sent, so this sees it.
    assert client.latest_offset("acks", 0) == 1
    [result] = client.produce("acks", [b"all"], partition=0, acks=-1)
    assert result["base_offset"] == 1


def test_produce_errors(client):
    client.create_topic("small", 2, config={"max_message_bytes": 100})
    assert error_code(client.produce, "small", [b"v"], partition=2) == 3
    assert error_code(client.produce, "small", [b"v"], acks=2) == 21
    assert error_code(client.produce, "small", []) == 42
    assert error_code(client.produce, "small", [b"x" * 1000], partition=0) == 10
    assert client.latest_offset("small", 0) == 0


def test_long_poll_times_out_empty(client):
    client.create_topic("quiet", 1)
    start = time.monotonic()
    result = client.fetch("quiet", 0, 0, min_bytes=1, max_wait_ms=300)
    elapsed = time.monotonic() - start
    assert result.records == []
    assert 0.25 <= elapsed < 5


def test_long_poll_wakes_when_another_connection_produces(broker, client):
    client.create_topic("wake", 1)

    def wait_for_record():
        with Client(broker.host, broker.port, timeout=10.0) as consumer:
            return consumer.fetch("wake", 0, 0, min_bytes=1, max_wait_ms=10_000)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(wait_for_record)
        # Nothing observable says the fetch is parked at the broker; give it a
        # moment to arrive, and check it is really waiting.
        time.sleep(0.3)
        assert not pending.done()
        client.produce("wake", [b"wake up"], partition=0)
        result = pending.result(timeout=5)  # far less than the 10 s max_wait_ms
    assert [(r.offset, r.value) for r in result.records] == [(0, b"wake up")]


def test_produce_sends_one_stored_batch_when_the_broker_offers_it(client, fetch_all, monkeypatch):
    """protocol.md, "The batch form": the client encodes the batch once, the
    broker stores it as sent; keyed records without a partition go as
    `records`, so that the broker places each by its key."""
    assert "produce_batch" in client.features["features"]
    sent = []
    real_call = client._call

    def recording_call(op, body, **kwargs):
        if op == "produce":
            sent.append(sorted(k for k in ("records", "batch") if k in body))
        return real_call(op, body, **kwargs)

    monkeypatch.setattr(client, "_call", recording_call)
    client.create_topic("b", 2, config=CREATE_TIME)
    records = [
        {"key": b"k", "value": b"v1", "headers": [("h", b"1"), ("h", b"2")], "timestamp": BASE_TIMESTAMP},
        {"value": None, "timestamp": BASE_TIMESTAMP + 5},
        {"value": "text"},
    ]
    before = int(time.time() * 1000)
    client.produce("b", records, partition=1)
    assert sent == [["batch"]]
    fetched = fetch_all(client, "b", 1)
    assert [(r.offset, r.key, r.value, r.headers) for r in fetched] == [
        (0, b"k", b"v1", [("h", b"1"), ("h", b"2")]),
        (1, None, None, []),
        (2, None, b"text", []),
    ]
    assert [r.timestamp for r in fetched[:2]] == [BASE_TIMESTAMP, BASE_TIMESTAMP + 5]
    assert fetched[2].timestamp >= before, "a record without a timestamp gets the client's clock"

    client.produce("b", [{"key": b"by-key", "value": b"x"}])
    assert sent[-1] == ["records"], "keyed records without a partition are placed by the broker"
