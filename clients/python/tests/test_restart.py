"""Durability across a broker restart: topics, records and offsets survive."""

import pytest

from herald_client import Client, HeraldError

CREATE_TIME = {"message_timestamp_type": "CreateTime"}


def test_records_survive_restart(broker, client, fetch_all):
    client.create_topic("durable", 2, config=CREATE_TIME)
    expected = {0: [], 1: []}
    for batch in range(10):
        partition = batch % 2
        records = [{"key": f"k{batch}.{i}".encode(), "value": f"v{batch}.{i}".encode(),
                    "headers": [("n", bytes([i]))], "timestamp": 1000 * batch + i}
                   for i in range(3)]
        client.produce("durable", records, partition=partition)
        expected[partition].extend(records)

    broker.restart()

    with Client(broker.host, broker.port, timeout=10.0) as after:
        assert [(t["topic"], t["partitions"]) for t in after.list_topics()] == [("durable", 2)]
        for partition, records in expected.items():
            fetched = fetch_all(after, "durable", partition)
            assert [r.offset for r in fetched] == list(range(len(records)))
            assert [(r.key, r.value, r.headers, r.timestamp) for r in fetched] == [
                (e["key"], e["value"], e["headers"], e["timestamp"]) for e in records]
            assert after.latest_offset("durable", partition) == len(records)
        [result] = after.produce("durable", [b"after restart"], partition=0)
        assert result["base_offset"] == len(expected[0])


def test_a_damaged_range_is_named_and_can_be_skipped(broker, client):
    client.create_topic("damaged", 1)
    for value in (b"first", b"second", b"third"):
        client.produce("damaged", [value], partition=0)
    broker.stop()
    # Flip a byte inside the second batch's records, on disk.
    segment = broker.data_dir / "topics" / "damaged" / "0" / ("0" * 20 + ".log")
    data = bytearray(segment.read_bytes())
    second = 12 + int.from_bytes(data[8:12], "big")
    data[second + 50] ^= 0x10
    segment.write_bytes(bytes(data))
    broker.start(broker.port)

    with Client(broker.host, broker.port, timeout=10.0) as after:
        assert [r.value for r in after.fetch("damaged", 0, 0).records] == [b"first"]
        with pytest.raises(HeraldError) as caught:
            after.fetch("damaged", 0, 1)
        err = caught.value
        assert (err.code, err.retriable) == (2, False)
        assert (err.first_damaged_offset, err.next_valid_offset) == (1, 2)
        assert [r.value for r in after.fetch("damaged", 0, 2).records] == [b"third"]
        [partition] = after.describe_topic("damaged")["partitions"]
        assert [(d["first_offset"], d["next_offset"]) for d in partition["damaged"]] == [(1, 2)]
