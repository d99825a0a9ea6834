"""How late the event loop runs: the agent measures its own responsiveness and reports it.

Every flow, the status socket, signal handling and the systemd watchdog share one event loop;
work that holds it (a walk of a huge directory, a long read) shows here as lag, the time a
timer fired after it was due. ``status`` and Prometheus report the worst ever and the worst of
the last minute, so a regression is visible before systemd's watchdog kills the agent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

TICK = 0.05  # seconds between measurements: lag under this is invisible, and costs ~nothing
RECENT = 60.0  # "recent" is the worst of this many seconds


class LagMeter:
    """The worst lag ever and over the last ``RECENT`` seconds (kept per second, so O(1) memory)."""

    __slots__ = ("_buckets", "worst", "worst_at")

    def __init__(self) -> None:
        self.worst = 0.0
        self.worst_at = 0.0
        self._buckets: deque[tuple[int, float]] = deque()  # (second, worst lag in it)

    def observe(self, now: float, lag: float) -> None:
        if lag > self.worst:
            self.worst, self.worst_at = lag, now
        second = int(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            if lag > buckets[-1][1]:
                buckets[-1] = (second, lag)
        else:
            buckets.append((second, lag))
        while buckets and buckets[0][0] <= second - RECENT:
            buckets.popleft()

    def recent(self, now: float) -> float:
        """The worst lag of the last ``RECENT`` seconds before ``now``."""
        floor = int(now) - RECENT
        return max((lag for second, lag in self._buckets if second > floor), default=0.0)


async def measure(
    meter: LagMeter, *, tick: float = TICK, clock: Callable[[], float] = time.monotonic
) -> None:
    """Sleep ``tick`` over and over; whatever the sleep overran by is the loop's lag."""
    while True:
        due = clock() + tick
        await asyncio.sleep(tick)
        now = clock()
        meter.observe(now, max(0.0, now - due))
