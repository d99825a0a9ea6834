"""When a batch closes: on records, on bytes, or on age — the deadline is computed, never polled."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from agent.records import Record

# Per-record bytes a destination counts beyond the data (a partition key of up to ~40 chars).
KEY_OVERHEAD = 40


class Batcher:
    """A FIFO of records waiting to be sent, cut into batches within the destination's limits."""

    __slots__ = ("_queue", "_times", "bytes", "clock", "max_age", "max_bytes", "max_records")

    def __init__(
        self,
        *,
        max_records: int,
        max_bytes: int,
        max_age: float,
        clock: Callable[[], float],
    ) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self._queue: deque[Record] = deque()
        self._times: deque[tuple[int, float]] = deque()  # (records added before, time) per add()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, records: list[Record]) -> None:
        if not records:
            return
        self._queue.extend(records)
        self.bytes += sum(len(r.data) for r in records) + KEY_OVERHEAD * len(records)
        self._times.append((len(records), self.clock()))

    def deadline(self) -> float | None:
        """When the oldest waiting record reaches ``max_age``."""
        return self._times[0][1] + self.max_age if self._times else None

    def full(self) -> bool:
        return len(self._queue) >= self.max_records or self.bytes >= self.max_bytes

    def ready(self, now: float) -> bool:
        deadline = self.deadline()
        return self.full() or (deadline is not None and now >= deadline)

    def take(self) -> list[Record]:
        """The next batch: as many records from the head as the limits allow (at least one)."""
        queue = self._queue
        batch: list[Record] = []
        size = 0
        while queue and len(batch) < self.max_records:
            cost = len(queue[0].data) + KEY_OVERHEAD
            if batch and size + cost > self.max_bytes:
                break
            batch.append(queue.popleft())
            size += cost
        self.bytes -= size
        self._consume_times(len(batch))
        return batch

    def _consume_times(self, n: int) -> None:
        times = self._times
        while n and times:
            count, t = times[0]
            if count <= n:
                times.popleft()
                n -= count
            else:
                times[0] = (count - n, t)
                n = 0
