"""Counters and gauges of a flow and of each file it tails; emitters read them, never the reverse.

Plain attributes incremented on the hot path (no locks: one event loop owns them). Everything that
reports (progress lines, CloudWatch, Prometheus, status) takes snapshots of these objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


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

    @property
    def lag_bytes(self) -> int:
        return max(0, self.size - self.checkpoint_offset)


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
    records_truncated: int = 0
    bytes_discarded: int = 0
    record_send_attempts: int = 0
    records_sent: int = 0
    bytes_sent: int = 0
    record_send_errors: int = 0
    service_errors: int = 0
    send_calls: int = 0
    retries: int = 0
    partition_key_fallbacks: int = 0
    in_flight_bytes: int = 0
    in_flight_records: int = 0
    files_rotated: int = 0
    files_truncated: int = 0
    files_deleted_unread_bytes: int = 0
    read_errors: int = 0
    files_skipped: int = 0  # matching paths that cannot be tailed: not regular, dangling, loops
    status: str = "starting"  # starting | running | failing | stopping | stopped
    last_error: str | None = None
    files: dict[str, FileMetrics] = field(default_factory=dict)

    @property
    def lag_bytes(self) -> int:
        return sum(f.lag_bytes for f in self.files.values())


@dataclass(slots=True)
class AgentMetrics:
    """All flows of the running agent."""

    started_wall: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    flows: dict[str, FlowMetrics] = field(default_factory=dict)

    def flow(self, flow_id: str, destination: str) -> FlowMetrics:
        existing = self.flows.get(flow_id)
        if existing is None:
            existing = self.flows[flow_id] = FlowMetrics(flow_id, destination)
        return existing

    @property
    def uptime_millis(self) -> int:
        return int((time.monotonic() - self.started_monotonic) * 1000)
