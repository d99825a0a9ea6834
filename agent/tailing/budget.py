"""Descriptors are bounded: new files past the budget wait in a backlog, idle files make room.

The budget (``max_open``, tables.fd_budget) is half the soft RLIMIT_NOFILE less a reserve. A scan
opens new files up to it, closing idle files (dormancy.py) a slice at a time for more; the rest
wait in ``backlog``, in the scan's order, and the reader opens them as descriptors free up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from agent.tailing.discovery import Found
from agent.tailing.dormancy import Dormancy
from agent.tailing.probe import SLICE, probe


class DescriptorBudget(Dormancy):
    """Opens new files within the budget; keeps the rest waiting in ``backlog``."""

    def _within_budget(self, new: list[Found]) -> list[Found]:
        """New files to open now; the rest wait in ``backlog`` until descriptors are free.

        Descriptors are bounded (``max_open``): idle files read to their end are closed first
        (dormant, reopened when they change); files with unread bytes are never closed, so
        past that the rest wait their turn, in the order ``_new_files`` gives.
        """
        room = self._room_for(len(new))
        self.backlog = self._backlog_of(new[room:])
        return new[:room]

    def _room_for(self, wanted: int, closing: list[int] | None = None) -> int:
        """How many new files may be opened now, closing idle ones for them: a slice at a time
        (each close is a system call on the loop; the backlog's turns open the rest).
        ``closing``: as for ``shed``."""
        room = self.max_open - len(self.files)
        if wanted > room:
            room += self.shed(min(wanted - room, SLICE), closing)
        return max(0, room)

    def _backlog_of(self, waiting: list[Found]) -> list[tuple[Found, bool]]:
        """The files left waiting, each with its start (O(n): a worker thread's job at scale).
        A file of the first scan keeps its END_OF_FILE start however long it waits."""
        want_end = self._want_end()
        before = {(f.dev, f.ino): end for f, end in self.backlog}
        return [(f, before.get((f.dev, f.ino), want_end)) for f in waiting]

    def shed(self, count: int, closing: list[int] | None = None) -> int:
        """Close up to ``count`` idle files read to their end (least recently grown first).

        With ``closing``, their descriptors are put there for the caller, which closes them in a
        worker thread and waits for that before it opens new files: until they are closed they
        still count against the budget (opened first, a slice of new files went past it).
        """
        idle = [
            t
            for t in self.files.values()
            if not t.gone
            and t.unread_bytes() == 0
            and not t.framer.has_pending()
            and not t.acks.dirty
        ]
        if len(idle) > count:
            idle.sort(key=lambda t: t.last_growth)
        fds: list[int] = [] if closing is None else closing
        for tracked in idle[:count]:
            self.make_dormant(tracked, closing=fds)
        if closing is None:
            _close_soon(fds)
        return min(count, len(idle))

    async def adopt_backlog(self) -> None:
        """Open the next files that waited for descriptors, as many as there is room for."""
        room = min(SLICE, len(self.backlog), self.max_open - len(self.files))
        if room <= 0:
            closing: list[int] = []
            room = self.shed(min(SLICE, len(self.backlog)), closing)
            if closing:
                await asyncio.to_thread(close_all, closing)
        if room <= 0:
            return
        batch, self.backlog = self.backlog[:room], self.backlog[room:]
        fresh = [(f, end) for f, end in batch if not self._held((f.dev, f.ino))]
        probes = await asyncio.to_thread(lambda: [probe(f, want_end=end) for f, end in fresh])
        self._adopt_all(probes)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _close_soon(fds: list[int]) -> None:
    """Close descriptors in a worker thread when a loop runs (hundreds of close(2) calls would
    each give up the loop's GIL), else now. Nothing refers to them any more: their numbers are
    not reused before they are closed."""
    if not fds:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        close_all(fds)
        return
    loop.run_in_executor(None, close_all, fds)
