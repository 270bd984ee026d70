"""Topic administration against a real broker: the handshake, creating,
listing, describing, growing and deleting topics, and their error codes."""

import pytest

from herald_client import HeraldError

TOPIC_SETTINGS = {"segment_max_bytes", "segment_ms", "retention_ms", "retention_bytes",
                  "max_message_bytes", "message_timestamp_type", "cleanup_policy",
                  "delete_retention_ms", "min_cleanable_dirty_ratio", "min_compaction_lag_ms"}


def error_code(call, *args, **kwargs) -> int:
    """Runs a client call that must fail and returns its error code."""
    with pytest.raises(HeraldError) as info:
        call(*args, **kwargs)
    return info.value.code


def test_handshake_response_fields(client):
    assert isinstance(client.broker_version, str) and client.broker_version
    assert isinstance(client.max_frame_bytes, int) and client.max_frame_bytes > 0
    assert isinstance(client.max_in_flight, int) and client.max_in_flight > 0


def test_a_single_broker_describes_itself_as_the_cluster(client, broker):
    described = client.describe_cluster()
    assert described["mode"] == "single"
    assert (described["broker_id"], described["controller_id"], described["controller_epoch"]) == (0, 0, 0)
    assert [(b["id"], b["port"]) for b in described["brokers"]] == [(0, broker.port)]


def test_a_single_broker_leads_every_partition(client):
    assert error_code(client.create_topic, "led", 2, replication_factor=2) == 38
    client.create_topic("led", 2, replication_factor=1)
    answer = client.metadata(["led", "missing"])
    led, missing = answer["topics"]
    assert [(p["leader"], p["replicas"], p["isr"]) for p in led["partitions"]] == [(0, [0], [0])] * 2
    assert missing["error_code"] == 3
    assert [t["topic"] for t in client.metadata()["topics"]] == ["led"]


def test_create_list_describe_delete_round_trip(client):
    assert client.list_topics() == []
    client.create_topic("beta", 1)
    client.create_topic("alpha", 3, config={"retention_ms": 60000,
                                            "message_timestamp_type": "LogAppendTime"})
    listed = [(t["topic"], t["partitions"]) for t in client.list_topics()]
    assert listed == [("alpha", 3), ("beta", 1)]

    description = client.describe_topic("alpha")
    assert description["topic"] == "alpha"
    assert TOPIC_SETTINGS <= set(description["config"])
    assert description["config"]["retention_ms"] == 60000
    assert description["config"]["message_timestamp_type"] == "LogAppendTime"
    assert [p["partition"] for p in description["partitions"]] == [0, 1, 2]
    for p in description["partitions"]:
        assert (p["log_start_offset"], p["log_end_offset"], p["high_watermark"]) == (0, 0, 0)
        assert p["size_bytes"] >= 0 and p["segments"] >= 0

    client.produce("alpha", [b"gone soon"], partition=1)
    client.delete_topic("alpha")
    assert [t["topic"] for t in client.list_topics()] == ["beta"]
    assert error_code(client.describe_topic, "alpha") == 3

    client.create_topic("alpha", 2)
    assert client.latest_offset("alpha", 1) == 0


def test_duplicate_topic_is_refused(client):
    client.create_topic("twice", 1)
    assert error_code(client.create_topic, "twice", 1) == 36


@pytest.mark.parametrize("name", ["bad/name", "..", ".", "a" * 250, "", "with space", "é"])
def test_invalid_topic_name_is_refused(client, name):
    assert error_code(client.create_topic, name, 1) == 17


@pytest.mark.parametrize("name", ["a" * 249, "A.b_c-9", "...", "-"])
def test_valid_topic_names_are_accepted(client, name):
    client.create_topic(name, 1)
    assert [t["topic"] for t in client.list_topics()] == [name]


@pytest.mark.parametrize("partitions", [0, -1])
def test_invalid_partition_count_is_refused(client, partitions):
    assert error_code(client.create_topic, "t", partitions) == 37


@pytest.mark.parametrize("config", [
    {"segment_max_bytes": 10},
    {"message_timestamp_type": "Sometime"},
    {"no_such_setting": 1},
])
def test_invalid_config_is_refused(client, config):
    assert error_code(client.create_topic, "t", 1, config=config) == 40


def test_unknown_topic_errors(client):
    assert error_code(client.describe_topic, "nope") == 3
    assert error_code(client.delete_topic, "nope") == 3
    assert error_code(client.fetch, "nope", 0, 0) == 3
    assert error_code(client.produce, "nope", [b"v"]) == 3
    assert error_code(client.list_offsets, "nope", 0, -1) == 3
    assert error_code(client.add_partitions, "nope", 2) == 3
    error = pytest.raises(HeraldError, client.describe_topic, "nope").value
    assert (error.name, error.retriable) == ("UNKNOWN_TOPIC_OR_PARTITION", True)


def test_add_partitions_grows_and_never_shrinks(client):
    client.create_topic("grow", 2)
    assert client.add_partitions("grow", 5) == 5
    assert [p["partition"] for p in client.describe_topic("grow")["partitions"]] == [0, 1, 2, 3, 4]
    assert client.latest_offset("grow", 4) == 0
    assert error_code(client.add_partitions, "grow", 5) == 37
    assert error_code(client.add_partitions, "grow", 3) == 37
    assert [(t["topic"], t["partitions"]) for t in client.list_topics()] == [("grow", 5)]
