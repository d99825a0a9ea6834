"""Helpers for tests that run the real ``kinesis-agent`` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.store.store import StreamStore


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=2))
    return path


def local_flow_config(
    tmp: Path, pattern: Path, stream: str, settings: dict[str, Any] | None = None, **flow: Any
) -> Path:
    """``tmp/agent.json``: one flow over ``pattern`` from its start into the one-shard local
    stream ``stream`` under ``tmp/streams``, checkpoints in ``tmp/cp.db``; ``settings`` are more
    top-level keys, ``flow`` more keys of the flow."""
    return write_config(
        tmp / "agent.json",
        {
            "checkpointFile": str(tmp / "cp.db"),
            "localStore.directory": str(tmp / "streams"),
            "localStore.shardCount": 1,
            **(settings or {}),
            "flows": [
                {
                    "filePattern": str(pattern),
                    "localStream": stream,
                    "initialPosition": "START_OF_FILE",
                    **flow,
                }
            ],
        },
    )


def start_agent(
    config: Path, *args: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``kinesis-agent run``; its output is appended to ``log`` (or dropped)."""
    command = [sys.executable, "-m", "agent", "run", "-c", str(config), *args]
    environ = {**os.environ, **(env or {})}
    if log is None:
        return subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environ
        )
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, env=environ)


def stop_agent(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def kill_agent(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def stored_lines(store_dir: Path, stream: str) -> list[bytes]:
    """Every record of the stream in commit (sequence) order (none while the store does not exist).

    Read-only, as the store's readers are meant to: a read-write connection that happens to be the
    last one open (the agent just SIGKILLed) checkpoints the WAL into streams.db when it closes, and
    an agent starting meanwhile took the half-written file for a truncated store and refused to run.
    """
    if not (store_dir / "streams.db").exists():
        return []
    with StreamStore.open(store_dir, create=False, read_only=True) as store:
        if stream not in store.list_streams():
            return []
        records = list(store.read(stream))
    records.sort(key=lambda r: int(r.sequence_number))
    return [r.data for r in records]


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
