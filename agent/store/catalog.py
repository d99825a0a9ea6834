"""The streams and shards tables: a stream's rows created, its layout loaded, its shards counted.

The SQL behind :class:`~agent.store.store.StreamStore`'s stream methods, apart from the store's
connection, lock and layout cache, which stay with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from agent.hashspace import even_ranges
from agent.store.layout import StreamLayout
from agent.store.model import ShardInfo, ShardStats, StreamInfo, format_sequence, shard_id
from agent.store.sqlite import create_shard_table, shard_table


def create_stream_rows(
    db: sqlite3.Connection,
    name: str,
    shard_count: int,
    retention_hours: int,
    clock: Callable[[], float],
) -> None:
    """A new stream's rows and shard tables (inside the caller's write transaction)."""
    if db.execute("SELECT 1 FROM streams WHERE name = ?", (name,)).fetchone():
        return  # another connection created it between our look and our lock
    # Never the id of a deleted stream (SQLite's rowid would reuse the highest): a writer
    # that still has the deleted stream cached must fail on its tables, not fill the new ones.
    ((stream_id,),) = db.execute(
        "SELECT max(coalesce((SELECT max(id) FROM streams), 0), coalesce((SELECT value "
        "FROM store_meta WHERE key = 'last_stream_id'), 0)) + 1"
    ).fetchall()
    db.execute(
        "INSERT OR REPLACE INTO store_meta (key, value) VALUES ('last_stream_id', ?)",
        (stream_id,),
    )
    db.execute(
        "INSERT INTO streams (id, name, shard_count, retention_hours, created) "
        "VALUES (?, ?, ?, ?, ?)",
        (stream_id, name, shard_count, retention_hours, clock()),
    )
    for i, (start, end) in enumerate(even_ranges(shard_count)):
        db.execute(
            "INSERT INTO shards (stream_id, idx, starting_hash_key, ending_hash_key) "
            "VALUES (?, ?, ?, ?)",
            (stream_id, i, str(start), str(end)),
        )
        create_shard_table(db, shard_table(stream_id, i))


def load_layout(db: sqlite3.Connection, name: str) -> StreamLayout | None:
    """The layout of stream ``name`` as the database has it, or None when there is none."""
    row = db.execute(
        "SELECT id, shard_count, retention_hours, created FROM streams WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return None
    stream_id, shard_count, retention_hours, created = row
    shards = tuple(
        ShardInfo(shard_id(i), int(start), int(end))
        for i, start, end in db.execute(
            "SELECT idx, starting_hash_key, ending_hash_key FROM shards "
            "WHERE stream_id = ? ORDER BY idx",
            (stream_id,),
        )
    )
    return StreamLayout(stream_id, StreamInfo(name, shard_count, retention_hours, created, shards))


def shard_stats(stream: StreamLayout, fetch: Callable[[str], list[Any]]) -> list[ShardStats]:
    """Record counts, bytes and the first/last sequence number of each shard (scans each shard).

    ``fetch`` runs one read statement (the store's, which takes its lock per statement).
    """
    stats = []
    for sid, table in zip(stream.shard_ids, stream.tables, strict=True):
        ((count, size, first, last),) = fetch(
            f"SELECT total(count), total(length(data)), min(first), max(seq) FROM {table}"
        )
        count = int(count)
        first_arrival = last_arrival = None
        if count:
            ((first_arrival,),) = fetch(f"SELECT arrival FROM {table} ORDER BY seq LIMIT 1")
            ((last_arrival,),) = fetch(f"SELECT arrival FROM {table} ORDER BY seq DESC LIMIT 1")
        stats.append(
            ShardStats(
                sid,
                count,
                int(size),
                format_sequence(first) if count else None,
                format_sequence(last) if count else None,
                first_arrival,
                last_arrival,
            )
        )
    return stats
