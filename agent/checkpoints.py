"""Checkpoints of the flows that ship to AWS: SQLite, one row per file identity, in /var/lib.

A row holds the end of the highest contiguous acknowledged span of one file (never past a record
still in flight). Flows into the embedded store keep their checkpoints inside the store instead,
committed in the same transaction as the records.

Damage (Vector#20753, Filebeat#3537, Fluent Bit#11416 lost or reset checkpoints this way): the
database is checked when it is opened. A file that is not a database, fails ``quick_check`` or was
emptied is moved aside (``<name>.damaged-<time>``) and the last good copy, ``<name>.bak`` — written
with SQLite's backup API at open and at most every ``BACKUP_INTERVAL`` while saving — is put back,
with an error in the log. Files are then read again from those older offsets: duplicates, never a
loss. With no good copy the agent refuses to start rather than silently re-reading every file from
the beginning or skipping to the end. Another process holding the database locked makes saves fail
loudly and be retried; the flows keep shipping and the last committed checkpoints stay valid.

One connection serves every flow, and each flow saves from its own worker thread: a lock makes
each use of the connection (a save's BEGIN…COMMIT, a load, a backup) whole, so two flows never
interleave inside one transaction ("cannot start a transaction within a transaction").
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.errors import StoreError
from agent.records import Checkpoint
from agent.sqlitedb import (
    CHECKPOINT_COLUMNS,
    CHECKPOINTS_TABLE,
    UPSERT_CHECKPOINT,
    checkpoint_from_row,
    checkpoint_rows,
    fsync_file,
    migrate_checkpoints,
    refuse_link,
)

log = logging.getLogger(__name__)

BACKUP_SUFFIX = ".bak"
BACKUP_INTERVAL = 60.0  # seconds between backup copies while checkpoints are being saved


class DamagedCheckpoints(StoreError):
    """The checkpoint database is damaged and no good copy exists: refuse to guess offsets."""

    retryable = False


def _problem(path: Path) -> str | None:
    """Why the database at ``path`` cannot be trusted, or None when it is sound."""
    try:
        if path.stat().st_size == 0:
            return "the file is empty (truncated)"
    except FileNotFoundError:
        return "the file is missing"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        result = db.execute("PRAGMA quick_check").fetchall()
        if result != [("ok",)]:
            return "integrity check failed: " + "; ".join(str(r[0]) for r in result[:3])
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "file_checkpoints" not in tables:
            return "no file_checkpoints table (not a kinesis-agent checkpoint database)"
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return None  # busy, not damaged: opening waits for the lock and says so
        return str(exc)
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        db.close()
    return None


class CheckpointDB:
    """The checkpoint file (``checkpointFile``); safe against kill -9 (WAL, one commit per save)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.backup_path = self.path.with_name(self.path.name + BACKUP_SUFFIX)
        self._clock = clock
        self._closed = True
        self._lock = threading.RLock()  # one user of the connection at a time (see module doc)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of {self.path}: {exc}") from exc
        refuse_link(self.path, "checkpoint database")
        self._recover_if_damaged()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(CHECKPOINTS_TABLE)  # the store's layout: one for both homes
            migrate_checkpoints(self._db, self.path)  # a database from before the size column
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the checkpoint database {self.path}: {exc}") from exc
        self._closed = False
        self._next_backup = 0.0
        self.backup()

    # --- damage -----------------------------------------------------------------------------------

    def _recover_if_damaged(self) -> None:
        if not self.path.exists():
            if self.backup_path.exists():
                self._restore("the file is missing")
            return
        problem = _problem(self.path)
        if problem is None:
            return
        if self.path.stat().st_size == 0 and not self.backup_path.exists():
            # an empty file and never a backup: a first start killed before its first commit
            log.warning("checkpoint database %s is empty and has no backup; starting it", self.path)
            return
        self._restore(problem)

    def _restore(self, problem: str) -> None:
        backup_problem = (
            _problem(self.backup_path) if self.backup_path.exists() else "there is none"
        )
        if backup_problem is not None:
            raise DamagedCheckpoints(
                f"the checkpoint database {self.path} is damaged ({problem}) and its backup "
                f"{self.backup_path} is unusable ({backup_problem}). Not starting: without "
                "checkpoints every file would be shipped again from its start or skipped to its "
                f"end. Move {self.path} aside to accept that, or restore it from your own backups."
            )
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        _copy_database(self.backup_path, self.path)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.backup_path.stat().st_mtime))
        log.error(
            "checkpoint database %s was damaged (%s); moved it to %s and restored the last good "
            "copy from %s: files are re-read from those offsets (duplicates possible, nothing lost)",
            self.path,
            problem,
            aside,
            when,
        )

    def backup(self) -> None:
        """Copy the committed state to ``<name>.bak`` (atomically: a torn copy never replaces it)."""
        with self._lock:
            self._next_backup = self._clock() + BACKUP_INTERVAL
            try:
                _copy_database(self._db, self.backup_path)
            except (OSError, sqlite3.Error) as exc:
                log.error("cannot back up the checkpoint database to %s: %s", self.backup_path, exc)

    # --- use --------------------------------------------------------------------------------------

    def load(self, flow: str) -> list[Checkpoint]:
        try:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {CHECKPOINT_COLUMNS} FROM file_checkpoints WHERE flow = ?",
                    (flow,),
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read checkpoints from {self.path}: {exc}") from exc
        return [checkpoint_from_row(flow, row) for row in rows]

    def save(self, checkpoints: Sequence[Checkpoint]) -> None:
        if not checkpoints:
            return
        now = time.time()
        rows = checkpoint_rows(checkpoints, now)  # dev/ino above 2**63 stored as signed
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(UPSERT_CHECKPOINT, rows)
                self._db.execute("COMMIT")
            except (sqlite3.Error, OverflowError, ValueError) as exc:
                # never leave the write transaction open: it would block every later save
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise StoreError(f"cannot save checkpoints to {self.path}: {exc}") from exc
            if self._clock() >= self._next_backup:
                self.backup()

    def expire(self, days: int) -> int:
        """Delete rows not updated in ``days`` (checkpointTimeToLiveDays), as AWS does at start."""
        try:
            with self._lock:
                cur = self._db.execute(
                    "DELETE FROM file_checkpoints WHERE updated < ?",
                    (time.time() - days * 86400,),
                )
        except sqlite3.Error as exc:
            log.error("cannot expire old checkpoints in %s: %s", self.path, exc)
            return 0
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.backup()
                self._db.close()


def _copy_database(source: Path | sqlite3.Connection, target: Path) -> None:
    """SQLite's online backup of ``source`` into ``target`` via a temporary file and a rename."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(source) if isinstance(source, Path) else source
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        if isinstance(source, Path):
            src.close()
    fsync_file(tmp)
    os.replace(tmp, target)
