"""While a destination is down and the in-flight budget is full, discovery goes on.

A file created and then rotated out of the pattern during the outage is opened while the reader
waits for room, so its descriptor is held and it is drained once delivery resumes (peers §7.11).
Before this, the reader did not rescan while blocked and such a file was never seen: lost.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.tailing.harness import FlowHarness, fast_flow


def test_file_rotated_out_during_an_outage_is_still_drained(tmp_path: Path) -> None:
    """Budget full, sink refusing: a new file appears and is renamed out of the pattern; after
    the outage every line of it arrives."""
    logs = tmp_path / "logs"
    logs.mkdir()
    gone = tmp_path / "rotated"
    gone.mkdir()
    flow = fast_flow(str(logs / "*.log"), max_in_flight_bytes=64 * 1024)
    h = FlowHarness(tmp_path, flow)
    try:
        backlog = [b"old %06d %s\n" % (i, b"x" * 100) for i in range(5000)]  # > the budget
        (logs / "old.log").write_bytes(b"".join(backlog))
        h.memory.fail_next = 10**9  # the destination is down
        h.start()
        assert h.flow is not None
        assert h.wait_until(
            lambda: h.flow is not None and h.flow.metrics.in_flight_bytes >= 64 * 1024
        )
        fresh = [b"fresh %04d\n" % i for i in range(300)]
        (logs / "new.log").write_bytes(b"".join(fresh))
        h.run_for(0.6)  # a few refresh periods while the reader waits for room
        os.rename(logs / "new.log", gone / "new.log.1")
        h.run_for(0.3)
        h.memory.fail_next = 0  # the destination is back
        assert h.wait_until(lambda: len(h.memory.records) >= len(backlog) + len(fresh), 20)
        assert sorted(h.memory.records) == sorted(backlog + fresh)
    finally:
        h.close()
