"""The shared test harness keeps its promises: one wait with a deadline, failures that say why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.agent import wait_for
from tests.support.logs import line_records, numbered


class TestWaitFor:
    def test_returns_what_the_probe_found(self) -> None:
        """The first true value the probe returns is the result (a snapshot, say)."""
        answers = iter([None, {}, {"records_sent": 3}])
        assert wait_for(lambda: next(answers), 5, interval=0.001) == {"records_sent": 3}

    def test_times_out_with_what_it_waited_for_and_the_log(self, tmp_path: Path) -> None:
        """Past the deadline: AssertionError naming the probe's source and quoting the log's end."""
        log = tmp_path / "agent.log"
        log.write_text("x" * 5000 + "the agent's last words\n")
        started = time.monotonic()
        with pytest.raises(AssertionError) as failed:
            wait_for(lambda: "never" in log.read_text(), 0.2, log=log, interval=0.01)
        assert 0.2 <= time.monotonic() - started < 5
        message = str(failed.value)
        assert 'lambda: "never" in log.read_text()' in message
        assert message.endswith("the agent's last words\n") and "x" * 3001 not in message

    def test_a_probe_that_fails_fails_at_once(self) -> None:
        """A probe raising AssertionError (the agent exited) ends the wait before the deadline."""

        def exited() -> bool:
            raise AssertionError("the agent exited with 1")

        started = time.monotonic()
        with pytest.raises(AssertionError, match="exited with 1"):
            wait_for(exited, 30, what="anything")
        assert time.monotonic() - started < 5


def test_numbered_lines_are_unique_and_records_lie_back_to_back() -> None:
    """Lines a test writes can be told apart; their Records cover the file without a gap."""
    lines = numbered("a", 0, 3) + numbered("a", 3, 2, width=4)
    assert lines == [
        b"a 00000000\n",
        b"a 00000001\n",
        b"a 00000002\n",
        b"a 00000003 xxxx\n",
        b"a 00000004 xxxx\n",
    ]
    records = line_records(3)
    assert [(r.data, r.start, r.end) for r in records] == [
        (b"line 00000000\n", 0, 14),
        (b"line 00000001\n", 14, 28),
        (b"line 00000002\n", 28, 42),
    ]
