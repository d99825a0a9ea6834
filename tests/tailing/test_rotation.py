"""Rotation scenarios with a running flow: rename/create, copytruncate, truncation, deletion, restarts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.logs import append, numbered
from tests.tailing.harness import FlowHarness, fast_flow


@pytest.fixture
def harness(tmp_path: Path, logs: Path) -> Iterator[FlowHarness]:
    h = FlowHarness(tmp_path, fast_flow(str(logs / "app.log*")))
    yield h
    h.close()


def delivered(h: FlowHarness) -> list[bytes]:
    return h.memory.records


def start_with(h: FlowHarness, live: Path, lines: list[bytes]) -> None:
    """``lines`` written to ``live``, then the flow started: all of them arrive."""
    append(live, lines)
    h.start()
    assert h.wait_until(lambda: len(delivered(h)) == len(lines))


def assert_each_once(h: FlowHarness, expected: list[bytes], settle: float = 0.3) -> None:
    """Everything expected arrives, and after ``settle`` seconds more nothing arrived twice."""
    assert h.wait_until(lambda: len(delivered(h)) >= len(expected))
    h.run_for(settle)
    assert sorted(delivered(h)) == sorted(expected)


class TestRotation:
    def test_rename_create_loses_nothing(self, harness: FlowHarness, logs: Path) -> None:
        """Lines written before and after a rename rotation all arrive once, in order."""
        live = logs / "app.log"
        start_with(harness, live, numbered("a", 0, 100))
        append(live, numbered("a", 100, 50))
        os.rename(live, logs / "app.log.1")
        append(logs / "app.log.1", numbered("a", 150, 10))  # the writer had not reopened yet
        append(live, numbered("b", 0, 100))
        expected = numbered("a", 0, 160) + numbered("b", 0, 100)
        assert harness.wait_until(lambda: len(delivered(harness)) >= 260)
        assert sorted(delivered(harness)) == sorted(expected)
        assert [r for r in delivered(harness) if r.startswith(b"a")] == numbered("a", 0, 160)

    def test_rotated_out_of_pattern_is_drained(self, tmp_path: Path, logs: Path) -> None:
        """A file renamed to a name the pattern does not match is still read to its end."""
        h = FlowHarness(tmp_path, fast_flow(str(logs / "*.log")))
        live = logs / "app.log"
        start_with(h, live, numbered("a", 0, 10))
        append(live, numbered("a", 10, 20))
        os.rename(live, logs / "app.log.old")
        assert h.wait_until(lambda: len(h.memory.records) == 30)
        h.close()
        assert h.memory.records == numbered("a", 0, 30)

    def test_copytruncate_continues_in_the_copy(self, harness: FlowHarness, logs: Path) -> None:
        """copytruncate: what the agent had not read yet is taken from the copy, not lost or repeated."""
        live = logs / "app.log"
        start_with(harness, live, numbered("a", 0, 100))
        harness.stop()  # the agent is down while lines are written and the file is rotated
        append(live, numbered("a", 100, 50))
        shutil.copyfile(live, logs / "app.log.1")
        os.truncate(live, 0)
        append(live, numbered("b", 0, 30))
        harness.start()
        assert_each_once(harness, numbered("a", 0, 150) + numbered("b", 0, 30))

    def test_copytruncate_while_running(self, harness: FlowHarness, logs: Path) -> None:
        """copytruncate under a running agent: every line once."""
        live = logs / "app.log"
        harness.start()
        for round_ in range(5):
            append(live, numbered(f"r{round_}", 0, 40))
            harness.run_for(0.05)  # the agent reads some of it
            append(live, numbered(f"r{round_}", 40, 10))  # and not this, before the rotation
            shutil.copyfile(live, logs / f"app.log.{round_ + 1}")
            os.truncate(live, 0)
            harness.run_for(0.05)
        append(live, numbered("end", 0, 5))
        expected = [x for r in range(5) for x in numbered(f"r{r}", 0, 50)] + numbered("end", 0, 5)
        assert_each_once(harness, expected, settle=0.5)

    @pytest.mark.parametrize("copy_ends_mid_line", [False, True])
    def test_copy_shorter_than_what_was_read_sends_nothing_again(
        self, tmp_path: Path, logs: Path, copy_ends_mid_line: bool
    ) -> None:
        """Lines written between the copy and the truncate were read: the copy is a prefix of them.

        Also when the copy ends inside a line the agent later read whole from the live file: no
        fragment of it is sent from the copy.
        """
        # the unfinished line must still be held when it is completed (no idle flush meanwhile)
        flow = fast_flow(str(logs / "app.log*"), partial_line_flush_millis=60_000)
        harness = FlowHarness(tmp_path, flow)
        try:
            self._copy_shorter(harness, logs, copy_ends_mid_line)
        finally:
            harness.close()

    @staticmethod
    def _copy_shorter(harness: FlowHarness, logs: Path, copy_ends_mid_line: bool) -> None:
        live = logs / "app.log"
        append(live, numbered("a", 0, 50))
        if copy_ends_mid_line:
            append(live, [b"half"])
        harness.start()
        assert harness.wait_until(lambda: len(delivered(harness)) == 50)
        shutil.copyfile(live, logs / "app.log.1")
        append(live, [b"-done\n", *numbered("a", 50, 5)])
        assert harness.wait_until(lambda: len(delivered(harness)) == 56)
        os.truncate(live, 0)
        append(live, numbered("b", 0, 3))
        assert harness.wait_until(lambda: len(delivered(harness)) >= 59)
        assert harness.wait_until(harness.settled)
        head = b"half-done\n" if copy_ends_mid_line else b"-done\n"
        assert delivered(harness) == [
            *numbered("a", 0, 50),
            head,
            *numbered("a", 50, 5),
            *numbered("b", 0, 3),
        ]

    def test_held_tail_the_copy_lacks_is_sent_from_the_original(
        self, harness: FlowHarness, logs: Path
    ) -> None:
        """An unterminated line written after the copy and read (held) before the truncate is sent."""
        live = logs / "app.log"
        start_with(harness, live, numbered("a", 0, 10))
        shutil.copyfile(live, logs / "app.log.1")
        append(live, [b"no-newline-yet"])
        flow = harness.flow
        assert flow is not None and flow.files is not None
        files = flow.files
        assert harness.wait_until(lambda: any(t.framer.has_pending() for t in files.readable()))
        os.truncate(live, 0)  # before the idle flush: the tail is held, and the copy lacks it
        assert harness.wait_until(lambda: len(delivered(harness)) == 11)
        assert harness.wait_until(harness.settled)
        assert delivered(harness) == [*numbered("a", 0, 10), b"no-newline-yet"]

    def test_new_file_starting_like_a_longer_old_one_is_read_from_zero(
        self, tmp_path: Path, logs: Path
    ) -> None:
        """Only a truncated file's copy counts as a prefix: a same-header new file is new."""
        h = FlowHarness(tmp_path, fast_flow(str(logs / "app.csv")))
        live = logs / "app.csv"
        append(live, [b"time,level,message\n"])
        h.start()
        assert h.wait_until(lambda: str(live) in h.open_paths())  # identified by its header
        append(live, numbered("old", 0, 40))
        assert h.wait_until(lambda: len(h.memory.records) == 41)
        os.rename(live, logs / "app.csv.1")  # out of the pattern: drained and closed
        assert h.wait_until(lambda: not h.open_paths())
        append(live, [b"time,level,message\n", *numbered("new", 0, 3)])
        assert h.wait_until(lambda: len(h.memory.records) == 45)
        assert h.memory.records[41:] == [b"time,level,message\n", *numbered("new", 0, 3)]
        h.close()

    def test_truncation_restarts_at_zero(self, harness: FlowHarness, logs: Path) -> None:
        """A truncated file is read again from 0 and the truncation is counted."""
        live = logs / "app.log"
        start_with(harness, live, numbered("a", 0, 20))
        os.truncate(live, 0)
        append(live, numbered("b", 0, 5))
        assert harness.wait_until(lambda: len(delivered(harness)) == 25)
        assert delivered(harness)[20:] == numbered("b", 0, 5)
        assert harness.flow is not None and harness.flow.metrics.files_truncated >= 1

    def test_deleted_while_unread_is_drained(self, tmp_path: Path, logs: Path) -> None:
        """A file deleted after the agent opened it is read to its end through the open descriptor."""
        h = FlowHarness(tmp_path, fast_flow(str(logs / "*.log")))
        live = logs / "app.log"
        start_with(h, live, numbered("a", 0, 5))
        with open(live, "ab") as fh:
            os.unlink(live)
            fh.write(b"".join(numbered("a", 5, 5)))
        assert h.wait_until(lambda: len(h.memory.records) == 10)
        h.close()

    def test_unterminated_last_line_is_flushed_after_idle(
        self, harness: FlowHarness, logs: Path
    ) -> None:
        """A last line without newline is sent once the file is idle (AWS never sends it)."""
        (logs / "app.log").write_bytes(b"one\ntwo-without-newline")
        harness.start()
        assert harness.wait_until(lambda: len(delivered(harness)) == 2)
        assert delivered(harness) == [b"one\n", b"two-without-newline"]


