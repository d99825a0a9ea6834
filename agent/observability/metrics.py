"""Counters and gauges of a flow and of each file it tails; emitters read them, never the reverse.

Plain attributes incremented on the hot path (no locks: one event loop owns them). Everything that
reports (progress lines, CloudWatch, Prometheus, status) takes snapshots of these objects.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from agent.observability.looplag import LagMeter

# How many (size, first seen) marks a file keeps to age its unacknowledged bytes. When full, the
# newest mark absorbs new growth: lag seconds then err on the old side, never the young one.
LAG_MARKS = 64

# The AWS agent's per-call CloudWatch metrics, in the order it records them.
SEND_METRICS = (
    "RecordSendAttempts",
    "RecordsSent",
    "RecordSendErrors",
    "BytesSent",
    "ServiceErrors",
)


@dataclass(slots=True)
class StatSet:
    """A CloudWatch StatisticSet: count, sum, min and max of the values recorded."""

    count: int = 0
    sum: float = 0.0
    min: float = 0.0
    max: float = 0.0

    def add(self, value: float) -> None:
        if self.count == 0:
            self.min = self.max = value
        else:
            self.min = min(self.min, value)
            self.max = max(self.max, value)
        self.count += 1
        self.sum += value

    def merge(self, other: StatSet) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.min, self.max = other.min, other.max
        else:
            self.min = min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.count += other.count
        self.sum += other.sum


@dataclass(slots=True)
class FileMetrics:
    """One tailed file (one identity): how far it is read and acknowledged."""

    path: str
    file_id: str
    size: int = 0
    read_offset: int = 0
    checkpoint_offset: int = 0
    records_parsed: int = 0
    bytes_parsed: int = 0
    last_read_monotonic: float = 0.0
    checkpoint_updated: float = 0.0  # wall clock of the last checkpoint advance
    rotated: bool = False
    # (size, monotonic time it was first seen): the oldest mark above the checkpoint dates the
    # oldest unacknowledged byte.
    marks: deque[tuple[int, float]] = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        if self.size > self.checkpoint_offset and not self.marks:
            self.marks.append((self.size, time.monotonic()))

    @property
    def lag_bytes(self) -> int:
        return max(0, self.size - self.checkpoint_offset)

    def observe_size(self, size: int, now: float | None = None) -> None:
        """The file's size as just seen (reads and idle polls call this)."""
        if size == self.size:
            return
        now = time.monotonic() if now is None else now
        if size < self.size:  # truncated: what was unacknowledged is gone or restarts
            self.marks.clear()
        self.size = size
        if size <= self.checkpoint_offset:
            return
        if len(self.marks) >= LAG_MARKS:
            self.marks[-1] = (size, self.marks[-1][1])
        else:
            self.marks.append((size, now))

    def checkpoint_advanced(self, offset: int, wall: float | None = None) -> None:
        self.checkpoint_offset = offset
        self.checkpoint_updated = time.time() if wall is None else wall
        marks = self.marks
        while marks and marks[0][0] <= offset:
            marks.popleft()

    def lag_seconds(self, now: float | None = None) -> float:
        """How long the oldest unacknowledged byte has been known to us (0 when caught up)."""
        if self.lag_bytes == 0 or not self.marks:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, now - self.marks[0][1])


@dataclass(slots=True)
class FlowMetrics:
    """A flow's counters (cumulative since start) and gauges."""

    flow_id: str
    destination: str
    records_parsed: int = 0
    bytes_parsed: int = 0
    records_processed: int = 0
    records_skipped: int = 0
    processing_errors: int = 0
    processor_worker_failures: int = 0
    records_truncated: int = 0
    bytes_discarded: int = 0
    record_send_attempts: int = 0
    records_sent: int = 0
    bytes_sent: int = 0
    record_send_errors: int = 0
    service_errors: int = 0
    send_calls: int = 0
    retries: int = 0
    # send attempts in a row that did not deliver everything (0 after one that did): the AWS
    # agent's "stuck tailer" gauge, ConsecutiveProcessingErrors
    consecutive_errors: int = 0
    partition_key_fallbacks: int = 0
    in_flight_bytes: int = 0
    in_flight_records: int = 0
    files_rotated: int = 0
    files_truncated: int = 0
    # files that went (truncated without a copy, replaced, gone at start) before they were read
    # to their end, and the bytes they held beyond what was read (when known)
    files_lost: int = 0
    unread_bytes_lost: int = 0
    read_errors: int = 0
    files_skipped: int = 0  # matching paths that cannot be tailed: not regular, dangling, loops
    # directories of the pattern that could not be listed (EMFILE, EACCES...): the files known
    # below them are kept, never taken for rotated or deleted
    scan_errors: int = 0
    status: str = "starting"  # starting | running | failing | stopping | stopped
    last_error: str | None = None
    files: dict[str, FileMetrics] = field(default_factory=dict)
    # per-call statistic sets since the CloudWatch emitter last took them (5 entries at most)
    send_stats: dict[str, StatSet] = field(default_factory=dict, repr=False)

    @property
    def lag_bytes(self) -> int:
        return sum(f.lag_bytes for f in self.files.values())

    def lag_seconds(self, now: float | None = None) -> float:
        return max((f.lag_seconds(now) for f in self.files.values()), default=0.0)

    def send_call(
        self, *, attempted: int, sent: int, sent_bytes: int, failed: int, service_error: bool
    ) -> None:
        """One PutRecords/PutRecordBatch (or store commit): the counters and the AWS per-call datums."""
        self.send_calls += 1
        self.record_send_attempts += attempted
        self.records_sent += sent
        self.bytes_sent += sent_bytes
        self.record_send_errors += failed
        self.service_errors += int(service_error)
        stats = self.send_stats
        for name, value in zip(
            SEND_METRICS, (attempted, sent, failed, sent_bytes, int(service_error)), strict=True
        ):
            s = stats.get(name)
            if s is None:
                s = stats[name] = StatSet()
            s.add(value)

    def take_send_stats(self) -> dict[str, StatSet]:
        taken, self.send_stats = self.send_stats, {}
        return taken


