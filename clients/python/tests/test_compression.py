"""Compressed batches (protocol.md, "Compression"): the producer compresses
with lz4 or zstd, the broker stores the batches as sent, and decoding
decompresses them, refusing a damaged frame and a decompression bomb."""

import json
import time
import struct

import lz4.frame
import pytest
import zstandard

from herald_client import HeraldError, decode_batches, encode_batch
from herald_client.batch import MAX_DECOMPRESSED_BYTES, crc32c

CREATE_TIME = {"message_timestamp_type": "CreateTime"}
LOG_APPEND_TIME = {"message_timestamp_type": "LogAppendTime"}
CODECS = ["lz4", "zstd"]


def log_lines(start, count):
    return [{
        "key": f"host-{i % 5}".encode(),
        "value": json.dumps({"level": "info", "msg": f"request {i} served", "status": 200}).encode(),
        "headers": [("trace", f"{i:08x}".encode())],
        "timestamp": 1_700_000_000_000 + i,
    } for i in range(start, start + count)]


def fields(record):
    return {"key": record.key, "value": record.value, "headers": record.headers, "timestamp": record.timestamp}


def attributes_of(raw):
    """The attributes byte of every batch in the fetched bytes ``raw``."""
    out, pos = [], 0
    while pos < len(raw):
        (length,) = struct.unpack_from(">i", raw, pos + 8)
        out.append(raw[pos + 17])
        pos += 12 + length
    return out


def raw_fetch(client, topic):
    return client._call("fetch", {"topic": topic, "partition": 0, "offset": 0, "max_bytes": 1 << 20,
                                  "min_bytes": 0, "max_wait_ms": 0})["records"]


@pytest.mark.parametrize("codec", CODECS)
def test_offline_compressed_batch_round_trips(codec):
    records = log_lines(0, 100)
    plain = encode_batch(records, 0)
    batch = encode_batch(records, 0, compression=codec)
    assert len(batch) < len(plain) / 3
    assert batch[17] == {"lz4": 0x02, "zstd": 0x04}[codec]
    assert plain[20:44] == batch[20:44], "the header's counts and timestamps are the uncompressed batch's"
    assert [fields(r) for r in decode_batches(batch)] == records


@pytest.mark.parametrize("codec", CODECS)
def test_offline_a_decompression_bomb_is_refused(codec):
    zeros = bytes(MAX_DECOMPRESSED_BYTES + 1)
    frame = lz4.frame.compress(zeros) if codec == "lz4" else zstandard.ZstdCompressor().compress(zeros)
    assert len(frame) < MAX_DECOMPRESSED_BYTES // 100
    header = bytearray(encode_batch(log_lines(0, 1), 0)[:44])
    struct.pack_into(">i", header, 8, 32 + len(frame))
    header[17] = {"lz4": 0x02, "zstd": 0x04}[codec]
    batch = bytearray(header) + frame
    struct.pack_into(">I", batch, 12, crc32c(bytes(batch[16:])))
    with pytest.raises(HeraldError) as info:
        decode_batches(bytes(batch))
    assert info.value.name == "CORRUPT_MESSAGE"
    assert "decompress to more than 67108864 bytes" in str(info.value)


def test_offline_a_damaged_frame_and_codec_three_are_refused():
    batch = bytearray(encode_batch(log_lines(0, 20), 0, compression="zstd"))
    batch[60] ^= 0x55
    struct.pack_into(">I", batch, 12, crc32c(bytes(batch[16:])))
    with pytest.raises(HeraldError):
        decode_batches(bytes(batch))
    batch = bytearray(encode_batch(log_lines(0, 2), 0))
    batch[17] = 0x06
    struct.pack_into(">I", batch, 12, crc32c(bytes(batch[16:])))
    with pytest.raises(HeraldError, match="codec 3"):
        decode_batches(bytes(batch))
    with pytest.raises(ValueError):
        encode_batch(log_lines(0, 1), 0, compression="gzip")


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_fetch_compressed(client, fetch_all, codec):
    assert client.features["compression"] == ["lz4", "zstd"]
    client.create_topic("logs", 1, config=CREATE_TIME)
    client.produce("logs", log_lines(0, 200), partition=0, compression=codec)
    client.produce("logs", log_lines(200, 50), partition=0)
    assert attributes_of(raw_fetch(client, "logs")) == [{"lz4": 0x02, "zstd": 0x04}[codec], 0]
    fetched = fetch_all(client, "logs", 0)
    assert [r.offset for r in fetched] == list(range(250))
    assert [fields(r) for r in fetched] == log_lines(0, 250)
    assert [r.offset for r in client.fetch("logs", 0, 120).records][:1] == [120]


def test_a_log_append_time_topic_stamps_compressed_batches(client):
    client.create_topic("stamped", 1, config=LOG_APPEND_TIME)
    for codec in CODECS:
        client.produce("stamped", log_lines(0, 10), partition=0, compression=codec)
    assert attributes_of(raw_fetch(client, "stamped")) == [0x03, 0x05]
    records = client.fetch("stamped", 0, 0).records
    assert len(records) == 20
    assert all(r.timestamp > 1_700_000_000_100 for r in records)


def test_the_broker_refuses_a_compressed_batch_with_a_flipped_byte(client):
    client.create_topic("t", 1, config=CREATE_TIME)
    batch = bytearray(encode_batch(log_lines(0, 10), 0, compression="lz4"))
    batch[50] ^= 0x01
    with pytest.raises(HeraldError) as info:
        client._call("produce", {"topic": "t", "partition": 0, "acks": 1, "batch": bytes(batch)})
    assert info.value.name == "CORRUPT_MESSAGE"
    batch[50] ^= 0x01
    batch[17] = 0x06
    struct.pack_into(">I", batch, 12, crc32c(bytes(batch[16:])))
    with pytest.raises(HeraldError) as info:
        client._call("produce", {"topic": "t", "partition": 0, "acks": 1, "batch": bytes(batch)})
    assert info.value.name == "INVALID_REQUEST"
    assert client.fetch("t", 0, 0).records == []


def test_a_group_consumer_reads_compressed_batches(broker, client):
    from herald_client import GroupConsumer

    client.create_topic("g", 2, config=CREATE_TIME)
    client.produce("g", log_lines(0, 30), partition=0, compression="lz4")
    client.produce("g", log_lines(30, 30), partition=1, compression="zstd")
    member = GroupConsumer(broker.host, broker.port, "readers", ["g"], session_timeout_ms=6000)
    try:
        read = []
        deadline = time.monotonic() + 15
        while len(read) < 60 and time.monotonic() < deadline:
            read.extend(fields(record) for _topic, _partition, record in member.poll(timeout_ms=500))
        assert sorted(read, key=lambda r: r["timestamp"]) == log_lines(0, 60)
        member.commit()
    finally:
        member.close()
