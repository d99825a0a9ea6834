"""Closing idle files to make room for new ones is a system call each, on the event loop: a scan
closes at most a slice of them, and the backlog's turns do the rest (issue 12 §1)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.tailing.adoption import QUIET_BURST
from agent.tailing.probe import SLICE
from tests.tailing.harness import fast_flow, file_set_for


def test_a_scan_closes_at_most_a_slice_of_idle_files(tmp_path: Path) -> None:
    first = SLICE + 88
    for i in range(first):
        (tmp_path / f"a{i:05d}.log").write_bytes(b"first %d\n" % i)
    files = file_set_for(fast_flow(str(tmp_path / "*.log")))
    files.max_open = first
    try:
        asyncio.run(files.rescan_async())
        assert len(files.files) == first
        for tracked in files.files.values():  # read to their end and checkpointed: idle
            tracked.read(1 << 20, 0.0)
            tracked.acks.dirty = False
        for i in range(first):
            (tmp_path / f"b{i:05d}.log").write_bytes(b"second %d\n" % i)
        asyncio.run(files.rescan_async())
        assert len(files.dormant) == SLICE  # not all ``first`` of them at once
        assert len(files.files) == first
        assert len(files.backlog) == first - SLICE
        for _turn in range(10):
            if not files.backlog:
                break
            asyncio.run(files.adopt_backlog())
        assert not files.backlog
        assert len(files.files) + len(files.dormant) == 2 * first  # every file known, once
    finally:
        files.close()


def test_a_burst_of_new_files_is_logged_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A log line is a write(2) on the loop: a hundred files found at once say so in one INFO
    line (each at debug level); a few files found are named one by one, as before."""
    for i in range(QUIET_BURST + 36):
        (tmp_path / f"a{i:05d}.log").write_bytes(b"first %d\n" % i)
    files = file_set_for(fast_flow(str(tmp_path / "*.log")))
    caplog.set_level(logging.DEBUG, logger="agent.tailing.tracker")
    try:
        asyncio.run(files.rescan_async())
        tailing = [r for r in caplog.records if "tailing" in r.getMessage()]
        infos = [r.getMessage() for r in tailing if r.levelno == logging.INFO]
        assert len(infos) == 1 and f"tailing {QUIET_BURST + 36} more files" in infos[0]
        assert sum(r.levelno == logging.DEBUG for r in tailing) == QUIET_BURST + 36
        caplog.clear()
        (tmp_path / "late.log").write_bytes(b"late\n")
        asyncio.run(files.rescan_async())
        infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert any("late.log from offset 0" in line for line in infos)
    finally:
        files.close()