@dataclass(slots=True)
class AgentMetrics:
    """All flows of the running agent."""

    started_wall: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    flows: dict[str, FlowMetrics] = field(default_factory=dict)
    loop_lag: LagMeter = field(default_factory=LagMeter)

    def flow(self, flow_id: str, destination: str) -> FlowMetrics:
        existing = self.flows.get(flow_id)
        if existing is None:
            existing = self.flows[flow_id] = FlowMetrics(flow_id, destination)
        return existing

    def forget_finished_files(self, now_wall: float, idle: float) -> int:
        """Drop rotated-away files fully acknowledged and untouched for ``idle`` seconds.

        Keeps status and Prometheus (one label set per path) from growing with every rotation.
        """
        dropped = 0
        for m in self.flows.values():
            for key, f in list(m.files.items()):
                if f.rotated and f.lag_bytes == 0 and now_wall - f.checkpoint_updated >= idle:
                    del m.files[key]
                    dropped += 1
        return dropped

    @property
    def uptime_millis(self) -> int:
        return int((time.monotonic() - self.started_monotonic) * 1000)

    @property
    def records_parsed(self) -> int:
        return sum(m.records_parsed for m in self.flows.values())

    @property
    def bytes_parsed(self) -> int:
        return sum(m.bytes_parsed for m in self.flows.values())

    @property
    def records_sent(self) -> int:
        return sum(m.records_sent for m in self.flows.values())

    @property
    def lag_bytes(self) -> int:
        return sum(m.lag_bytes for m in self.flows.values())


RATE_FIELDS = ("records_parsed", "bytes_parsed", "records_sent", "bytes_sent")


class RateMeter:
    """Per-flow rates from counters sampled about once a second (the last ``keep`` samples)."""

    def __init__(self, metrics: AgentMetrics, *, keep: int = 61) -> None:
        self.metrics = metrics
        self._samples: dict[str, deque[tuple[float, tuple[int, ...]]]] = {}
        self._keep = keep

    def sample(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for flow_id, m in self.metrics.flows.items():
            q = self._samples.get(flow_id)
            if q is None:
                q = self._samples[flow_id] = deque(maxlen=self._keep)
            q.append((now, tuple(getattr(m, f) for f in RATE_FIELDS)))

    def rates(self, flow_id: str, window: float = 10.0) -> dict[str, float]:
        """Average per-second rates over the last ``window`` seconds (0 with fewer than 2 samples)."""
        q = self._samples.get(flow_id)
        if not q or len(q) < 2:
            return dict.fromkeys(RATE_FIELDS, 0.0)
        t1, last = q[-1]
        t0, first = q[0]
        for t, values in q:
            if t1 - t <= window + 1e-9:
                t0, first = t, values
                break
        dt = t1 - t0
        if dt <= 0:
            return dict.fromkeys(RATE_FIELDS, 0.0)
        return {f: (b - a) / dt for f, a, b in zip(RATE_FIELDS, first, last, strict=True)}

    def peak(self, flow_id: str) -> dict[str, float]:
        """The highest rate between two consecutive samples kept (the busiest second)."""
        q = self._samples.get(flow_id)
        best = dict.fromkeys(RATE_FIELDS, 0.0)
        if not q:
            return best
        items = list(q)
        for (t0, a), (t1, b) in itertools.pairwise(items):
            dt = t1 - t0
            if dt <= 0:
                continue
            for f, x, y in zip(RATE_FIELDS, a, b, strict=True):
                best[f] = max(best[f], (y - x) / dt)
        return best
