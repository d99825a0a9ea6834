"""Regression: a second store handle in the agent must not let another process delete its WAL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.store.store import StreamStore

READ = """
import sys
from agent.store.store import StreamStore
with StreamStore.open(sys.argv[1], create=False) as store:
    print(len(list(store.read("s"))))
"""


def count_from_another_process(directory: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", READ, str(directory)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_writes_stay_visible_with_two_handles_in_one_process(tmp_path: Path) -> None:
    """Two flows open the store in one process; a reader comes and goes; every commit stays visible.

    Opening and closing the database file drops the process's POSIX locks; the reader's close then
    believed it was the last user and deleted the WAL the agent was still writing to.
    """
    first = StreamStore.open(tmp_path)
    first.ensure_stream("s", 1, 24)
    first.put_records("s", [("k", b"one\n")])
    second = StreamStore.open(tmp_path)  # the second flow's sink
    try:
        assert count_from_another_process(tmp_path) == 1
        first.put_records("s", [("k", b"two\n")])
        assert count_from_another_process(tmp_path) == 2
        first.put_records("s", [("k", b"three\n")])
        assert count_from_another_process(tmp_path) == 3
    finally:
        second.close()
        first.close()
