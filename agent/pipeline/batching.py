"""When a batch closes: on records, on bytes, or on age — the deadline is computed, never polled."""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from itertools import accumulate

from agent.records import Span

# Per-record bytes a destination counts beyond the data (a partition key of up to ~40 chars).
KEY_OVERHEAD = 40


class Batcher:
    """A FIFO of spans waiting to be sent, cut into batches within the destination's limits.

    Limits count records (a span holds many) and bytes (data plus ``KEY_OVERHEAD`` a record); a
    batch that ends inside a span cuts it in two (``Span.split``), so a batch is never over.
    """

    __slots__ = (
        "_queue",
        "_times",
        "bytes",
        "clock",
        "count",
        "max_age",
        "max_bytes",
        "max_records",
    )

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
        self._queue: deque[Span] = deque()
        self._times: deque[tuple[int, float]] = deque()  # (records added, time) per add()
        self.bytes = 0
        self.count = 0  # records queued

    def __len__(self) -> int:
        return self.count

    def add(self, span: Span) -> None:
        """Queue ``span`` (its ``size`` is its data's bytes)."""
        n = len(span)
        if not n:
            return
        self._queue.append(span)
        self.count += n
        self.bytes += span.size + KEY_OVERHEAD * n
        self._times.append((n, self.clock()))

    def deadline(self) -> float | None:
        """When the oldest waiting record reaches ``max_age``."""
        return self._times[0][1] + self.max_age if self._times else None

    def full(self) -> bool:
        return self.count >= self.max_records or self.bytes >= self.max_bytes

    def ready(self, now: float) -> bool:
        deadline = self.deadline()
        return self.full() or (deadline is not None and now >= deadline)

    def take(self, max_records: int | None = None, max_bytes: int | None = None) -> list[Span]:
        """The next batch: as many records from the head as the limits allow (at least one).

        The limits are the batcher's own unless given (a transactional sink commits several
        batches at once). Whole spans are measured by their totals; only a span the limit
        falls inside is measured record by record, and cut there.
        """
        max_records = self.max_records if max_records is None else max_records
        max_bytes = self.max_bytes if max_bytes is None else max_bytes
        queue = self._queue
        if self.count <= max_records and self.bytes <= max_bytes:
            batch = list(queue)
            queue.clear()
            self.bytes = self.count = 0
            self._times.clear()
            return batch
        batch = []
        count = nbytes = 0
        while queue:
            span = queue[0]
            n = len(span)
            size = span.size + KEY_OVERHEAD * n
            if count + n <= max_records and nbytes + size <= max_bytes:
                batch.append(queue.popleft())
                count += n
                nbytes += size
                continue
            # the limit falls inside this span: take the records that fit (one at least)
            room = max_records - count
            ends = list(accumulate([len(d) + KEY_OVERHEAD for d in span.datas[:room]]))
            k = bisect_right(ends, max_bytes - nbytes)
            if not batch:
                k = max(k, 1)
            if k:
                head = span.split(k) if k < n else queue.popleft()
                batch.append(head)
                count += k
                nbytes += ends[k - 1]
            break
        self.count -= count
        self.bytes -= nbytes
        self._consume_times(count)
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
