"""Files waiting for descriptors keep the original-before-copy order of a scan's new files.

A restart between logrotate's copy and its truncate finds the checkpointed original and its copy
(same head, new inode) both new to the FileSet. The original must be adopted first (by inode, at
its checkpoint) so that the copy is judged a shadow; adopted the other way round, both continue
from the checkpoint and the bytes between it and the copy's end are sent twice. With more new
files than descriptors the budget's cut must not undo that order.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from agent.observability.metrics import FlowMetrics
from agent.records import Checkpoint, FileId
from agent.tailing.identity import file_id, fingerprint
from agent.tailing.tracker import FileSet
from tests.tailing.harness import fast_flow, file_set_for


def _read_all(files: FileSet) -> list[bytes]:
    got: list[bytes] = []
    for tracked in files.readable(refresh=True):
        framed, _n = tracked.read(1 << 20, 0.0)
        got += [data for data, _s, _e in framed]
    return got


def _read_the_backlog(files: FileSet) -> list[bytes]:
    """A descriptor frees up (another flow's file closed): the backlog's turn, then rescans."""
    files.max_open = 2
    got: list[bytes] = []
    for _ in range(3):
        asyncio.run(files.adopt_backlog())
        got += _read_all(files)
        asyncio.run(files.rescan_async())
        got += _read_all(files)
    return got


def test_a_copy_older_than_its_original_is_not_adopted_before_it_from_the_backlog(
    logs: Path,
) -> None:
    lines = [f"line {i:04d} {'x' * 40}\n".encode() for i in range(100)]
    live = logs / "app.log"
    live.write_bytes(b"".join(lines))
    fid = _fid(live)
    half = sum(len(x) for x in lines[:50])
    # logrotate copied app.log to app-1.log, the server wrote one more line, the agent restarts
    (logs / "app-1.log").write_bytes(b"".join(lines))
    late = b"written between the copy and the truncate\n"
    with open(live, "ab") as w:
        w.write(late)
    os.utime(logs / "app-1.log", (1000.0, 1000.0))
    os.utime(live, (2000.0, 2000.0))  # the walk lists the copy first (oldest first)
    flow = fast_flow(str(logs / "app*.log"))
    cp = Checkpoint(flow.flow_id, fid, str(live), half, size=len(b"".join(lines)))
    files = file_set_for(flow, [cp])
    files.max_open = 1  # one descriptor: the other new file waits in the backlog
    asyncio.run(files.rescan_async())
    got = _read_all(files)
    got += _read_the_backlog(files)
    files.close()
    assert got == [*lines[50:], late]


def test_a_copy_waiting_in_the_backlog_is_not_reported_lost_at_the_first_scan(
    logs: Path,
) -> None:
    """Copytruncate while the agent was away: the truncated original is adopted, its copy waits
    for a descriptor. The copy continues the checkpoint once it is adopted, so nothing is lost:
    judging the checkpoints before the backlog was adopted reported the copy's bytes lost."""
    lines = [f"line {i:04d} {'x' * 40}\n".encode() for i in range(100)]
    live = logs / "app.log"
    live.write_bytes(b"".join(lines))
    fid = _fid(live)
    half = sum(len(x) for x in lines[:50])
    (logs / "app-1.log").write_bytes(b"".join(lines))  # logrotate's copy, then its truncate
    fresh = b"the first line after the truncate\n"
    live.write_bytes(fresh)
    flow = fast_flow(str(logs / "app*.log"))
    cp = Checkpoint(flow.flow_id, fid, str(live), half, size=len(b"".join(lines)))
    metrics = FlowMetrics(flow.flow_id, "test")
    files = file_set_for(flow, [cp], metrics=metrics)
    files.max_open = 1  # one descriptor: the copy waits in the backlog
    asyncio.run(files.rescan_async())
    got = _read_all(files)
    got += _read_the_backlog(files)
    files.close()
    assert sorted(got) == sorted([*lines[50:], fresh])
    assert (metrics.files_lost, metrics.unread_bytes_lost) == (0, 0)
    assert files.reported == []


def _fid(path: Path) -> FileId:
    fd = os.open(path, os.O_RDONLY)
    try:
        fp = fingerprint(fd)
        assert fp is not None
        return file_id(os.fstat(fd), fp)
    finally:
        os.close(fd)
