"""The real agent process, killed with SIGKILL again and again while logs grow and rotate."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.scenarios import crash_config, sigkills
from tests.support.agent import start_agent, stop_agent, wait_for
from tests.support.logs import Writers
from tests.support.streams import stored_lines

pytestmark = pytest.mark.slow


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
    config = crash_config(tmp_path)
    rng = random.Random(11)
    agent_log = tmp_path / "agent.log"
    with Writers(logs, ["app", "web", "db"], seed=7) as writers:
        list(sigkills(config, agent_log, 30, lambda: rng.uniform(0.15, 0.9)))
    total = len(writers.all)
    proc = start_agent(config, log=agent_log)
    try:
        wait_for(lambda: len(stored_lines(store, "crash")) >= total, timeout=60, log=agent_log)
        time.sleep(1.5)  # anything extra (a duplicate) would show up now
    finally:
        assert stop_agent(proc) == 0
    got = stored_lines(store, "crash")
    twice = sorted(line for line, n in Counter(got).items() if n > 1)
    assert not twice, f"{len(twice)} lines stored more than once after SIGKILL: {twice[:10]}"
    assert sorted(got) == sorted(writers.all)
    position = {line: i for i, line in enumerate(got)}
    for path in sorted(logs.iterdir()):
        # per file, in order: a file's lines (a copy's included) arrive in the order they stand in it
        order = [position[line] for line in path.read_bytes().splitlines(keepends=True)]
        assert order == sorted(order), f"{path.name} out of order"
    assert writers.rotations > 0 and writers.copytruncates > 0
