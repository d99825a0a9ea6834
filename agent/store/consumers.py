"""Registered stream consumers (Kinesis enhanced fan-out): a name and a creation time per stream.

The table is made on first registration, so stores that never see a consumer keep the schema
they had; deleting a stream deletes its consumers (agent.store.admin.delete_stream).
"""

from __future__ import annotations

import sqlite3

from agent.errors import StoreError
from agent.store.sidetables import stream_id as _stream_id
from agent.store.sidetables import stream_rows, table_exists
from agent.store.store import StreamStore

MAX_CONSUMERS = 20  # per stream, as Kinesis
TABLE = (
    "CREATE TABLE IF NOT EXISTS stream_consumers (stream_id INTEGER NOT NULL, "
    "name TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (stream_id, name))"
)


class ConsumerExists(StoreError):
    retryable = False


class ConsumerNotFound(StoreError):
    retryable = False


class TooManyConsumers(StoreError):
    retryable = False


def register(store: StreamStore, stream: str, name: str, now: float) -> float:
    """Register ``name`` on ``stream``; its creation time. ConsumerExists / TooManyConsumers."""
    with store._lock:
        db = store._connection()

        def body() -> float:
            db.execute(TABLE)
            stream_id = _stream_id(db, stream)
            names = {
                n
                for (n,) in db.execute(
                    "SELECT name FROM stream_consumers WHERE stream_id = ?", (stream_id,)
                )
            }
            if name in names:
                raise ConsumerExists(f"consumer {name!r} of stream {stream!r} exists")
            if len(names) >= MAX_CONSUMERS:
                raise TooManyConsumers(f"stream {stream!r} has {MAX_CONSUMERS} consumers")
            db.execute(
                "INSERT INTO stream_consumers (stream_id, name, created) VALUES (?, ?, ?)",
                (stream_id, name, now),
            )
            return now

        try:
            return store._write(db, body)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot register consumer {name!r}: {exc}") from exc


def consumers(store: StreamStore, stream: str) -> list[tuple[str, float]]:
    """(name, creation time) of every consumer of ``stream``, by name."""
    rows = stream_rows(
        store,
        stream,
        "stream_consumers",
        "SELECT name, created FROM stream_consumers WHERE stream_id = ? ORDER BY name",
        "consumers",
    )
    return [(str(n), float(c)) for n, c in rows]


def deregister(store: StreamStore, stream: str, name: str) -> None:
    with store._lock:
        db = store._connection()

        def body() -> None:
            stream_id = _stream_id(db, stream)
            gone = 0
            if table_exists(db, "stream_consumers"):
                gone = db.execute(
                    "DELETE FROM stream_consumers WHERE stream_id = ? AND name = ?",
                    (stream_id, name),
                ).rowcount
            if not gone:
                raise ConsumerNotFound(f"no consumer {name!r} of stream {stream!r}")

        try:
            store._write(db, body)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot deregister consumer {name!r}: {exc}") from exc


def forget_stream(db: sqlite3.Connection, stream_id: int) -> None:
    """Inside delete_stream's transaction: the stream's consumers go with it."""
    if table_exists(db, "stream_consumers"):
        db.execute("DELETE FROM stream_consumers WHERE stream_id = ?", (stream_id,))
