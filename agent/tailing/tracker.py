"""All files of one flow: which to open, where to start, and what rotation, truncation and copies mean.

``FileSet`` is built in layers, a module each with one job, each using only the layers below it:

- tables.py: what is known (open, idle and waiting files; every identity and where it ended);
- adoption.py: who a probed file is and where reading it starts (the identity rules; when a
  possible copy of an open file is a file of its own: shadows.py);
- waiting.py: files too short to identify yet, held open and drained if they leave the pattern;
- truncation.py: a truncated file restarts at 0, its copy (copytruncate) continues;
- dormancy.py: idle files closed to save descriptors, reopened by identity when they change;
- budget.py: descriptors bounded; new files past the budget wait in a backlog;
- scanning.py: a walk's results applied (renames, files that left the pattern, checkpoints judged);
- here: what the flow's reading pass asks (open files in shipping order), and closing.

What a file truncated without a copy, replaced, or gone at start took with it unread is logged
and counted (:mod:`agent.tailing.losses`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from agent.tailing.discovery import shipping_order
from agent.tailing.probe import SLICE
from agent.tailing.scanning import Scanning
from agent.tailing.tables import Flushed, log
from agent.tailing.tailer import TrackedFile

__all__ = ["FileSet", "Flushed"]  # Flushed: what the flow takes from a rescan


class FileSet(Scanning):
    """The open files of one flow and the identity rules (adoption.py)."""

    def readable(self, *, refresh: bool = False) -> list[TrackedFile]:
        """Open files, oldest modification first (``refresh``: fstat them for current mtimes).

        A rotated file stops changing, so it sorts before the file that replaced it and is
        finished first; two busy files alternate as each write makes the other the older one.
        """
        if refresh:
            for tracked in self.files.values():
                with contextlib.suppress(OSError):
                    tracked.refresh_size()
        return sorted(self.files.values(), key=lambda t: shipping_order(t.mtime, t.path))

    def readable_touched(self, paths: set[str]) -> list[TrackedFile]:
        """Open files, oldest modification first, fstat'ing only those at ``paths``, those rotated
        away (no directory event covers a write to them) and those with bytes to read."""
        for tracked in self.files.values():
            if tracked.gone or tracked.path in paths or tracked.size != tracked.offset:
                with contextlib.suppress(OSError):
                    tracked.refresh_size()
        return sorted(self.files.values(), key=lambda t: shipping_order(t.mtime, t.path))

    async def readable_async(self) -> list[TrackedFile]:
        """``readable(refresh=True)``; with many files, the fstat and sort in a worker thread."""
        if len(self.files) <= SLICE:
            return self.readable(refresh=True)
        return await asyncio.to_thread(self.readable, refresh=True)

    def close_drained(self, tracked: TrackedFile) -> None:
        """A rotated-away file read to EOF and idle: close it and remember where it ended."""
        self._retire(tracked, tracked.framer.next_offset)
        self._forget_open(tracked)
        tracked.close()
        log.info("%s: finished %s", self.flow_id, tracked.path)

    def close(self) -> None:
        for tracked in self.files.values():
            tracked.close()
        self.files.clear()
        self.dormant.clear()
        for _found, fd in self.waiting_fds.values():
            os.close(fd)
        for _found, fd, _left_at in self.left_waiting:
            os.close(fd)
        for p, _originals in self.judging:  # possible copies probed since the last scan
            os.close(p.fd)
        self.waiting_fds.clear()
        self.left_waiting.clear()
        self.judging.clear()
