"""Limits for the agent's own listeners, so clients cannot take the descriptors the flows need.

Every connection the Prometheus listener or the status socket holds is a file descriptor in the
same process that opens log files and commits to SQLite. A thousand half-sent requests once
pushed the agent to its descriptor limit: store commits failed and scans saw no files. So each
listener serves at most ``limit`` connections at once (the others are closed as soon as they
are accepted, and counted) and gives each a short deadline to send its request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

WARN_INTERVAL = 60.0  # seconds between warnings about refused connections
# asyncio accepts up to ``backlog`` connections each time the socket is readable (100 by default),
# and each is a descriptor before any handler (and so any guard) runs: 1,100 half-sent scrapes
# held ~100 extra descriptors at once. A short queue keeps the excess in the kernel instead.
ACCEPT_BATCH = 32


class ConnectionGuard:
    """Admits at most ``limit`` connections at once; says (at most once a minute) when it refuses."""

    def __init__(self, name: str, limit: int, *, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.limit = limit
        self.active = 0
        self.refused = 0
        self._clock = clock
        self._next_warning = 0.0

    def admit(self, writer: asyncio.StreamWriter) -> bool:
        """True: serve it, then ``release()``. False: it was closed at once."""
        if self.active < self.limit:
            self.active += 1
            return True
        self.refused += 1
        writer.transport.abort()  # no lingering close: the descriptor goes now
        now = self._clock()
        if now >= self._next_warning:
            self._next_warning = now + WARN_INTERVAL
            log.warning(
                "%s: %d connections already open (the limit); refused %d so far",
                self.name,
                self.limit,
                self.refused,
            )
        return False

    def release(self) -> None:
        self.active -= 1


def start_on_reload(running: object | None, address: str | None, *, changed: bool) -> bool:
    """Whether a SIGHUP (re)starts a listener: its settings changed, or it is configured but off.

    Off means its address was taken when it started (logged, and the agent shipped on without
    it). Freeing the port and sending SIGHUP is how an operator says "try again"; the only other
    way would be a restart, which stops every flow. Shared by the Prometheus listener, the status
    socket and the Kinesis endpoint, so they all answer SIGHUP alike.
    """
    return changed or (running is None and bool(address))
