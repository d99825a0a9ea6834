"""The checkpoint database of AWS flows: rows round-trip, whatever the device and inode numbers."""

from __future__ import annotations

from pathlib import Path

from agent.checkpoints import CheckpointDB
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
