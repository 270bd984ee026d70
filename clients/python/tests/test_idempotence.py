"""The idempotent ``produce`` against a real broker (protocol.md, "Idempotent
producers"): a batch sent again after its answer was lost, or after the
broker was killed, is stored once and answered with its first offsets."""

import signal

import pytest

from herald_client import Client, HeraldError
from herald_client.errors import OUT_OF_ORDER_SEQUENCE_NUMBER


def resend_last(client: Client, topic: str, count: int) -> None:
    """Moves the partition's sequence back over the last batch of ``count``
    records, as a producer whose acknowledgement was lost still has it."""
    assert client._sequences is not None
    client._sequences[(topic, 0)] -= count


def test_a_batch_sent_again_is_stored_once(client, fetch_all):
    client.create_topic("idem", 1)
    [first] = client.produce("idem", [b"a", b"b"], partition=0)
    resend_last(client, "idem", 2)
    [again] = client.produce("idem", [b"a", b"b"], partition=0)
    assert again["base_offset"] == first["base_offset"] == 0
    [third] = client.produce("idem", [b"c"], partition=0)
    assert third["base_offset"] == 2
    assert [r.value for r in fetch_all(client, "idem", 0)] == [b"a", b"b", b"c"]
    # A gap: the producer's numbering can no longer be trusted.
    client._sequences[("idem", 0)] += 5
    with pytest.raises(HeraldError) as info:
        client.produce("idem", [b"lost"], partition=0)
    assert info.value.code == OUT_OF_ORDER_SEQUENCE_NUMBER


def test_a_retry_after_a_kill_is_stored_once(broker, fetch_all):
    with Client(broker.host, broker.port, timeout=10.0) as client:
        client.create_topic("idem", 1)
        for i in range(3):
            client.produce("idem", [f"v{i}".encode()], partition=0)
        producer, sequences = client._producer, dict(client._sequences or {})
    broker._process.send_signal(signal.SIGKILL)
    broker._process.wait()
    broker._process = None
    broker.start(broker.port or 0)
    with Client(broker.host, broker.port, timeout=10.0) as client:
        client._producer, client._sequences = producer, sequences
        resend_last(client, "idem", 1)
        [again] = client.produce("idem", [b"v2"], partition=0)
        assert again["base_offset"] == 2
        assert [r.value for r in fetch_all(client, "idem", 0)] == [b"v0", b"v1", b"v2"]


def test_idempotence_can_be_turned_off(client, fetch_all):
    client.create_topic("plain", 1)
    client.idempotent = False
    client.produce("plain", [b"a"], partition=0)
    client.produce("plain", [b"a"], partition=0)
    assert client._producer is None
    assert len(fetch_all(client, "plain", 0)) == 2
