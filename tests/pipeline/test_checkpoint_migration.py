"""Checkpoints from before the ``size`` column: both homes migrate in place and keep every offset."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.checkpoints import CheckpointDB
from agent.records import Checkpoint, FileId
from agent.store.store import StreamStore

FILE = FileId(2049, 42, 1024, b"\x01" * 16)
OLD_TABLE = """CREATE TABLE file_checkpoints (
    flow TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    fp_len INTEGER NOT NULL,
    fp_hash BLOB NOT NULL,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (flow, dev, ino, fp_len, fp_hash)
)"""


def columns(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute("PRAGMA table_info(file_checkpoints)")]
    finally:
        db.close()


def test_checkpoint_database_from_before_sizes_is_migrated(tmp_path: Path) -> None:
    """An old checkpointFile opens: its rows keep their offsets (size unknown), new rows have one."""
    path = tmp_path / "cp.db"
    old = sqlite3.connect(path)
    with old:
        old.execute(OLD_TABLE)
        old.execute(
            "INSERT INTO file_checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ("f", 2049, 42, 1024, FILE.fp_hash, "/var/log/a.log", 500, 1.0),
        )
    old.close()
    db = CheckpointDB(path)
    try:
        assert db.load("f") == [Checkpoint("f", FILE, "/var/log/a.log", 500, None)]
        db.save([Checkpoint("f", FILE, "/var/log/a.log.1", 700, 900)])
        assert db.load("f") == [Checkpoint("f", FILE, "/var/log/a.log.1", 700, 900)]
    finally:
        db.close()
    assert columns(path)[-1] == "size"
    db = CheckpointDB(path)  # opening a migrated database again changes nothing
    try:
        assert db.load("f") == [Checkpoint("f", FILE, "/var/log/a.log.1", 700, 900)]
    finally:
        db.close()


def test_store_from_before_sizes_is_migrated(tmp_path: Path) -> None:
    """An embedded store whose checkpoints have no size column gains it and keeps its rows."""
    directory = tmp_path / "streams"
    with StreamStore.open(directory) as store:
        store.ensure_stream("s", 1, 24)
        store.put_records("s", [("k", b"x\n")], [Checkpoint("f", FILE, "/var/log/a.log", 2)])
    db = sqlite3.connect(directory / "streams.db")
    with db:
        db.execute("ALTER TABLE file_checkpoints DROP COLUMN size")  # as a store written before
    db.close()
    assert "size" not in columns(directory / "streams.db")
    with StreamStore.open(directory) as store:
        assert store.load_checkpoints("f") == [Checkpoint("f", FILE, "/var/log/a.log", 2, None)]
        store.put_records("s", [("k", b"y\n")], [Checkpoint("f", FILE, "/var/log/a.log", 4, 10)])
        assert store.load_checkpoints("f") == [Checkpoint("f", FILE, "/var/log/a.log", 4, 10)]
        assert [r.data for r in store.read("s")] == [b"x\n", b"y\n"]
    assert "size" in columns(directory / "streams.db")
