"""Two different files that start alike: the second is only a *candidate* copy of the first.

A new file whose head equals an open file's is held unread while it may be copytruncate's copy
in the making (agent/tailing/shadows.py); it must still be shipped, once, when it turns out to be
a file of its own: it differs from the original, no truncation comes within the window, or
``run --once`` ends. The copytruncate side (a copy made, then the truncate, nothing sent twice)
is covered by tests/tailing/test_rotation.py (test_copytruncate_continues_in_the_copy,
test_copytruncate_while_running, test_copy_shorter_than_what_was_read_sends_nothing_again,
test_held_tail_the_copy_lacks_is_sent_from_the_original), test_copytruncate_agent.py, the
rotation model (test_model.py) and tests/realworld/test_realworld.py; one more here with the
copy compared for a while before the truncate.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.tailing.shadows import SHADOW_WINDOW
from tests.support.agent import run_once
from tests.support.config import local_flow_config
from tests.support.logs import append
from tests.support.streams import stored_lines
from tests.tailing.harness import FlowHarness, fast_flow

# Longer than a fingerprint (1 KiB): the two files' heads are equal however they are compared.
BANNER = [
    f"startup banner line {i:02d} of a service that prints its config\n".encode() for i in range(30)
]


class Skewed:
    """A monotonic clock that a test moves forward (the shadow window, without sleeping)."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skew


@pytest.fixture
def clock() -> Skewed:
    return Skewed()


@pytest.fixture
def harness(tmp_path: Path, logs: Path, clock: Skewed) -> Iterator[FlowHarness]:
    h = FlowHarness(tmp_path, fast_flow(str(logs / "*.log*")), clock=clock)
    yield h
    h.close()


def shadows(h: FlowHarness) -> int:
    assert h.flow is not None and h.flow.files is not None
    return len(h.flow.files.shadows)


def start_with_twins(harness: FlowHarness, logs: Path) -> None:
    """f1 and f2 with the same lines; once one is shipped, the other is held as a possible copy."""
    for name in ("f1", "f2"):
        append(logs / f"{name}.log", BANNER)
    harness.start()
    assert harness.wait_until(lambda: len(harness.memory.records) == len(BANNER))
    assert harness.wait_until(lambda: shadows(harness) == 1)


@pytest.mark.parametrize("first", ["f1", "f2"])
def test_files_with_the_same_head_that_diverge_are_both_shipped_once(
    harness: FlowHarness, logs: Path, first: str
) -> None:
    """Two identical files, then a different line appended to each (either first): both whole, once."""
    start_with_twins(harness, logs)
    second = "f2" if first == "f1" else "f1"
    append(logs / f"{first}.log", [f"{first} unique\n".encode()])
    harness.run_for(0.3)  # a rescan or two: the held one still matches the other's bytes
    append(logs / f"{second}.log", [f"{second} unique\n".encode()])
    expected = BANNER * 2 + [b"f1 unique\n", b"f2 unique\n"]
    assert harness.wait_until(lambda: len(harness.memory.records) >= len(expected))
    assert harness.wait_until(harness.settled)
    harness.run_for(0.3)
    assert Counter(harness.memory.records) == Counter(expected)
    assert shadows(harness) == 0


def test_identical_files_that_never_change_are_shipped_after_the_window(
    harness: FlowHarness, logs: Path, clock: Skewed
) -> None:
    """No truncation of the original within the window: the held file is a file of its own."""
    start_with_twins(harness, logs)
    harness.run_for(0.5)  # rescans within the window: still held
    assert len(harness.memory.records) == len(BANNER)
    clock.skew += SHADOW_WINDOW + 1
    assert harness.wait_until(lambda: len(harness.memory.records) == 2 * len(BANNER))
    harness.run_for(0.3)
    assert Counter(harness.memory.records) == Counter(BANNER * 2)
    assert shadows(harness) == 0


def test_copy_compared_for_a_while_then_truncated_sends_nothing_twice(
    tmp_path: Path, logs: Path, clock: Skewed
) -> None:
    """copytruncate with half a window between the copy and the truncate, lines written to the
    live file meanwhile: the copy stays a candidate (its bytes are the original's) and then
    continues from where the original was read — every line once."""
    h = FlowHarness(tmp_path, fast_flow(str(logs / "app.log*")), clock=clock)
    try:
        live = logs / "app.log"
        append(live, BANNER)
        h.start()
        assert h.wait_until(lambda: len(h.memory.records) == len(BANNER))
        shutil.copyfile(live, logs / "app.log.1")
        append(live, [b"after the copy 1\n"])
        assert h.wait_until(lambda: shadows(h) == 1)
        append(live, [b"after the copy 2\n"])
        h.run_for(0.5)  # compared at every rescan: the live file holds the copy's bytes
        clock.skew += SHADOW_WINDOW / 2
        h.run_for(0.3)
        assert shadows(h) == 1
        live.write_bytes(b"")  # the truncate
        append(live, [b"new 1\n"])
        expected = [*BANNER, b"after the copy 1\n", b"after the copy 2\n", b"new 1\n"]
        assert h.wait_until(lambda: len(h.memory.records) >= len(expected))
        assert h.wait_until(h.settled)
        h.run_for(0.3)
        assert Counter(h.memory.records) == Counter(expected)
    finally:
        h.close()


def test_run_once_ships_two_identical_files(tmp_path: Path, logs: Path) -> None:
    """The real agent, ``run --once``: a file held as a possible copy is shipped at the end."""
    for name in ("f1", "f2"):
        append(logs / f"{name}.log", BANNER)
    config = local_flow_config(tmp_path, logs / "*.log", "s")
    done = run_once(config)
    assert Counter(stored_lines(tmp_path / "streams", "s")) == Counter(BANNER * 2)
    assert "is not a copy of" in done.stderr


@pytest.mark.parametrize("while_down", [False, True], ids=["", "while-down"])
def test_copytruncate_of_a_file_with_an_open_twin_sends_nothing_twice(
    harness: FlowHarness, logs: Path, while_down: bool
) -> None:
    """A file of its own that starts like app.log is open too when app.log is copytruncated: the
    copy continues app.log (whose truncation is the evidence), not judged a copy of the twin;
    also when the agent is down between the copy and the truncate (first seen after it)."""
    live = logs / "app.log"
    append(live, [*BANNER, b"app 0\n"])
    append(logs / "twin.log", [*BANNER, b"twin 1\n"])
    harness.start()
    expected = [*BANNER, b"app 0\n", *BANNER, b"twin 1\n"]
    assert harness.wait_until(lambda: len(harness.memory.records) == len(expected))
    append(live, [b"app 1\n"])
    assert harness.wait_until(lambda: len(harness.memory.records) == len(expected) + 1)
    if while_down:
        harness.stop()
    shutil.copyfile(live, logs / "app.log.1")  # matched too: the copy is read, not the twin's
    append(live, [b"app 2\n"])  # between the copy and the truncate, maybe not read
    live.write_bytes(b"")
    append(live, [b"new 1\n"])
    if while_down:
        harness.start()
    expected += [b"app 1\n", b"app 2\n", b"new 1\n"]
    assert harness.wait_until(lambda: len(harness.memory.records) >= len(expected) - 1)
    assert harness.wait_until(harness.settled)
    harness.run_for(0.3)
    got = Counter(harness.memory.records)
    assert max(got.values()) <= 2 and got[b"app 1\n"] == 1, got  # nothing of app.log twice
    assert got[b"new 1\n"] == 1 and got[b"twin 1\n"] == 1
