"""``kinesis-agent top`` in a real pseudo-terminal (pexpect) against the running agent."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pexpect
import pytest

from agent.observability.top import human_bytes, human_seconds, render
from tests.support.agent import shipped_agent, spawn_agent_tty
from tests.support.config import obs_config
from tests.support.logs import write_log as write_lines

LINES = 4321
WIDTH = 30
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class TestFormatting:
    def test_human_units(self) -> None:
        """Bytes in binary units, durations in the largest sensible unit."""
        assert human_bytes(512) == "512 B"
        assert human_bytes(1536) == "1.5 KiB"
        assert human_bytes(3 * 1024**3) == "3.0 GiB"
        assert (human_seconds(None), human_seconds(5), human_seconds(125)) == ("-", "5s", "2m")
        assert human_seconds(7200) == "2.0h"

    def test_render_an_empty_agent(self) -> None:
        """A snapshot without flows still renders (an agent that just started)."""
        snap = {
            "pid": 1,
            "uptime_ms": 10,
            "records_parsed": 0,
            "bytes_parsed": 0,
            "records_sent": 0,
            "bytes_sent": 0,
            "lag_bytes": 0,
            "flows": [],
        }
        assert render(snap) is not None


@pytest.mark.slow
def test_top_shows_the_flows_in_a_terminal(tmp_path: Path) -> None:
    """The live screen names the flow and file, with the records shipped; q quits with status 0."""
    log_file = tmp_path / "logs" / "top.log"
    nbytes = write_lines(log_file, LINES, WIDTH)
    cfg = obs_config(tmp_path)
    with shipped_agent(cfg, tmp_path, LINES):
        child = spawn_agent_tty("top", "-c", str(cfg), "--interval", "0.5", columns=160, rows=40)
        transcript = io.BytesIO()
        child.logfile_read = transcript
        try:
            child.expect("LocalStream:obs")
            child.expect(str(log_file.name))
            # one more full redraw, so every part of the screen has been drawn at least once
            child.expect("LocalStream:obs")
            child.expect(str(log_file.name))
            child.send("q")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 0
    text = ANSI.sub(b"", transcript.getvalue()).decode("utf-8", "replace")
    assert "running" in text
    assert f"parsed {LINES} records" in text
    assert f"sent {LINES} ({human_bytes(nbytes)})" in text
    assert "100%" in text  # the file's acknowledged bar is complete
    assert str(LINES) in text
