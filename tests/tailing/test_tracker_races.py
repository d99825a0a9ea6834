"""Races between the agent's steps and logrotate, replayed deterministically on one FileSet.

The flow's reader does, in a loop: rescan, then read each open file, and on ``Truncated`` ask the
FileSet what the truncation means. Here the test drives those steps itself and rotates files
between them, at exactly the moments a busy machine makes possible.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

from agent.tailing.tailer import Truncated
from tests.support.logs import append, numbered
from tests.tailing.harness import fast_flow, file_set_for


def ragged(prefix: str, start: int, count: int) -> list[bytes]:
    """Numbered lines of ragged lengths (0 to 49 x's of padding)."""
    return numbered(prefix, start, count, lambda i: i % 50)


class Reader:
    """The flow's read loop without the flow: every record a FileSet yields, in order."""

    def __init__(self, logs: Path) -> None:
        self.files = file_set_for(fast_flow(str(logs / "app.log*")))
        self.got: list[bytes] = []

    def rescan(self) -> None:
        for flushed in self.files.rescan():
            self.got += [data for data, _s, _e in flushed.records]

    def read_all(self) -> None:
        """Read every open file to its end (as many passes as it takes)."""
        while True:
            progressed = False
            for tracked in self.files.readable(refresh=True):
                try:
                    framed, n = tracked.read(1 << 20, 0.0)
                except Truncated:
                    for flushed in self.files.check_truncation(tracked, verify_head=True):
                        self.got += [data for data, _s, _e in flushed.records]
                    progressed = True
                    continue
                self.got += [data for data, _s, _e in framed]
                progressed = progressed or n > 0
            if not progressed:
                return


def test_truncated_and_refilled_between_open_and_first_read(logs: Path) -> None:
    """Opened at offset 0, then copytruncated and refilled before the first read.

    The first read (at offset 0) returns the new generation's bytes; they are not the file the
    agent identified, so they must not be taken as its records: the copy holds those, and the
    refilled file is a new one. Seen under load in the SIGKILL test as lines read twice (from
    the live file as if they were the old generation, then again from their own copy) and the
    old generation's head lost.
    """
    live = logs / "app.log"
    append(live, ragged("old", 0, 60))
    reader = Reader(logs)
    reader.rescan()  # app.log is identified by its head, nothing read yet
    assert len(reader.files.files) == 1

    shutil.copyfile(live, logs / "app.log.1")
    os.truncate(live, 0)
    append(live, ragged("new", 0, 45))

    reader.read_all()
    reader.rescan()
    reader.read_all()

    expected = ragged("old", 0, 60) + ragged("new", 0, 45)
    twice = [line for line, n in Counter(reader.got).items() if n > 1]
    assert not twice, f"read twice: {twice[:3]}"
    assert sorted(reader.got) == sorted(expected)


def test_refilled_between_open_and_first_read_without_a_copy(logs: Path) -> None:
    """Truncated and written again before the first read, the old content gone for good.

    Nothing of the old generation can be read any more; the new one is read once, from 0.
    """
    live = logs / "app.log"
    append(live, ragged("old", 0, 30))
    reader = Reader(logs)
    reader.rescan()
    os.truncate(live, 0)
    append(live, ragged("new", 0, 20))

    reader.read_all()
    reader.rescan()
    reader.read_all()

    assert reader.got == ragged("new", 0, 20)


def test_a_scan_out_of_descriptors_does_not_take_the_files_for_gone(tmp_path: Path) -> None:
    """glob reads EMFILE as an empty directory: the files still at their paths are not rotated."""
    import resource

    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("app.log", "app.log.1"):
        append(logs / name, ragged(name, 0, 3))
    reader = Reader(logs)
    reader.rescan()
    reader.read_all()
    assert len(reader.files.files) == 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    filler: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
        try:
            while True:
                filler.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass  # EMFILE: the scan below can open no directory
        reader.rescan()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert reader.files.metrics.files_rotated == 0
    assert not any(t.gone for t in reader.files.files.values())
