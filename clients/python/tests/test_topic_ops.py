"""Changing a live topic against a real broker: ``alter_topic_config`` (applies
at once, survives a restart, an invalid or validate-only change changes
nothing) and ``delete_records`` (the start moves and holds across a restart)."""

import pytest

from herald_client import DELETE_TO_HIGH_WATERMARK, Client, HeraldError


def error_code(call, *args, **kwargs) -> int:
    """Runs a client call that must fail and returns its error code."""
    with pytest.raises(HeraldError) as info:
        call(*args, **kwargs)
    return info.value.code


def test_alter_topic_config_applies_at_once_and_survives_a_restart(broker, client):
    client.create_topic("t", 1, config={"retention_ms": 60000})
    client.produce("t", [b"x" * 2000], partition=0)

    config = client.alter_topic_config("t", set={"max_message_bytes": 1024}, delete=["retention_ms"])
    assert config["max_message_bytes"] == 1024
    assert config["retention_ms"] == 7 * 24 * 3600 * 1000
    assert config == client.describe_topic("t")["config"]
    assert error_code(client.produce, "t", [b"x" * 2000], partition=0) == 10

    client.close()
    broker.restart()
    with Client(broker.host, broker.port) as again:
        assert again.describe_topic("t")["config"]["max_message_bytes"] == 1024


def test_invalid_or_validate_only_changes_change_nothing(client):
    client.create_topic("t", 1)
    before = client.describe_topic("t")["config"]
    assert error_code(client.alter_topic_config, "t", set={"colour": 1}) == 40
    assert error_code(client.alter_topic_config, "t", set={"segment_max_bytes": 4096}) == 40
    assert error_code(client.alter_topic_config, "t", delete=["colour"]) == 40
    assert error_code(client.alter_topic_config, "nope", set={"retention_ms": 1}) == 3
    would = client.alter_topic_config("t", set={"message_timestamp_type": "LogAppendTime"},
                                      validate_only=True)
    assert would["message_timestamp_type"] == "LogAppendTime"
    assert client.describe_topic("t")["config"] == before


def test_delete_records_moves_the_start_and_it_holds_across_a_restart(broker, client):
    client.create_topic("t", 1)
    client.produce("t", [b"r%d" % i for i in range(10)], partition=0)
    assert client.delete_records("t", 0, 4) == 4
    assert client.earliest_offset("t", 0) == 4
    assert error_code(client.fetch, "t", 0, 3) == 1
    assert [r.offset for r in client.fetch("t", 0, 4).records] == list(range(4, 10))
    assert error_code(client.delete_records, "t", 0, 11) == 1
    assert error_code(client.delete_records, "t", 0, -2) == 1
    assert error_code(client.delete_records, "t", 1, 0) == 3
    assert client.delete_records("t", 0, 2) == 4

    client.close()
    broker.restart()
    with Client(broker.host, broker.port) as again:
        assert again.earliest_offset("t", 0) == 4
        assert again.delete_records("t", 0, DELETE_TO_HIGH_WATERMARK) == 10
        assert again.fetch("t", 0, 10).records == []
