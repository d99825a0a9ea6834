"""The real-program runs' summary: one table row per rotation mode, after the test results."""

from __future__ import annotations

from typing import Any

from tests.realworld.scenario import HEADER, RESULTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("real nginx/Apache + real logrotate: per rotation mode")
    terminalreporter.write_line(HEADER)
    for tally in RESULTS:
        terminalreporter.write_line(tally.report())
