"""The real agent process, killed with SIGKILL again and again while logs grow and rotate."""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.e2e import (
    kill_agent,
    start_agent,
    stop_agent,
    stored_lines,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


class Writers:
    """Appends numbered lines to several files and rotates them by rename and by copytruncate."""

    def __init__(self, logs: Path, names: list[str], seed: int) -> None:
        self.logs = logs
        self.names = names
        self.rng = random.Random(seed)
        self.written: dict[str, list[bytes]] = {n: [] for n in names}
        self.rotations = 0
        self.copytruncates = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        seq = dict.fromkeys(self.names, 0)
        while not self.stop.is_set():
            name = self.rng.choice(self.names)
            live = self.logs / f"{name}.log"
            batch = []
            for _ in range(self.rng.randint(1, 40)):
                seq[name] += 1
                batch.append(f"{name} {seq[name]:08d} {'x' * self.rng.randint(0, 120)}\n".encode())
            with open(live, "ab") as fh:
                fh.write(b"".join(batch))
            self.written[name] += batch
            roll = self.rng.random()
            if roll < 0.02:
                self.rotations += 1
                os.rename(live, self.logs / f"{name}.log.{self.rotations}")
            elif roll < 0.03:
                # logrotate's copytruncate; nothing is written between the copy and the truncate
                # here, so nothing may be lost
                self.copytruncates += 1
                self.rotations += 1
                shutil.copyfile(live, self.logs / f"{name}.log.{self.rotations}")
                os.truncate(live, 0)
            time.sleep(self.rng.uniform(0, 0.004))


def test_sigkill_many_times_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """30 SIGKILLs while three files grow and rotate: every line once, each file in order.

    Across files, the oldest modification is read first, which keeps rotations in order in the
    common case; it is not guaranteed when logrotate copies, truncates and refills a file between
    the agent's listing of the directory and its open (the refilled file is then read before the
    copy it has not seen yet), so only per-file order is asserted.
    """
    logs = tmp_path / "logs"
    logs.mkdir()
    store = tmp_path / "streams"
    config = write_config(
        tmp_path / "agent.json",
        {
            "checkpointFile": str(tmp_path / "cp.db"),
            "localStore.directory": str(store),
            "localStore.shardCount": 1,
            "flows": [
                {
                    "filePattern": str(logs / "*.log*"),
                    "localStream": "crash",
                    "initialPosition": "START_OF_FILE",
                    "maxBufferAgeMillis": 1000,
                    "maxTimeBetweenFileTrackerRefreshMillis": 500,
                    "maxBufferSizeRecords": 50,
                }
            ],
        },
    )
    writers = Writers(logs, ["app", "web", "db"], seed=7)
    writers.thread.start()
    rng = random.Random(11)
    agent_log = tmp_path / "agent.log"
    kills = 0
    try:
        while kills < 30:
            proc = start_agent(config, log=agent_log)
            time.sleep(rng.uniform(0.15, 0.9))
            kill_agent(proc)
            kills += 1
    finally:
        writers.stop.set()
        writers.thread.join()
    total = sum(len(v) for v in writers.written.values())
    proc = start_agent(config, log=agent_log)
    try:
        assert wait_for(lambda: len(stored_lines(store, "crash")) >= total, timeout=60), (
            agent_log.read_text()[-3000:]
        )
        time.sleep(1.5)  # anything extra (a duplicate) would show up now
    finally:
        assert stop_agent(proc) == 0
    got = stored_lines(store, "crash")
    twice = sorted(line for line, n in Counter(got).items() if n > 1)
    assert not twice, f"{len(twice)} lines stored more than once after SIGKILL: {twice[:10]}"
    assert sorted(got) == sorted(line for lines in writers.written.values() for line in lines)
    position = {line: i for i, line in enumerate(got)}
    for path in sorted(logs.iterdir()):
        # per file, in order: a file's lines (a copy's included) arrive in the order they stand in it
        order = [position[line] for line in path.read_bytes().splitlines(keepends=True)]
        assert order == sorted(order), f"{path.name} out of order"
    assert writers.rotations > 0 and writers.copytruncates > 0
