"""The damage check at start must not take another connection's last-close checkpoint for damage."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.store.sqlite import DB_NAME, DamagedStore, check_damage


@pytest.fixture
def store_with_wal(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A store whose newest ~1 MiB lives only in the WAL of a still-open read-write connection
    (as when an operator's ``sqlite3`` session wrote to it), so the file is far shorter than the
    page count its header and WAL together describe."""
    path = tmp_path / DB_NAME
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (b BLOB)")
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the table is in the file, the WAL empty
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) "
        "INSERT INTO t SELECT randomblob(1000) FROM n"
    )
    yield path, writer
    writer.close()


def test_a_concurrent_last_close_checkpoint_is_not_damage(
    store_with_wal: tuple[Path, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other connection closes as the last one right after the check first looks at the
    file's size: it copies the WAL into the file and deletes the WAL. A size read before that
    copy made the agent refuse a healthy store ("truncated: 589824 bytes, its header says ...")."""
    path, writer = store_with_wal
    page_size = writer.execute("PRAGMA page_size").fetchone()[0]
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    assert path.stat().st_size < pages * page_size  # the WAL holds the rest
    real_stat = Path.stat
    closed = []

    def stat_then_checkpoint(self: Path, *args: Any, **kwargs: Any) -> Any:
        result = real_stat(self, *args, **kwargs)
        if self == path and not closed:
            writer.close()  # a real checkpoint-on-close, if no other connection is open
            closed.append(True)
        return result

    monkeypatch.setattr(Path, "stat", stat_then_checkpoint)
    check_damage(path)  # raised DamagedStore: truncated
    monkeypatch.undo()
    assert closed
    assert path.stat().st_size >= pages * page_size or Path(f"{path}-wal").stat().st_size > 0


def test_a_real_truncation_is_still_damage(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (b BLOB)")
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) "
        "INSERT INTO t SELECT randomblob(1000) FROM n"
    )
    db.close()  # the last close: everything is in the file, no WAL left
    assert not Path(f"{path}-wal").exists()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(DamagedStore, match="is damaged"):
        check_damage(path)
