"""The real command on hostile configurations: exit 78 with one line; SIGHUP with one keeps shipping.

systemd's ``RestartPreventExitStatus=78`` only holds if every malformed configuration exits 78,
and a reload must never take a running agent down.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.config.test_config_json import BOMBS
from tests.support.agent import run_agent, start_agent, stop_agent, wait_for
from tests.support.config import local_flow_config
from tests.support.streams import stored_lines

pytestmark = pytest.mark.slow

FLOW = {"filePattern": "/var/log/app/*.log", "localStream": "app"}


def _huge(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.truncate(8 * 1024 * 1024 * 1024)  # sparse


def _agent_d_flood(path: Path) -> None:
    path.write_text(json.dumps({"flows": [FLOW]}))
    (path.parent / "agent.d").mkdir()
    for i in range(1001):
        (path.parent / "agent.d" / f"{i:04d}.json").write_bytes(b'{"flows": []}')


def _text(name: str) -> Callable[[Path], None]:
    text = BOMBS[name][0]
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return lambda path: path.write_bytes(data) and None


# A sample of tests/config/test_config_json.py's bombs (which has them all) plus what is not text.
MAKERS: dict[str, Callable[[Path], None]] = {
    name: _text(name)
    for name in (
        "5000 nested arrays",
        "5000-digit integer",
        "1e999",
        "NaN",
        "not UTF-8",
        "a list",
        "flow a string",
        "megabyte key",
        "escape sequences in a key",
        "regex too many repeats",
    )
}
MAKERS |= {
    "a directory": lambda path: path.mkdir(),
    "a FIFO": lambda path: os.mkfifo(path),
    "8 GiB sparse file": _huge,
    "agent.d with 1001 files": _agent_d_flood,
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_check_and_run_exit_78_with_one_line(tmp_path: Path, name: str) -> None:
    """``check`` and ``run`` on each bomb: exit 78, one stderr line naming the file, no traceback."""
    path = tmp_path / "agent.json"
    MAKERS[name](path)
    for command in ("check", "run"):
        proc = run_agent(command, "-c", str(path), text=False)
        stderr = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 78, (command, proc.returncode, stderr[-2000:])
        assert "Traceback" not in stderr, stderr[-2000:]
        lines = stderr.splitlines()
        assert len(lines) == 1, (command, stderr[:2000])
        assert lines[0].startswith("kinesis-agent: configuration error: ")
        assert str(tmp_path) in lines[0] and len(lines[0]) < 2000
        assert proc.stdout == b""


def test_sighup_with_a_bomb_keeps_the_running_configuration(tmp_path: Path) -> None:
    """5,000 levels of nesting, a 5,000-digit integer, a FIFO: each reload is refused and logged,
    and the flow keeps shipping every line exactly once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    config = local_flow_config(tmp_path, logs / "*.log", "app", maxBufferAgeMillis=1000)
    agent_log = tmp_path / "agent.log"
    (logs / "app.log").write_bytes(b"line 0\n")
    proc = start_agent(config, log=agent_log)
    bombs: list[Callable[[Path], None]] = [
        MAKERS["5000 nested arrays"],
        MAKERS["5000-digit integer"],
        MAKERS["a FIFO"],
    ]
    try:
        wait_for(
            lambda: stored_lines(tmp_path / "streams", "app") == [b"line 0\n"], 30, log=agent_log
        )
        for i, bomb in enumerate(bombs, start=1):
            config.unlink()
            bomb(config)
            proc.send_signal(signal.SIGHUP)
            wait_for(
                lambda i=i: agent_log.read_text().count("reload rejected") == i, 30, log=agent_log
            )
            with open(logs / "app.log", "ab") as fh:
                fh.write(f"line {i}\n".encode())
            expected = [f"line {n}\n".encode() for n in range(i + 1)]
            wait_for(
                lambda e=expected: stored_lines(tmp_path / "streams", "app") == e, 30, log=agent_log
            )
            assert proc.poll() is None
    finally:
        code = stop_agent(proc)
    text = agent_log.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text
    rejected = [line for line in text.splitlines() if "reload rejected" in line]
    assert "nested deeper than 64 levels" in rejected[0]
    assert "a number of 5,000 characters" in rejected[1]
    assert "is not a regular file" in rejected[2]


def test_a_reload_that_raises_does_not_end_the_reloader(caplog: pytest.LogCaptureFixture) -> None:
    """Whatever a reload trips over is logged; the next SIGHUP is still served (no dead TaskGroup)."""
    import asyncio

    from agent.config import parse_config
    from agent.service.daemon import Agent

    async def scenario() -> list[str]:
        agent = Agent(parse_config({"flows": [FLOW]}), config_path="/nonexistent/agent.json")
        calls: list[str] = []

        async def reload() -> bool:
            calls.append("reload")
            if len(calls) == 1:
                raise RuntimeError("half-way")
            agent.stop.set()
            return True

        agent.reload = reload  # type: ignore[method-assign]
        task = asyncio.create_task(agent._reloader())
        agent.reload_requested.set()
        async with asyncio.timeout(10):
            while not calls:
                await asyncio.sleep(0.01)
            agent.reload_requested.set()
            while not agent.stop.is_set():
                await asyncio.sleep(0.01)
            assert not task.done()
            task.cancel()
        return calls

    assert asyncio.run(scenario()) == ["reload", "reload"]
    assert "reload failed; fix the cause and send SIGHUP again" in caplog.text
