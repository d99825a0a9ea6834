"""StreamStore: Kinesis-like streams, and the checkpoints of the flows feeding them, in one SQLite file.

The layout and the durability promise are in :mod:`agent.store.sqlite`. One StreamStore is one
connection; several of them (flows, processes, readers) may use the same directory at once. The
class keeps the connection, its lock and the layout cache; the SQL of the streams table
(:mod:`~agent.store.catalog`), retention (:mod:`~agent.store.retention`) and reading
(:mod:`~agent.store.reader`) live beside it. What remains (~420 lines) is the methods that take
the lock; spreading them over modules would hide which call holds it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import StoreError, StreamNotFound
from agent.records import Checkpoint, FileId
from agent.sqlitedb import (
    CHECKPOINT_COLUMNS,
    UPSERT_CHECKPOINT,
    checkpoint_from_row,
    checkpoint_rows,
    expire_checkpoint_rows,
    write,
)
from agent.store.catalog import create_stream_rows, load_layout, shard_stats
from agent.store.chunks import pack_shards
from agent.store.layout import PutResult, StreamLayout, check_keys
from agent.store.model import (
    MAX_RETENTION_HOURS,
    MAX_SEQUENCE,
    MAX_SHARDS,
    TRIM_HORIZON,
    Position,
    ShardStats,
    StoredRecord,
    StreamInfo,
    shard_index,
    valid_stream_name,
)
from agent.store.reader import read_stream
from agent.store.retention import trim_expired
from agent.store.sqlite import DB_NAME, connect

log = logging.getLogger(__name__)

TRIM_INTERVAL = 60.0  # seconds between the retention passes that writes trigger
T = TypeVar("T")


class StreamStore:
    """One connection to a store directory; safe to share between threads (calls serialise).

    Writers (the agent) use ``StreamStore.open(directory)``; a reader opens its own
    ``open(directory, create=False, read_only=True)``, which WAL lets read while the agent writes.
    """

    def __init__(
        self,
        directory: Path,
        db: sqlite3.Connection,
        *,
        read_only: bool,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.path = directory / DB_NAME
        self.read_only = read_only
        self._db: sqlite3.Connection | None = db
        self._lock = threading.Lock()
        self._streams: dict[str, StreamLayout] = {}
        self._clock = clock
        self._monotonic = monotonic
        self._next_trim = 0.0

    # --- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        create: bool = True,
        read_only: bool = False,
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> StreamStore:
        """Open the store in ``directory``; ``create`` makes it (mode 0750) when missing.

        ``clock`` stamps arrival times and drives retention; ``monotonic`` paces the retention
        passes that writes trigger (at most one per minute). Both are there for tests.
        """
        directory = Path(directory)
        db = connect(directory, create=create, read_only=read_only, busy_timeout=busy_timeout)
        return cls(directory, db, read_only=read_only, clock=clock, monotonic=monotonic)

    def close(self) -> None:
        """Close the connection (after a call in progress); closing twice is fine."""
        with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                db.close()

    def __enter__(self) -> StreamStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"StreamStore({str(self.directory)!r}, {mode})"

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"the stream store {self.path} is closed")
        return self._db

    def _write(self, db: sqlite3.Connection, body: Callable[[], T]) -> T:
        return write(db, body, self.path)

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One read statement under the lock, as a list (no statement stays open between calls)."""
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the stream store {self.path}: {exc}") from exc

    # --- streams ----------------------------------------------------------------------------------

    def ensure_stream(self, name: str, shard_count: int, retention_hours: int) -> StreamInfo:
        """Create the stream unless it exists; an existing stream is kept as it is."""
        if not valid_stream_name(name):
            raise ValueError(f"invalid stream name {name!r}: use 1 to 128 of [a-zA-Z0-9_.-]")
        if not 1 <= shard_count <= MAX_SHARDS:
            raise ValueError(f"shard count must be 1 to {MAX_SHARDS}, not {shard_count}")
        if not 1 <= retention_hours <= MAX_RETENTION_HOURS:
            raise ValueError(
                f"retention must be 1 to {MAX_RETENTION_HOURS} hours, not {retention_hours}"
            )
        with self._lock:
            db = self._connection()
            try:
                existing = self._load_stream(db, name)
                if existing is None:
                    self._write(
                        db,
                        lambda: create_stream_rows(
                            db, name, shard_count, retention_hours, self._clock
                        ),
                    )
                    existing = self._load_stream(db, name)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot create stream {name!r} in {self.path}: {exc}") from exc
        assert existing is not None
        info = existing.info
        if (info.shard_count, info.retention_hours) != (shard_count, retention_hours):
            log.info(
                "stream %s exists with %d shards and %d h retention; keeping them (asked %d, %d h)",
                name,
                info.shard_count,
                info.retention_hours,
                shard_count,
                retention_hours,
            )
        return info

    def _load_stream(self, db: sqlite3.Connection, name: str) -> StreamLayout | None:
        cached = self._streams.get(name)
        if cached is not None:
            return cached
        stream = load_layout(db, name)
        if stream is not None:
            self._streams[name] = stream
        return stream

    def _stream(self, name: str) -> StreamLayout:
        """The cached stream; StreamNotFound when there is none (call with the lock held)."""
        stream = self._streams.get(name)
        if stream is not None:
            return stream
        try:
            found = self._load_stream(self._connection(), name) if valid_stream_name(name) else None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the stream store {self.path}: {exc}") from exc
        if found is None:
            raise StreamNotFound(f"no stream named {name!r} in {self.directory}")
        return found

    def list_streams(self) -> list[str]:
        return [name for (name,) in self._fetch("SELECT name FROM streams ORDER BY name")]

    def describe(self, name: str, *, fresh: bool = False) -> StreamInfo:
        """The stream's layout; ``fresh``: as the database has it now, not as this connection
        cached it (another connection may have deleted or re-created it since)."""
        with self._lock:
            if fresh:
                self._revalidate(name)
            return self._stream(name).info

    def _revalidate(self, name: str) -> None:
        """Forget the cached layout of ``name`` unless the database still has that very stream
        (same id, creation time and retention); call with the lock held.

        One indexed read instead of reloading the layout: a reload also dropped the placement
        cache, so every PutRecords through the endpoint hashed all its keys again.
        """
        cached = self._streams.get(name)
        if cached is None:
            return
        try:
            row = (
                self._connection()
                .execute("SELECT id, retention_hours, created FROM streams WHERE name = ?", (name,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the stream store {self.path}: {exc}") from exc
        info = cached.info
        if row is None or tuple(row) != (cached.stream_id, info.retention_hours, info.created):
            del self._streams[name]

    def shard_stats(self, name: str) -> list[ShardStats]:
        """Record counts, bytes and the first/last sequence number of each shard (scans each shard)."""
        with self._lock:
            stream = self._stream(name)
        return shard_stats(stream, self._fetch)

    # --- writing ----------------------------------------------------------------------------------

    def put_records(
        self,
        name: str,
        entries: Sequence[tuple[str, bytes]],
        checkpoints: Sequence[Checkpoint] = (),
    ) -> PutResult:
        """Append ``(partition_key, data)`` entries and upsert ``checkpoints`` in one transaction.

        Returns ``(shard_id, sequence_number)`` per entry, in order. Either everything is stored
        or, on StoreError, nothing is. An empty ``entries`` just saves the checkpoints.
        """
        keys = [key for key, _data in entries]
        return self.put_columns(name, keys, [data for _key, data in entries], checkpoints)

    def put_columns(
        self,
        name: str,
        keys: Sequence[str],
        datas: list[bytes],
        checkpoints: Sequence[Checkpoint] = (),
        hash_keys: Sequence[int | None] | None = None,
    ) -> PutResult:
        """``put_records`` with the partition keys and the data as two lists of equal length.

        ``hash_keys`` (Kinesis's ExplicitHashKey), where not None, place a record instead of
        the MD5 of its partition key.
        """
        if len(keys) != len(datas):
            raise ValueError(f"{len(keys)} partition keys for {len(datas)} records")
        with self._lock:
            stream = self._stream(name)
        check_keys(keys)
        placement = stream.place(keys)
        if hash_keys is not None:
            placement = [
                p if h is None else stream.place_hash(h)
                for p, h in zip(placement, hash_keys, strict=True)
            ]
        chunks = pack_shards(len(stream.tables), placement, keys, datas)
        first = 0

        def body() -> None:
            nonlocal first
            # The clock is read under the write lock, so arrival times follow sequence order.
            now = self._clock()
            if datas:
                ((first,),) = db.execute(
                    "UPDATE store_meta SET value = value + ? WHERE key = 'next_sequence' "
                    "RETURNING value - ?",
                    (len(datas), len(datas)),
                ).fetchall()
                if first + len(datas) > MAX_SEQUENCE:
                    raise StoreError(f"{self.path}: sequence numbers exhausted")
                for insert, chunk in zip(stream.inserts, chunks, strict=True):
                    if chunk is not None:
                        db.execute(insert, chunk.row(first, now))
            if checkpoints:
                db.executemany(UPSERT_CHECKPOINT, checkpoint_rows(checkpoints, now))

        with self._lock:
            db = self._connection()
            try:
                self._write(db, body)
            except sqlite3.Error as exc:
                # a stream deleted (or re-created) through another connection: look it up again
                self._streams.pop(name, None)
                raise StoreError(
                    f"cannot write {len(datas)} records to stream {name!r} in {self.path}: {exc}"
                ) from exc
        self._maybe_trim()
        return PutResult(stream.shard_ids, placement, first)

    # --- WAL checkpoints ---------------------------------------------------------------------------

    def defer_checkpoints(self) -> None:
        """Commits on this connection no longer checkpoint the WAL themselves (SQLite's
        autocheckpoint): a checkpoint copies ~16 MiB and fsyncs, 15-20 ms inside the commit
        that crosses the mark. The caller runs ``checkpoint`` on another connection instead."""
        with self._lock:
            try:
                self._connection().execute("PRAGMA wal_autocheckpoint=0")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot configure the stream store {self.path}: {exc}") from exc

    def checkpoint(self, *, truncate: bool = False) -> tuple[int, int, int]:
        """A PASSIVE checkpoint (writers go on meanwhile): (busy, WAL frames, frames copied).

        ``truncate``: a TRUNCATE one instead, which waits (this connection's busy timeout) for
        the writer in progress, holds new writers off while it copies, and empties the WAL file.
        Passive ones alone never shrink a WAL that writers append to without pause: SQLite
        starts the WAL over only when a write transaction begins after a complete checkpoint.
        """
        mode = "TRUNCATE" if truncate else "PASSIVE"
        ((busy, frames, copied),) = self._fetch(f"PRAGMA wal_checkpoint({mode})")
        return int(busy), int(frames), int(copied)

    # --- retention --------------------------------------------------------------------------------

    def _maybe_trim(self) -> None:
        # Called after a commit: a failure here must not make the caller resend what is stored.
        if self._monotonic() < self._next_trim:
            return
        self._next_trim = self._monotonic() + TRIM_INTERVAL
        try:
            self.trim_expired()
        except StoreError:
            log.warning(
                "retention trimming failed in %s; next try in a minute", self.path, exc_info=True
            )

    def trim_expired(self, now: float | None = None) -> int:
        """Delete records older than their stream's retention; returns how many went.

        Retention runs in write order, as Kinesis's trim horizon does: a shard loses its oldest
        records up to the first one that is still young enough (after a wall-clock step back a
        record may outlive its retention until the records before it expire).
        """
        return trim_expired(self, self._clock() if now is None else now)

    # --- checkpoints ------------------------------------------------------------------------------

    def load_checkpoints(self, flow: str) -> list[Checkpoint]:
        """Every checkpoint a flow committed with its records."""
        rows = self._fetch(
            f"SELECT {CHECKPOINT_COLUMNS} FROM file_checkpoints WHERE flow = ?",
            (flow,),
        )
        return [checkpoint_from_row(flow, row) for row in rows]

    def expire_checkpoints(
        self,
        older_than_days: float,
        now: float | None = None,
        keep: Callable[[str, FileId, str], bool] | None = None,
    ) -> int:
        """Forget checkpoints not updated for ``older_than_days`` (checkpointTimeToLiveDays).

        ``keep(flow, file, path)`` spares a row: an idle file's checkpoint is not rewritten, yet
        forgetting it while the file is still there would make a restart ship it again from 0.
        """
        cutoff = (self._clock() if now is None else now) - older_than_days * 86400
        with self._lock:
            db = self._connection()
            try:
                return self._write(db, partial(expire_checkpoint_rows, db, cutoff, keep))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot expire checkpoints in {self.path}: {exc}") from exc

    # --- reading ----------------------------------------------------------------------------------

    def _shard_tables(self, name: str, shard: str | None) -> list[tuple[str, str]]:
        """(shard id, table) of every shard, or of the one asked for, in id order."""
        with self._lock:
            stream = self._stream(name)
        pairs = list(zip(stream.shard_ids, stream.tables, strict=True))
        if shard is None:
            return pairs
        index = shard_index(shard)
        if index is None or index >= len(pairs):
            raise StreamNotFound(
                f"stream {name!r} has no shard {shard!r} (it has {pairs[0][0]} to {pairs[-1][0]})"
            )
        return [pairs[index]]

    def _last_sequence(self) -> int:
        """The counter of the last record written to any stream of the store (0 when none)."""
        ((next_sequence,),) = self._fetch(
            "SELECT value FROM store_meta WHERE key = 'next_sequence'"
        )
        return int(next_sequence) - 1

    def read(
        self,
        name: str,
        *,
        shard_id: str | None = None,
        position: Position = TRIM_HORIZON,
        limit: int | None = None,
    ) -> Iterator[StoredRecord]:
        """Records from ``position`` up to what is stored now, shard by shard in id order."""
        return read_stream(self, name, shard_id=shard_id, position=position, limit=limit)
