"""Tests that need no broker: checksums, hashing, batch decoding, the error
table, and the client's framing against a scripted stand-in broker.

Run them alone with ``python -m pytest clients/python/tests -k offline``.
"""

import socket
import struct
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import msgpack
import pytest

from herald_client import (
    ERROR_CODES,
    Client,
    HeraldError,
    Record,
    crc32c,
    decode_batches,
    murmur2,
    partition_for_key,
)

PROTOCOL_MD = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


# -- checksums and hashing -----------------------------------------------------


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@pytest.mark.parametrize("data, expected", [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_matches_kafka(data, expected):
    assert murmur2(data) == expected


def test_partition_for_key_uses_positive_hash():
    # murmur2(b"21") is negative: toPositive keeps the low 31 bits.
    assert partition_for_key(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    assert partition_for_key("abc", 4) == 479470107 % 4


# -- record batches --------------------------------------------------------------


def build_batch(base_offset: int, records: List[Dict[str, Any]], attributes: int = 0,
                corrupt_crc: bool = False) -> bytes:
    """Encodes one batch by hand, field by field as protocol.md lays it out."""
    timestamps = [r["timestamp"] for r in records]
    base_timestamp, max_timestamp = min(timestamps), max(timestamps)
    body = b""
    for delta, r in enumerate(records):
        fields = struct.pack(">iq", delta, r["timestamp"] - base_timestamp)
        for data in (r.get("key"), r.get("value")):
            fields += struct.pack(">i", -1) if data is None else struct.pack(">i", len(data)) + data
        headers = r.get("headers", [])
        fields += struct.pack(">i", len(headers))
        for key, value in headers:
            fields += struct.pack(">H", len(key.encode())) + key.encode()
            fields += struct.pack(">i", len(value)) + value
        body += struct.pack(">i", len(fields)) + fields
    after_crc = struct.pack(">BBHiqqi", 1, attributes, 0, len(records) - 1,
                            base_timestamp, max_timestamp, len(records)) + body
    crc = crc32c(after_crc) ^ (1 if corrupt_crc else 0)
    return struct.pack(">qiI", base_offset, 4 + len(after_crc), crc) + after_crc


FIRST = [
    {"key": b"k0", "value": b"v0", "timestamp": 1000, "headers": [("h", b"1"), ("h", b"2")]},
    {"key": None, "value": b"v1", "timestamp": 1005},
    {"key": b"k2", "value": None, "timestamp": 999},
]
SECOND = [{"key": b"k3", "value": b"v3", "timestamp": 2000}]


def test_offline_decode_hand_built_batches():
    data = build_batch(10, FIRST) + build_batch(13, SECOND)
    assert decode_batches(data) == [
        Record(10, 1000, b"k0", b"v0", [("h", b"1"), ("h", b"2")]),
        Record(11, 1005, None, b"v1", []),
        Record(12, 999, b"k2", None, []),
        Record(13, 2000, b"k3", b"v3", []),
    ]


def test_offline_decode_drops_records_below_min_offset():
    data = build_batch(10, FIRST) + build_batch(13, SECOND)
    assert [r.offset for r in decode_batches(data, min_offset=12)] == [12, 13]


def test_offline_decode_ignores_trailing_partial_batch():
    first = build_batch(10, FIRST)
    second = build_batch(13, SECOND)
    for cut in (1, 11, 12, 44, len(second) - 1):
        assert [r.offset for r in decode_batches(first + second[:cut])] == [10, 11, 12]
    assert decode_batches(b"") == []


def test_offline_decode_log_append_time_uses_max_timestamp():
    records = decode_batches(build_batch(0, FIRST, attributes=0x01))
    assert [r.timestamp for r in records] == [1005, 1005, 1005]


def test_offline_decode_detects_crc_mismatch():
    with pytest.raises(HeraldError) as info:
        decode_batches(build_batch(10, FIRST, corrupt_crc=True))
    assert info.value.code == 2
    assert info.value.name == "CORRUPT_MESSAGE"


def test_offline_decode_detects_flipped_payload_byte():
    batch = bytearray(build_batch(10, FIRST))
    batch[-3] ^= 0xFF
    with pytest.raises(HeraldError) as info:
        decode_batches(bytes(batch))
    assert info.value.code == 2


def test_offline_decode_stops_at_corrupt_batch_after_good_ones():
    data = build_batch(10, FIRST) + build_batch(13, SECOND, corrupt_crc=True)
    assert [r.offset for r in decode_batches(data)] == [10, 11, 12]
    with pytest.raises(HeraldError):
        decode_batches(data, min_offset=13)


def test_offline_decode_detects_lying_record_length():
    batch = bytearray(build_batch(0, SECOND))
    struct.pack_into(">i", batch, 44, 10_000)  # the first record's record_length
    struct.pack_into(">I", batch, 12, crc32c(bytes(batch[16:])))
    with pytest.raises(HeraldError) as info:
        decode_batches(bytes(batch))
    assert info.value.code == 2


# -- error codes -------------------------------------------------------------------


def test_offline_error_table_matches_protocol_md():
    text = PROTOCOL_MD.read_text()
    table = text.split("<!-- error-codes:start -->")[1].split("<!-- error-codes:end -->")[0]
    documented = {}
    for line in table.strip().splitlines():
        code, name, retriable, meaning = [cell.strip() for cell in line.strip("|").split("|")]
        documented[int(code)] = (name.strip("`"), retriable == "yes", meaning)
    assert documented == ERROR_CODES


def test_offline_herald_error_attributes():
    error = HeraldError(3, "no topic 'x'")
    assert (error.code, error.name, error.message, error.retriable) == (
        3, "UNKNOWN_TOPIC_OR_PARTITION", "no topic 'x'", True)
    assert HeraldError(37).message == ERROR_CODES[37][2]
    unknown = HeraldError(4242)
    assert (unknown.name, unknown.retriable) == ("UNKNOWN_ERROR_CODE", False)


# -- the client against a scripted stand-in broker ------------------------------------

CLOSE = object()
"""A reply that makes the stand-in broker close the connection."""

HANDSHAKE = {"broker_version": "0.0.0-fake", "protocol_version": 1,
             "max_frame_bytes": 4096, "max_in_flight": 8}


def _read_exact(conn: socket.socket, n: int) -> Optional[bytes]:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class FakeBroker:
    """Accepts one connection, answers the handshake, and answers every other
    request with the frames ``respond(request)`` returns. Records the requests
    it decoded (bin arrives as bytes, str as str)."""

    def __init__(self, respond: Callable[[Dict[str, Any]], List[Any]], handshake=HANDSHAKE):
        self.respond = respond
        self.handshake = handshake
        self.requests: List[Dict[str, Any]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def ops(self) -> List[str]:
        return [request["op"] for request in self.requests]

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, self.listener:
            while True:
                prefix = _read_exact(conn, 4)
                if prefix is None:
                    return
                request = msgpack.unpackb(_read_exact(conn, struct.unpack(">I", prefix)[0]),
                                          raw=False)
                self.requests.append(request)
                if request["op"] == "handshake":
                    replies = [dict(self.handshake, correlation_id=request["correlation_id"],
                                    error_code=0, error_message=None)]
                else:
                    replies = self.respond(request)
                for reply in replies:
                    if reply is CLOSE:
                        return
                    payload = msgpack.packb(reply, use_bin_type=True)
                    conn.sendall(struct.pack(">I", len(payload)) + payload)


def ok(request: Dict[str, Any], **fields: Any) -> Dict[str, Any]:
    """A successful response to ``request``."""
    return {"correlation_id": request["correlation_id"], "error_code": 0,
            "error_message": None, **fields}


def produced(request: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Answers a produce as if everything went to partition 0 at offset 0."""
    return [ok(request, partitions=[{"partition": 0, "base_offset": 0, "error_code": 0,
                                     "record_count": len(request["records"]),
                                     "error_message": None}])]


def connect(fake: FakeBroker) -> Client:
    return Client("127.0.0.1", fake.port, client_id="offline", timeout=5.0)


def test_offline_handshake_is_first_and_stored():
    fake = FakeBroker(lambda request: [ok(request, topics=[])])
    with connect(fake) as client:
        assert (client.broker_version, client.max_frame_bytes, client.max_in_flight) == (
            "0.0.0-fake", 4096, 8)
        assert client.list_topics() == []
    handshake = fake.requests[0]
    assert handshake["op"] == "handshake"
    assert (handshake["client_id"], handshake["protocol_version"]) == ("offline", 1)
    assert (handshake["min_protocol_version"], handshake["max_protocol_version"]) == (1, 1)
    assert handshake["correlation_id"] != 0


def test_offline_correlation_ids_skip_0_when_they_wrap_around():
    fake = FakeBroker(lambda request: [ok(request, topics=[])])
    with connect(fake) as client:
        client._next_correlation_id = 0xFFFFFFFF
        client.list_topics()
        client.list_topics()
    assert [r["correlation_id"] for r in fake.requests[1:]] == [0xFFFFFFFF, 1]


def test_offline_an_operation_the_broker_does_not_list_is_refused_locally():
    listed = [{"op": op, "min_version": 1, "max_version": 1} for op in ("handshake", "list_topics")]
    fake = FakeBroker(lambda request: [ok(request, topics=[])],
                      handshake=dict(HANDSHAKE, operations=listed))
    with connect(fake) as client:
        assert client.supports("list_topics") and not client.supports("delete_topic")
        with pytest.raises(HeraldError) as info:
            client.delete_topic("t")
        assert info.value.code == 1001 and "not sent" in info.value.message
        assert client.list_topics() == []
    assert fake.ops() == ["handshake", "list_topics"]


def test_offline_a_broker_that_lists_no_operations_is_asked_anything():
    fake = FakeBroker(lambda request: [ok(request)])
    with connect(fake) as client:
        assert "operations" not in client.features and client.supports("delete_topic")
        client.delete_topic("t")
    assert fake.ops() == ["handshake", "delete_topic"]


def test_offline_produce_encodes_every_record_form():
    fake = FakeBroker(produced)
    with connect(fake) as client:
        client.produce("t", [
            b"bytes",
            "text",
            (b"k", "v"),
            {"key": "k2", "value": None, "headers": [("h", "x"), ("h", b"y")], "timestamp": 5},
            {"value": b"v", "headers": {"a": b"1"}},
            Record(offset=99, timestamp=7, key=None, value=b"r", headers=[]),
        ], partition=2, acks=-1)
    request = fake.requests[1]
    assert (request["op"], request["topic"], request["partition"], request["acks"]) == (
        "produce", "t", 2, -1)
    assert request["records"] == [
        {"value": b"bytes"},
        {"value": b"text"},
        {"key": b"k", "value": b"v"},
        {"key": b"k2", "value": None, "headers": [["h", b"x"], ["h", b"y"]], "timestamp": 5},
        {"value": b"v", "headers": [["a", b"1"]]},
        {"value": b"r", "timestamp": 7},
    ]
    # raw=False decoding yields bytes only for MessagePack bin.
    assert all(isinstance(r["value"], bytes) for r in request["records"] if r["value"])


def test_offline_produce_omits_partition_when_not_given():
    fake = FakeBroker(produced)
    with connect(fake) as client:
        client.produce("t", [b"v"])
    assert "partition" not in fake.requests[1]


def test_offline_produce_refuses_unknown_record_fields():
    fake = FakeBroker(produced)
    with connect(fake) as client:
        with pytest.raises(ValueError):
            client.produce("t", [{"val": b"typo"}])
        with pytest.raises(TypeError):
            client.produce("t", [{"value": b"v", "headers": [(b"bytes-key", b"v")]}])
    assert fake.ops() == ["handshake"]


def test_offline_produce_raises_on_partition_error():
    def respond(request):
        return [ok(request, partitions=[
            {"partition": 0, "base_offset": 4, "record_count": 1, "error_code": 0,
             "error_message": None},
            {"partition": 1, "base_offset": -1, "record_count": 0, "error_code": 10,
             "error_message": "batch too large"},
        ])]

    fake = FakeBroker(respond)
    with connect(fake) as client:
        with pytest.raises(HeraldError) as info:
            client.produce("t", [(b"a", b"1"), (b"b", b"2")])
    assert info.value.code == 10
    assert "partition 1" in info.value.message


def test_offline_acks_zero_waits_for_nothing():
    fake = FakeBroker(lambda request: [] if request["op"] == "produce"
                      else [ok(request, offset=1)])
    with connect(fake) as client:
        assert client.produce("t", [b"v"], partition=0, acks=0) is None
        assert client.latest_offset("t", 0) == 1
    assert fake.requests[1]["acks"] == 0


def test_offline_stale_responses_are_skipped():
    def respond(request):
        stale = {"correlation_id": request["correlation_id"] + 1000, "error_code": 3,
                 "error_message": "an old acks=0 failure"}
        return [stale, ok(request, topics=[{"topic": "a", "partitions": 1}])]

    fake = FakeBroker(respond)
    with connect(fake) as client:
        assert client.list_topics() == [{"topic": "a", "partitions": 1}]


def test_offline_error_with_correlation_id_zero_is_raised():
    fake = FakeBroker(lambda request: [
        {"correlation_id": 0, "error_code": 42, "error_message": "bad MessagePack"}])
    with connect(fake) as client:
        with pytest.raises(HeraldError) as info:
            client.list_topics()
    assert (info.value.code, info.value.message) == (42, "bad MessagePack")


def test_offline_oversize_request_is_refused_locally():
    fake = FakeBroker(lambda request: [ok(request, topics=[])])
    with connect(fake) as client:
        with pytest.raises(HeraldError) as info:
            client.produce("t", [b"x" * 5000])
        assert info.value.code == 1002
        assert client.list_topics() == []
    assert fake.ops() == ["handshake", "list_topics"]


def test_offline_broker_closing_the_connection_closes_the_client():
    fake = FakeBroker(lambda request: [CLOSE])
    client = connect(fake)
    with pytest.raises(ConnectionError):
        client.list_topics()
    with pytest.raises(ConnectionError, match="closed"):
        client.list_topics()


def test_offline_unsupported_version_is_raised():
    fake = FakeBroker(lambda request: [], handshake=dict(HANDSHAKE, protocol_version=2))
    with pytest.raises(HeraldError) as info:
        connect(fake)
    assert info.value.code == 35


def test_offline_fetch_decodes_the_records_field():
    batch = build_batch(10, FIRST) + build_batch(13, SECOND)[:20]

    def respond(request):
        return [ok(request, high_watermark=14, log_start_offset=3, records=batch)]

    fake = FakeBroker(respond)
    with connect(fake) as client:
        result = client.fetch("t", 0, 11, max_wait_ms=250)
    assert (result.high_watermark, result.log_start_offset) == (14, 3)
    assert [r.offset for r in result.records] == [11, 12]
    request = fake.requests[1]
    assert {k: request[k] for k in ("topic", "partition", "offset", "max_bytes", "min_bytes",
                                    "max_wait_ms")} == {
        "topic": "t", "partition": 0, "offset": 11, "max_bytes": 1048576, "min_bytes": 0,
        "max_wait_ms": 250}
