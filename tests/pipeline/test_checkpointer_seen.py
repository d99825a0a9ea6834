"""The checkpointer and the reader share one set of the files records were emitted from."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.logs import append, numbered
from tests.tailing.harness import FlowHarness, fast_flow


def test_files_read_and_gone_are_forgotten_by_the_reader_too(tmp_path: Path) -> None:
    """Five files rotated out of the pattern one after another, each drained and closed: once
    their checkpoints are written, neither the checkpointer nor the reader still holds them.

    The checkpointer trimmed its set by replacing it at every save while the reader kept adding
    to the set it was first handed: from the first save on, the reader added every file to a
    set nobody read or trimmed (memory growing with every rotation, for ever: 11 held after ten)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "app.log"
    h = FlowHarness(tmp_path, fast_flow(str(logs / "*.log")))
    try:
        append(live, numbered("a", 0, 2))
        h.start()
        assert h.wait_until(lambda: len(h.memory.records) == 2)
        h.run_for(1.2)  # the checkpointer has saved at least once
        for i in range(5):
            append(live, numbered(f"r{i}", 0, 2))
            os.rename(live, logs / f"app.{i}")  # out of the pattern: drained, then closed
            append(live, numbered(f"n{i}", 0, 1))
            assert h.wait_until(lambda i=i: len(h.memory.records) == 2 + 3 * (i + 1))
        assert h.wait_until(lambda: h.open_paths() == {str(live)})
        h.run_for(2.5)  # saves after the last file closed
        flow = h.flow
        assert flow is not None and flow.reader is not None
        assert len(flow.checkpointer.seen) <= 1
        assert len(flow.reader.seen) <= 1, f"{len(flow.reader.seen)} files still held"
    finally:
        h.close()
