"""Found by real Apache + logrotate olddir: a line written to an empty generation after it left the
pattern is lost.

With ``create`` + USR1 the server writes to the old file between logrotate's rename and its reopen.
When that old file was empty while it was in the pattern (no request since the last rotation, or
Apache's slow graceful restart: 1 line in 4 of 6 Apache olddir runs), the agent saw it but let go of
it (a file with no complete line has no identity yet, so its descriptor is closed until it grows).
Moved to ``olddir`` and written there, nobody finds it again: the line is lost without a word. A
file the agent saw in the pattern must be drained like any rotated file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.agent import start_agent, stop_agent, wait_for
from tests.support.config import NO_CLOUDWATCH, local_flow_config
from tests.support.streams import stored_so_far

pytestmark = pytest.mark.slow


def stored(store: Path) -> list[bytes]:
    return stored_so_far(store, "s")


def test_an_empty_generation_written_after_it_left_the_pattern_is_read(tmp_path: Path) -> None:
    logs, old = tmp_path / "logs", tmp_path / "old"
    logs.mkdir()
    old.mkdir()
    live = logs / "access.log"
    first = [f"first generation {i:04d} {'x' * 60}\n".encode() for i in range(40)]  # > 1 KiB
    live.write_bytes(b"".join(first))
    config = local_flow_config(
        tmp_path,
        logs / "access.log*",
        "s",
        NO_CLOUDWATCH,
        maxBufferAgeMillis=1000,
        maxTimeBetweenFileTrackerRefreshMillis=100,
    )
    log = tmp_path / "agent.log"
    proc = start_agent(config, log=log)
    try:
        wait_for(lambda: len(stored(tmp_path / "streams")) >= 40, 30, log=log)
        # logrotate olddir, create + USR1: the generation moves away, logrotate creates an empty
        # access.log that the server opens on its reopen. No request comes until the next
        # rotation moves the empty file to olddir too, and one request lands between that rename
        # and the server's reopen: written through the server's descriptor, out of the pattern.
        os.rename(live, old / "access.log.1")
        server = live.open("ab")
        time.sleep(0.5)  # the empty generation's life (the agent scans every 0.1 s and sees it)
        os.rename(live, old / "access.log.2")
        short = b'::1 - - [30/Nov/2026:05:46:07 +0000] "GET /ok HTTP/1.1" 200 3 "-" "-"\n'
        server.write(short)
        server.close()
        third = b"third generation\n" * 80
        live.write_bytes(third)
        streams = tmp_path / "streams"
        wait_for(lambda: len(stored(streams)) >= 120, 30, log=log)
        # the first and third generations are in; the short line was written before the third
        wait_for(lambda: short in stored(streams), 3, log=log)
    finally:
        assert stop_agent(proc) == 0
    assert stored(streams).count(short) == 1, f"{short!r} delivered {stored(streams).count(short)}x"
