"""Where a key lands: Kinesis's 128-bit MD5 hash space and CreateStream's even split of it.

Neutral ground: the sinks (shaping calls by shard), the store (laying out a stream's shards) and
the endpoint (checking ExplicitHashKey) all need these facts, and none of them may import another.
"""

from __future__ import annotations

import hashlib

HASH_SPACE = 1 << 128
MAX_HASH_KEY = HASH_SPACE - 1


def hash_key(partition_key: str) -> int:
    """Kinesis places a record by MD5(partition key) read as a 128-bit big-endian integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


def even_ranges(shard_count: int) -> list[tuple[int, int]]:
    """CreateStream's even split of the hash space: inclusive (start, end) per shard."""
    size = HASH_SPACE // shard_count
    ranges = []
    for i in range(shard_count):
        start = i * size
        end = HASH_SPACE - 1 if i == shard_count - 1 else (i + 1) * size - 1
        ranges.append((start, end))
    return ranges
