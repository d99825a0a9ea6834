"""Prometheus exposition at ``metrics.prometheusListen``: per flow and per file, read at scrape time.

A collector turns the live ``AgentMetrics`` into metric families on each scrape (no second set of
counters to keep in step). The HTTP server is asyncio on the agent's own loop, so a scrape reads the
counters from the thread that writes them. ``9100`` or ``:9100`` listens on loopback only; give a
host (``0.0.0.0:9100``, ``[::]:9100``) to expose it further. At most ``MAX_CONNECTIONS`` scrapes
are served at once, and a client gets ``REQUEST_TIMEOUT`` seconds to send its request
(``agent.observability.listeners``): half-sent requests cannot exhaust the agent's descriptors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

# parse_listen stays importable from here: the Prometheus listener is where the address is used
from agent.config.listen import parse_prometheus_listen as parse_listen
from agent.observability.listeners import ACCEPT_BATCH, GuardedListener
from agent.observability.metrics import AgentMetrics

log = logging.getLogger(__name__)

PREFIX = "kinesis_agent"
FLOW_LABELS = ["flow", "destination"]
FILE_LABELS = ["flow", "path"]
# The per-file gauges: (key in collect(), name after "<prefix>_file_", help text).
FILE_GAUGES = (
    ("size", "size_bytes", "Size of the file"),
    ("read", "read_offset_bytes", "Offset read up to"),
    ("ckpt", "checkpoint_offset_bytes", "Offset acknowledged and checkpointed up to"),
    ("lag", "lag_bytes", "Bytes not yet acknowledged"),
    ("lag_s", "lag_seconds", "Age of the oldest unacknowledged data"),
    ("age", "checkpoint_age_seconds", "Seconds since the checkpoint last advanced"),
)
MAX_CONNECTIONS = 32  # scrapers are a handful of Prometheus servers, not hundreds
REQUEST_TIMEOUT = 2.0  # seconds for the request line and headers (a scraper sends them at once)
RESPONSE_TIMEOUT = 10.0  # seconds to take the response

# (attribute, metric name without prefix/_total, help)
FLOW_COUNTERS = (
    ("records_parsed", "records_parsed", "Records framed from the files"),
    ("bytes_parsed", "bytes_parsed", "Bytes read from the files"),
    ("records_processed", "records_processed", "Records out of the processors"),
    ("records_skipped", "records_skipped", "Records dropped by processors (acknowledged at once)"),
    ("processing_errors", "processing_errors", "Records a processor failed on"),
    ("records_truncated", "records_truncated", "Records cut to the destination's limit"),
    ("record_send_attempts", "record_send_attempts", "Records in send calls, retries included"),
    ("records_sent", "records_sent", "Records the destination acknowledged"),
    ("bytes_sent", "bytes_sent", "Data bytes the destination acknowledged"),
    ("record_send_errors", "records_failed", "Records a send call failed (retried)"),
    ("service_errors", "service_errors", "Send calls that failed as a whole"),
    ("send_calls", "send_calls", "Send calls (PutRecords, PutRecordBatch, store commits)"),
    ("retries", "retries", "Send retries after a failure"),
    ("files_rotated", "file_rotations", "Rotations seen (renames, files leaving the pattern)"),
    ("files_truncated", "file_truncations", "Truncations seen (copytruncate)"),
    (
        "files_lost",
        "files_lost",
        "Files truncated, replaced or gone before they were read to their end",
    ),
    (
        "unread_bytes_lost",
        "unread_bytes_lost",
        "Bytes such files held beyond what was read (where known)",
    ),
    ("read_errors", "read_errors", "Failed reads of a file"),
    ("files_skipped", "files_skipped", "Matching paths not tailed: not regular, dangling, loops"),
    ("scan_errors", "scan_errors", "Directory listings that failed (EMFILE, EACCES...)"),
    ("bytes_discarded", "bytes_discarded", "Bytes cut off records over the destination's limit"),
)
FLOW_GAUGES = (
    ("in_flight_bytes", "in_flight_bytes", "Bytes read and not yet acknowledged"),
    ("in_flight_records", "in_flight_records", "Records read and not yet acknowledged"),
    (
        "consecutive_errors",
        "consecutive_send_errors",
        "Send attempts in a row that failed (0 once one succeeds): a stuck flow",
    ),
)


class AgentCollector(Collector):
    """Reads ``AgentMetrics`` at scrape time."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        import time

        flows = list(self.metrics.flows.values())
        now_wall = time.time()
        for attr, name, help_text in FLOW_COUNTERS:
            c = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=FLOW_LABELS)
            for m in flows:
                c.add_metric([m.flow_id, m.destination], getattr(m, attr))
            yield c
        for attr, name, help_text in FLOW_GAUGES:
            g = GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=FLOW_LABELS)
            for m in flows:
                g.add_metric([m.flow_id, m.destination], getattr(m, attr))
            yield g
        lag = GaugeMetricFamily(
            f"{PREFIX}_lag_bytes", "Bytes in the files not yet acknowledged", labels=FLOW_LABELS
        )
        lag_s = GaugeMetricFamily(
            f"{PREFIX}_lag_seconds",
            "Age of the oldest unacknowledged data",
            labels=FLOW_LABELS,
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_flow_failing", "1 while the flow cannot deliver", labels=FLOW_LABELS
        )
        for m in flows:
            labels = [m.flow_id, m.destination]
            lag.add_metric(labels, m.lag_bytes)
            lag_s.add_metric(labels, m.lag_seconds())
            up.add_metric(labels, 1 if m.status == "failing" else 0)
        yield lag
        yield lag_s
        yield up

        per_file = {
            key: GaugeMetricFamily(f"{PREFIX}_file_{name}", help_text, labels=FILE_LABELS)
            for key, name, help_text in FILE_GAUGES
        }
        parsed = CounterMetricFamily(
            f"{PREFIX}_file_records_parsed", "Records framed from the file", labels=FILE_LABELS
        )
        parsed_b = CounterMetricFamily(
            f"{PREFIX}_file_bytes_parsed", "Bytes read from the file", labels=FILE_LABELS
        )
        for m in flows:
            for f in m.files.values():
                labels = [m.flow_id, f.path]
                per_file["size"].add_metric(labels, f.size)
                per_file["read"].add_metric(labels, f.read_offset)
                per_file["ckpt"].add_metric(labels, f.checkpoint_offset)
                per_file["lag"].add_metric(labels, f.lag_bytes)
                per_file["lag_s"].add_metric(labels, f.lag_seconds())
                if f.checkpoint_updated:
                    per_file["age"].add_metric(labels, max(0.0, now_wall - f.checkpoint_updated))
                parsed.add_metric(labels, f.records_parsed)
                parsed_b.add_metric(labels, f.bytes_parsed)
        yield from per_file.values()
        yield parsed
        yield parsed_b
        lag_meter = self.metrics.loop_lag
        loop_lag = GaugeMetricFamily(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late the agent's event loop ran: worst since start, and of the last minute",
            labels=["window"],
        )
        loop_lag.add_metric(["worst"], lag_meter.worst)
        loop_lag.add_metric(["recent"], lag_meter.recent(time.monotonic()))
        yield loop_lag
        uptime = GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "Seconds since the agent started")
        uptime.add_metric([], self.metrics.uptime_millis / 1000)
        yield uptime


