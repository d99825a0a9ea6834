"""The checkpoint table's schema and the SQLite helpers both homes of checkpoints share.

Checkpoints live in one of two SQLite databases: the checkpoint file of the flows that ship to AWS
(:mod:`agent.checkpoints`) or the stream store, committed with the records they cover
(:mod:`agent.store`). Both use this one table layout, row conversion and write transaction. A
neutral module, so the checkpoint file's code loads neither the store nor the sinks.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from agent.errors import StoreError
from agent.records import Checkpoint, FileId

log = logging.getLogger(__name__)

_U64 = 1 << 64
I64_MAX = (1 << 63) - 1
T = TypeVar("T")

CHECKPOINTS_TABLE = """CREATE TABLE IF NOT EXISTS file_checkpoints (
    flow TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    fp_len INTEGER NOT NULL,
    fp_hash BLOB NOT NULL,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    updated REAL NOT NULL,
    size INTEGER,
    PRIMARY KEY (flow, dev, ino, fp_len, fp_hash)
)"""
CHECKPOINT_COLUMNS = "dev, ino, fp_len, fp_hash, path, offset, size"

UPSERT_CHECKPOINT = """
INSERT INTO file_checkpoints (flow, dev, ino, fp_len, fp_hash, path, offset, updated, size)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (flow, dev, ino, fp_len, fp_hash)
DO UPDATE SET path = excluded.path, offset = excluded.offset, updated = excluded.updated,
    size = excluded.size
"""


def migrate_checkpoints(db: sqlite3.Connection, path: Path) -> None:
    """Add the ``size`` column to a checkpoint table from before it existed, in place and in one
    transaction (rows keep their offsets; their size is unknown until the agent sees the file
    again), and say so. Nothing to do (no table, or the column is there): no write at all."""
    columns = checkpoint_columns(db)
    if not columns or "size" in columns:
        return
    write(db, lambda: db.execute("ALTER TABLE file_checkpoints ADD COLUMN size INTEGER"), path)
    log.info("%s: checkpoints now record each file's last size (migrated)", path)


def to_signed(value: int) -> int:
    """st_dev/st_ino are unsigned 64-bit; SQLite integers are signed."""
    return value - _U64 if value > I64_MAX else value


def to_unsigned(value: int) -> int:
    return value + _U64 if value < 0 else value


def refuse_link(path: Path, what: str) -> None:
    """StoreError if ``path`` is a symbolic link: a database the agent writes never is one.

    Its directory belongs to the agent's user, and root may run the agent: a planted
    ``checkpoints.db -> /var/lib/app/app.db`` would have root add our tables to the target and
    switch it to WAL (an empty target would become a database), as with the lock file.
    """
    if path.is_symlink():
        raise StoreError(
            f"the {what} {path} is a symbolic link; the agent writes only a database it "
            "created, so it was not followed. Remove it and find out who created it."
        )


def fsync_file(path: Path) -> None:
    """Flush a database file built under a temporary name before it is renamed or linked into
    place: the name must never reach a file whose contents are still only in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_columns(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(file_checkpoints)")}


def write(db: sqlite3.Connection, body: Callable[[], T], path: Path) -> T:
    """Run ``body`` in one write transaction: all of it commits, or none of it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = body()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed in %s", path)
        raise
    return result


def checkpoint_rows(checkpoints: Iterable[Checkpoint], now: float) -> list[tuple[object, ...]]:
    return [
        (
            c.flow,
            to_signed(c.file.dev),
            to_signed(c.file.ino),
            c.file.fp_len,
            c.file.fp_hash,
            c.path,
            c.offset,
            now,
            c.size,
        )
        for c in checkpoints
    ]


def checkpoint_from_row(
    flow: str, row: tuple[int, int, int, bytes, str, int, int | None]
) -> Checkpoint:
    """A row of ``SELECT {CHECKPOINT_COLUMNS}``."""
    dev, ino, fp_len, fp_hash, path, offset, size = row
    return Checkpoint(
        flow,
        FileId(to_unsigned(dev), to_unsigned(ino), fp_len, bytes(fp_hash)),
        path,
        offset,
        size,
    )


def expire_checkpoint_rows(
    db: sqlite3.Connection, cutoff: float, keep: Callable[[str, FileId, str], bool] | None
) -> int:
    """Delete checkpoint rows last updated before ``cutoff`` unless ``keep(flow, file, path)``."""
    old = db.execute(
        "SELECT flow, dev, ino, fp_len, fp_hash, path FROM file_checkpoints WHERE updated < ?",
        (cutoff,),
    ).fetchall()
    doomed = [
        (flow, dev, ino, fp_len, fp_hash, cutoff)
        for flow, dev, ino, fp_len, fp_hash, path in old
        if keep is None
        or not keep(flow, FileId(to_unsigned(dev), to_unsigned(ino), fp_len, bytes(fp_hash)), path)
    ]
    db.executemany(
        "DELETE FROM file_checkpoints WHERE flow = ? AND dev = ? AND ino = ? AND fp_len = ? "
        "AND fp_hash = ? AND updated < ?",
        doomed,
    )
    return len(doomed)


def file_still_there(file: FileId, path: str) -> bool:
    """Is the checkpointed file still at its path (same device and inode)?"""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (file.dev, file.ino)
