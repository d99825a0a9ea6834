"""Shared pieces of the reliability suite: numbered lines, the real agent process, tallies.

Every scenario writes lines that are unique (``<file> <seq>``), runs the real agent, reads the
destination back and reduces the result to one :class:`Tally` (written / delivered / lost /
duplicated, peak RSS), which the tests assert on and ``soak.py`` prints as a table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.helpers import read_stream
from tests.peers.servers import TEST_ENV

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Tally:
    """What one scenario wrote and what arrived."""

    scenario: str
    written: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    peak_rss: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, scenario: str, written: Iterable[bytes], got: Iterable[bytes], peak_rss: int = 0
    ) -> Tally:
        want = Counter(written)
        have = Counter(got)
        lost = sum((want - have).values())
        dup = sum(n - 1 for line, n in have.items() if n > 1 and line in want)
        extra = sum(n for line, n in have.items() if line not in want)
        t = cls(scenario, sum(want.values()), sum(have.values()), lost, dup + extra, peak_rss)
        return t

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.written} | {self.delivered} | {self.lost} | "
            f"{self.duplicated} | {self.peak_rss / 1048576:.0f} MiB |"
        )


TALLIES: list[Tally] = []  # every scenario run in this process, for soak.py's table


def record(t: Tally) -> Tally:
    TALLIES.append(t)
    return t


def agent_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **TEST_ENV, "PYTHONPATH": str(REPO), **(extra or {})}


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=2))
    return path


def start(
    config: Path, log: Path, *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    command = [*prefix, sys.executable, "-m", "agent", "run", "-c", str(config), *args]
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=out, env=agent_env(), cwd=str(REPO))


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def rss_bytes(pid: int) -> int:
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


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def kinesis_lines(endpoint: str, stream: str) -> list[bytes]:
    return [d for recs in read_stream(endpoint, stream).values() for _, d in recs]


def numbered(name: str, start: int, count: int, width: int = 0) -> list[bytes]:
    pad = "x" * width
    return [f"{name} {i:08d} {pad}\n".encode() for i in range(start, start + count)]


def append(path: Path, lines: list[bytes]) -> list[bytes]:
    with open(path, "ab") as fh:
        fh.write(b"".join(lines))
    return lines