class PrometheusServer(GuardedListener):
    """A minimal HTTP/1.1 server for ``GET /metrics`` on the agent's event loop."""

    CLIENT_ERRORS = (OSError, TimeoutError, ValueError)  # ValueError: a request line over the limit

    def __init__(self, listen: str, metrics: AgentMetrics) -> None:
        super().__init__("Prometheus listener", MAX_CONNECTIONS)
        self.host, self.port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(AgentCollector(metrics))

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, backlog=ACCEPT_BATCH
        )
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("Prometheus metrics at http://%s:%d/metrics", self.host, self.port)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            request = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
        parts = request.split()
        if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
            status, body, ctype = b"405 Method Not Allowed", b"GET only\n", b"text/plain"
        elif parts[1].split(b"?")[0] in (b"/metrics", b"/"):
            status, ctype = b"200 OK", CONTENT_TYPE_PLAIN_0_0_4.encode()
            body = generate_latest(self.registry)
        else:
            status, body, ctype = b"404 Not Found", b"try /metrics\n", b"text/plain"
        head = (
            b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype
            + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
        )  # fmt: skip
        async with asyncio.timeout(RESPONSE_TIMEOUT):
            writer.write(head + (b"" if parts[:1] == [b"HEAD"] else body))
            writer.close()  # flushes what is buffered, then closes
            await writer.wait_closed()
