"""R5 with the real process: bad input never crashes the agent, never vanishes silently, and each
case is counted (the agent's exit summary names the counters; tests/tailing/test_bad_input.py
checks the same counters in process).

The agent runs without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (setpriv), so a mode-000 file is
really unreadable to it even though the suite runs as root.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.agent import start_agent, stop_agent, wait_for
from tests.support.config import NO_CLOUDWATCH, from_start, local_config
from tests.support.streams import stored_so_far

pytestmark = pytest.mark.slow

NO_DAC = (
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
)
LIMIT = 1024 * 1024  # the embedded store's record limit (Kinesis's): data + partition key
RANDOM_KEY = 12  # the flow's RANDOM keys are 12 characters


def summary(log: Path) -> dict[str, int]:
    """The counters of the agent's exit summary line."""
    found: dict[str, int] = {}
    for name, value in re.findall(r"(\w+)=(\d+)", log.read_text().split("Agent: Progress")[-1]):
        found[name] = int(value)
    return found


def test_bad_input_in_a_real_process(tmp_path: Path) -> None:
    """Invalid UTF-8, NUL bytes, a 10 MiB line, a binary file, a directory and a FIFO that match,
    a file replaced by a FIFO, symlinks (to a file, a loop, dangling), an unreadable file that
    becomes readable, and a file deleted and recreated within one second: every readable byte
    arrives, the agent never stops, and the counters say what was cut, skipped or refused."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to drop the agent's DAC capabilities")
    logs = tmp_path / "logs"
    logs.mkdir()
    store = tmp_path / "streams"
    config = local_config(
        tmp_path,
        from_start(
            logs / "*.log",
            localStream="s",
            maxBufferAgeMillis=1000,
            maxTimeBetweenFileTrackerRefreshMillis=300,
        ),
        **NO_CLOUDWATCH,
    )
    expected: list[bytes] = []
    odd = [b"\xff\xfe\xfd not utf-8\n", b"nul\x00inside\x00\n", b"\x00\n"]
    (logs / "odd.log").write_bytes(b"".join(odd))
    expected += odd
    with open(logs / "big.log", "wb") as fh:
        fh.write(b"before-big\n" + b"y" * (10 * 1024 * 1024) + b"\nafter-big\n")
    expected += [b"before-big\n", b"after-big\n"]  # + one record cut at the limit (below)
    blob = bytes(range(256)) * 4096  # 1 MiB of binary, 4096 newlines inside
    (logs / "blob.log").write_bytes(blob + b"\n")
    blob_records = [r + b"\n" for r in (blob + b"\n").split(b"\n")[:-1]]
    (logs / "dir.log").mkdir()
    os.mkfifo(logs / "pipe.log")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"via-link\n")
    (logs / "link.log").symlink_to(elsewhere)
    (logs / "loop-a.log").symlink_to(logs / "loop-b.log")
    (logs / "loop-b.log").symlink_to(logs / "loop-a.log")
    (logs / "dangling.log").symlink_to(tmp_path / "missing")
    expected.append(b"via-link\n")
    locked = logs / "locked.log"
    locked.write_bytes(b"secret-1\nsecret-2\n")
    locked.chmod(0)
    expected += [b"secret-1\n", b"secret-2\n"]
    replaced = logs / "replaced.log"
    replaced.write_bytes(b"replaced-1\n")
    expected.append(b"replaced-1\n")

    log = tmp_path / "agent.log"
    proc = start_agent(config, log=log, prefix=NO_DAC)
    try:
        wait_for(lambda: b"replaced-1\n" in _stored(store), 30, log=log)
        # a file replaced by a FIFO, then by a directory
        replaced.unlink()
        os.mkfifo(replaced)
        time.sleep(0.7)
        replaced.unlink()
        replaced.mkdir()
        # deleted and recreated at once, five times (the inode may be reused: each generation
        # must be read from 0, not from where the last one ended). Each is deleted once it is
        # shipped: a file that lives shorter than the agent takes to notice it cannot be read
        # by any tailer, and on a loaded machine a fixed sleep made that a coin toss.
        churn = logs / "churn.log"
        for gen in range(5):
            lines = [b"gen%d-%d\n" % (gen, i) for i in range(20)]
            churn.write_bytes(b"".join(lines))
            expected += lines
            wait_for(lambda lines=lines: lines[-1] in _stored(store), 30, log=log)
            churn.unlink()
        time.sleep(1.0)
        assert "cannot open" in log.read_text() and "locked.log" in log.read_text()
        assert b"secret-1\n" not in _stored(store)
        locked.chmod(0o644)  # readable again: picked up on a rescan
        want = len(expected) + len(blob_records) + 1
        wait_for(lambda: len(_stored(store)) >= want, 30, log=log)
        time.sleep(1.2)
        assert proc.poll() is None, "the agent stopped on bad input"
    finally:
        assert stop_agent(proc) == 0, log.read_text()[-3000:]
    got = _stored(store)
    big = [g for g in got if g.startswith(b"yyyy")]
    assert len(big) == 1 and len(big[0]) + RANDOM_KEY == LIMIT and big[0].endswith(b"\n")
    rest = [g for g in got if not g.startswith(b"yyyy")]
    assert Counter(rest) == Counter(expected + blob_records)
    counters = summary(log)
    assert counters.get("records_truncated") == 1, counters
    assert counters.get("bytes_discarded", 0) >= 10 * 1024 * 1024 - LIMIT, counters
    assert counters.get("read_errors", 0) >= 1, counters  # the unreadable file, once
    # dir.log, pipe.log, the FIFO and the directory at replaced.log, the loop, the dangling link
    assert counters.get("files_skipped", 0) >= 5, counters
    text = log.read_text()
    assert "not a regular file" in text and "Traceback" not in text


def _stored(store: Path) -> list[bytes]:
    return stored_so_far(store, "s")
