"""Protocol edge cases driven with raw bytes on a socket, bypassing the client:
malformed payloads, unknown operations, a missing handshake, oversize frames
and Kafka clients knocking on the wrong port."""

import socket
import struct
from typing import Any, Dict, Optional

import msgpack
import pytest

TIMEOUT_S = 10.0


class RawConnection:
    """A bare TCP connection that sends and reads Herald frames by hand."""

    def __init__(self, broker):
        self.sock = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT_S)

    def close(self) -> None:
        self.sock.close()

    def send_payload(self, payload: bytes) -> None:
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def send(self, request: Dict[str, Any]) -> None:
        self.send_payload(msgpack.packb(request, use_bin_type=True))

    def read(self) -> Optional[Dict[str, Any]]:
        """Reads one response map; None if the broker closed the connection."""
        prefix = self._read_exact(4)
        if prefix is None:
            return None
        payload = self._read_exact(struct.unpack(">I", prefix)[0])
        assert payload is not None, "connection closed in the middle of a frame"
        return msgpack.unpackb(payload, raw=False)

    def call(self, request: Dict[str, Any]) -> Dict[str, Any]:
        self.send(request)
        response = self.read()
        assert response is not None, f"connection closed instead of answering {request}"
        return response

    def handshake(self) -> Dict[str, Any]:
        response = self.call({"correlation_id": 1, "op": "handshake",
                              "client_id": "raw-frames", "protocol_version": 1})
        assert response["error_code"] == 0
        return response

    def assert_closed(self) -> None:
        """Asserts that the broker closes the connection without sending more."""
        try:
            data = self.sock.recv(1)
        except ConnectionResetError:
            return
        assert data == b"", f"expected the connection to close, got {data!r}"

    def _read_exact(self, n: int) -> Optional[bytes]:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            buf += chunk
        return buf


@pytest.fixture
def raw(broker):
    connection = RawConnection(broker)
    yield connection
    connection.close()


def assert_still_usable(raw: RawConnection, correlation_id: int) -> None:
    response = raw.call({"correlation_id": correlation_id, "op": "list_topics"})
    assert (response["correlation_id"], response["error_code"]) == (correlation_id, 0)
    assert response["topics"] == []


def test_handshake_over_raw_socket(raw):
    response = raw.handshake()
    assert response["correlation_id"] == 1
    assert response["protocol_version"] == 1
    assert response["max_frame_bytes"] > 0 and response["max_in_flight"] > 0


def test_garbage_payload_gets_invalid_request_and_connection_stays_open(raw):
    raw.handshake()
    raw.send_payload(b"\xc1\xc1 this is not MessagePack")
    response = raw.read()
    assert (response["correlation_id"], response["error_code"]) == (0, 42)
    assert_still_usable(raw, 2)


def test_payload_that_is_not_a_map_gets_invalid_request(raw):
    raw.handshake()
    raw.send_payload(msgpack.packb([1, "list_topics"]))
    response = raw.read()
    assert (response["correlation_id"], response["error_code"]) == (0, 42)
    assert_still_usable(raw, 2)


@pytest.mark.parametrize("request_fields", [
    {"op": "describe_topic"},
    {"op": "describe_topic", "topic": 5},
    {"op": "create_topic", "topic": "t", "partitions": "three"},
])
def test_missing_or_mistyped_field_gets_invalid_request(raw, request_fields):
    raw.handshake()
    response = raw.call({"correlation_id": 7, **request_fields})
    assert (response["correlation_id"], response["error_code"]) == (7, 42)
    assert isinstance(response["error_message"], str)
    assert_still_usable(raw, 8)


def test_str_where_bin_is_specified_gets_invalid_request(raw):
    raw.handshake()
    assert raw.call({"correlation_id": 2, "op": "create_topic", "topic": "t",
                     "partitions": 1})["error_code"] == 0
    for n, record in enumerate([{"value": "text"}, {"key": "k", "value": b"v"},
                                {"value": b"v", "headers": [["h", "text"]]}]):
        response = raw.call({"correlation_id": 10 + n, "op": "produce", "topic": "t",
                             "partition": 0, "records": [record]})
        assert (response["correlation_id"], response["error_code"]) == (10 + n, 42)
    assert_still_usable_listing(raw, 20, ["t"])


def test_an_op_that_is_not_a_str_is_answered_with_the_correlation_id(raw):
    raw.handshake()
    response = raw.call({"correlation_id": 6, "op": b"list_topics"})
    assert (response["correlation_id"], response["error_code"]) == (6, 42)
    response = raw.call({"correlation_id": 0, "op": "list_topics"})
    assert (response["correlation_id"], response["error_code"]) == (0, 42), "0 is reserved"


def test_a_malformed_produce_with_acks_0_is_not_answered(raw):
    raw.handshake()
    raw.send({"correlation_id": 3, "op": "produce", "topic": "t", "acks": 0,
              "records": [{"value": "text"}]})
    # The next response is the next request's: nothing came for the produce.
    assert_still_usable(raw, 4)


def assert_still_usable_listing(raw: RawConnection, correlation_id: int, topics) -> None:
    response = raw.call({"correlation_id": correlation_id, "op": "list_topics"})
    assert (response["correlation_id"], response["error_code"]) == (correlation_id, 0)
    assert [t["topic"] for t in response["topics"]] == topics


def test_unknown_operation_gets_1001_and_connection_stays_open(raw):
    raw.handshake()
    response = raw.call({"correlation_id": 5, "op": "become_leader"})
    assert (response["correlation_id"], response["error_code"]) == (5, 1001)
    assert_still_usable(raw, 6)


def test_unknown_request_fields_are_ignored(raw):
    raw.handshake()
    response = raw.call({"correlation_id": 3, "op": "list_topics", "from_the_future": True})
    assert (response["correlation_id"], response["error_code"]) == (3, 0)


def test_request_before_handshake_gets_1000_and_close(raw):
    response = raw.call({"correlation_id": 9, "op": "list_topics"})
    assert (response["correlation_id"], response["error_code"]) == (9, 1000)
    raw.assert_closed()


def test_unsupported_protocol_version_gets_35_and_close(raw):
    response = raw.call({"correlation_id": 4, "op": "handshake", "client_id": "future",
                         "protocol_version": 99})
    assert (response["correlation_id"], response["error_code"]) == (4, 35)
    raw.assert_closed()


def test_oversize_frame_gets_1002_and_close(raw):
    max_frame_bytes = raw.handshake()["max_frame_bytes"]
    # Only the length prefix: the broker must answer without reading the payload.
    raw.sock.sendall(struct.pack(">I", max_frame_bytes + 1))
    response = raw.read()
    assert (response["correlation_id"], response["error_code"]) == (0, 1002)
    raw.assert_closed()


def test_kafka_request_is_closed_without_answer(raw):
    # An ApiVersions v3 request header, as a Kafka client sends first.
    raw.send_payload(struct.pack(">hhih", 18, 3, 1, -1))
    raw.assert_closed()
