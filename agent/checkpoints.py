"""Checkpoints of the flows that ship to AWS: SQLite, one row per file identity, in /var/lib.

A row holds the end of the highest contiguous acknowledged span of one file (never past a record
still in flight). Flows into the embedded store keep their checkpoints inside the store instead,
committed in the same transaction as the records.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from agent.errors import StoreError
from agent.records import Checkpoint, FileId

_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_checkpoints (
    flow TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    fp_len INTEGER NOT NULL,
    fp_hash BLOB NOT NULL,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (flow, dev, ino, fp_len, fp_hash)
)
"""
_UPSERT = """
INSERT INTO file_checkpoints (flow, dev, ino, fp_len, fp_hash, path, offset, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (flow, dev, ino, fp_len, fp_hash)
DO UPDATE SET path = excluded.path, offset = excluded.offset, updated = excluded.updated
"""


class CheckpointDB:
    """The checkpoint file (``checkpointFile``); safe against kill -9 (WAL, one commit per save)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the checkpoint database {self.path}: {exc}") from exc
        self._closed = False

    def load(self, flow: str) -> list[Checkpoint]:
        rows = self._db.execute(
            "SELECT dev, ino, fp_len, fp_hash, path, offset FROM file_checkpoints WHERE flow = ?",
            (flow,),
        ).fetchall()
        return [Checkpoint(flow, FileId(d, i, fl, bytes(fh)), p, o) for d, i, fl, fh, p, o in rows]

    def save(self, checkpoints: Sequence[Checkpoint]) -> None:
        if not checkpoints:
            return
        now = time.time()
        rows = [
            (c.flow, c.file.dev, c.file.ino, c.file.fp_len, c.file.fp_hash, c.path, c.offset, now)
            for c in checkpoints
        ]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(_UPSERT, rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(f"cannot save checkpoints to {self.path}: {exc}") from exc

    def expire(self, days: int) -> int:
        """Delete rows not updated in ``days`` (checkpointTimeToLiveDays), as AWS does at start."""
        cur = self._db.execute(
            "DELETE FROM file_checkpoints WHERE updated < ?", (time.time() - days * 86400,)
        )
        return cur.rowcount

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()


def upsert_sql() -> tuple[str, str]:
    """The schema and upsert statement, for stores that keep checkpoints in their own database."""
    return _SCHEMA, _UPSERT
