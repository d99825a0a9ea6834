"""Per-stream side tables (a stream's tags, its consumers): made on first use, read alike.

Each is keyed by the stream's row id and created only when first written, so a store that never
saw a tag or a consumer keeps the schema it had; a read of one that does not exist yet is empty.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from agent.errors import StoreError, StreamNotFound
from agent.store.store import StreamStore


def table_exists(db: sqlite3.Connection, table: str) -> bool:
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return found is not None


def stream_id(db: sqlite3.Connection, stream: str) -> int:
    """The stream's row id; StreamNotFound when there is no stream of that name."""
    row = db.execute("SELECT id FROM streams WHERE name = ?", (stream,)).fetchone()
    if row is None:
        raise StreamNotFound(f"no stream named {stream!r}")
    return int(row[0])


def stream_rows(
    store: StreamStore, stream: str, table: str, query: str, what: str
) -> list[tuple[Any, ...]]:
    """The rows ``query`` (one ``?``, the stream's id) selects from ``table``; none while the
    table does not exist. StreamNotFound; StoreError ("cannot read the {what} of …")."""
    with store._lock:
        db = store._connection()
        try:
            sid = stream_id(db, stream)
            if not table_exists(db, table):
                return []
            return [tuple(row) for row in db.execute(query, (sid,))]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the {what} of {stream!r}: {exc}") from exc
