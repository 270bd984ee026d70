"""Durability across a broker restart: topics, records and offsets survive."""

from herald_client import Client

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
