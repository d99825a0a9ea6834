"""Exactly-once into the store across kill -9: records and checkpoints survive or vanish together.

The writer (this file run as a script) plays a flow shipping one endless file: it resumes at its
checkpoint and writes numbered lines in batches, each batch with the checkpoint just past it. The
test SIGKILLs it at random moments, restarts it, and finally checks that the stream holds every
line below the checkpoint exactly once, in order per shard, and nothing beyond.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.records import Checkpoint, FileId
from agent.store import StreamStore

FLOW = "local:crash:/var/log/crash.log"
FILE = FileId(2049, 77, 1024, b"\x07" * 32)
LINE = 64  # bytes per line, so a line number is offset // LINE


def writer(directory: str) -> None:
    """Ship lines forever from the checkpoint on; never returns (the test kills it)."""
    store = StreamStore.open(directory)
    store.ensure_stream("crash", 4, 24)
    saved = store.load_checkpoints(FLOW)
    n = saved[0].offset // LINE if saved else 0
    rng = random.Random(os.getpid())
    print("ready", flush=True)
    while True:
        size = rng.randint(1, 500)
        entries = [(str(rng.random()), b"%063d\n" % i) for i in range(n, n + size)]
        n += size
        store.put_records(
            "crash", entries, [Checkpoint(FLOW, FILE, "/var/log/crash.log", n * LINE)]
        )


def start_writer(directory: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return proc


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """After many SIGKILLs mid-write, the stream holds lines 0..checkpoint-1 exactly once."""
    rng = random.Random(20240501)
    kills_after_ready = 0
    for round_ in range(25):
        proc = start_writer(tmp_path)
        if round_ % 5 == 4:
            time.sleep(rng.uniform(0, 0.3))  # sometimes while it opens the store
        else:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.02, 0.4))
            kills_after_ready += 1
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        if proc.stdout is not None:
            proc.stdout.close()

    with StreamStore.open(tmp_path, create=False, read_only=True) as store:
        (saved,) = store.load_checkpoints(FLOW)
        expected = saved.offset // LINE
        shards: dict[str, list[int]] = {}
        for record in store.read("crash"):
            shards.setdefault(record.shard_id, []).append(int(record.data))
    lines = sorted(n for numbers in shards.values() for n in numbers)
    assert kills_after_ready >= 20 and expected > 1000  # the writer really made progress
    assert lines == list(range(expected)), "lost or duplicated lines"
    for numbers in shards.values():
        assert numbers == sorted(numbers), "order within a shard is write order"


if __name__ == "__main__":
    writer(sys.argv[1])
