"""Names and records chosen by whoever writes a log never reach the terminal as markup or control codes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pexpect
from rich.console import Console

from agent.observability.top import render
from agent.printable import printable
from tests.support.agent import run_agent, running_agent, snapshot_when, spawn_agent_tty, wait_for
from tests.support.config import from_start, state_config, state_socket

CLEAR = "\x1b[2J"
HOSTILE_NAMES = ("[/]z.log", f"{CLEAR}boom.log", "[bold]x.log", "a\rb.log", "\u202egol.txt.log")


class TestPrintable:
    def test_control_characters_become_visible_escapes(self) -> None:
        """ESC, CR, BEL, C1 and bidi overrides are shown as escapes; ordinary text is untouched."""
        assert printable(f"{CLEAR}x\ry\x07\x9b\u202e") == "\\x1b[2Jx\\ry\\x07\\x9b\\u202e"
        assert printable("/var/log/nginx/access.log [ok] é 日本") == (
            "/var/log/nginx/access.log [ok] é 日本"
        )

    def test_names_keep_no_layout_records_keep_theirs(self) -> None:
        """A newline in a file name is shown; a multi-line record keeps its lines and tabs."""
        assert printable("a\nb\tc") == "a\\nb\\tc"
        assert printable("a\nb\tc\x1b", keep_layout=True) == "a\nb\tc\\x1b"


def snapshot(paths: list[str], error: str = "") -> dict[str, Any]:
    def file(path: str) -> dict[str, Any]:
        return {
            "path": path,
            "size": 10,
            "checkpoint_offset": 5,
            "lag_bytes": 5,
            "lag_seconds": 1.0,
            "checkpoint_age_seconds": 2.0,
            "rotated": True,
        }

    flow = {
        "flow_id": "f",
        "destination": "LocalStream:[/]s",
        "status": "running",
        "last_error": error,
        "rates": {},
        "capacity": None,
        "record_send_errors": 0,
        "processing_errors": 0,
        "read_errors": 0,
        "records_parsed": 1,
        "records_sent": 1,
        "retries": 0,
        "in_flight_bytes": 0,
        "lag_bytes": 5,
        "lag_seconds": 1.0,
        "files": [file(p) for p in paths],
    }
    return {
        "pid": 1,
        "uptime_ms": 1000,
        "records_parsed": 1,
        "bytes_parsed": 10,
        "records_sent": 1,
        "bytes_sent": 10,
        "lag_bytes": 5,
        "flows": [flow],
    }


def test_render_shows_hostile_names_without_obeying_them() -> None:
    """`[/]` is not markup (no MarkupError), ESC[2J is printed as text, rotated files say so."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=400, color_system="truecolor")
    paths = [f"/logs/{name}" for name in HOSTILE_NAMES]
    console.print(render(snapshot(paths, error=f"cannot open /logs/{CLEAR}boom.log")))
    text = out.getvalue()
    assert CLEAR not in text
    assert "\r" not in text
    assert "\u202e" not in text
    for name in HOSTILE_NAMES:
        assert printable(name) in text
    assert "LocalStream:[/]s" in text
    assert "(rotated)" in text
    assert "cannot open /logs/\\x1b[2Jboom.log" in text


def test_status_top_and_check_against_a_hostile_directory(tmp_path: Path) -> None:
    """The reported cases with the real commands: status exits 0, nothing raw reaches the tty."""
    logs = tmp_path / "logs"
    (logs / "[").mkdir(parents=True)
    (logs / "[" / "]z.log").write_bytes(b"one\n")
    (logs / f"{CLEAR}boom.log").write_bytes(f"{CLEAR}\x1b]0;pwned\x07 record\n".encode())
    cfg = state_config(
        tmp_path, from_start(logs / "**" / "*.log", localStream="obs", maxBufferAgeMillis=1000)
    )
    check = run_agent("check", "-c", str(cfg), text=False)
    assert check.returncode == 0, check.stderr
    assert b"\x1b" not in check.stdout
    assert b"\\x1b[2Jboom.log" in check.stdout
    assert b"\\x1b[2J\\x1b]0;pwned\\x07 record" in check.stdout  # the record, shown not obeyed

    sock = state_socket(tmp_path)
    with running_agent(cfg, tmp_path / "agent.log") as proc:
        wait_for(
            snapshot_when(sock, lambda s: s["records_sent"] == 2, proc), what="both files shipped"
        )
        status = run_agent("status", "-c", str(cfg), text=False)
        assert status.returncode == 0, status.stderr
        assert b"]z.log" in status.stdout  # (long paths fold inside their table cell)
        assert b"1b[2Jboom.log" in status.stdout
        assert b"\x1b" not in status.stdout
        child = spawn_agent_tty("top", "-c", str(cfg), "--interval", "0.5", columns=200, rows=30)
        transcript = io.BytesIO()
        child.logfile_read = transcript
        try:
            child.expect_exact("boom.log")
            child.send("q")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 0
    shown = transcript.getvalue()
    assert b"[2Jboom.log" in shown
    assert CLEAR.encode() + b"boom.log" not in shown
