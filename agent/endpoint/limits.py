"""Optional per-shard throughput limits as Kinesis has them, so producers can test their backoff.

In: 1 MiB/s and 1,000 records/s per shard (data plus partition key). Out: 5 GetRecords calls/s and
2 MiB/s per shard; as on Kinesis, one call may return more than a second's worth (up to 10 MiB),
and the shard's next calls are refused until the debt is paid. Token buckets hold one second of
rate and refill continuously; the clock is injected for tests. Off unless the server is given a
ShardLimits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Rates:
    in_bytes: float = 1 * MIB
    in_records: float = 1000
    out_bytes: float = 2 * MIB
    out_calls: float = 5


class _Bucket:
    __slots__ = ("level", "rate", "stamp")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.level = rate
        self.stamp = now

    def refill(self, now: float) -> float:
        self.level = min(self.rate, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.level


class ShardLimits:
    """The buckets of every shard this server has seen, keyed by (stream, shard index)."""

    def __init__(
        self, rates: Rates | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rates = rates or Rates()
        self._clock = clock
        self._lock = threading.Lock()
        self._in: dict[tuple[str, int], tuple[_Bucket, _Bucket]] = {}
        self._out: dict[tuple[str, int], tuple[_Bucket, _Bucket]] = {}

    def admit_put(self, stream: str, shard: int, size: int) -> bool:
        """Take one record of ``size`` bytes from the shard's input, or refuse it whole."""
        now = self._clock()
        with self._lock:
            pair = self._in.get((stream, shard))
            if pair is None:
                r = self.rates
                pair = self._in[(stream, shard)] = (
                    _Bucket(r.in_bytes, now),
                    _Bucket(r.in_records, now),
                )
            size_bucket, count_bucket = pair
            if size_bucket.refill(now) < size or count_bucket.refill(now) < 1:
                return False
            size_bucket.level -= size
            count_bucket.level -= 1
            return True

    def admit_get(self, stream: str, shard: int) -> bool:
        """Take one GetRecords call; refused while the shard's output is spent."""
        now = self._clock()
        with self._lock:
            pair = self._out.get((stream, shard))
            if pair is None:
                r = self.rates
                pair = self._out[(stream, shard)] = (
                    _Bucket(r.out_bytes, now),
                    _Bucket(r.out_calls, now),
                )
            size_bucket, call_bucket = pair
            if size_bucket.refill(now) <= 0 or call_bucket.refill(now) < 1:
                return False
            call_bucket.level -= 1
            return True

    def charge_get(self, stream: str, shard: int, size: int) -> None:
        """What a GetRecords returned; the bucket may go into debt."""
        with self._lock:
            pair = self._out.get((stream, shard))
            if pair is not None:
                pair[0].level -= size
