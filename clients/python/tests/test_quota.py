"""Quotas with the Python client: overrides set and listed, and a request
rate that holds a client back with throttle_time_ms in its responses."""

import time
from pathlib import Path

from conftest import Broker
from herald_client import Client


def test_quota_overrides_are_set_and_listed(client: Client) -> None:
    client.alter_quotas("client_id", "batch", set={"producer_byte_rate": 1024})
    client.alter_quotas("user", "alice", set={"request_rate": 5})
    described = client.describe_quotas()
    assert described["defaults"] == {}
    assert described["quotas"] == [
        {"entity_type": "client_id", "entity_name": "batch", "producer_byte_rate": 1024},
        {"entity_type": "user", "entity_name": "alice", "request_rate": 5},
    ]
    client.alter_quotas("user", "alice", remove=["request_rate"])
    assert len(client.describe_quotas()["quotas"]) == 1


def test_a_request_rate_slows_the_client(tmp_path: Path) -> None:
    server = Broker(tmp_path, env={"HERALD_QUOTAS__REQUEST_RATE": "10"})
    server.start()
    try:
        with Client(server.host, server.port, client_id="slow", timeout=10.0) as client:
            started = time.monotonic()
            for _ in range(25):
                client.list_topics()
            # 10 at once (the burst), 15 more at 10 a second.
            assert time.monotonic() - started >= 1.2
    finally:
        server.stop()
