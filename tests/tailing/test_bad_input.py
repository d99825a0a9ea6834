"""Bad input never stops a flow: odd bytes, huge lines, unreadable and vanishing files."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.tailing import tracker
from tests.tailing.harness import FlowHarness, fast_flow


@pytest.fixture
def harness(tmp_path: Path, logs: Path) -> Iterator[FlowHarness]:
    h = FlowHarness(tmp_path, fast_flow(str(logs / "*.log")))
    yield h
    h.close()


def test_invalid_utf8_and_nul_bytes_pass_through(harness: FlowHarness, logs: Path) -> None:
    """Bytes are shipped as they are: invalid UTF-8 and NUL bytes arrive untouched."""
    odd = [b"\xff\xfe\xfd not utf-8\n", b"nul\x00inside\x00\n", b"\x00\n", b"ok\n"]
    (logs / "odd.log").write_bytes(b"".join(odd))
    harness.start()
    assert harness.wait_until(lambda: len(harness.memory.records) == 4)
    assert harness.memory.records == odd


def test_ten_mib_line_is_truncated_and_counted(harness: FlowHarness, logs: Path) -> None:
    """A 10 MiB line becomes one record at the size limit with the terminator; the next line follows."""
    with open(logs / "big.log", "wb") as fh:
        fh.write(b"before\n")
        fh.write(b"y" * (10 * 1024 * 1024) + b"\n")
        fh.write(b"after\n")
    harness.start()
    assert harness.wait_until(lambda: len(harness.memory.records) == 3)
    before, big, after = harness.memory.records
    assert (before, after) == (b"before\n", b"after\n")
    assert len(big) == harness.memory.max_record_bytes
    assert big.endswith(b"\n") and set(big[:-1]) == {ord("y")}
    assert harness.flow is not None
    assert harness.flow.metrics.records_truncated == 1
    assert (
        harness.flow.metrics.bytes_discarded >= 10 * 1024 * 1024 - harness.memory.max_record_bytes
    )
    harness.stop()
    harness.start()
    harness.run_for(0.2)
    assert len(harness.memory.records) == 3, "the truncated line was shipped again after a restart"


def test_unreadable_file_is_logged_and_retried(
    harness: FlowHarness,
    logs: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A file that cannot be opened is reported once and picked up when it becomes readable."""
    target = logs / "locked.log"
    target.write_bytes(b"secret-1\nsecret-2\n")
    (logs / "open.log").write_bytes(b"fine\n")
    real_open = os.open
    denied = {"on": True}

    def fake_open(path: str, flags: int, *args: int) -> int:
        if denied["on"] and str(path) == str(target):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(tracker.os, "open", fake_open)
    harness.start()
    assert harness.wait_until(lambda: harness.memory.records == [b"fine\n"])
    harness.run_for(0.5)  # several rescans while it is still denied
    errors = [
        r
        for r in caplog.records
        if "cannot open" in r.getMessage() and "locked.log" in r.getMessage()
    ]
    assert len(errors) == 1, "the error should be logged once, not on every rescan"
    assert harness.flow is not None and harness.flow.metrics.read_errors == 1
    denied["on"] = False
    assert harness.wait_until(lambda: len(harness.memory.records) == 3)
    assert harness.memory.records[1:] == [b"secret-1\n", b"secret-2\n"]


def test_file_deleted_mid_read_is_finished(harness: FlowHarness, logs: Path) -> None:
    """Deleting a file the agent is reading does not lose what was written to it."""
    path = logs / "gone.log"
    with open(path, "wb") as fh:
        fh.write(b"".join(b"%08d\n" % i for i in range(200_000)))
    harness.start()
    harness.run_for(0.001)
    path.unlink()
    assert harness.wait_until(lambda: len(harness.memory.records) == 200_000, timeout=30)
    assert harness.memory.records[-1] == b"%08d\n" % 199_999


def test_directory_and_fifo_that_match_are_skipped(harness: FlowHarness, logs: Path) -> None:
    """A directory or a FIFO matching the pattern is skipped; regular files still flow."""
    (logs / "dir.log").mkdir()
    os.mkfifo(logs / "pipe.log")
    (logs / "real.log").write_bytes(b"real\n")
    harness.start()
    assert harness.wait_until(lambda: harness.memory.records == [b"real\n"])


def test_symlinks_and_symlink_loops(harness: FlowHarness, logs: Path, tmp_path: Path) -> None:
    """A symlinked file is tailed once (by its inode); a symlink loop is skipped, not fatal."""
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"via-link\n")
    (logs / "link.log").symlink_to(elsewhere)
    (logs / "second-link.log").symlink_to(elsewhere)  # same inode again: still once
    (logs / "loop-a.log").symlink_to(logs / "loop-b.log")
    (logs / "loop-b.log").symlink_to(logs / "loop-a.log")
    (logs / "dangling.log").symlink_to(tmp_path / "missing")
    (logs / "plain.log").write_bytes(b"plain\n")
    harness.start()
    assert harness.wait_until(lambda: len(harness.memory.records) == 2)
    harness.run_for(0.5)
    assert sorted(harness.memory.records) == [b"plain\n", b"via-link\n"]


def test_binary_file_does_not_stop_the_flow(harness: FlowHarness, logs: Path) -> None:
    """Random binary content is shipped as records (cut at the limit); later lines still arrive."""
    blob = bytes(range(256)) * 20_000  # 5 MiB, few newlines
    (logs / "blob.log").write_bytes(blob + b"\n")
    (logs / "text.log").write_bytes(b"after-binary\n")
    harness.start()
    assert harness.wait_until(lambda: b"after-binary\n" in harness.memory.records)
    assert harness.wait_until(lambda: sum(len(r) for r in harness.memory.records) > 5_000_000 // 2)


def test_delete_and_recreate_within_the_same_second(harness: FlowHarness, logs: Path) -> None:
    """Deleted and recreated at once (the inode may be reused): both generations arrive in full."""
    path = logs / "app.log"
    harness.start()
    expected = []
    for gen in range(5):
        lines = [b"gen%d-%d\n" % (gen, i) for i in range(20)]
        path.write_bytes(b"".join(lines))
        expected += lines
        harness.run_for(0.05)
        path.unlink()
    assert harness.wait_until(lambda: len(harness.memory.records) >= len(expected))
    harness.run_for(0.3)
    assert sorted(harness.memory.records) == sorted(expected)


def test_skipped_paths_are_counted_once(harness: FlowHarness, logs: Path, tmp_path: Path) -> None:
    """A directory, a FIFO, a symlink loop and a dangling link that match: each counted in files_skipped once,
    however many rescans see them."""
    (logs / "dir.log").mkdir()
    os.mkfifo(logs / "pipe.log")
    (logs / "loop-a.log").symlink_to(logs / "loop-b.log")
    (logs / "loop-b.log").symlink_to(logs / "loop-a.log")
    (logs / "dangling.log").symlink_to(tmp_path / "missing")
    (logs / "real.log").write_bytes(b"real\n")
    harness.start()
    assert harness.wait_until(lambda: harness.memory.records == [b"real\n"])
    harness.run_for(0.5)  # several rescans
    assert harness.flow is not None
    assert harness.flow.metrics.files_skipped == 5  # dir, fifo, two loop links, dangling
