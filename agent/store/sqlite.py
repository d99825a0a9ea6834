"""The stream store's SQLite plumbing: the file, its schema, its damage checks and its connections.

One database, ``streams.db`` in the store directory, in WAL mode:

- ``streams`` / ``shards``: a stream and the MD5 hash-key range of each shard (CreateStream's even
  split; shards never change).
- ``records_<stream id>_<shard index>``: one table per shard, a row per *chunk* (the records one
  put sends to that shard, :mod:`agent.store.chunks`) keyed by the sequence counter of its last
  record, so a shard is an append-only B-tree that readers scan by key. Table names are built
  from integers only; a stream's name never becomes part of SQL or of a path. One table per
  shard rather than one table with a (stream, shard, sequence) index: that index cost a third of
  the write throughput (tests/bench/bench_store.py; figures in the store's pull request).
- ``file_checkpoints``: the flows' checkpoints, upserted in the same transaction as the records
  they cover, so after a crash either both are there or neither is (exactly-once delivery). Its
  layout, shared with the checkpoint file, is in :mod:`agent.sqlitedb`.
- ``store_meta``: the sequence counter shared by all streams and the last stream id given, neither
  ever reused.

Durability: ``synchronous=NORMAL`` in WAL mode. A commit is in the WAL (in the OS page cache) when
it returns, so a killed agent process (``kill -9``, OOM) loses nothing. A power loss may roll back
the last commits, records *and* their checkpoints together, so the agent reads those lines again:
still no loss and no duplicate as long as the log files themselves survived.

Writers on several connections (several flows, several processes) serialise on SQLite's write
lock: every write transaction is ``BEGIN IMMEDIATE`` and waits up to the busy timeout for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path

from agent.errors import StoreError
from agent.sqlitedb import (
    CHECKPOINTS_TABLE,
    I64_MAX,
    fsync_file,
    migrate_checkpoints,
    refuse_link,
    write,
)
from agent.store.chunks import create_chunk_table

log = logging.getLogger(__name__)

DB_NAME = "streams.db"
SCHEMA_VERSION = 2  # 2: chunk rows (1, a row per record, is refused)
# Checkpoint the WAL every ~16 MiB rather than SQLite's 4 MiB (fewer fsyncs under load), and
# truncate it afterwards so an idle store does not keep a large -wal file.
WAL_AUTOCHECKPOINT_BYTES = 16 * 1024 * 1024
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# Chunk rows are large blobs: big pages need a fraction of the overflow pages, WAL frames and
# write calls of SQLite's default 4 KiB (a new store only: the size is fixed at creation).
# 32 KiB rather than 64: every commit rewrites whole pages (each shard's last leaf, the sequence
# counter's), so for the puts of 500 records the endpoint and a lightly loaded agent make, 64 KiB
# frames were mostly copies of unchanged bytes. tests/bench/bench_store.py, 4 shards, records/s
# 64 -> 32 KiB, same runs: batches of 500 394k -> 565k, of 20,000 879k -> 899k; 1 shard, 500:
# 544k -> 947k.
PAGE_SIZE = 32 * 1024
MAX_SEQUENCE = I64_MAX  # INTEGER PRIMARY KEY

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO store_meta (key, value) VALUES ('next_sequence', 1)",
    """CREATE TABLE IF NOT EXISTS streams (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        shard_count INTEGER NOT NULL,
        retention_hours INTEGER NOT NULL,
        created REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS shards (
        stream_id INTEGER NOT NULL REFERENCES streams (id),
        idx INTEGER NOT NULL,
        starting_hash_key TEXT NOT NULL,
        ending_hash_key TEXT NOT NULL,
        PRIMARY KEY (stream_id, idx)
    )""",
    CHECKPOINTS_TABLE,
    f"PRAGMA user_version={SCHEMA_VERSION}",
)


def shard_table(stream_id: int, index: int) -> str:
    return f"records_{int(stream_id)}_{int(index)}"


def create_shard_table(db: sqlite3.Connection, table: str) -> None:
    db.execute(create_chunk_table(table))


def connect(
    directory: Path, *, create: bool, read_only: bool, busy_timeout: float
) -> sqlite3.Connection:
    """A connection to the store in ``directory``, schema ready; StoreError when impossible."""
    path = directory / DB_NAME
    if not read_only:
        refuse_link(path, "stream store")
    try:
        if create and not read_only:
            directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            # Only ever create it, never open and close an existing one ourselves: that drops
            # the POSIX locks of this process's connections to it (see check_damage).
            if not path.exists():
                _create_atomically(path, busy_timeout)
            check_damage(path)
        elif not path.is_file():
            raise StoreError(
                f"no stream store in {directory} ({DB_NAME} is missing); "
                "the agent creates it when a flow first ships into a localStream"
            )
        target = f"{path.resolve().as_uri()}?mode=ro" if read_only else str(path)
        db = sqlite3.connect(
            target,
            uri=read_only,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    except OSError as exc:
        raise StoreError(f"cannot open the stream store in {directory}: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the stream store {path}: {exc}") from exc
    try:
        _prepare(db, path, read_only=read_only)
    except BaseException:
        db.close()
        raise
    return db


class DamagedStore(StoreError):
    """The store file is damaged: the agent refuses to write into it (see ``check_damage``)."""

    retryable = False


QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024


def _create_atomically(path: Path, busy_timeout: float) -> None:
    """A new store is built under a temporary name and renamed into place, schema and all.

    So ``streams.db`` never exists half made, and an empty or headless one is always damage.
    """
    tmp = path.with_name(f"{path.name}.new-{os.getpid()}-{os.urandom(4).hex()}")
    # SQLite gives the -wal and -shm files the mode of the database file
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640))
    try:
        db = sqlite3.connect(tmp, timeout=busy_timeout, isolation_level=None)
        try:
            _prepare(db, tmp, read_only=False)
        finally:
            db.close()
        fsync_file(tmp)
        # link, not rename: a store another process created meanwhile is never replaced
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def check_damage(path: Path) -> None:
    """Refuse a store that is empty, not SQLite, shorter than its header says, or fails quick_check.

    Decision: a damaged store is never written into and never silently replaced. Writing could
    lose what it holds; a new store would also lose the flows' checkpoints (they live in it) and
    re-ship or skip every file. The agent stops with this message (exit 1) until an operator acts.
    """
    advice = (
        f"Not starting, so nothing more is lost or duplicated. Keep {path} for inspection "
        f"(`sqlite3 {path} .recover` salvages what it can), or move {path.name}, "
        f"{path.name}-wal and {path.name}-shm aside to start a new store: every file is then "
        "read again according to initialPosition."
    )
    # Only SQLite opens the file: closing a descriptor of our own would drop the POSIX locks
    # that the process's other connections to the store hold (fcntl locks are per process).
    if path.stat().st_size == 0:
        raise DamagedStore(f"the stream store {path} is damaged (the file is empty). {advice}")
    wal = path.with_name(path.name + "-wal")
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            # Everything below is measured inside one read transaction, the file's size last.
            # Another read-write connection (an operator's sqlite3, a second agent process)
            # that closes as the last one copies the WAL into the file and then deletes the WAL:
            # a size read before that finishes is short of the header although nothing is lost.
            # While this connection is open no other one is the last, so none does that now;
            # one that had already begun holds an exclusive lock the first read waits for; and a
            # plain checkpoint leaves the WAL in place (hot below). The size is then final.
            db.execute("BEGIN")
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            # with a WAL, a checkpoint cut short by kill -9 may have written page 1 before the
            # pages that grow the file: the WAL still holds them, and SQLite finishes the job
            hot_wal = wal.exists() and wal.stat().st_size > 0
            size = path.stat().st_size
            if not hot_wal and size < pages * page_size:
                result = [(f"truncated: {size} bytes, its header says {pages * page_size}",)]
            elif size <= QUICK_CHECK_MAX_BYTES:
                result = db.execute("PRAGMA quick_check").fetchall()
            else:
                result = [("ok",)]
        finally:
            db.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return  # busy, not damaged: the agent's own open waits for the lock
        result = [(str(exc),)]
    except sqlite3.DatabaseError as exc:
        result = [(str(exc),)]
    if result != [("ok",)]:
        detail = "; ".join(str(r[0]) for r in result[:3])
        raise DamagedStore(f"the stream store {path} is damaged ({detail}). {advice}")


def _prepare(db: sqlite3.Connection, path: Path, *, read_only: bool) -> None:
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path} was written by a newer kinesis-agent (schema {version}); upgrade the agent"
            )
        if 0 < version < SCHEMA_VERSION:
            raise StoreError(
                f"{path} was written by a development build of kinesis-agent (schema {version}, "
                "a row per record); move it away and let the agent create a new store"
            )
        if read_only:
            if version < SCHEMA_VERSION:
                raise StoreError(f"{path} is not a stream store (empty or another program's)")
            return
        if version == 0:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (got {mode!r})")
        db.execute("PRAGMA synchronous=NORMAL")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        db.execute(f"PRAGMA wal_autocheckpoint={max(1, WAL_AUTOCHECKPOINT_BYTES // page_size)}")
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        if version < SCHEMA_VERSION:
            write(db, lambda: _create_schema(db), path)
        else:
            migrate_checkpoints(db, path)  # a store from before the size column
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the stream store {path}: {exc}") from exc


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        db.execute(statement)
