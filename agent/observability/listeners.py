"""Limits for the agent's own listeners, so clients cannot take the descriptors the flows need.

Every connection the Prometheus listener or the status socket holds is a file descriptor in the
same process that opens log files and commits to SQLite. A thousand half-sent requests once
pushed the agent to its descriptor limit: store commits failed and scans saw no files. So each
listener serves at most ``limit`` connections at once (the others are closed as soon as they
are accepted, and counted) and gives each a short deadline to send its request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Self

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


class GuardedListener:
    """What the Prometheus listener and the status socket share: the guard and the server's life.

    A subclass binds in ``start`` (setting ``_server``) and answers one connection in ``_answer``;
    ``_serve`` admits it through the guard, drops the client on the errors a client can cause
    (``CLIENT_ERRORS``), and always frees its descriptor and its slot.
    """

    CLIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)

    def __init__(self, name: str, limit: int) -> None:
        self.guard = ConnectionGuard(name, limit)
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        raise NotImplementedError

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.guard.admit(writer):
            return
        try:
            await self._answer(reader, writer)
        except self.CLIENT_ERRORS:
            pass
        finally:
            writer.transport.abort()  # a no-op once closed; frees a stuck client's descriptor now
            self.guard.release()

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(OSError):
                await server.wait_closed()


def start_on_reload(running: object | None, address: str | None, *, changed: bool) -> bool:
    """Whether a SIGHUP (re)starts a listener: its settings changed, or it is configured but off.

    Off means its address was taken when it started (logged, and the agent shipped on without
    it). Freeing the port and sending SIGHUP is how an operator says "try again"; the only other
    way would be a restart, which stops every flow. Shared by the Prometheus listener, the status
    socket and the Kinesis endpoint, so they all answer SIGHUP alike.
    """
    return changed or (running is None and bool(address))
