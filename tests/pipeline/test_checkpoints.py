"""The checkpoint database of AWS flows: rows round-trip, whatever the device and inode numbers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.checkpoints import CheckpointDB
from agent.errors import StoreError
from agent.records import Checkpoint, FileId


def test_round_trip_with_64_bit_device_and_inode(tmp_path: Path) -> None:
    """st_dev/st_ino above 2**63 (seen on overlay and btrfs) are stored and read back intact."""
    big = FileId(2**64 - 5, 2**63 + 7, 1024, b"\x01" * 16)
    small = FileId(64769, 1234, 80, b"\x02" * 16)
    db = CheckpointDB(tmp_path / "cp.db")
    try:
        db.save(
            [
                Checkpoint("f", big, "/var/log/a.log", 10),
                Checkpoint("f", small, "/var/log/b.log", 20),
            ]
        )
        db.save(
            [Checkpoint("f", big, "/var/log/a.log.1", 99)]
        )  # same identity, renamed, further on
        got = sorted(db.load("f"), key=lambda c: c.offset)
    finally:
        db.close()
    assert got == [
        Checkpoint("f", small, "/var/log/b.log", 20),
        Checkpoint("f", big, "/var/log/a.log.1", 99),
    ]


def test_flows_saving_from_their_own_threads_never_collide(tmp_path: Path) -> None:
    """Four flows saving at once from worker threads (as asyncio.to_thread does) all commit."""
    import threading

    db = CheckpointDB(tmp_path / "cp.db")
    errors: list[BaseException] = []
    start = threading.Barrier(4)
    rounds = 200

    def flow(n: int) -> None:
        ident = FileId(1, 100 + n, 16, bytes([n]) * 16)
        start.wait()
        for offset in range(1, rounds + 1):
            try:
                db.save([Checkpoint(f"flow{n}", ident, f"/var/log/{n}.log", offset)])
                db.load(f"flow{n}")
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

    threads = [threading.Thread(target=flow, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        db.close()
    assert errors == []
    db = CheckpointDB(tmp_path / "cp.db")
    try:
        assert sorted(c.offset for n in range(4) for c in db.load(f"flow{n}")) == [rounds] * 4
    finally:
        db.close()


def _victim(path: Path) -> bytes:
    """Some other program's SQLite database, as root's files are."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE precious (x)")
    db.commit()
    db.close()
    return path.read_bytes()


def test_a_checkpoint_file_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    """The agent user plants ``checkpoints.db -> victim`` and root runs the agent: the victim
    must not gain our table and WAL mode (an empty victim would become a database)."""
    victim = tmp_path / "victim.db"
    before = _victim(victim)
    link = tmp_path / "state" / "checkpoints.db"
    link.parent.mkdir()
    link.symlink_to(victim)
    with pytest.raises(StoreError, match="is a symbolic link"):
        CheckpointDB(link)
    assert victim.read_bytes() == before
    assert not (tmp_path / "victim.db-wal").exists()
