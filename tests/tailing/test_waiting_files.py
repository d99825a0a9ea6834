"""Files seen while too short to identify: drained if they leave the pattern, never duplicated.

A file with no complete line has no identity yet and waits. Its writer may still write to it
after a rename out of the pattern (logrotate olddir, ``create``: the server writes to the old
file until it reopens), so the FileSet keeps the waiting file's descriptor and drains it like any
rotated file. Driven step by step on one FileSet (the flow's read loop without the flow).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from tests.tailing.harness import fast_flow, file_set_for


class Reader:
    def __init__(self, logs: Path) -> None:
        self.now = 0.0
        self.files = file_set_for(fast_flow(str(logs / "app.log*")), clock=self.clock)
        self.got: list[bytes] = []

    def clock(self) -> float:
        return self.now

    def step(self) -> None:
        """One scan, then every open file read to its end."""
        for flushed in self.files.rescan():
            self.got += [data for data, _s, _e in flushed.records]
        for tracked in self.files.readable(refresh=True):
            framed, _n = tracked.read(1 << 20, self.now)
            self.got += [data for data, _s, _e in framed]
            if tracked.framer.has_pending():
                self.got += [data for data, _s, _e in tracked.framer.flush()]

    def held(self) -> int:
        return len(self.files.waiting_fds) + len(self.files.left_waiting)


def test_an_empty_file_renamed_out_of_the_pattern_then_written_is_read_once(
    logs: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    live = logs / "app.log"
    live.touch()
    reader = Reader(logs)
    reader.step()
    assert reader.held() == 1  # seen, waiting, its descriptor kept

    with open(live, "ab") as writer:  # the server's descriptor, opened before the rename
        os.rename(live, old / "app.log.1")
        reader.step()  # left the pattern still empty: held, its writer may still write
        assert reader.got == [] and reader.held() == 1
        writer.write(b"written after the rename\n")
    reader.now += 0.1
    reader.step()
    reader.step()
    assert reader.got == [b"written after the rename\n"]
    assert reader.held() == 0 and reader.files.metrics.files_rotated == 1


def test_an_unterminated_line_that_leaves_the_pattern_is_read(logs: Path, tmp_path: Path) -> None:
    live = logs / "app.log"
    live.write_bytes(b"no end yet")
    reader = Reader(logs)
    reader.step()
    os.rename(live, tmp_path / "elsewhere")
    reader.step()
    assert reader.got == [b"no end yet"]


def test_a_waiting_file_deleted_or_left_empty_is_let_go(logs: Path, tmp_path: Path) -> None:
    (logs / "app.log").touch()
    (logs / "app.log.1").touch()
    reader = Reader(logs)
    reader.step()
    assert reader.held() == 2
    os.unlink(logs / "app.log")  # deleted while empty: nothing to lose
    os.rename(logs / "app.log.1", tmp_path / "moved")  # moved away, and nobody writes to it
    reader.step()
    assert reader.held() == 1
    reader.now += 1.0
    reader.step()
    assert reader.held() == 0 and reader.got == [] and not reader.files.files


def test_a_waiting_copy_of_a_live_file_that_leaves_the_pattern_is_not_read_again(
    logs: Path, tmp_path: Path
) -> None:
    """copytruncate's copy seen empty (copy in the making), filled, then moved out before the
    truncate: its bytes are the live file's, which the agent reads; nothing twice."""
    live = logs / "app.log"
    data = [f"line {i:04d}\n".encode() for i in range(200)]
    live.write_bytes(b"".join(data))
    copy = logs / "app.log.1"
    copy.touch()
    reader = Reader(logs)
    reader.step()
    assert reader.held() == 1
    shutil.copyfile(live, copy)
    os.rename(copy, tmp_path / "app.log.1")
    reader.step()
    reader.step()
    assert reader.got == data
    assert reader.held() == 0 and len(reader.files.files) == 1


def test_waiting_descriptors_stay_within_the_flows_budget(logs: Path) -> None:
    for i in range(10):
        (logs / f"app.log.{i}").touch()
    reader = Reader(logs)
    reader.files.max_open = 4
    reader.step()
    reader.step()
    assert reader.held() == 4 and len(reader.files.backlog) == 6
    asyncio.run(reader.files.adopt_backlog())  # the backlog's turn: no room for more waiting
    assert reader.held() == 4
    reader.files.close()
    assert reader.held() == 0
