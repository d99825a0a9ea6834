"""The real ``kinesis-agent`` process in tests: start it, stop it, run a command, wait on it.

Every test that runs the agent as a process goes through here, so they all run it the same way:
``python -m agent`` from the repository, dummy AWS credentials and no instance metadata (nothing
reaches AWS), no systemd notify socket inherited from the test runner, output appended to a log
file the failure messages quote. :func:`wait_for` is the one way to wait for something: poll until
a deadline, then fail with what was awaited and the log's tail.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pexpect

from agent.observability.status import StatusUnavailable, fetch
from tests.peers.servers import TEST_ENV
from tests.support.config import state_socket

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
AGENT = [sys.executable, "-m", "agent"]
LOG_TAIL = 3000  # characters of the agent's log a failure message quotes


def agent_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment an agent process runs in (``extra`` on top)."""
    env = {**os.environ, **TEST_ENV, "PYTHONPATH": str(REPO)}
    # the test runner may itself run under systemd: its notify socket is not the agent's
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)
    return {**env, **(extra or {})}


def log_tail(log: Path | None) -> str:
    """The end of an agent's log, for a failure message."""
    if log is None:
        return ""
    try:
        return log.read_text(errors="replace")[-LOG_TAIL:]
    except FileNotFoundError:
        return f"({log} does not exist)"


def start_agent(
    config: Path,
    *args: str,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """Start ``kinesis-agent run -c config *args`` (behind ``prefix``, e.g. ``setpriv …``); its
    output is appended to ``log`` (or dropped)."""
    command = [*prefix, *AGENT, "run", "-c", str(config), *args]
    with open(log or os.devnull, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=agent_env(env),
            cwd=REPO,
            start_new_session=True,
        )


def stop_agent(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM (unless it has exited already) and its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def kill_agent(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: nothing more is written, like a power cut to the process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


@contextmanager
def running_agent(
    config: Path,
    log: Path,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    stop_timeout: float = 20,
) -> Iterator[subprocess.Popen[bytes]]:
    """``kinesis-agent run -c config`` until the block ends; then SIGTERM and a clean exit (0)
    within ``stop_timeout`` seconds."""
    proc = start_agent(config, *args, log=log, env=env, prefix=prefix)
    try:
        yield proc
    finally:
        try:
            stop_agent(proc, timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            kill_agent(proc)
    assert proc.returncode == 0, log_tail(log)


def run_agent(
    *args: str,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    text: bool = True,
    check: bool = False,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[Any]:
    """``kinesis-agent *args`` (behind ``prefix``) to its end, output captured (as text unless
    ``text=False``)."""
    return subprocess.run(
        [*prefix, *AGENT, *args],
        capture_output=True,
        text=text,
        env=agent_env(env),
        timeout=timeout,
        check=check,
    )


def spawn_agent_tty(*args: str, columns: int, rows: int) -> pexpect.spawn:
    """``kinesis-agent *args`` on a pseudo-terminal of ``columns`` x ``rows`` (``top``, say)."""
    env = agent_env({"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)})
    return pexpect.spawn(
        AGENT[0], [*AGENT[1:], *args], env=env, dimensions=(rows, columns), timeout=20
    )


def run_once(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``kinesis-agent run --once -c config``, which must exit 0."""
    done = run_agent("run", "--once", "-c", str(config), timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def wait_for(
    probe: Callable[[], T | None],
    timeout: float = 20,
    *,
    what: str = "",
    log: Path | None = None,
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until it returns something true (returned) or ``timeout`` seconds pass.

    On timeout: AssertionError naming ``what`` (or the probe's source line) and quoting ``log``'s
    tail. A probe may raise AssertionError itself to fail at once (the agent exited, say).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out after {timeout}s waiting for {what or _source(probe)}"
            if log is not None:
                message += f"\n--- {log.name} ---\n{log_tail(log)}"
            raise AssertionError(message)
        time.sleep(interval)


def _source(probe: Callable[..., object]) -> str:
    try:
        return inspect.getsource(probe).strip()
    except (OSError, TypeError):
        return repr(probe)


def snapshot_when(
    sock: str,
    predicate: Callable[[dict[str, Any]], bool],
    proc: subprocess.Popen[bytes] | None = None,
) -> Callable[[], dict[str, Any] | None]:
    """A probe for :func:`wait_for`: the agent's status snapshot once ``predicate`` holds for it
    (fails at once if ``proc`` has exited)."""

    def probe() -> dict[str, Any] | None:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the agent exited with {proc.returncode}")
        try:
            snap = fetch(sock, timeout=2)
        except StatusUnavailable:
            return None
        return snap if predicate(snap) else None

    return probe


def all_shipped(
    sock: str, records: int, proc: subprocess.Popen[bytes] | None = None
) -> Callable[[], dict[str, Any] | None]:
    """A probe for :func:`wait_for`: the status snapshot once ``records`` are sent and nothing is
    left to read."""
    return snapshot_when(sock, lambda s: s["records_sent"] == records and s["lag_bytes"] == 0, proc)


@contextmanager
def shipped_agent(config: Path, tmp: Path, records: int) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`running_agent` (log ``tmp/agent.log``) once it has sent ``records`` and has nothing
    left to read; ``config`` keeps its state under ``tmp/state`` (state_config)."""
    with running_agent(config, tmp / "agent.log") as proc:
        wait_for(all_shipped(state_socket(tmp), records, proc), what="the file to be shipped")
        yield proc


def rss_bytes(pid: int) -> int:
    """The process's resident memory now (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples a process's RSS every 50 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def watch(self, proc: subprocess.Popen[bytes]) -> None:
        self.pids = [proc.pid]

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for pid in self.pids:
                self.peak = max(self.peak, rss_bytes(pid))

    def close(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak
