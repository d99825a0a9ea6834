"""Stream administration and paged shard reads beyond what the agent needs: what the Kinesis API serves.

Creating a stream that must not exist yet, deleting one, changing its retention, tagging it, and
reading one shard a bounded page at a time (by records and by bytes) from an exclusive counter.
These are functions over a :class:`StreamStore` so the store module stays the agent's write path.
"""

from __future__ import annotations

import sqlite3
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from operator import add

from agent.errors import StoreError, StreamNotFound
from agent.store import sidetables
from agent.store.chunks import _U32 as U32
from agent.store.chunks import CHUNK_COLUMNS, RecordRow
from agent.store.consumers import forget_stream
from agent.store.model import MAX_RETENTION_HOURS, StreamInfo, valid_stream_name
from agent.store.sidetables import stream_rows, table_exists
from agent.store.store import StreamStore

CHUNKS_PER_QUERY = 16
MAX_TAGS = 50
TAGS_TABLE = (
    "CREATE TABLE IF NOT EXISTS stream_tags (stream_id INTEGER NOT NULL, key TEXT NOT NULL, "
    "value TEXT NOT NULL, PRIMARY KEY (stream_id, key))"
)


class StreamExists(StoreError):
    """CreateStream of a name that is taken."""

    retryable = False


class TooManyTags(StoreError):
    """More than MAX_TAGS tags on one stream."""

    retryable = False


def create_stream(store: StreamStore, name: str, shard_count: int, retention_hours: int) -> None:
    """Create ``name``; StreamExists when a stream of that name is already there."""
    if valid_stream_name(name) and name in store.list_streams():
        raise StreamExists(f"stream {name!r} already exists in {store.directory}")
    before = store._fetch("SELECT count(*) FROM streams")[0][0]
    store.ensure_stream(name, shard_count, retention_hours)
    after = store._fetch("SELECT count(*) FROM streams")[0][0]
    if after == before:  # another connection created it between our look and our write
        raise StreamExists(f"stream {name!r} already exists in {store.directory}")


def delete_stream(store: StreamStore, name: str) -> None:
    """Drop a stream, its records and its tags (StreamNotFound when there is none).

    A writer on another connection that still has the stream cached gets a StoreError on its
    next put and looks the stream up again (then StreamNotFound, or the re-created stream).
    """
    info = store.describe(name)  # StreamNotFound first
    with store._lock:
        db = store._connection()
        store._streams.pop(name, None)

        def body() -> None:
            try:
                stream_id = sidetables.stream_id(db, name)
            except StreamNotFound:  # another connection deleted it first
                return
            for i in range(info.shard_count):
                db.execute(f"DROP TABLE IF EXISTS records_{stream_id}_{i}")
            db.execute("DELETE FROM shards WHERE stream_id = ?", (stream_id,))
            db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))
            if table_exists(db, "stream_tags"):
                db.execute("DELETE FROM stream_tags WHERE stream_id = ?", (stream_id,))
            forget_stream(db, stream_id)

        try:
            store._write(db, body)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot delete stream {name!r} in {store.path}: {exc}") from exc


def set_retention(store: StreamStore, name: str, hours: int) -> StreamInfo:
    """Change a stream's retention (1 to 8,760 hours); the next trimming pass applies it."""
    if not 1 <= hours <= MAX_RETENTION_HOURS:
        raise ValueError(f"retention must be 1 to {MAX_RETENTION_HOURS} hours, not {hours}")
    store.describe(name)
    with store._lock:
        db = store._connection()
        try:
            store._write(
                db,
                lambda: db.execute(
                    "UPDATE streams SET retention_hours = ? WHERE name = ?", (hours, name)
                ),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot change retention of {name!r}: {exc}") from exc
        store._streams.pop(name, None)
    return store.describe(name)


def add_tags(store: StreamStore, name: str, tags: dict[str, str]) -> None:
    """Add or overwrite tags; TooManyTags when the stream would have more than MAX_TAGS."""
    store.describe(name)
    with store._lock:
        db = store._connection()

        def body() -> None:
            db.execute(TAGS_TABLE)
            stream_id = sidetables.stream_id(db, name)
            existing = {
                k
                for (k,) in db.execute(
                    "SELECT key FROM stream_tags WHERE stream_id = ?", (stream_id,)
                )
            }
            if len(existing | set(tags)) > MAX_TAGS:
                raise TooManyTags(f"stream {name!r} would have more than {MAX_TAGS} tags")
            db.executemany(
                "INSERT INTO stream_tags (stream_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (stream_id, key) DO UPDATE SET value = excluded.value",
                [(stream_id, k, v) for k, v in tags.items()],
            )

        try:
            store._write(db, body)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot tag stream {name!r}: {exc}") from exc


def list_tags(store: StreamStore, name: str) -> list[tuple[str, str]]:
    """A stream's tags sorted by key (none when it was never tagged)."""
    store.describe(name)
    rows = stream_rows(
        store,
        name,
        "stream_tags",
        "SELECT key, value FROM stream_tags WHERE stream_id = ? ORDER BY key",
        "tags",
    )
    return [(str(k), str(v)) for k, v in rows]


@dataclass(frozen=True, slots=True)
class ChunkSlice:
    """Records ``lo`` to ``hi`` (exclusive) of one chunk row, its columns decoded once."""

    base: int
    arrival: float
    idx: array[int]
    key_starts: list[int]
    key_ends: array[int]
    keys: bytes
    data_starts: list[int]
    data_ends: array[int]
    data: bytes
    lo: int
    hi: int

    def rows(self) -> list[RecordRow]:
        return [
            (self.base + i, self.arrival, self.keys[k0:k1].decode(), self.data[d0:d1])
            for i, k0, k1, d0, d1 in zip(
                self.idx[self.lo : self.hi],
                self.key_starts[self.lo : self.hi],
                self.key_ends[self.lo : self.hi],
                self.data_starts[self.lo : self.hi],
                self.data_ends[self.lo : self.hi],
                strict=True,
            )
        ]


@dataclass(frozen=True, slots=True)
class ShardPage:
    """One GetRecords' worth of a shard, as slices of chunk rows, and the shard's tip then."""

    slices: list[ChunkSlice]
    count: int
    last: int | None  # counter of the page's last record
    last_arrival: float | None
    tip: int  # counter of the shard's newest record (0 when empty)

    def rows(self) -> list[RecordRow]:
        return [row for piece in self.slices for row in piece.rows()]


def shard_table_of(store: StreamStore, name: str, index: int) -> str:
    with store._lock:
        return store._stream(name).tables[index]


def _u32(blob: bytes) -> array[int]:
    out = array(U32)
    out.frombytes(blob)
    return out


def read_shard(store: StreamStore, table: str, after: int, limit: int, max_bytes: int) -> ShardPage:
    """Records of one shard with counters above ``after``: at most ``limit`` and ``max_bytes``
    (data plus partition keys).

    A record is never split: a page holds at least one record when any is there, even one
    larger than ``max_bytes`` (a record is at most 1 MiB, a page's cap 10 MiB). Whole runs of a
    chunk are cut by bisection, so the cost per record is the caller's rendering alone.
    """
    slices: list[ChunkSlice] = []
    left, budget, cursor, full = limit, max_bytes, after, False
    while not full:
        chunks = store._fetch(
            f"SELECT {CHUNK_COLUMNS} FROM {table} WHERE seq > ? ORDER BY seq LIMIT ?",
            (cursor, CHUNKS_PER_QUERY),
        )
        for chunk in chunks:
            _last, _first, arrival, count, base, idx_b, key_ends_b, keys, ends_b, data = chunk
            idx = _u32(idx_b)
            lo = bisect_right(idx, cursor - base) if cursor >= base else 0
            if lo >= count:
                cursor = chunk[0]
                continue
            key_ends, data_ends = _u32(key_ends_b), _u32(ends_b)
            sums = list(map(add, key_ends, data_ends))
            before = sums[lo - 1] if lo else 0
            hi = min(count, lo + left, bisect_right(sums, before + budget, lo))
            if hi == lo and not slices:
                hi = lo + 1  # one oversized record still goes, alone
            if hi > lo:
                slices.append(
                    ChunkSlice(
                        base,
                        float(arrival),
                        idx,
                        [0, *key_ends[:-1]],
                        key_ends,
                        bytes(keys),
                        [0, *data_ends[:-1]],
                        data_ends,
                        bytes(data),
                        lo,
                        hi,
                    )
                )
                left -= hi - lo
                budget -= sums[hi - 1] - before
            if hi < count or left <= 0:
                full = True
                break
            cursor = chunk[0]
        if len(chunks) < CHUNKS_PER_QUERY:
            break
    tip = store._fetch(f"SELECT seq FROM {table} ORDER BY seq DESC LIMIT 1")
    last = slices[-1].base + slices[-1].idx[slices[-1].hi - 1] if slices else None
    return ShardPage(
        slices,
        limit - left,
        last,
        slices[-1].arrival if slices else None,
        int(tip[0][0]) if tip else 0,
    )


def shard_tips(store: StreamStore, tables: Sequence[str]) -> list[int | None]:
    """The counter of each shard's newest record (None for an empty shard)."""
    out: list[int | None] = []
    for table in tables:
        found = store._fetch(f"SELECT max(seq) FROM {table}")
        out.append(None if not found or found[0][0] is None else int(found[0][0]))
    return out


def placement(
    store: StreamStore, name: str, keys: Sequence[str], hash_keys: Sequence[int | None] | None
) -> list[int]:
    """The shard index each record would go to, as ``put_columns`` places it."""
    with store._lock:
        stream = store._stream(name)
    shards = stream.place(keys)
    if hash_keys is None:
        return list(shards)
    return [
        s if h is None else stream.place_hash(h) for s, h in zip(shards, hash_keys, strict=True)
    ]
