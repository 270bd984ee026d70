"""Kafka's default partitioner, which the broker uses to place keyed records.

``murmur2`` must agree bit for bit with the broker's (and Kafka's) hash, so
that a client can tell where a key goes before producing it.
"""

from typing import Union

from .records import _to_bytes


def murmur2(data: bytes) -> int:
    """Returns Kafka's murmur2 hash of ``data`` as a signed 32-bit int.

    A transcription of ``org.apache.kafka.common.utils.Utils.murmur2`` (seed
    ``0x9747b28c``), which the broker uses to place keyed records; Python ints
    are masked to 32 bits where Java's ints wrap.
    """
    mask = 0xFFFFFFFF
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    whole = length & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    remaining = length & 3
    if remaining == 3:
        h ^= data[whole + 2] << 16
    if remaining >= 2:
        h ^= data[whole + 1] << 8
    if remaining >= 1:
        h ^= data[whole]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: Union[bytes, str], partitions: int) -> int:
    """Returns the partition the broker picks for a keyed record.

    Kafka's default partitioner: ``toPositive(murmur2(key)) % partitions``. A
    str key is hashed as its UTF-8 bytes, as ``Client.produce`` sends it.
    """
    return (murmur2(_to_bytes(key)) & 0x7FFFFFFF) % partitions
