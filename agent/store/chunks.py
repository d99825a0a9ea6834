"""Chunk rows: the records one put sends to one shard, packed into a single row.

A row per record cost about 2.4 µs of SQLite per 200-byte record (binding four values, a B-tree
insert, the page write), more than the whole rest of the agent's pipeline. A chunk row costs one
insert per shard and put, whatever the number of records: the records' data, partition keys and
sequence counters are packed into blobs, and readers unpack them (tests/bench/bench_once.py; the
figures are in the README's Performance section).

A chunk row holds:

- ``seq``: the counter of its *last* record (the primary key: a shard's chunks are in write order
  and their counter ranges never overlap), ``first``: the counter of its first record;
- ``arrival``: the arrival time of all its records (one put, one clock reading), ``count``;
- ``base`` and ``idx``: each record's counter is ``base + idx[i]`` (idx unsigned 32-bit, native
  byte order: the store lives on the host that wrote it); the counters of one put are
  consecutive across the shards, so a shard's counters have gaps;
- ``key_ends``/``keys`` and ``data_ends``/``data``: the partition keys (UTF-8) and the data, each
  concatenated, with the running end offset of each record (unsigned 32-bit).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from functools import cache
from itertools import accumulate, compress

# Unsigned 32-bit items; array's "I" is 4 bytes on every platform CPython supports.
_U32 = "I"

CHUNK_COLUMNS = "seq, first, arrival, count, base, idx, key_ends, keys, data_ends, data"

ChunkRow = tuple[int, int, float, int, int, bytes, bytes, bytes, bytes, bytes]
# (counter, arrival, partition key, data) of one record, as readers see it
RecordRow = tuple[int, float, str, bytes]


def create_chunk_table(table: str) -> str:
    return (
        f"CREATE TABLE {table} (seq INTEGER PRIMARY KEY, first INTEGER NOT NULL, "
        "arrival REAL NOT NULL, count INTEGER NOT NULL, base INTEGER NOT NULL, "
        "idx BLOB NOT NULL, key_ends BLOB NOT NULL, keys BLOB NOT NULL, "
        "data_ends BLOB NOT NULL, data BLOB NOT NULL)"
    )


def insert_chunk(table: str) -> str:
    return f"INSERT INTO {table} ({CHUNK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class Packed:
    """The records one put sends to one shard, packed before the write transaction begins."""

    __slots__ = ("count", "data", "data_ends", "first", "idx", "key_ends", "keys", "last")

    def __init__(self, indexes: Sequence[int], keys: Sequence[str], datas: Sequence[bytes]):
        self.first = indexes[0]
        self.last = indexes[-1]
        self.count = len(indexes)
        self.idx = array(_U32, indexes).tobytes()
        joined = "".join(keys)
        if joined.isascii():  # a character is a byte: no key needs encoding on its own
            self.keys = joined.encode()
            self.key_ends = array(_U32, accumulate(map(len, keys))).tobytes()
        else:
            encoded = [key.encode() for key in keys]
            self.keys = b"".join(encoded)
            self.key_ends = array(_U32, accumulate(map(len, encoded))).tobytes()
        self.data_ends = array(_U32, accumulate(map(len, datas))).tobytes()
        self.data = b"".join(datas)

    def row(self, base: int, now: float) -> ChunkRow:
        """The row, once the put's first counter ``base`` and its arrival time are known."""
        return (
            base + self.last,
            base + self.first,
            now,
            self.count,
            base,
            self.idx,
            self.key_ends,
            self.keys,
            self.data_ends,
            self.data,
        )


def pack_shards(
    shard_count: int, placement: Sequence[int], keys: Sequence[str], datas: list[bytes]
) -> list[Packed | None]:
    """Group one put's records by shard (``placement[i]`` is record i's shard).

    The grouping runs in C (a selector per shard, then ``compress``): this runs in the store's
    thread, and Python there holds the GIL the reader needs.
    """
    if not keys:
        return [None] * shard_count
    if shard_count == 1:
        return [Packed(range(len(keys)), keys, datas)]
    if shard_count > 255:
        return _pack_shards_slow(shard_count, placement, keys, datas)
    where = bytes(placement)
    out: list[Packed | None] = []
    for shard in range(shard_count):
        if shard not in where:
            out.append(None)
            continue
        mine = where.translate(_selector(shard))
        out.append(
            Packed(
                list(compress(range(len(keys)), mine)),
                list(compress(keys, mine)),
                list(compress(datas, mine)),
            )
        )
    return out


def _pack_shards_slow(
    shard_count: int, placement: Sequence[int], keys: Sequence[str], datas: list[bytes]
) -> list[Packed | None]:
    indexes: list[list[int]] = [[] for _ in range(shard_count)]
    for i, shard in enumerate(placement):
        indexes[shard].append(i)
    return [
        Packed(ix, [keys[i] for i in ix], [datas[i] for i in ix]) if ix else None for ix in indexes
    ]


@cache
def _selector(s: int) -> bytes:
    """The table mapping byte ``s`` to 1 and every other byte to 0: each built on first use (all
    255 at import were ~5 ms of every start-up, and a store with one shard never needs one)."""
    return bytes(int(b == s) for b in range(256))


def unpack(row: ChunkRow, after: int, upto: int) -> list[RecordRow]:
    """The records of a chunk whose counters are in ``(after, upto]``, in order."""
    _last, _first, arrival, count, base, idx_blob, key_ends_blob, keys, ends_blob, data = row
    idx = array(_U32)
    idx.frombytes(idx_blob)
    key_ends = array(_U32)
    key_ends.frombytes(key_ends_blob)
    ends = array(_U32)
    ends.frombytes(ends_blob)
    keys, data = bytes(keys), bytes(data)
    out: list[RecordRow] = []
    for i in range(count):
        seq = base + idx[i]
        if seq <= after:
            continue
        if seq > upto:
            break
        k0 = key_ends[i - 1] if i else 0
        d0 = ends[i - 1] if i else 0
        out.append((seq, arrival, keys[k0 : key_ends[i]].decode(), data[d0 : ends[i]]))
    return out
