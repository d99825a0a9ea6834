"""R4: the five classic correctness scenarios (Vector's harness), each with an exact expectation,
against the real agent process shipping into the embedded store.

Checkpoint persistence across a restart, rotate-create, rotate-copytruncate, truncation, and SIGHUP
reload (flows added, removed, changed and switched to another destination while lines are written).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent import start_agent, stop_agent, wait_for
from tests.support.config import NO_CLOUDWATCH, from_start, local_config
from tests.support.logs import append, numbered
from tests.support.streams import stored_so_far

pytestmark = pytest.mark.slow


def flow(tmp: Path, pattern: str, stream: str, **extra: Any) -> dict[str, Any]:
    return from_start(
        tmp / pattern,
        localStream=stream,
        maxBufferAgeMillis=1000,
        maxTimeBetweenFileTrackerRefreshMillis=300,
        **extra,
    )


def config(tmp: Path, *flows: dict[str, Any]) -> Path:
    return local_config(tmp, *flows, **NO_CLOUDWATCH)


def stored(tmp: Path, stream: str) -> list[bytes]:
    return stored_so_far(tmp / "streams", stream)


def until_stored(tmp: Path, stream: str, n: int, log: Path, timeout: float = 30) -> None:
    wait_for(lambda: len(stored(tmp, stream)) >= n, timeout, log=log)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


def test_checkpoint_persists_across_restart(tmp_path: Path, logs: Path) -> None:
    """Ship, stop, write more while stopped, start: every line exactly once, in order."""
    cfg = config(tmp_path, flow(tmp_path, "logs/*.log", "s"))
    log = tmp_path / "agent.log"
    written = append(logs / "app.log", numbered("app", 0, 1000))
    proc = start_agent(cfg, log=log)
    until_stored(tmp_path, "s", 1000, log)
    assert stop_agent(proc) == 0
    written += append(logs / "app.log", numbered("app", 1000, 1000))
    proc = start_agent(cfg, log=log)
    until_stored(tmp_path, "s", 2000, log)
    time.sleep(1.2)
    assert stop_agent(proc) == 0
    assert stored(tmp_path, "s") == written


def rotated_while_behind(
    tmp: Path, logs: Path, pattern: str, rotate: Callable[[Path], None]
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """app.log rotated by ``rotate`` while 20,000 of its lines are still unread, then a new
    generation written: (what arrived, the first generation, the second)."""
    cfg = config(tmp, flow(tmp, pattern, "s"))
    log = tmp / "agent.log"
    proc = start_agent(cfg, log=log)
    try:
        first = append(logs / "app.log", numbered("gen1", 0, 500))
        until_stored(tmp, "s", 1, log)
        first += append(logs / "app.log", numbered("gen1", 500, 20_000))  # still being read
        rotate(logs / "app.log")
        second = append(logs / "app.log", numbered("gen2", 0, 500))
        until_stored(tmp, "s", len(first) + len(second), log)
        time.sleep(1.2)
    finally:
        assert stop_agent(proc) == 0
    return stored(tmp, "s"), first, second


def test_rotate_create(tmp_path: Path, logs: Path) -> None:
    """Rename away (out of the pattern) while unread bytes remain, create anew: both generations
    exactly once."""
    got, first, second = rotated_while_behind(
        tmp_path, logs, "logs/*.log", lambda live: os.rename(live, live.with_name("app.log.1"))
    )
    assert Counter(got) == Counter(first + second)
    assert [g for g in got if g.startswith(b"gen1")] == first


def copytruncate(live: Path) -> None:
    shutil.copyfile(live, live.with_name("app.log.1"))
    os.truncate(live, 0)


def test_rotate_copytruncate(tmp_path: Path, logs: Path) -> None:
    """Copy to app.log.1 (which also matches) and truncate while the agent is behind: the copy
    continues where the original was read to; nothing twice, nothing missing."""
    got, first, second = rotated_while_behind(tmp_path, logs, "logs/*.log*", copytruncate)
    assert Counter(got) == Counter(first + second)


def test_truncation(tmp_path: Path, logs: Path) -> None:
    """Truncated in place after it was read: the new lines arrive from offset 0, and the
    truncation is counted (logged)."""
    cfg = config(tmp_path, flow(tmp_path, "logs/*.log", "s"))
    log = tmp_path / "agent.log"
    proc = start_agent(cfg, log=log)
    try:
        first = append(logs / "app.log", numbered("before", 0, 300))
        until_stored(tmp_path, "s", 300, log)
        os.truncate(logs / "app.log", 0)
        second = append(logs / "app.log", numbered("after", 0, 10))
        until_stored(tmp_path, "s", 310, log)
        time.sleep(1.2)
    finally:
        assert stop_agent(proc) == 0
    assert stored(tmp_path, "s") == first + second
    assert "was truncated" in log.read_text()


class LineWriters:
    """Appends numbered lines to a few files until stopped."""

    def __init__(self, logs: Path, names: list[str]) -> None:
        self.logs = logs
        self.written: dict[str, list[bytes]] = {n: [] for n in names}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            for name in self.written:
                self.written[name] += append(self.logs / f"{name}.log", numbered(name, i, 20))
            i += 20
            time.sleep(0.01)


def test_sighup_reload_loses_and_duplicates_nothing(tmp_path: Path, logs: Path) -> None:
    """SIGHUP five times while four files grow: a flow added (backfills from 0), one changed
    (drained and restarted), one removed and added back (continues from its checkpoint), one
    switched to another stream (the new destination gets everything), and a broken config
    rejected. Every stream holds each of its lines exactly once."""
    a = flow(tmp_path, "logs/a.log", "sa")
    b = flow(tmp_path, "logs/b.log", "sb", maxBufferSizeRecords=100)
    c = flow(tmp_path, "logs/c.log", "sc")
    d = flow(tmp_path, "logs/d.log", "sd")
    b_changed = {**b, "maxBufferSizeRecords": 50}
    b_switched = flow(tmp_path, "logs/b.log", "sb2")
    log = tmp_path / "agent.log"
    cfg = config(tmp_path, a, b, d)
    writers = LineWriters(logs, ["a", "b", "c", "d"])
    writers.thread.start()
    proc = start_agent(cfg, log=log)
    try:
        until_stored(tmp_path, "sa", 1, log)
        steps: list[tuple[dict[str, Any], ...] | None] = [
            (a, b, c, d),  # add c
            (a, b_changed, c, d),  # change b
            (a, b_changed, c),  # remove d
            None,  # a broken config: rejected, everything keeps running
            (a, b_changed, c, d),  # d back: continues from its checkpoint
            (a, c, d, b_switched),  # b now ships to another stream
        ]
        for step, flows in enumerate(steps):
            time.sleep(1.0)
            if flows is None:
                (tmp_path / "agent.json").write_text('{"flows": [ {"filePattern": ')
            else:
                config(tmp_path, *flows)
            proc.send_signal(signal.SIGHUP)
            done = step + 1

            def reloaded(done: int = done) -> bool:
                text = log.read_text()
                return text.count("reloaded ") + text.count("reload rejected") >= done

            wait_for(reloaded, 30, log=log)
            assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(1.0)
    finally:
        writers.stop.set()
        writers.thread.join()
    try:
        w = writers.written
        for stream, name in (("sa", "a"), ("sc", "c"), ("sd", "d"), ("sb2", "b")):
            until_stored(tmp_path, stream, len(w[name]), log)
        time.sleep(1.2)
    finally:
        assert stop_agent(proc) == 0
    assert "reload rejected" in log.read_text()
    for stream, name in (("sa", "a"), ("sc", "c"), ("sd", "d"), ("sb2", "b")):
        assert stored(tmp_path, stream) == w[name], f"{stream} differs from {name}.log"
    sb = stored(tmp_path, "sb")
    assert sb == w["b"][: len(sb)], "sb must hold a prefix of b.log, each line once"
    assert len(sb) > 0