class TestRestart:
    def test_checkpoint_survives_restart(self, harness: FlowHarness, logs: Path) -> None:
        """After a restart the agent resumes at its checkpoint: no line twice, none missing."""
        live = logs / "app.log"
        start_with(harness, live, numbered("a", 0, 50))
        harness.stop()
        append(live, numbered("a", 50, 50))
        os.rename(live, logs / "app.log.1")
        append(live, numbered("b", 0, 10))
        harness.start()
        assert_each_once(harness, numbered("a", 0, 100) + numbered("b", 0, 10))

    def test_end_of_file_applies_only_to_the_first_sight(self, tmp_path: Path, logs: Path) -> None:
        """END_OF_FILE skips what existed when the flow was first seen, never later data."""
        h = FlowHarness(tmp_path, fast_flow(str(logs / "app.log*"), initial_position="END_OF_FILE"))
        live = logs / "app.log"
        append(live, numbered("old", 0, 10))
        h.start()
        h.run_for(0.2)
        append(live, numbered("new", 0, 3))
        assert h.wait_until(lambda: len(h.memory.records) == 3)
        h.stop()
        append(live, numbered("down", 0, 2))  # written while the agent was stopped
        (logs / "app.log.2").write_bytes(b"".join(numbered("created", 0, 2)))
        h.start()
        assert h.wait_until(lambda: len(h.memory.records) == 7)
        h.close()
        assert sorted(h.memory.records) == sorted(
            numbered("new", 0, 3) + numbered("down", 0, 2) + numbered("created", 0, 2)
        )

    def test_reused_inode_with_new_head_is_a_new_file(
        self, harness: FlowHarness, logs: Path
    ) -> None:
        """Delete and recreate (likely the same inode): the new file is read from 0."""
        live = logs / "app.log"
        start_with(harness, live, numbered("first", 0, 30))
        harness.stop()
        live.unlink()
        append(live, numbered("second", 0, 3))
        harness.start()
        assert harness.wait_until(lambda: len(delivered(harness)) == 33)
        assert delivered(harness)[30:] == numbered("second", 0, 3)


def test_empty_file_written_through_an_open_descriptor_is_read_at_once(
    tmp_path: Path, logs: Path
) -> None:
    """An empty file at start, then written by a daemon that keeps it open (only "modified"
    events, no close or create): shipped on the event, not at the next rescan a minute later."""
    live = logs / "app.log"
    live.touch()
    h = FlowHarness(
        tmp_path,
        fast_flow(str(logs / "app.log*"), max_time_between_file_tracker_refresh_millis=60000),
    )
    h.start()
    try:
        h.run_for(0.5)  # the first scan saw it, too short to identify
        with open(live, "ab", buffering=0) as fh:
            fh.write(b"".join(numbered("a", 0, 3)))
            assert h.wait_until(lambda: len(delivered(h)) == 3, timeout=5)
    finally:
        h.close()
    assert delivered(h) == numbered("a", 0, 3)
