"""Run the real agent process for the observability tests and wait on what it reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from agent.observability.status import StatusUnavailable, fetch

T = TypeVar("T")

AGENT = [sys.executable, "-m", "agent"]
# Nothing in these tests may reach AWS: dummy credentials, no instance metadata, loopback unproxied.
SAFE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def agent_env() -> dict[str, str]:
    env = {**os.environ, **SAFE_ENV}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    return env


def write_log(path: Path, lines: int, width: int = 20) -> int:
    """``lines`` lines of ``width`` bytes each (newline included); returns the byte count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        for i in range(lines):
            fh.write(f"line {i:08d} ".ljust(width - 1, "x").encode() + b"\n")
    return lines * width


def local_config(tmp: Path, **extra: Any) -> Path:
    """A config with one localStream flow over tmp/logs/*.log, state under tmp/state."""
    cfg = {
        "checkpointFile": str(tmp / "state" / "checkpoints.db"),
        "localStore.directory": str(tmp / "state" / "streams"),
        "flows": [
            {
                "filePattern": str(tmp / "logs" / "*.log"),
                "localStream": "obs",
                "initialPosition": "START_OF_FILE",
                "maxBufferAgeMillis": 1000,
            }
        ],
    }
    cfg.update(extra)
    path = tmp / "agent.json"
    path.write_text(json.dumps(cfg))
    return path


def wait_for(probe: Callable[[], T | None], timeout: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(0.05)


def snapshot_when(
    sock: str,
    predicate: Callable[[dict[str, Any]], bool],
    proc: subprocess.Popen[bytes] | None = None,
) -> Callable[[], Any]:
    def probe() -> dict[str, Any] | None:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the agent exited with {proc.returncode}")
        try:
            snap = fetch(sock, timeout=2)
        except StatusUnavailable:
            return None
        return snap if predicate(snap) else None

    return probe


@contextmanager
def running_agent(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``kinesis-agent run -c config`` until the block ends; then SIGTERM and a clean exit."""
    out = log.open("wb")
    proc = subprocess.Popen(
        [*AGENT, "run", "-c", str(config)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=agent_env(),
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()
    assert proc.returncode == 0, log.read_text()[-3000:]
