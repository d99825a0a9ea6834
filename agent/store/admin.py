"""Stream administration and paged shard reads beyond what the agent needs: what the Kinesis API serves.

Creating a stream that must not exist yet, deleting one, changing its retention, tagging it, and
reading one shard a bounded page at a time (by records and by bytes) from an exclusive counter.
These are functions over a :class:`StreamStore` so the store module stays the agent's write path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from agent.errors import StoreError
from agent.store.chunks import CHUNK_COLUMNS, RecordRow, unpack
from agent.store.model import MAX_RETENTION_HOURS, StreamInfo, valid_stream_name
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


def _stream_id(db: sqlite3.Connection, name: str) -> int | None:
    row = db.execute("SELECT id FROM streams WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def _has_tags_table(db: sqlite3.Connection) -> bool:
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stream_tags'"
    ).fetchone()
    return found is not None


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
            stream_id = _stream_id(db, name)
            if stream_id is None:
                return
            for i in range(info.shard_count):
                db.execute(f"DROP TABLE IF EXISTS records_{stream_id}_{i}")
            db.execute("DELETE FROM shards WHERE stream_id = ?", (stream_id,))
            db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))
            if _has_tags_table(db):
                db.execute("DELETE FROM stream_tags WHERE stream_id = ?", (stream_id,))

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
            stream_id = _stream_id(db, name)
            assert stream_id is not None
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
    with store._lock:
        db = store._connection()
        try:
            if not _has_tags_table(db):
                return []
            stream_id = _stream_id(db, name)
            return [
                (str(k), str(v))
                for k, v in db.execute(
                    "SELECT key, value FROM stream_tags WHERE stream_id = ? ORDER BY key",
                    (stream_id,),
                )
            ]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the tags of {name!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ShardPage:
    """One GetRecords' worth of a shard: the rows, and the shard's newest record then."""

    rows: list[RecordRow]
    tip: int  # counter of the shard's newest record (0 when empty)
    tip_arrival: float | None  # its arrival time (None when the shard is empty)


def shard_table_of(store: StreamStore, name: str, index: int) -> str:
    with store._lock:
        return store._stream(name).tables[index]


def read_shard(store: StreamStore, table: str, after: int, limit: int, max_bytes: int) -> ShardPage:
    """Records of one shard with counters above ``after``: at most ``limit`` and ``max_bytes``.

    A record is never split: a page holds at least one record when any is there, even one
    larger than ``max_bytes`` (a record is at most 1 MiB, a page's cap 10 MiB).
    """
    out: list[RecordRow] = []
    size = 0
    more = False
    cursor = after
    while True:
        chunks = store._fetch(
            f"SELECT {CHUNK_COLUMNS} FROM {table} WHERE seq > ? ORDER BY seq LIMIT ?",
            (cursor, CHUNKS_PER_QUERY),
        )
        for chunk in chunks:
            for row in unpack(chunk, cursor, chunk[0]):
                n = len(row[3]) + len(row[2])
                if len(out) >= limit or (out and size + n > max_bytes):
                    more = True
                    break
                out.append(row)
                size += n
            if more:
                break
            cursor = chunk[0]
        if more or len(chunks) < CHUNKS_PER_QUERY:
            break
    tip = store._fetch(f"SELECT seq, arrival FROM {table} ORDER BY seq DESC LIMIT 1")
    if not tip:
        return ShardPage(out, 0, None)
    return ShardPage(out, int(tip[0][0]), float(tip[0][1]))


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
