"""Files too short to identify yet (empty, or no complete line): held open, drained if they leave.

A file seen while too short to identify keeps its descriptor (within the descriptor budget) while
it waits, and if it leaves the pattern it is identified by whatever head it has then, and
drained: its writer may still write to it after a rename out of the pattern (logrotate olddir
with ``create``: the server writes to the old file until it reopens).
"""

from __future__ import annotations

import os

from agent.tailing.adoption import Adoption
from agent.tailing.discovery import Found, ScanResult
from agent.tailing.probe import Probe, probe_held
from agent.tailing.tables import log, still_at


class WaitingFiles(Adoption):
    """Keeps the waiting files' descriptors and drains those that left the pattern."""

    def _sweep_waiting(self, result: ScanResult, seen: set[tuple[int, int]]) -> None:
        """After a scan: waiting files no longer found have left the pattern (drained next);
        those that were identified or left stop waiting."""
        for key in [k for k in self.waiting_fds if k not in seen]:
            found, fd = self.waiting_fds[key]
            if result.covers(found.path) or still_at(found.path, key):
                continue  # not listed, yet still there: it has not left the pattern
            del self.waiting_fds[key]
            self.left_waiting.append((found, fd, self.clock()))
        for key in list(self.waiting_since):
            if key not in seen:
                del self.waiting_since[key]
        waiting = self.waiting_since
        for key in [k for k in self._waiting_path if k not in waiting]:
            del self._waiting_path[key]
        self.waiting_paths = frozenset(self._waiting_path.values())

    def _adopt_left(self, left: list[tuple[Found, int, float]], probes: list[Probe]) -> None:
        """Waiting files that left the pattern: drain them like any rotated file, once they have
        a byte to be identified by. One deleted while empty, or still empty after the time a
        rotated file is given to go idle, had nothing to lose: closed."""
        now = self.clock()
        grace = max(self.flow.partial_line_flush_millis / 1000, 1.0)
        for (found, fd, left_at), p in zip(left, probes, strict=True):
            key = (found.dev, found.ino)
            st = p.st
            if st is None or self._held(key):
                os.close(fd)
                continue
            if not p.head:
                if st.st_nlink == 0 or now - left_at >= grace:
                    os.close(fd)
                    log.debug("%s: %s left the pattern empty", self.flow_id, found.path)
                else:
                    self.left_waiting.append((found, fd, left_at))  # its writer may still write
                continue
            self._adopt(p, now, force=True)
            tracked = self.files.get(key)
            if tracked is None:
                continue  # a copy of a file still read: the original holds its bytes
            self._start_draining(tracked, "left the pattern before it could be identified")


def probe_left(left: list[tuple[Found, int, float]]) -> list[Probe]:
    return [probe_held(found, fd) for found, fd, _left_at in left]
