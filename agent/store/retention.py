"""Retention: records older than their stream's retention deleted, oldest first, in short transactions.

Functions over a :class:`~agent.store.store.StreamStore` (its lock and connection): the store runs
them after writes at most once a minute, and on demand (``StreamStore.trim_expired``).
"""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import TYPE_CHECKING

from agent.errors import StoreError
from agent.store.sqlite import MAX_SEQUENCE

if TYPE_CHECKING:  # the store calls these: a runtime import would be a cycle
    from agent.store.store import StreamStore

TRIM_CHUNK = 1000  # chunk rows deleted per transaction, so writers are never held up for long


def trim_expired(store: StreamStore, now: float) -> int:
    """Delete the records older than their stream's retention at ``now``; how many went."""
    with store._lock:
        try:
            names = [n for (n,) in store._connection().execute("SELECT name FROM streams")]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the stream store {store.path}: {exc}") from exc
    deleted = 0
    for name in names:
        with store._lock:
            stream = store._stream(name)
        cutoff = now - stream.info.retention_hours * 3600
        for table in stream.tables:
            deleted += trim_table(store, table, cutoff)
    return deleted


def trim_table(store: StreamStore, table: str, cutoff: float) -> int:
    """Trim one shard table up to ``cutoff``, TRIM_CHUNK rows a transaction."""
    deleted = 0
    while True:
        with store._lock:
            db = store._connection()
            try:
                rows, records = store._write(db, partial(trim_chunk, db, table, cutoff, TRIM_CHUNK))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot trim {table} in {store.path}: {exc}") from exc
        deleted += records
        if rows < TRIM_CHUNK:
            return deleted


def trim_chunk(db: sqlite3.Connection, table: str, cutoff: float, chunk: int) -> tuple[int, int]:
    """Delete up to ``chunk`` of a shard's oldest chunk rows that arrived before ``cutoff``.

    Returns (rows, records) deleted. The first young row bounds what may go, so the scan costs
    what is deleted.
    """
    young = db.execute(
        f"SELECT seq FROM {table} WHERE arrival >= ? ORDER BY seq LIMIT 1", (cutoff,)
    ).fetchone()
    horizon = young[0] if young else MAX_SEQUENCE
    chunk_end = db.execute(
        f"SELECT seq FROM {table} WHERE seq < ? ORDER BY seq LIMIT 1 OFFSET ?", (horizon, chunk)
    ).fetchone()
    if chunk_end is not None:
        horizon = chunk_end[0]
    ((records,),) = db.execute(
        f"SELECT total(count) FROM {table} WHERE seq < ?", (horizon,)
    ).fetchall()
    rows = db.execute(f"DELETE FROM {table} WHERE seq < ?", (horizon,)).rowcount
    return rows, int(records)
