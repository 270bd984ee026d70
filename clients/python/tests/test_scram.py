"""SCRAM-SHA-256 authentication and the users operations, against the real broker."""

import json
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import HERALD_BIN, Broker
from herald_client import (
    RESOURCE_NOT_FOUND,
    SASL_AUTHENTICATION_FAILED,
    Client,
    GroupConsumer,
    HeraldError,
)

DELAY_S = 0.3


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Broker]:
    """A broker that requires authentication, with user ``admin`` created offline."""
    server = Broker(tmp_path, env={"HERALD_SECURITY__AUTHENTICATION": "required",
                                   "HERALD_SECURITY__AUTH_FAILURE_DELAY_MS": str(int(DELAY_S * 1000))})
    subprocess.run([str(HERALD_BIN), "user", "create", "admin", "--data-dir", str(server.data_dir),
                    "--password-stdin"], input=b"admin-pw\n", check=True, capture_output=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(broker: Broker, user: str, password: str) -> Client:
    return Client(broker.host, broker.port, timeout=10.0, username=user, password=password)


def test_a_user_authenticates_and_manages_users_online(secured: Broker) -> None:
    with connect(secured, "admin", "admin-pw") as admin:
        assert admin.principal == "User:admin"
        assert admin.features is not None
        assert admin.features["authentication"] == {"required": True, "mechanisms": ["SCRAM-SHA-256"]}
        admin.create_user("bob, the =builder", "bob-pw-42")
        assert [u["user"] for u in admin.list_users()] == ["admin", "bob, the =builder"]
        with connect(secured, "bob, the =builder", "bob-pw-42") as bob:
            assert bob.principal == "User:bob, the =builder"
            bob.create_topic("t", 1)
        admin.delete_user("bob, the =builder")
        with pytest.raises(HeraldError) as refused:
            connect(secured, "bob, the =builder", "bob-pw-42")
        assert refused.value.code == SASL_AUTHENTICATION_FAILED
        with pytest.raises(HeraldError) as missing:
            admin.delete_user("bob, the =builder")
        assert missing.value.code == RESOURCE_NOT_FOUND
    stored = (secured.data_dir / "security" / "users.json").read_text()
    assert "bob-pw-42" not in stored and "admin-pw" not in stored
    assert [u["user"] for u in json.loads(stored)["users"]] == ["admin"]
    secured.restart()
    with connect(secured, "admin", "admin-pw") as again:
        assert again.principal == "User:admin", "users survive a restart"


def test_a_wrong_password_and_an_unknown_user_fail_alike(secured: Broker) -> None:
    failures = []
    for user, password in (("admin", "not-it"), ("nobody", "admin-pw")):
        started = time.monotonic()
        with pytest.raises(HeraldError) as failed:
            connect(secured, user, password)
        assert time.monotonic() - started >= DELAY_S
        failures.append((failed.value.code, str(failed.value)))
    assert failures[0][0] == SASL_AUTHENTICATION_FAILED
    assert failures[0] == failures[1]


def test_required_authentication_refuses_anonymous_requests_and_closes(secured: Broker) -> None:
    anonymous = Client(secured.host, secured.port, timeout=10.0)
    with pytest.raises(HeraldError) as refused:
        anonymous.list_topics()
    assert refused.value.code == SASL_AUTHENTICATION_FAILED
    assert anonymous.closed


def test_without_required_authentication_anonymous_clients_are_served(client: Client) -> None:
    assert client.principal == "User:ANONYMOUS"
    assert client.features is not None and client.features["authentication"]["required"] is False
    client.create_topic("open", 1)
    assert [t["topic"] for t in client.list_topics()] == ["open"]


def test_a_group_consumer_authenticates_both_its_connections(secured: Broker) -> None:
    with connect(secured, "admin", "admin-pw") as admin:
        admin.create_topic("orders", 1)
        admin.produce("orders", [b"one"], partition=0)
    consumer = GroupConsumer(secured.host, secured.port, "billing", ["orders"], timeout=10.0,
                             username="admin", password="admin-pw")
    try:
        deadline = time.monotonic() + 20
        seen: list = []
        while not seen and time.monotonic() < deadline:
            seen = consumer.poll()
        assert [record.value for _, _, record in seen] == [b"one"]
    finally:
        consumer.close()
